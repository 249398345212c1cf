//! A Workflow pass woken by nothing but the operator's own status write is skipped: it makes no
//! request (issue 24: no pass that only re-reads what the operator itself just wrote). A child's
//! event brings a full pass again.

use std::sync::Arc;

use http::Method;
use kube::runtime::controller::Action;

use super::mock_api::{ApiScript, Reply};
use super::{PODS, WORKFLOWS, container, context, passed, succeeded, workflow};
use crate::api::Workflow;
use crate::controller::pods;
use crate::controller::workflow::reconcile;

#[tokio::test]
async fn the_pass_after_our_own_status_write_makes_no_request_until_a_child_moves() {
    let mut wf = workflow(vec![container("a"), container("b")]);
    let first = passed(&mut wf, &[], &[]);
    let pod_a = succeeded(&wf, &first.create_pods[0]);
    let starts_b = crate::engine::plan::plan(&wf, std::slice::from_ref(&pod_a), &[], jiff::Timestamp::now());
    let pod_b = pods::build(&wf, &starts_b.create_pods[0]);
    let (a, b) = (pod_a.metadata.name.clone().unwrap(), pod_b.metadata.name.clone().unwrap());
    let status = format!("{WORKFLOWS}/wf/status");
    let (client, api) = ApiScript::default()
        // The pass that starts b.
        .then(Method::GET, format!("{PODS}/{a}"), Reply::object(&pod_a))
        .then(Method::POST, PODS, Reply::Stored)
        .then(Method::PUT, status.clone(), Reply::Stored)
        .then(Method::PATCH, format!("{PODS}/{a}"), Reply::Stored)
        // The pass after b's Pod moved reads it (no watch store here) and has nothing to write.
        .then(Method::GET, format!("{PODS}/{b}"), Reply::object(&pod_b))
        .serve();
    let (ctx, _jobs) = context(client);
    reconcile(Arc::new(wf), ctx.clone()).await.expect("the pass that starts b");
    let after_first = api.requests();
    let put = after_first.iter().find(|s| s.method == Method::PUT && s.path == status).expect("the status written");
    let mut written: Workflow = serde_json::from_value(put.body.clone()).unwrap();
    written.metadata.resource_version = ctx.last_written("wf-uid").map(|rv| rv.to_string());
    let skipped =
        || ctx.metrics.skipped.get_or_create(&crate::metrics::ControllerLabel { controller: "workflow" }).get();

    // Woken by its own status write: the same inputs, the same plan; no request.
    let action = reconcile(Arc::new(written.clone()), ctx.clone()).await.expect("skipped");
    assert_eq!(action, Action::await_change());
    assert_eq!((api.requests().len(), skipped()), (after_first.len(), 1), "the pass made a request");

    // b's Pod changed (its watch counts the event before it wakes the run): a full pass.
    ctx.settled.child_changed("wf-uid");
    reconcile(Arc::new(written), ctx.clone()).await.expect("the pass over b's change");
    let seen = api.finish();
    assert_eq!(seen.last().map(|s| s.path.clone()), Some(format!("{PODS}/{b}")));
    assert_eq!(skipped(), 1);
}

/// A Pod the API server refused fails its step after the plan was made; what that means for the
/// run (here: it failed) is the next pass's work, so the pass after that write is not skipped.
#[tokio::test]
async fn the_pass_after_a_refused_pod_is_written_runs() {
    let wf = workflow(vec![container("a")]);
    let status = format!("{WORKFLOWS}/wf/status");
    let refused = r#"pods "x" is forbidden: maximum cpu usage per Container is 100m, but limit is 2"#;
    let (client, api) = ApiScript::default()
        .then(Method::POST, PODS, Reply::Refused(403, refused.into()))
        .then(Method::PUT, status.clone(), Reply::Stored)
        .then(Method::PUT, status.clone(), Reply::Stored)
        .serve();
    let (ctx, _jobs) = context(client);
    reconcile(Arc::new(wf), ctx.clone()).await.expect("the step fails");
    let last = pass_after_the_write(api, &ctx, &status).await;
    assert_eq!(last.status.and_then(|s| s.phase), Some(crate::api::WorkflowPhase::Failed));
}

/// Runs the pass woken by the status the first pass wrote (at the resourceVersion that write
/// got) to the end of the script; the status it wrote in turn.
async fn pass_after_the_write(
    api: super::mock_api::Served,
    ctx: &Arc<crate::controller::Context>,
    status: &str,
) -> Workflow {
    let put = api.requests().into_iter().find(|s| s.path == status).expect("the status written");
    let mut written: Workflow = serde_json::from_value(put.body).unwrap();
    written.metadata.resource_version = ctx.last_written("wf-uid").map(|rv| rv.to_string());
    reconcile(Arc::new(written), ctx.clone()).await.expect("the pass after the write");
    let seen = api.finish();
    let last = seen.iter().rev().find(|s| s.path == status).expect("the second write");
    serde_json::from_value(last.body.clone()).unwrap()
}

/// A replica that led before was stopped between creating a's Pod and writing the status, and
/// the Pod finished meanwhile. This pass takes the Pod for new (it already exists); the pass
/// after its write must look at it, or no Pod event is left to wake the run.
#[tokio::test]
async fn the_pass_after_finding_a_child_already_there_runs() {
    let mut wf = workflow(vec![container("a")]);
    let first = crate::engine::plan::plan(&wf, &[], &[], jiff::Timestamp::now());
    let pod_a = succeeded(&wf, &first.create_pods[0]);
    let a = pod_a.metadata.name.clone().unwrap();
    wf.status = None;
    let status = format!("{WORKFLOWS}/wf/status");
    let (client, api) = ApiScript::default()
        .then(Method::POST, PODS, Reply::conflict())
        .then(Method::GET, format!("{PODS}/{a}"), Reply::object(&pod_a))
        .then(Method::PUT, status.clone(), Reply::Stored)
        // The pass after that write: it reads the Pod and records its outcome.
        .then(Method::GET, format!("{PODS}/{a}"), Reply::object(&pod_a))
        .then(Method::PUT, status.clone(), Reply::Stored)
        .then(Method::PATCH, format!("{PODS}/{a}"), Reply::Stored)
        .serve();
    let (ctx, _jobs) = context(client);
    reconcile(Arc::new(wf), ctx.clone()).await.expect("the pass that asks for a's Pod");
    let last = pass_after_the_write(api, &ctx, &status).await;
    assert_eq!(last.status.and_then(|s| s.phase), Some(crate::api::WorkflowPhase::Succeeded));
}
