//! Suspend steps on the local cluster: a person's `kubectl patch` approves, rejects or supplies
//! typed input, and the run goes on; bad input is refused at patch time; gates expire.

mod common;
mod harness;

use std::time::Duration;

use common::fixtures::{self, StepBuilder, container, input, suspend};
use common::{kubectl_err, kubectl_ok, test_namespace, wait_for};
use harness::*;
use hitl_operator::api::{InputType, OnTimeout};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// scan -> review gate (typed inputs, approvers) -> sign | redact, branching on the verdict.
fn contract(name: &str) -> String {
    let review = suspend("review")
        .message("Scan flagged {{ steps.scan.outputs.flagged }} clauses in {{ params.document }}.")
        .approvers_users(["alice"])
        .approvers_groups(["legal"])
        .input(input("verdict", InputType::String).one_of(["sign", "redact", "reject"]).required())
        .input(input("notes", InputType::String).max_length(20))
        .input(input("priority", InputType::Integer).default(json!(3)).minimum(1.0).maximum(5.0))
        .input(input("ticket", InputType::String).pattern("^T-[0-9]+$"))
        .input(input("urgent", InputType::Boolean))
        .input(input("score", InputType::Number));
    fixtures::workflow(name)
        .param("document", "s3://contracts/acme.pdf")
        .step(container("scan", "busybox:1.36").sim("message", r#"{"flagged": 3}"#))
        .step(review)
        .step(
            container("sign", "busybox:1.36")
                .depends_on(["review"])
                .when("steps.review.outputs.verdict == 'sign'")
                .args([
                    "echo",
                    "signed by {{ steps.review.decidedBy }} at priority {{ steps.review.outputs.priority }}",
                ]),
        )
        .step(
            container("redact", "busybox:1.36").depends_on(["review"]).when("steps.review.outputs.verdict == 'redact'"),
        )
        .yaml()
}

/// A gate that waits from the start, beside the others.
fn gate(step: &str) -> StepBuilder {
    suspend(step).depends_on([]).message(step)
}

#[test]
fn approving_with_typed_input_resumes_the_run_and_branches() {
    let ns = test_namespace("approve");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &contract("review"));
    let wf = wait_phase(&ns.name, "review", "Waiting", WAIT);
    assert_eq!(wf["status"]["waitingFor"], "review.review");
    let waiting = wf["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Waiting").unwrap();
    assert_eq!(waiting["status"], "True");
    let a = wait_pending(&ns.name, "review.review");
    assert_eq!(a["spec"]["message"], "Scan flagged 3 clauses in s3://contracts/acme.pdf.");
    assert_eq!(a["metadata"]["labels"]["hitl.dev/step"], "review");
    assert_eq!(a["metadata"]["ownerReferences"][0]["name"], "review");
    let table = kubectl_ok("admin", &["-n", &ns.name, "get", "apr"]);
    for col in ["WORKFLOW", "STEP", "PHASE", "APPROVERS", "EXPIRES", "alice, group:legal", "Pending"] {
        assert!(table.contains(col), "{col} missing from:\n{table}");
    }

    // alice has no rights of her own here: the per-gate grant lets her decide this one gate.
    patch_approval(
        "alice",
        &ns.name,
        "review.review",
        r#"{"spec":{"decision":"Approve","input":{"verdict":"sign","notes":"clause 7 ok"},"comment":"fine"}}"#,
    )
    .unwrap();
    let ns_ = ns.name.as_str();
    kubectl_ok("admin", &["-n", ns_, "wait", "--for=condition=Approved", "--timeout=60s", "approval/review.review"]);
    kubectl_ok("admin", &["-n", ns_, "wait", "--for=condition=Succeeded", "--timeout=60s", "workflow/review"]);
    let failed =
        kubectl_err("admin", &["-n", ns_, "wait", "--for=condition=Failed", "--timeout=0s", "workflow/review"]);
    assert!(failed.contains("condition not met"), "{failed}");
    let wf = wait_phase(&ns.name, "review", "Succeeded", WAIT);
    assert_eq!(wf["status"]["progress"], "3/4, 1 skipped", "redact was skipped");
    let review = step(&wf, "review");
    assert_eq!(review["decidedBy"], "alice");
    assert_eq!(review["outputs"]["verdict"], "sign");
    assert_eq!(review["outputs"]["priority"], "3", "the default is filled in");
    assert_eq!(review["outputs"]["decision"], "Approve");
    assert_eq!(step(&wf, "redact")["phase"], "Skipped");
    let sign_pod = step(&wf, "sign")["podName"].as_str().unwrap().to_string();
    let args =
        kubectl_ok("admin", &["-n", &ns.name, "get", "pod", &sign_pod, "-o", "jsonpath={.spec.containers[0].args[1]}"]);
    assert_eq!(args, "signed by alice at priority 3");
    let a = approval(&ns.name, "review.review");
    assert_eq!((a["status"]["phase"].as_str(), a["status"]["decidedBy"].as_str()), (Some("Approved"), Some("alice")));
    assert!(events(&ns.name, "review.review").iter().any(|e| e.starts_with("Approved: Approved by alice")));
    let on_approval = events(&ns.name, "review.review");
    assert!(
        on_approval.iter().any(|e| e.starts_with("Requested: waiting for a decision by alice, group:legal")),
        "{on_approval:?}"
    );
    let on_workflow = events(&ns.name, "review");
    assert!(on_workflow.iter().any(|e| e.starts_with("ApprovalRequested")), "{on_workflow:?}");
    assert!(
        on_workflow.iter().any(|e| e == "ApprovalDecided: step review: review.review Approve by alice"),
        "{on_workflow:?}"
    );
}

#[test]
fn rejecting_fails_the_step_with_the_comment() {
    let ns = test_namespace("reject");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &contract("deal"));
    wait_pending(&ns.name, "deal.review");
    patch_approval(
        "carol",
        &ns.name,
        "deal.review",
        r#"{"spec":{"decision":"Reject","comment":"clause 7 is unacceptable"}}"#,
    )
    .unwrap();
    // What a pipeline script does: wait for the run's outcome with kubectl alone.
    let ns_ = ns.name.as_str();
    let failed = kubectl_ok("admin", &["-n", ns_, "wait", "--for=condition=Failed", "--timeout=60s", "workflow/deal"]);
    assert!(failed.contains("condition met"), "{failed}");
    // A rejection must never satisfy a wait for success (timeout 0: kubectl checks once).
    let succeeded =
        kubectl_err("admin", &["-n", ns_, "wait", "--for=condition=Succeeded", "--timeout=0s", "workflow/deal"]);
    assert!(succeeded.contains("condition not met"), "{succeeded}");
    let approved =
        kubectl_err("admin", &["-n", ns_, "wait", "--for=condition=Approved", "--timeout=0s", "approval/deal.review"]);
    assert!(approved.contains("condition not met"), "{approved}");
    // The run acts on the decision as it sees it; the Approval records it milliseconds later.
    kubectl_ok("admin", &["-n", ns_, "wait", "--for=condition=Decided", "--timeout=60s", "approval/deal.review"]);
    let wf = workflow(ns_, "deal");
    assert_eq!(phase(&wf), "Failed");
    assert_eq!(wf["status"]["progress"], "2/4, failed at review", "sign and redact never ran");
    let review = step(&wf, "review");
    assert_eq!(review["reason"], "Rejected");
    assert_eq!(review["message"], "rejected by carol: clause 7 is unacceptable");
    assert_eq!(step(&wf, "sign")["phase"], "Omitted");
    assert_eq!(approval(ns_, "deal.review")["status"]["phase"], "Rejected");
}

