//! Reading the decision archive as the person: through the API server, which proxies to the
//! archive's aggregated API (`archive.hitl.dev`), so their own credentials and RBAC apply however
//! they log in. `kubectl hitl history` and the History page read it the same way.

use hitl_engine::archive::{Kind, Stored};
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "archive.hitl.dev";
const BASE: &str = "/apis/archive.hitl.dev/v1alpha1";

/// The archive's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordList {
    pub api_version: String,
    pub kind: String,
    /// The namespaces it holds whole; of the others, only the caller's own decisions.
    #[serde(default)]
    pub whole_namespaces: Vec<String>,
    #[serde(default)]
    pub items: Vec<Stored>,
}

/// The API path of the records in `scope` (None: every namespace), with the filters.
pub fn path(scope: Option<&str>, filters: &[(&str, String)]) -> String {
    let path = match scope {
        Some(ns) => format!("{BASE}/namespaces/{ns}/records"),
        None => format!("{BASE}/records"),
    };
    if filters.is_empty() {
        return path;
    }
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(filters).finish();
    format!("{path}?{query}")
}

/// The records at `path`, as the person `client` acts as.
pub async fn read(client: &Client, path: &str) -> Result<RecordList, kube::Error> {
    let request = http::Request::get(path).body(Vec::new()).map_err(kube::Error::HttpError)?;
    client.request::<RecordList>(request).await
}

/// What the API server's own answer means for this group, where it is not the archive's: 404,
/// the API is not registered; 503, its server is not answering. None for the archive's own
/// refusals (their message says what is wrong) and for anything else.
pub fn unavailable(e: &kube::Error) -> Option<String> {
    let kube::Error::Api(status) = e else { return None };
    if status.details.as_ref().is_some_and(|d| d.group == GROUP) {
        return None;
    }
    match status.code {
        404 => Some(format!("the decision archive is not enabled in this cluster (the API server serves no {GROUP})")),
        503 => Some(format!(
            "the decision archive's server is not answering ({}); `kubectl get apiservice v1alpha1.{GROUP}` says why",
            status.message.trim()
        )),
        _ => None,
    }
}

/// What one record says, in the table's words; empty where it does not apply.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub when: String,
    pub namespace: String,
    pub workflow: String,
    /// `step`, or `step/item` for one item of a forEach gate.
    pub step: String,
    pub outcome: String,
    pub decided_by: String,
    pub comment: String,
}

pub fn row(record: &Stored) -> Row {
    let content = record.content_json();
    let text = |key: &str| content[key].as_str().unwrap_or_default().to_string();
    let when = |key: &str| content[key].as_str().unwrap_or(&record.recorded_at).to_string();
    let namespace = record.namespace.clone();
    match record.kind {
        Kind::Gate => Row {
            when: when("decidedAt"),
            namespace,
            workflow: text("workflow"),
            step: step(&content),
            outcome: text("outcome"),
            decided_by: text("decidedBy"),
            comment: text("comment"),
        },
        Kind::Run => Row {
            when: when("finishedAt"),
            namespace,
            workflow: text("workflow"),
            step: String::new(),
            outcome: text("phase"),
            decided_by: String::new(),
            comment: String::new(),
        },
        Kind::Checkpoint => Row {
            when: record.recorded_at.clone(),
            namespace,
            workflow: String::new(),
            step: String::new(),
            outcome: "Checkpoint".into(),
            decided_by: String::new(),
            comment: format!("retention removed {} records from before {}", content["deleted"], text("before")),
        },
    }
}

fn step(content: &Value) -> String {
    let step = content["step"].as_str().unwrap_or_default();
    match content["item"].as_i64() {
        Some(item) => format!("{step}/{item}"),
        None => step.to_string(),
    }
}
