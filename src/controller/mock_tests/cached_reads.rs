//! The passes on a decision's path read from the watches' stores, never from a copy older than
//! the operator's own last write to that object (issue 24: reads per gate O(1), from the caches
//! where that stays correct).

use std::sync::Arc;

use http::Method;
use kube::runtime::reflector::{Store, store};
use kube::runtime::watcher;

use super::approval_pass::waiting_gate;
use super::mock_api::{ApiScript, Reply};
use super::{APPROVALS, WORKFLOWS, context};
use crate::api::{Approval, Decision, StepPhase, Workflow};
use crate::engine::gate;

pub(super) fn store_of<K>(objects: &[K]) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = store::<K>();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o.clone()));
    }
    reader
}

pub(super) fn with_version<K: kube::Resource>(mut o: K, rv: &str) -> K {
    o.meta_mut().resource_version = Some(rv.into());
    o
}

/// A gate alice approved, as the Approval controller recorded it.
fn approved_gate() -> (Workflow, Approval) {
    let (wf, mut a) = waiting_gate();
    a.spec.decision = Some(Decision::Approve);
    a.spec.decided_by = Some("alice".into());
    a.status = Some(gate::evaluate(&a, jiff::Timestamp::now()).status);
    (wf, a)
}

#[tokio::test]
async fn the_approval_pass_checks_the_gate_on_the_cached_workflow_unless_it_predates_our_write() {
    let (wf, mut a) = waiting_gate();
    a.status = Some(gate::evaluate(&a, jiff::Timestamp::now()).status); // seen before: no grants
    let wf_path = format!("{WORKFLOWS}/wf");
    for (cached_rv, last_written_rv, read) in [("20", None, false), ("20", Some("30"), true)] {
        let mut script = ApiScript::default();
        if read {
            script = script.then(Method::GET, wf_path.clone(), Reply::object(&with_version(wf.clone(), "30")));
        }
        let (client, api) = script.serve();
        let (ctx, _jobs) = context(client);
        let _ = ctx.workflows.set(store_of(&[with_version(wf.clone(), cached_rv)]));
        if let Some(rv) = last_written_rv {
            ctx.wrote(&with_version(wf.clone(), rv));
        }

        let result = crate::controller::approval::reconcile(Arc::new(a.clone()), ctx).await;
        let seen = api.finish();
        result.expect("the pass succeeds");
        let reads = seen.iter().filter(|s| s.method == Method::GET && s.path == wf_path).count();
        assert_eq!(reads, usize::from(read), "cached {cached_rv}, our last write {last_written_rv:?}: {seen:?}");
    }
}

#[tokio::test]
async fn the_workflow_pass_takes_the_decision_from_the_cached_approval_unless_it_predates_our_write() {
    let (wf, a) = approved_gate();
    let a_path = format!("{APPROVALS}/{}", a.metadata.name.as_deref().unwrap());
    let wf_status = format!("{WORKFLOWS}/wf/status");
    for (cached_rv, last_written_rv, read) in [("10", None, false), ("10", Some("11"), true)] {
        let mut script = ApiScript::default();
        if read {
            script = script.then(Method::GET, a_path.clone(), Reply::object(&with_version(a.clone(), "11")));
        }
        let (client, api) = script.then(Method::PUT, wf_status.clone(), Reply::Stored).serve();
        let (ctx, _jobs) = context(client);
        let _ = ctx.approvals.set(store_of(&[with_version(a.clone(), cached_rv)]));
        if let Some(rv) = last_written_rv {
            ctx.wrote(&with_version(a.clone(), rv));
        }

        let result = crate::controller::workflow::reconcile(Arc::new(wf.clone()), ctx).await;
        let seen = api.finish();
        result.expect("the pass succeeds");
        let reads = seen.iter().filter(|s| s.method == Method::GET && s.path == a_path).count();
        assert_eq!(reads, usize::from(read), "cached {cached_rv}, our last write {last_written_rv:?}: {seen:?}");
        let put = seen.iter().find(|s| s.method == Method::PUT && s.path == wf_status).expect("a status write");
        let written: Workflow = serde_json::from_value(put.body.clone()).unwrap();
        let review = written.status.unwrap().steps.into_iter().find(|s| s.name == "review").unwrap();
        assert_eq!(review.phase, StepPhase::Succeeded, "the approval moved the run on");
    }
}
