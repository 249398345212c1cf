//! The local cluster behaves as the operator's tests rely on: CEL validation in CRDs, RBAC by
//! client-certificate users and groups, kwok's annotation-driven Pod outcomes, and garbage
//! collection through ownerReferences. Needs `make cluster-up`; fails (never skips) without it.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin";

/// Deletes a cluster-scoped CRD when the test ends, also when it fails.
struct CrdGuard(String);

impl Drop for CrdGuard {
    fn drop(&mut self) {
        let _ = kubectl(ADMIN, &["delete", "crd", &self.0, "--wait=false", "--ignore-not-found"]);
    }
}

#[test]
fn crd_cel_rule_refuses_invalid_objects_with_its_message() {
    let ns = test_namespace("smoke-crd");
    // A group of its own per run, so concurrent or leftover runs never share the CRD.
    let group = format!("{}.smoke.hitl.dev", unique_name("g"));
    let crd = format!("widgets.{group}");
    let _guard = CrdGuard(crd.clone());
    apply_ok(
        ADMIN,
        &json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": crd},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {
                            "type": "object",
                            "required": ["replicas"],
                            "properties": {"replicas": {"type": "integer"}},
                            "x-kubernetes-validations": [
                                {"rule": "self.replicas <= 5", "message": "replicas must be at most 5"}
                            ]
                        }}
                    }}
                }]
            }
        })
        .to_string(),
    );
    kubectl_ok(ADMIN, &["wait", "--for=condition=Established", &format!("crd/{crd}"), "--timeout=30s"]);
    // Established can precede the type showing up in discovery, which kubectl needs.
    wait_for("the Widget type to be served", Duration::from_secs(30), || {
        kubectl(ADMIN, &["-n", &ns.name, "get", &crd]).status.success().then_some(())
    });

    let widget = |name: &str, replicas: i64| {
        json!({
            "apiVersion": format!("{group}/v1"),
            "kind": "Widget",
            "metadata": {"name": name, "namespace": ns.name},
            "spec": {"replicas": replicas}
        })
        .to_string()
    };

    let out = kubectl_stdin(ADMIN, &["create", "-f", "-"], &widget("too-many", 7));
    assert!(!out.status.success(), "a Widget with 7 replicas was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("replicas must be at most 5"), "refusal does not carry the rule's message: {stderr}");
    assert!(
        try_jsonpath(ADMIN, &ns.name, &format!("{crd}/too-many"), ".metadata.name").is_none(),
        "the refused Widget exists"
    );

    let out = kubectl_stdin(ADMIN, &["create", "-f", "-"], &widget("fine", 3));
    assert!(out.status.success(), "a valid Widget was refused: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(jsonpath(ADMIN, &ns.name, &format!("{crd}/fine"), ".spec.replicas"), "3");
}

fn pod(name: &str, ns: &str, annotations: serde_json::Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        // What Pod Security `restricted` (enforced on test namespaces) asks of every container.
        // Run once, as a step Pod does: kwok keeps a Pod that restarts Always running.
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}}]}
    })
    .to_string()
}

fn can_i(user: &str, ns: &str, verb: &str, resource: &str) -> String {
    // `auth can-i` exits 1 for "no", so only stdout decides.
    let out = kubectl(user, &["auth", "can-i", verb, resource, "-n", ns]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn rbac_refuses_bob_until_a_rolebinding_allows_him() {
    let ns = test_namespace("smoke-rbac");
    let other = test_namespace("smoke-rbac-other");

    assert_eq!(can_i("bob", &ns.name, "create", "pods"), "no");
    let out = kubectl_stdin("bob", &["create", "-f", "-"], &pod("by-bob", &ns.name, json!({})));
    assert!(!out.status.success(), "bob created a Pod without any grant");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Forbidden"), "expected Forbidden, got: {stderr}");

    assert_eq!(can_i(ADMIN, &ns.name, "create", "pods"), "yes");

    apply_ok(
        ADMIN,
        &json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": "pod-creator", "namespace": ns.name},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]}]
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": "bob-creates-pods", "namespace": ns.name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-creator"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]
                }
            ]
        })
        .to_string(),
    );
    // The authorizer reads RBAC objects from a cache: allow it a moment.
    wait_for("bob's RoleBinding to take effect", Duration::from_secs(10), || {
        (can_i("bob", &ns.name, "create", "pods") == "yes").then_some(())
    });
    let out = kubectl_stdin("bob", &["create", "-f", "-"], &pod("by-bob", &ns.name, json!({})));
    assert!(out.status.success(), "bob was refused despite the RoleBinding: {}", String::from_utf8_lossy(&out.stderr));
    // The grant is confined to its namespace.
    assert_eq!(can_i("bob", &other.name, "create", "pods"), "no");
}

