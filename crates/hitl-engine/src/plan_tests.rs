//! Table and property tests of `plan`: the semantics, without a cluster.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use serde_json::json;

use super::approval_request::ApprovalRequest;
use super::plan::{Plan, Refused, plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use hitl_api::{Approval, ApprovalPhase, ApprovalStatus, Decision, StepPhase, Workflow, WorkflowPhase};

fn wf(spec: serde_json::Value) -> Workflow {
    let mut w = Workflow::new("wf", serde_json::from_value(spec).expect("spec"));
    w.metadata.namespace = Some("ns".into());
    w.metadata.uid = Some("uid-1".into());
    w.metadata.generation = Some(1);
    w
}

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

fn pod(name: &str, phase: &str, exit: i32, message: &str) -> Pod {
    let terminated = matches!(phase, "Succeeded" | "Failed").then(|| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: exit,
            message: Some(message.into()),
            reason: Some(if exit == 0 { "Completed" } else { "Error" }.into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    Pod {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                state: terminated,
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// Runs one pass and stores the status, as the controller does.
fn step(w: &mut Workflow, pods: &[Pod], approvals: &[Approval], now: Timestamp) -> Plan {
    let p = plan(w, pods, approvals, now);
    w.status = Some(p.status.clone());
    p
}

fn phases(w: &Workflow) -> Vec<(String, StepPhase)> {
    w.status.as_ref().unwrap().steps.iter().map(|s| (s.name.clone(), s.phase)).collect()
}

fn phase(w: &Workflow) -> WorkflowPhase {
    w.status.as_ref().unwrap().phase.unwrap()
}

fn container(name: &str) -> serde_json::Value {
    json!({"name": name, "container": {"image": "busybox"}})
}

#[test]
fn a_plain_list_runs_in_sequence() {
    let mut w = wf(json!({"steps": [container("a"), container("b")]}));
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(p.create_pods.len(), 1);
    assert_eq!(p.create_pods[0].step, "a");
    assert_eq!(phase(&w), WorkflowPhase::Running);
    assert_eq!(condition(&w, "Reconciling"), "True", "kstatus sees it in progress");
    let a = pod(&p.create_pods[0].name, "Succeeded", 0, r#"{"n": 3}"#);
    let p = step(&mut w, std::slice::from_ref(&a), &[], at(1));
    assert_eq!(p.create_pods.iter().map(|r| r.step.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(w.status.as_ref().unwrap().steps[0].outputs["n"], "3");
    assert_eq!(w.status.as_ref().unwrap().progress.as_deref(), Some("1/2"));
    let b = pod(&p.create_pods[0].name, "Succeeded", 0, "");
    let p = step(&mut w, &[a, b], &[], at(2));
    assert!(p.create_pods.is_empty());
    assert_eq!(phase(&w), WorkflowPhase::Succeeded);
    let completed = w.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Completed").unwrap();
    assert_eq!((completed.status.as_str(), completed.reason.as_str()), ("True", "Succeeded"));
    assert!(p.events.iter().any(|e| e.reason == "WorkflowSucceeded"));
    assert_eq!(condition(&w, "Reconciling"), "False");
    assert_eq!(condition(&w, "Stalled"), "False");
}

/// A failed first step: the run is Failed, and nothing about it reads as success. The steps that
/// never ran do not count as progress.
#[test]
fn a_run_that_fails_at_once_is_failed_and_shows_what_ran() {
    let mut w = wf(json!({"steps": [container("a"), container("b"), container("c")]}));
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(w.status.as_ref().unwrap().progress.as_deref(), Some("0/3"));
    step(&mut w, &[pod(&p.create_pods[0].name, "Failed", 2, "boom")], &[], at(1));
    assert_eq!(phase(&w), WorkflowPhase::Failed);
    assert_eq!(w.status.as_ref().unwrap().progress.as_deref(), Some("1/3, failed at a"));
    assert_eq!(condition(&w, "Succeeded"), "False", "kubectl wait --for=condition=Succeeded must not return");
    assert_eq!(condition(&w, "Failed"), "True");
    assert_eq!(condition(&w, "Completed"), "True", "the run ended");
    let failed = w.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason, "StepFailed");
}

/// A step skipped by `when` did not run: a successful run says so instead of counting it.
#[test]
fn a_successful_run_with_a_skipped_step_counts_only_what_ran() {
    let mut w = wf(json!({"steps": [container("a"), {"name": "b", "when": "false", "container": {"image": "x"}}]}));
    let p = step(&mut w, &[], &[], t0());
    assert_eq!((condition(&w, "Succeeded"), condition(&w, "Failed")), ("False".into(), "False".into()));
    step(&mut w, &[pod(&p.create_pods[0].name, "Succeeded", 0, "")], &[], at(1));
    assert_eq!(phase(&w), WorkflowPhase::Succeeded);
    assert_eq!(w.status.as_ref().unwrap().progress.as_deref(), Some("1/2, 1 skipped"));
    assert_eq!((condition(&w, "Succeeded"), condition(&w, "Failed")), ("True".into(), "False".into()));
}

fn condition(w: &Workflow, type_: &str) -> String {
    w.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap().status.clone()
}

#[test]
fn depends_on_fans_out_and_in() {
    let mut w = wf(json!({"steps": [
        container("start"),
        {"name": "left", "dependsOn": ["start"], "container": {"image": "x"}},
        {"name": "right", "dependsOn": ["start"], "container": {"image": "x"}},
        {"name": "join", "dependsOn": ["left", "right"], "container": {"image": "x"}},
    ]}));
    let p = step(&mut w, &[], &[], t0());
    let start = pod(&p.create_pods[0].name, "Succeeded", 0, "");
    let p = step(&mut w, std::slice::from_ref(&start), &[], at(1));
    let started: Vec<_> = p.create_pods.iter().map(|r| r.step.clone()).collect();
    assert_eq!(started, ["left", "right"]);
    let left = pod(&p.create_pods[0].name, "Succeeded", 0, "");
    let right_running = pod(&p.create_pods[1].name, "Running", 0, "");
    let p2 = step(&mut w, &[start.clone(), left.clone(), right_running], &[], at(2));
    assert!(p2.create_pods.is_empty(), "join waits for right");
    let right = pod(&p.create_pods[1].name, "Succeeded", 0, "");
    let p3 = step(&mut w, &[start, left, right], &[], at(3));
    assert_eq!(p3.create_pods[0].step, "join");
}

#[test]
fn outputs_flow_into_later_args_and_when_skips() {
    let mut w = wf(json!({"params": [{"name": "doc", "value": "a.pdf"}], "steps": [
        container("scan"),
        {"name": "maybe", "when": "int(steps.scan.outputs.flagged) > 5", "container": {"image": "x"}},
        {"name": "sign", "dependsOn": ["maybe"], "container": {"image": "x", "args": ["{{ params.doc }}: {{ steps.scan.outputs.flagged }} {{ steps.maybe.phase }}"]}},
    ]}));
    let p = step(&mut w, &[], &[], t0());
    let scan = pod(&p.create_pods[0].name, "Succeeded", 0, r#"{"flagged": 3}"#);
    let p = step(&mut w, &[scan], &[], at(1));
    assert_eq!(phases(&w)[1].1, StepPhase::Skipped);
    assert_eq!(p.create_pods[0].container.args, ["a.pdf: 3 Skipped"]);
}

#[test]
fn retries_then_succeeds_with_a_new_pod_per_attempt() {
    let mut w = wf(json!({"steps": [{"name": "flaky", "retries": 2, "container": {"image": "x"}}]}));
    let p1 = step(&mut w, &[], &[], t0());
    let f1 = pod(&p1.create_pods[0].name, "Failed", 1, "boom");
    let p2 = step(&mut w, std::slice::from_ref(&f1), &[], at(1));
    assert_eq!(p2.create_pods[0].attempt, 2);
    assert_ne!(p2.create_pods[0].name, p1.create_pods[0].name);
    assert!(p2.events.iter().any(|e| e.reason == "StepRetrying"));
    let ok = pod(&p2.create_pods[0].name, "Succeeded", 0, "");
    step(&mut w, &[f1, ok], &[], at(2));
    assert_eq!(phase(&w), WorkflowPhase::Succeeded);
    assert_eq!(w.status.as_ref().unwrap().steps[0].attempts, Some(2));
}

#[test]
fn exhausted_retries_fail_the_run_and_omit_dependents() {
    let mut w = wf(json!({"steps": [
        {"name": "a", "retries": 1, "container": {"image": "x"}},
        container("b"),
        {"name": "c", "dependsOn": [], "sleep": "1h"},
    ]}));
    let p1 = step(&mut w, &[], &[], t0());
    let f1 = pod(&p1.create_pods[0].name, "Failed", 3, "bad input");
    let p2 = step(&mut w, std::slice::from_ref(&f1), &[], at(1));
    let f2 = pod(&p2.create_pods[0].name, "Failed", 3, "bad input");
    let p3 = step(&mut w, &[f1, f2], &[], at(2));
    assert!(p3.create_pods.is_empty());
    assert_eq!(
        phases(&w).iter().map(|p| p.1).collect::<Vec<_>>(),
        [StepPhase::Failed, StepPhase::Omitted, StepPhase::Omitted]
    );
    assert_eq!(phase(&w), WorkflowPhase::Failed);
    assert_eq!(condition(&w, "Stalled"), "True", "kstatus sees the failure");
    let st = &w.status.as_ref().unwrap().steps[0];
    assert_eq!(st.message.as_deref(), Some("exit code 3: bad input"));
    assert!(w.status.as_ref().unwrap().message.as_deref().unwrap().contains("step a failed"));
}

#[test]
fn a_running_sibling_finishes_before_the_run_fails() {
    let mut w = wf(json!({"steps": [
        {"name": "a", "dependsOn": [], "container": {"image": "x"}},
        {"name": "b", "dependsOn": [], "container": {"image": "x"}},
    ]}));
    let p = step(&mut w, &[], &[], t0());
    let a = pod(&p.create_pods[0].name, "Failed", 1, "");
    let b_running = pod(&p.create_pods[1].name, "Running", 0, "");
    step(&mut w, &[a.clone(), b_running], &[], at(1));
    assert_eq!(phase(&w), WorkflowPhase::Running);
    assert_eq!(w.status.as_ref().unwrap().reason.as_deref(), Some("Failing"));
    let b = pod(&p.create_pods[1].name, "Succeeded", 0, "");
    step(&mut w, &[a, b], &[], at(2));
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

#[test]
fn an_attempt_that_runs_too_long_is_stopped() {
    let mut w = wf(json!({"steps": [{"name": "slow", "timeoutSeconds": 10, "container": {"image": "x"}}]}));
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(p.requeue_at, Some(at(10)));
    let running = pod(&p.create_pods[0].name, "Running", 0, "");
    let p = step(&mut w, std::slice::from_ref(&running), &[], at(5));
    assert!(p.delete_pods.is_empty());
    let p = step(&mut w, &[running], &[], at(10));
    assert_eq!(p.delete_pods.len(), 1);
    assert_eq!(w.status.as_ref().unwrap().steps[0].reason.as_deref(), Some("Timeout"));
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

/// A Pending Pod whose container waits with `reason`, as the kubelet reports it.
fn waiting_pod(name: &str, reason: &str) -> Pod {
    let mut p = pod(name, "Pending", 0, "");
    let status = p.status.as_mut().unwrap().container_statuses.as_mut().unwrap();
    status[0].state = Some(ContainerState {
        waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some("image \"nope:1\" is not here".into()),
        }),
        ..Default::default()
    });
    p
}

#[test]
fn a_container_that_can_never_start_fails_its_attempt() {
    for reason in ["ErrImageNeverPull", "InvalidImageName", "ImagePullBackOff"] {
        let mut w = wf(json!({"steps": [{"name": "s", "retries": 1, "container": {"image": "nope:1"}}]}));
        let p = step(&mut w, &[], &[], t0());
        let first = waiting_pod(&p.create_pods[0].name, reason);
        let p = step(&mut w, std::slice::from_ref(&first), &[], at(1));
        assert_eq!(p.delete_pods, [first.metadata.name.clone().unwrap()], "{reason}: the stuck Pod goes");
        assert_eq!(p.create_pods.len(), 1, "{reason}: retried like any failed attempt");
        let second = waiting_pod(&p.create_pods[0].name, reason);
        step(&mut w, &[first, second], &[], at(2));
        let s = &w.status.as_ref().unwrap().steps[0];
        assert_eq!((s.phase, s.reason.as_deref()), (StepPhase::Failed, Some(reason)));
        assert!(s.message.as_deref().unwrap().contains("container main: "), "{:?}", s.message);
    }
    // Waiting to be created or for a pull in progress is not stuck.
    for reason in ["ContainerCreating", "ErrImagePull", "PodInitializing"] {
        let mut w = wf(json!({"steps": [{"name": "s", "container": {"image": "x"}}]}));
        let p = step(&mut w, &[], &[], t0());
        let p = step(&mut w, &[waiting_pod(&p.create_pods[0].name, reason)], &[], at(1));
        assert!(p.delete_pods.is_empty(), "{reason}");
        assert_eq!(w.status.as_ref().unwrap().steps[0].phase, StepPhase::Running, "{reason}");
    }
}

#[test]
fn a_vanished_pod_is_a_failed_attempt() {
    let mut w = wf(json!({"steps": [{"name": "a", "retries": 1, "container": {"image": "x"}}]}));
    step(&mut w, &[], &[], t0());
    let p = step(&mut w, &[], &[], at(1));
    assert_eq!(w.status.as_ref().unwrap().steps[0].reason.as_deref(), Some("PodDeleted"));
    assert_eq!(p.create_pods[0].attempt, 2);
    step(&mut w, &[], &[], at(2));
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

#[test]
fn sleep_requeues_at_its_end() {
    let mut w = wf(json!({"steps": [{"name": "nap", "sleep": "30s"}, container("after")]}));
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(p.requeue_at, Some(at(30)));
    let p = step(&mut w, &[], &[], at(29));
    assert!(p.create_pods.is_empty());
    let p = step(&mut w, &[], &[], at(30));
    assert_eq!(p.create_pods[0].step, "after");
}

#[test]
fn suspend_pauses_new_steps_only() {
    let mut w = wf(json!({"suspend": true, "steps": [container("a")]}));
    let p = step(&mut w, &[], &[], t0());
    assert!(p.create_pods.is_empty());
    assert_eq!(phase(&w), WorkflowPhase::Pending);
    w.spec.suspend = false;
    let p = step(&mut w, &[], &[], at(1));
    assert_eq!(p.create_pods.len(), 1);
}

#[test]
fn the_run_deadline_stops_everything() {
    let mut w = wf(json!({"activeDeadlineSeconds": 60, "steps": [container("a"), container("b")]}));
    let p = step(&mut w, &[], &[], t0());
    let running = pod(&p.create_pods[0].name, "Running", 0, "");
    let p = step(&mut w, &[running], &[], at(60));
    assert_eq!(p.delete_pods.len(), 1);
    assert_eq!(phase(&w), WorkflowPhase::Failed);
    assert_eq!(w.status.as_ref().unwrap().reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(phases(&w)[1].1, StepPhase::Omitted);
}

#[test]
fn invalid_specs_fail_before_any_pod() {
    let cases = [
        (
            json!({"steps": [{"name": "a", "dependsOn": ["b"], "container": {"image": "x"}}, {"name": "b", "dependsOn": ["a"], "container": {"image": "x"}}]}),
            "cycle",
        ),
        (json!({"steps": [{"name": "a", "when": "1 +", "container": {"image": "x"}}]}), "step a: when:"),
        (
            json!({"steps": [{"name": "a", "container": {"image": "x", "args": ["{{ steps. }}"]}}]}),
            "step a: container.args[0]",
        ),
        (json!({"steps": [{"name": "a", "suspend": {"message": "{{ x"}}]}), "step a: suspend.message"),
        (
            json!({"volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
                   "steps": [{"name": "a", "container": {"image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/n"}]}}]}),
            "step a: container.volumeMounts: volume nope is not declared in spec.volumes",
        ),
        (
            json!({"steps": [{"name": "a", "container": {"image": "x", "workspace": true}}]}),
            "step a: container.volumeMounts: container.workspace: true needs spec.workspace",
        ),
        (
            json!({"volumes": [{"name": "v", "emptyDir": {}}],
                   "steps": [{"name": "a", "container": {"image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "../etc"}]}}]}),
            "step a: container.volumeMounts: volume v: subPath must not contain",
        ),
        (
            json!({"steps": [{"name": "a", "suspend": {"inputs": [{"name": "p", "type": "integer", "default": "x"}]}}]}),
            "the default",
        ),
    ];
    for (spec, want) in cases {
        let mut w = wf(spec);
        let p = step(&mut w, &[], &[], t0());
        assert!(p.create_pods.is_empty() && p.create_approvals.is_empty());
        let st = w.status.as_ref().unwrap();
        assert_eq!(st.phase, Some(WorkflowPhase::Failed));
        assert_eq!(st.reason.as_deref(), Some("InvalidSpec"));
        assert!(st.message.as_deref().unwrap().contains(want), "{:?} lacks {want}", st.message);
    }
}

#[test]
fn the_workspace_is_claimed_once_before_the_first_pod_and_named_in_the_status() {
    let ws = json!({"volumeClaimTemplate": {"resources": {"requests": {"storage": "1Gi"}}}});
    let mut w = wf(json!({"workspace": ws, "steps": [
        {"name": "gate", "suspend": {}},
        {"name": "a", "container": {"image": "x", "workspace": true}}]}));
    let first = step(&mut w, &[], &[], t0());
    let name = crate::names::workspace_claim_name("wf", "uid-1");
    assert_eq!(first.create_workspace.as_deref(), Some(name.as_str()), "claimed as the run starts, before any Pod");
    assert!(first.create_pods.is_empty());
    assert_eq!(w.status.as_ref().unwrap().workspace_claim_name.as_deref(), Some(name.as_str()));
    assert_eq!(step(&mut w, &[], &[], at(1)).create_workspace, None, "once");
    // No workspace asked for, none claimed; an invalid spec claims none either.
    let mut plain = wf(json!({"steps": [{"name": "a", "container": {"image": "x"}}]}));
    assert_eq!(step(&mut plain, &[], &[], t0()).create_workspace, None);
    let mut invalid = wf(json!({"workspace": ws, "steps": [{"name": "a", "sleep": "soon"}]}));
    assert_eq!(step(&mut invalid, &[], &[], t0()).create_workspace, None);
}

#[test]
fn ttl_deletes_after_the_end() {
    let mut w = wf(json!({"ttlSecondsAfterFinished": 100, "steps": [{"name": "z", "sleep": "0s"}]}));
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(phase(&w), WorkflowPhase::Succeeded);
    assert_eq!(p.requeue_at, Some(at(100)));
    assert!(!step(&mut w, &[], &[], at(99)).delete_workflow);
    assert!(step(&mut w, &[], &[], at(100)).delete_workflow);
}

/// The Approval the controller creates for `req`, after `decided_by` decided it and the Approval
/// controller recorded that at `seen`.
fn decided(
    req: &ApprovalRequest,
    phase: ApprovalPhase,
    input: serde_json::Value,
    decided_by: &str,
    seen: Timestamp,
) -> Approval {
    let mut a = Approval::new(&req.name, req.spec());
    a.spec.input = serde_json::from_value(input).unwrap();
    a.spec.decision = match phase {
        ApprovalPhase::Approved if a.spec.input.is_none() => Some(Decision::Approve),
        ApprovalPhase::Rejected => Some(Decision::Reject),
        _ => None,
    };
    let who = (!decided_by.is_empty()).then(|| decided_by.to_string());
    if a.spec.decision.is_some() || a.spec.input.is_some() {
        a.spec.decided_by = who.clone();
        a.spec.comment = Some("checked clause 7".into());
    }
    let decision_seen = matches!(phase, ApprovalPhase::Approved | ApprovalPhase::Rejected).then(|| Time(seen));
    a.status =
        Some(ApprovalStatus { phase: Some(phase), decided_by: who, decided_at: decision_seen, ..Default::default() });
    a
}

fn pending(req: &ApprovalRequest) -> Approval {
    decided(req, ApprovalPhase::Pending, json!(null), "", t0())
}

fn gate_workflow() -> Workflow {
    gate_workflow_with(json!({}))
}

/// The review gate, with `extra` merged into its `suspend`.
fn gate_workflow_with(extra: serde_json::Value) -> Workflow {
    let mut suspend = json!({
        "message": "Review {{ params.doc }}",
        "approvers": {"users": ["alice"]},
        "inputs": [{"name": "verdict", "enum": ["sign", "reject"], "required": true},
                   {"name": "priority", "type": "integer", "default": 3}],
        "timeoutSeconds": 3600});
    suspend.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    wf(json!({"params": [{"name": "doc", "value": "acme.pdf"}], "steps": [
        {"name": "review", "suspend": suspend},
        {"name": "sign", "when": "steps.review.outputs.verdict == 'sign'",
         "container": {"image": "x", "args": ["{{ steps.review.decidedBy }} p{{ steps.review.outputs.priority }}"]}},
    ]}))
}

/// Opens the gate of `w` at t0 and returns the request the controller creates the Approval from.
fn open(w: &mut Workflow) -> ApprovalRequest {
    let p = step(w, &[], &[], t0());
    assert_eq!(p.create_approvals.len(), 1);
    p.create_approvals[0].clone()
}

fn review(w: &Workflow) -> &hitl_api::StepStatus {
    &w.status.as_ref().unwrap().steps[0]
}

#[test]
fn a_gate_waits_then_resumes_on_approval() {
    let mut w = gate_workflow();
    let req = open(&mut w);
    assert_eq!(req.name, "wf.review");
    assert_eq!(req.message.as_deref(), Some("Review acme.pdf"));
    assert_eq!(req.expires_at, Some(Time(at(3600))), "the deadline is the step's start plus the timeout");
    assert_eq!(phase(&w), WorkflowPhase::Waiting);
    assert_eq!(w.status.as_ref().unwrap().waiting_for.as_deref(), Some("wf.review"));
    let waiting = w.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Waiting").unwrap();
    assert_eq!(waiting.status, "True");

    let p = step(&mut w, &[], &[pending(&req)], at(1));
    assert!(p.create_pods.is_empty() && p.create_approvals.is_empty());

    let approved = decided(&req, ApprovalPhase::Approved, json!({"verdict": "sign"}), "alice", at(2));
    let p = step(&mut w, &[], &[approved], at(2));
    assert_eq!(review(&w).phase, StepPhase::Succeeded);
    assert_eq!(
        review(&w).outputs,
        BTreeMap::from([
            ("decision".into(), "Approve".into()),
            ("priority".into(), "3".into()),
            ("verdict".into(), "sign".into())
        ])
    );
    assert_eq!(p.create_pods[0].container.args, ["alice p3"]);
}

#[test]
fn a_deleted_approval_is_opened_again_with_the_same_deadline() {
    let mut w = gate_workflow();
    let req = open(&mut w);
    let p = step(&mut w, &[], &[], at(600));
    assert_eq!(p.create_approvals, [req], "the same gate, deadline included: deleting it restarts no clock");
}

#[test]
fn rejection_and_expiry_are_told_apart() {
    let mut w = gate_workflow();
    let req = open(&mut w);
    step(&mut w, &[], &[decided(&req, ApprovalPhase::Rejected, json!(null), "alice", at(1))], at(1));
    assert_eq!((review(&w).phase, review(&w).reason.as_deref()), (StepPhase::Failed, Some("Rejected")));
    assert_eq!(review(&w).message.as_deref(), Some("rejected by alice: checked clause 7"));
    assert_eq!(phase(&w), WorkflowPhase::Failed);

    let mut w = gate_workflow();
    let req = open(&mut w);
    let expired = decided(&req, ApprovalPhase::Expired, json!(null), "", t0());
    step(&mut w, &[], std::slice::from_ref(&expired), at(3600));
    assert_eq!((review(&w).phase, review(&w).reason.as_deref()), (StepPhase::Failed, Some("ApprovalExpired")));
    assert_eq!(review(&w).outputs["decision"], "Expired");

    // onTimeout comes from the Workflow's step, never from the Approval.
    let mut w = gate_workflow_with(json!({"onTimeout": "Approve"}));
    let req = open(&mut w);
    step(&mut w, &[], &[decided(&req, ApprovalPhase::Expired, json!(null), "", t0())], at(3600));
    assert_eq!(review(&w).phase, StepPhase::Succeeded);
    assert_eq!(review(&w).outputs["decision"], "Expired");
    assert_eq!(review(&w).outputs["priority"], "3");
}

/// Each forgery the Workflow controller must not act on, with the reason it gives.
#[test]
fn an_approval_that_does_not_hold_up_is_never_acted_on() {
    let mut w = gate_workflow();
    let req = open(&mut w);
    let approve = |input: serde_json::Value, by: &str| decided(&req, ApprovalPhase::Approved, input, by, at(5));
    let mut laxer = approve(json!({"verdict": "sign"}), "bob");
    laxer.spec.gate.approvers = None;
    let mut no_spec_decision = approve(json!({"verdict": "sign"}), "alice");
    no_spec_decision.spec.input = None;
    let mut other_decider = approve(json!({"verdict": "sign"}), "alice");
    other_decider.status.as_mut().unwrap().decided_by = Some("mallory".into());
    let mut seen_late = approve(json!({"verdict": "sign"}), "alice");
    seen_late.status.as_mut().unwrap().decided_at = Some(Time(at(3601)));
    let mut longer = pending(&req);
    longer.spec.gate.timeout_seconds = Some(999_999);
    let cases = [
        (laxer, "approvers differ"),
        (approve(json!({"verdict": "sign"}), "bob"), "bob is not among the approvers (alice)"),
        (no_spec_decision, "its spec holds no such decision"),
        (other_decider, "the decider in its status differs"),
        (seen_late, "not seen before the gate expired"),
        (approve(json!({"verdict": "maybe"}), "alice"), "input verdict: must be one of"),
        (decided(&req, ApprovalPhase::Expired, json!(null), "", t0()), "marked Expired before the deadline"),
        (longer, "timeoutSeconds differ"),
    ];
    for (a, why) in cases {
        let mut w = w.clone();
        let mut a = a;
        if a.status.as_ref().unwrap().phase == Some(ApprovalPhase::Pending) {
            a.status.as_mut().unwrap().phase = Some(ApprovalPhase::Approved);
        }
        let p = step(&mut w, &[], &[a], at(10));
        assert_eq!(review(&w).phase, StepPhase::Waiting, "{why}");
        assert_eq!(review(&w).reason.as_deref(), Some("DecisionNotAccepted"), "{why}");
        assert!(p.create_pods.is_empty(), "{why}");
        let told = p.events.iter().find(|e| e.reason == "DecisionNotAccepted").map(|e| e.note.clone());
        assert!(told.as_deref().is_some_and(|n| n.contains(why)), "want {why:?}, told {told:?}");
    }
}

/// An escalation approver counts only for a decision seen after an escalation that came no
/// earlier than the step's own escalation time.
#[test]
fn an_escalation_approver_counts_only_after_the_escalation() {
    let escalation = json!({"notify": {"escalation": {"afterSeconds": 60, "approvers": {"users": ["bob"]}}}});
    let w = gate_workflow_with(escalation);
    let mut opened = w.clone();
    let req = open(&mut opened);
    assert_eq!(req.escalates_at, Some(Time(at(60))));
    let by_bob = |escalated: Option<i64>, seen: i64| {
        let mut a = decided(&req, ApprovalPhase::Approved, json!({"verdict": "sign"}), "bob", at(seen));
        a.status.as_mut().unwrap().escalated_at = escalated.map(|s| Time(at(s)));
        let mut w = opened.clone();
        step(&mut w, &[], &[a], at(seen + 1));
        (review(&w).phase, review(&w).reason.clone())
    };
    let refused = (StepPhase::Waiting, Some("DecisionNotAccepted".to_string()));
    assert_eq!(by_bob(None, 70), refused, "never escalated");
    assert_eq!(by_bob(Some(30), 70), refused, "escalated before its time");
    assert_eq!(by_bob(Some(65), 62), refused, "decided before the escalation");
    assert_eq!(by_bob(Some(61), 70).0, StepPhase::Succeeded);
}

#[test]
fn a_group_approver_counts_only_with_the_group_recorded() {
    let mut w = gate_workflow_with(json!({"approvers": {"groups": ["legal"]}}));
    let req = open(&mut w);
    let mut a = decided(&req, ApprovalPhase::Approved, json!({"verdict": "sign"}), "carol", at(5));
    let mut without = w.clone();
    step(&mut without, &[], std::slice::from_ref(&a), at(5));
    assert_eq!(review(&without).phase, StepPhase::Waiting, "no group evidence");
    a.spec.decided_by_groups = vec!["legal".into()];
    step(&mut w, &[], &[a], at(5));
    assert_eq!((review(&w).phase, review(&w).decided_by.as_deref()), (StepPhase::Succeeded, Some("carol")));
}

#[test]
fn the_creator_may_not_decide_a_gate_that_forbids_self_approval() {
    let mut w = gate_workflow_with(json!({"selfApproval": "Forbid", "approvers": {"users": ["alice", "carol"]}}));
    w.metadata.annotations = Some([(hitl_api::ANNOTATION_CREATED_BY.to_string(), "alice".to_string())].into());
    let req = open(&mut w);
    assert_eq!(req.workflow.created_by.as_deref(), Some("alice"));
    let mut by_creator = w.clone();
    step(
        &mut by_creator,
        &[],
        &[decided(&req, ApprovalPhase::Approved, json!({"verdict": "sign"}), "alice", at(5))],
        at(5),
    );
    assert_eq!(review(&by_creator).phase, StepPhase::Waiting);
    step(&mut w, &[], &[decided(&req, ApprovalPhase::Approved, json!({"verdict": "sign"}), "carol", at(5))], at(5));
    assert_eq!(review(&w).phase, StepPhase::Succeeded);
}

/// A CronWorkflow's run is created by the operator; whoever wrote the CronWorkflow counts as a
/// creator too, so a schedule does not launder who may approve.
#[test]
fn the_author_of_a_scheduled_run_may_not_decide_its_gate_either() {
    let mut w = gate_workflow_with(json!({"selfApproval": "Forbid", "approvers": {"users": ["carol", "dave"]}}));
    w.metadata.annotations = Some(
        [
            (hitl_api::ANNOTATION_CREATED_BY.to_string(), "system:serviceaccount:hitl-system:op".to_string()),
            (hitl_api::workflow::ANNOTATION_AUTHORS.to_string(), "carol".to_string()),
        ]
        .into(),
    );
    let req = open(&mut w);
    assert_eq!(req.workflow.authors, ["carol"]);
    let mut by_author = w.clone();
    let carols = decided(&req, ApprovalPhase::Approved, json!({"verdict": "sign"}), "carol", at(5));
    step(&mut by_author, &[], &[carols], at(5));
    assert_eq!(review(&by_author).phase, StepPhase::Waiting);
    step(&mut w, &[], &[decided(&req, ApprovalPhase::Approved, json!({"verdict": "sign"}), "dave", at(5))], at(5));
    assert_eq!(review(&w).phase, StepPhase::Succeeded);
}

#[test]
fn outputs_beyond_the_limit_fail_the_step() {
    let mut w = wf(json!({"steps": [{"name": "a", "container": {"image": "x"}}]}));
    let p = step(&mut w, &[], &[], t0());
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(super::outputs::MAX_OUTPUT_BYTES));
    step(&mut w, &[pod(&p.create_pods[0].name, "Succeeded", 0, &big)], &[], at(1));
    let a = &w.status.as_ref().unwrap().steps[0];
    assert_eq!((a.phase, a.reason.as_deref()), (StepPhase::Failed, Some("OutputsTooLarge")));
    assert!(a.outputs.is_empty());
}

#[test]
fn a_status_too_large_fails_the_run_and_drops_what_made_it_large() {
    let mut w = gate_workflow();
    let req = open(&mut w);
    let mut planned = w.status.clone().unwrap();
    planned.steps[0].outputs.insert("blob".into(), "x".repeat(4000));
    let (status, waiting) = super::plan::too_large(&w, &planned, at(5));
    assert_eq!((status.phase, status.reason.as_deref()), (Some(WorkflowPhase::Failed), Some("StatusTooLarge")));
    assert!(status.steps.iter().all(|s| s.outputs.is_empty() && s.phase.is_terminal()));
    assert_eq!(waiting, [req.name], "the waiting gate is cancelled");
    let completed = status.conditions.iter().find(|c| c.type_ == "Completed").unwrap();
    assert_eq!((completed.status.as_str(), completed.reason.as_str()), ("True", "Failed"));
}

fn with_finalizer(mut p: Pod) -> Pod {
    p.metadata.finalizers = Some(vec![super::names::FINALIZER_OUTCOME.into()]);
    p
}

#[test]
fn a_pods_finalizer_goes_once_its_outcome_is_recorded() {
    let mut w =
        wf(json!({"steps": [{"name": "a", "container": {"image": "x"}}, {"name": "b", "container": {"image": "x"}}]}));
    let first = step(&mut w, &[], &[], t0()).create_pods[0].name.clone();
    let running = with_finalizer(pod(&first, "Running", 0, ""));
    assert!(step(&mut w, std::slice::from_ref(&running), &[], at(1)).release_pods.is_empty(), "still running");
    let done = with_finalizer(pod(&first, "Succeeded", 0, r#"{"n": 1}"#));
    let p = step(&mut w, &[done], &[], at(2));
    assert_eq!(p.release_pods, [first]);
    assert!(p.delete_pods.is_empty(), "podGC Never keeps Pods");
}

#[test]
fn pod_gc_deletes_what_its_strategy_says_when_it_says() {
    let two = |strategy: &str| {
        wf(json!({"podGC": {"strategy": strategy},
                  "steps": [{"name": "a", "container": {"image": "x"}}, {"name": "b", "container": {"image": "x"}}]}))
    };
    let run = |strategy: &str| -> Vec<Vec<String>> {
        let mut w = two(strategy);
        let a = step(&mut w, &[], &[], t0()).create_pods[0].name.clone();
        let p1 = step(&mut w, &[pod(&a, "Succeeded", 0, "")], &[], at(1));
        let b = p1.create_pods[0].name.clone();
        let p2 = step(&mut w, &[pod(&b, "Succeeded", 0, "")], &[], at(2));
        vec![p1.delete_pods, p2.delete_pods, vec![a, b]]
    };
    let [first, second, names] = <[Vec<String>; 3]>::try_from(run("OnPodSuccess")).unwrap();
    assert_eq!((first, second), (vec![names[0].clone()], vec![names[1].clone()]));
    let [first, second, names] = <[Vec<String>; 3]>::try_from(run("OnWorkflowCompletion")).unwrap();
    assert_eq!((first, second), (vec![], names.clone()), "all at the end, none before");
    let [first, second, _] = <[Vec<String>; 3]>::try_from(run("Never")).unwrap();
    assert!(first.is_empty() && second.is_empty());
}

/// The plan's Pod is its gate's evidence: podGC leaves it while the gate waits (the approver reads
/// its log), and deletes it in the pass that records the decision; the Approval names the Pod and
/// copies the plan's outputs.
#[test]
fn an_evidence_pod_outlives_pod_gc_until_its_gate_is_decided() {
    let mut w = wf(json!({"podGC": {"strategy": "OnPodSuccess"}, "steps": [
        {"name": "plan", "container": {"image": "x"}},
        {"name": "apply", "suspend": {"approvers": {"users": ["alice"]}, "evidence": [{"step": "plan", "logs": true}]}}]}));
    let plan = step(&mut w, &[], &[], t0()).create_pods[0].name.clone();
    let finished = step(&mut w, &[pod(&plan, "Succeeded", 0, r#"{"adds": "3"}"#)], &[], at(1));
    assert!(finished.delete_pods.is_empty(), "held for the gate: {:?}", finished.delete_pods);
    let opened = step(&mut w, &[pod(&plan, "Succeeded", 0, r#"{"adds": "3"}"#)], &[], at(2));
    let req = opened.create_approvals[0].clone();
    // The gate opened in the pass that saw the plan finish: it already carries the plan's outputs,
    // so it matches what every later pass expects.
    assert_eq!(finished.create_approvals, std::slice::from_ref(&req));
    assert_eq!(req.evidence_pods[0].pod.as_deref(), Some(plan.as_str()));
    assert_eq!(req.evidence_pods[0].outputs.as_deref(), Some(r#"{"adds":"3"}"#));
    assert!(opened.delete_pods.is_empty());
    let approved = decided(&req, ApprovalPhase::Approved, json!(null), "alice", at(3));
    let after = step(&mut w, &[pod(&plan, "Succeeded", 0, "")], &[approved], at(3));
    assert_eq!(after.delete_pods, [plan], "released once decided");
}

// ---- properties over random DAGs and random outcomes ----

#[derive(Debug, Clone)]
struct Case {
    deps: Vec<Option<Vec<usize>>>,
    retries: Vec<i32>,
    outcomes: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..8).prop_flat_map(|n| {
        let deps = (0..n)
            .map(|i| {
                prop::option::of(prop::collection::vec(0..i.max(1), 0..=i.min(3)))
                    .prop_map(move |d| if i == 0 { d.map(|_| vec![]) } else { d })
            })
            .collect::<Vec<_>>();
        (deps, prop::collection::vec(0..3i32, n), prop::collection::vec(any::<u8>(), 64))
            .prop_map(|(deps, retries, outcomes)| Case { deps, retries, outcomes })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_run_ends_in_order_without_duplicates(c in case()) {
        let steps: Vec<_> = c.deps.iter().enumerate().map(|(i, d)| {
            let mut s = json!({"name": format!("s{i}"), "retries": c.retries[i], "container": {"image": "x"}});
            if let Some(d) = d {
                let mut names: Vec<String> = d.iter().map(|j| format!("s{j}")).collect();
                names.sort();
                names.dedup();
                s["dependsOn"] = json!(names);
            }
            s
        }).collect();
        let mut w = wf(json!({"steps": steps}));
        let deps_of = |w: &Workflow, i: usize| -> Vec<usize> {
            match &w.spec.steps[i].depends_on {
                None if i == 0 => vec![],
                None => vec![i - 1],
                Some(d) => d.iter().map(|n| n[1..].parse().unwrap()).collect(),
            }
        };
        let mut pods: Vec<Pod> = vec![];
        let mut outcomes = c.outcomes.iter().cycle();
        let mut ended = false;
        for round in 0..200i64 {
            let before = w.status.clone().unwrap_or_default();
            let p = step(&mut w, &pods, &[], at(round));
            let after = w.status.clone().unwrap();
            // A terminal phase never changes.
            for (b, a) in before.steps.iter().zip(&after.steps) {
                if b.phase.is_terminal() { prop_assert_eq!(b.phase, a.phase); }
            }
            if before.phase.is_some_and(WorkflowPhase::is_terminal) { prop_assert_eq!(before.phase, after.phase); }
            for req in &p.create_pods {
                // At most one Pod per attempt.
                prop_assert!(!pods.iter().any(|x| x.metadata.name.as_deref() == Some(req.name.as_str())));
                // No step starts before its dependencies finished well.
                let i: usize = req.step[1..].parse().unwrap();
                for d in deps_of(&w, i) {
                    prop_assert!(after.steps[d].phase.satisfies_dependency(), "s{i} started before s{d}");
                }
                pods.push(pod(&req.name, "Running", 0, ""));
            }
            if after.phase.is_some_and(WorkflowPhase::is_terminal) { ended = true; break; }
            // Finish one running Pod: succeed, fail, or vanish.
            if let Some(idx) = pods.iter().position(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running")) {
                let name = pods[idx].metadata.name.clone().unwrap();
                match outcomes.next().unwrap() % 5 {
                    0 => { pods.remove(idx); }
                    1 | 2 => pods[idx] = pod(&name, "Failed", 1, ""),
                    _ => pods[idx] = pod(&name, "Succeeded", 0, "{}"),
                }
            }
        }
        prop_assert!(ended, "the run did not end: {:?}", w.status);
    }
}

#[test]
fn a_sleep_is_never_cut_short_by_second_precision_timestamps() {
    let mut w = wf(json!({"steps": [{"name": "nap", "sleep": "1s"}]}));
    let start = t0() + SignedDuration::from_millis(900);
    let p = step(&mut w, &[], &[], start);
    // Through the API the status loses its fraction of a second.
    w.status = serde_json::from_value(serde_json::to_value(&p.status).unwrap()).unwrap();
    assert!(p.requeue_at.unwrap() >= start + SignedDuration::from_secs(1));
    step(&mut w, &[], &[], start + SignedDuration::from_millis(999));
    assert_eq!(phases(&w)[0].1, StepPhase::Running, "woke early");
    step(&mut w, &[], &[], p.requeue_at.unwrap());
    assert_eq!(phases(&w)[0].1, StepPhase::Succeeded);
}

#[test]
fn a_refused_create_fails_the_step_and_then_the_run() {
    let mut w = wf(json!({"steps": [container("a"), container("b")]}));
    let refused = Refused { step: "a".into(), item: None, reason: "PodCreateFailed", message: "refused".into() };
    let p = plan(&w, &[], &[], t0()).with_refused(vec![refused], t0());
    w.status = Some(p.status.clone());
    assert!(p.events.iter().any(|e| e.reason == "PodCreateFailed"));
    step(&mut w, &[], &[], at(1));
    assert_eq!(phases(&w).iter().map(|p| p.1).collect::<Vec<_>>(), [StepPhase::Failed, StepPhase::Omitted]);
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

#[test]
fn a_failed_run_cancels_the_gates_still_waiting() {
    let mut w = wf(json!({"steps": [
        {"name": "legal", "dependsOn": [], "suspend": {}},
        {"name": "security", "dependsOn": [], "suspend": {}},
    ]}));
    let p = step(&mut w, &[], &[], t0());
    assert_eq!(p.create_approvals.len(), 2);
    let rejected = decided(&p.create_approvals[0], ApprovalPhase::Rejected, json!(null), "alice", at(1));
    let waiting = pending(&p.create_approvals[1]);
    let p = step(&mut w, &[], &[rejected, waiting], at(1));
    assert_eq!(p.cancel_approvals, ["wf.security"]);
    assert_eq!(phases(&w)[1], ("security".to_string(), StepPhase::Omitted));
    assert_eq!(phase(&w), WorkflowPhase::Failed);
}

// ---- the same over every step kind, a run deadline, and only the children the controller reads ----

/// One step of a random run: what it is, and how the world answers it.
#[derive(Debug, Clone)]
enum Kind {
    Container {
        retries: i32,
    },
    Sleep {
        secs: u8,
    },
    /// A gate with a short timeout; `decide` None leaves it to expire.
    Gate {
        timeout: u8,
        on_timeout_approve: bool,
        decide: Option<bool>,
    },
}

#[derive(Debug, Clone)]
struct MixedCase {
    kinds: Vec<(Kind, Option<bool>)>,
    deadline: Option<u8>,
    outcomes: Vec<u8>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (0..3i32).prop_map(|retries| Kind::Container { retries }),
        (1..4u8).prop_map(|secs| Kind::Sleep { secs }),
        (2..6u8, any::<bool>(), prop::option::of(any::<bool>()))
            .prop_map(|(timeout, on_timeout_approve, decide)| Kind::Gate { timeout, on_timeout_approve, decide }),
    ]
}

fn mixed_case() -> impl Strategy<Value = MixedCase> {
    (
        prop::collection::vec((kind(), prop::option::of(any::<bool>())), 1..7),
        prop::option::of(4..40u8),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(|(kinds, deadline, outcomes)| MixedCase { kinds, deadline, outcomes })
}

fn mixed_spec(c: &MixedCase) -> serde_json::Value {
    let steps: Vec<_> = c
        .kinds
        .iter()
        .enumerate()
        .map(|(i, (k, when))| {
            let mut s = match k {
                Kind::Container { retries } => json!({"retries": retries, "container": {"image": "x"}}),
                Kind::Sleep { secs } => json!({"sleep": format!("{secs}s")}),
                Kind::Gate { timeout, on_timeout_approve, .. } => json!({"suspend": {
                    "approvers": {"users": ["alice"]}, "timeoutSeconds": timeout,
                    "onTimeout": if *on_timeout_approve { "Approve" } else { "Reject" }}}),
            };
            s["name"] = json!(format!("s{i}"));
            if let Some(w) = when {
                s["when"] = json!(w.to_string());
            }
            s
        })
        .collect();
    let mut spec = json!({"steps": steps});
    if let Some(d) = c.deadline {
        spec["activeDeadlineSeconds"] = json!(d);
    }
    spec
}

/// What the controller reads for a pass: the Pods of Running steps and the Approvals of Waiting
/// steps, by the names the status records, and nothing else.
fn read_children(w: &Workflow, pods: &[Pod], approvals: &[Approval]) -> (Vec<Pod>, Vec<Approval>) {
    let steps = w.status.as_ref().map(|s| s.steps.clone()).unwrap_or_default();
    let named = |phase: StepPhase, name: fn(&hitl_api::StepStatus) -> Option<&String>| -> Vec<String> {
        steps.iter().filter(|s| s.phase == phase).filter_map(|s| name(s).cloned()).collect()
    };
    let running = named(StepPhase::Running, |s| s.pod_name.as_ref());
    let waiting = named(StepPhase::Waiting, |s| s.approval_name.as_ref());
    (
        pods.iter().filter(|p| running.contains(p.metadata.name.as_ref().unwrap())).cloned().collect(),
        approvals.iter().filter(|a| waiting.contains(a.metadata.name.as_ref().unwrap())).cloned().collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Container, sleep and gate steps, `when`, and a run deadline; the world answers as the
    /// cluster would (Pods finish or vanish, people decide or let gates expire, the Approval
    /// controller's own `evaluate` moves Approvals). Every run ends, nothing runs twice, a skipped
    /// step never runs, and a gate nobody approved never succeeds unless its onTimeout says so.
    #[test]
    fn every_mixed_run_ends_and_no_timeout_is_taken_for_an_approval(c in mixed_case()) {
        let mut w = wf(mixed_spec(&c));
        let (mut pods, mut approvals): (Vec<Pod>, Vec<Approval>) = (vec![], vec![]);
        let mut requests: Vec<ApprovalRequest> = vec![];
        let mut outcomes = c.outcomes.iter().cycle();
        let mut ended = false;
        for round in 0..400i64 {
            let now = t0() + SignedDuration::from_millis(500 * round);
            for a in approvals.iter_mut() {
                a.status = Some(super::gate::evaluate(a, now).status);
            }
            let (seen_pods, seen_approvals) = read_children(&w, &pods, &approvals);
            let before = w.status.clone().unwrap_or_default();
            let p = step(&mut w, &seen_pods, &seen_approvals, now);
            let after = w.status.clone().unwrap();
            for (b, a) in before.steps.iter().zip(&after.steps) {
                if b.phase.is_terminal() { prop_assert_eq!(b.phase, a.phase, "step {} left a terminal phase", &a.name); }
            }
            for req in &p.create_pods {
                prop_assert!(!pods.iter().any(|x| x.metadata.name.as_deref() == Some(req.name.as_str())), "Pod {} twice", &req.name);
                pods.push(pod(&req.name, "Running", 0, ""));
            }
            for req in &p.create_approvals {
                prop_assert!(!requests.iter().any(|r| r.name == req.name), "Approval {} twice", &req.name);
                approvals.push(pending(req));
                requests.push(req.clone());
            }
            for name in &p.cancel_approvals {
                if let Some(a) = approvals.iter_mut().find(|a| a.metadata.name.as_deref() == Some(name.as_str())) {
                    a.status = super::gate::cancelled(a, now).or(a.status.clone());
                }
            }
            if after.phase.is_some_and(WorkflowPhase::is_terminal) { ended = true; break; }
            // The world moves: one running Pod finishes, and people decide the gates they will.
            if let Some(idx) = pods.iter().position(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running")) {
                let name = pods[idx].metadata.name.clone().unwrap();
                match outcomes.next().unwrap() % 5 {
                    0 => { pods.remove(idx); }
                    1 => pods[idx] = pod(&name, "Failed", 1, ""),
                    _ => pods[idx] = pod(&name, "Succeeded", 0, "{}"),
                }
            }
            for req in &requests {
                let i: usize = req.step[1..].parse().unwrap();
                let Kind::Gate { decide: Some(approve), .. } = c.kinds[i].0 else { continue };
                let a = approvals.iter_mut().find(|a| a.metadata.name.as_deref() == Some(req.name.as_str())).unwrap();
                if a.spec.decision.is_none() && a.status.as_ref().and_then(|s| s.phase) == Some(ApprovalPhase::Pending) {
                    let phase = if approve { ApprovalPhase::Approved } else { ApprovalPhase::Rejected };
                    let mut decision = decided(req, phase, json!(null), "alice", now);
                    decision.status = a.status.clone();
                    *a = decision;
                }
            }
        }
        prop_assert!(ended, "the run did not end: {:?}", w.status);
        let status = w.status.as_ref().unwrap();
        for (i, st) in status.steps.iter().enumerate() {
            let (kind, when) = &c.kinds[i];
            if *when == Some(false) {
                prop_assert!(matches!(st.phase, StepPhase::Skipped | StepPhase::Omitted), "s{} ran though when was false", i);
                prop_assert!(st.pod_name.is_none() && st.approval_name.is_none());
            }
            if let Kind::Gate { on_timeout_approve: false, decide, .. } = kind
                && st.phase == StepPhase::Succeeded {
                prop_assert_eq!(*decide, Some(true), "s{} succeeded without an approval", i);
            }
        }
    }
}

/// A retry waits out its backoff (delay, times the factor, at most the maximum), recorded in
/// `retryAt`; and only a failure the policy's condition accepts is retried.
#[test]
fn retries_back_off_and_only_when_the_condition_holds() {
    let mut w = wf(json!({"steps": [{"name": "a", "retries": 3, "container": {"image": "x"},
        "retryPolicy": {"delaySeconds": 2, "factor": 3, "maxDelaySeconds": 10, "when": "attempt.exitCode == 75"}}]}));
    let mut pods = vec![];
    let mut now = 0;
    let mut waits = vec![];
    let p = step(&mut w, &[], &[], at(now));
    pods.push(pod(&p.create_pods[0].name, "Failed", 75, "busy"));
    for _ in 0..3 {
        now += 1;
        let p = step(&mut w, &pods, &[], at(now));
        assert!(p.create_pods.is_empty(), "no attempt before the backoff is over");
        let retry_at = w.status.as_ref().unwrap().steps[0].retry_at.clone().expect("a retry is scheduled");
        let wait = retry_at.0.duration_since(at(now)).as_secs();
        waits.push(wait);
        assert_eq!(p.requeue_at, Some(retry_at.0), "woken for it");
        now += wait - 1;
        assert!(step(&mut w, &pods, &[], at(now)).create_pods.is_empty(), "a second early");
        now += 1;
        let p = step(&mut w, &pods, &[], at(now));
        assert_eq!(p.create_pods.len(), 1, "the next attempt starts at retryAt");
        assert_eq!(w.status.as_ref().unwrap().steps[0].retry_at, None);
        pods.push(pod(&p.create_pods[0].name, "Failed", 75, "busy"));
    }
    assert_eq!(waits, [2, 6, 10], "2 s, times 3, capped at 10 s");
    step(&mut w, &pods, &[], at(now + 1));
    assert_eq!(phase(&w), WorkflowPhase::Failed, "retries spent");

    // Exit code 1 is not what the condition retries: the step fails at the first failure.
    let mut w = wf(json!({"steps": [{"name": "a", "retries": 3, "container": {"image": "x"},
        "retryPolicy": {"when": "attempt.exitCode == 75 || attempt.reason == 'Timeout'"}}]}));
    let p = step(&mut w, &[], &[], t0());
    let p = step(&mut w, &[pod(&p.create_pods[0].name, "Failed", 1, "bad input")], &[], at(1));
    assert!(p.create_pods.is_empty());
    assert_eq!(phase(&w), WorkflowPhase::Failed);
    assert_eq!(w.status.as_ref().unwrap().steps[0].attempts, Some(1));
}

/// Exit steps run once every step ended, whatever the outcome, and see how it ended.
#[test]
fn exit_steps_run_after_success_failure_and_rejection_and_see_the_outcome() {
    let exit = json!([
        {"name": "notify", "container": {"image": "x", "args": ["{{ workflow.phase }}:{{ workflow.failedSteps.join(',') }}"]}},
        {"name": "cleanup", "when": "workflow.phase == 'Failed'", "container": {"image": "x"}},
    ]);
    let run = |first: (&str, i32)| {
        let mut w = wf(json!({"steps": [container("a"), container("b")], "onExit": exit.clone()}));
        let p = step(&mut w, &[], &[], t0());
        assert_eq!(p.create_pods.iter().map(|r| r.step.as_str()).collect::<Vec<_>>(), ["a"], "exit steps wait");
        let a = pod(&p.create_pods[0].name, first.0, first.1, "");
        let p = step(&mut w, std::slice::from_ref(&a), &[], at(1));
        let mut pods = vec![a];
        let mut started = vec![];
        let mut p = p;
        for round in 2..10 {
            for req in &p.create_pods {
                started.push((req.step.clone(), req.container.args.clone()));
                pods.push(pod(&req.name, "Succeeded", 0, ""));
            }
            if phase(&w).is_terminal() {
                break;
            }
            p = step(&mut w, &pods, &[], at(round));
        }
        (phase(&w), started, phases(&w))
    };
    let (ended, started, _) = run(("Succeeded", 0));
    assert_eq!(ended, WorkflowPhase::Succeeded);
    assert_eq!(started[..2], [("b".to_string(), vec![]), ("notify".to_string(), vec!["Succeeded:".to_string()])]);
    assert_eq!(started.len(), 2, "cleanup skipped: the run did not fail");
    let (ended, started, phases) = run(("Failed", 1));
    assert_eq!(ended, WorkflowPhase::Failed, "the run ends as its steps did");
    assert_eq!(
        started,
        [("notify".to_string(), vec!["Failed:a".to_string()]), ("cleanup".to_string(), vec![])],
        "b was omitted; both exit steps ran"
    );
    assert_eq!(phases[1], ("b".to_string(), StepPhase::Omitted));
}

/// A gate rejected: the exit step still runs; an exit step that fails fails a run that had
/// succeeded.
#[test]
fn exit_steps_run_after_a_rejection_and_their_failure_fails_the_run() {
    let mut w = gate_workflow();
    w.spec.on_exit = serde_json::from_value(json!([{"name": "after", "container": {"image": "x"}}])).unwrap();
    let req = open(&mut w);
    let rejected = decided(&req, ApprovalPhase::Rejected, json!(null), "alice", at(5));
    let p = step(&mut w, &[], &[rejected], at(6));
    assert_eq!(p.create_pods.iter().map(|r| r.step.as_str()).collect::<Vec<_>>(), ["after"]);
    let failed = pod(&p.create_pods[0].name, "Failed", 2, "");
    step(&mut w, &[failed], &[], at(7));
    assert_eq!(phase(&w), WorkflowPhase::Failed);

    let mut ok = wf(json!({"steps": [container("a")], "onExit": [{"name": "z", "container": {"image": "x"}}]}));
    let p = step(&mut ok, &[], &[], t0());
    let p = step(&mut ok, &[pod(&p.create_pods[0].name, "Succeeded", 0, "")], &[], at(1));
    step(&mut ok, &[pod(&p.create_pods[0].name, "Failed", 1, "")], &[], at(2));
    assert_eq!(phase(&ok), WorkflowPhase::Failed, "a failed exit step fails the run");
    assert_eq!(ok.status.as_ref().unwrap().reason.as_deref(), Some("StepFailed"));
}

mod fanout;

#[test]
fn a_spec_that_passed_its_checks_is_not_checked_again_and_any_change_is() {
    use super::plan::{SpecChecked, plan_checked, spec_digest};
    let good = wf(json!({"steps": [{"name": "a", "when": "1 == 1", "container": {"image": "busybox"}}]}));
    let first = plan(&good, &[], &[], t0());
    assert!(first.spec_valid && first.create_pods.len() == 1, "a valid spec passes and runs");
    // A spec that would fail its checks, planned as if checked: proof the checks were skipped.
    let broken = wf(json!({"steps": [
        container("a"),
        {"name": "b", "when": "1 ==", "container": {"image": "busybox"}},
    ]}));
    let unchecked = plan(&broken, &[], &[], t0());
    assert!(!unchecked.spec_valid);
    assert_eq!(unchecked.status.phase, Some(WorkflowPhase::Failed));
    let skipped = plan_checked(&broken, &[], &[], t0(), SpecChecked::Yes);
    assert_eq!(skipped.status.phase, Some(WorkflowPhase::Running), "b's expression was not compiled in a's pass");
    // So the controller keys what it remembers by the spec itself, and by the run.
    assert_ne!(spec_digest(&good), spec_digest(&broken));
    let mut other_run = good.clone();
    other_run.metadata.uid = Some("uid-2".into());
    assert_ne!(spec_digest(&good), spec_digest(&other_run));
    assert_eq!(spec_digest(&good), spec_digest(&good.clone()));
}
