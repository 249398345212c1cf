//! The `Workflow` custom resource: steps that run as Pods, timers, and gates where a person decides.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, ResourceRequirements, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::volumes::{MAX_VOLUMES, Volume, VolumeMount, Workspace};

/// Annotation on a Workflow naming the user who created it, written by the API server (the
/// `hitl-workflow-creator` admission policy) and never by the user. Separation of duties reads it.
pub const ANNOTATION_CREATED_BY: &str = "hitl.dev/created-by";

/// Annotation naming, one per line, everyone who wrote what a run runs besides its sender: on a
/// CronWorkflow or WorkflowTemplate the creator and every later editor of the spec (written by
/// the API server, the `hitl-authors` admission policy); on a CronWorkflow's run, the
/// CronWorkflow's (copied by the operator, the only one who may set it on a Workflow). Where a
/// gate forbids self-approval, none of them may decide it.
pub const ANNOTATION_AUTHORS: &str = "hitl.dev/authors";

/// The names in an `hitl.dev/authors` value.
pub fn authors_of(value: &str) -> Vec<String> {
    value.lines().map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect()
}

/// Longest step list a Workflow may have. Bounded so the CRD's CEL rules stay within the API
/// server's cost budget and status stays far below etcd's object size limit.
pub const MAX_STEPS: usize = 64;

/// A run of steps: Pods, timers and human decisions, in sequence or as a DAG.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hitl.dev",
    version = "v1alpha1",
    kind = "Workflow",
    namespaced,
    status = "WorkflowStatus",
    shortname = "hwf",
    category = "hitl",
    derive = "Default",
    derive = "PartialEq",
    doc = "A run of steps (Pods, timers, human approvals) in sequence or as a DAG.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Waiting-For", type_ = "string", json_path = ".status.waitingFor"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = super::validation::spec_rules()))]
pub struct WorkflowSpec {
    /// Named string parameters, available to every step's expressions as `params.<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 64))]
    pub params: Vec<Param>,

    /// ServiceAccount that step Pods run as. Defaults to the namespace's default account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Limit on the whole run, in seconds from its start. When it passes, running step Pods are
    /// stopped, no new step starts, and the Workflow fails with reason `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,

    /// Delete the Workflow (and so its Pods and Approvals) this many seconds after it finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,

    /// Pause: while true, no new step starts (running ones finish). Set it back to false to go on.
    /// The only field that may change once the run has started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Defaults merged into every step Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateDefaults>,

    /// When finished step Pods are deleted (their outputs are in the status by then). Default:
    /// `Never` (they go with the Workflow, e.g. at `ttlSecondsAfterFinished`).
    #[serde(default, rename = "podGC", skip_serializing_if = "Option::is_none")]
    pub pod_gc: Option<PodGc>,

    /// Volumes step containers may mount (`container.volumeMounts`): `configMap`, `secret`,
    /// `emptyDir` or `persistentVolumeClaim`, nothing else. A Secret or claim is allowed only if
    /// whoever writes the Workflow may `get` it themselves (or, for a Secret, the namespace's
    /// WorkflowPolicy lists it in `secretNames`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = MAX_VOLUMES))]
    pub volumes: Vec<Volume>,

    /// A PersistentVolumeClaim for the whole run, so steps hand files to each other: created from
    /// `volumeClaimTemplate` when the run starts (before its first Pod) as
    /// `<workflow>-workspace-<hash of the UID>` (see `status.workspaceClaimName`), owned by the
    /// Workflow and so deleted with it, and mounted by the steps that set `container.workspace:
    /// true`. Asking for one requires the right to create PersistentVolumeClaims here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,

    /// The steps. Without `dependsOn` a step runs after the one listed before it, so a plain list
    /// is a sequence; `dependsOn` makes a DAG. Required, unless `workflowTemplateRef` is set (then
    /// the steps come from the template and this is left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 64))]
    pub steps: Vec<Step>,

    /// Run a WorkflowTemplate of this namespace instead of steps of its own: the template's spec,
    /// with `params` filling its declared parameters, is resolved once when the run starts and
    /// recorded in `status.template`; the run follows that record, so a later edit of the template
    /// changes no run in flight. Requires the verb `use` on that template
    /// (`kubectl auth can-i use workflowtemplate/<name>`). With it set, only `params`, `suspend`,
    /// `activeDeadlineSeconds` and `ttlSecondsAfterFinished` may be set beside it: what the Pods
    /// get (steps, volumes, serviceAccountName, podTemplate, ...) comes from the template alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_template_ref: Option<super::template::WorkflowTemplateRef>,

