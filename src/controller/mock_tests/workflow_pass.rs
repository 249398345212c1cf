//! One pass of the Workflow controller: children first, then the status, then what the status
//! makes safe (Events, releasing finished Pods).

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kube::runtime::controller::Action;

use super::mock_api::{ApiScript, Reply, Seen};
use super::{PODS, POLICIES, WORKFLOWS, container, context, passed, succeeded, suspend, workflow};
use crate::api::{Approval, Approvers, Gate, SelfApproval, StepPhase, Workflow, WorkflowPolicy, WorkflowPolicySpec};
use crate::controller::workflow::reconcile;
use crate::engine::names;

fn status_path() -> String {
    format!("{WORKFLOWS}/wf/status")
}

/// The Workflow status a request wrote.
fn written_status(seen: &Seen) -> Workflow {
    serde_json::from_value(seen.body.clone()).expect("a Workflow")
}

fn position(seen: &[Seen], method: Method, path: &str) -> usize {
    seen.iter().position(|s| s.method == method && s.path == path).expect("sent")
}

/// Step `a` of `a -> b` ran and succeeded; the next pass starts `b`.
fn a_finished() -> (Workflow, k8s_openapi::api::core::v1::Pod) {
    let mut wf = workflow(vec![container("a"), container("b")]);
    let first = passed(&mut wf, &[], &[]);
    let pod_a = succeeded(&wf, &first.create_pods[0]);
    (wf, pod_a)
}

#[tokio::test]
async fn the_next_steps_pod_exists_before_the_status_names_it_and_the_finished_pod_is_released_after() {
    let (wf, pod_a) = a_finished();
    let a = pod_a.metadata.name.clone().unwrap();
    let b = names::pod_name("wf", "wf-uid", "b", 1);
    let (client, api) = ApiScript::default()
        .then(Method::GET, format!("{PODS}/{a}"), Reply::object(&pod_a))
        .then(Method::POST, PODS, Reply::Stored)
        .then(Method::PUT, status_path(), Reply::Stored)
        .then(Method::PATCH, format!("{PODS}/{a}"), Reply::Stored)
        .serve();
    let (ctx, _jobs) = context(client);

    let result = reconcile(Arc::new(wf), ctx).await;
    let seen = api.finish();
    result.expect("the pass succeeds");
    let created = seen.iter().find(|s| s.method == Method::POST && s.path == PODS).unwrap();
    assert_eq!(created.body["metadata"]["name"], b.as_str());
    let status = written_status(&seen[position(&seen, Method::PUT, &status_path())]).status.unwrap();
    let steps: Vec<_> = status.steps.iter().map(|s| (s.name.as_str(), s.phase, s.pod_name.as_deref())).collect();
    assert_eq!(steps, [("a", StepPhase::Succeeded, Some(a.as_str())), ("b", StepPhase::Running, Some(b.as_str()))]);
    let release = &seen[position(&seen, Method::PATCH, &format!("{PODS}/{a}"))];
    assert_eq!(release.body["metadata"]["finalizers"], serde_json::json!([]), "the outcome finalizer goes");
    let written = position(&seen, Method::PUT, &status_path());
    assert!(seen.iter().enumerate().all(|(i, s)| !s.is_event() || i > written), "Events only for a written status");
}

