//! Issue 8's holes in the gate, each attempted through kubectl by a user with rights a real cluster
//! hands out, and each refused by the API server with a message that says what is allowed; the run
//! never moves because of it. (The controller's own checks of the same things, for a cluster whose
//! policies are missing, are in the engine's unit tests: plan_tests.rs and gate.rs.)

mod common;
mod harness;

use std::time::Duration;

use common::{kubectl, kubectl_ok, kubectl_stdin, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

fn gated(name: &str, suspend: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  steps:\n    - name: gate\n      suspend: {suspend}\n    - {{name: after, container: {{image: x}}}}\n"
    )
}

const ALICE: &str = "{approvers: {users: [alice]}}";

/// Gives `user` every verb on every hitl.dev resource in `ns`, subresources included: the
/// namespace role with `resources: ["*"]` that clusters commonly hand out.
fn bind_everything(ns: &str, user: &str) {
    let role = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": format!("all-hitl-{user}")},
        "rules": [{"apiGroups": ["hitl.dev"], "resources": ["*"], "verbs": ["*"]}],
    });
    assert!(kubectl_stdin("admin", &["-n", ns, "apply", "-f", "-"], &role.to_string()).status.success());
    let r = format!("all-hitl-{user}");
    kubectl_ok("admin", &["-n", ns, "create", "rolebinding", &r, &format!("--role={r}"), &format!("--user={user}")]);
}

