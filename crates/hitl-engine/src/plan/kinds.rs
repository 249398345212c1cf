//! The one dispatch per step kind: how a step (or a forEach item) starts, and how a step in
//! flight is observed. A new kind is one module (`container`, `sleep`, `suspend`) and one arm in
//! each function here; `fanout` runs its items through the same two.

use super::ctx::{BUSY_RETRY, Ctx, t};
use super::{container, fanout, sleep, suspend};
use crate::event::Event;
use crate::expr::{self, EvalError};
use hitl_api::{Step, StepKind, StepPhase, StepStatus};

/// Starts a step that is ready (a forEach step: its first items), unless its `when` says not to.
pub(super) fn start(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, steps: &[StepStatus]) {
    if step.for_each.is_some() && ctx.item.is_none() {
        return fanout::advance(ctx, step, st, steps, false);
    }
    let scope = ctx.scope(steps);
    if !when_allows(ctx, step, st, &scope) {
        return;
    }
    match step.kind() {
        Some(StepKind::Container) => container::start(ctx, step, st, steps),
        Some(StepKind::Sleep) => sleep::start(ctx, step, st),
        Some(StepKind::Suspend) => suspend::start(ctx, step, st, &scope, steps),
        None => unreachable!("validated"),
    }
}

/// What became of a step (or item) in flight. `failing`: the run (or the forEach step) is
/// failing, so nothing new starts and open gates are cancelled.
pub(super) fn observe(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, steps: &[StepStatus], failing: bool) {
    match (st.phase, step.kind()) {
        (StepPhase::Running, Some(StepKind::Container)) => container::observe(ctx, step, st, steps, failing),
        (StepPhase::Running, Some(StepKind::Sleep)) if failing => {
            ctx.finish(st, StepPhase::Omitted, Some("WorkflowFailed"), None);
        }
        (StepPhase::Running, Some(StepKind::Sleep)) => sleep::observe(ctx, step, st),
        (StepPhase::Waiting, _) if failing => {
            ctx.plan.cancel_approvals.extend(st.approval_name.clone());
            ctx.finish(st, StepPhase::Omitted, Some("WorkflowFailed"), None);
        }
        (StepPhase::Waiting, _) => suspend::observe(ctx, step, st, steps),
        _ => {}
    }
}

/// Whether the step's `when` lets it start. When not, the step is Skipped (false), Failed (an
/// error), or left Pending for a later pass (too many evaluations still running).
fn when_allows(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, scope: &expr::Scope) -> bool {
    let Some(w) = &step.when else { return true };
    match scope.eval_bool(w) {
        Ok(true) => true,
        Ok(false) => {
            st.started_at.get_or_insert(t(ctx.now));
            ctx.finish(st, StepPhase::Skipped, Some("ConditionFalse"), Some(format!("when: {w}")));
            false
        }
        Err(EvalError::Busy(_)) => {
            ctx.wake_at(ctx.now + BUSY_RETRY);
            false
        }
        Err(EvalError::Failed(e)) => {
            ctx.finish(st, StepPhase::Failed, Some("ExpressionError"), Some(format!("when: {e}")));
            let note = format!("step {}: when: {e}", step.name);
            ctx.plan.events.push(Event { warning: true, reason: "StepFailed", note });
            false
        }
    }
}
