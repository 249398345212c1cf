//! Side effects: gather what exists, ask the engine, carry the plan out, write status.

pub mod approval;
pub mod cron;
pub mod events;
pub mod grants;
pub mod guard;
pub mod inbox_writer;
mod mounts;
pub mod notify;
mod notify_send;
pub mod notify_target;
mod observe;
pub mod outcomes;
pub mod pod_changes;
pub mod pods;
mod refusal;
pub mod settled;
pub mod step_pods;
pub mod templates;
pub mod tolerant;
pub mod workflow;
pub mod workspace;

#[cfg(test)]
mod mock_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::{Client, Resource, ResourceExt};

use crate::api::Workflow;
use crate::engine::event::Event;
use crate::error_category::ErrorCategory;
use refusal::Refusal;

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
    /// The cluster's Service and Pod ranges, which notifications may not reach (with loopback,
    /// link-local, unspecified and multicast addresses) unless the namespace owner lists the host.
    pub notify_ranges: crate::engine::notify_target::ClusterRanges,
    /// The decision archive's writer, when the archive is on.
    pub archive: Option<Arc<crate::archive::writer::Writer>>,
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

/// The object would outgrow what the API server stores.
pub fn too_large(e: &kube::Error) -> bool {
    refusal::of_error(e) == Refusal::TooLarge
}

impl Error {
    fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Kube(e) | Error::Create(e) => Some(refusal::of_error(e)),
            Error::NotOwned(_) => None,
        }
    }

    pub fn category(&self) -> &'static str {
        self.kind().as_str()
    }

    fn kind(&self) -> ErrorCategory {
        match (self, self.refusal()) {
            (_, Some(Refusal::MissingRight)) => ErrorCategory::Forbidden,
            (_, Some(Refusal::TooLarge)) => ErrorCategory::TooLarge,
            (Error::Kube(_), _) => ErrorCategory::KubeError,
            (Error::Create(_), _) => ErrorCategory::CreateFailed,
            (Error::NotOwned(_), _) => ErrorCategory::NameTaken,
        }
    }

    /// Retrying the same create will not help, so its step fails: the object is invalid,
    /// admission refused it, or its name is taken by another owner. An exceeded quota can clear
    /// up, and so can a right the operator lacks: those are retried, with backoff, and shown on
    /// the Workflow meanwhile.
    pub fn fails_step(&self) -> bool {
        match self {
            Error::NotOwned(_) => true,
            Error::Create(e) => refusal::of_error(e) == Refusal::ThisObject,
            Error::Kube(_) => false,
        }
    }
}

/// Shared by every reconcile: one client, one Event publisher.
pub struct Context {
    pub client: Client,
    pub events: Arc<events::Events>,
    pub config: Config,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub notifier: Arc<notify::Notifier>,
    /// The Workflow controller's own watch of step Pods (the one that triggers it): read before a
    /// GET, so a pass over a run with k running steps costs no k reads.
    pub pods: std::sync::OnceLock<kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Pod>>,
    /// The Workflow controller's store of Approvals (the watch that wakes it), for its passes.
    pub approvals: std::sync::OnceLock<kube::runtime::reflector::Store<crate::api::Approval>>,
    /// The Workflow controller's store, for the Approval pass's check of its gate.
    pub workflows: std::sync::OnceLock<kube::runtime::reflector::Store<Workflow>>,
    /// resourceVersion of our last status write per object UID, so a reconcile never acts on a
    /// cached object older than that write; with when it was written, so old entries go.
    last_write: Mutex<HashMap<String, (u64, Instant)>>,
    /// Consecutive failed reconciles per object, for backoff, with the last error's category and
    /// text (the next pass records it on the object: `Stalled`).
    failures: Mutex<HashMap<String, Failures>>,
    /// Watches that have not yet listed everything, over every watched namespace.
    unsynced: Arc<std::sync::atomic::AtomicUsize>,
    /// Digests of the Workflow specs (with their UIDs) that passed the engine's checks, so a
    /// pass need not check them again.
    checked_specs: Mutex<std::collections::HashSet<String>>,
    /// UIDs of decided Approvals whose evidence grants this process has taken back: done once,
    /// not on every later pass over them (each notification record write brings one).
    evidence_revoked: Mutex<std::collections::HashSet<String>>,
    /// Workflow passes that could only read back our own write, told apart (see settled).
    pub settled: settled::Settled,
    /// The user name the API server knows this operator by: what it records in `hitl.dev/created-by`
    /// of the Workflows the operator creates, so those are told apart from look-alikes.
    pub identity: String,
    /// Where the controllers hand the decision archive what concerns it (unset: no archive).
    pub archive: std::sync::OnceLock<crate::archive::writer::Feed>,
}

