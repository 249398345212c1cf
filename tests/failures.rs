//! Failures that show: what stops a run is on the Workflow (a `Stalled` condition, an Event, or a
//! failed step with its reason) within seconds, never only in the operator's log.

mod common;
mod harness;

use std::time::Duration;

use common::fixtures::{self, StepBuilder, container};
use common::{kubectl, kubectl_ok, kubectl_stdin, repo_root, test_namespace, unique_name, wait_for};
use harness::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn condition<'a>(wf: &'a Value, type_: &str) -> Option<&'a Value> {
    wf["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// A ServiceAccount of the operator's namespace with the chart's rights less `verb` on `resource`,
/// and a kubeconfig for it where `hack/cluster kubeconfig NAME` finds it. Returns NAME.
fn operator_without(resource: &str, verb: &str) -> String {
    operator_user(); // the chart's ClusterRole exists
    let name = unique_name("limited");
    let mut role: Value =
        serde_json::from_str(&kubectl_ok("admin", &["get", "clusterrole", "hitl-operator", "-o", "json"])).unwrap();
    for rule in role["rules"].as_array_mut().unwrap() {
        if rule["resources"] == json!([resource]) {
            let kept: Vec<Value> = rule["verbs"].as_array().unwrap().iter().filter(|v| *v != verb).cloned().collect();
            rule["verbs"] = json!(kept);
        }
    }
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                      "metadata": {"name": name, "labels": {"hitl.dev/test": "true"}}, "rules": role["rules"]});
    assert!(kubectl_stdin("admin", &["apply", "-f", "-"], &role.to_string()).status.success());
    kubectl_ok("admin", &["-n", "hitl-system", "create", "serviceaccount", &name]);
    kubectl_ok(
        "admin",
        &[
            "create",
            "clusterrolebinding",
            &name,
            &format!("--clusterrole={name}"),
            &format!("--serviceaccount=hitl-system:{name}"),
        ],
    );
    let token = kubectl_ok("admin", &["-n", "hitl-system", "create", "token", &name, "--duration=1h"]);
    let admin = common::kubeconfig("admin");
    let mut kc: Value = serde_yaml::from_str(&std::fs::read_to_string(&admin).unwrap()).unwrap();
    kc["users"] = json!([{"name": name, "user": {"token": token.trim()}}]);
    kc["contexts"][0]["context"]["user"] = json!(name);
    let path = admin.parent().unwrap().join(format!("kubeconfig-{name}"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    name
}

#[test]
fn a_missing_rbac_right_shows_on_the_workflow_and_clears_once_granted() {
    let ns = test_namespace("norbac");
    let user = operator_without("pods", "create");
    let _op = Operator::start_as(&user, &ns.name, "", &["--leader-elect=false"]);
    apply(&ns.name, &fixtures::workflow("w").step(container("a", "x")).yaml());
    let stalled = wait_for("the Workflow to show it is stalled", WAIT, || {
        let wf = workflow(&ns.name, "w");
        condition(&wf, "Stalled").filter(|c| c["status"] == "True").cloned()
    });
    assert_eq!(stalled["reason"], "Forbidden", "{stalled}");
    assert!(stalled["message"].as_str().unwrap().contains(r#"cannot create resource "pods""#), "{stalled}");
    assert!(events(&ns.name, "w").iter().any(|e| e.starts_with("Forbidden: ")), "{:?}", events(&ns.name, "w"));
    let wf = workflow(&ns.name, "w");
    assert!(!stalled["message"].as_str().unwrap().contains("Status {"), "a debug dump: {stalled}");
    let failed = wf["status"]["steps"].as_array().into_iter().flatten().any(|s| s["phase"] == "Failed");
    assert!(!failed, "a missing right must not fail the step: {}", wf["status"]);

    // Granted, the run goes on by itself and the condition clears.
    kubectl_ok(
        "admin",
        &[
            "patch",
            "clusterrole",
            &user,
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["pods"],"verbs":["create"]}}]"#,
        ],
    );
    let wf = wait_phase(&ns.name, "w", "Succeeded", Duration::from_secs(120));
    assert_eq!(condition(&wf, "Stalled").unwrap()["status"], "False");
    let _ = kubectl("admin", &["delete", "clusterrole,clusterrolebinding", &user]);
    let _ = kubectl("admin", &["-n", "hitl-system", "delete", "serviceaccount", &user]);
}

