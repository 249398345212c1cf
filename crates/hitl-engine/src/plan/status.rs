//! The run's status: phase, message, progress, `waitingFor` and conditions, from its steps.

use jiff::Timestamp;

use super::ctx::{Ctx, after, t};
use super::fanout;
use crate::conditions;
use crate::event::Event;
use hitl_api::{StepPhase, StepStatus, Workflow, WorkflowPhase, WorkflowStatus};

pub(super) fn finish_run(
    ctx: &mut Ctx<'_>,
    status: &mut WorkflowStatus,
    phase: WorkflowPhase,
    reason: &str,
    message: String,
) {
    status.phase = Some(phase);
    status.reason = Some(reason.into());
    status.message = Some(message.clone());
    status.finished_at = Some(t(ctx.now));
    status.waiting_for = None;
    status.progress = Some(progress(&status.steps, Some(phase)));
    set_conditions(ctx, status);
    if let Some(ttl) = ctx.wf.spec.ttl_seconds_after_finished {
        ctx.wake_at(after(&t(ctx.now), ttl));
    }
    let (warning, event) = match phase {
        WorkflowPhase::Succeeded => (false, "WorkflowSucceeded"),
        _ => (true, "WorkflowFailed"),
    };
    ctx.plan.events.push(Event { warning, reason: event, note: message });
}

/// The status to write instead of one the API server refused as too large: the run fails, and
/// what made it large (outputs, long messages) is dropped. Returns it and the Approvals of the
/// gates that were still waiting, to cancel.
pub fn too_large(wf: &Workflow, planned: &WorkflowStatus, now: Timestamp) -> (WorkflowStatus, Vec<String>) {
    let mut status = planned.clone();
    let mut waiting = vec![];
    let name = wf.metadata.name.clone().unwrap_or_default();
    for st in status.steps.iter_mut() {
        st.outputs.clear();
        st.message = st.message.take().map(|m| m.chars().take(256).collect());
        if st.phase == StepPhase::Waiting {
            waiting.extend(st.approval_name.clone());
        }
        waiting.extend(fanout::approvals_waiting(&name, st));
        // Item entries go too (`itemCount` stays): `items[i]` is item i, so none can be kept alone.
        st.items.clear();
        if !st.phase.is_terminal() {
            st.phase = if st.phase == StepPhase::Pending { StepPhase::Omitted } else { StepPhase::Failed };
            st.reason = Some("StatusTooLarge".into());
            st.finished_at = Some(t(now));
        }
    }
    let mut ctx = Ctx::new(wf, &[], &[], now);
    let message = "the Workflow's status grew larger than the API server stores; outputs were dropped \
                   (keep step outputs and the spec small: outputs are for values, not documents)"
        .to_string();
    finish_run(&mut ctx, &mut status, WorkflowPhase::Failed, "StatusTooLarge", message);
    (status, waiting)
}

/// Workflow phase, message, progress and conditions from the steps.
pub(super) fn summarize(ctx: &mut Ctx<'_>, status: &mut WorkflowStatus, steps: Vec<StepStatus>, deadline_passed: bool) {
    status.steps = steps;
    let steps = &status.steps;
    let total = steps.len();
    let done = steps.iter().filter(|s| s.phase.is_terminal()).count();
    status.progress = Some(progress(steps, None));
    let failed: Vec<&StepStatus> = steps.iter().filter(|s| s.phase == StepPhase::Failed).collect();

    if done == total {
        let (phase, reason, message) = if deadline_passed {
            (WorkflowPhase::Failed, "DeadlineExceeded", "the Workflow's activeDeadlineSeconds passed".to_string())
        } else if let Some(f) = failed.first() {
            let detail = f.message.clone().unwrap_or_default();
            let why = f.reason.clone().unwrap_or_else(|| "Failed".into());
            (WorkflowPhase::Failed, "StepFailed", format!("step {} failed ({why}): {detail}", f.name))
        } else {
            (WorkflowPhase::Succeeded, "Succeeded", format!("all {total} steps finished"))
        };
        finish_run(ctx, status, phase, reason, message);
        return;
    }

    let waiting: Vec<&StepStatus> = steps.iter().filter(|s| s.phase == StepPhase::Waiting).collect();
    let running: Vec<&str> = steps.iter().filter(|s| s.phase == StepPhase::Running).map(|s| s.name.as_str()).collect();
    status.waiting_for = (!waiting.is_empty()).then(|| waiting_for(&ctx.name, &waiting));
    let (phase, reason, message) = if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|s| s.name.as_str()).collect();
        (
            WorkflowPhase::Running,
            "Failing",
            format!("step {} failed; waiting for {} to finish", names.join(", "), running.join(", ")),
        )
    } else if running.is_empty() && !waiting.is_empty() {
        let names = waiting_for(&ctx.name, &waiting);
        (WorkflowPhase::Waiting, "ApprovalPending", format!("waiting for approval {names}"))
    } else if running.is_empty() && ctx.wf.spec.suspend {
        (WorkflowPhase::Pending, "Suspended", "suspended: set spec.suspend to false to continue".to_string())
    } else {
        (WorkflowPhase::Running, "Running", format!("running {}", running.join(", ")))
    };
    status.phase = Some(phase);
    status.reason = Some(reason.into());
    status.message = Some(message);
    set_conditions(ctx, status);
}

