//! One pass of the Approval controller: who is granted what, before or after the status says so.

use std::sync::Arc;

use http::Method;
use kube::Resource;
use kube::api::ObjectMeta;

use super::mock_api::{ApiScript, Reply, Seen};
use super::{APPROVALS, BINDINGS, ROLES, WORKFLOWS, container, context, passed, succeeded, suspend, workflow};
use crate::api::{Approval, ApprovalPhase, Approvers, Decision, Evidence, Gate, Workflow};
use crate::controller::approval::reconcile;
use crate::engine::{gate, names};

/// `build` ran and succeeded; `review` waits, showing build's logs to alice. The Workflow as
/// stored, and the Approval the Workflow controller created for the gate.
pub(super) fn waiting_gate() -> (Workflow, Approval) {
    let approvers = Approvers { users: vec!["alice".into()], groups: vec![] };
    let evidence = vec![Evidence { step: "build".into(), logs: true }];
    let review = Gate { approvers: Some(approvers), evidence, ..Default::default() };
    let mut wf = workflow(vec![container("build"), suspend("review", review)]);
    let first = passed(&mut wf, &[], &[]);
    let build = succeeded(&wf, &first.create_pods[0]);
    let second = passed(&mut wf, &[build], &[]);
    let approval = created(&wf, &second.create_approvals[0]);
    assert!(!approval.spec.evidence_pods.is_empty(), "the gate shows build's Pod");
    (wf, approval)
}

/// The Approval the Workflow controller creates for `req`, as stored, before any status.
pub(super) fn created(wf: &Workflow, req: &crate::engine::approval_request::ApprovalRequest) -> Approval {
    Approval {
        metadata: ObjectMeta {
            name: Some(req.name.clone()),
            namespace: Some("ns".into()),
            uid: Some("a-uid".into()),
            resource_version: Some("10".into()),
            owner_references: Some(vec![wf.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        spec: req.spec(),
        status: None,
    }
}

fn status_path(a: &Approval) -> String {
    format!("{APPROVALS}/{}/status", a.metadata.name.as_deref().unwrap())
}

fn grant(a: &Approval) -> String {
    names::grant_name(a.metadata.name.as_deref().unwrap(), "a-uid")
}

fn written(seen: &[Seen], path: &str) -> Approval {
    let put = seen.iter().find(|s| s.method == Method::PUT && s.path == path).expect("a status write");
    serde_json::from_value(put.body.clone()).expect("an Approval")
}

#[tokio::test]
async fn a_new_gate_grants_its_approvers_before_its_status_says_it_waits() {
    let (wf, a) = waiting_gate();
    let (client, api) = ApiScript::default()
        .then(Method::GET, format!("{WORKFLOWS}/wf"), Reply::object(&wf))
        .then(Method::POST, ROLES, Reply::Stored)
        .then(Method::POST, BINDINGS, Reply::Stored)
        .then(Method::POST, ROLES, Reply::Stored)
        .then(Method::POST, BINDINGS, Reply::Stored)
        .then(Method::PUT, status_path(&a), Reply::Stored)
        .serve();
    let (ctx, _jobs) = context(client);

    let result = reconcile(Arc::new(a.clone()), ctx).await;
    let seen = api.finish();
    result.expect("the pass succeeds");
    let created: Vec<_> = seen.iter().filter(|s| s.method == Method::POST && !s.is_event()).collect();
    let names: Vec<_> = created.iter().map(|s| s.body["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let evidence = format!("{}-evidence", grant(&a));
    assert_eq!(names, [grant(&a), grant(&a), evidence.clone(), evidence]);
    assert_eq!(created[1].body["subjects"][0]["name"], "alice");
    assert_eq!(written(&seen, &status_path(&a)).status.unwrap().phase, Some(ApprovalPhase::Pending));
}

#[tokio::test]
async fn a_decided_gate_records_its_outcome_before_the_evidence_logs_are_taken_back() {
    let (wf, mut a) = waiting_gate();
    a.status = Some(gate::evaluate(&a, jiff::Timestamp::now()).status);
    a.spec.decision = Some(Decision::Approve);
    a.spec.decided_by = Some("alice".into());
    let evidence = format!("{}-evidence", grant(&a));
    let escalated = format!("{}-escalated-evidence", grant(&a));
    let (client, api) = ApiScript::default()
        .then(Method::GET, format!("{WORKFLOWS}/wf"), Reply::object(&wf))
        .then(Method::PUT, status_path(&a), Reply::Stored)
        .then(Method::DELETE, format!("{BINDINGS}/{evidence}"), Reply::deleted())
        .then(Method::DELETE, format!("{ROLES}/{evidence}"), Reply::deleted())
        .then(Method::DELETE, format!("{BINDINGS}/{escalated}"), Reply::not_found())
        .then(Method::DELETE, format!("{ROLES}/{escalated}"), Reply::not_found())
        .serve();
    let (ctx, _jobs) = context(client);

    let result = reconcile(Arc::new(a.clone()), ctx).await;
    let seen = api.finish();
    result.expect("the pass succeeds");
    let status = written(&seen, &status_path(&a)).status.unwrap();
    assert_eq!((status.phase, status.decided_by.as_deref()), (Some(ApprovalPhase::Approved), Some("alice")));
    let recorded = seen.iter().position(|s| s.method == Method::PUT).unwrap();
    let told = seen.iter().position(|s| s.is_event() && s.body["reason"] == "Approved");
    assert!(told.is_some_and(|i| i > recorded), "an Event says who decided, once recorded: {seen:?}");
}

#[tokio::test]
async fn a_decided_gates_evidence_grants_are_taken_back_once_not_on_every_pass() {
    let (_wf, mut a) = waiting_gate();
    a.spec.decision = Some(Decision::Approve);
    a.spec.decided_by = Some("alice".into());
    a.status = Some(gate::evaluate(&a, jiff::Timestamp::now()).status);
    let evidence = format!("{}-evidence", grant(&a));
    let escalated = format!("{}-escalated-evidence", grant(&a));
    let (client, api) = ApiScript::default()
        .then(Method::DELETE, format!("{BINDINGS}/{evidence}"), Reply::deleted())
        .then(Method::DELETE, format!("{ROLES}/{evidence}"), Reply::deleted())
        .then(Method::DELETE, format!("{BINDINGS}/{escalated}"), Reply::not_found())
        .then(Method::DELETE, format!("{ROLES}/{escalated}"), Reply::not_found())
        .serve();
    let (ctx, _jobs) = context(client);

    // Later passes come from the notification records written on the decided Approval.
    for _ in 0..3 {
        reconcile(Arc::new(a.clone()), ctx.clone()).await.expect("the pass succeeds");
    }
    let seen = api.finish();
    let deletes = seen.iter().filter(|s| s.method == Method::DELETE).count();
    assert_eq!(deletes, 4, "one round of DELETEs over three passes: {seen:?}");
}
