//! Resolving a WorkflowTemplate for a run: the template's spec with the run's parameters filled
//! in. Pure: the controller reads the template and records what this returns.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use hitl_api::workflow::{Param, WorkflowSpec};
use hitl_api::{ParameterSpec, Workflow, WorkflowTemplateSpec};

/// Why a run cannot start from its template; `reason` is the Workflow's condition reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub reason: &'static str,
    pub message: String,
}

/// The spec a run follows: the template's own, with `params` holding one value per declared
/// parameter (the run's, else the default, else empty). Only `params` comes from the run, and
/// so parameters reach exactly the places a Workflow's params reach. A required parameter the run
/// leaves out, or a parameter the template does not declare, is refused.
pub fn resolve(template: &WorkflowTemplateSpec, given: &[Param]) -> Result<WorkflowSpec, Unresolved> {
    if let Some(unknown) = given.iter().find(|p| !template.parameters.iter().any(|d| d.name == p.name)) {
        return Err(Unresolved {
            reason: "UnknownParameter",
            message: format!(
                "spec.params: {} is not a parameter of the template; it declares: {}",
                unknown.name,
                declared(&template.parameters)
            ),
        });
    }
    let missing: Vec<&str> = template
        .parameters
        .iter()
        .filter(|d| d.required && !given.iter().any(|p| p.name == d.name))
        .map(|d| d.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Unresolved {
            reason: "MissingParameter",
            message: format!(
                "spec.params: the template requires {}, which this run does not supply",
                missing.join(", ")
            ),
        });
    }
    let mut spec = template.workflow.clone();
    spec.params = template.parameters.iter().map(|d| value_of(d, given)).collect();
    spec.workflow_template_ref = None;
    Ok(spec)
}

/// What a Workflow that references `template` runs: the resolved template, with the run's own
/// `activeDeadlineSeconds` and `ttlSecondsAfterFinished` where it sets them (they bound the run,
/// and give its Pods nothing).
pub fn for_run(template: &WorkflowTemplateSpec, own: &WorkflowSpec) -> Result<WorkflowSpec, Unresolved> {
    let mut spec = resolve(template, &own.params)?;
    spec.active_deadline_seconds = own.active_deadline_seconds.or(spec.active_deadline_seconds);
    spec.ttl_seconds_after_finished = own.ttl_seconds_after_finished.or(spec.ttl_seconds_after_finished);
    Ok(spec)
}

/// The spec a run follows from its record: the recorded spec, with the Workflow's own `suspend`,
/// the one field that may change while it runs.
pub fn recorded(record: &WorkflowSpec, own: &WorkflowSpec) -> WorkflowSpec {
    WorkflowSpec { suspend: own.suspend, ..record.clone() }
}

/// The Workflow as it runs: one that references a template and has recorded it runs the
/// record; any other runs its own spec. Whatever reads a run's steps (the planner, the gate
/// check, the plugin) reads them through this.
pub fn as_run(wf: &Workflow) -> Cow<'_, Workflow> {
    match (&wf.spec.workflow_template_ref, wf.status.as_ref().and_then(|s| s.template.as_ref())) {
        (Some(_), Some(record)) => {
            let mut run = wf.clone();
            run.spec = recorded(&record.spec, &wf.spec);
            Cow::Owned(run)
        }
        _ => Cow::Borrowed(wf),
    }
}

fn value_of(decl: &ParameterSpec, given: &[Param]) -> Param {
    let value = given
        .iter()
        .find(|p| p.name == decl.name)
        .map(|p| p.value.clone())
        .or_else(|| decl.default.clone())
        .unwrap_or_default();
    Param { name: decl.name.clone(), value }
}

fn declared(params: &[ParameterSpec]) -> String {
    if params.is_empty() {
        "none".into()
    } else {
        params.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// `sha256:<hex>` of the spec as JSON: equal specs, equal digests.
pub fn digest(spec: &WorkflowSpec) -> String {
    let json = serde_json::to_vec(spec).expect("a spec serializes");
    format!("sha256:{:x}", Sha256::digest(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::workflow::Step;

    fn template(params: Vec<ParameterSpec>) -> WorkflowTemplateSpec {
        WorkflowTemplateSpec {
            parameters: params,
            workflow: WorkflowSpec {
                steps: vec![Step { name: "a".into(), sleep: Some("1s".into()), ..Default::default() }],
                service_account_name: Some("runner".into()),
                ..Default::default()
            },
        }
    }

    fn decl(name: &str, required: bool, default: Option<&str>) -> ParameterSpec {
        ParameterSpec { name: name.into(), required, default: default.map(Into::into), description: None }
    }

    fn param(name: &str, value: &str) -> Param {
        Param { name: name.into(), value: value.into() }
    }

    #[test]
    fn given_values_win_then_defaults_then_empty() {
        let t = template(vec![decl("who", true, None), decl("when", false, Some("monday")), decl("note", false, None)]);
        let spec = resolve(&t, &[param("who", "alice")]).unwrap();
        assert_eq!(spec.params, vec![param("who", "alice"), param("when", "monday"), param("note", "")]);
        let spec = resolve(&t, &[param("who", "bob"), param("when", "friday")]).unwrap();
        assert_eq!(spec.params[1], param("when", "friday"));
    }

    #[test]
    fn the_template_alone_says_what_the_pods_get() {
        let t = template(vec![decl("who", false, None)]);
        let spec = resolve(&t, &[param("who", "x")]).unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("runner"));
        assert_eq!(spec.steps, t.workflow.steps);
        assert!(spec.workflow_template_ref.is_none());
    }

    #[test]
    fn a_missing_required_parameter_is_named() {
        let t = template(vec![decl("who", true, None), decl("why", true, None), decl("when", false, Some("x"))]);
        let err = resolve(&t, &[param("why", "audit")]).unwrap_err();
        assert_eq!(err.reason, "MissingParameter");
        assert!(err.message.contains("requires who,") && !err.message.contains("why"), "{}", err.message);
    }

    #[test]
    fn an_undeclared_parameter_is_refused() {
        let t = template(vec![decl("who", false, None)]);
        let err = resolve(&t, &[param("whom", "x")]).unwrap_err();
        assert_eq!(err.reason, "UnknownParameter");
        assert!(err.message.contains("whom") && err.message.contains("declares: who"), "{}", err.message);
    }

    #[test]
    fn the_run_bounds_itself_and_pauses_but_changes_nothing_else() {
        let mut t = template(vec![]);
        t.workflow.active_deadline_seconds = Some(600);
        t.workflow.ttl_seconds_after_finished = Some(60);
        let own = WorkflowSpec { active_deadline_seconds: Some(30), ..Default::default() };
        let spec = for_run(&t, &own).unwrap();
        assert_eq!((spec.active_deadline_seconds, spec.ttl_seconds_after_finished), (Some(30), Some(60)));
        let paused = recorded(&spec, &WorkflowSpec { suspend: true, steps: vec![], ..Default::default() });
        assert!(paused.suspend);
        assert_eq!(paused.steps, t.workflow.steps, "the record's steps, not the Workflow's");
    }

    #[test]
    fn digests_tell_specs_apart() {
        let t = template(vec![decl("who", false, None)]);
        let a = resolve(&t, &[param("who", "alice")]).unwrap();
        let b = resolve(&t, &[param("who", "bob")]).unwrap();
        assert_ne!(digest(&a), digest(&b));
        assert!(digest(&a).starts_with("sha256:") && digest(&a).len() == 7 + 64);
    }
}
