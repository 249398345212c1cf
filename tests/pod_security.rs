//! Creating a Workflow is no back door to Pods: as a namespace editor, every way of asking the
//! operator for a more powerful Pod is refused at `kubectl apply`, unless the namespace's owner
//! allowed it (with the cluster admin's opt-in); and the Pods the operator creates carry the
//! secure defaults whatever the step left out.

mod common;
mod harness;

use std::time::Duration;

use common::{kubectl, kubectl_ok, kubectl_stdin, repo_root, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// The chart's roles for people (aggregated into view/edit/admin), and bob as an editor and
/// alice as the owner (admin) of `ns`.
fn people(ns: &str) {
    let roles = repo_root().join("config/rbac/user_roles.yaml");
    kubectl_ok("admin", &["apply", "--server-side", "--force-conflicts", "-f", roles.to_str().unwrap()]);
    kubectl_ok("admin", &["-n", ns, "create", "rolebinding", "bob-edits", "--clusterrole=edit", "--user=bob"]);
    kubectl_ok("admin", &["-n", ns, "create", "rolebinding", "alice-owns", "--clusterrole=admin", "--user=alice"]);
    wait_for("the aggregated roles to reach edit and admin", WAIT, || {
        let bob = kubectl("bob", &["-n", ns, "auth", "can-i", "create", "workflows.hitl.dev"]);
        let alice = kubectl("alice", &["-n", ns, "auth", "can-i", "create", "workflowpolicies.hitl.dev"]);
        (bob.status.success() && alice.status.success()).then_some(())
    });
}

fn workflow_yaml(spec_extra: &str, container_extra: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: w}}\nspec:\n{spec_extra}  steps:\n    - name: s\n      container:\n        image: x\n{container_extra}"
    )
}

