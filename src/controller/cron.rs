//! The CronWorkflow controller: gather the Workflows it created, ask `engine::cron::decide`,
//! create and delete Workflows, write status.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::{instrument, warn};

use super::pods::MANAGER;
use super::{Context, Error, Written};
use crate::api::cron::{ANNOTATION_SCHEDULED, ActiveWorkflow, LABEL_CRON};
use crate::api::workflow::{ANNOTATION_AUTHORS, ANNOTATION_CREATED_BY};
use crate::api::{CronWorkflow, CronWorkflowStatus, Workflow, WorkflowPhase};
use crate::engine::conditions;
use crate::engine::cron::{self, Decision, Run, RunState, Schedule};
use crate::engine::event::Event;

/// Watches CronWorkflows and the Workflows they own (by label, so only theirs are seen).
pub async fn run(ctx: Arc<Context>) {
    let workflows: Api<Workflow> = super::api_in(&ctx.client, &ctx.config);
    let (store, crons) = super::tolerant::watch::<CronWorkflow>(&ctx, watcher::Config::default().page_size(200));
    Controller::for_stream(crons, store)
        .owns(workflows, watcher::Config::default().labels(LABEL_CRON).page_size(200))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(super::log_result)
        .await;
}

fn error_policy(cron: Arc<CronWorkflow>, err: &Error, ctx: Arc<Context>) -> Action {
    let (failures, wait) = ctx.failed(&super::object_key(cron.as_ref()), err);
    warn!(error = %err, category = err.category(), failures, retry_in = ?wait, "cron reconcile failed");
    ctx.metrics.failed("cronworkflow", err.category());
    super::report_error(ctx.clone(), cron, err);
    Action::requeue(wait)
}

#[instrument(skip_all, fields(cronworkflow = %cron.name_any(), namespace = cron.namespace().unwrap_or_default()))]
async fn reconcile(cron: Arc<CronWorkflow>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    let result = reconcile_inner(cron, ctx.clone()).await;
    ctx.metrics.reconciled("cronworkflow", start.elapsed());
    result
}

async fn reconcile_inner(cron: Arc<CronWorkflow>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cron.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if ctx.is_stale(cron.as_ref()) {
        // Our own newer status write is on its way through the watch; act on that instead.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let key = super::object_key(cron.as_ref());
    let now = jiff::Timestamp::now();
    let schedule = match Schedule::parse(&cron.spec.schedule, cron.spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(bad) => {
            write(&ctx, &cron, status_for(&cron, None, &[], ("False", bad.reason, bad.message), now)).await?;
            return Ok(Action::await_change());
        }
    };
    if authors(&cron).is_none() {
        let unknown = format!(
            "who wrote this CronWorkflow is not recorded (annotation {ANNOTATION_AUTHORS}, written by the \
             API server's hitl-authors policy): it was created before that policy was installed; re-create it \
             (kubectl replace --force) so its runs know who may not approve them"
        );
        write(&ctx, &cron, status_for(&cron, None, &[], ("False", "AuthorsUnknown", unknown), now)).await?;
        return Ok(Action::await_change());
    }
    let api: Api<Workflow> = Api::namespaced(ctx.client.clone(), &cron.namespace().unwrap_or_default());
    let runs = runs_of(&api, &cron, &ctx.identity).await?;
    let created = cron.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let recorded = cron.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0);
    let mut decision = cron::decide(&cron.spec, &schedule, created, recorded, &runs, now);
    for name in &decision.delete {
        delete(&ctx, &api, name).await?;
    }
    if let Some(due) = decision.create {
        start(&ctx, &api, &cron, due, &mut decision).await?;
    }
    if let Some((due, why)) = decision.skipped {
        let note = format!("not started for {due}: {why}");
        ctx.event(cron.as_ref(), &Event { warning: false, reason: "Skipped", note }).await;
    }
    let ready = if cron.spec.suspend {
        ("True", "Suspended", "spec.suspend is true: no new run starts".to_string())
    } else if decision.next_schedule.is_none() {
        let never = format!("spec.schedule: {:?} matches no time from now on", cron.spec.schedule);
        ("False", "InvalidSchedule", never)
    } else {
        (
            "True",
            "Scheduling",
            format!("next run at {}", decision.next_schedule.map(|t| t.to_string()).unwrap_or_default()),
        )
    };
    write(&ctx, &cron, status_for(&cron, Some(&decision), &decision.active, ready, now)).await?;
    ctx.succeeded(&key);
    Ok(match decision.next_schedule {
        Some(at) => Action::requeue(super::until(at, jiff::Timestamp::now())),
        None => Action::await_change(),
    })
}

