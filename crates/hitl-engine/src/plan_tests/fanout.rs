//! `forEach` in `plan`: items start up to the parallelism, each runs as a step would, and the step
//! ends with their outputs in item order.

use std::collections::BTreeMap;

use super::*;
use crate::names;

fn fan_out(list: &str, parallelism: Option<i32>, step_extra: serde_json::Value) -> Workflow {
    let mut s = json!({"name": "each", "forEach": {"list": list},
                       "container": {"image": "x", "args": ["{{ index }}:{{ item }}"]}});
    if let Some(p) = parallelism {
        s["forEach"]["parallelism"] = json!(p);
    }
    s.as_object_mut().unwrap().extend(step_extra.as_object().unwrap().clone());
    let items: Vec<String> = (0..25).map(|i| format!("acct-{i}")).collect();
    wf(json!({"params": [{"name": "accounts", "value": serde_json::to_string(&items).unwrap()}], "steps": [s]}))
}

/// The Pods the world holds: each created Pod runs until the test finishes it.
#[derive(Default)]
struct World {
    pods: BTreeMap<String, Pod>,
}

impl World {
    fn apply(&mut self, p: &Plan) {
        for r in &p.create_pods {
            self.pods.insert(r.name.clone(), pod(&r.name, "Running", 0, ""));
        }
    }
    fn running(&self) -> Vec<String> {
        self.pods
            .iter()
            .filter(|(_, p)| p.status.as_ref().unwrap().phase.as_deref() == Some("Running"))
            .map(|(n, _)| n.clone())
            .collect()
    }
    fn finish(&mut self, name: &str, phase: &str, exit: i32, message: &str) {
        self.pods.insert(name.into(), pod(name, phase, exit, message));
    }
    fn all(&self) -> Vec<Pod> {
        self.pods.values().cloned().collect()
    }
}

fn each(w: &Workflow) -> &hitl_api::StepStatus {
    &w.status.as_ref().unwrap().steps[0]
}

