//! The variables CEL expressions see: parameters, the steps' state, and the run's.

use std::collections::BTreeMap;

use serde_json::json;

use crate::expr;
use hitl_api::{StepPhase, StepStatus, Workflow, WorkflowPhase};

/// The variables expressions see, from the steps' current state.
pub(super) fn scope(wf: &Workflow, steps: &[StepStatus]) -> expr::Scope {
    expr::Scope::new(scope_vars(wf, steps))
}

pub(super) fn scope_vars(wf: &Workflow, steps: &[StepStatus]) -> serde_json::Value {
    let params: BTreeMap<_, _> = wf.spec.params.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
    let (outcome, failed) = (main_outcome(wf, steps), failed_main_steps(wf, steps));
    let steps: serde_json::Map<_, _> = steps
        .iter()
        .map(|s| {
            let mut vars = json!({
                "phase": s.phase.as_str(),
                "outputs": s.outputs,
                "decidedBy": s.decided_by.clone().unwrap_or_default(),
            });
            // A finished forEach: its items' outputs as a list CEL can index
            // (`steps.review.items[index].keep`), besides the text in `outputs.items`.
            if let Some(items) = s.item_count.and(s.outputs.get("items")) {
                vars["items"] = serde_json::from_str(items).unwrap_or_default();
            }
            (s.name.clone(), vars)
        })
        .collect();
    json!({
        "params": params,
        "steps": steps,
        "workflow": {
            "name": wf.metadata.name.clone().unwrap_or_default(),
            "namespace": wf.metadata.namespace.clone().unwrap_or_default(),
            "phase": outcome,
            "failedSteps": failed,
        },
    })
}

/// How the steps (not the exit steps) stand: `Running` until all ended, then `Succeeded` or
/// `Failed`.
fn main_outcome(wf: &Workflow, steps: &[StepStatus]) -> WorkflowPhase {
    let main = &steps[..wf.spec.steps.len().min(steps.len())];
    if !main.iter().all(|s| s.phase.is_terminal()) {
        WorkflowPhase::Running
    } else if main.iter().any(|s| s.phase == StepPhase::Failed) {
        WorkflowPhase::Failed
    } else {
        WorkflowPhase::Succeeded
    }
}

fn failed_main_steps(wf: &Workflow, steps: &[StepStatus]) -> Vec<String> {
    let main = &steps[..wf.spec.steps.len().min(steps.len())];
    main.iter().filter(|s| s.phase == StepPhase::Failed).map(|s| s.name.clone()).collect()
}
