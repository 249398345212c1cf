//! `forEach` steps in the plan. Each item runs through the same code a plain step does (a Pod
//! with its retries, or a gate), with `ctx.item` naming it, on a `StepStatus` made from its
//! compact entry and folded back into it; the step starts items up to its parallelism and ends
//! when they have.

use serde_json::Value;

use super::ctx::{BUSY_RETRY, Ctx, t};
use super::scope::scope;
use super::suspend::approval_request;
use super::{kinds, pass};
use crate::approval_request::ApprovalRequest;
use crate::event::Event;
use crate::expr::EvalError;
use crate::{foreach, names};
use hitl_api::{ItemStatus, Step, StepPhase, StepStatus, Workflow, workflow::PodGcStrategy};

/// One pass over a forEach step: resolve its list, see what became of the items in flight, start
/// more, and end the step once they are done. `failing`: the run is failing.
pub(super) fn advance(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, steps: &[StepStatus], failing: bool) {
    let list = match resolve(ctx, step, steps) {
        Ok(list) => list,
        Err(EvalError::Busy(_)) => return ctx.wake_at(ctx.now + BUSY_RETRY),
        Err(EvalError::Failed(e)) => {
            let reason = if e.contains("at most") { "TooManyItems" } else { "ExpressionError" };
            st.started_at.get_or_insert(t(ctx.now));
            ctx.finish(st, StepPhase::Failed, Some(reason), Some(format!("forEach.list: {e}")));
            let note = format!("step {}: forEach.list: {e}", step.name);
            ctx.plan.events.push(Event { warning: true, reason: "StepFailed", note });
            return;
        }
    };
    if st.phase == StepPhase::Pending {
        st.phase = StepPhase::Running;
        st.started_at = Some(t(ctx.now));
        st.item_count = Some(list.len() as i32);
    }
    observe_items(ctx, step, st, steps, &list, failing);
    start_items(ctx, step, st, steps, &list, failing);
    if st.items.iter().any(|i| i.phase == StepPhase::Failed) {
        cancel_waiting(ctx, step, st, "ItemFailed");
    }
    conclude(ctx, st, list.len(), failing);
    ctx.item = None;
}

/// The step's list, from its expression (one evaluation per pass: its inputs, parameters and
/// finished steps' outputs, no longer change, so every pass sees the same list).
fn resolve(ctx: &Ctx<'_>, step: &Step, steps: &[StepStatus]) -> Result<Vec<Value>, EvalError> {
    let expr = &step.for_each.as_ref().expect("forEach step").list;
    let value = scope(ctx.wf, steps).eval_json(expr)?;
    foreach::items(value).map_err(|e| EvalError::Failed(format!("{expr:?} {e}")))
}

/// The items in flight: a Pod's outcome, a timeout, a retry, or a gate's decision.
fn observe_items(
    ctx: &mut Ctx<'_>,
    step: &Step,
    st: &mut StepStatus,
    steps: &[StepStatus],
    list: &[Value],
    failing: bool,
) {
    for i in 0..st.items.len() {
        if st.items[i].phase.is_terminal() {
            continue;
        }
        // A failed item fails the step: no retries, no new items; Pods in flight finish.
        let failing = failing || st.items.iter().any(|it| it.phase == StepPhase::Failed);
        with_item(ctx, step, st, i, list, |ctx, tmp| kinds::observe(ctx, step, tmp, steps, failing));
    }
}

/// Starts items in list order while fewer than the parallelism are in flight. An item whose
/// `when` is false is Skipped and the next one tried.
fn start_items(
    ctx: &mut Ctx<'_>,
    step: &Step,
    st: &mut StepStatus,
    steps: &[StepStatus],
    list: &[Value],
    failing: bool,
) {
    let parallelism = foreach::parallelism(step);
    while foreach::may_start(&st.items, list.len(), parallelism, failing) > 0 {
        let i = st.items.len();
        st.items.push(ItemStatus::default());
        with_item(ctx, step, st, i, list, |ctx, tmp| kinds::start(ctx, step, tmp, steps));
        if st.items[i].phase == StepPhase::Pending {
            // Not evaluated yet (too many runaway evaluations): the next pass tries again.
            st.items.pop();
            break;
        }
    }
}

