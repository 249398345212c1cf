//! What real step Pods need, on a real API server: a run-wide workspace claim that two steps share
//! (created before the first Pod, owned by the Workflow, deleted with it), declared volumes
//! mounted where a step asks, and spec errors in mounts refused with the field and the name.
//!
//! The local cluster has no storage provisioner. An unbound claim keeps a Pod from being
//! scheduled ("pod has unbound immediate PersistentVolumeClaims"), so each test that runs Pods
//! offers the claim a PersistentVolume of its own (a `hostPath` PV, written by admin, under a
//! storage class named after the test namespace) and the controller manager's
//! persistentvolume-binder binds the two, as on a cluster with static provisioning.

mod common;
mod harness;

use std::time::Duration;

use common::fixtures::{self, container};
use common::{TestNamespace, kubectl, kubectl_ok, kubectl_stdin, test_namespace, wait_for};
use harness::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A PersistentVolume only claims of storage class `class` can bind; deleted when dropped.
struct TestVolume(String);

impl TestVolume {
    fn new(class: &str) -> Self {
        let pv = serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": class, "labels": {"hitl.dev/test": "true"}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": class, "hostPath": {"path": format!("/tmp/{class}")}},
        });
        let out = kubectl_stdin("admin", &["apply", "-f", "-"], &pv.to_string());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        TestVolume(class.to_string())
    }
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        let _ = kubectl("admin", &["delete", "pv", &self.0, "--wait=false", "--ignore-not-found"]);
    }
}

fn pod_of<'a>(pods: &'a [Value], step: &str) -> &'a Value {
    pods.iter()
        .find(|p| p["metadata"]["labels"]["hitl.dev/step"] == step)
        .unwrap_or_else(|| panic!("no Pod for step {step}"))
}

/// The claim a Pod's volume `volume` names.
fn claim_of(pod: &Value, volume: &str) -> String {
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    let v = volumes.iter().find(|v| v["name"] == volume).unwrap_or_else(|| panic!("no volume {volume}: {volumes:?}"));
    v["persistentVolumeClaim"]["claimName"].as_str().expect("a claim").to_string()
}

fn mount_path(pod: &Value, volume: &str) -> Option<String> {
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].as_array()?;
    mounts.iter().find(|m| m["name"] == volume).map(|m| m["mountPath"].as_str().unwrap().to_string())
}

