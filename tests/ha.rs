//! Two operator processes elect a leader on a Lease: only the leader reconciles; when it is
//! killed the standby takes over and every run finishes with nothing done twice; on SIGTERM the
//! leader hands the Lease over at once. Prints the failover and hand-over times (measured, not
//! asserted).

mod common;
mod harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{kubectl_ok, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(90);
const RUNS: usize = 4;

fn elected(ns: &str, suffix: &str, lease: &str) -> Operator {
    let lease_flag = format!("--leader-election-lease-name={lease}");
    let args = [
        "--leader-elect=true",
        "--leader-election-namespace=hitl-system",
        &lease_flag,
        "--leader-election-lease-duration=4",
        "--leader-election-renew-grace=2",
    ];
    Operator::start_with(ns, suffix, &args)
}

fn log_has(op: &Operator, text: &str) -> bool {
    std::fs::read_to_string(&op.log).is_ok_and(|l| l.contains(text))
}

/// Workflow reconciles this process has run, from its /metrics. The series exists from the
/// start, at 0, on a standby too: a missing or unreadable one fails the test instead of reading
/// as "none", which would let the standby check pass without checking anything.
fn reconciles(op: &Operator) -> u64 {
    let body = op.metrics();
    let series = r#"hitl_reconciles_total{controller="workflow"}"#;
    let line = body.lines().find(|l| l.starts_with(series));
    let line = line.unwrap_or_else(|| panic!("no {series} in /metrics:\n{body}"));
    line.split_whitespace().last().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("unreadable: {line}"))
}

fn run(name: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  steps:\n    - {{name: build, container: {{image: x}}}}\n    - {{name: gate, suspend: {{inputs: [{{name: num, type: integer, required: true}}]}}}}\n    - {{name: ship, container: {{image: x}}}}\n"
    )
}

#[test]
fn the_standby_takes_over_and_nothing_is_done_twice() {
    let ns = test_namespace("ha");
    let lease = format!("ha-{}", ns.name);
    let mut first = elected(&ns.name, "-a", &lease);
    wait_for("the first replica to hold the lease", WAIT, || log_has(&first, "holding the lease").then_some(()));
    let second = elected(&ns.name, "-b", &lease);
    wait_for("the second replica to stand by", WAIT, || log_has(&second, "standing by").then_some(()));

    let names: Vec<String> = (0..RUNS).map(|i| format!("run-{i}")).collect();
    for n in &names {
        apply(&ns.name, &run(n));
    }
    let gates: Vec<String> = names.iter().map(|n| format!("{n}.gate")).collect();
    let uids: HashMap<String, String> = gates
        .iter()
        .map(|g| (g.clone(), wait_pending(&ns.name, g)["metadata"]["uid"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(reconciles(&second), 0, "the standby reconciled while the leader held the lease");
    for g in &gates[..RUNS / 2] {
        patch_approval("admin", &ns.name, g, r#"{"spec":{"input":{"num":1}}}"#).unwrap();
    }

    first.kill();
    let killed = Instant::now();
    // People decide while nobody leads.
    for g in &gates[RUNS / 2..] {
        patch_approval("admin", &ns.name, g, r#"{"spec":{"input":{"num":2}}}"#).unwrap();
    }
    wait_for("the standby's first reconcile", WAIT, || (reconciles(&second) > 0).then_some(()));
    println!(
        "failover: leader killed -> first reconcile by the new leader: {:?} (lease 4 s, renew grace 2 s)",
        killed.elapsed()
    );

    for n in &names {
        wait_phase(&ns.name, n, "Succeeded", WAIT);
        let pods = pods(&ns.name, n);
        assert_eq!(pods.len(), 2, "{n}: one Pod per container step, got {}", pods.len());
        assert!(pods.iter().all(|p| p["metadata"]["labels"]["hitl.dev/attempt"] == "1"), "{n}: a step ran twice");
    }
    for g in &gates {
        let a = approval(&ns.name, g);
        assert_eq!(a["metadata"]["uid"].as_str(), Some(uids[g].as_str()), "{g} was created again");
        let requested = events(&ns.name, g).iter().filter(|e| e.starts_with("Requested")).count();
        assert_eq!(requested, 1, "{g} was announced {requested} times");
    }
    drop(first);

    // Graceful: the leader releases the Lease on SIGTERM, and the standby takes it at once.
    let mut second = second;
    let third = elected(&ns.name, "-c", &lease);
    wait_for("the new standby", WAIT, || log_has(&third, "standing by").then_some(()));
    let terminated = Instant::now();
    let status = second.terminate();
    assert!(status.success(), "the leader did not stop cleanly on SIGTERM: {status}");
    assert!(log_has(&second, "released the lease"), "the leader did not release the lease");
    wait_for("the standby to take the released lease", WAIT, || log_has(&third, "holding the lease").then_some(()));
    println!("hand-over on SIGTERM: leader told to stop -> standby holds the lease: {:?}", terminated.elapsed());
    apply(&ns.name, &run("after"));
    wait_pending(&ns.name, "after.gate");
    patch_approval("admin", &ns.name, "after.gate", r#"{"spec":{"input":{"num":3}}}"#).unwrap();
    wait_phase(&ns.name, "after", "Succeeded", WAIT);
    kubectl_ok("admin", &["-n", "hitl-system", "delete", "lease", &lease, "--ignore-not-found"]);
}