/// Runs `f` on item `i` as a step status of its own, then folds the result back into the item's
/// compact entry. Events it records name the item.
fn with_item(
    ctx: &mut Ctx<'_>,
    step: &Step,
    st: &mut StepStatus,
    i: usize,
    list: &[Value],
    f: impl FnOnce(&mut Ctx<'_>, &mut StepStatus),
) {
    ctx.item = Some((i, list.get(i).cloned().unwrap_or(Value::Null)));
    let mut tmp = as_step(&ctx.name, &ctx.uid, step, &st.items[i], i);
    let before = ctx.plan.events.len();
    f(ctx, &mut tmp);
    let (plain, named) = (format!("step {}", step.name), format!("step {} item {i}", step.name));
    for ev in &mut ctx.plan.events[before..] {
        ev.note = ev.note.replacen(&plain, &named, 1);
    }
    st.items[i] = to_item(tmp);
    ctx.item = None;
}

/// An item as the status of a plain step: what the shared code reads and writes.
fn as_step(workflow: &str, uid: &str, step: &Step, item: &ItemStatus, i: usize) -> StepStatus {
    let attempts = item.attempts.unwrap_or(0);
    let is_gate = step.suspend.is_some();
    StepStatus {
        name: step.name.clone(),
        phase: item.phase,
        attempts: item.attempts,
        pod_name: (attempts > 0).then(|| names::item_pod_name(workflow, uid, &step.name, i, attempts)),
        approval_name: (is_gate && item.phase != StepPhase::Pending)
            .then(|| names::item_approval_name(workflow, &step.name, i)),
        started_at: item.started_at.clone(),
        attempt_started_at: item.started_at.clone().filter(|_| !is_gate),
        retry_at: item.retry_at.clone(),
        reason: item.reason.clone(),
        message: item.message.clone(),
        outputs: item.outputs.clone(),
        decided_by: item.decided_by.clone(),
        ..Default::default()
    }
}

/// The compact entry: timestamps only while in flight, messages shortened once finished (a
/// waiting gate keeps its whole message, which its Approval must carry).
fn to_item(st: StepStatus) -> ItemStatus {
    let done = st.phase.is_terminal();
    ItemStatus {
        phase: st.phase,
        attempts: st.attempts,
        started_at: st.attempt_started_at.or(st.started_at).filter(|_| !done),
        retry_at: st.retry_at.filter(|_| !done),
        reason: st.reason,
        message: if done { st.message.as_deref().map(foreach::short) } else { st.message },
        outputs: st.outputs,
        decided_by: st.decided_by,
    }
}

/// Gates still open on a step that will fail anyway can no longer matter: they are cancelled at
/// once, so nobody decides in vain.
fn cancel_waiting(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, reason: &str) {
    for (i, item) in st.items.iter_mut().enumerate().filter(|(_, it)| it.phase == StepPhase::Waiting) {
        ctx.plan.cancel_approvals.push(names::item_approval_name(&ctx.name, &step.name, i));
        item.phase = StepPhase::Omitted;
        item.reason = Some(reason.into());
        item.started_at = None;
        item.message = None;
    }
}

/// The step's phase and message from its items; once none is in flight and none will start, the
/// step ends and their outputs become its `outputs.items`.
fn conclude(ctx: &mut Ctx<'_>, st: &mut StepStatus, total: usize, failing: bool) {
    let counts = foreach::Counts::of(&st.items, total);
    let in_flight = counts.running + counts.waiting;
    let first_failed = st.items.iter().position(|i| i.phase == StepPhase::Failed);
    let all_started = st.items.len() == total;
    if in_flight > 0 || (first_failed.is_none() && !all_started && !failing) {
        st.phase = if counts.running == 0 && counts.waiting > 0 { StepPhase::Waiting } else { StepPhase::Running };
        st.message = Some(counts.summary());
        st.reason = None;
        return;
    }
    st.outputs = foreach::collect_outputs(&st.items, total);
    for item in &mut st.items {
        item.outputs.clear();
    }
    let summary = counts.summary();
    match first_failed {
        Some(i) => {
            let item = &st.items[i];
            let why = item.reason.clone().unwrap_or_else(|| "Failed".into());
            let msg = format!("item {i} failed ({why}): {}; {summary}", item.message.clone().unwrap_or_default());
            ctx.finish(st, StepPhase::Failed, Some(&why), Some(msg));
        }
        None if all_started => ctx.finish(st, StepPhase::Succeeded, None, Some(summary)),
        // The run is failing: the items not started never will.
        None => ctx.finish(st, StepPhase::Omitted, Some("WorkflowFailed"), Some(summary)),
    }
}

/// The run's deadline passed: stop the items in flight, then the step.
pub(super) fn stop_for_deadline(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus) {
    for i in 0..st.items.len() {
        if !st.items[i].phase.is_terminal() {
            with_item(ctx, step, st, i, &[], pass::stop_for_deadline);
        }
    }
    pass::stop_for_deadline(ctx, st);
}

/// The Pods of a forEach step's items in flight (their current attempts).
pub fn pods_in_flight(workflow: &str, uid: &str, st: &StepStatus) -> Vec<String> {
    st.items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.phase == StepPhase::Running && it.retry_at.is_none())
        .filter_map(|(i, it)| Some(names::item_pod_name(workflow, uid, &st.name, i, it.attempts.filter(|&a| a > 0)?)))
        .collect()
}

