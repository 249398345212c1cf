//! Types shared by the Workflow's suspend step and the Approval it creates.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::notify::NotifySpec;
use super::policy::SelfApproval;

/// A gate's shape: who may decide, what they supply, when it expires, how a quorum counts and whom
/// to tell. Defined once and flattened into both a Workflow's suspend step and the Approval it
/// opens (where the controller copies it and it is immutable); the fields on the wire are those of
/// each, unchanged.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// Who may decide. Empty: anyone whom RBAC lets patch approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// Typed input the person supplies; checked by the API server when it is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 32))]
    pub inputs: Vec<InputSpec>,
    /// Seconds until the gate expires. Unset: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i64>,
    /// What expiry means for the step: `Reject` (default; the step fails) or `Approve` (the step
    /// succeeds with the inputs' defaults and `decision: Expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
    /// `Forbid`: the user who created the Workflow may not decide this gate, even if listed
    /// (separation of duties). The namespace's WorkflowPolicy can forbid it for every gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_approval: Option<SelfApproval>,
    /// Distinct approvers who must approve (a quorum, e.g. 2 for four eyes). Default 1. Above 1,
    /// each person's decision is recorded as their vote (`spec.votes.<user>` of the Approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub required_approvals: Option<i32>,
    /// When a quorum gate is rejected: `QuorumUnreachable` (default) or `AnyReject` (a veto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_when: Option<RejectWhen>,
    /// Whom to tell that the gate waits, reminders, and escalation to more approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,
    /// What the approver must see before deciding: earlier steps' outputs and, with `logs`, their
    /// container logs, which the gate's approvers may then read (for that gate only, while it waits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["step"]), length(max = 8))]
    pub evidence: Vec<Evidence>,
}

/// One earlier step whose results a gate shows its approvers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// An earlier step of the run: listed before the gate, or (in a DAG) one it `dependsOn`. A
    /// `forEach` step: every item.
    #[schemars(length(min = 1, max = 63))]
    pub step: String,
    /// Its container log too: the approvers may read it (`kubectl hitl logs`, the gate page)
    /// while the gate waits, and its Pod is kept until the gate is decided, whatever `podGC` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logs: bool,
}

/// Who may decide a gate: listed users, and members of listed groups.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// User names as the API server knows them (e.g. `alice`, `system:serviceaccount:ns:name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64))]
    pub users: Vec<String>,
    /// Group names; any member may decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64))]
    pub groups: Vec<String>,
}

impl Approvers {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    /// One line for humans: `alice, group:legal`.
    pub fn summary(&self) -> String {
        let users = self.users.iter().cloned();
        let groups = self.groups.iter().map(|g| format!("group:{g}"));
        users.chain(groups).collect::<Vec<_>>().join(", ")
    }
}

/// A typed value a person supplies at a gate.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = super::validation::input_spec_rules()))]
pub struct InputSpec {
    /// Input name: the key in the Approval's `spec.input`, and `outputs.<name>` of the step.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// JSON type of the value: string (default), integer, number or boolean.
    #[serde(default, rename = "type")]
    pub type_: InputType,
    /// What the person is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// The input must be supplied to approve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Value used when the input is not supplied (and on expiry with `onTimeout: Approve`).
    /// Must have the input's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::shared::any_json")]
    pub default: Option<serde_json::Value>,
    /// Allowed values (string inputs only).
    #[serde(default, rename = "enum", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub enum_: Vec<String>,
    /// Smallest allowed value (integer and number inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest allowed value (integer and number inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// Longest allowed string, in characters (string inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 65536))]
    pub max_length: Option<i64>,
    /// Regular expression (RE2) a string input must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub pattern: Option<String>,
}

/// JSON type of an input.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

/// What a gate's expiry means for its step.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnTimeout {
    /// The step fails with reason `ApprovalExpired`.
    #[default]
    Reject,
    /// The step succeeds with the inputs' defaults and `decision: Expired`.
    Approve,
}

/// Schema for a value of any JSON type (kept as-is by the API server).
pub fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema for a JSON object with values of any type.
pub fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// When a quorum gate is rejected.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RejectWhen {
    /// Once rejections leave too few listed users to reach the quorum. With groups listed the
    /// number of possible voters is unknown, so only a full quorum, or expiry, ends the gate.
    #[default]
    QuorumUnreachable,
    /// On the first rejection (a veto).
    AnyReject,
}
