//! Creating a Workflow is no back door to Pods. As `dev`, who may only create, get and list
//! Workflows in a namespace (a Role, as a namespace editor would have), every way of asking the
//! operator for a more powerful Pod is refused at `kubectl apply` with a message naming the step,
//! the field and the key that would allow it; the same Workflow is accepted once a cluster admin
//! labels the namespace and its owner (`admin` role) writes `WorkflowPolicy/default` with that key;
//! `dev`, even as an editor, cannot write that policy. The Pods the operator creates carry the
//! secure defaults whatever the step left out, and no API token unless the step asks.

mod common;
mod harness;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{TestNamespace, kubectl, kubectl_ok, kubectl_stdin, repo_root, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);
const DEV: &str = "dev";
/// The namespace owner in these tests (bound to the built-in `admin` role).
const OWNER: &str = "alice";
const OPT_IN: &str = "hitl.dev/workflow-policy=custom";

/// The user `dev` (no group), minted once per test binary.
fn dev_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new(repo_root().join("hack/cluster")).args(["add-user", DEV]).output().unwrap();
        assert!(out.status.success(), "hack/cluster add-user: {}", String::from_utf8_lossy(&out.stderr));
    });
}

/// A test namespace where `dev` may create/get/list Workflows (nothing else), `OWNER` is the
/// namespace admin, and the chart's aggregated roles for people are installed.
fn namespace(prefix: &str) -> TestNamespace {
    ensure_crds();
    dev_user();
    let roles = repo_root().join("config/rbac/user_roles.yaml");
    kubectl_ok("admin", &["apply", "--server-side", "--force-conflicts", "-f", roles.to_str().unwrap()]);
    let ns = test_namespace(prefix);
    let n = ns.name.as_str();
    let verbs = "--verb=create,get,list";
    kubectl_ok("admin", &["-n", n, "create", "role", "workflow-author", verbs, "--resource=workflows.hitl.dev"]);
    kubectl_ok("admin", &["-n", n, "create", "rolebinding", "dev-authors", "--role=workflow-author", "--user=dev"]);
    kubectl_ok("admin", &["-n", n, "create", "rolebinding", "owner", "--clusterrole=admin", "--user", OWNER]);
    wait_for("the owner's aggregated rights", WAIT, || {
        let ok = |user, what| kubectl(user, &["-n", n, "auth", "can-i", "create", what]).status.success();
        (ok(DEV, "workflows.hitl.dev") && ok(OWNER, "workflowpolicies.hitl.dev")).then_some(())
    });
    ns
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

/// The cluster admin's key: the namespace's own WorkflowPolicy counts from now on.
fn opt_in(ns: &str) {
    kubectl_ok("admin", &["label", "namespace", ns, OPT_IN]);
}

/// The namespace owner's key: `WorkflowPolicy/default` with `spec`.
fn write_policy(ns: &str, spec: &str) {
    let policy =
        format!("apiVersion: hitl.dev/v1alpha1\nkind: WorkflowPolicy\nmetadata: {{name: default}}\nspec: {spec}\n");
    apply_as(OWNER, ns, &policy).unwrap();
}

/// `dev`'s Workflow is refused with `refusal` (the API server's words, and how to relax); after
/// the two keys, with exactly `relax` in the policy, the same Workflow is accepted.
fn refused_then_relaxed(spec_extra: &str, container_extra: &str, refusal: &str, relax: &str) {
    let ns = namespace("podsec");
    let wf = workflow_yaml(spec_extra, container_extra);
    let err = apply_as(DEV, &ns.name, &wf).expect_err(refusal);
    assert!(err.contains("ValidatingAdmissionPolicy 'hitl-workflow-security'"), "{err}");
    assert!(err.contains(refusal), "want {refusal:?}, got {err}");
    let key = relax.split(':').next().unwrap().trim_matches(['{', ' ']);
    let how = format!(
        "a cluster admin labels the namespace hitl.dev/workflow-policy and the namespace owner sets WorkflowPolicy/default spec.{key}"
    );
    assert!(err.contains(&how), "want {how:?}, got {err}");
    opt_in(&ns.name);
    write_policy(&ns.name, relax);
    wait_for("the owner's policy to allow the Workflow", WAIT, || apply_as(DEV, &ns.name, &wf).ok());
}

/// One test per way of asking for more: (test, spec lines, container lines, refusal, relaxation).
macro_rules! refused {
    ($($name:ident: $spec:expr, $container:expr => $refusal:expr, $relax:expr;)*) => {$(
        #[test]
        fn $name() {
            refused_then_relaxed($spec, $container, $refusal, $relax);
        }
    )*};
}

refused! {
    privileged: "", "        securityContext: {privileged: true}\n"
        => "step s: container.securityContext.privileged: true is not allowed here", "{allowPrivileged: true}";
    host_process: "", "        securityContext: {windowsOptions: {hostProcess: true}}\n"
        => "step s: container.securityContext.windowsOptions.hostProcess: true is not allowed here",
        "{allowPrivileged: true}";
    proc_mount: "", "        securityContext: {procMount: Unmasked}\n"
        => "step s: container.securityContext.procMount: Unmasked is not allowed here; allowed: Default",
        "{allowPrivileged: true}";
    selinux_type: "", "        securityContext: {seLinuxOptions: {type: spc_t}}\n"
        => "step s: container.securityContext.seLinuxOptions is not allowed here; allowed: level, and type container_t",
        "{allowPrivileged: true}";
    selinux_user: "", "        securityContext: {seLinuxOptions: {user: system_u}}\n"
        => "step s: container.securityContext.seLinuxOptions is not allowed here", "{allowPrivileged: true}";
    privilege_escalation: "", "        securityContext: {allowPrivilegeEscalation: true}\n"
        => "step s: container.securityContext.allowPrivilegeEscalation: true is not allowed here",
        "{allowPrivilegeEscalation: true}";
    run_as_uid_0: "", "        securityContext: {runAsUser: 0}\n"
        => "step s: container.securityContext.runAsUser: 0 is not allowed here (root)", "{allowRunAsRoot: true}";
    run_as_non_root_false: "", "        securityContext: {runAsNonRoot: false}\n"
        => "step s: container.securityContext.runAsNonRoot: false is not allowed here (root)", "{allowRunAsRoot: true}";
    seccomp_unconfined: "", "        securityContext: {seccompProfile: {type: Unconfined}}\n"
        => "step s: container.securityContext.seccompProfile.type: Unconfined is not allowed here; allowed: RuntimeDefault",
        "{allowUnconfinedProfiles: true}";
    apparmor_unconfined: "", "        securityContext: {appArmorProfile: {type: Unconfined}}\n"
        => "step s: container.securityContext.appArmorProfile.type: Unconfined is not allowed here",
        "{allowUnconfinedProfiles: true}";
    apparmor_annotation: "  podTemplate: {metadata: {annotations: {container.apparmor.security.beta.kubernetes.io/main: unconfined}}}\n", ""
        => "spec.podTemplate.metadata.annotations[container.apparmor.security.beta.kubernetes.io/*]: unconfined is not allowed here",
        "{allowUnconfinedProfiles: true}";
    capabilities: "", "        securityContext: {capabilities: {add: [NET_BIND_SERVICE, SYS_ADMIN]}}\n"
        => "step s: container.securityContext.capabilities.add: SYS_ADMIN is not allowed here; allowed: NET_BIND_SERVICE",
        "{allowedCapabilities: [SYS_ADMIN]}";
    control_plane_toleration: "  podTemplate: {tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]}\n", ""
        => "spec.podTemplate.tolerations: node-role.kubernetes.io/control-plane is not allowed here (control-plane nodes)",
        "{allowControlPlaneTolerations: true}";
    master_toleration: "  podTemplate: {tolerations: [{key: node-role.kubernetes.io/master, operator: Equal, value: '', effect: NoSchedule}]}\n", ""
        => "spec.podTemplate.tolerations: node-role.kubernetes.io/master is not allowed here",
        "{allowControlPlaneTolerations: true}";
    every_taint_toleration: "  podTemplate: {tolerations: [{operator: Exists}]}\n", ""
        => "spec.podTemplate.tolerations: operator Exists without a key (every taint) is not allowed here",
        "{allowControlPlaneTolerations: true}";
    control_plane_node_selector: "  podTemplate: {nodeSelector: {node-role.kubernetes.io/control-plane: ''}}\n", ""
        => "spec.podTemplate.nodeSelector: node-role.kubernetes.io/control-plane is not allowed here",
        "{allowControlPlaneTolerations: true}";
    service_account: "  serviceAccountName: builder\n", ""
        => "spec.serviceAccountName: builder is not allowed here; allowed: default", "{serviceAccountNames: [builder]}";
    secret_env: "", "        env: [{name: T, valueFrom: {secretKeyRef: {name: tok, key: t}}}]\n"
        => "step s: container.env T reads Secret tok, which is not allowed here; allowed: none", "{secretNames: [tok]}";
    secret_env_from: "", "        envFrom: [{configMapRef: {name: cm}}, {secretRef: {name: tok}}]\n"
        => "step s: container.envFrom reads Secret tok, which is not allowed here; allowed: none", "{secretNames: [tok]}";
    secret_volume: "  volumes: [{name: db, secret: {secretName: tok}}]\n", "        volumeMounts: [{name: db, mountPath: /db}]\n"
        => "spec.volumes db mounts Secret tok, which is not allowed here; allowed: none, besides Secrets you may get yourself (kubectl auth can-i get secret/tok)",
        "{secretNames: [tok]}";
    image_pull_secret: "  podTemplate: {imagePullSecrets: [{name: regcred}]}\n", ""
        => "spec.podTemplate.imagePullSecrets pulls images with Secret regcred, which is not allowed here; allowed: none",
        "{secretNames: [regcred]}";
    priority_class: "  podTemplate: {priorityClassName: system-cluster-critical}\n", ""
        => "spec.podTemplate.priorityClassName: system-cluster-critical is not allowed here; allowed: none",
        "{priorityClassNames: [system-cluster-critical]}";
    control_plane_affinity: "  podTemplate: {affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]}]}}}}\n", ""
        => "spec.podTemplate.affinity.nodeAffinity: a required term on a control-plane node label is not allowed here",
        "{allowControlPlaneTolerations: true}";
}

/// A namespace where `bob` and `alice` may each create, get and list Workflows and nothing else,
/// except what `grant` then gives alice alone.
fn authors_namespace(prefix: &str) -> TestNamespace {
    ensure_crds();
    let ns = test_namespace(prefix);
    let n = ns.name.as_str();
    kubectl_ok(
        "admin",
        &["-n", n, "create", "role", "workflow-author", "--verb=create,get,list", "--resource=workflows.hitl.dev"],
    );
    for user in ["bob", "alice"] {
        kubectl_ok(
            "admin",
            &["-n", n, "create", "rolebinding", &format!("{user}-authors"), "--role=workflow-author", "--user", user],
        );
    }
    ns
}

/// Gives alice alone `verb` on `resource` (named `name`, or every one when empty) in `ns`.
fn grant_alice(ns: &str, verb: &str, resource: &str, name: &str) {
    let role = format!("alice-{verb}-{resource}");
    let mut args = vec!["-n", ns, "create", "role", &role, "--verb", verb, "--resource", resource];
    let names = format!("--resource-name={name}");
    if !name.is_empty() {
        args.push(&names);
    }
    kubectl_ok("admin", &args);
    kubectl_ok("admin", &["-n", ns, "create", "rolebinding", &role, "--role", &role, "--user=alice"]);
    let what = if name.is_empty() { resource.to_string() } else { format!("{resource}/{name}") };
    wait_for("alice's grant", WAIT, || {
        kubectl("alice", &["-n", ns, "auth", "can-i", verb, &what]).status.success().then_some(())
    });
}

/// Who may mount a Secret through a Workflow: only someone who may read it anyway. bob may create
/// Workflows but not read Secret `db-password`, so the operator (which could) must not read it for
/// him; alice may get exactly that Secret, so she may mount it, and no other.
#[test]
fn a_secret_is_mounted_only_for_whoever_may_read_it() {
    let ns = authors_namespace("secretvol");
    let n = ns.name.as_str();
    kubectl_ok("admin", &["-n", n, "create", "secret", "generic", "db-password", "--from-literal=password=s3cret"]);
    grant_alice(n, "get", "secrets", "db-password");
    let mounts = |secret: &str| {
        workflow_yaml(
            &format!("  volumes: [{{name: db, secret: {{secretName: {secret}}}}}]\n"),
            "        volumeMounts: [{name: db, mountPath: /db, readOnly: true}]\n",
        )
    };
    let err = apply_as("bob", n, &mounts("db-password")).unwrap_err();
    assert!(err.contains("ValidatingAdmissionPolicy 'hitl-workflow-security'"), "{err}");
    assert!(err.contains("spec.volumes db mounts Secret db-password, which is not allowed here"), "{err}");
    assert!(err.contains("kubectl auth can-i get secret/db-password"), "{err}");
    // Nor through the env, nor as an image pull secret.
    let env =
        workflow_yaml("", "        env: [{name: P, valueFrom: {secretKeyRef: {name: db-password, key: password}}}]\n");
    assert!(apply_as("bob", n, &env).unwrap_err().contains("container.env P reads Secret db-password"));
    let pull = workflow_yaml("  podTemplate: {imagePullSecrets: [{name: db-password}]}\n", "");
    assert!(apply_as("bob", n, &pull).unwrap_err().contains("imagePullSecrets pulls images with Secret db-password"));
    // alice may read it herself: mounting it gives her nothing new.
    apply_as("alice", n, &mounts("db-password")).unwrap();
    assert_eq!(
        kubectl_ok("admin", &["-n", n, "get", "workflow", "w", "-o", "jsonpath={.spec.volumes[0].secret.secretName}"]),
        "db-password"
    );
    // Her grant names one Secret; another stays out of reach.
    let other = mounts("api-token").replace("name: w}", "name: w2}");
    let err = apply_as("alice", n, &other).unwrap_err();
    assert!(err.contains("spec.volumes db mounts Secret api-token, which is not allowed here"), "{err}");
    // Asked together, the message names the one she may not read, not the first one.
    let both = workflow_yaml(
        "  volumes: [{name: db, secret: {secretName: db-password}}, {name: tok, secret: {secretName: api-token}}]\n",
        "        volumeMounts: [{name: db, mountPath: /db}, {name: tok, mountPath: /tok}]\n",
    )
    .replace("name: w}", "name: w3}");
    let err = apply_as("alice", n, &both).unwrap_err();
    assert!(err.contains("spec.volumes tok mounts Secret api-token, which is not allowed here"), "{err}");
    assert!(!err.contains("Secret db-password"), "{err}");
}

/// The same for a PersistentVolumeClaim (its files are the claim's owner's), and for the workspace
/// claim the operator would create: only for someone who may get, or create, claims themselves.
#[test]
fn claims_are_mounted_and_created_only_for_whoever_may_themselves() {
    let ns = authors_namespace("claimvol");
    let n = ns.name.as_str();
    let mounts = workflow_yaml(
        "  volumes: [{name: data, persistentVolumeClaim: {claimName: shared}}]\n",
        "        volumeMounts: [{name: data, mountPath: /data}]\n",
    );
    let err = apply_as("bob", n, &mounts).unwrap_err();
    assert!(err.contains("spec.volumes data mounts PersistentVolumeClaim shared, which is not allowed here"), "{err}");
    assert!(err.contains("kubectl auth can-i get persistentvolumeclaim/shared"), "{err}");
    let workspace = workflow_yaml(
        "  workspace: {volumeClaimTemplate: {resources: {requests: {storage: 1Gi}}}}\n",
        "        workspace: true\n",
    )
    .replace("name: w}", "name: w2}");
    let err = apply_as("bob", n, &workspace).unwrap_err();
    assert!(err.contains("spec.workspace: the operator would create a PersistentVolumeClaim"), "{err}");
    grant_alice(n, "get", "persistentvolumeclaims", "shared");
    apply_as("alice", n, &mounts).unwrap();
    let err = apply_as("alice", n, &workspace).unwrap_err();
    assert!(err.contains("may not create PersistentVolumeClaims in this namespace"), "get is not create: {err}");
    grant_alice(n, "create", "persistentvolumeclaims", "");
    apply_as("alice", n, &workspace).unwrap();
}

/// A volume kind other than the four cannot be written down: kubectl's strict field validation
/// refuses `hostPath` by name, and sent without it (the API server then drops unknown fields),
/// the volume left has no kind and is refused by the CRD's rule.
#[test]
fn host_path_volumes_are_refused_whichever_way_they_are_sent() {
    let ns = namespace("hostpath");
    let n = ns.name.as_str();
    let wf = workflow_yaml(
        "  volumes: [{name: root, hostPath: {path: /}}]\n",
        "        volumeMounts: [{name: root, mountPath: /host}]\n",
    );
    let err = apply_as(DEV, n, &wf).unwrap_err();
    assert!(err.contains("strict decoding error: unknown field \"spec.volumes[0].hostPath\""), "{err}");
    let out = kubectl_stdin(DEV, &["-n", n, "create", "--validate=false", "-f", "-"], &wf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted without its volume kind");
    assert!(
        err.contains("volume root: set exactly one of configMap, secret, emptyDir or persistentVolumeClaim"),
        "{err}"
    );
    // Nor can a mount reach the node through subPath.
    let climb = workflow_yaml(
        "  volumes: [{name: tmp, emptyDir: {}}]\n",
        "        volumeMounts: [{name: tmp, mountPath: /t, subPath: ../../etc}]\n",
    );
    let err = apply_as(DEV, n, &climb).unwrap_err();
    assert!(err.contains("spec.steps[0].container.volumeMounts[0].subPath"), "{err}");
    assert!(err.contains("subPath must be a relative path without \"..\""), "{err}");
}

#[test]
fn host_namespaces_and_devices_are_no_fields_of_a_workflow() {
    let ns = namespace("hostns");
    for (spec, container, field) in [
        ("  podTemplate: {hostNetwork: true}\n", "", "spec.podTemplate.hostNetwork"),
        ("  podTemplate: {hostPID: true}\n", "", "spec.podTemplate.hostPID"),
        ("", "        volumeDevices: [{name: root, devicePath: /dev/sda}]\n", "spec.steps[0].container.volumeDevices"),
    ] {
        let err = apply_as(DEV, &ns.name, &workflow_yaml(spec, container)).unwrap_err();
        assert!(err.contains(&format!("strict decoding error: unknown field \"{field}\"")), "{err}");
    }
    // What is left is fine, and so is what Pod Security restricted allows.
    let allowed = "        securityContext: {runAsUser: 1000, runAsGroup: 0, capabilities: {add: [NET_BIND_SERVICE]}, seccompProfile: {type: Localhost, localhostProfile: p.json}, seLinuxOptions: {type: container_t, level: 's0:c1'}}\n";
    apply_as(
        DEV,
        &ns.name,
        &workflow_yaml("  podTemplate: {tolerations: [{key: dedicated, operator: Exists}]}\n", allowed),
    )
    .unwrap();
}

#[test]
fn the_owner_relaxes_only_what_they_name_and_only_once_opted_in() {
    let ns = namespace("relax");
    let n = ns.name.as_str();
    // Written before the opt-in: no effect yet.
    write_policy(n, "{allowPrivileged: true, serviceAccountNames: [builder]}");
    let asks = workflow_yaml("  serviceAccountName: builder\n", "        securityContext: {privileged: true}\n");
    let err = apply_as(DEV, n, &asks).unwrap_err();
    assert!(err.contains("ValidatingAdmissionPolicy 'hitl-workflow-security'") && err.contains("privileged"), "{err}");
    opt_in(n);
    wait_for("the opted-in namespace to take the owner's policy", WAIT, || apply_as(DEV, n, &asks).ok());
    // What the owner did not name stays refused, now by the custom policy.
    let root = workflow_yaml("", "        securityContext: {runAsUser: 0}\n").replace("name: w}", "name: w2}");
    let err = apply_as(DEV, n, &root).unwrap_err();
    assert!(err.contains("ValidatingAdmissionPolicy 'hitl-workflow-security-custom'"), "{err}");
    assert!(err.contains("runAsUser: 0 is not allowed here"), "{err}");
}

#[test]
fn an_opted_in_namespace_without_a_policy_refuses_every_workflow() {
    let ns = namespace("nopolicy");
    opt_in(&ns.name);
    let err = wait_for("the opt-in to take effect", WAIT, || apply_as(DEV, &ns.name, &workflow_yaml("", "")).err());
    assert!(err.contains("no params found for policy binding with `Deny` parameterNotFoundAction"), "{err}");
}

#[test]
fn tightening_the_policy_strands_no_workflow() {
    let ns = namespace("tighten");
    let n = ns.name.as_str();
    opt_in(n);
    write_policy(n, "{allowPrivileged: true}");
    let wf = workflow_yaml("", "        securityContext: {privileged: true}\n");
    wait_for("the owner's policy to allow the Workflow", WAIT, || apply_as(DEV, n, &wf).ok());
    write_policy(n, "{allowPrivileged: false}");
    let edit = r#"[{"op": "replace", "path": "/spec/steps/0/container/image", "value": "y"}]"#;
    let err = wait_for("the tightened policy to take effect", WAIT, || {
        let out = kubectl("admin", &["-n", n, "patch", "workflow", "w", "--type=json", "-p", edit]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(err.contains("privileged: true is not allowed here"), "{err}");
    // A change that leaves the spec alone (labels, finalizers, the garbage collector's) goes through.
    kubectl_ok("admin", &["-n", n, "label", "workflow", "w", "team=legal"]);
    kubectl_ok(
        "admin",
        &["-n", n, "patch", "workflow", "w", "--type=merge", "-p", r#"{"metadata":{"finalizers":["x/y"]}}"#],
    );
    kubectl_ok(
        "admin",
        &["-n", n, "patch", "workflow", "w", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#],
    );
}

#[test]
fn an_editor_cannot_write_the_policy_that_limits_them() {
    let ns = namespace("policyrbac");
    let n = ns.name.as_str();
    write_policy(n, "{allowRunAsRoot: false}");
    let policy =
        "apiVersion: hitl.dev/v1alpha1\nkind: WorkflowPolicy\nmetadata: {name: mine}\nspec: {allowPrivileged: true}\n";
    let patch =
        ["-n", n, "patch", "workflowpolicy", "default", "--type=merge", "-p", r#"{"spec":{"allowRunAsRoot":true}}"#];
    // kubectl patch reads the object first: the author is stopped there, the editor at the patch.
    let refused = |what: &str, patch_refusal: &str| {
        let out = kubectl_stdin(DEV, &["-n", n, "create", "-f", "-"], policy);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("cannot create resource \"workflowpolicies\""), "{what}: {err}");
        let out = kubectl(DEV, &patch);
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!("User \"dev\" cannot {patch_refusal} resource \"workflowpolicies\"");
        assert!(!out.status.success() && err.contains(&want), "{what}: {err}");
    };
    refused("a workflow author", "get");
    // Namespace editors create Workflows, so the chart gives them no write on their limits.
    kubectl_ok("admin", &["-n", n, "create", "rolebinding", "dev-edits", "--clusterrole=edit", "--user=dev"]);
    wait_for("dev to be an editor", WAIT, || {
        kubectl(DEV, &["-n", n, "auth", "can-i", "delete", "workflows.hitl.dev"]).status.success().then_some(())
    });
    refused("an editor", "patch");
    kubectl_ok(DEV, &["-n", n, "get", "workflowpolicy", "default"]);
}

#[test]
fn step_pods_carry_the_secure_defaults_merged_with_what_the_step_set() {
    let ns = test_namespace("defaults");
    let _op = Operator::start(&ns.name);
    let yaml = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {name: plain, container: {image: x, securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true, capabilities: {add: [NET_BIND_SERVICE], drop: [NET_RAW]}}}}\n    - {name: api, container: {image: x, automountServiceAccountToken: true}}\n";
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
    assert_eq!(sc["capabilities"], serde_json::json!({"add": ["NET_BIND_SERVICE"], "drop": ["NET_RAW", "ALL"]}));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(plain["spec"]["automountServiceAccountToken"], false);
    assert!(plain["spec"]["volumes"].is_null(), "no token volume: {}", plain["spec"]["volumes"]);
    assert_eq!(plain["spec"]["containers"][0]["terminationMessagePolicy"], "File");
    let api = of("api");
    assert_eq!(api["spec"]["automountServiceAccountToken"], true);
    let volumes = api["spec"]["volumes"].to_string();
    assert!(volumes.contains("serviceAccountToken"), "the ServiceAccount admission plugin mounts a token: {volumes}");
    assert!(volumes.contains("kube-root-ca.crt"), "{volumes}");
    assert_eq!(api["spec"]["containers"][0]["securityContext"]["runAsUser"], 65532);
    assert_eq!(api["spec"]["serviceAccountName"], "default");
}

/// Exit steps are steps: a privileged container hidden in `onExit` is refused like any other.
#[test]
fn an_exit_step_is_held_to_the_same_policy() {
    let ns = namespace("exitpriv");
    let wf = format!(
        "{}  onExit:\n    - name: cleanup\n      container:\n        image: x\n        securityContext: {{privileged: true}}\n",
        workflow_yaml("", "")
    );
    let err = apply_as(DEV, &ns.name, &wf).expect_err("a privileged exit step");
    assert!(err.contains("ValidatingAdmissionPolicy 'hitl-workflow-security'"), "{err}");
    assert!(err.contains("step cleanup: container.securityContext.privileged: true is not allowed here"), "{err}");
    // The same exit step without the privilege is fine.
    apply_as(
        DEV,
        &ns.name,
        &format!("{}  onExit:\n    - name: cleanup\n      container: {{image: x}}\n", workflow_yaml("", "")),
    )
    .unwrap();
}

/// A forEach step is one container spec for all its item Pods: the policy sees it as it sees any
/// step, so `dev` cannot fan out what one step may not do.
#[test]
fn a_fan_out_step_is_held_to_the_same_policy() {
    let ns = namespace("podsec-foreach");
    let privileged = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - name: s\n      forEach: {list: \"['a', 'b']\", parallelism: 2}\n      container:\n        image: x\n        args: ['{{ item }}']\n        securityContext: {privileged: true}\n";
    let err = apply_as(DEV, &ns.name, privileged).unwrap_err();
    assert!(err.contains("ValidatingAdmissionPolicy 'hitl-workflow-security'"), "{err}");
    assert!(err.contains("step s: container.securityContext.privileged: true is not allowed here"), "{err}");
    let plain = privileged.replace("        securityContext: {privileged: true}\n", "");
    apply_as(DEV, &ns.name, &plain).unwrap();
}
