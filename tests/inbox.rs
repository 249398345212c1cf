//! Finding your gates without the right to list Approvals: the operator keeps an ApprovalInbox per
//! user and group, readable by that subject alone, and `kubectl hitl pending` reads the caller's.
//! Typed as alice and carol (group legal), bob (no group) and admin would type it.

mod common;
mod harness;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{kubeconfig, kubectl, kubectl_err, kubectl_ok, kubectl_stdin, test_namespace, unique_name, wait_for};
use harness::*;
use hitl_operator::engine::inbox_contents::{inbox_name, user};

const WAIT: Duration = Duration::from_secs(60);

/// `kubectl hitl ARGS` as `user`, from the kubeconfig's namespace (`default`, where none of these
/// users may list Approvals); (exit success, stdout, stderr).
fn hitl(user: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::plugin_bin())
        .args(["--kubeconfig", kubeconfig(user).to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The gates `kubectl hitl pending` shows `user` in `namespaces`, as `namespace/approval`.
fn pending_for(user: &str, namespaces: &[&str]) -> (BTreeSet<String>, String) {
    let (ok, out, err) = hitl(user, &["pending"]);
    assert!(ok, "kubectl hitl pending as {user} failed:\n{out}{err}");
    let gates = out
        .lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let (ns, name) = (cols.next()?, cols.next()?);
            namespaces.contains(&ns).then(|| format!("{ns}/{name}"))
        })
        .collect();
    (gates, out)
}

/// Waits until `user` sees exactly `want` among the gates of `namespaces`; returns the output.
fn wait_sees(user: &str, namespaces: &[&str], want: &[String]) -> String {
    let want: BTreeSet<String> = want.iter().cloned().collect();
    let mut last = String::new();
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&format!("{user} to see exactly {want:?}"), WAIT, || {
            let (gates, out) = pending_for(user, namespaces);
            last = out.clone();
            (gates == want).then_some(out)
        })
    }));
    seen.unwrap_or_else(|_| panic!("{user} never saw exactly {want:?}; last output:\n{last}"))
}

fn gate_workflow(name: &str, message: &str, approvers: &str, notify: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  steps:\n    - name: review\n      suspend:\n        message: {message:?}\n        approvers: {approvers}\n        inputs: [{{name: verdict, enum: [sign, reject], required: true}}]\n{notify}"
    )
}

