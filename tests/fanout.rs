//! Fan-out (`forEach`) on the local cluster: hundreds of item Pods under a parallelism limit seen
//! on a Pod watch, outputs in item order, one gate per item decided in any order by the approver
//! it grants, a rejected item, bad specs refused at apply, and what a big fan-out costs the API
//! server (status size and status writes, seen on a Workflow watch).

mod common;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::watch::Watch;
use common::{kubectl_ok, test_namespace, wait_for};
use harness::*;
use serde_json::Value;

/// A Workflow whose step `each` runs one Pod per account number (a parameter holds at most 4096
/// characters: 500 numbers fit, 500 names would not); each Pod's termination message is its first
/// argument (`sim.hitl.dev/message-from: args`), so every item reports its own outputs.
fn containers(name: &str, items: usize, parallelism: usize) -> String {
    let accounts: Vec<usize> = (0..items).collect();
    format!(
        r#"apiVersion: hitl.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  params: [{{name: accounts, value: '{list}'}}]
  steps:
    - name: each
      forEach: {{list: params.accounts, parallelism: {parallelism}}}
      metadata: {{annotations: {{sim.hitl.dev/message-from: args, sim.hitl.dev/duration: 200ms}}}}
      container:
        image: busybox:1.36
        args: ['{{"account": "acct-{{{{ item }}}}", "index": {{{{ index }}}}}}']
    - name: after
      container: {{image: busybox:1.36}}
"#,
        list = serde_json::to_string(&accounts).unwrap()
    )
}

/// The most step Pods unfinished at once, and how many were ever seen, from a Pod watch's events
/// in order: a Pod counts from its first event until it is seen Succeeded, Failed or deleted.
fn most_at_once(events: &[Value]) -> (usize, usize) {
    let (mut open, mut ever, mut most) = (BTreeSet::new(), BTreeSet::new(), 0);
    for ev in events {
        let pod = &ev["object"];
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let done = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) || ev["type"] == "DELETED";
        if done {
            open.remove(&name);
        } else if ever.insert(name.clone()) || open.contains(&name) {
            open.insert(name);
        }
        most = most.max(open.len());
    }
    (most, ever.len())
}

/// Status writes seen on a Workflow watch (each changes `.status`), and the final status's size.
fn status_writes(events: &[Value]) -> usize {
    let mut last = Value::Null;
    let mut writes = 0;
    for ev in events {
        let status = ev["object"]["status"].clone();
        if status != last {
            writes += usize::from(!status.is_null());
            last = status;
        }
    }
    writes
}

/// The most items a status written by the operator had in flight (not yet finished).
fn most_in_flight(events: &[Value]) -> usize {
    let in_flight = |ev: &Value| {
        let items = ev["object"]["status"]["steps"][0]["items"].as_array().cloned().unwrap_or_default();
        items.iter().filter(|i| matches!(i["phase"].as_str(), Some("Running" | "Waiting"))).count()
    };
    events.iter().map(in_flight).max().unwrap_or(0)
}

/// `kubectl get workflow -o json | wc -c`.
fn object_bytes(ns: &str, name: &str) -> usize {
    kubectl_ok("admin", &["-n", ns, "get", "workflow", name, "-o", "json"]).len()
}

