//! A watch that survives objects it cannot read. A typed watch fails its whole list when one
//! object does not deserialize (say, a status value written by a newer version, after a
//! downgrade), and so would stop every Workflow. This one watches the objects untyped, converts
//! each on its own, and reports and leaves out the ones that fail. (`Controller::for_stream`, which
//! takes such a stream, sits behind kube's `unstable-runtime` feature; it has been stable in use.)

use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::Context;

/// A store of `K` and the stream of `K` that keeps it, for `Controller::for_stream`.
pub fn watch<K>(
    ctx: &Arc<Context>,
    config: watcher::Config,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    watch_notifying(ctx, config, None)
}

/// As `watch`, but the stream also yields the objects deleted (`touched_objects`): for a watch
/// that wakes their owners, which must see a child go as well as change.
pub fn watch_with_deletes<K>(
    ctx: &Arc<Context>,
    config: watcher::Config,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, stored) = reflected(ctx, config, None);
    (reader, stored.touched_objects())
}

/// As `watch`, also waking `changed` after every event (deletions included) has reached the
/// store, for a reader of the whole store (the inboxes).
pub fn watch_notifying<K>(
    ctx: &Arc<Context>,
    config: watcher::Config,
    changed: Option<Arc<tokio::sync::Notify>>,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, stored) = reflected(ctx, config, changed);
    (reader, stored.applied_objects())
}

/// The watch's events, each applied to the store before it is passed on.
fn reflected<K>(
    ctx: &Arc<Context>,
    config: watcher::Config,
    changed: Option<Arc<tokio::sync::Notify>>,
) -> (Store<K>, impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
        None => Api::all_with(ctx.client.clone(), &resource),
    };
    let (reader, writer) = reflector::store();
    let reporter = ctx.clone();
    let typed = watcher(api, config).default_backoff().try_filter_map(move |event| {
        let reporter = reporter.clone();
        async move { Ok(convert_event::<K>(event, &|obj, e| unreadable(&reporter, obj, e))) }
    });
    let stored = typed.reflect(writer).inspect(move |_| {
        if let Some(changed) = &changed {
            changed.notify_one();
        }
    });
    (reader, stored)
}

/// The event with its object typed, or None when the object does not deserialize (reported).
fn convert_event<K: DeserializeOwned>(
    event: watcher::Event<DynamicObject>,
    report: &dyn Fn(&DynamicObject, &serde_json::Error),
) -> Option<watcher::Event<K>> {
    let typed = |mut obj: DynamicObject| {
        slim(&mut obj);
        // Enough to name the object if it does not convert (`read` consumes it).
        let metadata = kube::api::ObjectMeta {
            name: obj.metadata.name.clone(),
            namespace: obj.metadata.namespace.clone(),
            uid: obj.metadata.uid.clone(),
            ..Default::default()
        };
        let identity = DynamicObject { types: obj.types.clone(), metadata, data: Default::default() };
        match read::<K>(obj) {
            Ok(k) => Some(k),
            Err(e) => {
                report(&identity, &e);
                None
            }
        }
    };
    Some(match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(typed(o)?),
        watcher::Event::Delete(o) => watcher::Event::Delete(typed(o)?),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(typed(o)?),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

/// Leaves out what no controller reads and the cache would keep for every object: managedFields
/// (never trusted: anyone who may patch an object may write them) and `kubectl apply`'s copy of
/// the whole object. Status writes replace the status only, so nothing left out is written back.
fn slim(obj: &mut DynamicObject) {
    obj.metadata.managed_fields = None;
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// One object, typed. Its fields are moved, not copied: a watch converts every object it sees.
pub fn read<K: DeserializeOwned>(obj: DynamicObject) -> Result<K, serde_json::Error> {
    let DynamicObject { types, metadata, data } = obj;
    let mut fields = match data {
        serde_json::Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    };
    if let Some(types) = types {
        fields.insert("apiVersion".into(), types.api_version.into());
        fields.insert("kind".into(), types.kind.into());
    }
    fields.insert("metadata".into(), serde_json::to_value(metadata)?);
    serde_json::from_value(serde_json::Value::Object(fields))
}

/// Tells, in the log and as an Event on the object, that it is left out and why.
fn unreadable(ctx: &Arc<Context>, obj: &DynamicObject, error: &serde_json::Error) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let namespace = obj.metadata.namespace.clone().unwrap_or_default();
    tracing::error!(%namespace, %name, %error, "object does not deserialize (written by another version?); skipped");
    ctx.metrics.failed("watch", "Unreadable");
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: obj.types.as_ref().map(|t| t.api_version.clone()),
        kind: obj.types.as_ref().map(|t| t.kind.clone()),
        name: Some(name),
        namespace: Some(namespace),
        uid: obj.metadata.uid.clone(),
        ..Default::default()
    };
    let note = format!("this object cannot be read by this version of hitl-operator and is left alone: {error}");
    let ctx = ctx.clone();
    tokio::spawn(async move { ctx.event_on(&reference, "Unreadable", note).await });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Workflow;
    use serde_json::json;

    fn dynamic(status_phase: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "hitl.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "w", "namespace": "ns"},
            "spec": {"steps": [{"name": "a", "sleep": "1s"}]},
            "status": {"phase": status_phase},
        }))
        .unwrap()
    }

    #[test]
    fn an_object_that_does_not_deserialize_is_reported_and_left_out() {
        let reported = std::cell::RefCell::new(vec![]);
        let report = |o: &DynamicObject, e: &serde_json::Error| {
            reported.borrow_mut().push(format!("{}: {e}", o.metadata.name.clone().unwrap()))
        };
        let good = convert_event::<Workflow>(watcher::Event::InitApply(dynamic("Running")), &report);
        assert!(matches!(good, Some(watcher::Event::InitApply(w)) if w.metadata.name.as_deref() == Some("w")));
        let bad = convert_event::<Workflow>(watcher::Event::InitApply(dynamic("Paused")), &report);
        assert!(bad.is_none());
        assert!(matches!(convert_event::<Workflow>(watcher::Event::InitDone, &report), Some(watcher::Event::InitDone)));
        let told = reported.into_inner();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].starts_with("w: unknown variant `Paused`"), "{told:?}");
    }

    #[test]
    fn the_cache_keeps_no_managed_fields_and_no_kubectl_copy() {
        let mut obj = dynamic("Running");
        obj.metadata.managed_fields = Some(vec![Default::default()]);
        obj.metadata.annotations = Some(
            [("kubectl.kubernetes.io/last-applied-configuration", "{...}"), ("hitl.dev/created-by", "alice")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let report = |_: &DynamicObject, e: &serde_json::Error| panic!("{e}");
        let Some(watcher::Event::Apply(w)) = convert_event::<Workflow>(watcher::Event::Apply(obj), &report) else {
            panic!("not converted")
        };
        assert!(w.metadata.managed_fields.is_none());
        let kept: Vec<_> = w.metadata.annotations.unwrap_or_default().into_keys().collect();
        assert_eq!(kept, ["hitl.dev/created-by"]);
        assert_eq!(w.status.and_then(|s| s.phase), Some(crate::api::WorkflowPhase::Running));
    }
}
