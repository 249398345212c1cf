//! The `Approval` custom resource: one human decision a Workflow waits for.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::policy::SelfApproval;
use super::shared::{Approvers, InputSpec, OnTimeout, RejectWhen};

/// A decision a person makes for a Workflow's suspend step. The controller creates it; a person
/// patches `decision` (and `input`, `comment`, `decidedBy`) once.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hitl.dev",
    version = "v1alpha1",
    kind = "Approval",
    namespaced,
    status = "ApprovalStatus",
    shortname = "apr",
    category = "hitl",
    derive = "Default",
    derive = "PartialEq",
    doc = "A decision a person makes for a Workflow's suspend step.",
    printcolumn(name = "Workflow", type_ = "string", json_path = ".spec.workflowRef.name"),
    printcolumn(name = "Step", type_ = "string", json_path = ".spec.step"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Approvers", type_ = "string", json_path = ".status.approvers"),
    printcolumn(name = "Votes", type_ = "string", json_path = ".status.votes"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = super::validation::approval_spec_rules()))]
pub struct ApprovalSpec {
    /// The Workflow that waits (set by the controller, immutable).
    pub workflow_ref: WorkflowRef,
    /// The suspend step (set by the controller, immutable).
    #[schemars(length(max = 63))]
    pub step: String,
    /// The item of a `forEach` suspend step this gate decides (its index; set by the
    /// controller, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 999))]
    pub item: Option<i32>,
    /// What the person is asked (set by the controller, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub message: Option<String>,
    /// Who may decide (set by the controller, immutable). Empty: anyone RBAC allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// The typed inputs asked for (set by the controller, immutable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 32))]
    pub inputs: Vec<InputSpec>,
    /// Seconds from creation until the gate expires (set by the controller, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i64>,
    /// What expiry means (set by the controller, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
    /// When the gate expires: the step's start plus `timeoutSeconds` (set by the controller,
    /// immutable). The deadline belongs to the step, so an Approval deleted and created again
    /// keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// `Forbid`: the Workflow's creator may not decide this gate (set by the controller from the
    /// step and the namespace's WorkflowPolicy, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_approval: Option<SelfApproval>,
    /// Distinct approvers who must approve (set by the controller, immutable). Above 1 each
    /// person's decision is their vote in `votes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub required_approvals: Option<i32>,
    /// When a quorum gate is rejected (set by the controller, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_when: Option<RejectWhen>,
    /// When the gate escalates: the step's start plus `notify.escalation.afterSeconds` (set by
    /// the controller, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalates_at: Option<Time>,
    /// Whom to tell, reminders and escalation (set by the controller, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<super::notify::NotifySpec>,

    /// The person's decision: `Approve` or `Reject`. Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Values for the inputs, with their JSON types (`"priority": 2`). Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::shared::any_object")]
    pub input: Option<BTreeMap<String, serde_json::Value>>,
    /// Why the person decided so. Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub comment: Option<String>,
    /// The deciding user; must be the user who sends the decision (the API server fills it in).
    /// Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub decided_by: Option<String>,
    /// The decider's groups that this gate lists, as the API server saw them when the decision
    /// was sent (it fills them in). Final once set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(length(max = 512)))]
    pub decided_by_groups: Vec<String>,
    /// A quorum gate's votes, by user. Send a decision as on any gate (`spec.decision`, `input`,
    /// `comment`): the API server records it here under your name. Nobody adds, changes or
    /// removes another's vote.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 64))]
    pub votes: BTreeMap<String, Vote>,
}

/// One person's vote on a quorum gate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vote {
    /// `Approve` or `Reject`.
    pub decision: Decision,
    /// Values for the inputs. Every approving vote carries the same values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::shared::any_object")]
    pub input: Option<BTreeMap<String, serde_json::Value>>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub comment: Option<String>,
    /// The voter's groups that this gate lists, as the API server saw them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64))]
    pub groups: Vec<String>,
}

/// Reference to the owning Workflow.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRef {
    /// Workflow name.
    pub name: String,
    /// Workflow UID.
    pub uid: String,
    /// Who created the Workflow, as the API server recorded it (annotation `hitl.dev/created-by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// A person's decision.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Decision {
    Approve,
    Reject,
}

/// Observed state, written only by the controller.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatus {
    /// Pending, Approved, Rejected, Expired (nobody decided in time; never a person's decision) or
    /// Cancelled (the Workflow ended first, e.g. another step failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ApprovalPhase>,
    /// Who decided, as checked by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When the controller saw the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
    /// When the gate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Approving votes so far and the quorum, on a quorum gate (`1/2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<String>,
    /// Who may decide, for humans (`alice, group:legal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<String>,
    /// Human-readable detail (e.g. why a decision was not acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Standard conditions: `Approved` (True only for an approval: what scripts wait on),
    /// `Decided` (True once approved or rejected; False with reason Expired or Cancelled when
    /// nobody decided), and `Accepted=False` when a decision could not be used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the gate escalated: from then on `spec.notify.escalation.approvers` may decide too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<Time>,
    /// Each notification of each event to each channel: delivered, pending retry, or given up,
    /// with the last error. Kept across operator restarts, so nothing is lost or sent again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["key", "channel"]), length(max = 512))]
    pub notifications: Vec<super::notify::NotificationRecord>,
}

/// Phase of an Approval.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApprovalPhase {
    Pending,
    Approved,
    Rejected,
    Expired,
    Cancelled,
}
