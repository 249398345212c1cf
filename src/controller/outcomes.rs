//! Step Pods carry a finalizer until their Workflow has recorded their outcome. The Workflow
//! controller removes it after each status write; this controller removes it from Pods whose
//! Workflow can no longer do so (deleted, re-created under the same name, or finished), so a
//! deleted Workflow's Pods never hang in Terminating.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::{Api, ResourceExt};

use super::pods;
use super::{Context, Error};
use crate::api::{Workflow, WorkflowPhase};
use crate::engine::names::FINALIZER_OUTCOME;

/// Woken by the step Pods being deleted while our finalizer holds them; reads the shared store
/// of step Pods (see `step_pods`).
pub async fn run(ctx: Arc<Context>, store: kube::runtime::reflector::Store<Pod>, held: super::step_pods::Wakes) {
    let controller = Controller::for_stream(held, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal();
    super::ready_when_synced(ctx.clone(), controller.store());
    controller.run(reconcile, error_policy, ctx).for_each(super::log_result).await;
}

fn error_policy(pod: Arc<Pod>, err: &Error, ctx: Arc<Context>) -> Action {
    let (_, wait) = ctx.failed(&super::object_key(pod.as_ref()), err);
    tracing::warn!(pod = %pod.name_any(), error = %err, "releasing a step Pod failed");
    ctx.metrics.failed("pod", err.category());
    Action::requeue(wait)
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ours = pod.finalizers().iter().any(|f| f == FINALIZER_OUTCOME);
    if !ours || pod.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    if workflow_still_needs(&ctx, &pod).await? {
        // Its Workflow reads the outcome and releases it; look again in case that never comes.
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    ctx.metrics.write("release_pod");
    pods::release(&api, &pod).await.map_err(Error::Kube)?;
    ctx.succeeded(&super::object_key(pod.as_ref()));
    Ok(Action::await_change())
}

/// The Pod's Workflow exists, is the one that owns it, and is still running.
async fn workflow_still_needs(ctx: &Context, pod: &Pod) -> Result<bool, Error> {
    let Some(owner) = pod.owner_references().iter().find(|o| o.kind == "Workflow") else { return Ok(false) };
    let workflows: Api<Workflow> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let Some(wf) = workflows.get_opt(&owner.name).await.map_err(Error::Kube)? else { return Ok(false) };
    let running = !wf.status.as_ref().and_then(|s| s.phase).is_some_and(WorkflowPhase::is_terminal);
    Ok(wf.uid().as_deref() == Some(owner.uid.as_str()) && wf.metadata.deletion_timestamp.is_none() && running)
}