/// The Workflows this CronWorkflow created, read fresh from the API server (a consistent list,
/// never a cache that may not yet hold the one just created).
async fn runs_of(api: &Api<Workflow>, cron: &CronWorkflow, identity: &str) -> Result<Vec<Run>, Error> {
    let lp = ListParams::default().labels(&format!("{LABEL_CRON}={}", cron.name_any()));
    let list = api.list(&lp).await.map_err(Error::Kube)?;
    Ok(list
        .items
        .into_iter()
        .filter(|w| is_run_of(w, cron, identity))
        .filter(|w| w.metadata.deletion_timestamp.is_none())
        .filter_map(|w| run_of(&cron.name_any(), &w))
        .collect())
}

/// A run is a Workflow this operator created (the API server wrote its user name into
/// `hitl.dev/created-by`, which nobody else can) for this CronWorkflow. Its label, name and owner
/// reference alone prove nothing: anyone who may create Workflows can copy them.
fn is_run_of(wf: &Workflow, cron: &CronWorkflow, identity: &str) -> bool {
    let owned = wf.owner_references().iter().any(|o| Some(&o.uid) == cron.metadata.uid.as_ref());
    let created_by = wf.annotations().get(ANNOTATION_CREATED_BY).map(String::as_str);
    owned && !identity.is_empty() && created_by == Some(identity)
}

/// The authors the API server recorded on the CronWorkflow (None: not recorded).
fn authors(cron: &CronWorkflow) -> Option<&String> {
    cron.annotations().get(ANNOTATION_AUTHORS).filter(|v| !v.trim().is_empty())
}

fn run_of(cron: &str, wf: &Workflow) -> Option<Run> {
    let scheduled = cron::scheduled_of(cron, &wf.name_any())?;
    let state = match wf.status.as_ref().and_then(|s| s.phase) {
        Some(WorkflowPhase::Succeeded) => RunState::Succeeded,
        Some(WorkflowPhase::Failed) => RunState::Failed,
        _ => RunState::Active,
    };
    Some(Run { name: wf.name_any(), scheduled, state })
}

/// Creates the Workflow for `due` from the CronWorkflow as the API server holds it now (read
/// fresh: never from a cached spec its author has since changed, or of a CronWorkflow that is
/// gone). Its name is taken already: that run was started before (a restart), and is not doubled.
async fn start(
    ctx: &Context,
    api: &Api<Workflow>,
    cached: &CronWorkflow,
    due: jiff::Timestamp,
    decision: &mut Decision,
) -> Result<(), Error> {
    let crons: Api<CronWorkflow> = Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(cron) = crons.get_opt(&cached.name_any()).await.map_err(Error::Kube)? else { return Ok(()) };
    if cron.uid() != cached.uid() || cron.spec.suspend || authors(&cron).is_none() {
        decision.create = None;
        return Ok(());
    }
    let wf = workflow_for(&cron, due);
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    ctx.metrics.write("create_workflow");
    let note = match api.create(&pp, &wf).await {
        Ok(_) => format!("created Workflow {} for {due}", wf.name_any()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&wf.name_any()).await.map_err(Error::Kube)?;
            if !is_run_of(&existing, &cron, &ctx.identity) {
                return Err(Error::NotOwned(format!(
                    "Workflow {} exists but does not belong to this CronWorkflow; delete it",
                    wf.name_any()
                )));
            }
            return Ok(());
        }
        Err(e) => {
            let e = Error::Create(e);
            if !e.fails_step() {
                return Err(e);
            }
            // Refused for good (admission, validation): this time is over; say why, go on.
            let note = format!("Workflow {} for {due} was refused: {e}", wf.name_any());
            ctx.event(&cron, &Event { warning: true, reason: "CreateFailed", note }).await;
            decision.active.retain(|r| !r.name.is_empty());
            return Ok(());
        }
    };
    if let Some(new) = decision.active.iter_mut().find(|r| r.name.is_empty()) {
        new.name = wf.name_any();
    }
    ctx.event(&cron, &Event { warning: false, reason: "Scheduled", note }).await;
    Ok(())
}

