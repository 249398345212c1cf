//! Step Pods: a finished Pod deleted before the operator read it still counts (its finalizer
//! keeps it until its outcome is recorded, so the step does not run again); finished Pods are
//! deleted as `podGC` says; a deleted Workflow's Pods never hang in Terminating.

mod common;
mod harness;

use std::time::Duration;

use common::{kubectl_ok, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_finished_pod_deleted_before_its_outcome_was_read_still_counts() {
    let ns = test_namespace("evicted");
    let mut op = Operator::start(&ns.name);
    let yaml = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {name: a, retries: 2, container: {image: x}, metadata: {annotations: {sim.hitl.dev/duration: 2s, sim.hitl.dev/message: '{\"n\": 7}'}}}\n    - {name: b, container: {image: x}}\n";
    apply(&ns.name, yaml);
    let pod = wait_for("step a's Pod", WAIT, || pods(&ns.name, "w").into_iter().next());
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(pod["metadata"]["finalizers"][0], "hitl.dev/outcome");
    op.kill();
    wait_for("the Pod to finish while nobody watches", WAIT, || {
        (get_json(&ns.name, "pod", &name)?["status"]["phase"] == "Succeeded").then_some(())
    });
    // Evicted, collected or deleted by a person before the operator saw it finish.
    kubectl_ok("admin", &["-n", &ns.name, "delete", "pod", &name, "--wait=false"]);
    let held = get_json(&ns.name, "pod", &name).expect("the finalizer keeps the Pod");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    op.restart();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    let a = step(&wf, "a");
    assert_eq!((a["attempts"].as_i64(), a["outputs"]["n"].as_str()), (Some(1), Some("7")), "{a}");
    wait_for("the deleted Pod to go once its outcome is recorded", WAIT, || {
        get_json(&ns.name, "pod", &name).is_none().then_some(())
    });
    assert_eq!(pods(&ns.name, "w").len(), 1, "step a ran again");
}

#[test]
fn pod_gc_deletes_finished_pods_as_asked() {
    let ns = test_namespace("podgc");
    let _op = Operator::start(&ns.name);
    let with = |name: &str, strategy: &str| {
        format!(
            "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  podGC: {{strategy: {strategy}}}\n  steps:\n    - {{name: a, container: {{image: x}}}}\n    - {{name: b, container: {{image: x}}}}\n"
        )
    };
    apply(&ns.name, &with("kept", "Never"));
    apply(&ns.name, &with("gone", "OnWorkflowCompletion"));
    wait_phase(&ns.name, "kept", "Succeeded", WAIT);
    wait_phase(&ns.name, "gone", "Succeeded", WAIT);
    assert_eq!(pods(&ns.name, "kept").len(), 2);
    wait_for("the finished run's Pods to be deleted", WAIT, || pods(&ns.name, "gone").is_empty().then_some(()));
    let wf = workflow(&ns.name, "gone");
    assert!(step(&wf, "a")["podName"].is_string(), "the status still names the Pod that ran");
}

#[test]
fn a_deleted_workflows_pods_do_not_hang() {
    let ns = test_namespace("delpods");
    let _op = Operator::start(&ns.name);
    let yaml = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {name: slow, container: {image: x}, metadata: {annotations: {sim.hitl.dev/duration: 10m}}}\n";
    apply(&ns.name, yaml);
    wait_for("the running Pod", WAIT, || pods(&ns.name, "w").into_iter().next());
    kubectl_ok("admin", &["-n", &ns.name, "delete", "workflow", "w", "--wait=false"]);
    wait_for("the Pod to be collected, finalizer released", Duration::from_secs(90), || {
        pods(&ns.name, "w").is_empty().then_some(())
    });
}
