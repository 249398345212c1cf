//! The sleep step kind: a timer.

use jiff::Timestamp;

use super::ctx::{Ctx, t};
use crate::duration;
use hitl_api::{Step, StepPhase, StepStatus};

/// Starts the timer; a zero-length sleep ends at once.
pub(super) fn start(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus) {
    st.phase = StepPhase::Running;
    st.started_at = Some(t(ctx.now));
    let length = sleep_length(step);
    if length.is_zero() {
        ctx.finish(st, StepPhase::Succeeded, None, None);
    } else {
        ctx.wake_at(t(ctx.now).0.checked_add(length).unwrap_or(Timestamp::MAX));
    }
}

/// The timer ran out, or when to look again.
pub(super) fn observe(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus) {
    let started = st.started_at.clone().unwrap_or(t(ctx.now));
    let at = started.0.checked_add(sleep_length(step)).unwrap_or(Timestamp::MAX);
    if at <= ctx.now {
        ctx.finish(st, StepPhase::Succeeded, None, None);
    } else {
        ctx.wake_at(at);
    }
}

/// A sleep step's length (validated before any step starts).
fn sleep_length(step: &Step) -> std::time::Duration {
    step.sleep.as_deref().and_then(|d| duration::parse(d).ok()).unwrap_or_default()
}