/// An object's run of failed reconciles.
#[derive(Default)]
struct Failures {
    count: u32,
    last: Option<(&'static str, String)>,
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
        identity: String,
        events: Arc<events::Events>,
    ) -> Arc<Self> {
        Arc::new(Self {
            events,
            client,
            config,
            metrics,
            notifier,
            pods: std::sync::OnceLock::new(),
            approvals: std::sync::OnceLock::new(),
            workflows: std::sync::OnceLock::new(),
            last_write: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            unsynced,
            identity,
            evidence_revoked: Mutex::new(Default::default()),
            checked_specs: Mutex::new(Default::default()),
            settled: Default::default(),
            archive: std::sync::OnceLock::new(),
        })
    }

    /// True when the cached object predates our own last write to it.
    pub fn is_stale<K: Resource>(&self, obj: &K) -> bool {
        let (Some(uid), Some(rv)) = (obj.meta().uid.as_ref(), resource_version(obj)) else {
            return false;
        };
        self.last_write.lock().expect("lock").get(uid).is_some_and(|&(w, _)| rv < w)
    }

    /// `ns/name` from a watch's store, when the store has it and its copy is not older than this
    /// process's own last write to it; None otherwise, and the caller reads the API server. A
    /// copy newer than our write but older than someone else's is acted on as a slightly earlier
    /// view: that change comes through the watch and brings another pass.
    pub fn cached<K>(&self, store: Option<&kube::runtime::reflector::Store<K>>, ns: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let found = store?.get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))?;
        (!self.is_stale(found.as_ref())).then(|| (*found).clone())
    }

    pub fn wrote<K: Resource>(&self, written: &K) {
        if let (Some(uid), Some(rv)) = (written.meta().uid.clone(), resource_version(written)) {
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
        self.settled.forget(uid);
    }

    /// The resourceVersion of this process's last write to the object of `uid`, if it is known.
    pub fn last_written(&self, uid: &str) -> Option<u64> {
        self.last_write.lock().expect("lock").get(uid).map(|&(rv, _)| rv)
    }

    /// Entries kept for staleness checks (for tests and metrics).
    pub fn tracked_writes(&self) -> usize {
        self.last_write.lock().expect("lock").len()
    }

    /// Whether the spec of this digest already passed the engine's checks.
    pub fn spec_checked(&self, digest: &str) -> crate::engine::plan::SpecChecked {
        use crate::engine::plan::SpecChecked;
        if self.checked_specs.lock().expect("lock").contains(digest) { SpecChecked::Yes } else { SpecChecked::No }
    }

    /// Remembers that it did. Bounded: forgetting costs one more check.
    pub fn spec_passed(&self, digest: String) {
        let mut checked = self.checked_specs.lock().expect("lock");
        if checked.len() >= 8192 {
            checked.clear();
        }
        checked.insert(digest);
    }

    /// Whether this process has already taken back the evidence grants of Approval `uid`.
    pub fn evidence_revoked(&self, uid: &str) -> bool {
        self.evidence_revoked.lock().expect("lock").contains(uid)
    }

    /// Records that it has. Bounded: forgetting costs one more round of DELETEs answered 404.
    pub fn revoked_evidence(&self, uid: &str) {
        let mut revoked = self.evidence_revoked.lock().expect("lock");
        if revoked.len() >= 4096 {
            revoked.clear();
        }
        revoked.insert(uid.to_string());
    }

    /// Counts a failed reconcile of `key` and says how long to wait before the next one:
    /// exponential from 200 ms, at most 5 minutes, with up to 25% jitter so that many objects
    /// failing for one cause do not retry in step.
    pub fn failed(&self, key: &str, err: &Error) -> (u32, Duration) {
        let mut failures = self.failures.lock().expect("lock");
        let f = failures.entry(key.to_string()).or_default();
        f.count = f.count.saturating_add(1);
        f.last = Some((err.category(), err.to_string()));
        (f.count, backoff(f.count, key))
    }

    /// Why `key` cannot make progress, once it failed twice in a row (one failure may be a blip).
    pub fn stalled(&self, key: &str) -> Option<(&'static str, String)> {
        let failures = self.failures.lock().expect("lock");
        failures.get(key).filter(|f| f.count >= 2).and_then(|f| f.last.clone())
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
        let e = events::Note { warning: true, reason, note };
        self.metrics.write("event");
        if let Err(err) = self.events.publish(&e, reference).await {
            tracing::warn!(reason, error = %err, "recording an event failed");
        }
    }

    /// Records an Event on `obj`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, ev: &Event) {
        let e = events::Note { warning: ev.warning, reason: ev.reason, note: ev.note.chars().take(1000).collect() };
        self.metrics.write("event");
        if let Err(err) = self.events.publish(&e, &obj.object_ref(&())).await {
            tracing::warn!(reason = ev.reason, error = %err, "recording an event failed");
        }
    }
}

