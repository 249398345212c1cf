//! Restart safety under fire: the operator is killed (SIGKILL) and restarted again and again while
//! runs with gates progress and people decide. Nothing may be lost or done twice.

mod common;
mod harness;

use std::time::{Duration, Instant};

use common::test_namespace;
use harness::*;

const RUNS: usize = 8;

/// Five container steps of 1 s each, with a gate asking for a number in the middle.
fn run_yaml(name: &str) -> String {
    let steps = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("    - {{name: {n}, container: {{image: x}}, metadata: {{annotations: {{sim.hitl.dev/duration: 1s}}}}}}\n"))
            .collect()
    };
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  steps:\n{}    - {{name: gate, suspend: {{inputs: [{{name: num, type: integer, required: true}}]}}}}\n{}",
        steps(&["a", "b", "c"]),
        steps(&["d", "e"]),
    )
}

#[test]
fn killing_the_operator_at_any_moment_loses_and_repeats_nothing() {
    let ns = test_namespace("chaos");
    let mut op = Operator::start(&ns.name);
    let names: Vec<String> = (0..RUNS).map(|i| format!("run-{i}")).collect();
    for n in &names {
        apply(&ns.name, &run_yaml(n));
    }
    // A fixed pseudo-random schedule of kills, so a failure can be replayed.
    let mut seed: u64 = 0x5eed;
    let mut next_delay = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        Duration::from_millis(150 + (seed >> 33) % 500)
    };
    let list = |kind: &str| -> Vec<serde_json::Value> {
        let out = common::kubectl_ok("admin", &["-n", &ns.name, "get", kind, "-o", "json"]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["items"].as_array().cloned().unwrap_or_default()
    };
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        // People decide whatever waits, while the operator may be down.
        for a in list("approvals") {
            if a["status"]["phase"] == "Pending" && a["spec"]["input"].is_null() {
                let gate = a["metadata"]["name"].as_str().unwrap();
                let i: usize = gate.trim_start_matches("run-").trim_end_matches(".gate").parse().unwrap();
                patch_approval("admin", &ns.name, gate, &format!(r#"{{"spec":{{"input":{{"num":{i}}}}}}}"#)).unwrap();
            }
        }
        let done = list("workflows").iter().filter(|w| w["status"]["phase"] == "Succeeded").count();
        if done == RUNS {
            break;
        }
        assert!(Instant::now() < deadline, "only {done}/{RUNS} runs finished after {kills} restarts");
        std::thread::sleep(next_delay());
        op.kill();
        kills += 1;
        std::thread::sleep(next_delay() / 2);
        op.restart();
    }
    assert!(kills >= 4, "too few restarts to mean anything: {kills}");
    for (i, n) in names.iter().enumerate() {
        let wf = workflow(&ns.name, n);
        for s in ["a", "b", "c", "d", "e"] {
            assert_eq!(step(&wf, s)["attempts"], 1, "{n}/{s} ran more than once");
        }
        assert_eq!(step(&wf, "gate")["outputs"]["num"], i.to_string(), "{n}: the decision was lost or mixed up");
        let pods = pods(&ns.name, n);
        assert_eq!(pods.len(), 5, "{n}: expected one Pod per container step, found {}", pods.len());
    }
    eprintln!("{RUNS} runs finished through {kills} operator kills");
}