#[test]
fn input_alone_approves_a_gate_that_asks_for_input() {
    let ns = test_namespace("inputonly");
    let _op = Operator::start(&ns.name);
    let yaml = fixtures::workflow("ask")
        .step(suspend("budget").input(input("amount", InputType::Integer).required().minimum(1.0)))
        .step(container("spend", "x").args(["{{ steps.budget.outputs.amount }}"]))
        .yaml();
    apply(&ns.name, &yaml);
    wait_pending(&ns.name, "ask.budget");
    patch_approval("admin", &ns.name, "ask.budget", r#"{"spec":{"input":{"amount":250}}}"#).unwrap();
    let wf = wait_phase(&ns.name, "ask", "Succeeded", WAIT);
    assert_eq!(step(&wf, "budget")["outputs"]["amount"], "250");
    assert_eq!(step(&wf, "budget")["outputs"]["decision"], "Approve");
    assert_eq!(step(&wf, "budget")["decidedBy"], "admin", "decidedBy is filled in by the API server");
}

#[test]
fn parallel_gates_are_decided_independently() {
    let ns = test_namespace("parallel");
    let _op = Operator::start(&ns.name);
    let ship = container("ship", "x").depends_on(["legal", "security"]);
    apply(&ns.name, &fixtures::workflow("two").steps([gate("legal"), gate("security"), ship]).yaml());
    wait_pending(&ns.name, "two.legal");
    wait_pending(&ns.name, "two.security");
    let wf = wait_phase(&ns.name, "two", "Waiting", WAIT);
    assert_eq!(wf["status"]["waitingFor"], "two.legal,two.security");
    patch_approval("admin", &ns.name, "two.legal", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    let wf = wait_for("legal to be Succeeded", WAIT, || {
        let wf = workflow(&ns.name, "two");
        (step(&wf, "legal")["phase"] == "Succeeded").then_some(wf)
    });
    assert_eq!(step(&wf, "security")["phase"], "Waiting");
    assert_eq!(phase(&wf), "Waiting");
    assert_eq!(wf["status"]["waitingFor"], "two.security");
    assert!(pods(&ns.name, "two").is_empty(), "ship waits for both gates");
    patch_approval("admin", &ns.name, "two.security", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_phase(&ns.name, "two", "Succeeded", WAIT);
}

#[test]
fn an_expired_gate_is_never_taken_for_a_decision() {
    let ns = test_namespace("expiry");
    let _op = Operator::start(&ns.name);
    let yaml = |name: &str, on_timeout| {
        let gate = suspend("gate")
            .timeout_seconds(2)
            .on_timeout(on_timeout)
            .input(input("level", InputType::Integer).default(json!(2)));
        let after = container("after", "x").args(["{{ steps.gate.outputs.level }} {{ steps.gate.outputs.decision }}"]);
        fixtures::workflow(name).steps([gate, after]).yaml()
    };
    apply(&ns.name, &yaml("strict", OnTimeout::Reject));
    apply(&ns.name, &yaml("lenient", OnTimeout::Approve));

    let wf = wait_phase(&ns.name, "strict", "Failed", WAIT);
    assert_eq!(step(&wf, "gate")["reason"], "ApprovalExpired");
    assert_eq!(step(&wf, "gate")["outputs"]["decision"], "Expired");
    let a = approval(&ns.name, "strict.gate");
    assert_eq!(a["status"]["phase"], "Expired");
    assert!(a["spec"]["decision"].is_null() && a["status"]["decidedBy"].is_null());
    let decided = a["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Decided").unwrap();
    assert_eq!((decided["status"].as_str(), decided["reason"].as_str()), (Some("False"), Some("Expired")));
    let late = patch_approval("admin", &ns.name, "strict.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(late.contains("this gate is already Expired; it can no longer be decided"), "{late}");

    let wf = wait_phase(&ns.name, "lenient", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["outputs"]["decision"], "Expired");
    assert_eq!(step(&wf, "gate")["outputs"]["level"], "2");
    let pod = step(&wf, "after")["podName"].as_str().unwrap().to_string();
    let args =
        kubectl_ok("admin", &["-n", &ns.name, "get", "pod", &pod, "-o", "jsonpath={.spec.containers[0].args[0]}"]);
    assert_eq!(args, "2 Expired");
    assert_eq!(approval(&ns.name, "lenient.gate")["status"]["phase"], "Expired");
    assert!(events(&ns.name, "lenient.gate").iter().any(|e| e.starts_with("Expired")));
    assert!(events(&ns.name, "lenient").iter().any(|e| e.starts_with("ApprovalExpired")));
}

#[test]
fn bad_input_is_refused_at_patch_time_and_the_gate_stays_open() {
    let ns = test_namespace("badinput");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &contract("bad"));
    wait_pending(&ns.name, "bad.review");
    let cases = [
        (r#"{"spec":{"decision":"Approve"}}"#, "input verdict: required to approve"),
        (r#"{"spec":{"input":{"notes":"hi"}}}"#, "input verdict: required to approve"),
        (
            r#"{"spec":{"input":{"verdict":"sign","colour":"red"}}}"#,
            "input colour: not asked for by this gate, which asks for verdict, notes, priority, ticket, urgent, score",
        ),
        (
            r#"{"spec":{"input":{"verdict":"maybe"}}}"#,
            "input verdict: must be one of sign, redact, reject, not \"maybe\"",
        ),
        (r#"{"spec":{"input":{"verdict":7}}}"#, "input verdict: must be of type string, in quotes"),
        (
            r#"{"spec":{"input":{"verdict":"sign","priority":"2"}}}"#,
            "input priority: must be of type integer, such as 2, without quotes",
        ),
        (r#"{"spec":{"input":{"verdict":"sign","priority":2.5}}}"#, "input priority: must be of type integer"),
        (r#"{"spec":{"input":{"verdict":"sign","priority":9}}}"#, "input priority: must be at most 5"),
        (r#"{"spec":{"input":{"verdict":"sign","priority":0}}}"#, "input priority: must be at least 1"),
        (
            r#"{"spec":{"input":{"verdict":"sign","notes":"this note is far too long"}}}"#,
            "input notes: must be at most 20 characters long",
        ),
        (r#"{"spec":{"input":{"verdict":"sign","ticket":"X-1"}}}"#, "input ticket: must match the pattern ^T-[0-9]+$"),
        (
            r#"{"spec":{"input":{"verdict":"sign","urgent":"yes"}}}"#,
            "input urgent: must be of type boolean: true or false, without quotes",
        ),
        (
            r#"{"spec":{"input":{"verdict":"sign","score":"1.5"}}}"#,
            "input score: must be of type number, such as 2.5, without quotes",
        ),
        (r#"{"spec":{"decision":"Maybe"}}"#, "spec.decision: Unsupported value: \"Maybe\""),
        (r#"{"spec":{"step":"other"}}"#, "set by the controller and cannot change"),
    ];
    let mut wrong = vec![];
    for (patch, want) in cases {
        match patch_approval("alice", &ns.name, "bad.review", patch) {
            Ok(_) => wrong.push(format!("{patch}: accepted")),
            Err(e) if !e.contains(want) => wrong.push(format!("{patch}: expected {want:?} in {e}")),
            Err(_) => {}
        }
        let a = approval(&ns.name, "bad.review");
        assert!(a["spec"]["decision"].is_null() && a["spec"]["input"].is_null(), "{patch} changed the Approval");
        assert_eq!(a["status"]["phase"], "Pending", "{patch}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Still open: a good patch goes through.
    patch_approval(
        "alice",
        &ns.name,
        "bad.review",
        r#"{"spec":{"input":{"verdict":"redact","priority":2,"urgent":true,"score":1.5,"ticket":"T-9"}}}"#,
    )
    .unwrap();
    let wf = wait_phase(&ns.name, "bad", "Succeeded", WAIT);
    assert_eq!(step(&wf, "review")["outputs"]["urgent"], "true");
    assert_eq!(step(&wf, "redact")["phase"], "Succeeded");
    // A decision is final.
    let again = patch_approval("alice", &ns.name, "bad.review", r#"{"spec":{"decision":"Reject"}}"#).unwrap_err();
    assert!(
        again.contains("is final once set")
            || again.contains("no longer be decided")
            || again.contains("cannot be added to it afterwards"),
        "{again}"
    );
}

#[test]
fn a_decision_made_while_the_controller_is_down_is_applied_once() {
    let ns = test_namespace("downtime");
    let mut op = Operator::start(&ns.name);
    apply(&ns.name, &contract("later"));
    wait_pending(&ns.name, "later.review");
    op.kill();
    patch_approval("alice", &ns.name, "later.review", r#"{"spec":{"decision":"Approve","input":{"verdict":"sign"}}}"#)
        .unwrap();
    // The decision alone moves nothing: status is the operator's to write, and it is down.
    assert_eq!(approval(&ns.name, "later.review")["status"]["phase"], "Pending", "nobody acted while down");
    assert_eq!(step(&workflow(&ns.name, "later"), "review")["phase"], "Waiting");
    op.restart();
    let wf = wait_phase(&ns.name, "later", "Succeeded", WAIT);
    assert_eq!(step(&wf, "review")["decidedBy"], "alice");
    let sign_pods =
        pods(&ns.name, "later").into_iter().filter(|p| p["metadata"]["labels"]["hitl.dev/step"] == "sign").count();
    assert_eq!(sign_pods, 1, "the decision was acted on exactly once");
    let approved = events(&ns.name, "later.review").iter().filter(|e| e.starts_with("Approved")).count();
    assert_eq!(approved, 1);
}

#[test]
fn deleting_a_waiting_workflow_removes_its_approval_and_grant() {
    let ns = test_namespace("delwait");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &contract("gone"));
    wait_pending(&ns.name, "gone.review");
    wait_for("the per-gate grant", WAIT, || grant(&ns.name, "role", "gone.review").map(|_| ()));
    kubectl_ok("admin", &["-n", &ns.name, "delete", "workflow", "gone", "--wait=false"]);
    wait_for("the Approval and its grant to be collected", Duration::from_secs(90), || {
        let gone = get_json(&ns.name, "approval", "gone.review").is_none()
            && grant(&ns.name, "role", "gone.review").is_none()
            && grant(&ns.name, "rolebinding", "gone.review").is_none();
        gone.then_some(())
    });
}

#[test]
fn a_decision_made_after_expiry_while_the_controller_was_down_does_not_count() {
    let ns = test_namespace("late");
    let mut op = Operator::start(&ns.name);
    let yaml = fixtures::workflow("late").step(suspend("gate").timeout_seconds(2)).step(container("after", "x")).yaml();
    apply(&ns.name, &yaml);
    wait_pending(&ns.name, "late.gate");
    op.kill();
    // Wait out the gate's own deadline, as recorded on it, on this machine's clock (the API
    // server's: same host).
    let expires_at = approval(&ns.name, "late.gate")["spec"]["expiresAt"].as_str().unwrap().to_string();
    let deadline: jiff::Timestamp = expires_at.parse().unwrap();
    wait_for("the gate's deadline to pass", Duration::from_secs(30), || {
        (jiff::Timestamp::now() > deadline + jiff::SignedDuration::from_millis(500)).then_some(())
    });
    // Nobody marked it Expired yet, so the API server still takes the patch.
    patch_approval("admin", &ns.name, "late.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    // ... and rewrites the API server's record of when fields were written, to before the deadline.
    let shown = ["-n", &ns.name, "get", "approval", "late.gate", "--show-managed-fields", "-o", "json"];
    let mut a: serde_json::Value = serde_json::from_str(&kubectl_ok("admin", &shown)).unwrap();
    let created = a["metadata"]["creationTimestamp"].clone();
    // (Times alone would not stick: the API server ignores a change of timestamps only.)
    for entry in a["metadata"]["managedFields"].as_array_mut().unwrap() {
        entry["time"] = created.clone();
        entry["manager"] = serde_json::json!("forged");
    }
    let rewrite = serde_json::json!({"metadata": {"managedFields": a["metadata"]["managedFields"]}}).to_string();
    let rewrite_args =
        ["-n", &ns.name, "patch", "approval", "late.gate", "--type=merge", "--field-manager=rewriter", "-p", &rewrite];
    kubectl_ok("admin", &rewrite_args);
    let after: serde_json::Value = serde_json::from_str(&kubectl_ok("admin", &shown)).unwrap();
    let decision_written = after["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["fieldsV1"]["f:spec"].get("f:decision").is_some());
    assert_eq!(decision_written.unwrap()["time"], created, "the attack rewrote the record");
    op.restart();
    let wf = wait_phase(&ns.name, "late", "Failed", WAIT);
    assert_eq!(step(&wf, "gate")["reason"], "ApprovalExpired");
    let a = approval(&ns.name, "late.gate");
    assert_eq!(a["status"]["phase"], "Expired");
    assert!(a["status"]["message"].as_str().unwrap().contains("before the decision was seen"), "{}", a["status"]);
}

#[test]
fn when_one_gate_rejects_the_other_waiting_gate_is_cancelled() {
    let ns = test_namespace("cancel");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &fixtures::workflow("two").steps([gate("legal"), gate("security")]).yaml());
    wait_pending(&ns.name, "two.legal");
    wait_pending(&ns.name, "two.security");
    patch_approval("admin", &ns.name, "two.legal", r#"{"spec":{"decision":"Reject"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "two", "Failed", WAIT);
    assert_eq!(step(&wf, "security")["phase"], "Omitted");
    let a = wait_for("the other gate to be cancelled", WAIT, || {
        Some(approval(&ns.name, "two.security")).filter(|a| a["status"]["phase"] == "Cancelled")
    });
    assert!(a["spec"]["decision"].is_null());
    let late = patch_approval("admin", &ns.name, "two.security", r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(late.contains("this gate is already Cancelled; it can no longer be decided"), "{late}");
    let table = kubectl_ok("admin", &["-n", &ns.name, "get", "apr"]);
    assert!(table.contains("Cancelled") && table.contains("Rejected"), "{table}");
}
