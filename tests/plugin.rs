//! The `kubectl hitl` plugin, typed as a person at a gate would.

mod common;
mod harness;

use std::process::Command;
use std::time::Duration;

use common::{kubeconfig, test_namespace};
use harness::*;

fn hitl(user: &str, ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-hitl"))
        .args(["--kubeconfig", kubeconfig(user).to_str().unwrap(), "-n", ns])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn list_then_approve_with_typed_input() {
    let ns = test_namespace("plugin");
    let _op = Operator::start(&ns.name);
    let yaml = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: ship}\nspec:\n  steps:\n    - name: go\n      suspend:\n        message: Ship release 1.2?\n        approvers: {users: [alice]}\n        inputs: [{name: priority, type: integer, required: true}, {name: channel, enum: [stable, beta]}]\n";
    apply(&ns.name, yaml);
    wait_pending(&ns.name, "ship.go");
    let (ok, out) = hitl("admin", &ns.name, &["pending"]);
    assert!(ok && out.contains("ship.go") && out.contains("Ship release 1.2?") && out.contains("alice"), "{out}");

    let (ok, out) = hitl("alice", &ns.name, &["approve", "ship.go", "--input", "priority=two"]);
    assert!(!ok && out.contains("input priority: must be of type integer"), "{out}");
    let (ok, out) = hitl(
        "alice",
        &ns.name,
        &["approve", "ship.go", "--input", "priority=2", "--input", "channel=beta", "--comment", "go"],
    );
    assert!(ok && out.contains("approval ship.go approved by alice"), "{out}");
    let wf = wait_phase(&ns.name, "ship", "Succeeded", Duration::from_secs(60));
    assert_eq!(step(&wf, "go")["outputs"]["priority"], "2");
    assert_eq!(step(&wf, "go")["outputs"]["channel"], "beta");
    let (ok, out) = hitl("admin", &ns.name, &["pending"]);
    assert!(ok && !out.contains("ship.go"), "{out}");
}