#[test]
fn items_run_up_to_the_parallelism_and_their_outputs_come_back_in_order() {
    let mut w = fan_out("params.accounts", Some(10), json!({}));
    let mut world = World::default();
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(p.create_pods.len(), 10);
    assert_eq!(p.create_pods[3].item, Some(3));
    assert_eq!(p.create_pods[3].container.args, ["3:acct-3"]);
    assert_eq!(p.create_pods[3].name, names::item_pod_name("wf", "uid-1", "each", 3, 1));
    assert_eq!(each(&w).item_count, Some(25));
    assert_eq!(each(&w).message.as_deref(), Some("0/25 items, 10 running"));
    world.apply(&p);
    // Finish the running Pods newest first, a few per pass: outputs still land in item order.
    let mut now = 1;
    while phase(&w) == WorkflowPhase::Running {
        let mut running = world.running();
        assert!(running.len() <= 10, "{} Pods in flight", running.len());
        running.reverse();
        for name in running.iter().take(3) {
            let index = name.split('-').nth(2).unwrap().to_string();
            world.finish(name, "Succeeded", 0, &format!(r#"{{"i": {index}}}"#));
        }
        let p = step(&mut w, &world.all(), &[], at(now));
        world.apply(&p);
        now += 1;
        assert!(now < 100, "the run never ended");
    }
    assert_eq!(phase(&w), WorkflowPhase::Succeeded);
    let st = each(&w);
    let outputs: Vec<serde_json::Value> = serde_json::from_str(&st.outputs["items"]).unwrap();
    let expected: Vec<serde_json::Value> = (0..25).map(|i| json!({"i": i.to_string()})).collect();
    assert_eq!(outputs, expected);
    assert!(st.items.iter().all(|i| i.outputs.is_empty() && i.started_at.is_none()), "moved, not copied");
    assert_eq!(w.status.as_ref().unwrap().progress.as_deref(), Some("1/1"), "a forEach is one step");
}

#[test]
fn when_is_decided_per_item_and_objects_are_addressed_by_field() {
    let list = r#"[{"id": "a", "review": true}, {"id": "b", "review": false}, {"id": "c", "review": true}]"#;
    let mut w = wf(json!({"steps": [{"name": "each", "forEach": {"list": list},
        "when": "item.review && index >= 0",
        "container": {"image": "x", "args": ["{{ item.id }}"]}}]}));
    let p = step(&mut w, &[], &[], t0());
    let args: Vec<_> = p.create_pods.iter().map(|r| (r.item, r.container.args[0].clone())).collect();
    assert_eq!(args, [(Some(0), "a".to_string()), (Some(2), "c".to_string())]);
    assert_eq!(each(&w).items[1].phase, StepPhase::Skipped);
    let done: Vec<Pod> = p.create_pods.iter().map(|r| pod(&r.name, "Succeeded", 0, "ok")).collect();
    step(&mut w, &done, &[], at(1));
    let outputs: serde_json::Value = serde_json::from_str(&each(&w).outputs["items"]).unwrap();
    assert_eq!(outputs, json!([{"result": "ok"}, null, {"result": "ok"}]));
}

#[test]
fn each_item_retries_on_its_own() {
    let mut w = fan_out("['a', 'b']", None, json!({"retries": 1, "retryPolicy": {"when": "item == 'a'"}}));
    let p = step(&mut w, &[], &[], t0());
    let (a, b) = (p.create_pods[0].name.clone(), p.create_pods[1].name.clone());
    let p = step(&mut w, &[pod(&a, "Failed", 1, "flaky"), pod(&b, "Running", 0, "")], &[], at(1));
    assert_eq!(p.create_pods.len(), 1);
    assert_eq!(p.create_pods[0].name, names::item_pod_name("wf", "uid-1", "each", 0, 2));
    assert_eq!(p.create_pods[0].container.args, ["0:a"], "the retry renders the same item");
    assert!(p.events.iter().any(|e| e.reason == "StepRetrying" && e.note.starts_with("step each item 0 ")));
    assert_eq!(each(&w).items[0].attempts, Some(2));
    let a2 = p.create_pods[0].name.clone();
    step(&mut w, &[pod(&a2, "Succeeded", 0, ""), pod(&b, "Failed", 1, "flaky")], &[], at(2));
    // retryPolicy.when sees the item: b is not retried.
    assert_eq!(each(&w).items[0].phase, StepPhase::Succeeded);
    assert_eq!((each(&w).items[1].phase, each(&w).items[1].attempts), (StepPhase::Failed, Some(1)));
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

#[test]
fn a_failed_item_stops_new_items_lets_running_ones_finish_and_fails_the_step() {
    let mut w = fan_out("params.accounts", Some(3), json!({}));
    let p = step(&mut w, &[], &[], t0());
    let names: Vec<String> = p.create_pods.iter().map(|r| r.name.clone()).collect();
    let p = step(
        &mut w,
        &[
            pod(&names[0], "Succeeded", 0, ""),
            pod(&names[1], "Failed", 3, "no such account"),
            pod(&names[2], "Running", 0, ""),
        ],
        &[],
        at(1),
    );
    assert!(p.create_pods.is_empty(), "no new item starts once one failed");
    assert_eq!(each(&w).phase, StepPhase::Running, "item 2 still runs");
    step(
        &mut w,
        &[
            pod(&names[0], "Succeeded", 0, ""),
            pod(&names[1], "Failed", 3, "no such account"),
            pod(&names[2], "Succeeded", 0, ""),
        ],
        &[],
        at(2),
    );
    let st = each(&w);
    assert_eq!(st.phase, StepPhase::Failed);
    assert_eq!(
        st.message.as_deref(),
        Some("item 1 failed (Error): exit code 3: no such account; 3/25 items, 1 failed")
    );
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

#[test]
fn bad_lists_fail_the_step_with_the_reason() {
    for (list, reason, says) in [
        ("params.accounts + 'x'", "ExpressionError", "not a JSON list"),
        ("{'a': 1}", "ExpressionError", "not a list"),
        ("params.many", "TooManyItems", "1001 items"),
    ] {
        let mut w = fan_out(list, None, json!({}));
        let many = serde_json::to_string(&vec![0; 1001]).unwrap();
        w.spec.params.push(hitl_api::workflow::Param { name: "many".into(), value: many });
        let p = step(&mut w, &[], &[], t0());
        assert!(p.create_pods.is_empty());
        let st = each(&w);
        assert_eq!((st.phase, st.reason.as_deref()), (StepPhase::Failed, Some(reason)), "{list}");
        assert!(st.message.as_deref().unwrap().contains(says), "{list}: {:?}", st.message);
    }
}

#[test]
fn an_empty_list_succeeds_with_no_items() {
    let mut w = fan_out("[]", None, json!({}));
    step(&mut w, &[], &[], t0());
    assert_eq!(phase(&w), WorkflowPhase::Succeeded);
    assert_eq!(each(&w).outputs["items"], "[]");
}

#[test]
fn a_list_from_a_step_the_fan_out_does_not_depend_on_is_an_invalid_spec() {
    let mut w = wf(json!({"steps": [
        {"name": "list", "dependsOn": [], "container": {"image": "x"}},
        {"name": "each", "dependsOn": [], "forEach": {"list": "steps.list.outputs.result"}, "container": {"image": "x"}},
    ]}));
    step(&mut w, &[], &[], t0());
    assert_eq!(w.status.as_ref().unwrap().reason.as_deref(), Some("InvalidSpec"));
    assert!(w.status.as_ref().unwrap().message.as_deref().unwrap().contains("does not depend on"));
}

#[test]
fn a_list_an_earlier_step_wrote_fans_out_after_it() {
    let mut w = wf(json!({"steps": [
        {"name": "list", "container": {"image": "x"}},
        {"name": "each", "forEach": {"list": "steps.list.outputs.result"}, "container": {"image": "x", "args": ["{{ item }}"]}},
    ]}));
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(p.create_pods.len(), 1, "{:?}", w.status.as_ref().unwrap().message);
    let list = pod(&p.create_pods[0].name, "Succeeded", 0, r#"["x", "y"]"#);
    let p = step(&mut w, std::slice::from_ref(&list), &[], at(1));
    assert_eq!(p.create_pods.iter().map(|r| r.container.args[0].as_str()).collect::<Vec<_>>(), ["x", "y"]);
}

fn gates(list: &str, parallelism: i32) -> Workflow {
    wf(json!({"steps": [{"name": "review", "forEach": {"list": list, "parallelism": parallelism},
        "suspend": {"message": "Review {{ item }} ({{ index }})", "approvers": {"users": ["alice"]}}}]}))
}

#[test]
fn one_gate_per_item_each_decided_on_its_own() {
    let mut w = gates("['a', 'b', 'c']", 10);
    let p = step(&mut w, &[], &[], t0());
    let reqs = p.create_approvals.clone();
    assert_eq!(reqs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["wf.review.0", "wf.review.1", "wf.review.2"]);
    assert_eq!(reqs[1].message.as_deref(), Some("Review b (1)"));
    assert_eq!(reqs[1].item, Some(1));
    assert_eq!(w.status.as_ref().unwrap().phase, Some(WorkflowPhase::Waiting));
    assert_eq!(w.status.as_ref().unwrap().waiting_for.as_deref(), Some("wf.review.0,wf.review.1,wf.review.2"));
    let mut approvals: Vec<Approval> = reqs.iter().map(pending).collect();
    // Decided in the order 2, 0, 1: the step waits until the last.
    for (n, i) in [2, 0, 1].into_iter().enumerate() {
        assert_eq!(each(&w).phase, StepPhase::Waiting);
        approvals[i] = decided(&reqs[i], ApprovalPhase::Approved, json!(null), "alice", at(n as i64 + 1));
        step(&mut w, &[], &approvals, at(n as i64 + 1));
    }
    assert_eq!(phase(&w), WorkflowPhase::Succeeded);
    let outputs: serde_json::Value = serde_json::from_str(&each(&w).outputs["items"]).unwrap();
    assert_eq!(outputs, json!([{"decision": "Approve"}, {"decision": "Approve"}, {"decision": "Approve"}]));
    assert_eq!(each(&w).items[2].decided_by.as_deref(), Some("alice"));
}

#[test]
fn a_rejected_item_fails_the_step_at_once_and_cancels_the_open_gates() {
    let mut w = gates("['a', 'b', 'c', 'd']", 3);
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(p.create_approvals.len(), 3, "parallelism bounds the open gates");
    let reqs = p.create_approvals.clone();
    let approvals = vec![
        pending(&reqs[0]),
        decided(&reqs[1], ApprovalPhase::Rejected, json!(null), "alice", at(1)),
        pending(&reqs[2]),
    ];
    let p = step(&mut w, &[], &approvals, at(1));
    assert!(p.create_approvals.is_empty(), "item 3 never opens");
    let mut cancelled = p.cancel_approvals.clone();
    cancelled.sort();
    assert_eq!(cancelled, ["wf.review.0", "wf.review.2"]);
    let st = each(&w);
    assert_eq!(st.phase, StepPhase::Failed);
    assert_eq!(st.reason.as_deref(), Some("Rejected"));
    assert!(
        st.message.as_deref().unwrap().starts_with("item 1 failed (Rejected): rejected by alice"),
        "{:?}",
        st.message
    );
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

#[test]
fn the_run_deadline_stops_items_in_flight() {
    let mut w = fan_out("params.accounts", Some(2), json!({}));
    w.spec.active_deadline_seconds = Some(10);
    let p = step(&mut w, &[], &[], t0());
    let running: Vec<Pod> = p.create_pods.iter().map(|r| pod(&r.name, "Running", 0, "")).collect();
    let p = step(&mut w, &running, &[], at(11));
    let mut deleted = p.delete_pods.clone();
    deleted.sort();
    let mut expected: Vec<String> = running.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(each(&w).phase, StepPhase::Failed);
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

#[test]
fn a_later_step_reads_the_items_outputs_by_index() {
    let mut w = wf(json!({"steps": [
        {"name": "review", "forEach": {"list": "['a', 'b', 'c']"},
         "suspend": {"inputs": [{"name": "keep", "type": "boolean", "required": true}]}},
        {"name": "revoke", "forEach": {"list": "['a', 'b', 'c']"}, "when": "steps.review.items[index].keep == 'false'",
         "container": {"image": "x", "args": ["revoke {{ item }}"]}},
    ]}));
    let p = step(&mut w, &[], &[], t0());
    let keep = [true, false, true];
    let approvals: Vec<Approval> = p
        .create_approvals
        .iter()
        .zip(keep)
        .map(|(r, k)| decided(r, ApprovalPhase::Approved, json!({"keep": k}), "alice", at(1)))
        .collect();
    let p = step(&mut w, &[], &approvals, at(1));
    assert_eq!(p.create_pods.iter().map(|r| r.container.args[0].as_str()).collect::<Vec<_>>(), ["revoke b"]);
}
