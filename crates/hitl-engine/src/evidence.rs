//! What a gate shows its approvers: earlier steps' outputs and logs. Which steps a gate may name,
//! what its Approval records of them when it opens, and which Pods stay until it is decided.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use super::names;
use hitl_api::approval::EvidencePod;
use hitl_api::{Step, StepStatus, Workflow, WorkflowSpec};

/// The most of the evidence steps' outputs an Approval copies (its size counts against etcd's
/// object limit); the digest covers everything.
pub const MAX_COPIED_OUTPUTS: usize = 64 * 1024;

/// A gate names as evidence only steps that have finished when it opens: in a sequence, a step
/// listed before it; in a DAG, one in its `dependsOn`; for a gate in `onExit`, any step of
/// `spec.steps`. The admission policy `hitl-workflow-spec` applies the same rule at apply.
pub fn check(spec: &WorkflowSpec) -> Result<(), String> {
    let dag = spec.steps.iter().any(|s| s.depends_on.is_some());
    for (at, gate) in spec.steps.iter().enumerate() {
        let earlier = |name: &str| match (&gate.depends_on, dag) {
            (Some(deps), true) => deps.iter().any(|d| d == name),
            (None, true) => false,
            (_, false) => spec.steps[..at].iter().any(|s| s.name == name),
        };
        check_gate(gate, earlier)?;
    }
    for gate in &spec.on_exit {
        check_gate(gate, |name| spec.steps.iter().any(|s| s.name == name))?;
    }
    Ok(())
}

fn check_gate(gate: &Step, earlier: impl Fn(&str) -> bool) -> Result<(), String> {
    let Some(suspend) = &gate.suspend else { return Ok(()) };
    for e in &suspend.gate.evidence {
        if e.step == gate.name {
            return Err(format!("step {}: suspend.evidence names the gate itself", gate.name));
        }
        if !earlier(&e.step) {
            return Err(format!(
                "step {}: suspend.evidence names step {}, which is not an earlier step of the run (a step listed \
                 before the gate, or in a DAG one in its dependsOn)",
                gate.name, e.step
            ));
        }
    }
    Ok(())
}

/// What the gate's Approval records of its evidence: each step's (or item's) outputs, its Pod
/// where the gate shows logs, and a digest of all the outputs.
pub fn of_gate(wf: &Workflow, statuses: &[StepStatus], gate: &Step) -> (Vec<EvidencePod>, Option<String>) {
    let Some(suspend) = &gate.suspend else { return (vec![], None) };
    if suspend.gate.evidence.is_empty() {
        return (vec![], None);
    }
    let mut pods = vec![];
    for e in &suspend.gate.evidence {
        let Some(st) = statuses.iter().find(|s| s.name == e.step) else { continue };
        pods.extend(pods_of(wf, st).into_iter().map(|(item, pod, outputs)| EvidencePod {
            step: e.step.clone(),
            item,
            pod: pod.filter(|_| e.logs),
            outputs: (!outputs.is_empty()).then(|| serde_json::to_string(outputs).expect("a map of strings")),
        }));
    }
    let digest = format!("sha256:{:x}", Sha256::digest(serde_json::to_vec(&pods).expect("plain data")));
    (clip(pods), Some(digest))
}

/// One Pod of an evidence step: its item (of a `forEach`), its name once it ran, its outputs.
type StepPod<'a> = (Option<i32>, Option<String>, &'a BTreeMap<String, String>);

/// Each Pod of a step with its outputs: the last attempt's, or each item's of a `forEach`.
fn pods_of<'a>(wf: &Workflow, st: &'a StepStatus) -> Vec<StepPod<'a>> {
    if st.item_count.is_none() {
        return vec![(None, st.pod_name.clone(), &st.outputs)];
    }
    let (name, uid) = (wf.metadata.name.clone().unwrap_or_default(), wf.metadata.uid.clone().unwrap_or_default());
    st.items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let pod = item.attempts.filter(|&a| a > 0).map(|a| names::item_pod_name(&name, &uid, &st.name, i, a));
            (Some(i as i32), pod, &item.outputs)
        })
        .collect()
}

