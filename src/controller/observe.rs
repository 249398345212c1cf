//! What a status write ended, for the metrics: steps that finished, gates that closed. Pure, so
//! each is counted once, by the write that made the change.

use crate::api::{ApprovalPhase, ApprovalStatus, StepKind, StepPhase, Workflow, WorkflowStatus};

/// The steps that `next` records as Succeeded or Failed and the Workflow's current status did
/// not: (kind, phase, seconds from start to end). Skipped and Omitted steps never ran.
pub fn steps_ended(wf: &Workflow, next: &WorkflowStatus) -> Vec<(&'static str, &'static str, f64)> {
    let before = wf.status.as_ref().map(|s| s.steps.as_slice()).unwrap_or_default();
    next.steps
        .iter()
        .filter(|s| !before.iter().any(|b| b.name == s.name && b.phase == s.phase))
        .filter_map(|s| {
            let phase = match s.phase {
                StepPhase::Succeeded => "Succeeded",
                StepPhase::Failed => "Failed",
                _ => return None,
            };
            let kind = match wf.spec.all_steps().find(|d| d.name == s.name)?.kind()? {
                StepKind::Container => "container",
                StepKind::Suspend => "suspend",
                StepKind::Sleep => "sleep",
            };
            let took = s.finished_at.as_ref()?.0.duration_since(s.started_at.as_ref()?.0);
            Some((kind, phase, took.as_secs_f64()))
        })
        .collect()
}

/// The outcome label of a gate that `next` ends, if the gate was open before.
pub fn gate_ended(before: Option<&ApprovalStatus>, next: &ApprovalStatus) -> Option<&'static str> {
    let was_open = before.and_then(|s| s.phase).is_none_or(|p| p == ApprovalPhase::Pending);
    let outcome = match next.phase? {
        ApprovalPhase::Pending => return None,
        ApprovalPhase::Approved => "approved",
        ApprovalPhase::Rejected => "rejected",
        ApprovalPhase::Expired => "expired",
        ApprovalPhase::Cancelled => "cancelled",
    };
    was_open.then_some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workflow(status: serde_json::Value) -> Workflow {
        serde_json::from_value(json!({"apiVersion": "hitl.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "w", "namespace": "n"},
            "spec": {"steps": [{"name": "build", "container": {"image": "busybox"}},
                               {"name": "nap", "sleep": "1s"},
                               {"name": "gate", "suspend": {}}]},
            "status": status}))
        .unwrap()
    }

    fn status(steps: serde_json::Value) -> WorkflowStatus {
        serde_json::from_value(json!({"steps": steps})).unwrap()
    }

    #[test]
    fn a_step_is_counted_by_the_write_that_ends_it() {
        let running = json!([
            {"name": "build", "phase": "Running", "startedAt": "2030-01-01T00:00:00Z"},
            {"name": "nap", "phase": "Pending"},
            {"name": "gate", "phase": "Pending"},
        ]);
        let wf = workflow(json!({"steps": running}));
        let next = status(json!([
            {"name": "build", "phase": "Failed", "startedAt": "2030-01-01T00:00:00Z", "finishedAt": "2030-01-01T00:00:42Z"},
            {"name": "nap", "phase": "Omitted"},
            {"name": "gate", "phase": "Omitted"},
        ]));
        assert_eq!(steps_ended(&wf, &next), vec![("container", "Failed", 42.0)]);
        // Written again unchanged: not counted twice.
        let ended = workflow(serde_json::to_value(&next).unwrap());
        assert_eq!(steps_ended(&ended, &next), vec![]);
    }

    #[test]
    fn a_gate_ends_once_with_its_outcome() {
        let st = |p: &str| serde_json::from_value::<ApprovalStatus>(json!({"phase": p})).unwrap();
        assert_eq!(gate_ended(Some(&st("Pending")), &st("Approved")), Some("approved"));
        assert_eq!(gate_ended(None, &st("Expired")), Some("expired"));
        assert_eq!(gate_ended(Some(&st("Pending")), &st("Cancelled")), Some("cancelled"));
        assert_eq!(gate_ended(Some(&st("Pending")), &st("Rejected")), Some("rejected"));
        assert_eq!(gate_ended(Some(&st("Approved")), &st("Approved")), None);
        assert_eq!(gate_ended(Some(&st("Pending")), &st("Pending")), None);
    }
}
