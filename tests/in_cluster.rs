//! The operator as users run it: from its own image (`hack/build-image`, the chart's default image
//! name and tag), installed with `helm install` of the chart, two replicas on the local cluster's
//! real node, reaching the API server through the `kubernetes` Service with its ServiceAccount.

mod common;
mod harness;

use std::process::Command;
use std::time::Duration;

use common::{apply_ok, kubectl, kubectl_ok, repo_root, test_namespace, unique_name, wait_for};
use harness::{patch_approval, pods, wait_pending, wait_phase};
use serde_json::{Value, json};

const CHART: &str = "charts/hitl-operator";
/// The namespace whose ServiceAccounts the cluster's admission policies take for the operator.
const OPERATOR_NS: &str = "hitl-system";

fn hack(script: &str, args: &[&str]) -> String {
    let out = Command::new(repo_root().join("hack").join(script)).args(args).output().expect("run hack/");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(out.status.success(), "hack/{script} {args:?}: {}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn helm(args: &[&str]) -> String {
    let helm = hack("asset-path", &["helm"]);
    let mut cmd = Command::new(helm.trim());
    cmd.arg("--kubeconfig").arg(common::kubeconfig("admin")).args(args).current_dir(repo_root());
    let out = cmd.output().expect("run helm");
    assert!(out.status.success(), "helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Uninstalled when dropped, also when the test fails: its ClusterRoles must not outlive it.
struct Release(String);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| helm(&["uninstall", &self.0, "--namespace", OPERATOR_NS, "--wait"]));
        // The Lease is the replicas' own object, not the chart's.
        let _ = kubectl("admin", &["-n", OPERATOR_NS, "delete", "lease", &format!("{}-hitl-operator", self.0)]);
    }
}

/// The operator's Pods of a release that are not being deleted.
fn replicas(release: &str) -> Vec<Value> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let out = kubectl_ok("admin", &["-n", OPERATOR_NS, "get", "pods", "-l", &selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The Pod whose replica holds the release's Lease (its identity is `<pod>_<n>`); empty while
/// nobody does, or before the Lease exists.
fn lease_holder(fullname: &str) -> String {
    let out = kubectl("admin", &["-n", OPERATOR_NS, "get", "lease", fullname, "-o", "jsonpath={.spec.holderIdentity}"]);
    let identity = String::from_utf8_lossy(&out.stdout).into_owned();
    identity.rsplit_once('_').map_or(identity.clone(), |(pod, _)| pod.to_string())
}

/// Two Ready replicas on the real node, and the Lease held by one of them: its name.
fn wait_for_two_replicas_and_a_leader(release: &str) -> String {
    let fullname = format!("{release}-hitl-operator");
    let mut seen = String::new();
    let found = common::try_wait_for(Duration::from_secs(180), || {
        let pods = replicas(release);
        let names: Vec<_> = pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
        let on_real_node = pods.iter().all(|p| p["spec"]["nodeName"] == "real-node-0");
        let holder = lease_holder(&fullname);
        seen =
            format!("Pods {:#}\nLease holder {holder:?}", json!(pods.iter().map(|p| &p["status"]).collect::<Vec<_>>()));
        (pods.len() == 2 && on_real_node && pods.iter().all(ready) && names.contains(&holder)).then_some(holder)
    });
    found.unwrap_or_else(|| panic!("no two Ready operator replicas on the real node and a leader after 180 s:\n{seen}"))
}

#[test]
fn the_chart_runs_the_operator_image_on_the_real_node() {
    // The image the chart names by default, from the debug build (make test-integration builds
    // it first; by hand, the first run does), loaded into the real node's containerd.
    let image = repo_root().join(format!("target/image/hitl-operator-{}-dev.oci.tar", env!("CARGO_PKG_VERSION")));
    if !image.exists() {
        hack("build-image", &["--profile", "dev"]);
    }
    hack("cluster", &["load-image", image.to_str().unwrap()]);
    harness::ensure_crds();
    let work = test_namespace("incluster");
    let name = unique_name("rn");
    let fullname = format!("{name}-hitl-operator");
    helm(&[
        "install",
        &name,
        CHART,
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        "--set",
        &format!("watchNamespace={},rbac.userRoles.namePrefix={name}", work.name()),
        "--set-json",
        r#"nodeSelector={"hitl.dev/node":"real"}"#,
    ]);
    let _release = Release(name.clone());
    let leader = wait_for_two_replicas_and_a_leader(&name);

    // alice, with the namespace's `edit` role as a cluster hands it out, runs a gated Workflow.
    apply_ok(
        "admin",
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "alice-edit", "namespace": work.name()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]})
        .to_string(),
    );
    let manifest = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: change}\nspec:\n  podTemplate:\n    \
                    nodeSelector: {hitl.dev/node: real}\n  steps:\n    - name: plan\n      container:\n        image: busybox:1.36\n        \
                    command: [sh, -c, 'echo planned']\n    - name: approve\n      suspend: {approvers: {users: [carol]}}\n    \
                    - name: apply\n      container:\n        image: busybox:1.36\n        command: [sh, -c, 'echo applied']\n";
    wait_for("alice's edit role to include Workflows", Duration::from_secs(30), || {
        let out = kubectl("alice", &["-n", work.name(), "auth", "can-i", "create", "workflows.hitl.dev"]);
        out.status.success().then_some(())
    });
    let out = common::kubectl_stdin("alice", &["-n", work.name(), "apply", "-f", "-"], manifest);
    assert!(out.status.success(), "alice applies: {}", String::from_utf8_lossy(&out.stderr));
    wait_phase(work.name(), "change", "Waiting", Duration::from_secs(120));
    wait_pending(work.name(), "change.approve");

    // The leader goes while the run waits; the standby takes the Lease and finishes the run.
    kubectl_ok("admin", &["-n", OPERATOR_NS, "delete", "pod", &leader, "--wait=false"]);
    let successor = wait_for("another replica to hold the Lease", Duration::from_secs(60), || {
        let holder = lease_holder(&fullname);
        (!holder.is_empty() && holder != leader).then_some(holder)
    });
    assert!(replicas(&name).iter().any(|p| p["metadata"]["name"] == successor.as_str()));
    patch_approval("carol", work.name(), "change.approve", r#"{"spec":{"decision":"Approve"}}"#)
        .expect("carol approves");
    let wf = wait_phase(work.name(), "change", "Succeeded", Duration::from_secs(120));
    let step_pods = pods(work.name(), "change");
    let mut per_step: Vec<_> =
        step_pods.iter().map(|p| p["metadata"]["labels"]["hitl.dev/step"].as_str().unwrap()).collect();
    per_step.sort();
    assert_eq!(per_step, ["apply", "plan"], "one Pod per container step: {}", wf["status"]);
    for pod in &step_pods {
        assert_eq!(pod["spec"]["nodeName"], "real-node-0");
    }
    let applied = kubectl_ok("admin", &["-n", work.name(), "logs", "-l", "hitl.dev/step=apply"]);
    assert_eq!(applied.trim(), "applied");
    // A new replica replaced the deleted one: two again, Ready.
    wait_for_two_replicas_and_a_leader(&name);
}