/// Drops the outputs of the entries past the copy limit, keeping every Pod.
fn clip(mut pods: Vec<EvidencePod>) -> Vec<EvidencePod> {
    let mut copied = 0;
    for p in &mut pods {
        copied += p.outputs.as_ref().map_or(0, String::len);
        if copied > MAX_COPIED_OUTPUTS {
            p.outputs = None;
        }
    }
    pods
}

/// The Pods whose logs a gate that is not yet decided shows (or will show once it opens): they
/// stay, whatever `podGC` says, until it is.
pub fn held_pods(wf: &Workflow, statuses: &[StepStatus]) -> HashSet<String> {
    let open = |gate: &Step| statuses.iter().find(|s| s.name == gate.name).is_none_or(|s| !s.phase.is_terminal());
    let shown: HashSet<&str> = wf
        .spec
        .all_steps()
        .filter(|g| open(g))
        .filter_map(|g| g.suspend.as_ref())
        .flat_map(|s| s.gate.evidence.iter().filter(|e| e.logs).map(|e| e.step.as_str()))
        .collect();
    statuses.iter().filter(|st| shown.contains(st.name.as_str())).flat_map(|st| pods_of_step(wf, st)).collect()
}

/// Every Pod of a step that a gate may show: its last attempt's, or each item's.
pub fn pods_of_step(wf: &Workflow, st: &StepStatus) -> Vec<String> {
    pods_of(wf, st).into_iter().filter_map(|(_, pod, _)| pod).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(steps: serde_json::Value) -> WorkflowSpec {
        serde_json::from_value(json!({ "steps": steps })).unwrap()
    }

    #[test]
    fn a_gate_names_only_steps_that_finished_before_it() {
        let gate =
            |evidence: &str| json!({"name": "gate", "suspend": {"evidence": [{"step": evidence, "logs": true}]}});
        let plan = json!({"name": "plan", "container": {"image": "x"}});
        assert!(check(&spec(json!([plan, gate("plan")]))).is_ok());
        let after = check(&spec(json!([gate("plan"), plan]))).unwrap_err();
        assert!(after.contains("names step plan, which is not an earlier step"), "{after}");
        let own = check(&spec(json!([plan, gate("gate")]))).unwrap_err();
        assert!(own.contains("names the gate itself"), "{own}");
        let missing = check(&spec(json!([plan, gate("nope")]))).unwrap_err();
        assert!(missing.contains("names step nope"), "{missing}");
        // A DAG: only what the gate depends on.
        let mut dag_gate = gate("plan");
        dag_gate["dependsOn"] = json!(["plan"]);
        let other = json!({"name": "other", "container": {"image": "x"}, "dependsOn": []});
        assert!(check(&spec(json!([plan, other, dag_gate]))).is_ok());
        dag_gate["dependsOn"] = json!(["other"]);
        assert!(check(&spec(json!([plan, other, dag_gate]))).is_err());
    }

    #[test]
    fn an_open_gate_holds_its_evidence_pods_and_records_their_outputs() {
        let mut wf: Workflow = serde_json::from_value(json!({
            "apiVersion": "hitl.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "w", "uid": "u"},
            "spec": {"steps": [
                {"name": "plan", "container": {"image": "x"}},
                {"name": "gate", "suspend": {"evidence": [{"step": "plan", "logs": true}]}}]},
            "status": {"steps": [
                {"name": "plan", "phase": "Succeeded", "podName": "w-plan-1-abc", "outputs": {"adds": "3"}},
                {"name": "gate", "phase": "Waiting"}]},
        }))
        .unwrap();
        let gate = wf.spec.steps[1].clone();
        let statuses = wf.status.clone().unwrap().steps;
        let (pods, digest) = of_gate(&wf, &statuses, &gate);
        assert_eq!(pods[0].pod.as_deref(), Some("w-plan-1-abc"));
        assert_eq!(pods[0].outputs.as_deref(), Some(r#"{"adds":"3"}"#));
        assert!(digest.unwrap().starts_with("sha256:"));
        assert!(held_pods(&wf, &statuses).contains("w-plan-1-abc"));
        wf.status.as_mut().unwrap().steps[1].phase = hitl_api::StepPhase::Succeeded;
        let statuses = wf.status.clone().unwrap().steps;
        assert!(held_pods(&wf, &statuses).is_empty(), "a decided gate holds nothing");
    }
}
