//! Steps in real containers: the local cluster's real node (`real-node-0`, labelled
//! `hitl.dev/node=real`; containerd, a kubelet and kube-proxy that `hack/cluster up` starts where
//! the host can run them). A Workflow reaches it with `podTemplate.nodeSelector`; everything here
//! is what a process did: exit codes, termination messages, logs, kills, memory limits, volumes.
//! Without the real node these tests fail and say why: none passes on the simulated node.

mod common;
mod harness;

use std::time::Duration;

use common::{kubectl, kubectl_ok, test_namespace, wait_for};
use harness::{Operator, apply, patch_approval, pods, step, try_step, wait_pending, wait_phase, workflow};
use serde_json::Value;

const REAL: &str = common::REAL_NODE;
const RUN: Duration = Duration::from_secs(120);

fn real_node() {
    common::require_real_node();
}

/// A Workflow whose step Pods go to the real node: `steps` is the YAML list under `spec.steps`
/// (indented by four), `extra` more of `spec` (indented by two).
fn real_workflow(name: &str, extra: &str, steps: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  podTemplate:\n    \
         nodeSelector: {{hitl.dev/node: real}}\n{extra}  steps:\n{steps}"
    )
}

/// The one Pod of a step (its first attempt unless `attempt` says).
fn step_pod(ns: &str, wf: &str, step_name: &str, attempt: &str) -> Value {
    pods(ns, wf)
        .into_iter()
        .find(|p| {
            p["metadata"]["labels"]["hitl.dev/step"] == step_name
                && p["metadata"]["labels"]["hitl.dev/attempt"] == attempt
        })
        .unwrap_or_else(|| panic!("no Pod for {wf}/{step_name} attempt {attempt}"))
}

fn logs(ns: &str, pod: &str) -> String {
    kubectl_ok("admin", &["-n", ns, "logs", pod])
}

#[test]
fn contract_review_runs_in_real_containers() {
    real_node();
    let ns = test_namespace("real-review");
    let _op = Operator::start(ns.name());
    // The README's sample as written, sent to the real node.
    let sample = std::fs::read_to_string(common::repo_root().join("config/samples/contract-review.yaml")).unwrap();
    let sample = sample.replacen("spec:\n", "spec:\n  podTemplate:\n    nodeSelector: {hitl.dev/node: real}\n", 1);
    apply(ns.name(), &sample);

    let wf = wait_phase(ns.name(), "contract-review", "Waiting", RUN);
    // The scan's outputs are what its process wrote to /dev/termination-log (kwok's annotation
    // says the same, but no kwok runs this Pod).
    assert_eq!(step(&wf, "scan")["outputs"]["flagged"], "3", "{}", wf["status"]);
    let scan = step_pod(ns.name(), "contract-review", "scan", "1");
    assert_eq!(scan["spec"]["nodeName"], REAL);
    let container = &scan["status"]["containerStatuses"][0];
    assert_eq!(container["state"]["terminated"]["exitCode"], 0, "{container}");
    assert_eq!(container["state"]["terminated"]["message"].as_str().map(str::trim), Some("{\"flagged\": 3}"));
    let scan_log = logs(ns.name(), scan["metadata"]["name"].as_str().unwrap());
    // As UID 65532 (the secure default), on a read-only root filesystem (the sample's scan asks).
    assert!(scan_log.contains("scanning s3://contracts/acme.pdf as uid 65532"), "{scan_log}");
    assert!(scan_log.contains("read-only root: yes"), "{scan_log}");

    let gate = "contract-review.review";
    wait_pending(ns.name(), gate);
    patch_approval(
        "alice",
        ns.name(),
        gate,
        r#"{"spec":{"decision":"Approve","input":{"verdict":"sign","notes":"clause 7 ok"}}}"#,
    )
    .expect("alice approves");
    let wf = wait_phase(ns.name(), "contract-review", "Succeeded", RUN);
    assert_eq!(step(&wf, "redact")["phase"], "Skipped");
    let sign = step_pod(ns.name(), "contract-review", "sign", "1");
    let sign_log = logs(ns.name(), sign["metadata"]["name"].as_str().unwrap());
    assert_eq!(sign_log.trim(), "signing s3://contracts/acme.pdf for alice: clause 7 ok");
}