fn apply_as(user: &str, ns: &str, yaml: &str) -> Result<(), String> {
    let out = kubectl_stdin(user, &["-n", ns, "apply", "-f", "-"], yaml);
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// (what the step asks for, in the spec or the container, and the refusal it gets)
const INSECURE: &[(&str, &str, &str)] = &[
    ("", "        securityContext: {privileged: true}\n", "step s: container.securityContext asks for privileged mode"),
    (
        "",
        "        securityContext: {procMount: Unmasked}\n",
        "step s: container.securityContext asks for privileged mode",
    ),
    (
        "",
        "        securityContext: {allowPrivilegeEscalation: true}\n",
        "allowPrivilegeEscalation: true is not allowed here",
    ),
    ("", "        securityContext: {runAsUser: 0}\n", "step s: container.securityContext asks to run as root"),
    ("", "        securityContext: {runAsNonRoot: false}\n", "step s: container.securityContext asks to run as root"),
    (
        "",
        "        securityContext: {seccompProfile: {type: Unconfined}}\n",
        "an Unconfined seccomp or AppArmor profile",
    ),
    (
        "",
        "        securityContext: {appArmorProfile: {type: Unconfined}}\n",
        "an Unconfined seccomp or AppArmor profile",
    ),
    (
        "",
        "        securityContext: {capabilities: {add: [NET_BIND_SERVICE, SYS_ADMIN]}}\n",
        "step s (SYS_ADMIN): container.securityContext.capabilities.add may add only NET_BIND_SERVICE",
    ),
    (
        "  podTemplate: {tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]}\n",
        "",
        "spec.podTemplate: tolerating control-plane taints",
    ),
    (
        "  podTemplate: {tolerations: [{operator: Exists}]}\n",
        "",
        "spec.podTemplate: tolerating control-plane taints (or every taint)",
    ),
    (
        "  podTemplate: {nodeSelector: {node-role.kubernetes.io/control-plane: ''}}\n",
        "",
        "selecting control-plane nodes",
    ),
    ("  serviceAccountName: builder\n", "", "spec.serviceAccountName: builder is not allowed here; allowed: default"),
    (
        "",
        "        env: [{name: T, valueFrom: {secretKeyRef: {name: tok, key: t}}}]\n",
        "step s: container env may read only the Secrets this namespace allows (none)",
    ),
    (
        "",
        "        envFrom: [{secretRef: {name: tok}}]\n",
        "step s: container env may read only the Secrets this namespace allows (none)",
    ),
];

#[test]
fn an_editor_cannot_ask_for_a_more_powerful_pod() {
    ensure_crds();
    let ns = test_namespace("podsec");
    people(&ns.name);
    for (spec, container, refusal) in INSECURE {
        let err = apply_as("bob", &ns.name, &workflow_yaml(spec, container)).expect_err(refusal);
        assert!(err.contains(refusal), "want {refusal:?}, got {err}");
        assert!(err.contains("a namespace owner can allow it"), "{err}");
    }
    // Host namespaces are no field of a Workflow at all.
    let err = apply_as("bob", &ns.name, &workflow_yaml("  podTemplate: {hostNetwork: true}\n", "")).unwrap_err();
    assert!(err.contains("unknown field \"spec.podTemplate.hostNetwork\""), "{err}");
    // The same Workflow without the extra asks is fine.
    apply_as("bob", &ns.name, &workflow_yaml("", "")).unwrap();
}

#[test]
fn the_namespace_owner_relaxes_once_the_cluster_admin_opts_the_namespace_in() {
    ensure_crds();
    let ns = test_namespace("relax");
    people(&ns.name);
    let policy = "apiVersion: hitl.dev/v1alpha1\nkind: WorkflowPolicy\nmetadata: {name: default}\nspec:\n  allowPrivileged: true\n  allowedCapabilities: [SYS_ADMIN]\n  serviceAccountNames: [builder]\n  secretNames: [tok]\n";
    // An editor may not relax their own limits.
    let err = apply_as("bob", &ns.name, policy).unwrap_err();
    assert!(err.contains("cannot create resource \"workflowpolicies\""), "{err}");
    apply_as("alice", &ns.name, policy).unwrap();
    let asks = workflow_yaml(
        "  serviceAccountName: builder\n",
        "        securityContext: {privileged: true, capabilities: {add: [SYS_ADMIN]}}\n        env: [{name: T, valueFrom: {secretKeyRef: {name: tok, key: t}}}]\n",
    );
    // The owner's policy counts only where a cluster admin opted the namespace in.
    let err = apply_as("bob", &ns.name, &asks).unwrap_err();
    assert!(err.contains("hitl-workflow-security'"), "{err}");
    kubectl_ok("admin", &["label", "namespace", &ns.name, "hitl.dev/workflow-policy=custom"]);
    wait_for("the opted-in namespace to take the owner's policy", WAIT, || apply_as("bob", &ns.name, &asks).ok());
    // What the owner did not allow stays refused.
    let err = apply_as("bob", &ns.name, &workflow_yaml("", "        securityContext: {runAsUser: 0}\n")).unwrap_err();
    assert!(err.contains("hitl-workflow-security-custom") && err.contains("asks to run as root"), "{err}");
}

#[test]
fn step_pods_carry_the_secure_defaults_merged_with_what_the_step_set() {
    let ns = test_namespace("defaults");
    let _op = Operator::start(&ns.name);
    let yaml = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {name: plain, container: {image: x, securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true}}}\n    - {name: api, container: {image: x, automountServiceAccountToken: true}}\n";
    apply(&ns.name, yaml);
    // Both Pods were admitted under Pod Security `restricted` (the namespace enforces it).
    wait_phase(&ns.name, "w", "Succeeded", WAIT);
    let pods = pods(&ns.name, "w");
    let of = |step: &str| pods.iter().find(|p| p["metadata"]["labels"]["hitl.dev/step"] == step).unwrap().clone();
    let plain = of("plain");
    let sc = &plain["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["runAsUser"], 1000, "{sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(plain["spec"]["automountServiceAccountToken"], false);
    assert!(plain["spec"]["volumes"].is_null(), "no token volume: {}", plain["spec"]["volumes"]);
    assert_eq!(plain["spec"]["containers"][0]["terminationMessagePolicy"], "File");
    let api = of("api");
    assert_eq!(api["spec"]["automountServiceAccountToken"], true);
    let volumes = api["spec"]["volumes"].to_string();
    assert!(volumes.contains("serviceAccountToken"), "the ServiceAccount admission plugin mounts a token: {volumes}");
    assert_eq!(api["spec"]["containers"][0]["securityContext"]["runAsUser"], 65532);
}
