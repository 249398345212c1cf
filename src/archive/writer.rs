//! Writes the archive: a gate's record once it is decided, expired or cancelled (the Approval's
//! pass), and the run's record once it finished or is deleted (the Workflow's pass). A Workflow
//! carries the `hitl.dev/archive` finalizer while it runs, released once every record of it is
//! stored, so neither its TTL nor a `kubectl delete` takes a decision away unrecorded. With the
//! database away, runs go on; the records wait (retried every 5 s), the backlog metric counts
//! them, and a finished run that waits says so in its `Archived` condition.
//!
//! The writer has no watches of its own: the operator's Workflow and Approval controllers hand it
//! the objects that concern it (`Feed`), and it reads them from those controllers' stores. A
//! second pair of watches would decode every change twice and keep every object twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hitl_engine::archive::{Kind, record};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::store::{Archive, Outcome};
use crate::api::{Approval, ApprovalPhase, Workflow};
use crate::metrics::Metrics;

/// Held on a Workflow until its records are stored.
pub const FINALIZER: &str = "hitl.dev/archive";

/// Stored UIDs remembered, so a repeat pass costs no query; past this the memory starts over.
const REMEMBERED: usize = 10_000;

/// What one pass could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the archive's database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub struct Writer {
    client: Client,
    archive: Archive,
    metrics: Arc<Metrics>,
    /// The field manager of the operator's status writes (the `Archived` condition).
    pub(super) manager: &'static str,
    stored: Mutex<HashSet<String>>,
    waiting: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("archive::Writer")
    }
}

impl Writer {
    pub fn new(client: Client, archive: Archive, metrics: Arc<Metrics>, manager: &'static str) -> Arc<Self> {
        Arc::new(Self { client, archive, metrics, manager, stored: Mutex::default(), waiting: Mutex::default() })
    }

    /// Whether this process stored the record of `uid` already.
    fn has_stored(&self, uid: &str) -> bool {
        self.stored.lock().expect("lock").contains(uid)
    }

    /// Stores one record unless this process stored it already; counts what happened.
    async fn store(&self, namespace: &str, kind: Kind, uid: &str, content: &str) -> Result<(), Error> {
        if self.has_stored(uid) {
            return Ok(());
        }
        match self.archive.store(namespace, kind, uid, content).await {
            Ok(outcome) => {
                let result = if outcome == Outcome::Added { "stored" } else { "already" };
                self.metrics.archived(kind.as_str(), result);
                self.remember(uid);
                Ok(())
            }
            Err(e) => {
                self.metrics.archived(kind.as_str(), "failed");
                self.wait_for_database(uid, true);
                Err(e.into())
            }
        }
    }

    fn remember(&self, uid: &str) {
        let mut stored = self.stored.lock().expect("lock");
        if stored.len() >= REMEMBERED {
            stored.clear();
        }
        stored.insert(uid.to_string());
        drop(stored);
        self.wait_for_database(uid, false);
    }

    /// Keeps the backlog gauge: `uid`'s record waits for the database, or no longer does.
    fn wait_for_database(&self, uid: &str, waits: bool) {
        let mut waiting = self.waiting.lock().expect("lock");
        if waits {
            waiting.insert(uid.to_string());
        } else {
            waiting.remove(uid);
        }
        self.metrics.archive_backlog.set(waiting.len() as i64);
    }
}

/// What the controllers hand the writer: references to Workflows and Approvals it must look at.
/// Sending never waits, so the controllers' passes never wait for the archive.
#[derive(Clone, Debug)]
pub struct Feed {
    workflows: mpsc::UnboundedSender<ObjectRef<Workflow>>,
    approvals: mpsc::UnboundedSender<ObjectRef<Approval>>,
    writer: Arc<Writer>,
}

/// The receiving ends of a `Feed`, for `run`.
pub struct Fed {
    workflows: mpsc::UnboundedReceiver<ObjectRef<Workflow>>,
    approvals: mpsc::UnboundedReceiver<ObjectRef<Approval>>,
}

pub fn feed(writer: Arc<Writer>) -> (Feed, Fed) {
    let (workflows, workflows_fed) = mpsc::unbounded_channel();
    let (approvals, approvals_fed) = mpsc::unbounded_channel();
    (Feed { workflows, approvals, writer }, Fed { workflows: workflows_fed, approvals: approvals_fed })
}

impl Feed {
    /// A Workflow the Workflow controller saw: passed on when it must be held, or its records
    /// stored and the hold released. Cheap when neither.
    pub fn workflow(&self, wf: &Workflow) {
        let held = wf.finalizers().iter().any(|f| f == FINALIZER);
        let ended = wf.metadata.deletion_timestamp.is_some()
            || wf.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_terminal());
        if held == ended {
            let _ = self.workflows.send(ObjectRef::from_obj(wf));
        }
    }

    /// An Approval the Approval controller saw: passed on once it is decided and not yet stored.
    pub fn approval(&self, approval: &Approval) {
        let decided = approval.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p != ApprovalPhase::Pending);
        if decided && !approval.uid().is_some_and(|uid| self.writer.has_stored(&uid)) {
            let _ = self.approvals.send(ObjectRef::from_obj(approval));
        }
    }
}