#[test]
fn exit_code_three_is_retried_only_when_the_policy_accepts_it() {
    real_node();
    let ns = test_namespace("real-exit");
    let _op = Operator::start(ns.name());
    let attempt = |code: u32| {
        format!(
            "    - name: flaky\n      retries: 2\n      retryPolicy: {{when: \"attempt.exitCode == 3\"}}\n      container:\n        \
             image: busybox:1.36\n        command: [sh, -c, 'echo attempt; exit {code}']\n"
        )
    };
    apply(ns.name(), &real_workflow("three", "", &attempt(3)));
    apply(ns.name(), &real_workflow("four", "", &attempt(4)));

    let three = wait_phase(ns.name(), "three", "Failed", RUN);
    let flaky = step(&three, "flaky");
    assert_eq!(flaky["attempts"], 3, "retried twice, then spent: {flaky}");
    assert_eq!(flaky["reason"], "Error", "{flaky}");
    assert!(flaky["message"].as_str().unwrap().contains("exit code 3"), "{flaky}");
    for n in ["1", "2", "3"] {
        let pod = step_pod(ns.name(), "three", "flaky", n);
        assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3);
        assert_eq!(logs(ns.name(), pod["metadata"]["name"].as_str().unwrap()).trim(), "attempt");
    }

    let four = wait_phase(ns.name(), "four", "Failed", RUN);
    let flaky = step(&four, "flaky");
    assert_eq!(flaky["attempts"], 1, "exit code 4 is not retried: {flaky}");
    assert!(flaky["message"].as_str().unwrap().contains("exit code 4"), "{flaky}");
}

#[test]
fn a_timeout_stops_the_process() {
    real_node();
    let ns = test_namespace("real-timeout");
    let _op = Operator::start(ns.name());
    let steps = "    - name: slow\n      timeoutSeconds: 2\n      container:\n        image: busybox:1.36\n        \
                 command: [sh, -c, 'echo started; sleep 60']\n";
    apply(ns.name(), &real_workflow("slow", "", steps));
    let running = wait_for("the slow step's container to run", RUN, || {
        let wf = workflow(ns.name(), "slow");
        let pod = try_step(&wf, "slow")?["podName"].as_str()?.to_string();
        let state = kubectl_ok(
            "admin",
            &["-n", ns.name(), "get", "pod", &pod, "-o", "jsonpath={.status.containerStatuses[0].state.running}"],
        );
        (!state.is_empty()).then_some(pod)
    });
    let wf = wait_phase(ns.name(), "slow", "Failed", RUN);
    let slow = step(&wf, "slow");
    assert_eq!(slow["reason"], "Timeout", "{slow}");
    // The process is stopped: its Pod is deleted and goes (after the kubelet killed the
    // container), long before the 60 s sleep could end.
    wait_for("the timed-out Pod to be gone", Duration::from_secs(45), || {
        let out = kubectl("admin", &["-n", ns.name(), "get", "pod", &running]);
        String::from_utf8_lossy(&out.stderr).contains("NotFound").then_some(())
    });
}

#[test]
fn a_memory_limit_ends_the_step_as_oomkilled() {
    real_node();
    let ns = test_namespace("real-oom");
    let _op = Operator::start(ns.name());
    // `tail` keeps the last lines of an input that has no line end: it grows until the limit.
    let steps = "    - name: hungry\n      container:\n        image: busybox:1.36\n        command: [sh, -c, 'tail /dev/zero']\n        \
                 resources: {limits: {memory: 32Mi}}\n";
    apply(ns.name(), &real_workflow("hungry", "", steps));
    let wf = wait_phase(ns.name(), "hungry", "Failed", RUN);
    let hungry = step(&wf, "hungry");
    assert_eq!(hungry["reason"], "OOMKilled", "{hungry}");
    assert!(hungry["message"].as_str().unwrap().contains("exit code 137"), "{hungry}");
}