/// Runs `items` container items at `parallelism` and checks the limit, the order of the outputs
/// and the run; returns (status writes, status bytes, seconds, most items in flight in a status
/// the operator wrote).
fn fan_out_containers(prefix: &str, items: usize, parallelism: usize) -> (usize, usize, f64, usize) {
    let ns = test_namespace(prefix);
    let _op = Operator::start(&ns.name);
    let pod_watch = Watch::start(&["-n", &ns.name, "pods", "-l", "hitl.dev/workflow=fan,hitl.dev/step=each"]);
    let wf_watch = Watch::start(&["-n", &ns.name, "workflow", "--field-selector", "metadata.name=fan"]);
    let started = Instant::now();
    apply(&ns.name, &containers("fan", items, parallelism));
    let wf = wait_phase(&ns.name, "fan", "Succeeded", Duration::from_secs(600));
    let took = started.elapsed().as_secs_f64();

    let each = step(&wf, "each");
    let outputs: Vec<Value> = serde_json::from_str(each["outputs"]["items"].as_str().unwrap()).unwrap();
    assert_eq!(outputs.len(), items);
    for (i, out) in outputs.iter().enumerate() {
        let want = serde_json::json!({"account": format!("acct-{i}"), "index": i.to_string()});
        assert_eq!(out, &want, "item {i}'s outputs, in item order");
    }
    assert_eq!(each["itemCount"], items);
    assert_eq!(each["message"], format!("{items}/{items} items"));
    assert_eq!(wf["status"]["progress"], "2/2", "a forEach is one step in PROGRESS");

    // The watch has seen every item Pod finish before the run could succeed; wait for it to
    // deliver them all (it may lag behind the API server), then judge the concurrency.
    let most = wait_for("the Pod watch to see every item", Duration::from_secs(30), || {
        let (most, ever) = most_at_once(&pod_watch.events());
        (ever == items).then_some(most)
    });
    assert!(most <= parallelism, "{most} item Pods were unfinished at once; parallelism is {parallelism}");
    let (writes, in_flight) = wait_for("the Workflow watch to see the end", Duration::from_secs(30), || {
        let evs = wf_watch.events();
        let ended = evs.last().is_some_and(|e| e["object"]["status"]["phase"] == "Succeeded");
        ended.then(|| (status_writes(&evs), most_in_flight(&evs)))
    });
    assert!(in_flight <= parallelism, "a status had {in_flight} items in flight");
    let bytes = object_bytes(&ns.name, "fan");
    let status = serde_json::to_string(&workflow(&ns.name, "fan")["status"]).unwrap().len();
    eprintln!(
        "forEach of {items} container items, parallelism {parallelism}: {took:.1} s, {writes} Workflow status writes \
         ({:.2} per item); final object {bytes} bytes as kubectl get -o json prints it, status {status} bytes as \
         compact JSON ({:.0} per item)",
        writes as f64 / items as f64,
        status as f64 / items as f64
    );
    eprintln!("most item Pods unfinished at once (Pod watch): {most}; most items in flight in a status: {in_flight}");
    (writes, status, took, in_flight)
}

#[test]
fn two_hundred_items_run_at_most_ten_at_a_time_and_their_outputs_come_back_in_order() {
    let (writes, bytes, _, in_flight) = fan_out_containers("fanout-200", 200, 10);
    // Whether the Pod watch sees 10 at once depends on the machine (a 200 ms Pod may end before
    // the tenth is created); the operator's own record of what it started does not.
    assert_eq!(in_flight, 10, "the first pass starts as many items as the parallelism allows");
    // Far below etcd's 1.5 MiB, and fewer writes than items: one write per pass covers every
    // item transition that pass saw.
    assert!(bytes < 32 * 1024, "the finished Workflow's status is {bytes} bytes");
    assert!(writes < 200, "{writes} status writes for 200 items");
}

/// `make bench-fanout`: the same for 500 items at parallelism 10 and 50, measured (about 1.5
/// minutes on a quiet machine).
#[test]
#[ignore = "a measurement: make bench-fanout"]
fn five_hundred_items_measured() {
    for parallelism in [10, 50] {
        let (writes, bytes, took, in_flight) = fan_out_containers("fanout-500", 500, parallelism);
        println!(
            "bench-fanout: items=500 parallelism={parallelism} seconds={took:.1} status_writes={writes} \
             status_bytes={bytes} most_in_flight={in_flight}"
        );
    }
}

/// A Workflow with one gate per account, all open at once, approved by alice (who has no standing
/// rights: each gate grants her that gate), then a container step.
fn gates(name: &str, items: usize) -> String {
    let accounts: Vec<String> = (0..items).map(|i| format!("acct-{i}")).collect();
    format!(
        r#"apiVersion: hitl.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  params: [{{name: accounts, value: '{list}'}}]
  steps:
    - name: review
      forEach: {{list: params.accounts, parallelism: {items}}}
      suspend:
        message: "Keep the access of {{{{ item }}}} (#{{{{ index }}}})?"
        approvers: {{users: [alice]}}
        inputs: [{{name: keep, type: boolean, required: true}}]
    - name: after
      container: {{image: busybox:1.36}}
"#,
        list = serde_json::to_string(&accounts).unwrap()
    )
}

/// A shuffled 0..n, from a seed printed so a failure can be replayed.
fn shuffled(n: usize) -> Vec<usize> {
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("shuffle seed {seed}");
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        order.swap(i, (seed >> 33) as usize % (i + 1));
    }
    order
}

