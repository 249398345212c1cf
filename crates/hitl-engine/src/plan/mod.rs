//! `plan`: what a Workflow should do next, as a pure function of the Workflow, the Pods and
//! Approvals it owns, and the time. The controller carries the plan out.
//!
//! One module per concern: `validate` turns the spec into a `Valid` once per pass; `pass` observes
//! what is going and starts what is ready; `kinds` is the one start and one observe dispatch per
//! step kind (`container`, `sleep`, `suspend`), which `fanout` runs forEach items through;
//! `attempt` and `retry` are a container's attempts; `pod_outcome` reads a Pod; `scope` is what
//! expressions see; `status` sums the steps up; `pod_gc` lets Pods go.

mod attempt;
mod container;
mod ctx;
mod fanout;
mod kinds;
mod pass;
mod pod_gc;
mod pod_outcome;
mod retry;
mod scope;
mod sleep;
mod status;
mod suspend;
mod validate;

use jiff::Timestamp;

use crate::approval_request::ApprovalRequest;
use crate::event::Event;
use crate::foreach;
use ctx::t;
use hitl_api::{StepContainer, StepPhase, WorkflowStatus};

pub use fanout::{approvals_waiting, item_approval_request, pods_in_flight};
pub use pass::{SpecChecked, abort, plan, plan_checked};
pub use pod_outcome::{STUCK_WAITING_REASONS, active_pod_digest, pod_outcome_digest};
pub use status::{progress, too_large};
pub use suspend::approval_request;
pub use validate::spec_digest;
pub use validate::{Valid, validate};

/// What to do. Creates happen before the status write, so a status that names a Pod or Approval
/// is never written before the object exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: WorkflowStatus,
    pub create_pods: Vec<PodRequest>,
    pub delete_pods: Vec<String>,
    /// Pods whose outcome this status records: their finalizer goes once it is written.
    pub release_pods: Vec<String>,
    pub create_approvals: Vec<ApprovalRequest>,
    /// Approvals of gates that will never be decided now (the run failed or ran out of time).
    pub cancel_approvals: Vec<String>,
    pub events: Vec<Event>,
    /// Reconcile again at this time even if nothing changes (timers).
    pub requeue_at: Option<Timestamp>,
    /// `ttlSecondsAfterFinished` has passed.
    pub delete_workflow: bool,
    /// The workspace claim to create (`spec.workspace`), before any Pod: the run starts now.
    pub create_workspace: Option<String>,
    /// The spec passed its checks in this pass (or was known to): the controller remembers it.
    pub spec_valid: bool,
}

/// A child of the plan that the API server refused for good (invalid, denied by admission, or its
/// name taken by another owner): the step, or the item, it was for fails with these words.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub step: String,
    pub item: Option<i32>,
    pub reason: &'static str,
    pub message: String,
}

impl Plan {
    /// The plan once the children in `refused` could not be created: their steps fail, and the
    /// next pass carries the failure through the run. The controller carries the plan out and
    /// reports back; the decision about what a refusal means stays here.
    pub fn with_refused(mut self, refused: Vec<Refused>, now: Timestamp) -> Plan {
        for r in refused {
            self.fail_step(&r.step, r.item, r.reason, r.message, now);
        }
        self
    }

    fn fail_step(&mut self, step: &str, item: Option<i32>, reason: &'static str, message: String, now: Timestamp) {
        let found = self.status.steps.iter_mut().find(|s| s.name == step);
        // An item's child: the item fails, and so the step once its other items in flight end.
        if let Some(it) = found.and_then(|st| st.items.get_mut(item? as usize)) {
            it.phase = StepPhase::Failed;
            it.reason = Some(reason.into());
            it.message = Some(foreach::short(&message));
            it.started_at = None;
            self.events.push(Event {
                warning: true,
                reason,
                note: format!("step {step} item {}: {message}", item.unwrap_or(0)),
            });
            return;
        }
        if let Some(st) = self.status.steps.iter_mut().find(|s| s.name == step) {
            st.phase = StepPhase::Failed;
            st.reason = Some(reason.into());
            st.message = Some(message.clone());
            st.finished_at = Some(t(now));
        }
        self.events.push(Event { warning: true, reason, note: format!("step {step}: {message}") });
    }
}

/// A step attempt's Pod, with templates already expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRequest {
    pub name: String,
    pub step: String,
    pub attempt: i32,
    /// The item's index, for a `forEach` step.
    pub item: Option<i32>,
    pub container: StepContainer,
}