#[tokio::test]
async fn a_pod_the_api_server_refuses_as_invalid_or_by_admission_fails_its_step_in_the_status_written() {
    let refusals = [
        (422, r#"Pod "x" is invalid: spec.containers[0].image: Required value"#),
        (403, r#"pods "x" is forbidden: violates PodSecurity "restricted:latest": hostNetwork=true"#),
    ];
    for (code, message) in refusals {
        let wf = workflow(vec![container("a"), container("b")]);
        let (client, api) = ApiScript::default()
            .then(Method::POST, PODS, Reply::Refused(code, message.into()))
            .then(Method::PUT, status_path(), Reply::Stored)
            .serve();
        let (ctx, _jobs) = context(client);

        let result = reconcile(Arc::new(wf), ctx).await;
        let seen = api.finish();
        result.expect("a refused Pod is the step's failure, not the pass's");
        let status = written_status(&seen[position(&seen, Method::PUT, &status_path())]).status.unwrap();
        let a = &status.steps[0];
        assert_eq!((a.phase, a.reason.as_deref()), (StepPhase::Failed, Some("PodCreateFailed")), "{code}");
        assert!(a.message.as_deref().unwrap_or_default().contains(message), "{code}: {:?}", a.message);
    }
}

#[tokio::test]
async fn a_pod_refused_for_quota_or_a_missing_right_is_retried_and_no_status_is_written() {
    let refusals = [
        r#"pods "x" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=10, limited: pods=10"#,
        r#"pods is forbidden: User "system:serviceaccount:hitl:operator" cannot create resource "pods" in API group "" in the namespace "ns""#,
    ];
    for message in refusals {
        let wf = workflow(vec![container("a")]);
        let (client, api) = ApiScript::default().then(Method::POST, PODS, Reply::Refused(403, message.into())).serve();
        let (ctx, _jobs) = context(client);

        let result = reconcile(Arc::new(wf), ctx).await;
        let seen = api.finish();
        let err = result.expect_err("the pass fails, to be retried");
        assert!(!err.fails_step(), "{err}");
        assert_eq!(seen.len(), 1, "nothing but the create: {seen:?}");
    }
}

#[tokio::test]
async fn a_status_write_that_conflicts_requeues_without_events_or_releasing_the_pod() {
    // The last step of a run succeeded: this pass ends the run, with an Event to tell.
    let mut wf = workflow(vec![container("a")]);
    let first = passed(&mut wf, &[], &[]);
    let pod_a = succeeded(&wf, &first.create_pods[0]);
    let would_tell = crate::engine::plan::plan(&wf, std::slice::from_ref(&pod_a), &[], jiff::Timestamp::now());
    assert!(
        !would_tell.events.is_empty() && !would_tell.release_pods.is_empty(),
        "Events and a release wait on the write"
    );
    let a = pod_a.metadata.name.clone().unwrap();
    let (client, api) = ApiScript::default()
        .then(Method::GET, format!("{PODS}/{a}"), Reply::object(&pod_a))
        .then(Method::PUT, status_path(), Reply::conflict())
        .serve();
    let (ctx, _jobs) = context(client);

    let result = reconcile(Arc::new(wf), ctx).await;
    let seen = api.finish();
    let action = result.expect("a conflict is no failure");
    assert_eq!(action, Action::requeue(Duration::from_millis(100)));
    assert!(!seen.iter().any(Seen::is_event), "no Event for a status that was not written: {seen:?}");
}

#[tokio::test]
async fn a_gate_creates_its_approval_before_the_status_says_it_waits_with_the_namespaces_self_approval_rule() {
    let forbid = WorkflowPolicy::new(
        "default",
        WorkflowPolicySpec { self_approval: Some(SelfApproval::Forbid), ..Default::default() },
    );
    let cases = [(Reply::object(&forbid), Some(SelfApproval::Forbid)), (Reply::not_found(), None)];
    for (policy, self_approval) in cases {
        let approvers = Approvers { users: vec!["alice".into()], groups: vec![] };
        let wf = workflow(vec![suspend("review", Gate { approvers: Some(approvers), ..Default::default() })]);
        let (client, api) = ApiScript::default()
            .then(Method::GET, format!("{POLICIES}/default"), policy)
            .then(Method::POST, super::APPROVALS, Reply::Stored)
            .then(Method::PUT, status_path(), Reply::Stored)
            .serve();
        let (ctx, _jobs) = context(client);

        let result = reconcile(Arc::new(wf), ctx).await;
        let seen = api.finish();
        result.expect("the pass succeeds");
        let created: Approval = serde_json::from_value(seen[1].body.clone()).expect("an Approval");
        assert_eq!(created.spec.gate.self_approval, self_approval);
        assert_eq!(created.metadata.owner_references.unwrap()[0].uid, "wf-uid");
        let status = written_status(&seen[2]).status.unwrap();
        assert_eq!(status.steps[0].phase, StepPhase::Waiting);
        assert_eq!(status.steps[0].approval_name, created.metadata.name);
    }
}