/// Most Approvals `waitingFor` names; the rest are counted (a forEach gate may wait on many).
const WAITING_FOR_NAMES: usize = 5;

/// The Approvals waiting steps wait on, comma-separated: at most `WAITING_FOR_NAMES`, then
/// `+N more`.
fn waiting_for(workflow: &str, waiting: &[&StepStatus]) -> String {
    let names: Vec<String> = waiting
        .iter()
        .flat_map(|s| {
            if s.items.is_empty() {
                s.approval_name.clone().into_iter().collect()
            } else {
                fanout::approvals_waiting(workflow, s)
            }
        })
        .collect();
    let mut shown = names[..names.len().min(WAITING_FOR_NAMES)].join(",");
    if names.len() > WAITING_FOR_NAMES {
        shown.push_str(&format!(",+{} more", names.len() - WAITING_FOR_NAMES));
    }
    shown
}

/// The PROGRESS column: steps that ran (Succeeded or Failed) of all steps, so skipped and omitted
/// steps never look like work done; once the run ended, why the rest did not run.
pub fn progress(steps: &[StepStatus], ended: Option<WorkflowPhase>) -> String {
    let total = steps.len();
    let ran = steps.iter().filter(|s| matches!(s.phase, StepPhase::Succeeded | StepPhase::Failed)).count();
    let skipped = steps.iter().filter(|s| s.phase == StepPhase::Skipped).count();
    let stopped_at = steps.iter().find(|s| s.phase == StepPhase::Failed).map(|s| s.name.as_str());
    match (ended, stopped_at) {
        (Some(WorkflowPhase::Failed), Some(step)) => format!("{ran}/{total}, failed at {step}"),
        (Some(WorkflowPhase::Failed), None) => format!("{ran}/{total}, stopped"),
        (Some(_), _) if skipped > 0 => format!("{ran}/{total}, {skipped} skipped"),
        _ => format!("{ran}/{total}"),
    }
}

/// `Succeeded` and `Failed` (as on a Job: at most one is True, and only once the run ended),
/// `Completed` (the run ended, either way), `Waiting`, and the `Reconciling`/`Stalled` pair
/// kstatus reads.
fn set_conditions(ctx: &Ctx<'_>, status: &mut WorkflowStatus) {
    let phase = status.phase.unwrap_or(WorkflowPhase::Pending);
    let completed = match phase {
        WorkflowPhase::Succeeded => ("True", "Succeeded"),
        WorkflowPhase::Failed => ("True", "Failed"),
        WorkflowPhase::Waiting => ("False", "Waiting"),
        WorkflowPhase::Pending => ("False", "Pending"),
        WorkflowPhase::Running => ("False", "Running"),
    };
    let outcome = |wanted: WorkflowPhase| if phase == wanted { "True" } else { "False" };
    // Reason of a False outcome condition: what the run is instead (Running, Waiting, Failed...).
    let failed_reason = status.reason.clone().filter(|_| phase == WorkflowPhase::Failed);
    let waiting = if phase.is_terminal() || status.waiting_for.is_none() {
        ("False", "NoApprovalPending")
    } else {
        ("True", "ApprovalPending")
    };
    let message = status.message.clone().unwrap_or_default();
    let failed_reason = failed_reason.as_deref().unwrap_or(completed.1);
    let wanted = vec![
        ("Succeeded", outcome(WorkflowPhase::Succeeded), completed.1, message.clone()),
        ("Failed", outcome(WorkflowPhase::Failed), failed_reason, message.clone()),
        ("Completed", completed.0, completed.1, message.clone()),
        (
            "Waiting",
            waiting.0,
            waiting.1,
            status.waiting_for.clone().map(|w| format!("waiting for approval {w}")).unwrap_or_default(),
        ),
        // kstatus (Flux, kpt, cli-utils) reads these two: in progress while the run goes on,
        // failed when it failed.
        ("Reconciling", if phase.is_terminal() { "False" } else { "True" }, completed.1, message.clone()),
        (
            "Stalled",
            if phase == WorkflowPhase::Failed { "True" } else { "False" },
            completed.1,
            if phase == WorkflowPhase::Failed { message.clone() } else { String::new() },
        ),
    ];
    // Conditions others keep on the run (the archive's `Archived`) stay as they are.
    let others: Vec<_> = status.conditions.iter().filter(|c| !wanted.iter().any(|w| w.0 == c.type_)).cloned().collect();
    status.conditions = conditions::merge(&status.conditions, wanted, t(ctx.now), ctx.wf.metadata.generation);
    status.conditions.extend(others);
}
