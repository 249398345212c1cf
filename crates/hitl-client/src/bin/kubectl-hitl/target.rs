//! Which Approval a person means: by its name, or by the Workflow and step that wait on it.

use anyhow::bail;
use hitl_api::Workflow;
use hitl_engine::names;
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

/// The Approval a person means, and whether its name was guessed.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// Set when WORKFLOW/STEP was given and the Workflow could not be read: the name is the one
    /// the controller gives a step's single gate, which a forEach step's item gates do not have.
    pub guessed: Option<(String, String)>,
}

impl Target {
    /// What a person needs when the guessed gate is not there for them: a forEach step has one
    /// gate per item, which WORKFLOW/STEP cannot name without reading the Workflow.
    pub fn hint(&self, err: anyhow::Error) -> anyhow::Error {
        let Some((workflow, step)) = &self.guessed else { return err };
        if !unreachable_gate(&err) {
            return err;
        }
        let first = names::item_approval_name(workflow, step, 0);
        anyhow::anyhow!(
            "{}; you may not read workflow \"{workflow}\", so its gate for step \"{step}\" was taken to be \"{}\": \
             if that step is a forEach, each item has its own gate (e.g. {first}), and `kubectl hitl pending` lists yours",
            crate::errors::one_line(&err),
            self.name
        )
    }
}

/// Whether `err` says the gate is not there for this person (absent, or RBAC refuses it), as
/// opposed to a gate that is there and refused the decision (an admission policy, also a 403).
fn unreachable_gate(err: &anyhow::Error) -> bool {
    match crate::errors::api_status(err) {
        Some(s) => s.code == 404 || (s.code == 403 && s.message.contains(" cannot ")),
        None => err.to_string().contains("not found in namespace"),
    }
}

/// The Approval's name. For WORKFLOW/STEP it is read from the Workflow's status, where the
/// controller records each gate's Approval; an approver who may not read the Workflow (a gate's
/// grant covers only its Approval) gets the name the controller gives it (`names::approval_name`).
pub async fn resolve(client: &Client, ns: &str, gate: Gate) -> anyhow::Result<Target> {
    let (workflow, step) = match gate {
        Gate::Approval(name) => return Ok(Target { name, guessed: None }),
        Gate::Step { workflow, step } => (workflow, step),
    };
    let wf = match Api::<Workflow>::namespaced(client.clone(), ns).get(&workflow).await {
        Ok(wf) => wf,
        Err(e) if is_forbidden(&e) => {
            let name = names::approval_name(&workflow, &step);
            return Ok(Target { name, guessed: Some((workflow, step)) });
        }
        Err(e) if is_not_found(&e) => bail!("workflow \"{workflow}\" not found in namespace \"{ns}\""),
        Err(e) => return Err(e.into()),
    };
    let wf = hitl_engine::template::as_run(&wf);
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
        Some(name) => Ok(Target { name, guessed: None }),
        None => bail!(
            "step \"{step}\" of workflow \"{workflow}\" has no approval: it is not a suspend step, or it has not started"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guessed_gate_that_is_not_there_hints_at_item_gates_but_a_refusal_stays_as_said() {
        let target = Target { name: "ship.go".into(), guessed: Some(("ship".into(), "go".into())) };
        let rbac = kube::core::Status {
            code: 403,
            message: r#"approvals.hitl.dev "ship.go" is forbidden: User "bob" cannot patch resource "approvals""#
                .into(),
            ..Default::default()
        };
        let hinted = target.hint(anyhow::Error::from(kube::Error::Api(Box::new(rbac)))).to_string();
        assert!(hinted.contains("each item has its own gate (e.g. ship.go.0)"), "{hinted}");
        let policy = kube::core::Status {
            code: 403,
            message:
                "ValidatingAdmissionPolicy 'hitl-approval-approvers' ... denied request: user bob is not an approver"
                    .into(),
            ..Default::default()
        };
        let refused = target.hint(anyhow::Error::from(kube::Error::Api(Box::new(policy)))).to_string();
        assert!(!refused.contains("own gate"), "{refused}");
    }

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
