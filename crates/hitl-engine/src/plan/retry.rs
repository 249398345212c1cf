//! The retry policy: whether a failed attempt is tried again, and after how long.

use serde_json::json;

use crate::expr::{self, EvalError};
use hitl_api::{Step, StepStatus};

/// A failed attempt, as the retry decision sees it.
pub(super) struct Failed<'a> {
    pub(super) reason: &'a str,
    pub(super) message: String,
    pub(super) exit_code: Option<i32>,
    pub(super) steps: &'a [StepStatus],
}

/// Whether the retry policy's condition (if any) holds for this failed attempt.
pub(super) fn retry_wanted(
    mut vars: serde_json::Value,
    step: &Step,
    number: i32,
    reason: &str,
    message: &str,
    exit_code: Option<i32>,
) -> Result<bool, EvalError> {
    let Some(when) = step.retry_policy.as_ref().and_then(|r| r.when.as_deref()) else { return Ok(true) };
    vars["attempt"] =
        json!({"number": number, "exitCode": exit_code.unwrap_or(-1), "reason": reason, "message": message});
    expr::Scope::new(vars).eval_bool(when)
}

/// The wait before the retry after `failed` failed attempts: the delay, times the factor for
/// each earlier retry, at most the maximum.
pub(super) fn backoff(step: &Step, failed: i32) -> std::time::Duration {
    let Some(p) = &step.retry_policy else { return std::time::Duration::ZERO };
    let delay = p.delay_seconds.unwrap_or(0).max(0) as f64;
    let factor = p.factor.unwrap_or(2.0).clamp(1.0, 10.0);
    let max = p.max_delay_seconds.unwrap_or(3600).max(0) as f64;
    let secs = (delay * factor.powi(failed.saturating_sub(1).min(64))).min(max);
    std::time::Duration::from_secs_f64(secs)
}