#[test]
fn groups_come_from_the_client_certificate() {
    let ns = test_namespace("smoke-groups");
    apply_ok(
        ADMIN,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "legal-views", "namespace": ns.name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "legal"}]
        })
        .to_string(),
    );
    wait_for("the legal group's RoleBinding to take effect", Duration::from_secs(10), || {
        (can_i("alice", &ns.name, "list", "configmaps") == "yes").then_some(())
    });
    assert_eq!(can_i("carol", &ns.name, "list", "configmaps"), "yes");
    assert_eq!(can_i("bob", &ns.name, "list", "configmaps"), "no");
    let whoami: serde_json::Value =
        serde_json::from_str(&kubectl_ok("alice", &["auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(whoami["status"]["userInfo"]["username"], "alice");
    assert!(
        whoami["status"]["userInfo"]["groups"].as_array().is_some_and(|g| g.iter().any(|g| g == "legal")),
        "alice is not in group legal: {whoami}"
    );
}

fn phase(ns: &str, name: &str) -> String {
    try_jsonpath(ADMIN, ns, &format!("pod/{name}"), ".status.phase").unwrap_or_default()
}

fn wait_phase(ns: &str, name: &str, want: &str) {
    wait_for(&format!("pod {ns}/{name} to reach phase {want}"), Duration::from_secs(30), || {
        let p = phase(ns, name);
        assert!(
            !(matches!(p.as_str(), "Succeeded" | "Failed") && p != want),
            "pod {ns}/{name} ended {p}, expected {want}"
        );
        (p == want).then_some(())
    });
}

fn terminated(ns: &str, name: &str) -> serde_json::Value {
    let pod = get_json(ADMIN, ns, &format!("pod/{name}"));
    pod["status"]["containerStatuses"][0]["state"]["terminated"].clone()
}

#[test]
fn annotated_pod_fails_with_exit_code_and_message() {
    let ns = test_namespace("smoke-pod-fail");
    let message = "step exploded: \"disk full\"";
    apply_ok(
        ADMIN,
        &pod(
            "failing",
            &ns.name,
            json!({
                "sim.hitl.dev/outcome": "Failed",
                "sim.hitl.dev/exit-code": "3",
                "sim.hitl.dev/message": message,
            }),
        ),
    );
    wait_phase(&ns.name, "failing", "Failed");
    let t = terminated(&ns.name, "failing");
    assert_eq!(t["exitCode"], 3, "{t}");
    assert_eq!(t["message"], message, "{t}");
    assert_eq!(t["reason"], "Error", "{t}");
}

#[test]
fn unannotated_pod_succeeds() {
    let ns = test_namespace("smoke-pod-ok");
    apply_ok(ADMIN, &pod("plain", &ns.name, json!({})));
    wait_phase(&ns.name, "plain", "Succeeded");
    let t = terminated(&ns.name, "plain");
    assert_eq!(t["exitCode"], 0, "{t}");
    assert_eq!(t["reason"], "Completed", "{t}");
    assert_eq!(t["message"].as_str().unwrap_or(""), "", "{t}");
}

#[test]
fn pod_with_duration_runs_before_it_succeeds() {
    let ns = test_namespace("smoke-pod-slow");
    apply_ok(ADMIN, &pod("slow", &ns.name, json!({"sim.hitl.dev/duration": "2s"})));
    wait_phase(&ns.name, "slow", "Running");
    let running_seen = Instant::now();
    wait_phase(&ns.name, "slow", "Succeeded");
    // Seen Running within a poll of its start, a 2 s Pod stays so well over a second; a stage that
    // ignored the duration would finish it at once.
    let ran_for = running_seen.elapsed();
    assert!(ran_for >= Duration::from_secs(1), "a 2s Pod went from Running to Succeeded in {ran_for:?}");
    let t = terminated(&ns.name, "slow");
    assert_eq!(t["exitCode"], 0, "{t}");
    // Timestamps have whole-second precision, so 2s of running shows as at least 1s.
    let secs = |field: &str| {
        let ts = t[field].as_str().unwrap_or_else(|| panic!("no {field}: {t}"));
        seconds_of_day(ts)
    };
    let ran = (secs("finishedAt") - secs("startedAt")).rem_euclid(86_400);
    assert!(ran >= 1, "ran {ran}s, expected about 2s ({t})");
}

/// Seconds since midnight of an RFC 3339 UTC timestamp such as `2026-01-02T03:04:05Z`.
fn seconds_of_day(ts: &str) -> i64 {
    let hms = ts.split('T').nth(1).and_then(|t| t.get(..8)).unwrap_or_else(|| panic!("not an RFC 3339 time: {ts}"));
    hms.split(':').map(|p| p.parse::<i64>().unwrap_or_else(|e| panic!("{ts}: {e}"))).fold(0, |acc, p| acc * 60 + p)
}

#[test]
fn deleting_an_owner_garbage_collects_its_dependent() {
    let ns = test_namespace("smoke-gc");
    apply_ok(
        ADMIN,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": ns.name}})
            .to_string(),
    );
    let uid = jsonpath(ADMIN, &ns.name, "configmap/owner", ".metadata.uid");
    apply_ok(
        ADMIN,
        &json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "namespace": ns.name,
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]
            }
        })
        .to_string(),
    );
    kubectl_ok(ADMIN, &["-n", &ns.name, "delete", "configmap", "owner"]);
    wait_for("the dependent ConfigMap to be garbage-collected", Duration::from_secs(60), || {
        let out =
            kubectl_ok(ADMIN, &["-n", &ns.name, "get", "configmap", "dependent", "--ignore-not-found", "-o", "name"]);
        out.trim().is_empty().then_some(())
    });
}
