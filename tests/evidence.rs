//! Evidence on a gate (issue 22): the approver reads the logs and outputs of what they approve,
//! with a right granted for that gate only, while it waits. On the real node the plan is a real
//! process's log; on kwok alone the grant and the refusals are tested the same way.

mod common;
mod harness;

use std::time::Duration;

use common::{kubectl, test_namespace, wait_for};
use harness::{Operator, apply, events, patch_approval, pods, wait_pending, wait_phase};
use serde_json::Value;

const RUN: Duration = Duration::from_secs(120);

/// `kubectl hitl ARGS` as `user`: (succeeded, stdout, stderr).
fn hitl(user: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(common::plugin_bin())
        .arg("--kubeconfig")
        .arg(common::kubeconfig(user))
        .args(args)
        .output()
        .expect("run kubectl-hitl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Whether `user` may read the log of `pod`, as the API server answers it.
fn may_read_log(user: &str, ns: &str, pod: &str) -> bool {
    let out = kubectl(user, &["-n", ns, "auth", "can-i", "get", &format!("pods/{pod}"), "--subresource=log"]);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// A plan that prints a multi-kilobyte plan (with a line that looks like markup and one that looks
/// like a secret), a gate that shows it to alice, then the apply. podGC would delete the plan's Pod
/// the moment it succeeds; the gate keeps it.
fn plan_and_apply(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: hitl.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  podGC: {{strategy: OnPodSuccess}}
{node}  steps:
    - name: plan
      container:
        image: busybox:1.36
        command: [sh, -c]
        args:
          - |
            for i in $(seq 1 300); do echo "+ aws_iam_role.r$i will be created (policy AdministratorAccess)"; done
            echo '<script>document.title="owned"</script>'
            echo 'password=hunter2'
            echo '{{"adds": 300}}' > /dev/termination-log
    - name: approve-apply
      suspend:
        message: "Apply this plan to production?"
        approvers: {{users: [alice]}}
        evidence: [{{step: plan, logs: true}}]
    - name: apply
      container: {{image: busybox:1.36, args: [echo, applied]}}
"#
    )
}

const REAL_NODE: &str = "  podTemplate:\n    nodeSelector: {hitl.dev/node: real}\n";

fn plan_pod(ns: &str, wf: &str) -> String {
    pods(ns, wf)
        .into_iter()
        .find(|p| p["metadata"]["labels"]["hitl.dev/step"] == "plan")
        .and_then(|p| p["metadata"]["name"].as_str().map(String::from))
        .expect("the plan's Pod")
}

#[test]
fn the_approver_reads_the_plan_they_approve_and_nobody_else_does() {
    common::require_real_node();
    let ns = test_namespace("evidence");
    let n = ns.name();
    let _op = Operator::start(n);
    apply(n, &plan_and_apply("tf", REAL_NODE));
    let gate = wait_pending(n, "tf.approve-apply");
    let pod = plan_pod(n, "tf");
    assert_eq!(gate["spec"]["evidencePods"][0]["pod"], pod.as_str(), "{gate}");
    assert_eq!(gate["spec"]["evidencePods"][0]["outputs"], r#"{"adds":"300"}"#, "{gate}");
    let digest = gate["spec"]["evidenceDigest"].as_str().unwrap().to_string();

    // alice holds no rights but the gate's: she reads the plan, all of it, streamed.
    let (ok, plan, err) = hitl("alice", &["logs", "tf.approve-apply", "-n", n]);
    assert!(ok, "{err}");
    assert!(plan.contains("+ aws_iam_role.r1 will be created") && plan.contains("aws_iam_role.r300 will"), "{plan}");
    assert_eq!(plan.lines().count(), 302, "every line");
    let (ok, last, _) = hitl("alice", &["logs", "tf.approve-apply", "-n", n, "--tail", "1"]);
    assert!(ok && last.trim() == "password=hunter2", "{last}");
    let (ok, described, _) = hitl("alice", &["describe", "tf.approve-apply", "-n", n]);
    assert!(ok && described.contains(&format!("Evidence:       {digest}")), "{described}");
    assert!(described.contains("Read the logs with: kubectl hitl logs tf.approve-apply"), "{described}");
    // Exactly that log: not the Pod itself, not other Pods.
    assert!(may_read_log("alice", n, &pod));
    let get_pod = kubectl("alice", &["-n", n, "get", "pod", &pod]);
    assert!(!get_pod.status.success(), "the grant is the log, not the Pod");

    // bob is not listed and holds nothing: refused, in the API server's words.
    let (ok, _, refused) = hitl("bob", &["logs", "tf.approve-apply", "-n", n]);
    assert!(!ok && refused.contains("forbidden"), "{refused}");
    let raw = kubectl("bob", &["get", "--raw", &format!("/api/v1/namespaces/{n}/pods/{pod}/log")]);
    assert!(!raw.status.success() && String::from_utf8_lossy(&raw.stderr).contains("forbidden"));

    // The Pod outlived podGC for the gate; the decision carries the digest and takes the log back.
    patch_approval("alice", n, "tf.approve-apply", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_phase(n, "tf", "Succeeded", RUN);
    wait_for("alice's right to the log to go", RUN, || (!may_read_log("alice", n, &pod)).then_some(()));
    wait_for("the plan's Pod to go by podGC", RUN, || {
        pods(n, "tf").iter().all(|p| p["metadata"]["name"] != pod.as_str()).then_some(())
    });
    let decided = events(n, "tf.approve-apply");
    assert!(decided.iter().any(|e| e.starts_with("Approved:") && e.contains(&digest)), "{decided:?}");
}

#[test]
fn a_fan_out_shows_each_items_log() {
    common::require_real_node();
    let ns = test_namespace("evidence-fan");
    let n = ns.name();
    let _op = Operator::start(n);
    apply(
        n,
        &format!(
            r#"apiVersion: hitl.dev/v1alpha1
kind: Workflow
metadata: {{name: fan}}
spec:
{REAL_NODE}  params: [{{name: regions, value: '["eu","us","ap"]'}}]
  steps:
    - name: scan
      forEach: {{list: params.regions}}
      container: {{image: busybox:1.36, args: [echo, "scanned {{{{ item }}}}"]}}
    - name: review
      dependsOn: [scan]
      suspend: {{approvers: {{users: [alice]}}, evidence: [{{step: scan, logs: true}}]}}
"#
        ),
    );
    let gate = wait_pending(n, "fan.review");
    assert_eq!(gate["spec"]["evidencePods"].as_array().map(Vec::len), Some(3), "{gate}");
    let (ok, out, err) = hitl("alice", &["logs", "fan.review", "-n", n]);
    assert!(ok, "{err}");
    for (i, region) in ["eu", "us", "ap"].iter().enumerate() {
        assert!(out.contains(&format!("==> step scan, item {i} (")), "{out}");
        assert!(out.contains(&format!("scanned {region}\n")), "{out}");
    }
    let (ok, _, err) = hitl("alice", &["logs", "fan.review", "-n", n, "--step", "plan"]);
    assert!(!ok && err.contains("shows no log of step \"plan\"; it shows: scan"), "{err}");
}

/// On kwok alone: who gets the log right, for which Pods, and when it goes.
#[test]
fn the_log_right_is_the_gates_approvers_for_its_evidence_pods_while_it_waits() {
    let ns = test_namespace("evidence-grant");
    let n = ns.name();
    let _op = Operator::start(n);
    apply(n, &plan_and_apply("tf", ""));
    let gate: Value = wait_pending(n, "tf.approve-apply");
    let pod = plan_pod(n, "tf");
    assert_eq!(gate["spec"]["evidencePods"][0]["pod"], pod.as_str());
    assert!(may_read_log("alice", n, &pod), "alice is listed");
    assert!(!may_read_log("bob", n, &pod), "bob is not");
    assert!(!may_read_log("alice", n, "some-other-pod"), "only the evidence Pods");
    // The gate's evidence is fixed when it opens: nobody rewrites which Pods it shows.
    let rewrite = kubectl(
        "admin",
        &[
            "-n",
            n,
            "patch",
            "approval",
            "tf.approve-apply",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/evidencePods/0/pod","value":"another"}]"#,
        ],
    );
    assert!(!rewrite.status.success(), "evidencePods is immutable");
    patch_approval("alice", n, "tf.approve-apply", r#"{"spec":{"decision":"Reject"}}"#).unwrap();
    wait_for("the log right to go with the decision", RUN, || (!may_read_log("alice", n, &pod)).then_some(()));
    // The plan succeeded, so OnPodSuccess takes its Pod, now that no gate shows it.
    wait_for("the plan's Pod to go by podGC once the gate is decided", RUN, || {
        pods(n, "tf").iter().all(|p| p["metadata"]["name"] != pod.as_str()).then_some(())
    });
}

#[test]
fn a_gate_may_show_only_an_earlier_step() {
    let ns = test_namespace("evidence-admission");
    let n = ns.name();
    harness::ensure_crds();
    let later = plan_and_apply("bad", "").replace("evidence: [{step: plan, logs: true}]", "evidence: [{step: apply}]");
    let refused = harness::apply_refused(n, &later);
    assert!(refused.contains("spec.steps[1].suspend.evidence: Invalid value: \"apply\""), "{refused}");
    let own =
        plan_and_apply("own", "").replace("evidence: [{step: plan, logs: true}]", "evidence: [{step: approve-apply}]");
    let refused = harness::apply_refused(n, &own);
    assert!(refused.contains("never itself"), "{refused}");
}
