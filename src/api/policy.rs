//! The `WorkflowPolicy` custom resource: what a namespace owner allows the Workflows in one
//! namespace to do. The admission policies read it as their parameter object (`paramRef`), so a
//! namespace owner relaxes or tightens the shipped defaults without editing any policy.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name the admission policy bindings look for: `WorkflowPolicy/default` in the namespace.
pub const POLICY_NAME: &str = "default";

/// What Workflows in this namespace may do. Every field defaults to the secure choice; a namespace
/// owner (the `admin` role) sets what to relax. Read by the admission policies when it is named
/// `default`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hitl.dev",
    version = "v1alpha1",
    kind = "WorkflowPolicy",
    namespaced,
    shortname = "hwp",
    category = "hitl",
    derive = "Default",
    derive = "PartialEq",
    doc = "What the Workflows in this namespace may do: relaxations of the secure defaults, and separation of duties.",
    printcolumn(name = "Self-Approval", type_ = "string", json_path = ".spec.selfApproval"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowPolicySpec {
    /// Whether the user who created a Workflow may decide its gates. `Forbid`: separation of
    /// duties, another approver must decide. Default `Allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_approval: Option<SelfApproval>,
    /// Step containers may run privileged (and with any procMount or SELinux options).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privileged: bool,
    /// Step containers may set `allowPrivilegeEscalation: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privilege_escalation: bool,
    /// Step containers may run as UID 0 (`runAsUser: 0` or `runAsNonRoot: false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_run_as_root: bool,
    /// Step containers may use `Unconfined` seccomp or AppArmor profiles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unconfined_profiles: bool,
    /// Capabilities step containers may add, beyond `NET_BIND_SERVICE` (always allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(length(max = 64)))]
    pub allowed_capabilities: Vec<String>,
    /// Step Pods may tolerate control-plane taints (or every taint) and select control-plane nodes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_control_plane_tolerations: bool,
    /// ServiceAccounts a Workflow may name in `spec.serviceAccountName` (besides `default`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(length(max = 253)))]
    pub service_account_names: Vec<String>,
    /// Secrets step containers may read into their environment (`env[].valueFrom.secretKeyRef`,
    /// `envFrom[].secretRef`). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(length(max = 253)))]
    pub secret_names: Vec<String>,
}

/// Whether a Workflow's creator may decide its gates.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SelfApproval {
    /// The creator may decide, if listed as an approver.
    #[default]
    Allow,
    /// Separation of duties: the creator may not decide; another approver must.
    Forbid,
}
