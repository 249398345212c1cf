//! The `ApprovalInbox` custom resource: the gates waiting for one user or one group, kept by the
//! operator so that a person with no right to list Approvals can still find theirs (RBAC has no
//! "list only the objects that name me"; it can grant `get` on one object by name).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pending gates that list one user or group as an approver (or as an escalation approver,
/// once the gate escalated). Written only by the operator; readable only by that subject, who is
/// granted `get` on exactly this object. Named `user-<sha256 of the name>` or
/// `group-<sha256 of the name>`, so `kubectl hitl pending` finds it knowing only who you are.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hitl.dev",
    version = "v1alpha1",
    kind = "ApprovalInbox",
    status = "ApprovalInboxStatus",
    shortname = "inbox",
    derive = "Default",
    derive = "PartialEq",
    doc = "The pending gates waiting for one user or group, kept by the operator (kubectl hitl pending reads it).",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.subject.kind"),
    printcolumn(name = "Subject", type_ = "string", json_path = ".spec.subject.name"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pending"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.subject == oldSelf.subject",
    "message": "an inbox's subject is fixed",
}]))]
pub struct ApprovalInboxSpec {
    /// Whose inbox this is.
    pub subject: InboxSubject,
}

/// A user or a group, as RBAC subjects name them.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxSubject {
    /// `User` or `Group`.
    pub kind: SubjectKind,
    /// The user or group name as the API server knows it.
    #[schemars(length(min = 1, max = 512))]
    pub name: String,
}

/// The kind of an inbox's subject.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum SubjectKind {
    #[default]
    User,
    Group,
}

impl SubjectKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }
}

/// What waits for the subject, written only by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalInboxStatus {
    /// The gates, soonest deadline first (gates without one last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub items: Vec<InboxItem>,
    /// How many gates are listed in `items`.
    #[serde(default)]
    pub pending: i32,
    /// Gates left out because `items` is full (at least this many more wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub truncated: Option<i32>,
    /// Whose gates were left out (counted in `truncated`), per Workflow, most first (at most 20
    /// Workflows). The inbox is shared out between Workflows, so a Workflow with hundreds of
    /// gates fills it only as far as others leave room.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub left_out: Vec<LeftOut>,
    /// Gates that listed the subject and were decided (or expired, or cancelled) in the last
    /// 7 days, newest first, at most 20: what the approval pages show as "Recently decided".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub recent: Vec<InboxItem>,
}

/// Gates of one Workflow that an inbox left out.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeftOut {
    /// The Workflow's namespace.
    pub namespace: String,
    /// The Workflow whose gates were left out.
    pub workflow: String,
    /// How many of its gates were left out.
    #[schemars(range(min = 1))]
    pub gates: i32,
}

/// One pending gate, summarised; `kubectl get approval` (the subject may `get` it) shows all.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxItem {
    /// The Approval's namespace.
    pub namespace: String,
    /// The Approval's name.
    pub name: String,
    /// The Workflow that waits.
    pub workflow: String,
    /// The suspend step.
    pub step: String,
    /// What the person is asked (at most 512 characters; the Approval has it all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The inputs asked for, by name; required ones end in `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub inputs: Vec<String>,
    /// Who may decide, for humans (`alice, group:legal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<String>,
    /// When the gate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// The subject is here as an escalation approver: the gate escalated to them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub escalated: bool,
    /// Approving votes so far and the quorum, on a quorum gate (`1/2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<String>,
    /// In `recent`: how the gate ended (`Approved`, `Rejected`, `Expired`, `Cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// In `recent`: who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// In `recent`: when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
}