    /// Exit steps, like `finally`: they run once every step has ended, whatever the outcome
    /// (not after `activeDeadlineSeconds`). A plain list runs in sequence; `dependsOn` names
    /// other exit steps. Their expressions also see `workflow.phase` (how the steps ended:
    /// `Succeeded` or `Failed`) and `workflow.failedSteps` (the names of the failed ones). The run
    /// ends as the steps did, or `Failed` when an exit step fails. Names are unique across both
    /// lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 16))]
    pub on_exit: Vec<Step>,
}

impl WorkflowSpec {
    /// The steps, then the exit steps: the order of `status.steps`.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().chain(&self.on_exit)
    }
}

/// A named string parameter.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Param {
    /// Parameter name; expressions read it as `params.<name>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// Parameter value.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// Defaults applied to every step Pod.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateDefaults {
    /// Labels and annotations added to every step Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodMetadata>,
    /// Node selector for every step Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for every step Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity for every step Pod (a step's own `affinity` replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of every step Pod. Allowed only if listed in the namespace's WorkflowPolicy
    /// `priorityClassNames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Secrets (of type `kubernetes.io/dockerconfigjson`) to pull step images with, as on a Pod:
    /// `[{name: regcred}]`. Allowed only if whoever writes the Workflow may `get` each of them (or
    /// the namespace's WorkflowPolicy lists it in `secretNames`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Compute resources (CPU and memory requests and limits) of every step container that sets
    /// no `resources` of its own. A step's `resources` replace these as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_resources: Option<ResourceRequirements>,
}

/// When finished step Pods are deleted.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodGc {
    /// `Never` (default), `OnPodSuccess` (a step's Pod once it succeeded), `OnPodCompletion` (a
    /// step attempt's Pod once it finished, failed ones too), `OnWorkflowSuccess` (every Pod once
    /// the run succeeded), `OnWorkflowCompletion` (every Pod once the run ended).
    #[serde(default)]
    pub strategy: PodGcStrategy,
}

/// See `PodGc`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PodGcStrategy {
    #[default]
    Never,
    OnPodSuccess,
    OnPodCompletion,
    OnWorkflowSuccess,
    OnWorkflowCompletion,
}

/// Extra labels and annotations for a Pod.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    /// Labels added to the Pod. Keys under `hitl.dev/` are reserved and ignored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One step of a Workflow: exactly one of `container`, `suspend` or `sleep`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = super::validation::step_rules()))]
pub struct Step {
    /// Step name: a DNS label, unique in the Workflow. Expressions refer to it as `steps.<name>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// Extra labels and annotations for this step's Pod (merged over `podTemplate.metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodMetadata>,

    /// Steps that must finish (Succeeded or Skipped) before this one starts. Unset: the step
    /// listed before this one. Empty list: start at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 16), inner(length(max = 63)))]
    pub depends_on: Option<Vec<String>>,

    /// CEL condition; when it is false the step is `Skipped`. Variables: `params`,
    /// `steps.<name>.phase`, `steps.<name>.outputs.<key>`, `steps.<name>.decidedBy`,
    /// `workflow.name`, `workflow.namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_EXPRESSION_LENGTH))]
    pub when: Option<String>,

    /// Run a container. `{{ expr }}` in `command`, `args` and `env` values is replaced by the
    /// value of the CEL expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<StepContainer>,

    /// Wait for a person: creates an Approval and continues when it is decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<SuspendStep>,

    /// Wait this long (a duration such as `30s`, `5m`, `1h30m`), then succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub sleep: Option<String>,

    /// Extra attempts after a failed one (container steps only). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 20))]
    pub retries: Option<i32>,

    /// How failed attempts are retried: a growing wait between attempts, and a condition on the
    /// failed attempt (container steps with `retries` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,

    /// Limit on each attempt, in seconds (container steps only). An attempt that runs longer is
    /// stopped and counts as failed (reason `Timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub timeout_seconds: Option<i64>,

    /// Affinity of this step's Pod (container steps only); replaces `podTemplate.affinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Fan-out: run the step once per item of a list (container and suspend steps): one Pod per
    /// item (each with its own retries), or one Approval per item (each decided on its own).
    /// Expressions of the step (`when`, templates, `suspend.message`, `retryPolicy.when`) see
    /// `item` and `index`; `when` is decided per item (false: that item is Skipped). The step
    /// succeeds when every item succeeded or was skipped; its outputs are `outputs.items`, a JSON
    /// list of the items' outputs in item order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<ForEach>,
}

