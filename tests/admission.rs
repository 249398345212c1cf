//! Bad Workflows are refused by the API server at `kubectl apply`, with a message naming the
//! step and the field; nothing is stored.

mod common;
mod harness;

use std::time::Duration;

use serde_json::{Value, json};

use common::{kubectl, kubectl_ok, test_namespace, wait_for};
use harness::*;

fn wf(name: &str, spec: &str) -> String {
    format!("apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

#[test]
fn bad_specs_are_refused_with_a_message_naming_step_and_field() {
    ensure_crds();
    let ns = test_namespace("admission");
    let cases: &[(&str, &str, &str)] = &[
        (
            "duplicate step names",
            "  steps:\n  - {name: a, sleep: 1s}\n  - {name: a, sleep: 2s}\n",
            r#"spec.steps[1]: Duplicate value: {"name":"a"}"#,
        ),
        (
            "unknown dependsOn",
            "  steps:\n  - {name: a, sleep: 1s}\n  - {name: b, dependsOn: [nope], sleep: 1s}\n",
            r#"spec.steps[1].dependsOn: Invalid value: "nope": step b depends on a step that does not exist; the steps are: a, b"#,
        ),
        (
            "self dependsOn",
            "  steps:\n  - {name: a, dependsOn: [a], sleep: 1s}\n",
            "spec.steps[0].dependsOn: Invalid value: step a: dependsOn must not name the step itself",
        ),
        (
            "no kind",
            "  steps:\n  - {name: a}\n",
            "spec.steps[0]: Invalid value: step a: set exactly one of container, suspend or sleep; it sets: none",
        ),
        (
            "two kinds",
            "  steps:\n  - {name: a, sleep: 1s, container: {image: x}}\n",
            "step a: set exactly one of container, suspend or sleep; it sets: container sleep",
        ),
        (
            "bad duration",
            "  steps:\n  - {name: nap, sleep: 30x}\n",
            "spec.steps[0].sleep: Invalid value: step nap: sleep must be a duration such as 30s, 5m or 1h30m, not \"30x\"",
        ),
        (
            "retries too high",
            "  steps:\n  - {name: a, retries: 21, container: {image: x}}\n",
            "spec.steps[0].retries: Invalid value: 21: spec.steps[0].retries in body should be less than or equal to 20",
        ),
        (
            "negative retries",
            "  steps:\n  - {name: a, retries: -1, container: {image: x}}\n",
            "spec.steps[0].retries in body should be greater than or equal to 0",
        ),
        (
            "zero timeout",
            "  steps:\n  - {name: a, timeoutSeconds: 0, container: {image: x}}\n",
            "spec.steps[0].timeoutSeconds in body should be greater than or equal to 1",
        ),
        (
            "retries on a gate",
            "  steps:\n  - {name: review, retries: 2, suspend: {}}\n",
            "spec.steps[0].retries: Invalid value: step review: retries applies only to container steps, and this is a suspend step",
        ),
        (
            "timeout on a sleep",
            "  steps:\n  - {name: nap, timeoutSeconds: 5, sleep: 1s}\n",
            "spec.steps[0].timeoutSeconds: Invalid value: step nap: timeoutSeconds applies only to container steps, and this is a sleep step",
        ),
        (
            "template in when",
            "  steps:\n  - {name: a, when: \"{{ params.x }} == 'y'\", sleep: 1s}\n",
            r#"spec.steps[0].when: Invalid value: step a: when is a CEL expression itself; write it without {{ }}, not "{{ params.x }} == 'y'""#,
        ),
        (
            "no steps",
            "  steps: []\n",
            "spec.steps: Required value: set steps, or workflowTemplateRef to run a WorkflowTemplate",
        ),
        (
            "bad step name",
            "  steps:\n  - {name: Scan_1, sleep: 1s}\n",
            "spec.steps[0].name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        ),
        (
            "enum on an integer input",
            "  steps:\n  - name: review\n    suspend:\n      inputs: [{name: priority, type: integer, enum: ['1']}]\n",
            "spec.steps[0].suspend.inputs[0].enum: Invalid value: input priority: enum is allowed only for string inputs, not type integer",
        ),
        (
            "minimum above maximum",
            "  steps:\n  - name: review\n    suspend:\n      inputs: [{name: priority, type: integer, minimum: 5, maximum: 1}]\n",
            "spec.steps[0].suspend.inputs[0].minimum: Invalid value: input priority: minimum must not exceed maximum",
        ),
        (
            "maxLength on a boolean",
            "  steps:\n  - name: review\n    suspend:\n      inputs: [{name: ok, type: boolean, maxLength: 3}]\n",
            "input ok: maxLength and pattern apply only to string inputs, not type boolean",
        ),
        (
            "unknown input type",
            "  steps:\n  - name: review\n    suspend:\n      inputs: [{name: when, type: date}]\n",
            "spec.steps[0].suspend.inputs[0].type: Unsupported value: \"date\"",
        ),
        (
            "unknown onTimeout",
            "  steps:\n  - name: review\n    suspend: {onTimeout: Maybe}\n",
            "spec.steps[0].suspend.onTimeout: Unsupported value: \"Maybe\"",
        ),
        (
            "container without image",
            "  steps:\n  - {name: a, container: {args: [x]}}\n",
            "spec.steps[0].container.image: Required value",
        ),
        (
            "zero deadline",
            "  activeDeadlineSeconds: 0\n  steps:\n  - {name: a, sleep: 1s}\n",
            "spec.activeDeadlineSeconds in body should be greater than or equal to 1",
        ),
        (
            "an exit step named like a step",
            "  steps:\n  - {name: a, sleep: 1s}\n  onExit:\n  - {name: a, sleep: 1s}\n",
            r#"spec.onExit[0].name: Duplicate value: "a": spec.steps has a step of that name"#,
        ),
        (
            "an exit step depending on a step",
            "  steps:\n  - {name: a, sleep: 1s}\n  onExit:\n  - {name: z, sleep: 1s}\n  - {name: w, dependsOn: [a], sleep: 1s}\n",
            r#"spec.onExit[1].dependsOn: Invalid value: "a": exit step w may depend only on exit steps; they are: z, w"#,
        ),
        (
            "duplicate params",
            "  params: [{name: p, value: a}, {name: p, value: b}]\n  steps:\n  - {name: a, sleep: 1s}\n",
            r#"spec.params[1]: Duplicate value: {"name":"p"}"#,
        ),
    ];
    let mut failures = vec![];
    for (i, (what, spec, want)) in cases.iter().enumerate() {
        let name = format!("bad-{i}");
        let msg = apply_refused(&ns.name, &wf(&name, spec));
        if !msg.contains(want) {
            failures.push(format!("{what}: expected {want:?} in:\n{msg}"));
        }
        assert!(get_json(&ns.name, "workflow", &name).is_none(), "{what}: a refused Workflow was stored");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_spec_is_frozen_once_the_run_starts_except_suspend() {
    let ns = test_namespace("frozen");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &wf("frozen", "  steps:\n  - {name: nap, sleep: 1h}\n"));
    wait_phase(&ns.name, "frozen", "Running", Duration::from_secs(30));
    let out = kubectl(
        "admin",
        &[
            "-n",
            &ns.name,
            "patch",
            "workflow",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"spec":{"steps":[{"name":"nap","sleep":"1s"}]}}"#,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec cannot change once the run has started; only spec.suspend may"), "{err}");
    kubectl_ok(
        "admin",
        &["-n", &ns.name, "patch", "workflow", "frozen", "--type=merge", "-p", r#"{"spec":{"suspend":true}}"#],
    );
    // An editor of the namespace's Workflows slips an exit step into admin's started run: it
    // would run inside that run, as its Pod. Refused like any other spec change.
    kubectl_ok(
        "admin",
        &[
            "-n",
            &ns.name,
            "create",
            "role",
            "workflow-editor",
            "--verb=get,list,patch,update",
            "--resource=workflows.hitl.dev",
        ],
    );
    kubectl_ok(
        "admin",
        &["-n", &ns.name, "create", "rolebinding", "carol-edits", "--role=workflow-editor", "--user=carol"],
    );
    let exit_step = r#"{"spec":{"onExit":[{"name":"after","container":{"image":"busybox:1.36","args":["true"]}}]}}"#;
    let out = kubectl("carol", &["-n", &ns.name, "patch", "workflow", "frozen", "--type=merge", "-p", exit_step]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "carol added an exit step to a started run");
    assert!(err.contains("spec cannot change once the run has started"), "{err}");
    let stored = get_json(&ns.name, "workflow", "frozen").unwrap();
    assert!(stored["spec"]["onExit"].is_null(), "{}", stored["spec"]);
}

#[test]
fn kubectl_explain_reads_like_a_manual() {
    ensure_crds();
    // The API server publishes a new CRD's OpenAPI a moment after the CRD is Established.
    let explain = |what: &str| {
        wait_for(&format!("kubectl explain {what}"), Duration::from_secs(60), || {
            let out = kubectl("admin", &["explain", what]);
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
    };
    let out = explain("workflow.spec.steps");
    for want in ["dependsOn", "Steps that must finish", "when", "CEL condition", "retries", "timeoutSeconds"] {
        assert!(out.contains(want), "explain lacks {want:?}:\n{out}");
    }
    let out = explain("approval.spec.decision");
    assert!(out.contains("Final once set"), "{out}");
}

/// The input cases of tests/cases/gate_input.json, each sent to the API server as a decision in
/// a server-side dry run: admission accepts or refuses each as the engine does
/// (`engine::inputs`, unit test `admission_cases_agree_with_the_policy`).
#[test]
fn input_admission_agrees_with_the_engine() {
    let ns = test_namespace("admission-input");
    let _op = Operator::start(&ns.name);
    let table: Value = serde_json::from_str(include_str!("cases/gate_input.json")).expect("the case table");
    let workflow = json!({
        "apiVersion": "hitl.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "cases"},
        "spec": {"steps": [{"name": "review", "suspend": {"inputs": table["inputs"]}}]},
    });
    apply(&ns.name, &workflow.to_string());
    wait_pending(&ns.name, "cases.review");
    for case in table["cases"].as_array().expect("cases") {
        // A JSON patch, not a merge patch: a merge patch cannot send null.
        let mut patch = vec![json!({"op": "add", "path": "/spec/decision", "value": case["decision"]})];
        if !case["input"].is_null() {
            patch.push(json!({"op": "add", "path": "/spec/input", "value": case["input"]}));
        }
        let patch = Value::from(patch).to_string();
        let args = ["-n", &ns.name, "patch", "approval", "cases.review", "--type", "json", "--dry-run=server", "-p"];
        let out = kubectl("admin", &[&args[..], &[patch.as_str()]].concat());
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), case["accepted"] == true, "{} ({}): {said}", case["name"], case["rule"]);
    }
}