#[test]
fn people_find_exactly_the_gates_waiting_for_them() {
    let (one, two) = (test_namespace("inbox-a"), test_namespace("inbox-b"));
    let (_op1, _op2) = (Operator::start(one.name()), Operator::start(two.name()));
    let secret = unique_name("secret-message");
    apply(one.name(), &gate_workflow("for-alice", "Sign the ACME contract?", "{users: [alice]}", ""));
    apply(two.name(), &gate_workflow("for-legal", "Redact clause 7?", "{groups: [legal]}", ""));
    apply(two.name(), &gate_workflow("for-zed", &secret, "{users: [zed]}", ""));
    for (ns, name) in
        [(one.name(), "for-alice.review"), (two.name(), "for-legal.review"), (two.name(), "for-zed.review")]
    {
        wait_pending(ns, name);
    }
    let namespaces = [one.name(), two.name()];
    let alices = format!("{}/for-alice.review", one.name());
    let legals = format!("{}/for-legal.review", two.name());

    // alice: her own gate and her group's, with their messages; never zed's.
    let out = wait_sees("alice", &namespaces, &[alices.clone(), legals.clone()]);
    assert!(out.contains("Sign the ACME contract?") && out.contains("for-legal/review"), "{out}");
    assert!(!out.contains(&secret) && !out.contains("for-zed"), "alice sees a gate not meant for her:\n{out}");
    // carol (legal): the group's gate only. bob: nothing, and no error.
    let out = wait_sees("carol", &namespaces, std::slice::from_ref(&legals));
    assert!(!out.contains(&secret), "{out}");
    let (bob, out) = pending_for("bob", &namespaces);
    assert!(bob.is_empty() && !out.contains(&secret), "bob sees gates not meant for him:\n{out}");
    // They have no right to list Approvals: the inbox is how they found them.
    let refused = kubectl_err("alice", &["-n", two.name(), "get", "approvals"]);
    assert!(refused.contains("cannot list resource \"approvals\""), "{refused}");

    // alice reads her inbox through kubectl; bob may neither read it nor list inboxes.
    let hers = inbox_name(&user("alice"));
    let read = kubectl_ok("alice", &["get", "approvalinbox", &hers, "-o", "jsonpath={.status.items[*].name}"]);
    assert!(read.contains("for-alice.review"), "{read}");
    let refused = kubectl_err("bob", &["get", "inbox", &hers]);
    assert!(refused.contains("forbidden") && refused.contains("cannot get resource \"approvalinboxes\""), "{refused}");
    let refused = kubectl_err("bob", &["get", "approvalinboxes"]);
    assert!(refused.contains("cannot list resource \"approvalinboxes\""), "{refused}");
    let refused = kubectl_err("carol", &["get", "inbox", &hers]);
    assert!(refused.contains("cannot get resource \"approvalinboxes\""), "carol reads alice's inbox: {refused}");
    // Nobody but the operator writes one: bob lacks the right, and admin, who has every right, is
    // stopped by the admission policy.
    let forged = format!(
        "{{\"apiVersion\": \"hitl.dev/v1alpha1\", \"kind\": \"ApprovalInbox\", \"metadata\": {{\"name\": \"{}\"}}, \"spec\": {{\"subject\": {{\"kind\": \"User\", \"name\": \"bob\"}}}}}}",
        inbox_name(&user("bob"))
    );
    let out = kubectl_stdin("bob", &["create", "-f", "-"], &forged);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("cannot create resource \"approvalinboxes\""), "{said}");
    let out = kubectl_stdin("admin", &["create", "-f", "-"], &forged);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("ApprovalInboxes are written only by the hitl-operator"), "{said}");
    let planted = format!(
        "{{\"apiVersion\": \"hitl.dev/v1alpha1\", \"kind\": \"ApprovalInbox\", \"metadata\": {{\"name\": \"{hers}\"}}, \"spec\": {{\"subject\": {{\"kind\": \"User\", \"name\": \"alice\"}}}}, \"status\": {{\"items\": [{{\"namespace\": \"x\", \"name\": \"phish\", \"workflow\": \"w\", \"step\": \"s\"}}]}}}}"
    );
    for (who, why) in
        [("bob", "cannot update resource \"approvalinboxes/status\""), ("admin", "written only by the hitl-operator")]
    {
        let said = refused_replace(who, &planted);
        assert!(said.contains(why), "{who}: {said}");
    }
    let out = kubectl_stdin("bob", &["replace", "-f", "-"], &planted);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("cannot update resource \"approvalinboxes\""), "{said}");
    let hers_now = kubectl_ok("admin", &["get", "inbox", &hers, "-o", "jsonpath={.status.items[*].name}"]);
    assert!(!hers_now.contains("phish") && hers_now.contains("for-alice.review"), "{hers_now}");

    // Once alice decides, her gate leaves her inbox; the group's stays.
    let (ok, out, err) = hitl("alice", &["-n", one.name(), "approve", "for-alice.review", "--input", "verdict=sign"]);
    assert!(ok, "{out}{err}");
    wait_sees("alice", &namespaces, std::slice::from_ref(&legals));
    // So does the group's, when carol decides it: nothing is left for either.
    let (ok, out, err) = hitl("carol", &["-n", two.name(), "reject", "for-legal.review"]);
    assert!(ok, "{out}{err}");
    wait_sees("carol", &namespaces, &[]);
    wait_sees("alice", &namespaces, &[]);
}