/// Most items one `forEach` may have; a longer list fails the step (reason `TooManyItems`).
pub const MAX_ITEMS: usize = 1000;
/// Items of one `forEach` in flight at once when `parallelism` is not set.
pub const DEFAULT_PARALLELISM: i32 = 10;
/// Highest `parallelism`: bounds the Pods one step starts at once and the gate messages kept in
/// status while their gates wait (at most 4 KiB each).
pub const MAX_PARALLELISM: i32 = 100;

/// Where a fan-out's items come from, and how many run at once.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForEach {
    /// CEL expression giving the list, with the variables of `when`: a parameter holding a JSON
    /// list (`params.accounts`), a list an earlier step wrote to its outputs
    /// (`steps.scan.outputs.files`, or `steps.scan.outputs.result` for a bare JSON list; the step
    /// must depend on that step), or a literal (`['eu', 'us']`). Text is read as JSON and must be
    /// a list. Items may be strings, numbers or objects (`{{ item.field }}`). At most 1000 items.
    #[schemars(length(min = 1, max = MAX_EXPRESSION_LENGTH))]
    pub list: String,
    /// Items in flight at once (Pods running, or gates waiting). Default 10, at most 100. Items
    /// start in list order as earlier ones finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_PARALLELISM))]
    pub parallelism: Option<i32>,
}

/// Longest `command`, `args` or `env` value string of a step container. Bounded, like the number
/// of them, so the CRD's CEL rules on them stay within the API server's cost budget and the
/// operator never parses an unbounded template.
pub const MAX_TEMPLATE_LENGTH: usize = 16384;
/// Most `{{ }}` expressions in one template string.
pub const MAX_TEMPLATE_EXPRESSIONS: usize = 16;
/// Longest CEL expression (`when`, or one `{{ }}`), in characters.
pub const MAX_EXPRESSION_LENGTH: usize = 1024;

/// A container to run: a lean subset of the core/v1 Container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepContainer {
    /// Container image.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Entrypoint array; `{{ expr }}` templates are expanded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = MAX_TEMPLATE_LENGTH)))]
    pub command: Vec<String>,
    /// Arguments; `{{ expr }}` templates are expanded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = MAX_TEMPLATE_LENGTH)))]
    pub args: Vec<String>,
    /// Environment variables; `{{ expr }}` templates in `value` are expanded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// Environment from ConfigMaps and Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Compute resources. Unset: `podTemplate.defaultResources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Working directory of the container; unset: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Security context, merged over the secure defaults (no privilege escalation, all
    /// capabilities dropped, RuntimeDefault seccomp, run as non-root, as UID 65532 unless
    /// `runAsUser` says otherwise): what it sets wins, what it leaves out stays secure. What may be
    /// relaxed at all is up to the namespace's policy (see the README's "Security model").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Mount the ServiceAccount's API token into the step's Pod. Default false: a step talks to
    /// the Kubernetes API only when it asks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    /// Volumes of `spec.volumes` to mount (or `workspace`, the run's workspace); each name must be
    /// declared there. `subPath` is relative and without `..`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["mountPath"]), length(max = MAX_VOLUMES))]
    pub volume_mounts: Vec<VolumeMount>,
    /// Mount the run's workspace (`spec.workspace`) at its `mountPath` (default `/workspace`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workspace: bool,
}

/// A gate where a person approves, rejects or supplies input.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspendStep {
    /// What the person is asked; `{{ expr }}` templates are expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
    /// The gate's shape, shared with the Approval it opens.
    #[serde(flatten)]
    pub gate: super::shared::Gate,
}

/// How a container step's failed attempts are retried.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Seconds to wait before the first retry. Default 0: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86_400))]
    pub delay_seconds: Option<i64>,
    /// Each further wait is the previous one times this factor. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub factor: Option<f64>,
    /// The longest wait, in seconds. Default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86_400))]
    pub max_delay_seconds: Option<i64>,
    /// CEL on the failed attempt: retry only when it holds (retries left permitting). Variables:
    /// `attempt.number`, `attempt.exitCode` (-1 when there was none: a timeout, a deleted Pod),
    /// `attempt.reason` (e.g. `Error`, `Timeout`, `OOMKilled`, `PodDeleted`), `attempt.message`,
    /// and those of `when`. E.g. `attempt.exitCode == 75 || attempt.reason == 'Timeout'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_EXPRESSION_LENGTH))]
    pub when: Option<String>,
}