#[test]
fn an_operator_that_cannot_read_workflows_is_not_ready_and_says_why() {
    let ns = test_namespace("notready");
    let user = operator_without("workflows", "list");
    let op = Operator::start_as(&user, &ns.name, "", &["--leader-elect=false"]);
    let answer = wait_for("/readyz to answer", WAIT, || {
        let r = std::panic::catch_unwind(|| op.http_get("/readyz")).ok()?;
        r.contains("a right is missing").then_some(r)
    });
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#"cannot list resource "workflows""#), "{answer}");
    let log = std::fs::read_to_string(&op.log).unwrap();
    assert!(log.contains("not ready; checking again in 5s"), "the log does not say it");
    kubectl_ok(
        "admin",
        &[
            "patch",
            "clusterrole",
            &user,
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":["hitl.dev"],"resources":["workflows"],"verbs":["list"]}}]"#,
        ],
    );
    wait_for("/readyz to turn green once the right is granted and the watches synced", WAIT, || {
        op.http_get("/readyz").starts_with("HTTP/1.1 200").then_some(())
    });
    let _ = kubectl("admin", &["delete", "clusterrole,clusterrolebinding", &user]);
    let _ = kubectl("admin", &["-n", "hitl-system", "delete", "serviceaccount", &user]);
}

#[test]
fn a_pod_refused_by_admission_fails_its_step_and_says_why() {
    let ns = test_namespace("limits");
    let _op = Operator::start(&ns.name);
    let limits = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "small"},
                        "spec": {"limits": [{"type": "Container", "max": {"cpu": "100m"}}]}});
    assert!(kubectl_stdin("admin", &["-n", &ns.name, "apply", "-f", "-"], &limits.to_string()).status.success());
    apply(&ns.name, &fixtures::workflow("w").step(container("big", "x").cpu_limit("2")).yaml());
    let wf = wait_phase(&ns.name, "w", "Failed", WAIT);
    let big = step(&wf, "big");
    assert_eq!(big["reason"], "PodCreateFailed");
    assert!(big["message"].as_str().unwrap().contains("maximum cpu usage per Container is 100m"), "{big}");
    assert!(
        events(&ns.name, "w").iter().any(|e| e.starts_with("PodCreateFailed: step big")),
        "{:?}",
        events(&ns.name, "w")
    );
}

/// A run whose status would outgrow what etcd stores (a 1.4 MiB spec, then outputs) fails with
/// reason StatusTooLarge instead of retrying forever.
#[test]
fn a_status_too_large_for_etcd_fails_the_run_with_the_reason() {
    let ns = test_namespace("toolarge");
    let _op = Operator::start(&ns.name);
    let output = format!("{{\"blob\": \"{}\"}}", "o".repeat(4000));
    // 1.4 MiB of spec, in env values the schema allows (at most 16 KiB each).
    let big_env = |s: StepBuilder| (0..88).fold(s, |s, i| s.env(&format!("BIG{i}"), &"v".repeat(16_000)));
    let steps = (0..24).map(|i| {
        let s = container(&format!("s{i}"), "x").sim("message", &output);
        if i == 0 { big_env(s) } else { s }
    });
    let wf = fixtures::workflow("w").steps(steps);
    let file = repo_root().join("target/test-logs").join(format!("{}-big.yaml", ns.name));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, wf.yaml()).unwrap();
    kubectl_ok("admin", &["-n", &ns.name, "create", "-f", file.to_str().unwrap()]);
    let wf = wait_phase(&ns.name, "w", "Failed", Duration::from_secs(120));
    assert_eq!(wf["status"]["reason"], "StatusTooLarge", "{}", wf["status"]["message"]);
    assert!(events(&ns.name, "w").iter().any(|e| e.starts_with("StatusTooLarge: ")));
    let done = wf["status"]["steps"].as_array().unwrap().iter().filter(|s| s["phase"] == "Succeeded").count();
    println!("status too large after {done} of 24 steps");
}