#[test]
fn an_image_the_node_cannot_get_fails_the_step() {
    real_node();
    let ns = test_namespace("real-image");
    let _op = Operator::start(ns.name());
    // No registry is reachable: the kubelet's pull fails, it backs off, and the step fails.
    let steps = "    - name: missing\n      retries: 1\n      container:\n        image: registry.invalid/hitl/nothing:1\n        \
                 args: [run]\n";
    apply(ns.name(), &real_workflow("missing", "", steps));
    let wf = wait_phase(ns.name(), "missing", "Failed", Duration::from_secs(180));
    let missing = step(&wf, "missing");
    assert_eq!(missing["reason"], "ImagePullBackOff", "{missing}");
    assert_eq!(missing["attempts"], 2, "a failed pull is an attempt like any: {missing}");
    let message = missing["message"].as_str().unwrap();
    assert!(message.contains("registry.invalid/hitl/nothing:1"), "names the image: {message}");
    // The Pods that could never start are deleted, not left pending.
    wait_for("the stuck Pods to be gone", Duration::from_secs(45), || {
        pods(ns.name(), "missing").is_empty().then_some(())
    });
}

#[test]
fn a_workspace_is_shared_by_two_steps() {
    real_node();
    let ns = test_namespace("real-workspace");
    let _op = Operator::start(ns.name());
    let extra = "  workspace:\n    volumeClaimTemplate:\n      storageClassName: real-local\n      \
                 resources: {requests: {storage: 10Mi}}\n";
    let steps = "    - name: write\n      container:\n        image: busybox:1.36\n        workspace: true\n        \
                 command: [sh, -c, 'echo \"written by $(id -u)\" > /workspace/note']\n    \
                 - name: read\n      container:\n        image: busybox:1.36\n        workspace: true\n        \
                 command: [sh, -c, 'cat /workspace/note > /dev/termination-log']\n";
    apply(ns.name(), &real_workflow("shared", extra, steps));
    let wf = wait_phase(ns.name(), "shared", "Succeeded", RUN);
    assert_eq!(step(&wf, "read")["outputs"]["result"], "written by 65532", "{}", wf["status"]);
    let claim = wf["status"]["workspaceClaimName"].as_str().unwrap();
    let volume = kubectl_ok("admin", &["-n", ns.name(), "get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}"]);
    assert!(volume.starts_with("real-local-"), "bound to a real directory on the node: {volume}");
}

/// The kubelet answers only whom the API server authorizes: no anonymous access, and a user of
/// the cluster's CA (alice's client certificate) is refused logs and exec unless RBAC gives her
/// `nodes/proxy`. Admin (system:masters) is let in, so the refusals are the kubelet's judgement.
#[test]
fn the_kubelet_refuses_who_the_api_server_would_refuse() {
    real_node();
    let dir = std::env::temp_dir().join(common::unique_name("kubelet-attack"));
    std::fs::create_dir_all(&dir).unwrap();
    // The user's client certificate and key, as PEM files, from their kubeconfig.
    let credentials = |user: &str| {
        let (cert, key) = (dir.join(format!("{user}.crt")), dir.join(format!("{user}.key")));
        for (file, field) in [(&cert, "client-certificate-data"), (&key, "client-key-data")] {
            let script = format!(
                "{} --kubeconfig {} config view --raw -o 'jsonpath={{.users[0].user.{field}}}' | base64 -d > {}",
                common::kubectl_bin().display(),
                common::kubeconfig(user).display(),
                file.display()
            );
            assert!(std::process::Command::new("sh").args(["-c", &script]).status().unwrap().success(), "{script}");
        }
        (cert, key)
    };
    let ask = |creds: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://10.89.0.1:10250/pods"]);
        if let Some((cert, key)) = creds {
            curl.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        String::from_utf8_lossy(&curl.output().expect("run curl").stdout).into_owned()
    };
    assert_eq!(ask(None), "401", "anonymous");
    assert_eq!(ask(Some(&credentials("alice"))), "403", "alice, who may not proxy to nodes");
    assert_eq!(ask(Some(&credentials("admin"))), "200", "admin, whom RBAC allows");
    let _ = std::fs::remove_dir_all(&dir);
}