/// Observed state, written only by the controller.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStatus {
    /// Pending, Running, Waiting (every unfinished step waits for a person), Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkflowPhase>,
    /// Human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Machine-readable reason for the phase (e.g. `InvalidSpec`, `StepFailed`, `DeadlineExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Steps that ran (Succeeded or Failed) / all steps; once the run ended also where it failed
    /// (`1/3, failed at scan`) or how many were skipped (`2/3, 1 skipped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Names of the Approvals that wait for a person, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// The workspace's PersistentVolumeClaim (`spec.workspace`), once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_claim_name: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One entry per step, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub steps: Vec<StepStatus>,
    /// Standard conditions, as on a Job: `Succeeded` (True only when the run succeeded: what
    /// scripts and pipelines wait on) and `Failed` (True when it failed, was rejected or timed
    /// out); `Completed` (the run ended, either way), `Waiting` (a person is needed), and
    /// `Reconciling`/`Stalled` as kstatus reads them (Flux sees a run in progress, or failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// What ran, for a Workflow with `spec.workflowTemplateRef`: the template as resolved when
    /// the run started (its resourceVersion, a digest and the resolved spec, parameters filled
    /// in). The run follows this record only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<super::template::ResolvedTemplate>,
}

/// Phase of a Workflow.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WorkflowPhase {
    Pending,
    Running,
    Waiting,
    Succeeded,
    Failed,
}

impl WorkflowPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// Observed state of one step.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// Step name.
    pub name: String,
    /// Pending, Running, Waiting, Succeeded, Failed, Skipped or Omitted.
    pub phase: StepPhase,
    /// Attempts started so far (container steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// The Pod of the current or last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The Approval of a suspend step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_name: Option<String>,
    /// When the step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the current attempt started (container steps; used for the per-attempt timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_started_at: Option<Time>,
    /// When the last attempt was seen failing (container steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_failed_at: Option<Time>,
    /// When the next attempt starts, while a retry waits out its backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// When the step finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Why the step is in its phase (e.g. `Error`, `Timeout`, `PodDeleted`, `Rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Outputs: keys of the JSON object the container wrote to /dev/termination-log (else
    /// `result`), or a gate's input values plus `decision`. Only that file, never the container's
    /// log; readable by everyone who can read the Workflow, so never a Secret's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// Who decided a suspend step (on a quorum gate, every approver, or every rejecter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Every vote cast on a quorum gate, as `user: Approve` or `user: Reject`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<String>,
    /// A `forEach` step: how many items its list has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_count: Option<i32>,
    /// A `forEach` step: one entry per item started so far, in item order (`items[i]` is item
    /// `i`; items start in order, so the ones not listed have not started). Compact on purpose:
    /// Pod and Approval names follow from the index (`<workflow>.<step>.<index>` for a gate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ITEMS))]
    pub items: Vec<ItemStatus>,
}

/// Observed state of one item of a `forEach` step.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    /// Running, Waiting, Succeeded, Failed, Skipped or Omitted.
    pub phase: StepPhase,
    /// Attempts started so far (container steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// When the current attempt started, or the gate opened; cleared once the item finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the next attempt starts, while a retry waits out its backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// Why the item failed, was skipped or is retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The gate's message while it waits; why the item failed (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The item's outputs until the step ends; then they are in the step's `outputs.items`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// Who decided the item's gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

/// Phase of a step.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum StepPhase {
    #[default]
    Pending,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Skipped,
    Omitted,
}

impl StepPhase {
    /// Finished for good: the phase never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped | Self::Omitted)
    }
    /// Lets dependents start.
    pub fn satisfies_dependency(self) -> bool {
        matches!(self, Self::Succeeded | Self::Skipped)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Waiting => "Waiting",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
            Self::Omitted => "Omitted",
        }
    }
}

/// Which kind of step this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    Container,
    Suspend,
    Sleep,
}

impl Step {
    /// The step's kind, or None when it declares zero or several kinds (refused at admission).
    pub fn kind(&self) -> Option<StepKind> {
        match (&self.container, &self.suspend, &self.sleep) {
            (Some(_), None, None) => Some(StepKind::Container),
            (None, Some(_), None) => Some(StepKind::Suspend),
            (None, None, Some(_)) => Some(StepKind::Sleep),
            _ => None,
        }
    }
}