/// An object's resourceVersion as a number (the API server's are; a client only compares them
/// with its own writes to the same object).
pub fn resource_version<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_ref()?.parse().ok()
}

/// Tells the people who look at the object (`kubectl describe`) why its reconcile failed: a
/// Warning Event with the error's category as reason. Repeats fold into a series (see events).
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
pub async fn create_if_absent<K>(api: &kube::Api<K>, wf: &Workflow, child: &K) -> Result<Created, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = kube::api::PostParams { field_manager: Some(pods::MANAGER.into()), ..Default::default() };
    match api.create(&pp, child).await {
        Ok(_) => Ok(Created::New),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&child.name_any()).await.map_err(Error::Kube)?;
            check_owner(wf, &existing).map(|()| Created::Existing)
        }
        Err(e) => Err(Error::Create(e)),
    }
}

/// What `create_if_absent` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    /// Ours already (an earlier pass, or a replica that led before this one, created it): it may
    /// have moved on since, which the plan that asked for it could not know.
    Existing,
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
    // One publisher for the process: it folds repeated Events into a series, across every set.
    let events = Arc::new(events::Events::new(client.clone(), "hitl-operator", std::env::var("POD_NAME").ok()));
    let sets = scopes.into_iter().map(|namespace| {
        let config = Config { namespace, ..config.clone() };
        run_in(client.clone(), config, metrics.clone(), unsynced.clone(), events.clone())
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
    events: Arc<events::Events>,
) {
    let identity = preflight(&client, &config, &metrics).await;
    metrics.set_not_ready("waiting for the watches of Workflows, Approvals and step Pods to sync");
    let (notifier, jobs, channels) = notify::Notifier::new(&client, &config);
    let (feed, fed) = config.archive.clone().map(crate::archive::writer::feed).unzip();
    let ctx = Context::new(client, config, metrics, notifier, unsynced, identity, events);
    if let Some(feed) = feed {
        let _ = ctx.archive.set(feed);
    }
    let changed = Arc::new(tokio::sync::Notify::new());
    let (approvals, approval_events) = approval::watch(&ctx, changed.clone());
    let approvals_for_archive = approvals.clone();
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
    let archiving = archive_writer(&ctx, fed, approvals_for_archive);
    tokio::select! {
        _ = controllers => {}
        _ = delivery => {}
        _ = inboxes => {}
        _ = archiving => {}
    }
}

/// The decision archive's writer, fed by this set's controllers and reading their stores (the
/// Workflow controller's is there once it started).
async fn archive_writer(
    ctx: &Arc<Context>,
    fed: Option<crate::archive::writer::Fed>,
    approvals: kube::runtime::reflector::Store<crate::api::Approval>,
) {
    let (Some(fed), Some(writer)) = (fed, ctx.config.archive.clone()) else {
        return futures::future::pending().await;
    };
    let workflows = loop {
        match ctx.workflows.get() {
            Some(store) => break store.clone(),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    crate::archive::writer::run(writer, fed, workflows, approvals).await
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
async fn preflight(client: &Client, config: &Config, metrics: &crate::metrics::Metrics) -> String {
    let lp = kube::api::ListParams::default().limit(1);
    loop {
        let workflows: kube::Api<Workflow> = api_in(client, config);
        let approvals: kube::Api<crate::api::Approval> = api_in(client, config);
        let problem = match futures::try_join!(workflows.list_metadata(&lp), approvals.list_metadata(&lp), whoami(client)) {
            Ok((_, _, identity)) => return identity,
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

/// The user name the API server authenticates this operator as (a SelfSubjectReview, which every
/// authenticated user may create).
async fn whoami(client: &Client) -> Result<String, kube::Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let reviews: kube::Api<SelfSubjectReview> = kube::Api::all(client.clone());
    let review = reviews.create(&kube::api::PostParams::default(), &SelfSubjectReview::default()).await?;
    Ok(review.status.and_then(|s| s.user_info).and_then(|u| u.username).unwrap_or_default())
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
