//! The `Approval` custom resource: one human decision a Workflow waits for.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::shared::Gate;

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
    /// When the gate expires: the step's start plus `timeoutSeconds` (set by the controller,
    /// immutable). The deadline belongs to the step, so an Approval deleted and created again
    /// keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the gate escalates: the step's start plus `notify.escalation.afterSeconds` (set by
    /// the controller, immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalates_at: Option<Time>,
    /// The gate's shape, copied from the step (set by the controller, immutable).
    #[serde(flatten)]
    pub gate: Gate,
    /// The evidence as it stood when the gate opened: each evidence step's (or item's) outputs
    /// and, where its log is shown, its Pod (set by the controller, immutable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub evidence_pods: Vec<EvidencePod>,
    /// `sha256:<hex>` over every evidence step's outputs when the gate opened (all of them, also
    /// those too long to copy here): what the approver had in front of them (set by the
    /// controller, immutable; the decided Event carries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    pub evidence_digest: Option<String>,

    /// The person's decision: `Approve` or `Reject`. Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Values for the inputs, with their JSON types (`"priority": 2`). Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::shared::any_object")]
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
    /// What the deciding person's page showed of the evidence logs when it rendered (each log's
    /// lines and bytes), as the approval pages report it with the decision. Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub evidence_seen: Option<String>,
    /// A quorum gate's votes, by user. Send a decision as on any gate (`spec.decision`, `input`,
    /// `comment`): the API server records it here under your name. Nobody adds, changes or
    /// removes another's vote.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 64))]
    pub votes: BTreeMap<String, Vote>,
}

/// The fields of an Approval's spec that the controller sets from the gate, in one list: the CRD
/// rule that makes them immutable (`validation::approval_spec_rules`) and the check of an
/// Approval against the gate a step expects (`engine::gate::mismatch`, an exhaustive `match`)
/// are both derived from it, so a field added to the gate cannot be left out of either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateField {
    WorkflowRef,
    Step,
    Item,
    Message,
    Approvers,
    Inputs,
    TimeoutSeconds,
    OnTimeout,
    ExpiresAt,
    SelfApproval,
    RequiredApprovals,
    RejectWhen,
    Notify,
    EscalatesAt,
    Evidence,
    EvidencePods,
    EvidenceDigest,
}

impl GateField {
    /// Every field, in the order the immutability rule lists them.
    pub const ALL: [GateField; 17] = [
        GateField::WorkflowRef,
        GateField::Step,
        GateField::Item,
        GateField::Message,
        GateField::Approvers,
        GateField::Inputs,
        GateField::TimeoutSeconds,
        GateField::OnTimeout,
        GateField::ExpiresAt,
        GateField::SelfApproval,
        GateField::RequiredApprovals,
        GateField::RejectWhen,
        GateField::Notify,
        GateField::EscalatesAt,
        GateField::Evidence,
        GateField::EvidencePods,
        GateField::EvidenceDigest,
    ];

    /// The field's name in the API.
    pub const fn name(self) -> &'static str {
        match self {
            GateField::WorkflowRef => "workflowRef",
            GateField::Step => "step",
            GateField::Item => "item",
            GateField::Message => "message",
            GateField::Approvers => "approvers",
            GateField::Inputs => "inputs",
            GateField::TimeoutSeconds => "timeoutSeconds",
            GateField::OnTimeout => "onTimeout",
            GateField::ExpiresAt => "expiresAt",
            GateField::SelfApproval => "selfApproval",
            GateField::RequiredApprovals => "requiredApprovals",
            GateField::RejectWhen => "rejectWhen",
            GateField::Notify => "notify",
            GateField::EscalatesAt => "escalatesAt",
            GateField::Evidence => "evidence",
            GateField::EvidencePods => "evidencePods",
            GateField::EvidenceDigest => "evidenceDigest",
        }
    }
}

/// One evidence step (or item) as the gate opened.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidencePod {
    #[schemars(length(max = 63))]
    pub step: String,
    /// The item of a `forEach` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 999))]
    pub item: Option<i32>,
    /// The Pod whose log the approvers may read (only where the gate asks for `logs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub pod: Option<String>,
    /// Its outputs as JSON (absent when there were none, or when the gate's evidence outputs
    /// together passed 64 KiB: the digest still covers them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub outputs: Option<String>,
}

/// The fields of an Approval's spec that a person writes: the decision.
pub const DECISION_FIELDS: [&str; 7] =
    ["decision", "input", "comment", "decidedBy", "decidedByGroups", "evidenceSeen", "votes"];

/// One person's vote on a quorum gate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vote {
    /// `Approve` or `Reject`.
    pub decision: Decision,
    /// Values for the inputs. Every approving vote carries the same values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::shared::any_object")]
    pub input: Option<BTreeMap<String, serde_json::Value>>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub comment: Option<String>,
    /// What the voter's page showed of the evidence logs (`evidenceSeen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub evidence_seen: Option<String>,
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
    /// Who else wrote what the run runs: the authors of its CronWorkflow or WorkflowTemplate.
    /// Where the gate forbids self-approval, they may not decide it either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 128))]
    pub authors: Vec<String>,
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

#[cfg(test)]
mod gate_field_tests {
    use super::*;

    /// Every field of `ApprovalSpec` is either the gate's (`GateField`) or the decision's: a new
    /// field must be put in one of the two lists, and so gets its immutability and its check.
    #[test]
    fn every_spec_field_is_listed_once() {
        let full = serde_json::json!({
            "workflowRef": {"name": "w", "uid": "u"}, "step": "s", "item": 0, "message": "m",
            "approvers": {"users": ["a"]}, "inputs": [{"name": "i", "type": "string"}],
            "timeoutSeconds": 1, "onTimeout": "Reject", "expiresAt": "2026-01-01T00:00:00Z",
            "selfApproval": "Forbid", "requiredApprovals": 2, "rejectWhen": "AnyReject",
            "notify": {"channels": ["c"]}, "escalatesAt": "2026-01-01T00:00:00Z",
            "evidence": [{"step": "p", "logs": true}], "evidencePods": [{"step": "p", "pod": "p-1"}],
            "evidenceDigest": "sha256:0",
            "decision": "Approve", "input": {"i": "x"}, "comment": "c", "decidedBy": "a",
            "decidedByGroups": ["g"], "votes": {"a": {"decision": "Approve"}}, "evidenceSeen": "p-1: 3 lines",
        });
        let spec: ApprovalSpec = serde_json::from_value(full).expect("a full spec");
        let written = serde_json::to_value(&spec).expect("serializes");
        let mut fields: Vec<&str> = written.as_object().expect("an object").keys().map(String::as_str).collect();
        let mut listed: Vec<&str> = GateField::ALL.iter().map(|f| f.name()).chain(DECISION_FIELDS).collect();
        fields.sort();
        listed.sort();
        assert_eq!(fields, listed);
    }
}
