//! The Workflow controller: gather -> plan -> apply -> status.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ObjectMeta, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use super::pods::{self, LABEL_WORKFLOW, MANAGER};
use super::{Context, Error, Written, settled};
use crate::api::{Approval, StepPhase, Workflow, WorkflowPolicy, WorkflowPolicySpec};
use crate::engine::approval_request::ApprovalRequest;
use crate::engine::event::Event;
use crate::engine::gate;
use crate::engine::names;
use crate::engine::plan;

/// Watches Workflows and the Approvals they own, and is woken by the changes of their step Pods
/// that matter (see `step_pods`).
pub async fn run(ctx: Arc<Context>, pod_changes: super::step_pods::Wakes) {
    let children = watcher::Config::default().labels(LABEL_WORKFLOW).page_size(200);
    // The passes read Approvals from this store: an Approval change reaches it before it wakes
    // the Workflow, so a pass woken by a decision sees at least that decision; a deleted
    // Approval wakes it too (a gate deleted while it waits is opened again).
    let (approvals, approval_changes) = super::tolerant::watch_with_deletes::<Approval>(&ctx, children);
    let _ = ctx.approvals.set(approvals);
    let (store, workflows) = super::tolerant::watch::<Workflow>(&ctx, watcher::Config::default().page_size(200));
    let controller = Controller::for_stream(workflows, store)
        .owns_stream(counted(ctx.clone(), pod_changes))
        .owns_stream(counted(ctx.clone(), approval_changes))
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal();
    super::ready_when_synced(ctx.clone(), controller.store());
    let _ = ctx.workflows.set(controller.store());
    ctx.metrics.count_workflows_from(controller.store());
    controller.run(reconcile, error_policy, ctx).for_each(super::log_result).await;
}

/// Each child event counted for its run before it wakes the run, so a pass knows whether the
/// children moved since the run's last recorded pass (see settled).
fn counted<K: Resource>(
    ctx: Arc<Context>,
    changes: impl Stream<Item = Result<K, watcher::Error>>,
) -> impl Stream<Item = Result<K, watcher::Error>> {
    changes.inspect(move |change| {
        let owners = change.iter().flat_map(|child| child.meta().owner_references.iter().flatten());
        for owner in owners.filter(|r| r.kind == "Workflow") {
            ctx.settled.child_changed(&owner.uid);
        }
    })
}

fn error_policy(wf: Arc<Workflow>, err: &Error, ctx: Arc<Context>) -> Action {
    let (failures, wait) = ctx.failed(&super::object_key(wf.as_ref()), err);
    warn!(error = %err, category = err.category(), failures, retry_in = ?wait, "reconcile failed");
    ctx.metrics.failed("workflow", err.category());
    super::report_error(ctx.clone(), wf.clone(), err);
    // A second failure in a row is shown where `kubectl get`/kstatus look, by the next pass
    // (which holds this Workflow's turn), not by a task racing it.
    Action::requeue(wait)
}

/// Records on the Workflow why it cannot make progress: `Stalled=True` (and `Reconciling=True`)
/// with the error's category as reason. The next reconcile that succeeds sets them from the run.
async fn mark_stalled(ctx: &Context, wf: &Workflow, reason: &'static str, message: String) {
    let api: Api<Workflow> = Api::namespaced(ctx.client.clone(), &wf.namespace().unwrap_or_default());
    let Ok(Some(mut fresh)) = api.get_opt(&wf.name_any()).await else { return };
    let mut status = fresh.status.clone().unwrap_or_default();
    if status.phase.is_some_and(crate::api::WorkflowPhase::is_terminal) {
        return;
    }
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    let wanted = vec![("Stalled", "True", reason, message.clone()), ("Reconciling", "True", reason, message)];
    let kept = status.conditions.iter().filter(|c| c.type_ != "Stalled" && c.type_ != "Reconciling").cloned();
    let mut conditions: Vec<_> = kept.collect();
    conditions.extend(crate::engine::conditions::merge(&status.conditions, wanted, now, fresh.metadata.generation));
    if conditions == status.conditions {
        return;
    }
    status.conditions = conditions;
    fresh.status = Some(status);
    if let Err(e) = super::write_status(ctx, &fresh, "workflow_status").await {
        warn!(error = %e, "recording the failure on the Workflow failed too");
    }
}

