//! The Approval controller: stamps expiry, checks a person's decision, and records the outcome in
//! status, which the Workflow controller reads.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{instrument, warn};

use super::pods::LABEL_WORKFLOW;
use super::{Context, Error, Written, grants};
use crate::api::{Approval, ApprovalPhase, StepPhase, Workflow};
use crate::engine::event::Event;
use crate::engine::gate;
use crate::engine::plan;

/// The operator's one watch of Approvals: its store and the stream `run` consumes. `changed` is
/// woken after every change has reached the store.
pub fn watch(
    ctx: &Arc<Context>,
    changed: Arc<tokio::sync::Notify>,
) -> (Store<Approval>, impl futures::Stream<Item = Result<Approval, watcher::Error>> + Send + 'static) {
    let config = watcher::Config::default().labels(LABEL_WORKFLOW).page_size(200);
    super::tolerant::watch_notifying::<Approval>(ctx, config, Some(changed))
}

pub async fn run(
    ctx: Arc<Context>,
    store: Store<Approval>,
    approvals: impl futures::Stream<Item = Result<Approval, watcher::Error>> + Send + 'static,
) {
    let controller = Controller::for_stream(approvals, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal();
    super::ready_when_synced(ctx.clone(), controller.store());
    ctx.metrics.count_approvals_from(controller.store());
    controller.run(reconcile, error_policy, ctx).for_each(super::log_result).await;
}

fn error_policy(a: Arc<Approval>, err: &Error, ctx: Arc<Context>) -> Action {
    let (failures, wait) = ctx.failed(&super::object_key(a.as_ref()), err);
    warn!(error = %err, category = err.category(), failures, retry_in = ?wait, "approval reconcile failed");
    ctx.metrics.failed("approval", err.category());
    super::report_error(ctx, a, err);
    Action::requeue(wait)
}

#[instrument(skip_all, fields(approval = %a.name_any(), namespace = a.namespace().unwrap_or_default()))]
pub(super) async fn reconcile(a: Arc<Approval>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    if let Some(archive) = ctx.archive.get() {
        archive.approval(&a);
    }
    let key = super::object_key(a.as_ref());
    let result = reconcile_inner(a, ctx.clone()).await;
    ctx.metrics.reconciled("approval", start.elapsed());
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

async fn reconcile_inner(a: Arc<Approval>, ctx: Arc<Context>) -> Result<Action, Error> {
    if a.metadata.deletion_timestamp.is_some() || ctx.is_stale(a.as_ref()) {
        return Ok(Action::await_change());
    }
    let pending = a.status.as_ref().and_then(|s| s.phase).is_none_or(|p| p == ApprovalPhase::Pending);
    let mut now = jiff::Timestamp::now();
    if pending {
        // Nothing is granted or recorded for an Approval that is not exactly its Workflow's gate.
        match gate_check(&ctx, &a).await? {
            GateCheck::Matches => {}
            // The run acted on the decision before this pass (gate::outcome): record it as seen
            // then, so the Approval says what the run did even if its deadline passed since.
            GateCheck::DecidedByRun(seen) => now = now.min(seen),
            GateCheck::NotYet => return Ok(Action::requeue(Duration::from_millis(250))),
            GateCheck::Differs(why) => return refuse(&ctx, &a, why).await,
        }
    }
    // First sight of a new gate: grant its approvers before anyone is told it waits.
    if a.status.is_none() && ctx.config.per_gate_grants {
        grants::ensure(&ctx, &a).await?;
        grants::ensure_evidence(&ctx, &a).await?;
    }
    let mut decision = gate::evaluate(&a, now);
    let escalating = escalate(&a, &mut decision.status, now);
    let mut current = (*a).clone();
    if a.status.as_ref() != Some(&decision.status) {
        current.status = Some(decision.status.clone());
        if escalating {
            // Granted before anyone is told, as for the gate's own approvers.
            grants::ensure_escalated(&ctx, &current).await?;
        }
        if let Written::Stale = super::write_status(&ctx, &current, "approval_status").await? {
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        if let Some(ev) = &decision.event {
            ctx.event(a.as_ref(), ev).await;
        }
        observe_decision(&ctx, &a, &decision.status);
    }
    let decided = decision.status.phase.is_some_and(|p| p != ApprovalPhase::Pending);
    if decided && ctx.config.per_gate_grants {
        grants::revoke_evidence(&ctx, &a).await?;
    }
    let notify_at = ctx.notifier.schedule(&current, now);
    let wake = [decision.requeue_at, notify_at].into_iter().flatten().min();
    Ok(match wake {
        Some(at) => Action::requeue(super::until(at, jiff::Timestamp::now())),
        None => Action::await_change(),
    })
}

/// The outcome of a gate this pass ended, and the time from its opening to a person's decision.
fn observe_decision(ctx: &Context, a: &Approval, status: &crate::api::ApprovalStatus) {
    let Some(outcome) = super::observe::gate_ended(a.status.as_ref(), status) else { return };
    ctx.metrics.gate_ended(outcome);
    let decided = matches!(status.phase, Some(ApprovalPhase::Approved | ApprovalPhase::Rejected));
    if let (true, Some(opened), Some(at)) =
        (decided, a.metadata.creation_timestamp.as_ref(), status.decided_at.as_ref())
    {
        ctx.metrics.decided(at.0.duration_since(opened.0).as_secs_f64());
    }
}

/// Records the escalation once its time came on a gate still waiting; true when this pass does.
fn escalate(a: &Approval, status: &mut crate::api::ApprovalStatus, now: jiff::Timestamp) -> bool {
    let due = crate::engine::notify::escalates_at(a).is_some_and(|at| at <= now);
    if !due || status.escalated_at.is_some() || status.phase != Some(ApprovalPhase::Pending) {
        return false;
    }
    status.escalated_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    true
}

/// Whether an Approval is the gate its Workflow's step expects.
enum GateCheck {
    Matches,
    /// The step already ended on this gate's decision, which the run saw at this time.
    DecidedByRun(jiff::Timestamp),
    /// The Workflow has not yet recorded the step as waiting on it (its status write follows the
    /// Approval's creation by milliseconds).
    NotYet,
    Differs(String),
}

/// Checks the Approval against its Workflow's gate: against the Workflow watch's copy when that
/// is not older than the operator's own last write and it matches; anything else (no copy, or a
/// mismatch that would refuse the Approval or make it wait) is decided on a fresh read.
async fn gate_check(ctx: &Context, a: &Approval) -> Result<GateCheck, Error> {
    let Some(owner) = a.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "Workflow") else {
        return Ok(GateCheck::Differs("it has no owning Workflow".into()));
    };
    let ns = a.namespace().unwrap_or_default();
    if let Some(wf) = ctx.cached(ctx.workflows.get(), &ns, &owner.name) {
        let check = check_against(&wf, a, owner);
        if let GateCheck::Matches | GateCheck::DecidedByRun(_) = check {
            return Ok(check);
        }
    }
    let workflows: Api<Workflow> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(wf) = workflows.get_opt(&owner.name).await.map_err(Error::Kube)? else {
        return Ok(GateCheck::Differs(format!("its Workflow {} does not exist", owner.name)));
    };
    Ok(check_against(&wf, a, owner))
}

/// `gate_check` against one reading of the owning Workflow.
fn check_against(wf: &Workflow, a: &Approval, owner: &OwnerReference) -> GateCheck {
    if wf.uid().as_deref() != Some(owner.uid.as_str()) {
        return GateCheck::Differs(format!("it belongs to an earlier Workflow named {}", owner.name));
    }
    // A template run's steps are in its record.
    let wf = crate::engine::template::as_run(wf);
    let (Some(step), Some(st)) = (
        wf.spec.all_steps().find(|s| s.name == a.spec.step && s.suspend.is_some()),
        wf.status.iter().flat_map(|s| &s.steps).find(|s| s.name == a.spec.step),
    ) else {
        return GateCheck::NotYet;
    };
    if let Some(i) = a.spec.item {
        return item_gate_check(&wf, step, st, i, a, &owner.name);
    }
    let this_gate = st.approval_name.as_deref() == Some(&a.name_any());
    if let (true, Some(seen)) = (this_gate, decided_by_run(st)) {
        let mut expected = plan::approval_request(&wf, step, st);
        // The step's message is now its outcome; the run compared the gate's own as it decided.
        expected.message = a.spec.message.clone();
        if st.decided_by != a.spec.decided_by {
            return GateCheck::Differs(format!("step {} records another decider", step.name));
        }
        return match gate::mismatch(&expected, &a.spec) {
            None => GateCheck::DecidedByRun(seen),
            Some(why) => {
                GateCheck::Differs(format!("it does not match step {} of Workflow {}: {why}", step.name, owner.name))
            }
        };
    }
    if st.phase != StepPhase::Waiting || !this_gate {
        return if st.phase.is_terminal() {
            GateCheck::Differs(format!("step {} is no longer waiting", step.name))
        } else {
            GateCheck::NotYet
        };
    }
    let expected = plan::approval_request(&wf, step, st);
    match gate::mismatch(&expected, &a.spec) {
        None => GateCheck::Matches,
        Some(why) => {
            GateCheck::Differs(format!("it does not match step {} of Workflow {}: {why}", step.name, owner.name))
        }
    }
}

/// When the step ended on a person's decision on its gate: the time the run saw it.
fn decided_by_run(st: &crate::api::StepStatus) -> Option<jiff::Timestamp> {
    let decided = st.phase.is_terminal() && st.decided_by.is_some();
    let by_person = matches!(st.reason.as_deref(), Some("Approved" | "Rejected"));
    st.finished_at.as_ref().map(|t| t.0).filter(|_| decided && by_person)
}

/// `gate_check` for the Approval of item `i` of a forEach gate.
fn item_gate_check(
    wf: &Workflow,
    step: &crate::api::Step,
    st: &crate::api::StepStatus,
    i: i32,
    a: &Approval,
    owner: &str,
) -> GateCheck {
    if step.for_each.is_none() {
        return GateCheck::Differs(format!("it names item {i}, but step {} is not a forEach", step.name));
    }
    let Some(item) = usize::try_from(i).ok().and_then(|i| st.items.get(i)) else {
        return GateCheck::NotYet;
    };
    if item.phase != StepPhase::Waiting {
        return if item.phase.is_terminal() {
            GateCheck::Differs(format!("item {i} of step {} is no longer waiting", step.name))
        } else {
            GateCheck::NotYet
        };
    }
    let expected = plan::item_approval_request(wf, step, item, i as usize);
    if expected.name != a.name_any() {
        return GateCheck::Differs(format!("item {i} of step {} waits on Approval {}", step.name, expected.name));
    }
    match gate::mismatch(&expected, &a.spec) {
        None => GateCheck::Matches,
        Some(why) => {
            GateCheck::Differs(format!("it does not match item {i} of step {} of Workflow {owner}: {why}", step.name))
        }
    }
}

/// Records, once, that this Approval is not acted on.
async fn refuse(ctx: &Context, a: &Approval, why: String) -> Result<Action, Error> {
    let mut status = a.status.clone().unwrap_or_default();
    let message = format!("not acted on: {why}");
    if status.message.as_deref() == Some(message.as_str()) {
        return Ok(Action::await_change());
    }
    let old = status.clone();
    status.phase = Some(ApprovalPhase::Pending);
    status.message = Some(message.clone());
    gate::set_problem(&mut status, &old, "GateMismatch", jiff::Timestamp::now(), a.metadata.generation);
    let mut next = a.clone();
    next.status = Some(status);
    if let Written::Stale = super::write_status(ctx, &next, "approval_status").await? {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    warn!(reason = "GateMismatch", "{message}");
    ctx.event(a, &Event { warning: true, reason: "GateMismatch", note: message }).await;
    Ok(Action::await_change())
}