/// The Approvals of a forEach step's items that wait for a person.
pub fn approvals_waiting(workflow: &str, st: &StepStatus) -> Vec<String> {
    st.items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.phase == StepPhase::Waiting)
        .map(|(i, _)| names::item_approval_name(workflow, &st.name, i))
        .collect()
}

/// Every Pod of item attempts that `spec.podGC` lets go this pass (see `collect_pods`).
pub(super) fn collectable(
    workflow: &str,
    uid: &str,
    st: &StepStatus,
    before: Option<&StepStatus>,
    strategy: PodGcStrategy,
    run_ended: bool,
    run_succeeded: bool,
) -> Vec<String> {
    let mut out = vec![];
    for (i, item) in st.items.iter().enumerate() {
        let attempts = item.attempts.unwrap_or(0);
        let was = before.and_then(|b| b.items.get(i)).map(|b| b.phase).unwrap_or_default();
        let finished_now = item.phase.is_terminal() && !was.is_terminal();
        let upto = match strategy {
            PodGcStrategy::Never => 0,
            PodGcStrategy::OnPodSuccess if finished_now && item.phase == StepPhase::Succeeded => attempts,
            PodGcStrategy::OnPodSuccess => 0,
            PodGcStrategy::OnPodCompletion if finished_now => attempts,
            PodGcStrategy::OnPodCompletion if item.retry_at.is_some() => attempts,
            PodGcStrategy::OnPodCompletion => 0,
            PodGcStrategy::OnWorkflowSuccess if run_succeeded => attempts,
            PodGcStrategy::OnWorkflowCompletion if run_ended => attempts,
            PodGcStrategy::OnWorkflowSuccess | PodGcStrategy::OnWorkflowCompletion => 0,
        };
        out.extend((1..=upto).map(|a| names::item_pod_name(workflow, uid, &st.name, i, a)));
    }
    out
}

/// The gate an item's Approval must be, from the Workflow and the item's entry alone (the
/// Approval controller checks an item's Approval against it).
pub fn item_approval_request(wf: &Workflow, step: &Step, item: &ItemStatus, i: usize) -> ApprovalRequest {
    let name = wf.metadata.name.clone().unwrap_or_default();
    let uid = wf.metadata.uid.clone().unwrap_or_default();
    let mut req = approval_request(wf, step, &as_step(&name, &uid, step, item, i));
    req.item = Some(i as i32);
    req
}
