//! Planning off the async runtime, and never at the cost of the process.
//!
//! `plan` is pure, so a panic inside it leaves nothing half done: the Workflow that caused it
//! fails (reason `InternalError`, with the panic's message) and every other one keeps running.
//! It runs on tokio's blocking pool because evaluating CEL may wait up to its time limit
//! (`engine::bounded`), which must never hold up a runtime thread.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use crate::api::{Approval, Workflow};
use crate::engine::bounded::panic_text;
use crate::engine::plan::{self, Plan};

/// `plan::plan_checked`, run on the blocking pool; a panic fails the Workflow instead of the process.
pub async fn plan(
    wf: Arc<Workflow>,
    pods: Vec<Pod>,
    approvals: Vec<Approval>,
    now: Timestamp,
    checked: plan::SpecChecked,
) -> Plan {
    let planned = {
        let wf = wf.clone();
        let run = move || guarded(&wf, || plan::plan_checked(&wf, &pods, &approvals, now, checked), now);
        tokio::task::spawn_blocking(run).await
    };
    planned.unwrap_or_else(|e| plan::abort(&wf, "InternalError", format!("planning failed: {e}"), now))
}

/// Runs `f`; if it panics, the plan that fails `wf` with the panic's message.
fn guarded(wf: &Workflow, f: impl FnOnce() -> Plan, now: Timestamp) -> Plan {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let message = format!("the controller panicked while planning this Workflow: {}", panic_text(p.as_ref()));
        tracing::error!(%message, "planning panicked; failing the Workflow");
        plan::abort(wf, "InternalError", message, now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{StepPhase, WorkflowPhase};

    fn workflow() -> Workflow {
        serde_yaml::from_str(
            "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf, namespace: ns, uid: u1}\n\
             spec:\n  steps:\n  - {name: a, sleep: 1s}\n  - {name: b, sleep: 1s}\n",
        )
        .unwrap()
    }

    #[test]
    fn a_panic_while_planning_fails_the_workflow_with_its_message() {
        let wf = workflow();
        let now = Timestamp::now();
        let plan = guarded(&wf, || panic!("index out of bounds: the len is 0"), now);
        let status = plan.status;
        assert_eq!(status.phase, Some(WorkflowPhase::Failed));
        assert_eq!(status.reason.as_deref(), Some("InternalError"));
        let message = status.message.unwrap();
        assert!(message.contains("panicked while planning this Workflow: index out of bounds"), "{message}");
        assert_eq!(status.steps.len(), 2);
        assert!(status.steps.iter().all(|s| s.phase == StepPhase::Omitted));
        assert!(status.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True"));
    }

    #[test]
    fn a_run_in_progress_is_stopped() {
        let mut wf = workflow();
        let running = plan::plan(&wf, &[], &[], Timestamp::now());
        wf.status = Some(running.status);
        assert_eq!(wf.status.as_ref().unwrap().steps[0].phase, StepPhase::Running);
        let plan = guarded(&wf, || panic!("boom"), Timestamp::now());
        let phases: Vec<StepPhase> = plan.status.steps.iter().map(|s| s.phase).collect();
        assert_eq!(phases, [StepPhase::Failed, StepPhase::Omitted]);
        assert_eq!(plan.status.steps[0].reason.as_deref(), Some("InternalError"));
    }

    #[tokio::test]
    async fn plans_off_the_runtime() {
        let plan = plan(Arc::new(workflow()), vec![], vec![], Timestamp::now(), plan::SpecChecked::No).await;
        assert_eq!(plan.status.steps[0].phase, StepPhase::Running);
    }
}