#[test]
fn two_steps_share_the_workspace_which_goes_with_the_run() {
    let ns: TestNamespace = test_namespace("workspace");
    let n = ns.name.as_str();
    let _pv = TestVolume::new(n);
    let _op = Operator::start(n);
    kubectl_ok("admin", &["-n", n, "create", "configmap", "settings", "--from-literal=level=debug"]);
    let yaml = fixtures::workflow("build")
        .workspace(["ReadWriteOnce"], "1Gi", n)
        .config_map_volume("settings", "settings")
        .step(container("write", "busybox:1.36").workspace().working_dir("/workspace").command([
            "sh",
            "-c",
            "echo hello > /workspace/greeting",
        ]))
        .step(container("read", "busybox:1.36").workspace().mount_read_only("settings", "/etc/settings").command([
            "sh",
            "-c",
            "cat /workspace/greeting",
        ]))
        .step(container("plain", "busybox:1.36"))
        .yaml();
    apply(n, &yaml);
    let wf = wait_phase(n, "build", "Succeeded", WAIT);
    let claim_name = wf["status"]["workspaceClaimName"].as_str().expect("the claim is named in the status").to_string();
    assert!(claim_name.starts_with("build-workspace-"), "{claim_name}");

    // The claim: from the template, owned by the Workflow, bound to the test's volume.
    let pvc = get_json(n, "pvc", &claim_name).expect("the workspace claim exists");
    let owner = &pvc["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["uid"].as_str()), (Some("Workflow"), wf["metadata"]["uid"].as_str()));
    assert_eq!(owner["controller"], true);
    assert_eq!(pvc["spec"]["storageClassName"], n);
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(pvc["status"]["phase"], "Bound");
    // Created before the first Pod.
    let pods = pods(n, "build");
    let (write, read, plain) = (pod_of(&pods, "write"), pod_of(&pods, "read"), pod_of(&pods, "plain"));
    let created = |o: &Value| time(&o["metadata"]["creationTimestamp"]);
    assert!(created(&pvc) <= created(write), "claim {} after Pod {}", created(&pvc), created(write));

    // Both steps that asked mount that claim, the second only after the first succeeded.
    assert_eq!(claim_of(write, "workspace"), claim_name);
    assert_eq!(claim_of(read, "workspace"), claim_name);
    assert_eq!(mount_path(write, "workspace").as_deref(), Some("/workspace"));
    assert_eq!(mount_path(read, "workspace").as_deref(), Some("/workspace"));
    assert_eq!(write["spec"]["containers"][0]["workingDir"], "/workspace");
    assert!(time(&step(&wf, "read")["startedAt"]) >= time(&step(&wf, "write")["finishedAt"]));
    // The ConfigMap where the second step asked for it, and nowhere else.
    assert_eq!(mount_path(read, "settings").as_deref(), Some("/etc/settings"));
    let settings = read["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "settings").unwrap();
    assert_eq!(settings["configMap"]["name"], "settings");
    assert!(mount_path(write, "settings").is_none());
    assert!(plain["spec"]["volumes"].is_null(), "a step that mounts nothing: {}", plain["spec"]["volumes"]);

    // Deleting the Workflow deletes the claim (garbage collector, then the claim's protection
    // finalizer lets go once no Pod uses it).
    kubectl_ok("admin", &["-n", n, "delete", "workflow", "build", "--wait=false"]);
    wait_for("the workspace claim to go with its Workflow", WAIT, || {
        get_json(n, "pvc", &claim_name).is_none().then_some(())
    });
}

#[test]
fn mounts_of_undeclared_volumes_are_refused_naming_the_field_and_the_name() {
    ensure_crds();
    let ns = test_namespace("mounts");
    let n = ns.name.as_str();
    let err = apply_refused(
        n,
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  volumes: [{name: cfg, configMap: {name: c}}]\n  steps:\n    - {name: a, container: {image: x}}\n    - {name: b, container: {image: x, volumeMounts: [{name: cfg, mountPath: /c}, {name: secrets, mountPath: /s}]}}\n",
    );
    assert!(
        err.contains(
            "spec.steps[1].container.volumeMounts[1].name: Invalid value: \"secrets\": step b mounts a volume that spec.volumes does not declare; declared: cfg"
        ),
        "{err}"
    );
    let err = apply_refused(
        n,
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {name: a, container: {image: x, workspace: true}}\n",
    );
    assert!(
        err.contains("spec.steps[0].container.workspace: Invalid value: true: step a mounts the workspace, but spec.workspace is not set"),
        "{err}"
    );
    let err = apply_refused(
        n,
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  workspace: {volumeClaimTemplate: {resources: {requests: {storage: 1Gi}}}}\n  volumes: [{name: workspace, emptyDir: {}}]\n  steps:\n    - {name: a, container: {image: x}}\n",
    );
    assert!(err.contains("spec.volumes: the name workspace is taken by spec.workspace"), "{err}");
    let err = apply_refused(
        n,
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {name: wait, sleep: 1s, affinity: {}}\n",
    );
    assert!(err.contains("step wait: affinity applies only to container steps, and this is a sleep step"), "{err}");
    // With a workspace, `workspace` is a volume a mount may name (here with a subPath).
    let ok = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  workspace: {volumeClaimTemplate: {resources: {requests: {storage: 1Gi}}}}\n  steps:\n    - {name: a, container: {image: x, volumeMounts: [{name: workspace, mountPath: /src, subPath: src}]}}\n";
    let out = kubectl_stdin("admin", &["-n", n, "create", "--dry-run=server", "-f", "-"], ok);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The README's "Step Pods" example is a Workflow the API server accepts as written, in a
/// namespace whose owner allows its priority class (admin may get every Secret and claim).
#[test]
fn the_readmes_step_pods_example_is_accepted() {
    ensure_crds();
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let section = readme.split("## Step Pods").nth(1).expect("the Step Pods section");
    let example = section.split("```yaml\n").nth(1).expect("a yaml block").split("\n```").next().unwrap();
    let ns = test_namespace("readme-steppods");
    let n = ns.name.as_str();
    let example = example.replace("namespace: ci", &format!("namespace: {n}"));
    let dry_run = || kubectl_stdin("admin", &["create", "--dry-run=server", "-f", "-"], &example);
    let refused = String::from_utf8_lossy(&dry_run().stderr).into_owned();
    assert!(refused.contains("priorityClassName: batch-low is not allowed here"), "{refused}");
    kubectl_ok("admin", &["label", "namespace", n, "hitl.dev/workflow-policy=custom"]);
    let policy = format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: WorkflowPolicy\nmetadata: {{name: default, namespace: {n}}}\nspec: {{priorityClassNames: [batch-low]}}\n"
    );
    assert!(kubectl_stdin("admin", &["apply", "-f", "-"], &policy).status.success());
    wait_for("the README's example to be accepted", WAIT, || dry_run().status.success().then_some(()));
}