/// Both passes, over the objects the feed names, read from the controllers' stores; until the
/// controllers stop (the feed's senders go with them).
pub async fn run(writer: Arc<Writer>, fed: Fed, workflows: Store<Workflow>, approvals: Store<Approval>) {
    let gates =
        Controller::for_stream(futures::stream::pending::<Result<Approval, watcher::Error>>(), approvals.clone())
            .reconcile_on(received(fed.approvals))
            .run(gate_pass, retry, writer.clone())
            .for_each(|_| async {});
    let context = Arc::new(RunContext { writer, approvals });
    let runs = Controller::for_stream(futures::stream::pending::<Result<Workflow, watcher::Error>>(), workflows)
        .reconcile_on(received(fed.workflows))
        .run(run_pass, retry, context)
        .for_each(|_| async {});
    futures::join!(gates, runs);
}

fn received<T>(mut receiver: mpsc::UnboundedReceiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// What the run pass reads besides the Workflow: the Approvals of its gates.
struct RunContext {
    writer: Arc<Writer>,
    approvals: Store<Approval>,
}

fn retry<K: kube::Resource, C>(obj: Arc<K>, err: &Error, _: Arc<C>) -> Action {
    warn!(error = %err, object = obj.meta().name.as_deref().unwrap_or_default(), "archive write failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// A decided gate goes into the archive at once.
async fn gate_pass(approval: Arc<Approval>, writer: Arc<Writer>) -> Result<Action, Error> {
    let (Some(content), Some(uid)) = (record::gate(&approval), approval.uid()) else {
        return Ok(Action::await_change());
    };
    writer.store(&approval.namespace().unwrap_or_default(), Kind::Gate, &uid, &content).await?;
    Ok(Action::await_change())
}

/// Holds a running Workflow; once it finished or is deleted, stores its gates and itself, then
/// lets it go.
async fn run_pass(wf: Arc<Workflow>, context: Arc<RunContext>) -> Result<Action, Error> {
    let writer = &context.writer;
    let finished = wf.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_terminal());
    let deleting = wf.metadata.deletion_timestamp.is_some();
    let held = wf.finalizers().iter().any(|f| f == FINALIZER);
    let api: Api<Workflow> = Api::namespaced(writer.client.clone(), &wf.namespace().unwrap_or_default());
    if !finished && !deleting {
        if !held {
            hold(&api, &wf).await?;
        }
        return Ok(Action::await_change());
    }
    if !held {
        // Released already (or never held: the archive came after the run).
        return Ok(Action::await_change());
    }
    let approvals = gates_of(&context.approvals, &wf);
    // A finished run's last pass cancels its open gates; their records come with that.
    if !deleting && approvals.iter().any(pending) {
        return Ok(Action::requeue(Duration::from_millis(250)));
    }
    if let Err(e) = store_all(writer, &wf, &approvals).await {
        super::condition::waiting(&api, &wf, writer.manager, &e.to_string()).await;
        return Err(e);
    }
    super::condition::stored(&api, &wf, writer.manager).await;
    release(&api, &wf).await?;
    info!(workflow = %wf.name_any(), gates = approvals.len(), "archived; finalizer released");
    Ok(Action::await_change())
}

fn pending(approval: &Approval) -> bool {
    approval.status.as_ref().and_then(|s| s.phase).is_none_or(|p| p == ApprovalPhase::Pending)
}

async fn store_all(writer: &Writer, wf: &Workflow, approvals: &[Approval]) -> Result<(), Error> {
    let namespace = wf.namespace().unwrap_or_default();
    for approval in approvals {
        if let (Some(content), Some(uid)) = (record::gate(approval), approval.uid()) {
            writer.store(&namespace, Kind::Gate, &uid, &content).await?;
        }
    }
    if let (Some(content), Some(uid)) = (record::run(wf), wf.uid()) {
        writer.store(&namespace, Kind::Run, &uid, &content).await?;
    }
    Ok(())
}

/// The run's Approvals, from the Approval controller's store: the run reached its end through
/// the same store's view of them, so none it ended with is missing there. A gate the run's last
/// pass cancelled may show Pending a moment longer; the pass then waits for it.
fn gates_of(approvals: &Store<Approval>, wf: &Workflow) -> Vec<Approval> {
    let uid = wf.uid().unwrap_or_default();
    let namespace = wf.namespace();
    approvals
        .state()
        .iter()
        .filter(|a| a.namespace() == namespace && a.owner_references().iter().any(|o| o.uid == uid))
        .map(|a| (**a).clone())
        .collect()
}

/// Adds the finalizer, unless the Workflow changed meanwhile (the next pass sees it again).
async fn hold(api: &Api<Workflow>, wf: &Workflow) -> Result<(), Error> {
    let add = match wf.metadata.finalizers.as_ref() {
        Some(_) => serde_json::json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}),
        None => serde_json::json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}),
    };
    let rv = wf.resource_version().unwrap_or_default();
    let ops = serde_json::json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv}, add]);
    patch_metadata(api, wf, ops).await
}

async fn release(api: &Api<Workflow>, wf: &Workflow) -> Result<(), Error> {
    let Some(at) = wf.finalizers().iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let path = format!("/metadata/finalizers/{at}");
    let ops = serde_json::json!([{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}]);
    patch_metadata(api, wf, ops).await
}

/// A JSON patch of the Workflow's metadata; a failed `test` or a gone Workflow is no error: the
/// next pass works from what is there now.
async fn patch_metadata(api: &Api<Workflow>, wf: &Workflow, ops: serde_json::Value) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a well-formed JSON patch");
    match api.patch(&wf.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
