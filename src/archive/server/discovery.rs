//! Discovery: what the API server reads of an aggregated API. It checks the APIService's
//! availability with `GET /apis/<group>/<version>` (any 2xx), and, finding no aggregated
//! discovery at `/apis` (404 here), builds kubectl's discovery from that same document.

use serde_json::{Value, json};

use super::{GROUP, VERSION};

/// The `APIResourceList` of `archive.hitl.dev/v1alpha1`: one namespaced resource, `records`,
/// which can only be listed.
pub fn resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [{
            "name": "records",
            "singularName": "record",
            "namespaced": true,
            "kind": "Record",
            "verbs": ["list"],
        }],
    })
}

/// The `APIGroup` document of `archive.hitl.dev`.
pub fn group() -> Value {
    let version = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    })
}