/// The Workflow for one scheduled time: the CronWorkflow's `workflowSpec` unchanged, owned by it
/// (so deleting the CronWorkflow deletes its runs), labelled and annotated with the time and
/// with the CronWorkflow's authors (who may then not approve it where self-approval is forbidden).
pub fn workflow_for(cron: &CronWorkflow, due: jiff::Timestamp) -> Workflow {
    let mut annotations = std::collections::BTreeMap::from([(ANNOTATION_SCHEDULED.to_string(), due.to_string())]);
    if let Some(authors) = authors(cron) {
        annotations.insert(ANNOTATION_AUTHORS.to_string(), authors.clone());
    }
    Workflow {
        metadata: ObjectMeta {
            name: Some(cron::run_name(&cron.name_any(), due)),
            namespace: cron.namespace(),
            labels: Some([(LABEL_CRON.to_string(), cron.name_any())].into()),
            annotations: Some(annotations),
            owner_references: Some(vec![cron.controller_owner_ref(&()).expect("a stored CronWorkflow has a uid")]),
            ..Default::default()
        },
        spec: cron.spec.workflow_spec.clone(),
        status: None,
    }
}

/// Deletes a Workflow of this CronWorkflow, and with it its Pods and Approvals.
async fn delete(ctx: &Context, api: &Api<Workflow>, name: &str) -> Result<(), Error> {
    let dp = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    ctx.metrics.write("delete_workflow");
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// The status to write; conditions move only on a real transition.
fn status_for(
    cron: &CronWorkflow,
    decision: Option<&Decision>,
    active: &[Run],
    ready: (&str, &str, String),
    now: jiff::Timestamp,
) -> CronWorkflowStatus {
    let old = cron.status.clone().unwrap_or_default();
    let (status, reason, message) = ready;
    let stalled = if status == "True" { "False" } else { "True" };
    let wanted = vec![("Ready", status, reason, message.clone()), ("Stalled", stalled, reason, message)];
    let active: Vec<ActiveWorkflow> = active
        .iter()
        .filter(|r| !r.name.is_empty())
        .map(|r| ActiveWorkflow { name: r.name.clone(), scheduled_time: Some(Time(r.scheduled)) })
        .collect();
    CronWorkflowStatus {
        last_schedule_time: decision.and_then(|d| d.last_schedule).map(Time).or(old.last_schedule_time),
        next_schedule_time: decision.and_then(|d| d.next_schedule).map(Time),
        active_count: i32::try_from(active.len()).unwrap_or(i32::MAX),
        active,
        observed_generation: cron.metadata.generation,
        conditions: conditions::merge(&old.conditions, wanted, Time(now), cron.metadata.generation),
    }
}

async fn write(ctx: &Context, cron: &CronWorkflow, status: CronWorkflowStatus) -> Result<(), Error> {
    if cron.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut next = cron.clone();
    next.status = Some(status);
    match super::write_status(ctx, &next, "cronworkflow_status").await? {
        Written::Done | Written::Stale => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_the_cron_spec_unchanged_owned_by_the_cron() {
        let mut cron = CronWorkflow::new(
            "review",
            crate::api::CronWorkflowSpec {
                schedule: "0 9 1 * *".into(),
                workflow_spec: crate::api::WorkflowSpec {
                    service_account_name: Some("auditor".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        cron.metadata.namespace = Some("it".into());
        cron.metadata.uid = Some("u-1".into());
        cron.metadata.annotations = Some([(ANNOTATION_AUTHORS.to_string(), "carol\ndave".to_string())].into());
        let due: jiff::Timestamp = "2026-03-01T09:00:00Z".parse().unwrap();
        let mut wf = workflow_for(&cron, due);
        assert_eq!(wf.annotations().get(ANNOTATION_AUTHORS).map(String::as_str), Some("carol\ndave"));
        assert!(!is_run_of(&wf, &cron, "op"), "not created by the operator (as the API server records it)");
        wf.annotations_mut().insert(ANNOTATION_CREATED_BY.into(), "op".into());
        assert!(is_run_of(&wf, &cron, "op"));
        assert_eq!(wf.spec, cron.spec.workflow_spec);
        assert_eq!(wf.name_any(), "review-1772355600");
        let owner = &wf.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("CronWorkflow", "u-1", Some(true)));
        assert_eq!(wf.labels().get(LABEL_CRON).map(String::as_str), Some("review"));
        assert_eq!(run_of("review", &wf).map(|r| r.scheduled), Some(due));
    }
}
