//! A container step's attempts: each one a Pod; a failed one is retried or fails the step.

use jiff::Timestamp;

use super::PodRequest;
use super::ctx::{BUSY_RETRY, Ctx, after, t};
use super::retry::{Failed, backoff, retry_wanted};
use crate::event::Event;
use crate::expr::EvalError;
use crate::names;
use hitl_api::{Step, StepContainer, StepPhase, StepStatus};

impl Ctx<'_> {
    /// Starts the step's next attempt: its Pod, with the container already expanded.
    pub(super) fn start_attempt(&mut self, step: &Step, st: &mut StepStatus, container: StepContainer) {
        let attempt = st.attempts.unwrap_or(0) + 1;
        let name = match &self.item {
            Some((i, _)) => names::item_pod_name(&self.name, &self.uid, &step.name, *i, attempt),
            None => names::pod_name(&self.name, &self.uid, &step.name, attempt),
        };
        let item = self.item.as_ref().map(|(i, _)| *i as i32);
        st.phase = StepPhase::Running;
        st.attempts = Some(attempt);
        st.pod_name = Some(name.clone());
        st.attempt_started_at = Some(t(self.now));
        st.started_at.get_or_insert(t(self.now));
        self.plan.create_pods.push(PodRequest { name, step: step.name.clone(), attempt, item, container });
        if let Some(timeout) = step.timeout_seconds {
            self.wake_at(after(&t(self.now), timeout));
        }
    }

    /// An attempt failed: returns true when a retry should start now (attempts remain, the run is
    /// not failing, the retry policy's condition holds and it asks for no wait); a retry that waits
    /// out its backoff is recorded in `retryAt`; otherwise the step fails.
    pub(super) fn attempt_failed(
        &mut self,
        step: &Step,
        st: &mut StepStatus,
        failing: bool,
        failed: Failed<'_>,
    ) -> bool {
        let Failed { reason, message, exit_code, steps } = failed;
        let attempts = st.attempts.unwrap_or(1);
        let retry = if attempts <= step.retries.unwrap_or(0) && !failing {
            retry_wanted(self.vars(steps), step, attempts, reason, &message, exit_code)
        } else {
            Ok(false)
        };
        let retry = match retry {
            Ok(r) => r,
            Err(EvalError::Busy(_)) => {
                // Decided on a later pass: the failed Pod stays as it is.
                self.wake_at(self.now + BUSY_RETRY);
                return false;
            }
            Err(EvalError::Failed(e)) => {
                let msg = format!("{message}; retryPolicy.when: {e}");
                self.finish(st, StepPhase::Failed, Some("ExpressionError"), Some(msg.clone()));
                self.plan.events.push(Event { warning: true, reason: "StepFailed", note: msg });
                return false;
            }
        };
        st.attempt_failed_at = Some(t(self.now));
        if retry {
            let wait = backoff(step, attempts);
            st.reason = Some(reason.into());
            st.message = Some(format!("attempt {attempts} failed: {message}"));
            let when = if wait.is_zero() {
                "now".to_string()
            } else {
                let at = self.now.saturating_add(wait).unwrap_or(Timestamp::MAX);
                st.retry_at = Some(t(at));
                self.wake_at(t(at).0);
                format!("in {}s", wait.as_secs())
            };
            self.plan.events.push(Event {
                warning: true,
                reason: "StepRetrying",
                note: format!("step {} attempt {attempts} failed ({reason}): {message}; retrying {when}", step.name),
            });
            return wait.is_zero();
        }
        self.finish(st, StepPhase::Failed, Some(reason), Some(message.clone()));
        self.plan.events.push(Event {
            warning: true,
            reason: "StepFailed",
            note: format!("step {} failed ({reason}): {message}", step.name),
        });
        false
    }
}
