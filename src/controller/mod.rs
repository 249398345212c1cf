//! Side effects: gather what exists, ask the engine, carry the plan out, write status.

pub mod approval;
pub mod grants;
pub mod guard;
pub mod pods;
pub mod workflow;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use crate::api::Workflow;
use crate::engine::plan::Event;

/// Operator settings, from flags and environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch only this namespace; None: all namespaces.
    pub namespace: Option<String>,
    /// Workflows reconciled at once.
    pub concurrency: u16,
    /// Give each gate's approvers `get`/`patch` on that one Approval through a Role it owns.
    pub per_gate_grants: bool,
}

/// Errors of one reconcile. Each has a static category, used as Event reason and log field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("creating a child object: {0}")]
    Create(#[source] kube::Error),
    #[error("{0}")]
    NotOwned(String),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeError",
            Error::Create(_) => "CreateFailed",
            Error::NotOwned(_) => "NameTaken",
        }
    }
    /// Retrying the same create will not help, so its step fails: the object is invalid (400/422),
    /// admission refused it (403, e.g. Pod Security), or its name is taken by another owner.
    /// An exceeded quota (also 403) can clear up, so that is retried instead.
    pub fn fails_step(&self) -> bool {
        match self {
            Error::NotOwned(_) => true,
            Error::Create(kube::Error::Api(s)) => {
                matches!(s.code, 400 | 422) || (s.code == 403 && !s.message.contains("exceeded quota"))
            }
            _ => false,
        }
    }
}

/// Shared by every reconcile: one client, one event recorder.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub config: Config,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// resourceVersion of our last status write per object UID, so a reconcile never acts on a
    /// cached object older than that write.
    last_write: Mutex<HashMap<String, u64>>,
}

impl Context {
    pub fn new(client: Client, config: Config, metrics: Arc<crate::metrics::Metrics>) -> Arc<Self> {
        let reporter = Reporter { controller: "hitl-operator".into(), instance: std::env::var("POD_NAME").ok() };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            last_write: Mutex::new(HashMap::new()),
        })
    }

    /// True when the cached object predates our own last write to it.
    pub fn is_stale<K: Resource>(&self, obj: &K) -> bool {
        let (Some(uid), Some(rv)) = (obj.meta().uid.as_ref(), obj.meta().resource_version.as_ref()) else {
            return false;
        };
        let Ok(rv) = rv.parse::<u64>() else {
            return false;
        };
        self.last_write.lock().expect("lock").get(uid).is_some_and(|&w| rv < w)
    }

    pub fn wrote<K: Resource>(&self, written: &K) {
        if let (Some(uid), Some(Ok(rv))) =
            (written.meta().uid.clone(), written.meta().resource_version.as_ref().map(|r| r.parse::<u64>()))
        {
            self.last_write.lock().expect("lock").insert(uid, rv);
        }
    }

    pub fn forget(&self, uid: &str) {
        self.last_write.lock().expect("lock").remove(uid);
    }

    /// Records an Event on `obj`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, ev: &Event) {
        let e = KubeEvent {
            type_: if ev.warning { EventType::Warning } else { EventType::Normal },
            reason: ev.reason.into(),
            note: Some(ev.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.metrics.write("event");
        if let Err(err) = self.recorder.publish(&e, &obj.object_ref(&())).await {
            tracing::warn!(reason = ev.reason, error = %err, "recording an event failed");
        }
    }
}

/// A child found under our deterministic name must be ours; anything else is reported, never
/// adopted.
pub fn check_owner<K: Resource<DynamicType = ()>>(wf: &Workflow, child: &K) -> Result<(), Error> {
    let uid = wf.uid().unwrap_or_default();
    let owned = child.meta().owner_references.iter().flatten().any(|o| o.uid == uid);
    if owned {
        Ok(())
    } else {
        Err(Error::NotOwned(format!(
            "{} {} exists but does not belong to this Workflow; delete it or rename the Workflow",
            K::kind(&()),
            child.meta().name.clone().unwrap_or_default()
        )))
    }
}

/// Creates a child unless it exists. An existing object counts only if this Workflow owns it: one
/// of the same name left by another owner is an error, never adopted.
pub async fn create_if_absent<K>(api: &kube::Api<K>, wf: &Workflow, child: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = kube::api::PostParams { field_manager: Some(pods::MANAGER.into()), ..Default::default() };
    match api.create(&pp, child).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&child.name_any()).await.map_err(Error::Kube)?;
            check_owner(wf, &existing)
        }
        Err(e) => Err(Error::Create(e)),
    }
}

/// What a status write came to.
pub enum Written {
    Done,
    /// Someone changed the object since we read it (409) or it is gone (404): nothing was written,
    /// and a watch event with the newer state is on its way.
    Stale,
}

/// Replaces `obj`'s status. The PUT carries the resourceVersion we read, so a concurrent change
/// makes it fail instead of being overwritten.
pub async fn write_status<K>(ctx: &Context, obj: &K, kind: &'static str) -> Result<Written, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: kube::Api<K> = kube::Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let mut body = obj.clone();
    body.meta_mut().managed_fields = None;
    ctx.metrics.write(kind);
    let pp = kube::api::PostParams { field_manager: Some(pods::MANAGER.into()), ..Default::default() };
    match api.replace_status(&obj.name_any(), &pp, &body).await {
        Ok(written) => {
            ctx.wrote(&written);
            Ok(Written::Done)
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(Written::Stale),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// How long until `at`, for a requeue.
pub fn until(at: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    let d = at.duration_since(now);
    Duration::try_from(d).unwrap_or(Duration::ZERO) + Duration::from_millis(10)
}

/// Runs both controllers until a shutdown signal.
pub async fn run(client: Client, config: Config, metrics: Arc<crate::metrics::Metrics>) {
    let ctx = Context::new(client, config, metrics);
    futures::join!(workflow::run(ctx.clone()), approval::run(ctx));
}