/// Reads the children the plan looks at (the Pods of running steps, the Approvals of waiting
/// ones) by name, straight from the API server. A GET by name is a fresh read, so the plan never
/// rests on a cache that has not yet seen what this controller just created; and unlike a list it
/// does not wait for the API server's watch cache to catch up (measured: ~80 ms per list on a
/// quiet cluster, ~2 ms per GET).
async fn children<K>(api: &Api<K>, wf: &Workflow, names: Vec<String>) -> Result<Vec<K>, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let uid = wf.uid().unwrap_or_default();
    let found = futures::future::try_join_all(names.iter().map(|n| api.get_opt(n))).await.map_err(Error::Kube)?;
    Ok(found
        .into_iter()
        .flatten()
        .filter(|o| o.meta().owner_references.iter().flatten().any(|r| r.uid == uid))
        .collect())
}

#[instrument(skip_all, fields(workflow = %wf.name_any(), namespace = wf.namespace().unwrap_or_default()))]
pub(super) async fn reconcile(wf: Arc<Workflow>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    if let Some(archive) = ctx.archive.get() {
        archive.workflow(&wf);
    }
    let uid = wf.uid().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let child_event = match ctx.settled.next(&uid, super::resource_version(wf.as_ref()), now) {
        settled::Next::Run { child_event } => child_event,
        settled::Next::Skip { wake_at } => {
            ctx.metrics.skipped("workflow");
            return Ok(wake_at.map_or_else(Action::await_change, |at| Action::requeue(super::until(at, now))));
        }
    };
    let key = super::object_key(wf.as_ref());
    if let Some((reason, message)) = ctx.stalled(&key) {
        mark_stalled(&ctx, &wf, reason, message).await;
    }
    let result = reconcile_inner(wf, ctx.clone(), child_event).await;
    ctx.metrics.reconciled("workflow", start.elapsed());
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// The pass. `child_event` is where the run's children stood as it began: recorded with the
/// plan, so a later pass that could only see our own writes is skipped.
async fn reconcile_inner(wf: Arc<Workflow>, ctx: Arc<Context>, child_event: u64) -> Result<Action, Error> {
    if wf.metadata.deletion_timestamp.is_some() {
        ctx.forget(&wf.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    if ctx.is_stale(wf.as_ref()) {
        // Our own newer write is on its way through the watch; act on that instead.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    // The pass's one reading of the clock: every decision below is made at this time.
    let now = jiff::Timestamp::now();
    let own = wf.clone();
    let wf = match super::templates::effective(&ctx, wf, now).await? {
        super::templates::Run::This(wf) => wf,
        super::templates::Run::Later(action) => return Ok(action),
        super::templates::Run::Fail(plan) => {
            return match persist(&ctx, &own, &plan, now).await? {
                Persisted::Recorded(action) | Persisted::Not(action) => Ok(action),
            };
        }
    };
    let apis = Apis::new(&ctx, &wf);
    let (pods, approvals) = gather(&ctx, &apis, &wf).await?;
    // Off the async runtime, and a panic fails this Workflow only (see guard).
    // The spec's checks (every expression compiled) run once per spec, not once per pass.
    let spec = plan::spec_digest(&wf);
    let checked = ctx.spec_checked(&spec);
    let plan = super::guard::plan(wf.clone(), pods.clone(), approvals, now, checked).await;
    if plan.spec_valid {
        ctx.spec_passed(spec);
    }
    if plan.delete_workflow {
        return delete_finished(&apis, &ctx, &wf).await;
    }
    // Children first, so the status never names an object that does not exist. What the API
    // server refused goes back to the engine, which says what it means for the run.
    // A plan the API server changed after it was made (a refused child) is worked out for the
    // run by the pass after its write: only a plan carried out as made settles the run. A plan
    // that found a child already there does not either: it took it for new, and it may have
    // finished (a replica that led before was stopped between its creates and its status write).
    let (plan, settles) = match apply_children(&apis, &ctx, &wf, &plan).await? {
        Applied::All { existed } => (plan, !existed),
        Applied::Refused(refused) => (plan.with_refused(refused, now), false),
        Applied::NoWorkspace(message) => (plan::abort(&wf, "WorkspaceCreateFailed", message, now), false),
        Applied::Later(retry) => return Ok(retry),
    };
    if let Some(retry) = cancel_gates(&apis, &ctx, &plan, now).await? {
        return Ok(retry);
    }
    match persist(&ctx, &wf, &plan, now).await? {
        Persisted::Recorded(action) => {
            release_pods(&apis, &ctx, &plan, &pods).await?;
            let uid = own.uid().unwrap_or_default();
            if let Some(at) = super::resource_version(own.as_ref()).max(ctx.last_written(&uid)).filter(|_| settles) {
                ctx.settled.recorded(&uid, at, child_event, plan.requeue_at);
            }
            Ok(action)
        }
        Persisted::Not(action) => Ok(action),
    }
}

/// What persisting the plan's status came to.
enum Persisted {
    /// The status the plan computed is what the API server holds now.
    Recorded(Action),
    /// It is not (someone else wrote first, or the run failed another way): come back.
    Not(Action),
}

/// Lets go of the Pods whose outcome the status now records (their finalizer), so one deleted
/// meanwhile can go. Only after the status write: until then the Pod is the only record.
async fn release_pods(apis: &Apis, ctx: &Context, plan: &plan::Plan, pods: &[Pod]) -> Result<(), Error> {
    for pod in pods.iter().filter(|p| plan.release_pods.iter().any(|r| Some(r) == p.metadata.name.as_ref())) {
        ctx.metrics.write("release_pod");
        pods::release(&apis.pods, pod).await.map_err(Error::Kube)?;
    }
    Ok(())
}

/// The namespaced APIs one reconcile uses.
struct Apis {
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    approvals: Api<Approval>,
    workflows: Api<Workflow>,
    policies: Api<WorkflowPolicy>,
}

impl Apis {
    fn new(ctx: &Context, wf: &Workflow) -> Self {
        let ns = wf.namespace().unwrap_or_default();
        Apis {
            pods: Api::namespaced(ctx.client.clone(), &ns),
            claims: Api::namespaced(ctx.client.clone(), &ns),
            approvals: Api::namespaced(ctx.client.clone(), &ns),
            workflows: Api::namespaced(ctx.client.clone(), &ns),
            policies: Api::namespaced(ctx.client.clone(), &ns),
        }
    }
}

/// The Pods of running steps and the Approvals of waiting ones. Pods come from the controller's
/// own watch; one it has not seen yet (created a moment ago) is read by name, so a Pod is never
/// taken for gone because the watch lags. A cached Pod older than the API server's is harmless:
/// its change triggers another pass. Approvals come from the Approval watch's store unless its
/// copy predates the operator's own last write (the decision it acts on is always one the
/// Approval controller wrote), else they are read by name.
async fn gather(ctx: &Context, apis: &Apis, wf: &Workflow) -> Result<(Vec<Pod>, Vec<Approval>), Error> {
    let steps = wf.status.as_ref().map(|s| s.steps.as_slice()).unwrap_or_default();
    let ns = wf.namespace().unwrap_or_default();
    let uid = wf.uid().unwrap_or_default();
    let name = wf.name_any();
    let mut running: Vec<String> =
        steps.iter().filter(|s| s.phase == StepPhase::Running).filter_map(|s| s.pod_name.clone()).collect();
    let mut waiting: Vec<String> =
        steps.iter().filter(|s| s.phase == StepPhase::Waiting).filter_map(|s| s.approval_name.clone()).collect();
    // forEach items in flight (a waiting forEach step may still have Pods running, and back).
    running.extend(steps.iter().flat_map(|s| plan::pods_in_flight(&name, &uid, s)));
    waiting.extend(steps.iter().flat_map(|s| plan::approvals_waiting(&name, s)));
    let store = ctx.pods.get();
    let mut pods = vec![];
    let mut unseen = vec![];
    for name in running {
        match store.and_then(|s| s.get(&kube::runtime::reflector::ObjectRef::new(&name).within(&ns))) {
            Some(p) if p.metadata.owner_references.iter().flatten().any(|r| r.uid == uid) => pods.push((*p).clone()),
            Some(_) => {} // another run's Pod of that name: not this step's
            None => unseen.push(name),
        }
    }
    let mut approvals = vec![];
    let mut unread = vec![];
    for name in waiting {
        match ctx.cached(ctx.approvals.get(), &ns, &name) {
            Some(a) if a.metadata.owner_references.iter().flatten().any(|r| r.uid == uid) => approvals.push(a),
            _ => unread.push(name),
        }
    }
    let (fetched, read) = futures::try_join!(children(&apis.pods, wf, unseen), children(&apis.approvals, wf, unread))?;
    pods.extend(fetched);
    approvals.extend(read);
    Ok((pods, approvals))
}

async fn delete_finished(apis: &Apis, ctx: &Context, wf: &Workflow) -> Result<Action, Error> {
    info!("ttlSecondsAfterFinished passed; deleting the Workflow");
    let dp = DeleteParams {
        preconditions: Some(Preconditions { uid: wf.uid(), resource_version: None }),
        ..Default::default()
    };
    ctx.metrics.write("delete_workflow");
    match apis.workflows.delete(&wf.name_any(), &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()), // gone, or re-created
        Err(e) => Err(Error::Kube(e)),
    }
}

/// What carrying out the plan's creates and deletes came to.
enum Applied {
    /// Every child the plan asked for exists. `existed`: some were there already (a replica that
    /// led before, killed between its creates and its status write), and may have moved on since.
    All { existed: bool },
    /// The API server refused these children for good; the others exist.
    Refused(Vec<plan::Refused>),
    /// The run's workspace claim was refused (invalid, forbidden): no Pod was asked for.
    NoWorkspace(String),
    /// Come back later (a name is still held by an earlier run's Approval).
    Later(Action),
}

/// Creates the workspace, Pods and Approvals the plan asks for and deletes the Pods it gives up
/// on. Errors that may clear up (a missing right, a quota, the API server) end the pass.
async fn apply_children(apis: &Apis, ctx: &Context, wf: &Workflow, plan: &plan::Plan) -> Result<Applied, Error> {
    if let Some(message) = create_workspace(apis, ctx, wf, plan).await? {
        return Ok(Applied::NoWorkspace(message));
    }
    let mut refused = vec![];
    let mut existed = false;
    let refusal =
        |step: &str, item, reason, e: Error| plan::Refused { step: step.into(), item, reason, message: e.to_string() };
    for req in &plan.create_pods {
        let pod = pods::build(wf, req);
        ctx.metrics.write("create_pod");
        match super::create_if_absent(&apis.pods, wf, &pod).await {
            Ok(created) => existed |= created == super::Created::Existing,
            Err(e) if e.fails_step() => refused.push(refusal(&req.step, req.item, "PodCreateFailed", e)),
            Err(e) => return Err(e),
        }
    }
    // Read once per pass that opens gates, not per gate (a fan-out opens many).
    let policy = if plan.create_approvals.is_empty() { None } else { namespace_policy(apis).await? };
    for req in &plan.create_approvals {
        match open_gate(apis, ctx, wf, req, policy.as_ref()).await {
            Ok(Opened::Yes(created)) => existed |= created == super::Created::Existing,
            Ok(Opened::AfterOldOneGoes) => return Ok(Applied::Later(Action::requeue(Duration::from_millis(500)))),
            Err(e) if e.fails_step() => refused.push(refusal(&req.step, req.item, "ApprovalCreateFailed", e)),
            Err(e) => return Err(e),
        }
    }
    delete_pods(apis, ctx, &plan.delete_pods).await?;
    Ok(if refused.is_empty() { Applied::All { existed } } else { Applied::Refused(refused) })
}

async fn delete_pods(apis: &Apis, ctx: &Context, names: &[String]) -> Result<(), Error> {
    for name in names {
        ctx.metrics.write("delete_pod");
        match apis.pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

/// Creates the run's workspace claim if the plan asks for it; Some(why) when the API server
/// refuses it for good (invalid, forbidden), which fails the run before any Pod starts.
async fn create_workspace(
    apis: &Apis,
    ctx: &Context,
    wf: &Workflow,
    plan: &plan::Plan,
) -> Result<Option<String>, Error> {
    let Some(claim) = plan.create_workspace.as_deref().and_then(|name| super::workspace::claim(wf, name)) else {
        return Ok(None);
    };
    ctx.metrics.write("create_workspace");
    match super::create_if_absent(&apis.claims, wf, &claim).await {
        Ok(_) => Ok(None),
        Err(e) if e.fails_step() => {
            Ok(Some(format!("spec.workspace: PersistentVolumeClaim {}: {e}", claim.name_any())))
        }
        Err(e) => Err(e),
    }
}

/// Gates this pass gave up on can no longer be decided.
async fn cancel_gates(apis: &Apis, ctx: &Context, plan: &plan::Plan, now: Timestamp) -> Result<Option<Action>, Error> {
    for name in &plan.cancel_approvals {
        let Some(a) = apis.approvals.get_opt(name).await.map_err(Error::Kube)? else { continue };
        let Some(status) = gate::cancelled(&a, now) else { continue };
        let mut next = a.clone();
        next.status = Some(status);
        if let Written::Stale = super::write_status(ctx, &next, "approval_status").await? {
            return Ok(Some(Action::requeue(Duration::from_millis(100))));
        }
        ctx.metrics.gate_ended("cancelled");
        let note = "the Workflow ended before anyone decided".to_string();
        ctx.event(&a, &Event { warning: true, reason: "Cancelled", note }).await;
    }
    Ok(None)
}

/// Writes the status the plan computed (when it changed) and its Events; requeues at the plan's
/// next deadline (the wait until it is measured from the clock as it is then, not from `now`).
async fn persist(ctx: &Context, wf: &Workflow, plan: &plan::Plan, now: Timestamp) -> Result<Persisted, Error> {
    if wf.status.as_ref() != Some(&plan.status) {
        let mut next = wf.clone();
        next.status = Some(plan.status.clone());
        match super::write_status(ctx, &next, "workflow_status").await {
            Ok(Written::Stale) => return Ok(Persisted::Not(Action::requeue(Duration::from_millis(100)))),
            Ok(Written::Done) => {}
            Err(Error::Kube(e)) if super::too_large(&e) => {
                return fail_too_large(ctx, wf, plan, e, now).await.map(Persisted::Not);
            }
            Err(e) => return Err(e),
        }
        for (kind, phase, seconds) in super::observe::steps_ended(wf, &plan.status) {
            ctx.metrics.step_ended(kind, phase, seconds);
        }
        for ev in &plan.events {
            ctx.event(wf, ev).await;
        }
    }
    Ok(Persisted::Recorded(match plan.requeue_at {
        Some(at) => Action::requeue(super::until(at, jiff::Timestamp::now())),
        None => Action::await_change(),
    }))
}

/// The API server refused the status as too large: fail the run with a status it will take,
/// say why, and cancel the gates that can no longer matter.
async fn fail_too_large(
    ctx: &Context,
    wf: &Workflow,
    plan: &plan::Plan,
    refused: kube::Error,
    now: Timestamp,
) -> Result<Action, Error> {
    warn!(error = %refused, "the Workflow's status is too large for the API server; failing the run");
    let (status, waiting) = plan::too_large(wf, &plan.status, now);
    let mut next = wf.clone();
    next.status = Some(status);
    if let Written::Stale = super::write_status(ctx, &next, "workflow_status").await? {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let note = format!("the status was refused ({refused}); the run failed with reason StatusTooLarge");
    ctx.event(wf, &Event { warning: true, reason: "StatusTooLarge", note }).await;
    let apis = Apis::new(ctx, wf);
    let cancel = plan::Plan { cancel_approvals: waiting, ..plan.clone() };
    cancel_gates(&apis, ctx, &cancel, now).await?;
    Ok(Action::await_change())
}

/// What opening a gate came to.
enum Opened {
    Yes(super::Created),
    /// The name is held by the Approval of an earlier Workflow of the same name (deleted and
    /// applied again): it is garbage, and was deleted; create ours once it is gone.
    AfterOldOneGoes,
}

/// Creates the Approval for a gate (and so its grant, by the Approval controller).
async fn open_gate(
    apis: &Apis,
    ctx: &Context,
    wf: &Workflow,
    req: &ApprovalRequest,
    policy: Option<&WorkflowPolicySpec>,
) -> Result<Opened, Error> {
    let spec = req.spec_under(policy);
    let mut labels: std::collections::BTreeMap<String, String> = [
        (LABEL_WORKFLOW.to_string(), names::workflow_label(&wf.name_any())),
        (pods::LABEL_STEP.to_string(), req.step.clone()),
        (pods::LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ]
    .into();
    if let Some(i) = req.item {
        labels.insert(pods::LABEL_ITEM.to_string(), i.to_string());
    }
    let approval = Approval {
        metadata: ObjectMeta {
            name: Some(req.name.clone()),
            namespace: wf.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![wf.controller_owner_ref(&()).expect("Workflow has a name and uid")]),
            ..Default::default()
        },
        spec,
        status: None,
    };
    ctx.metrics.write("create_approval");
    match super::create_if_absent(&apis.approvals, wf, &approval).await {
        Err(Error::NotOwned(msg)) => match left_by_earlier_run(apis, wf, &req.name).await? {
            Some(old) => {
                delete_exactly(&apis.approvals, ctx, &old).await?;
                Ok(Opened::AfterOldOneGoes)
            }
            None => Err(Error::NotOwned(msg)),
        },
        other => other.map(Opened::Yes),
    }
}

/// The namespace owner's `WorkflowPolicy/default`, read only when the pass opens a gate. None
/// when there is none (or no such CRD is installed).
async fn namespace_policy(apis: &Apis) -> Result<Option<WorkflowPolicySpec>, Error> {
    match apis.policies.get_opt(crate::api::policy::POLICY_NAME).await {
        Ok(p) => Ok(p.map(|p| p.spec)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// An Approval under our name whose owner is a Workflow of this name with another UID: that
/// Workflow is gone (names are unique), so the Approval is garbage the collector has not reached.
async fn left_by_earlier_run(apis: &Apis, wf: &Workflow, name: &str) -> Result<Option<Approval>, Error> {
    let Some(old) = apis.approvals.get_opt(name).await.map_err(Error::Kube)? else { return Ok(None) };
    let earlier = old
        .owner_references()
        .iter()
        .any(|o| o.kind == "Workflow" && o.name == wf.name_any() && Some(&o.uid) != wf.metadata.uid.as_ref());
    Ok(earlier.then_some(old))
}

/// Deletes exactly this object (by UID), in the background.
async fn delete_exactly(api: &Api<Approval>, ctx: &Context, old: &Approval) -> Result<(), Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions { uid: old.uid(), resource_version: None }),
        ..Default::default()
    };
    ctx.metrics.write("delete_approval");
    match api.delete(&old.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}
