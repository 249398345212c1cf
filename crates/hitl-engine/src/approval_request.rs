//! A gate to open: what a waiting step expects its Approval to carry. The plan makes one when a
//! gate opens (the Workflow controller creates its Approval from it), and `gate` checks an
//! existing Approval against it, in the plan and in the Approval controller.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use hitl_api::approval::EvidencePod;
use hitl_api::{ApprovalSpec, Gate, SelfApproval, WorkflowPolicySpec, WorkflowRef};

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
    /// The evidence steps' Pods and outputs as they stood when the gate opened.
    pub evidence_pods: Vec<EvidencePod>,
    pub evidence_digest: Option<String>,
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
            evidence_pods: self.evidence_pods.clone(),
            evidence_digest: self.evidence_digest.clone(),
            ..Default::default()
        }
    }

    /// The Approval spec under the namespace owner's WorkflowPolicy: its `selfApproval: Forbid`
    /// holds whatever the Workflow says (an author cannot loosen the owner's rule, and `gate`
    /// accepts a gate made stricter); without a policy the Workflow's word stands.
    pub fn spec_under(&self, policy: Option<&WorkflowPolicySpec>) -> ApprovalSpec {
        let mut spec = self.spec();
        if policy.and_then(|p| p.self_approval) == Some(SelfApproval::Forbid) {
            spec.gate.self_approval = Some(SelfApproval::Forbid);
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(self_approval: Option<SelfApproval>) -> ApprovalRequest {
        ApprovalRequest {
            name: "run-approve".into(),
            workflow: WorkflowRef::default(),
            step: "approve".into(),
            item: None,
            message: None,
            gate: Gate { self_approval, ..Default::default() },
            expires_at: None,
            escalates_at: None,
            evidence_pods: vec![],
            evidence_digest: None,
        }
    }

    fn policy(self_approval: Option<SelfApproval>) -> WorkflowPolicySpec {
        WorkflowPolicySpec { self_approval, ..Default::default() }
    }

    #[test]
    fn the_namespace_owners_forbid_holds_over_the_workflows_allow() {
        let spec = request(Some(SelfApproval::Allow)).spec_under(Some(&policy(Some(SelfApproval::Forbid))));
        assert_eq!(spec.gate.self_approval, Some(SelfApproval::Forbid));
    }

    #[test]
    fn without_a_forbidding_policy_the_workflows_word_stands() {
        for owner in [None, Some(policy(None)), Some(policy(Some(SelfApproval::Allow)))] {
            for author in [None, Some(SelfApproval::Allow), Some(SelfApproval::Forbid)] {
                let spec = request(author).spec_under(owner.as_ref());
                assert_eq!(spec.gate.self_approval, author, "policy {owner:?}, workflow {author:?}");
            }
        }
    }
}
