//! Side effects: gather what exists, ask the engine, carry the plan out, write status.

pub mod approval;
pub mod cron;
pub mod grants;
pub mod guard;
pub mod inbox_writer;
mod mounts;
pub mod notify;
mod observe;
pub mod outcomes;
pub mod pods;
pub mod step_pods;
pub mod templates;
pub mod tolerant;
pub mod workflow;
pub mod workspace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use crate::api::Workflow;
use crate::engine::event::Event;
use crate::error_category::ErrorCategory;

/// Operator settings, from flags and environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// The namespaces to watch; empty: all namespaces.
    pub namespaces: Vec<String>,
    /// The one namespace a set of controllers watches (None: all). `run` sets it for each set
    /// it starts, from `namespaces`.
    pub namespace: Option<String>,
    /// Workflows reconciled at once.
    pub concurrency: u16,
    /// Give each gate's approvers `get`/`patch` on that one Approval through a Role it owns.
    pub per_gate_grants: bool,
    /// Keep an ApprovalInbox per approver, readable by that approver alone.
    pub inboxes: bool,
    /// The longest a notification request may take (connect, send, answer).
    pub notify_timeout: Duration,
    /// Notifications sent at once.
    pub notify_workers: u16,
}

/// Errors of one reconcile. Each has a static category, used as Event reason and log field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {}", said(.0))]
    Kube(#[source] kube::Error),
    #[error("creating a child object: {}", said(.0))]
    Create(#[source] kube::Error),
    #[error("{0}")]
    NotOwned(String),
}

/// What the API server said, as it said it (not a debug dump of the whole Status).
fn said(e: &kube::Error) -> String {
    match api_status(e) {
        Some(s) => format!("{} ({})", s.message, s.code),
        None => e.to_string(),
    }
}

/// The API server's answer to a failed request, if it gave one.
fn api_status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

/// RBAC refused the operator (`... cannot create resource "pods" ...`): a right is missing, and
/// granting it fixes things, unlike an admission policy's refusal of this one object. So does a
/// ServiceAccount that does not exist yet (a new namespace gets its `default` one a moment later).
fn missing_right(s: &kube::core::Status) -> bool {
    s.code == 403 && (s.message.contains(" cannot ") || s.message.contains("error looking up service account"))
}

/// The object would outgrow what the API server stores (etcd's request limit, or 413).
pub fn too_large(e: &kube::Error) -> bool {
    api_status(e).is_some_and(|s| s.code == 413 || s.message.contains("too large"))
}

impl Error {
    fn status(&self) -> Option<&kube::core::Status> {
        match self {
            Error::Kube(e) | Error::Create(e) => api_status(e),
            Error::NotOwned(_) => None,
        }
    }

    pub fn category(&self) -> &'static str {
        self.kind().as_str()
    }

    fn kind(&self) -> ErrorCategory {
        match (self, self.status()) {
            (_, Some(s)) if missing_right(s) => ErrorCategory::Forbidden,
            (Error::Kube(e) | Error::Create(e), _) if too_large(e) => ErrorCategory::TooLarge,
            (Error::Kube(_), _) => ErrorCategory::KubeError,
            (Error::Create(_), _) => ErrorCategory::CreateFailed,
            (Error::NotOwned(_), _) => ErrorCategory::NameTaken,
        }
    }

    /// Retrying the same create will not help, so its step fails: the object is invalid (400/422),
    /// admission refused it (403, e.g. Pod Security), or its name is taken by another owner.
    /// An exceeded quota (also 403) can clear up, and so can a right the operator lacks (RBAC's
    /// 403): those are retried, with backoff, and shown on the Workflow meanwhile.
    pub fn fails_step(&self) -> bool {
        match self {
            Error::NotOwned(_) => true,
            Error::Create(kube::Error::Api(s)) => {
                matches!(s.code, 400 | 422)
                    || (s.code == 403 && !s.message.contains("exceeded quota") && !missing_right(s))
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
    pub notifier: Arc<notify::Notifier>,
    /// The Workflow controller's own watch of step Pods (the one that triggers it): read before a
    /// GET, so a pass over a run with k running steps costs no k reads.
    pub pods: std::sync::OnceLock<kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>>,
    /// resourceVersion of our last status write per object UID, so a reconcile never acts on a
    /// cached object older than that write; with when it was written, so old entries go.
    last_write: Mutex<HashMap<String, (u64, Instant)>>,
    /// Consecutive failed reconciles per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Watches that have not yet listed everything, over every watched namespace.
    unsynced: Arc<std::sync::atomic::AtomicUsize>,
}

/// A write older than this has reached every watch long ago: its entry is of no more use.
const LAST_WRITE_KEPT: Duration = Duration::from_secs(300);

impl Context {
    pub fn new(
        client: Client,
        config: Config,
        metrics: Arc<crate::metrics::Metrics>,
        notifier: Arc<notify::Notifier>,
        unsynced: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Arc<Self> {
        let reporter = Reporter { controller: "hitl-operator".into(), instance: std::env::var("POD_NAME").ok() };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            notifier,
            pods: std::sync::OnceLock::new(),
            last_write: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            unsynced,
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
        self.last_write.lock().expect("lock").get(uid).is_some_and(|&(w, _)| rv < w)
    }

    pub fn wrote<K: Resource>(&self, written: &K) {
        if let (Some(uid), Some(Ok(rv))) =
            (written.meta().uid.clone(), written.meta().resource_version.as_ref().map(|r| r.parse::<u64>()))
        {
            let mut last = self.last_write.lock().expect("lock");
            // Objects deleted without a finalizer are never reconciled again: prune by age.
            if last.len() >= 1024 {
                last.retain(|_, (_, at)| at.elapsed() < LAST_WRITE_KEPT);
            }
            last.insert(uid, (rv, Instant::now()));
        }
    }

    pub fn forget(&self, uid: &str) {
        self.last_write.lock().expect("lock").remove(uid);
    }

    /// Entries kept for staleness checks (for tests and metrics).
    pub fn tracked_writes(&self) -> usize {
        self.last_write.lock().expect("lock").len()
    }

    /// Counts a failed reconcile of `key` and says how long to wait before the next one:
    /// exponential from 200 ms, at most 5 minutes, with up to 25% jitter so that many objects
    /// failing for one cause do not retry in step.
    pub fn failed(&self, key: &str) -> (u32, Duration) {
        let mut failures = self.failures.lock().expect("lock");
        let n = failures.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        (*n, backoff(*n, key))
    }

    /// A reconcile of `key` succeeded: its backoff starts over.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("lock").remove(key);
    }

    /// Records an Event on the object `reference` names; failures are logged, never fatal.
    pub async fn event_on(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        reason: &'static str,
        note: String,
    ) {
        let e = KubeEvent {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.metrics.write("event");
        if let Err(err) = self.recorder.publish(&e, reference).await {
            tracing::warn!(reason, error = %err, "recording an event failed");
        }
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

/// Tells the people who look at the object (`kubectl describe`) why its reconcile failed: a
/// Warning Event with the error's category as reason. The recorder folds repeats into a series.
pub fn report_error<K>(ctx: Arc<Context>, obj: Arc<K>, err: &Error)
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    let ev = Event { warning: true, reason: err.category(), note: err.to_string() };
    tokio::spawn(async move { ctx.event(obj.as_ref(), &ev).await });
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

/// The wait after the `n`th consecutive failure.
fn backoff(n: u32, key: &str) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1u32 << n.saturating_sub(1).min(12));
    let capped = base.min(Duration::from_secs(300));
    // Jitter from the key and the clock: no random source needed, different per object and time.
    let seed = key
        .bytes()
        .fold(Instant::now().elapsed().subsec_nanos() ^ std::process::id(), |h, b| h.rotate_left(5) ^ u32::from(b))
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    capped + capped.mul_f64(f64::from(seed % 1000) / 4000.0)
}

/// Which object a backoff counter belongs to.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// How long until `at`, for a requeue.
pub fn until(at: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    let d = at.duration_since(now);
    Duration::try_from(d).unwrap_or(Duration::ZERO) + Duration::from_millis(10)
}

/// Runs the controllers until a shutdown signal: one set per watched namespace (the API offers no
/// watch over a list of namespaces), or one over all namespaces. /readyz turns green once every
/// set's watches have listed everything; until then it says what it waits for.
pub async fn run(client: Client, config: Config, metrics: Arc<crate::metrics::Metrics>) {
    let scopes: Vec<Option<String>> =
        if config.namespaces.is_empty() { vec![None] } else { config.namespaces.iter().cloned().map(Some).collect() };
    let unsynced = Arc::new(std::sync::atomic::AtomicUsize::new(WATCHES * scopes.len()));
    let sets = scopes.into_iter().map(|namespace| {
        let config = Config { namespace, ..config.clone() };
        run_in(client.clone(), config, metrics.clone(), unsynced.clone())
    });
    futures::future::join_all(sets).await;
}

/// Watches each set of controllers waits for: Workflows, Approvals, step Pods.
const WATCHES: usize = 3;

/// The controllers of one namespace (or of all, when `config.namespace` is None).
async fn run_in(
    client: Client,
    config: Config,
    metrics: Arc<crate::metrics::Metrics>,
    unsynced: Arc<std::sync::atomic::AtomicUsize>,
) {
    preflight(&client, &config, &metrics).await;
    metrics.set_not_ready("waiting for the watches of Workflows, Approvals and step Pods to sync");
    let (notifier, jobs, channels) = notify::Notifier::new(&client, &config);
    let ctx = Context::new(client, config, metrics, notifier, unsynced);
    let changed = Arc::new(tokio::sync::Notify::new());
    let (approvals, approval_events) = approval::watch(&ctx, changed.clone());
    let approval_controller = approval::run(ctx.clone(), approvals.clone(), approval_events);
    let step_pods = step_pods::watch(&ctx);
    let controllers = async {
        futures::join!(
            workflow::run(ctx.clone(), step_pods.for_workflows),
            approval_controller,
            outcomes::run(ctx.clone(), step_pods.store, step_pods.held),
            cron::run(ctx.clone())
        );
    };
    // Delivery and the inboxes run as long as the controllers do; what is in flight at shutdown
    // was not recorded as delivered, so the next leader sends it again (same key), and the
    // next leader computes the inboxes afresh.
    let delivery = async { futures::join!(channels, notify::run_workers(ctx.clone(), jobs)) };
    let inboxes = async {
        if ctx.config.inboxes {
            inbox_writer::run(ctx.clone(), approvals, changed).await
        } else {
            futures::future::pending().await
        }
    };
    tokio::select! {
        _ = controllers => {}
        _ = delivery => {}
        _ = inboxes => {}
    }
}

/// What a controller stream yields: reconciled objects, or errors of the machinery around the
/// reconciles (a watch that failed, an object the queue could not handle). Logged, never dropped.
pub async fn log_result<K, E1, E2>(
    result: Result<
        (kube::runtime::reflector::ObjectRef<K>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<E1, E2>,
    >,
) where
    K: Resource,
    K::DynamicType: Eq + std::hash::Hash + Clone,
    E1: std::error::Error + 'static,
    E2: std::error::Error + 'static,
{
    match result {
        Ok((obj, _)) => tracing::trace!(object = %obj, "reconciled"),
        // The reconcile's own errors are logged by the error policies.
        Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
        Err(e) => tracing::warn!(error = %e, "controller stream error"),
    }
}

/// Marks the operator ready once `store` (one controller's watch) has listed everything and the
/// other controllers' have too.
pub fn ready_when_synced<K>(ctx: Arc<Context>, store: kube::runtime::reflector::Store<K>)
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    tokio::spawn(async move {
        // A store wakes only the last task that waited on it (a oneshot inside), and the
        // controller waits on it too: look again every 100 ms rather than wait to be woken.
        loop {
            match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
        if ctx.unsynced.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            ctx.metrics.set_ready();
            tracing::info!("watches synced: ready");
        }
    });
}

/// Waits until the operator can list what it reconciles, saying plainly (log and /readyz) what
/// is missing: the CRDs, or a right.
async fn preflight(client: &Client, config: &Config, metrics: &crate::metrics::Metrics) {
    let lp = kube::api::ListParams::default().limit(1);
    loop {
        let workflows: kube::Api<Workflow> = api_in(client, config);
        let approvals: kube::Api<crate::api::Approval> = api_in(client, config);
        let problem = match futures::try_join!(workflows.list_metadata(&lp), approvals.list_metadata(&lp)) {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                "the CRDs workflows.hitl.dev and approvals.hitl.dev are not installed (kubectl apply --server-side -f crds/, or the Helm chart)".to_string()
            }
            Err(kube::Error::Api(s)) if s.code == 403 => format!("a right is missing: {}", s.message),
            Err(e) => format!("the API server cannot be read: {e}"),
        };
        tracing::error!(problem = %problem, "not ready; checking again in 5s");
        metrics.set_not_ready(problem);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// An Api over the watched namespace, or all namespaces.
pub fn api_in<K>(client: &Client, config: &Config) -> kube::Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &config.namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let waits: Vec<Duration> = (1..=20).map(|n| backoff(n, "Workflow/ns/w")).collect();
        assert!(waits[0] >= Duration::from_millis(200) && waits[0] <= Duration::from_millis(250), "{:?}", waits[0]);
        assert!(waits[3] >= Duration::from_millis(1600), "{:?}", waits[3]);
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(375)), "{waits:?}");
        assert!(waits[19] >= Duration::from_secs(300), "capped at 5 minutes plus jitter: {:?}", waits[19]);
    }
}