#[test]
fn twenty_gates_are_decided_in_any_order_and_the_run_goes_on_after_the_last() {
    let ns = test_namespace("fanout-gates");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gates("access", 20));
    let wf = wait_phase(&ns.name, "access", "Waiting", Duration::from_secs(60));
    assert_eq!(
        wf["status"]["waitingFor"],
        "access.review.0,access.review.1,access.review.2,access.review.3,access.review.4,+15 more"
    );
    for i in 0..20 {
        let a = wait_pending(&ns.name, &format!("access.review.{i}"));
        assert_eq!(a["spec"]["message"], format!("Keep the access of acct-{i} (#{i})?"));
        assert_eq!(a["spec"]["item"], i);
        assert_eq!(a["metadata"]["labels"]["hitl.dev/item"], i.to_string());
    }
    let order = shuffled(20);
    for (n, &i) in order.iter().enumerate() {
        let keep = i % 3 != 0;
        let patch = format!(r#"{{"spec":{{"input":{{"keep":{keep}}}}}}}"#);
        patch_approval("alice", &ns.name, &format!("access.review.{i}"), &patch)
            .unwrap_or_else(|e| panic!("alice decides item {i}: {e}"));
        if n + 1 < order.len() {
            // Decided, recorded, and still the run waits for the others.
            let wf = wait_for(&format!("item {i} recorded"), Duration::from_secs(30), || {
                let wf = workflow(&ns.name, "access");
                (step(&wf, "review")["items"][i]["phase"] == "Succeeded").then_some(wf)
            });
            assert_eq!(phase(&wf), "Waiting", "after {} of 20 decisions", n + 1);
            assert_eq!(step(&wf, "after")["phase"], "Pending");
        }
    }
    let wf = wait_phase(&ns.name, "access", "Succeeded", Duration::from_secs(60));
    let outputs: Vec<Value> = serde_json::from_str(step(&wf, "review")["outputs"]["items"].as_str().unwrap()).unwrap();
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out["keep"], (i % 3 != 0).to_string(), "item {i}");
        assert_eq!(out["decision"], "Approve");
    }
    assert!(step(&wf, "review")["items"].as_array().unwrap().iter().all(|it| it["decidedBy"] == "alice"));
}

#[test]
fn a_rejected_item_fails_the_step_at_once_and_cancels_the_other_gates() {
    let ns = test_namespace("fanout-reject");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gates("access", 5));
    for i in 0..5 {
        wait_pending(&ns.name, &format!("access.review.{i}"));
    }
    patch_approval("alice", &ns.name, "access.review.1", r#"{"spec":{"input":{"keep":true}}}"#).unwrap();
    patch_approval("alice", &ns.name, "access.review.3", r#"{"spec":{"decision":"Reject","comment":"unknown user"}}"#)
        .unwrap();
    let wf = wait_phase(&ns.name, "access", "Failed", Duration::from_secs(60));
    let review = step(&wf, "review");
    assert_eq!(review["phase"], "Failed");
    assert_eq!(review["reason"], "Rejected");
    let message = review["message"].as_str().unwrap();
    assert_eq!(message, "item 3 failed (Rejected): rejected by alice: unknown user; 5/5 items, 1 failed, 3 omitted");
    assert_eq!(step(&wf, "after")["phase"], "Omitted");
    let phases: BTreeMap<usize, String> = (0..5)
        .map(|i| {
            (i, approval(&ns.name, &format!("access.review.{i}"))["status"]["phase"].as_str().unwrap().to_string())
        })
        .collect();
    let want: BTreeMap<usize, String> =
        [(0, "Cancelled"), (1, "Approved"), (2, "Cancelled"), (3, "Rejected"), (4, "Cancelled")]
            .into_iter()
            .map(|(i, p)| (i, p.to_string()))
            .collect();
    assert_eq!(phases, want);
}

#[test]
fn bad_fan_outs_are_refused_at_apply_naming_the_field() {
    let ns = test_namespace("fanout-refused");
    ensure_crds();
    let wf = |step: &str| {
        format!("apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: bad}}\nspec:\n  steps:\n  - {step}\n")
    };
    for (step, says) in [
        ("{name: s, sleep: 1s, forEach: {list: '[1]'}}", "step s: forEach applies only to container and suspend steps"),
        ("{name: s, container: {image: x}, forEach: {parallelism: 2}}", "spec.steps[0].forEach.list: Required value"),
        (
            "{name: s, container: {image: x}, forEach: {list: '[1]', parallelism: 0}}",
            "spec.steps[0].forEach.parallelism",
        ),
        (
            "{name: s, container: {image: x}, forEach: {list: '[1]', parallelism: 101}}",
            "spec.steps[0].forEach.parallelism",
        ),
    ] {
        let refused = apply_refused(&ns.name, &wf(step));
        assert!(refused.contains(says), "{step}: {refused}");
    }
}
