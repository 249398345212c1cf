//! The `CronWorkflow` custom resource: creates Workflows on a cron schedule, like a CronJob.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workflow::WorkflowSpec;

/// Label on each Workflow a CronWorkflow created, naming the CronWorkflow.
pub const LABEL_CRON: &str = "hitl.dev/cron-workflow";
/// Annotation on each Workflow a CronWorkflow created: the scheduled time it runs for (RFC 3339).
pub const ANNOTATION_SCHEDULED: &str = "hitl.dev/scheduled-time";

/// A cron field: digits, names, `*`, `/`, `,`, `-`, `?`, `L`, `W`, `#`.
const SCHEDULE_PATTERN: &str =
    r"^(@(yearly|annually|monthly|weekly|daily|hourly)|[0-9A-Za-z*/,?#-]+( +[0-9A-Za-z*/,?#-]+){4,5})$";

/// Creates a Workflow from `workflowSpec` at each time of `schedule`. The Workflows are owned by
/// the CronWorkflow and named `<name>-<unix seconds of the scheduled time>`, so a restarted
/// operator neither skips a run (it starts the most recent missed one, within
/// `startingDeadlineSeconds`) nor doubles one (the name is taken).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hitl.dev",
    version = "v1alpha1",
    kind = "CronWorkflow",
    namespaced,
    status = "CronWorkflowStatus",
    shortname = "cwf",
    category = "hitl",
    derive = "Default",
    derive = "PartialEq",
    doc = "Creates Workflows on a cron schedule, like a CronJob creates Jobs.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Timezone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Active", type_ = "integer", json_path = ".status.activeCount"),
    printcolumn(name = "Last-Schedule", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Next-Schedule", type_ = "string", json_path = ".status.nextScheduleTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CronWorkflowSpec {
    /// When to run, in cron syntax: five fields (minute hour day-of-month month day-of-week, e.g.
    /// `0 9 1 * *` for 09:00 on the first of each month), or six with seconds first
    /// (`*/20 * * * * *`: every 20 seconds), or `@daily`, `@weekly`, `@monthly`, `@yearly`,
    /// `@hourly`. Parsed by the `croner` crate.
    #[schemars(length(min = 1, max = 128), regex(pattern = SCHEDULE_PATTERN))]
    pub schedule: String,

    /// The IANA time zone the schedule is read in, e.g. `Europe/Berlin`. Default: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$"))]
    pub time_zone: Option<String>,

    /// What to do when a run is due while an earlier one is still running: `Allow` (default) runs
    /// both, `Forbid` skips the new one, `Replace` deletes the running one and starts the new one.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,

    /// A run more than this many seconds late (the operator was down, or `Forbid` held it back)
    /// is skipped. Unset: a late run still starts, however late (only the most recent one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,

    /// While true no new run starts; running ones go on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Succeeded Workflows to keep; older ones are deleted. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_jobs_history_limit: Option<i32>,

    /// Failed Workflows to keep; older ones are deleted. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_jobs_history_limit: Option<i32>,

    /// The spec of each Workflow: steps of its own, or `workflowTemplateRef` and `params`. It
    /// passes the same admission policies as a Workflow's spec, checked against whoever writes
    /// the CronWorkflow, when they write it; the operator copies it unchanged.
    pub workflow_spec: WorkflowSpec,
}

/// See `CronWorkflowSpec.concurrencyPolicy`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    #[default]
    Allow,
    Forbid,
    Replace,
}

/// Observed state, written only by the controller.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronWorkflowStatus {
    /// The scheduled time of the newest Workflow created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The next time a Workflow is due (unset while suspended or when the schedule is invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The Workflows created by this CronWorkflow that are still running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ActiveWorkflow>,
    /// How many are running (the ACTIVE column).
    #[serde(default)]
    pub active_count: i32,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (True: scheduling, or suspended; False with reason `InvalidSchedule` or
    /// `InvalidTimeZone`) and `Stalled` (True when the schedule cannot be used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A running Workflow of a CronWorkflow.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveWorkflow {
    /// The Workflow's name.
    pub name: String,
    /// The time it was scheduled for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
}
