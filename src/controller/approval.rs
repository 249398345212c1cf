//! The Approval controller: stamps expiry, checks a person's decision, and records the outcome in
//! status, which the Workflow controller reads.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tracing::{instrument, warn};

use super::pods::LABEL_WORKFLOW;
use super::{Context, Error, Written, grants};
use crate::api::Approval;
use crate::engine::gate;

pub async fn run(ctx: Arc<Context>) {
    let approvals: Api<Approval> = match &ctx.config.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(approvals, watcher::Config::default().labels(LABEL_WORKFLOW).page_size(200))
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

fn error_policy(_a: Arc<Approval>, err: &Error, ctx: Arc<Context>) -> Action {
    warn!(error = %err, category = err.category(), "approval reconcile failed");
    ctx.metrics.failed("approval", err.category());
    Action::requeue(Duration::from_secs(5))
}

#[instrument(skip_all, fields(approval = %a.name_any(), namespace = a.namespace().unwrap_or_default()))]
async fn reconcile(a: Arc<Approval>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    let result = reconcile_inner(a, ctx.clone()).await;
    ctx.metrics.reconciled("approval", start.elapsed());
    result
}

async fn reconcile_inner(a: Arc<Approval>, ctx: Arc<Context>) -> Result<Action, Error> {
    if a.metadata.deletion_timestamp.is_some() || ctx.is_stale(a.as_ref()) {
        return Ok(Action::await_change());
    }
    // First sight of a new gate: grant its approvers before anyone is told it waits.
    if a.status.is_none() && ctx.config.per_gate_grants {
        grants::ensure(&ctx, &a).await?;
    }
    let now = jiff::Timestamp::now();
    let decision = gate::evaluate(&a, now);
    if a.status.as_ref() != Some(&decision.status) {
        let mut next = (*a).clone();
        next.status = Some(decision.status.clone());
        if let Written::Stale = super::write_status(&ctx, &next, "approval_status").await? {
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        if let Some(ev) = &decision.event {
            ctx.event(a.as_ref(), ev).await;
        }
    }
    Ok(match decision.requeue_at {
        Some(at) => Action::requeue(super::until(at, jiff::Timestamp::now())),
        None => Action::await_change(),
    })
}
