//! Runs of a WorkflowTemplate: resolve the template once, record it in the Workflow's status, and
//! from then on run only from that record.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::{Context, Error, Written};
use crate::api::workflow::{ANNOTATION_AUTHORS, authors_of};
use crate::api::{ResolvedTemplate, Workflow, WorkflowPhase, WorkflowTemplate, WorkflowTemplateRef};
use crate::engine::event::Event;
use crate::engine::plan::{self, Plan};
use crate::engine::template;

/// What a Workflow runs in this pass.
pub enum Run {
    /// This Workflow (its own steps, or its recorded template spec in place of its spec).
    This(Arc<Workflow>),
    /// Nothing yet: the template was just recorded (the write wakes the next pass).
    Later(Action),
    /// The run cannot start; persist this plan (it fails the Workflow with the reason).
    Fail(Box<Plan>),
}

/// The Workflow as it runs. One with a template reference runs its recorded template spec; on
/// its first pass the template is read fresh from the API server (never a cache), resolved and
/// recorded, so every later pass and every restart runs exactly what was recorded.
pub async fn effective(ctx: &Context, wf: Arc<Workflow>, now: jiff::Timestamp) -> Result<Run, Error> {
    let Some(reference) = wf.spec.workflow_template_ref.clone() else { return Ok(Run::This(wf)) };
    let status = wf.status.clone().unwrap_or_default();
    if status.template.is_some() {
        return Ok(Run::This(Arc::new(template::as_run(&wf).into_owned())));
    }
    if status.phase.is_some_and(WorkflowPhase::is_terminal) {
        return Ok(Run::This(wf));
    }
    let api: Api<WorkflowTemplate> = Api::namespaced(ctx.client.clone(), &wf.namespace().unwrap_or_default());
    let Some(found) = api.get_opt(&reference.name).await.map_err(Error::Kube)? else {
        let message = format!(
            "spec.workflowTemplateRef: WorkflowTemplate {} does not exist in namespace {}",
            reference.name,
            wf.namespace().unwrap_or_default()
        );
        return Ok(Run::Fail(Box::new(plan::abort(&wf, "TemplateNotFound", message, now))));
    };
    if let Some((reason, message)) = refusal(&found, &reference) {
        return Ok(Run::Fail(Box::new(plan::abort(&wf, reason, message, now))));
    }
    let spec = match template::for_run(&found.spec, &wf.spec) {
        Ok(spec) => spec,
        Err(e) => return Ok(Run::Fail(Box::new(plan::abort(&wf, e.reason, e.message, now)))),
    };
    record(ctx, &wf, &found, spec, now).await
}

/// Why a run may not follow the template as the API server holds it now: it changed since the
/// run pinned it, or nobody knows who wrote it (so nobody knows who may not approve the run).
fn refusal(found: &WorkflowTemplate, reference: &WorkflowTemplateRef) -> Option<(&'static str, String)> {
    let now_at = found.meta().resource_version.clone().unwrap_or_default();
    if let Some(pinned) = reference.resource_version.as_ref().filter(|v| **v != now_at) {
        return Some((
            "TemplateChanged",
            format!(
                "spec.workflowTemplateRef: WorkflowTemplate {} was changed since resourceVersion {pinned} (it is at \
                 {now_at} now); read it again and run it with the version you read",
                found.name_any()
            ),
        ));
    }
    if authors(found).is_empty() {
        return Some((
            "TemplateAuthorsUnknown",
            format!(
                "WorkflowTemplate {}: who wrote it is not recorded (annotation {ANNOTATION_AUTHORS}, written by the API \
                 server's hitl-authors policy); it was created before that policy was installed: re-create it \
                 (kubectl replace --force)",
                found.name_any()
            ),
        ));
    }
    None
}

fn authors(found: &WorkflowTemplate) -> Vec<String> {
    found.annotations().get(ANNOTATION_AUTHORS).map(|v| authors_of(v)).unwrap_or_default()
}

/// Writes what will run into the status (starting the run, so the spec is frozen from here on).
async fn record(
    ctx: &Context,
    wf: &Workflow,
    found: &WorkflowTemplate,
    spec: crate::api::WorkflowSpec,
    now: jiff::Timestamp,
) -> Result<Run, Error> {
    let digest = template::digest(&spec);
    let mut next = wf.clone();
    let status = next.status.get_or_insert_with(Default::default);
    status.started_at.get_or_insert(Time(now));
    status.template = Some(ResolvedTemplate {
        name: found.name_any(),
        uid: found.meta().uid.clone(),
        resource_version: found.meta().resource_version.clone(),
        digest: digest.clone(),
        authors: authors(found),
        resolved_at: Some(Time(now)),
        spec: Box::new(spec),
    });
    if let Written::Stale = super::write_status(ctx, &next, "workflow_status").await? {
        return Ok(Run::Later(Action::requeue(std::time::Duration::from_millis(100))));
    }
    let note = format!(
        "running WorkflowTemplate {} at resourceVersion {} ({digest})",
        found.name_any(),
        found.meta().resource_version.clone().unwrap_or_default()
    );
    ctx.event(wf, &Event { warning: false, reason: "TemplateResolved", note }).await;
    // Our own write wakes the next pass too; the requeue only bounds the wait if it does not.
    Ok(Run::Later(Action::requeue(std::time::Duration::from_secs(1))))
}