#[test]
fn an_escalated_gate_reaches_the_escalation_approver_only_once_escalated() {
    let ns = test_namespace("inbox-esc");
    let _op = Operator::start(ns.name());
    let notify =
        "        notify:\n          channels: []\n          escalation: {afterSeconds: 8, approvers: {users: [bob]}}\n";
    apply(ns.name(), &gate_workflow("slow", "Approve the budget?", "{users: [alice]}", notify));
    wait_pending(ns.name(), "slow.review");
    let gate = format!("{}/slow.review", ns.name());
    let namespaces = [ns.name()];

    // Before: the operator has put the gate in alice's inbox, and not in bob's, while the gate
    // has not escalated (read last, so both inboxes were read before any escalation).
    wait_sees("alice", &namespaces, std::slice::from_ref(&gate));
    let bobs = inbox_name(&user("bob"));
    let holds_gate = |who: &str| {
        let out = kubectl(who, &["get", "inbox", &bobs, "-o", "jsonpath={.status.items[*].name}"]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().any(|n| n == "slow.review")
    };
    let (bob_before, _) = pending_for("bob", &namespaces);
    let admin_view_before = holds_gate("admin");
    let escalated = approval(ns.name(), "slow.review")["status"]["escalatedAt"].clone();
    assert!(escalated.is_null(), "escalated too soon for this test to see the before: {escalated}");
    assert!(bob_before.is_empty() && !admin_view_before, "bob's inbox holds the gate before it escalated");

    // After: the operator records the escalation, and the gate is in bob's inbox, marked.
    wait_for("the gate to escalate", WAIT, || {
        let a = approval(ns.name(), "slow.review");
        (!a["status"]["escalatedAt"].is_null()).then_some(())
    });
    let out = wait_sees("bob", &namespaces, std::slice::from_ref(&gate));
    assert!(out.contains("(escalated)") && out.contains("Approve the budget?"), "{out}");
    let out = wait_sees("alice", &namespaces, std::slice::from_ref(&gate));
    assert!(!out.contains("(escalated)"), "alice is listed on the gate itself:\n{out}");
    // bob may decide it now, and then it is in nobody's inbox.
    let (ok, out, err) = hitl("bob", &["-n", ns.name(), "approve", "slow.review", "--input", "verdict=sign"]);
    assert!(ok, "{out}{err}");
    wait_sees("bob", &namespaces, &[]);
    wait_sees("alice", &namespaces, &[]);
}

#[test]
fn entries_left_by_an_operator_whose_namespace_went_are_dropped_by_another() {
    let gone = test_namespace("inbox-gone");
    let someone = unique_name("yve");
    let theirs = inbox_name(&user(&someone));
    let mut op = Operator::start(gone.name());
    apply(gone.name(), &gate_workflow("left", "Left behind?", &format!("{{users: [{someone}]}}"), ""));
    wait_pending(gone.name(), "left.review");
    let items = |name: &str| {
        let out = kubectl("admin", &["get", "inbox", name, "-o", "jsonpath={.status.items[*].name}"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    wait_for("the gate in its approver's inbox", WAIT, || items(&theirs).filter(|i| i.contains("left.review")));
    // The operator stops first, then its namespace goes: nobody removed the entry.
    op.kill();
    kubectl_ok("admin", &["delete", "namespace", gone.name(), "--wait=true", "--timeout=60s"]);
    assert!(items(&theirs).is_some_and(|i| i.contains("left.review")), "the entry should have been left behind");
    // Another namespace's operator, on its first pass, drops it: the inbox, now empty, goes.
    let other = test_namespace("inbox-other");
    let _op = Operator::start(other.name());
    wait_for("the inbox of the deleted namespace's approver to go", WAIT, || items(&theirs).is_none().then_some(()));
}

/// `kubectl replace --subresource=status` of `manifest` as `who`, which must fail; its stderr.
/// kubectl reads the inbox's resourceVersion before it writes, and the operator may write the inbox
/// in between: a Conflict is that race, not the refusal, so the attempt is made again.
fn refused_replace(who: &str, manifest: &str) -> String {
    wait_for(&format!("{who}'s replace to be refused other than by a write race"), WAIT, || {
        let out = kubectl_stdin(who, &["replace", "--subresource=status", "-f", "-"], manifest);
        assert!(!out.status.success(), "{who} replaced the inbox's status");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        (!said.contains("(Conflict)")).then_some(said)
    })
}

/// Issue 26.11: bob, who may create Workflows in the namespace, floods erin's inbox with five
/// forEach gates of 100 items each, all due within the hour. Her real gate (due tomorrow) must
/// stay in her inbox, and `kubectl hitl pending` and the inbox object must say what was left out.
#[test]
fn a_flood_of_gates_does_not_push_a_real_one_out_of_an_inbox() {
    let ns = test_namespace("inbox-flood");
    let ns = ns.name();
    // Her own approver: alice's inbox is shared with the other tests of this binary, which run at
    // the same time, and their gates would count against the 500 this test fills.
    let erin = unique_name("erin");
    common::add_user(&erin);
    let op = Operator::start(ns);
    common::apply_ok(
        "admin",
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: workflow-author, namespace: {ns}}}\n\
             rules: [{{apiGroups: [hitl.dev], resources: [workflows], verbs: [create, get]}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: bob-workflow-author, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: workflow-author}}\n\
             subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}}]\n"
        ),
    );
    apply(
        ns,
        &gate_workflow(
            "contract",
            "Sign the ACME contract?",
            &format!("{{users: [{erin}]}}"),
            "        timeoutSeconds: 86400\n",
        ),
    );
    let items = (1..=100).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let floods: Vec<String> = (1..=5)
        .map(|n| {
            format!(
                "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: flood-{n}}}\nspec:\n  steps:\n    - name: review\n\
                 \x20     forEach: {{list: '[{items}]', parallelism: 100}}\n\
                 \x20     suspend: {{message: 'Approve item {{{{ item }}}}', approvers: {{users: [{erin}]}}, timeoutSeconds: 3600}}\n"
            )
        })
        .collect();
    wait_for("bob's RoleBinding to take effect", Duration::from_secs(20), || {
        let out = kubectl_stdin("bob", &["-n", ns, "apply", "-f", "-"], &floods.join("---\n"));
        out.status.success().then_some(()).or_else(|| {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("is forbidden"), "{err}");
            None
        })
    });
    let hers = inbox_name(&user(&erin));
    let mut held = 0;
    let full = common::try_wait_for(Duration::from_secs(240), || {
        let out = kubectl("admin", &["get", "approvalinbox", &hers, "-o", "json"]);
        let inbox: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        held = inbox["status"]["items"].as_array().map_or(0, Vec::len);
        (inbox["status"]["truncated"] == 1).then(|| inbox["status"].clone())
    });
    let status = full.unwrap_or_else(|| {
        // What the operator got to, so a slow run says where it was slow.
        let phases = kubectl("admin", &["-n", ns, "get", "approvals", "-o", "jsonpath={.items[*].status.phase}"]);
        let phases = String::from_utf8_lossy(&phases.stdout).into_owned();
        let pending = phases.split_whitespace().filter(|p| *p == "Pending").count();
        let counted = op.metrics().lines().filter(|l| l.starts_with("hitl_")).collect::<Vec<_>>().join("\n");
        panic!("{erin}'s inbox holds {held} items after 240 s; {pending} of 501 Approvals are Pending\n{counted}")
    });
    let names: Vec<&str> = status["items"].as_array().unwrap().iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names.len(), 500);
    assert!(names.contains(&"contract.review"), "the real gate was pushed out of {erin}'s inbox");
    assert_eq!(status["leftOut"].as_array().map(Vec::len), Some(1), "{}", status["leftOut"]);
    assert_eq!(status["leftOut"][0]["gates"], 1);

    let (ok, out, err) = hitl(&erin, &["pending"]);
    assert!(ok, "{out}{err}");
    assert!(out.lines().any(|l| l.contains("contract.review") && l.contains("Sign the ACME contract?")), "{out}");
    let flood = status["leftOut"][0]["workflow"].as_str().unwrap();
    let note = "1 more gates wait for you and are not listed: your inbox holds at most 500";
    assert!(out.contains(note) && out.contains(&format!("Left out: 1 of {ns}/{flood}.")), "{out}");
    let (ok, json, err) = hitl(&erin, &["pending", "-o", "name"]);
    assert!(ok && err.contains(&format!("Warning: {note}")), "{json}{err}");
}
