//! Who may decide, enforced by the API server (RBAC + admission policies) and recorded: the
//! issue-5 matrix, each case through `kubectl` as the named user.

mod common;
mod harness;

use std::time::Duration;

use common::{kubectl_ok, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

fn gated(name: &str, approvers: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  steps:\n    - name: gate\n      suspend:\n        message: ship it?\n{approvers}\n    - {{name: after, container: {{image: x}}}}\n"
    )
}

const LISTED: &str = "        approvers: {users: [alice], groups: [legal]}";

/// Lets `user` patch any approval in `ns`, as the chart's hitl-approver role would.
fn bind_approver(ns: &str, user: &str) {
    let role = format!("approve-all-{user}");
    kubectl_ok("admin", &["-n", ns, "create", "role", &role, "--verb=get,list,patch", "--resource=approvals.hitl.dev"]);
    kubectl_ok(
        "admin",
        &["-n", ns, "create", "rolebinding", &role, &format!("--role={role}"), &format!("--user={user}")],
    );
}

fn still_pending(ns: &str, name: &str) {
    let a = approval(ns, name);
    assert_eq!(a["status"]["phase"], "Pending");
    assert!(a["spec"]["decision"].is_null() && a["spec"]["decidedBy"].is_null(), "{}", a["spec"]);
}

#[test]
fn a_user_listed_by_name_approves_and_is_recorded() {
    let ns = test_namespace("byname");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", LISTED));
    wait_pending(&ns.name, "w.gate");
    // The plain patch: the API server fills in decidedBy.
    patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "alice");
    let a = wait_decided(&ns.name, "w.gate");
    assert_eq!((a["spec"]["decidedBy"].as_str(), a["status"]["decidedBy"].as_str()), (Some("alice"), Some("alice")));
}

#[test]
fn a_member_of_a_listed_group_approves() {
    let ns = test_namespace("bygroup");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", LISTED));
    wait_pending(&ns.name, "w.gate");
    patch_approval("carol", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "carol");
}

#[test]
fn an_unlisted_user_is_refused_even_with_rbac_rights() {
    let ns = test_namespace("unlisted");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", LISTED));
    wait_pending(&ns.name, "w.gate");

    // Without rights, RBAC refuses bob before any policy runs.
    let err = patch_approval("bob", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(err.contains("Forbidden") && err.contains("User \"bob\" cannot"), "{err}");

    // With rights to patch approvals, the approver list still binds him.
    bind_approver(&ns.name, "bob");
    let err = patch_approval("bob", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(
        err.contains("user bob is not an approver of this gate; it may be decided only by: alice, group:legal"),
        "{err}"
    );
    still_pending(&ns.name, "w.gate");

    // Claiming to be alice does not help.
    let err = patch_approval("bob", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve","decidedBy":"alice"}}"#)
        .unwrap_err();
    assert!(err.contains("user bob is not an approver"), "{err}");
    still_pending(&ns.name, "w.gate");

    // The list binds everyone, cluster admins included.
    let err = patch_approval("admin", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(err.contains("user admin is not an approver of this gate"), "{err}");
    still_pending(&ns.name, "w.gate");
    assert_eq!(phase(&workflow(&ns.name, "w")), "Waiting");
}

#[test]
fn nobody_decides_in_anothers_name() {
    let ns = test_namespace("impersonate");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", LISTED));
    wait_pending(&ns.name, "w.gate");
    let err = patch_approval("carol", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve","decidedBy":"alice"}}"#)
        .unwrap_err();
    assert!(
        err.contains(r#"spec.decidedBy must name the user who decides: you are carol, so set "decidedBy": "carol""#),
        "{err}"
    );
    still_pending(&ns.name, "w.gate");
}

#[test]
fn a_second_decision_is_refused() {
    let ns = test_namespace("twice");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", LISTED));
    wait_pending(&ns.name, "w.gate");
    patch_approval("alice", &ns.name, "w.gate", r#"{"spec":{"decision":"Reject"}}"#).unwrap();
    let err = patch_approval("carol", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve","decidedBy":"carol"}}"#)
        .unwrap_err();
    assert!(err.contains("is final once set"), "{err}");
    let wf = wait_phase(&ns.name, "w", "Failed", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "alice");
}

#[test]
fn a_listed_user_cannot_touch_other_gates_without_rights() {
    let ns = test_namespace("othergate");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("mine", LISTED));
    apply(&ns.name, &gated("theirs", "        approvers: {users: [carol]}"));
    wait_pending(&ns.name, "mine.gate");
    wait_pending(&ns.name, "theirs.gate");
    // alice's per-gate grant covers mine.gate only.
    let err = patch_approval("alice", &ns.name, "theirs.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(err.contains("Forbidden") && err.contains("User \"alice\" cannot"), "{err}");
    let err = common::kubectl("alice", &["-n", &ns.name, "get", "approvals"]);
    assert!(!err.status.success(), "alice can list approvals without standing rights");
    still_pending(&ns.name, "theirs.gate");
}

#[test]
fn without_approvers_whoever_rbac_allows_decides_and_is_recorded() {
    let ns = test_namespace("open");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", ""));
    wait_pending(&ns.name, "w.gate");
    // No list and no grant: bob needs RBAC rights, and then may decide.
    let err = patch_approval("bob", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(err.contains("Forbidden"), "{err}");
    assert!(grant(&ns.name, "role", "w.gate").is_none(), "no grant without approvers");
    bind_approver(&ns.name, "bob");
    patch_approval("bob", &ns.name, "w.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "gate")["decidedBy"], "bob");
}

#[test]
fn the_per_gate_grant_goes_with_its_approval() {
    let ns = test_namespace("grantgc");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gated("w", LISTED));
    wait_pending(&ns.name, "w.gate");
    let role = wait_for("the grant", WAIT, || grant(&ns.name, "role", "w.gate"));
    assert_eq!(role["rules"][0]["resourceNames"][0], "w.gate");
    assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["get", "patch"]));
    let binding = grant(&ns.name, "rolebinding", "w.gate").unwrap();
    let subjects: Vec<String> = binding["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["kind"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    assert_eq!(subjects, ["User:alice", "Group:legal"]);
    let owner = &role["metadata"]["ownerReferences"][0];
    let approval_uid = approval(&ns.name, "w.gate")["metadata"]["uid"].clone();
    assert_eq!((owner["kind"].as_str(), &owner["uid"]), (Some("Approval"), &approval_uid));
    // Deleting the Workflow deletes its Approval, and with it the grant.
    kubectl_ok("admin", &["-n", &ns.name, "delete", "workflow", "w", "--wait=false"]);
    wait_for("the grant to be collected with its Approval", Duration::from_secs(90), || {
        (grant(&ns.name, "role", "w.gate").is_none() && grant(&ns.name, "rolebinding", "w.gate").is_none())
            .then_some(())
    });
}