fn refused(user: &str, args: &[&str]) -> String {
    let out = kubectl(user, args);
    assert!(!out.status.success(), "expected a refusal for {user}: kubectl {}", args.join(" "));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_still_waiting(ns: &str, wf: &str, approval_name: &str) {
    assert_eq!(phase(&workflow(ns, wf)), "Waiting");
    let a = approval(ns, approval_name);
    assert_eq!(a["status"]["phase"], "Pending", "{}", a["status"]);
    assert!(a["spec"]["decision"].is_null() && a["spec"]["decidedBy"].is_null(), "{}", a["spec"]);
}

/// Hole 1: status subresources are written by the operator alone, admins included.
#[test]
fn nobody_but_the_operator_writes_status() {
    let ns = test_namespace("status");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", ALICE));
    wait_pending(&ns.name, "w.gate");
    wait_phase(&ns.name, "w", "Waiting", WAIT);
    bind_everything(&ns.name, "bob");
    for user in ["bob", "alice", "admin"] {
        let err = refused(
            user,
            &[
                "-n",
                &ns.name,
                "patch",
                "approval",
                "w.gate",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Approved","decidedBy":"alice"}}"#,
            ],
        );
        assert!(
            err.contains("the status of approvals is written only by the hitl-operator") || err.contains("Forbidden"),
            "{user}: {err}"
        );
    }
    let err = refused(
        "bob",
        &[
            "-n",
            &ns.name,
            "patch",
            "approval",
            "w.gate",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Approved"}}"#,
        ],
    );
    assert!(err.contains("the status of approvals is written only by the hitl-operator"), "{err}");
    let err = refused(
        "bob",
        &[
            "-n",
            &ns.name,
            "patch",
            "workflow",
            "w",
            "--subresource=status",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/status/steps/0/phase","value":"Succeeded"}]"#,
        ],
    );
    assert!(err.contains("the status of workflows is written only by the hitl-operator"), "{err}");
    assert_still_waiting(&ns.name, "w", "w.gate");
}

/// Hole 2: an Approval made by hand, under the name the gate will use, owned by the Workflow, with
/// no approvers and a decision, is refused.
#[test]
fn approvals_cannot_be_forged() {
    let ns = test_namespace("forge");
    let _op = Operator::start(&ns.name);
    let yaml = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {name: wait, sleep: 30s}\n    - {name: gate, suspend: {approvers: {users: [alice]}}}\n";
    apply(&ns.name, yaml);
    wait_phase(&ns.name, "w", "Running", WAIT);
    let uid = workflow(&ns.name, "w")["metadata"]["uid"].as_str().unwrap().to_string();
    bind_everything(&ns.name, "bob");
    let forged = serde_json::json!({
        "apiVersion": "hitl.dev/v1alpha1", "kind": "Approval",
        "metadata": {"name": "w.gate", "labels": {"hitl.dev/workflow": "w", "hitl.dev/step": "gate"},
                     "ownerReferences": [{"apiVersion": "hitl.dev/v1alpha1", "kind": "Workflow", "name": "w",
                                          "uid": uid, "controller": true}]},
        "spec": {"workflowRef": {"name": "w", "uid": uid}, "step": "gate", "decision": "Approve"},
    });
    for user in ["bob", "admin"] {
        let out = kubectl_stdin(user, &["-n", &ns.name, "create", "-f", "-"], &forged.to_string());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{user} created a forged Approval");
        assert!(err.contains("Approvals are created only by the hitl-operator"), "{user}: {err}");
    }
    assert!(get_json(&ns.name, "approval", "w.gate").is_none());
}

/// Hole 3: nobody claims a gate before deciding it; the other approvers are not locked out.
#[test]
fn who_decides_and_why_come_with_the_decision() {
    let ns = test_namespace("preclaim");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", "{approvers: {users: [alice, carol]}}"));
    wait_pending(&ns.name, "w.gate");
    for patch in [r#"{"spec":{"decidedBy":"alice"}}"#, r#"{"spec":{"comment":"mine"}}"#] {
        let err = patch_approval("alice", &ns.name, "w.gate", patch).unwrap_err();
        assert!(err.contains("can only be set together with a decision (or input), in the same request"), "{err}");
    }
    assert_still_waiting(&ns.name, "w", "w.gate");
    patch_approval("carol", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve","comment":"ok"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "carol");
}

/// Hole 4: an approver (per-gate grant: get/patch on this Approval) and a namespace role holder
/// cannot change the labels, owner or finalizers of a gate.
#[test]
fn a_gates_metadata_is_the_operators() {
    let ns = test_namespace("meta");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", ALICE));
    wait_pending(&ns.name, "w.gate");
    wait_for("alice's grant", WAIT, || grant(&ns.name, "rolebinding", "w.gate"));
    bind_everything(&ns.name, "bob");
    let attempts: [&[&str]; 4] = [
        &["patch", "approval", "w.gate", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/labels"}]"#],
        &[
            "patch",
            "approval",
            "w.gate",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
        ],
        &["patch", "approval", "w.gate", "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/keep"]}}"#],
        &["label", "approval", "w.gate", "hitl.dev/step=other", "--overwrite"],
    ];
    for user in ["alice", "bob"] {
        for args in attempts {
            let err = refused(user, &[&["-n", &ns.name][..], args].concat());
            assert!(
                err.contains("labels, ownerReferences and finalizers of an Approval are set by the hitl-operator"),
                "{user} {args:?}: {err}"
            );
        }
    }
    assert_still_waiting(&ns.name, "w", "w.gate");
    let a = approval(&ns.name, "w.gate");
    assert_eq!(a["metadata"]["labels"]["hitl.dev/step"], "gate");
    assert!(a["metadata"]["finalizers"].is_null());
    // The gate still works for its approver.
    patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_phase(&ns.name, "w", "Succeeded", WAIT);
}

/// Hole 4, the clock: the deadline belongs to the step. A waiting Approval deleted by someone who
/// may is opened again with the same deadline, and expires on time.
#[test]
fn deleting_a_waiting_gate_does_not_restart_its_clock() {
    let ns = test_namespace("clock");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", "{timeoutSeconds: 8}"));
    let first = wait_pending(&ns.name, "w.gate");
    let deadline = first["status"]["expiresAt"].as_str().unwrap().to_string();
    kubectl_ok("admin", &["-n", &ns.name, "delete", "approval", "w.gate", "--wait=true"]);
    let again = wait_for("the gate opened again", WAIT, || {
        get_json(&ns.name, "approval", "w.gate")
            .filter(|a| a["metadata"]["uid"] != first["metadata"]["uid"] && a["status"]["phase"] == "Pending")
    });
    assert_eq!(again["spec"]["expiresAt"].as_str(), Some(deadline.as_str()));
    assert_eq!(again["status"]["expiresAt"].as_str(), Some(deadline.as_str()));
    let wf = wait_phase(&ns.name, "w", "Failed", WAIT);
    assert_eq!(step(&wf, "gate")["reason"], "ApprovalExpired");
    let finished = time(&step(&wf, "gate")["finishedAt"]);
    let due: jiff::Timestamp = deadline.parse().unwrap();
    assert!(finished <= due + jiff::SignedDuration::from_secs(2), "expired at {finished}, due {due}");
}

/// Hole 5: names of different gates never collide, and a Workflow name that would make an
/// invalid child name is refused at apply.
#[test]
fn derived_names_are_unique_and_valid() {
    let ns = test_namespace("names");
    let _op = Operator::start(&ns.name);
    let two = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: col}\nspec:\n  steps:\n    - {name: x-gate, suspend: {}}\n";
    apply(&ns.name, &gated("col-x", "{}"));
    apply(&ns.name, two);
    wait_pending(&ns.name, "col-x.gate");
    wait_pending(&ns.name, "col.x-gate");
    patch_approval("admin", &ns.name, "col-x.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    patch_approval("admin", &ns.name, "col.x-gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_phase(&ns.name, "col-x", "Succeeded", WAIT);
    wait_phase(&ns.name, "col", "Succeeded", WAIT);

    let dotted = format!("{}.{}", "a".repeat(53), "b".repeat(9));
    let err = apply_refused(&ns.name, &gated(&dotted, "{}"));
    assert!(err.contains("a Workflow name must be a DNS label"), "{err}");

    // The longest name there is still gets its Pods and its Events.
    let long = "l".repeat(63);
    apply(&ns.name, &gated(&long, "{}"));
    let gate = format!("{long}.gate");
    wait_pending(&ns.name, &gate);
    wait_for("the Requested event on the long-named gate", WAIT, || {
        events(&ns.name, &gate).iter().any(|e| e.starts_with("Requested")).then_some(())
    });
    patch_approval("admin", &ns.name, &gate, r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_phase(&ns.name, &long, "Succeeded", WAIT);
}

/// Hole 6: a merge patch that names a required input with null supplies nothing.
#[test]
fn a_null_input_is_not_a_value() {
    let ns = test_namespace("nulls");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", "{inputs: [{name: num, type: integer, required: true}]}"));
    wait_pending(&ns.name, "w.gate");
    for patch in [r#"{"spec":{"input":{"num":null}}}"#, r#"{"spec":{"decision":"Approve","input":{"num":null}}}"#] {
        let err = patch_approval("admin", &ns.name, "w.gate", patch).unwrap_err();
        assert!(err.contains("input num: needs a value") || err.contains("input num: required"), "{patch}: {err}");
    }
    assert_still_waiting(&ns.name, "w", "w.gate");
    patch_approval("admin", &ns.name, "w.gate", r#"{"spec":{"input":{"num":7}}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["outputs"]["num"], "7");
}

/// Hole 7: deleting a Workflow and applying it again at once (as GitOps tools and scripts do)
/// gives a gate that works, and its approvers the rights to decide it.
#[test]
fn a_recreated_workflow_just_works() {
    let ns = test_namespace("recreate");
    let _op = Operator::start(&ns.name);
    let yaml = gated("w", ALICE);
    apply(&ns.name, &yaml);
    let old = wait_pending(&ns.name, "w.gate");
    wait_for("the first grant", WAIT, || grant(&ns.name, "role", "w.gate"));
    kubectl_ok("admin", &["-n", &ns.name, "delete", "workflow", "w", "--wait=false"]);
    apply(&ns.name, &yaml);
    let uid = workflow(&ns.name, "w")["metadata"]["uid"].clone();
    let new = wait_for("the new run's gate", WAIT, || {
        get_json(&ns.name, "approval", "w.gate")
            .filter(|a| a["spec"]["workflowRef"]["uid"] == uid && a["status"]["phase"] == "Pending")
    });
    assert_ne!(new["metadata"]["uid"], old["metadata"]["uid"]);
    // alice holds no rights of her own here: only the new gate's grant lets her decide.
    wait_for("alice's rights on the new gate", WAIT, || {
        let out = kubectl("alice", &["-n", &ns.name, "auth", "can-i", "patch", "approvals.hitl.dev/w.gate"]);
        out.status.success().then_some(())
    });
    patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "alice");
    let role = grant(&ns.name, "role", "w.gate").expect("the new gate's grant");
    assert_eq!(role["metadata"]["ownerReferences"][0]["uid"], new["metadata"]["uid"]);
}

/// Hole 8: separation of duties. The namespace owner forbids self-approval; the creator, recorded
/// by the API server, cannot decide the gates of the Workflow they created, nor forge who that is.
#[test]
fn the_creator_may_not_decide_where_self_approval_is_forbidden() {
    let ns = test_namespace("sod");
    let _op = Operator::start(&ns.name);
    apply(
        &ns.name,
        "apiVersion: hitl.dev/v1alpha1\nkind: WorkflowPolicy\nmetadata: {name: default}\nspec: {selfApproval: Forbid}\n",
    );
    kubectl_ok(
        "admin",
        &["-n", &ns.name, "create", "role", "author", "--verb=create,get,list,patch", "--resource=workflows.hitl.dev"],
    );
    kubectl_ok("admin", &["-n", &ns.name, "create", "rolebinding", "author", "--role=author", "--user=alice"]);
    // The manifest claims carol created it; the API server records who did.
    let forged = gated("w", "{approvers: {users: [alice, carol]}}")
        .replace("metadata: {name: w}", "metadata: {name: w, annotations: {hitl.dev/created-by: carol}}");
    let out = kubectl_stdin("alice", &["-n", &ns.name, "create", "-f", "-"], &forged);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(workflow(&ns.name, "w")["metadata"]["annotations"]["hitl.dev/created-by"], "alice");
    let a = wait_pending(&ns.name, "w.gate");
    assert_eq!(
        (a["spec"]["workflowRef"]["createdBy"].as_str(), a["spec"]["selfApproval"].as_str()),
        (Some("alice"), Some("Forbid"))
    );

    let err = patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(err.contains("you created Workflow w and this gate forbids self-approval"), "{err}");
    // Nor can the record be changed afterwards, by her or an admin.
    for user in ["alice", "admin"] {
        let err =
            refused(user, &["-n", &ns.name, "annotate", "workflow", "w", "hitl.dev/created-by=carol", "--overwrite"]);
        assert!(err.contains("records who created the Workflow (alice) and cannot change"), "{user}: {err}");
    }
    assert_still_waiting(&ns.name, "w", "w.gate");
    patch_approval("carol", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "carol");
}

/// Tools write the manifest again, which never carries the creator annotation: server-side apply
/// (Flux, Argo CD) and a whole-object `kubectl replace`. Each write succeeds and the record stays.
#[test]
fn writing_the_manifest_again_keeps_the_creator() {
    ensure_crds();
    let ns = test_namespace("rewrite");
    let yaml = gated("w", "{}").replace("spec:\n", "spec:\n  suspend: true\n");
    for args in [&["apply", "--server-side", "--field-manager=flux", "-f", "-"][..], &["replace", "-f", "-"][..]] {
        for _ in 0..2 {
            let out = kubectl_stdin("admin", &[&["-n", &ns.name][..], args].concat(), &yaml);
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    assert_eq!(workflow(&ns.name, "w")["metadata"]["annotations"]["hitl.dev/created-by"], "admin");
}
