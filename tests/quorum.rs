//! Quorum gates: N distinct approvers must approve. Each person's decision, sent as on any gate,
//! is recorded by the API server as their vote; nobody adds, changes or removes another's.

mod common;
mod harness;

use std::process::Command;
use std::time::Duration;

use common::fixtures::{self, StepBuilder, container, input, suspend};
use common::{kubeconfig, test_namespace, wait_for};
use harness::*;
use hitl_operator::api::InputType;

const WAIT: Duration = Duration::from_secs(60);

/// The gate `gate` (`suspend("gate")`, shaped by the test), then a step after it.
fn gated(name: &str, gate: StepBuilder) -> String {
    fixtures::workflow(name).step(gate).step(container("after", "x")).yaml()
}

fn votes(ns: &str, gate: &str) -> serde_json::Value {
    approval(ns, gate)["spec"]["votes"].clone()
}

#[test]
fn two_of_a_group_approve_each_once_with_the_same_input() {
    let ns = test_namespace("quorum");
    let _op = Operator::start(&ns.name);
    let gate = suspend("gate")
        .approvers_groups(["legal"])
        .required_approvals(2)
        .input(input("verdict", InputType::String).one_of(["sign", "redact"]).required());
    apply(&ns.name, &gated("w", gate));
    wait_pending(&ns.name, "w.gate");
    patch_approval(
        "alice",
        &ns.name,
        "w.gate",
        r#"{"spec":{"decision":"Approve","input":{"verdict":"sign"},"comment":"ok"}}"#,
    )
    .unwrap();
    let a = wait_for("alice's vote to be counted", WAIT, || {
        let a = approval(&ns.name, "w.gate");
        (a["status"]["votes"] == "1/2").then_some(a)
    });
    assert_eq!(a["status"]["phase"], "Pending");
    let alice = &a["spec"]["votes"]["alice"];
    assert_eq!((alice["decision"].as_str(), alice["comment"].as_str()), (Some("Approve"), Some("ok")));
    assert_eq!(alice["groups"], serde_json::json!(["legal"]), "the API server records her listed groups");
    assert!(a["spec"]["decision"].is_null() && a["spec"]["decidedBy"].is_null(), "{}", a["spec"]);

    // Once each.
    let again = patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Reject"}}"#).unwrap_err();
    assert!(again.contains("a vote is final") || again.contains("you (alice) have already voted"), "{again}");
    // Never in another's name.
    let forged = patch_approval(
        "alice",
        &ns.name,
        "w.gate",
        r#"{"spec":{"votes":{"carol":{"decision":"Approve","groups":["legal"]}}}}"#,
    )
    .unwrap_err();
    assert!(forged.contains("you (alice) may cast only your own vote"), "{forged}");
    // Nor is anyone's vote removed.
    let removed = patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"votes":{"alice":null}}}"#).unwrap_err();
    assert!(removed.contains("a vote is final"), "{removed}");
    // A second approval carries the first one's input.
    let differs =
        patch_approval("carol", &ns.name, "w.gate", r#"{"spec":{"input":{"verdict":"redact"}}}"#).unwrap_err();
    assert!(differs.contains("every approving vote carries the same input"), "{differs}");
    assert_eq!(votes(&ns.name, "w.gate").as_object().unwrap().len(), 1);

    patch_approval("carol", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve","input":{"verdict":"sign"}}}"#)
        .unwrap();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "alice, carol", "the run records every approver");
    assert_eq!(step(&wf, "gate")["outputs"]["verdict"], "sign");
    let a = approval(&ns.name, "w.gate");
    assert_eq!((a["status"]["phase"].as_str(), a["status"]["votes"].as_str()), (Some("Approved"), Some("2/2")));
}

#[test]
fn a_rejection_that_makes_the_quorum_unreachable_rejects() {
    let ns = test_namespace("unreach");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", suspend("gate").approvers_users(["alice", "bob", "carol"]).required_approvals(3)));
    wait_pending(&ns.name, "w.gate");
    patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    patch_approval("bob", &ns.name, "w.gate", r#"{"spec":{"decision":"Reject","comment":"no"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Failed", WAIT);
    assert_eq!(step(&wf, "gate")["reason"], "Rejected");
    assert_eq!(step(&wf, "gate")["decidedBy"], "bob");
    assert_eq!(step(&wf, "gate")["votes"], serde_json::json!(["alice: Approve", "bob: Reject"]), "every voter");
    let a = approval(&ns.name, "w.gate");
    assert!(
        a["status"]["message"].as_str().unwrap().contains("3 approvals can no longer be reached"),
        "{}",
        a["status"]
    );
}

#[test]
fn votes_sent_at_the_same_moment_both_count() {
    let ns = test_namespace("together");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", suspend("gate").approvers_users(["alice", "carol"]).required_approvals(2)));
    wait_pending(&ns.name, "w.gate");
    let ns_name = ns.name.clone();
    let voters: Vec<_> = ["alice", "carol"]
        .into_iter()
        .map(|who| {
            let ns = ns_name.clone();
            std::thread::spawn(move || patch_approval(who, &ns, "w.gate", r#"{"spec":{"decision":"Approve"}}"#))
        })
        .collect();
    for v in voters {
        v.join().unwrap().unwrap();
    }
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "alice, carol");
}

#[test]
fn a_gate_with_one_vote_in_still_expires() {
    let ns = test_namespace("qexpire");
    let _op = Operator::start(&ns.name);
    apply(
        &ns.name,
        &gated("w", suspend("gate").approvers_users(["alice", "carol"]).required_approvals(2).timeout_seconds(3)),
    );
    wait_pending(&ns.name, "w.gate");
    patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Failed", WAIT);
    assert_eq!(step(&wf, "gate")["reason"], "ApprovalExpired");
    assert_eq!(approval(&ns.name, "w.gate")["status"]["phase"], "Expired");
}

#[test]
fn votes_cast_while_the_operator_is_down_count_once_it_is_back() {
    let ns = test_namespace("qrestart");
    let mut op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", suspend("gate").approvers_users(["alice", "carol"]).required_approvals(2)));
    wait_pending(&ns.name, "w.gate");
    patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_for("the first vote counted", WAIT, || {
        (approval(&ns.name, "w.gate")["status"]["votes"] == "1/2").then_some(())
    });
    op.kill();
    // The plugin casts a vote on a quorum gate like any decision.
    let out = Command::new(common::plugin_bin())
        .args(["--kubeconfig", kubeconfig("carol").to_str().unwrap(), "-n", &ns.name, "approve", "w.gate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("approval w.gate: your vote is recorded (2 cast, 2 approvals needed)"), "{said}");
    assert_eq!(votes(&ns.name, "w.gate")["carol"]["decision"], "Approve");
    op.restart();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "alice, carol");
}
