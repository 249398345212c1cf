//! A gate to open: what a waiting step expects its Approval to carry. The plan makes one when a
//! gate opens (the Workflow controller creates its Approval from it), and `gate` checks an
//! existing Approval against it, in the plan and in the Approval controller.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{ApprovalSpec, Gate, WorkflowRef};

/// A gate to open: everything its Approval must carry, all of it taken from the Workflow and the
/// step's status, never from an existing Approval.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    pub name: String,
    pub workflow: WorkflowRef,
    pub step: String,
    /// The item's index, for a `forEach` step.
    pub item: Option<i32>,
    pub message: Option<String>,
    /// The step's gate, normalized: no empty approvers, no quorum of one.
    pub gate: Gate,
    /// The step's start plus the gate's timeout.
    pub expires_at: Option<Time>,
    /// The step's start plus the escalation delay: no escalation counts before.
    pub escalates_at: Option<Time>,
}

impl ApprovalRequest {
    /// The Approval spec the controller creates: the controller's fields only, no decision.
    pub fn spec(&self) -> ApprovalSpec {
        ApprovalSpec {
            workflow_ref: self.workflow.clone(),
            step: self.step.clone(),
            item: self.item,
            message: self.message.clone(),
            expires_at: self.expires_at.clone(),
            escalates_at: self.escalates_at.clone(),
            gate: self.gate.clone(),
            ..Default::default()
        }
    }
}
