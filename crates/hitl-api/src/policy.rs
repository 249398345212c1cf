//! The `WorkflowPolicy` custom resource: what a namespace owner allows the Workflows in one
//! namespace to do. The admission policies read it as their parameter object (`paramRef`), so a
//! namespace owner relaxes or tightens the shipped defaults without editing any policy.
//!
//! Relaxing takes two keys: the relaxations count only in a namespace a cluster admin labelled
//! `hitl.dev/workflow-policy` (policy `hitl-workflow-security-custom`; elsewhere
//! `hitl-workflow-security` applies the secure defaults), and only the namespace owner may write
//! this object (the chart aggregates its write rights into `admin`, not `edit`, since editors
//! create Workflows). `selfApproval` only tightens, so it counts in every namespace. The
//! notification fields (`notificationHosts`, `allowPlaintextCredentials`) are the operator's to
//! read, not the admission policies', and count in every namespace: they concern only the
//! namespace's own channels, which only its owner defines, and its own Secrets.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name the admission policy bindings look for: `WorkflowPolicy/default` in the namespace.
pub const POLICY_NAME: &str = "default";

/// A ServiceAccount or Secret name (RFC 1123 subdomain).
const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// What Workflows in this namespace may do. Every field defaults to the secure choice; a namespace
/// owner (the `admin` role) sets what to relax. Only the object named `default` is read, and its
/// relaxations only where a cluster admin labelled the namespace `hitl.dev/workflow-policy`; in
/// such a namespace every Workflow write is refused until `WorkflowPolicy/default` exists.
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
    /// Step containers may run privileged: `privileged: true`, `windowsOptions.hostProcess`, a
    /// `procMount` other than `Default`, and SELinux options beyond Pod Security baseline's (a
    /// user or role, a type other than the `container_*` ones).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privileged: bool,
    /// Step containers may set `allowPrivilegeEscalation: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privilege_escalation: bool,
    /// Step containers may run as UID 0 (`runAsUser: 0` or `runAsNonRoot: false`). Otherwise a
    /// step runs as its `runAsUser`, or as 65532 when it sets none. (Group 0 is allowed anyway.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_run_as_root: bool,
    /// Step containers may use `Unconfined` seccomp or AppArmor profiles (fields, or the
    /// deprecated AppArmor annotation). `RuntimeDefault` and `Localhost` profiles are always
    /// allowed, as by Pod Security restricted: a Localhost profile is one a node admin installed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unconfined_profiles: bool,
    /// Capabilities step containers may add, beyond `NET_BIND_SERVICE` (always allowed), named as
    /// in a securityContext: `SYS_PTRACE`, not `CAP_SYS_PTRACE`. Every step still drops `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        extend("x-kubernetes-list-type" = "set"),
        length(max = 64),
        inner(length(max = 64), regex(pattern = r"^[A-Z][A-Z0-9_]*$"))
    )]
    pub allowed_capabilities: Vec<String>,
    /// Step Pods may tolerate control-plane taints (`node-role.kubernetes.io/control-plane` or
    /// `/master`, or every taint: `operator: Exists` without a key) and select control-plane
    /// nodes by those labels in `podTemplate.nodeSelector`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_control_plane_tolerations: bool,
    /// ServiceAccounts a Workflow may name in `spec.serviceAccountName` (besides `default`). Their
    /// API token reaches a step only when the step sets `automountServiceAccountToken: true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(length(max = 253), regex(pattern = DNS_SUBDOMAIN)))]
    pub service_account_names: Vec<String>,
    /// Secrets any Workflow here may use: read into a step's environment
    /// (`env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`), mount (`spec.volumes[].secret`) or
    /// pull images with (`podTemplate.imagePullSecrets`). Empty: none, beyond the Secrets that
    /// whoever writes the Workflow may `get` themselves (those are allowed everywhere). A step's
    /// outputs are readable by everyone who can read the Workflow: a step must not write what it
    /// read from a Secret to its termination message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(length(max = 253), regex(pattern = DNS_SUBDOMAIN)))]
    pub secret_names: Vec<String>,
    /// PriorityClasses a Workflow may name in `podTemplate.priorityClassName`. Empty: none (step
    /// Pods get the cluster's default priority), since a high priority preempts other Pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(length(max = 253), regex(pattern = DNS_SUBDOMAIN)))]
    pub priority_class_names: Vec<String>,
    /// Hosts this namespace's NotificationChannels may reach although they resolve to addresses
    /// notifications are kept from: loopback, link-local (cloud metadata), unspecified, multicast,
    /// and the cluster's Service and Pod ranges. Exact host names or IP addresses as the channel
    /// writes them (`hooks.internal`, `10.96.4.2`, `::1`); no wildcards. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(length(min = 1, max = 253)))]
    pub notification_hosts: Vec<String>,
    /// E-mail channels with `tls: None` may send their `credentialsSecret` (SMTP AUTH) in plain
    /// text. Otherwise such a channel's mail is held, with the reason recorded on the gate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plaintext_credentials: bool,
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
