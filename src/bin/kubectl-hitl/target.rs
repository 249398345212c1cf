//! Which Approval a person means: by its name, or by the Workflow and step that wait on it.

use anyhow::bail;
use hitl_operator::api::Workflow;
use hitl_operator::engine::names;
use kube::{Api, Client};

use crate::errors::{is_forbidden, is_not_found};

/// A gate as typed on the command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// `NAME` or `approval.hitl.dev/NAME`.
    Approval(String),
    /// `WORKFLOW/STEP`.
    Step { workflow: String, step: String },
}

/// Parses a gate argument. Workflow and step names are DNS labels, so `approval.hitl.dev/NAME`
/// (what `-o name` prints) can never be a WORKFLOW/STEP.
pub fn parse(arg: &str) -> anyhow::Result<Gate> {
    let gate = match arg.split_once('/') {
        None => Gate::Approval(arg.to_string()),
        Some(("approval.hitl.dev" | "approvals.hitl.dev", name)) => Gate::Approval(name.to_string()),
        Some((workflow, step)) => Gate::Step { workflow: workflow.to_string(), step: step.to_string() },
    };
    match &gate {
        Gate::Approval(n) if n.is_empty() || n.contains('/') => {
            bail!("{arg:?} is not a gate: expected NAME or WORKFLOW/STEP")
        }
        Gate::Step { workflow, step } if workflow.is_empty() || step.is_empty() || step.contains('/') => {
            bail!("{arg:?} is not a gate: expected NAME or WORKFLOW/STEP")
        }
        _ => Ok(gate),
    }
}

/// The Approval's name. For WORKFLOW/STEP it is read from the Workflow's status, where the
/// controller records each gate's Approval; an approver who may not read the Workflow (a gate's
/// grant covers only its Approval) gets the name the controller gives it (`names::approval_name`).
pub async fn resolve(client: &Client, ns: &str, gate: Gate) -> anyhow::Result<String> {
    let (workflow, step) = match gate {
        Gate::Approval(name) => return Ok(name),
        Gate::Step { workflow, step } => (workflow, step),
    };
    let wf = match Api::<Workflow>::namespaced(client.clone(), ns).get(&workflow).await {
        Ok(wf) => wf,
        Err(e) if is_forbidden(&e) => return Ok(names::approval_name(&workflow, &step)),
        Err(e) if is_not_found(&e) => bail!("workflow \"{workflow}\" not found in namespace \"{ns}\""),
        Err(e) => return Err(e.into()),
    };
    let wf = hitl_operator::engine::template::as_run(&wf);
    let declared = wf.spec.steps.iter().chain(&wf.spec.on_exit).any(|s| s.name == step);
    if !declared {
        bail!("workflow \"{workflow}\" has no step \"{step}\"");
    }
    let recorded = wf.status.iter().flat_map(|s| &s.steps).find(|s| s.name == step);
    if wf.spec.steps.iter().chain(&wf.spec.on_exit).any(|s| s.name == step && s.for_each.is_some()) {
        let first = names::item_approval_name(&workflow, &step, 0);
        bail!(
            "step \"{step}\" of workflow \"{workflow}\" is a forEach with one gate per item: name the item's gate, e.g. {first}"
        );
    }
    match recorded.and_then(|s| s.approval_name.clone()) {
        Some(name) => Ok(name),
        None => bail!(
            "step \"{step}\" of workflow \"{workflow}\" has no approval: it is not a suspend step, or it has not started"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_is_a_name_a_typed_name_or_workflow_and_step() {
        assert_eq!(parse("ship.go").unwrap(), Gate::Approval("ship.go".into()));
        assert_eq!(parse("approval.hitl.dev/ship.go").unwrap(), Gate::Approval("ship.go".into()));
        assert_eq!(parse("ship/go").unwrap(), Gate::Step { workflow: "ship".into(), step: "go".into() });
        for bad in ["", "/go", "ship/", "a/b/c", "approval.hitl.dev/"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
