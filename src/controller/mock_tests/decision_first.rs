//! A person's decision moves the run on before the Approval controller records it (issue 24: the
//! Approval's status write is off the decision path), and the Approval then records what the run
//! did, at the time the run saw it.

use std::sync::Arc;

use http::Method;
use jiff::{SignedDuration, Timestamp};

use super::approval_pass::created;
use super::cached_reads::store_of;
use super::mock_api::{ApiScript, Reply, Seen};
use super::{APPROVALS, PODS, WORKFLOWS, container, context, suspend, workflow};
use crate::api::{Approval, ApprovalPhase, Approvers, Decision, Gate, StepPhase, Workflow};
use crate::engine::{gate, names, plan};

/// `review` (alice decides within the hour) then `deploy`; the gate opened at `opened`, alice
/// has approved, and the Approval controller has seen the gate but not yet her decision.
fn decided_unrecorded(opened: Timestamp) -> (Workflow, Approval) {
    let approvers = Approvers { users: vec!["alice".into()], groups: vec![] };
    let review = Gate { approvers: Some(approvers), timeout_seconds: Some(3600), ..Default::default() };
    let mut wf = workflow(vec![suspend("review", review), container("deploy")]);
    wf.spec.steps[0].suspend.as_mut().unwrap().message = Some("Ship it?".into());
    let first = plan::plan(&wf, &[], &[], opened);
    wf.status = Some(first.status.clone());
    let mut a = created(&wf, &first.create_approvals[0]);
    a.status = Some(gate::evaluate(&a, opened).status);
    a.spec.decision = Some(Decision::Approve);
    a.spec.decided_by = Some("alice".into());
    a.spec.comment = Some("looks right".into());
    (wf, a)
}

fn put_to(seen: &[Seen], path: &str) -> serde_json::Value {
    seen.iter().find(|s| s.method == Method::PUT && s.path == path).expect("a status write").body.clone()
}

#[tokio::test]
async fn the_next_steps_pod_is_asked_for_before_the_approval_records_the_decision() {
    let (wf, a) = decided_unrecorded(Timestamp::now());
    let wf_status = format!("{WORKFLOWS}/wf/status");
    let (client, api) = ApiScript::default()
        .then(Method::POST, PODS, Reply::Stored)
        .then(Method::PUT, &wf_status, Reply::Stored)
        .serve();
    let (ctx, _jobs) = context(client);
    let _ = ctx.approvals.set(store_of(&[a]));

    let result = crate::controller::workflow::reconcile(Arc::new(wf), ctx).await;
    let seen = api.finish();
    result.expect("the pass succeeds");
    let created = seen.iter().find(|s| s.method == Method::POST && s.path == PODS).expect("deploy's Pod");
    assert_eq!(created.body["metadata"]["name"], names::pod_name("wf", "wf-uid", "deploy", 1).as_str());
    let written: Workflow = serde_json::from_value(put_to(&seen, &wf_status)).unwrap();
    let review = written.status.unwrap().steps.into_iter().find(|s| s.name == "review").unwrap();
    assert_eq!((review.phase, review.decided_by.as_deref()), (StepPhase::Succeeded, Some("alice")));
}

/// The run saw alice's decision a minute into the hour the gate had; the Approval controller's
/// pass comes only after the hour (a long queue, a restart): it records her decision, as seen
/// when the run saw it, not an expiry the run never acted on.
#[tokio::test]
async fn the_approval_records_the_decision_the_run_acted_on_at_the_time_the_run_saw_it() {
    let opened = Timestamp::now() - SignedDuration::from_hours(2);
    let (mut wf, a) = decided_unrecorded(opened);
    let seen_by_run = plan::plan(&wf, &[], std::slice::from_ref(&a), opened + SignedDuration::from_mins(1));
    wf.status = Some(seen_by_run.status);
    let review = wf.status.as_ref().unwrap().steps.iter().find(|s| s.name == "review").unwrap().clone();
    assert_eq!(review.phase, StepPhase::Succeeded, "the run acted on alice's decision");
    let a_status = format!("{APPROVALS}/{}/status", a.metadata.name.as_deref().unwrap());
    let (client, api) = ApiScript::default().then(Method::PUT, &a_status, Reply::Stored).serve();
    let (ctx, _jobs) = context(client);
    let _ = ctx.workflows.set(store_of(&[wf]));

    let result = crate::controller::approval::reconcile(Arc::new(a), ctx).await;
    let seen = api.finish();
    result.expect("the pass succeeds");
    let written: Approval = serde_json::from_value(put_to(&seen, &a_status)).unwrap();
    let status = written.status.unwrap();
    assert_eq!((status.phase, status.decided_by.as_deref()), (Some(ApprovalPhase::Approved), Some("alice")));
    assert_eq!(status.decided_at, review.finished_at, "decided when the run saw it");
    let refused = seen.iter().any(|s| s.is_event() && s.body["reason"] == "GateMismatch");
    assert!(!refused, "the gate is not refused for having moved on: {seen:?}");
}
