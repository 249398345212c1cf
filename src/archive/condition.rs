//! The `Archived` condition on a finished Workflow whose records wait for the database: written
//! only when something is wrong (and once more when it is put right), so a healthy archive costs
//! no status write. The Workflow controller keeps conditions it does not set.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use tracing::debug;

use crate::api::Workflow;

const TYPE: &str = "Archived";

/// Says on the Workflow that its records wait, and why; best effort (the metric says it too).
pub async fn waiting(api: &Api<Workflow>, wf: &Workflow, manager: &str, why: &str) {
    let message = format!("waiting for the decision archive; the Workflow is kept until its records are stored: {why}");
    set(api, wf, manager, ("False", "ArchiveUnavailable"), message).await;
}

/// Puts right a condition `waiting` wrote, once the records are stored.
pub async fn stored(api: &Api<Workflow>, wf: &Workflow, manager: &str) {
    if current(wf).is_some_and(|c| c.status == "False") {
        set(api, wf, manager, ("True", "Stored"), "every record of this run is in the decision archive".into()).await;
    }
}

fn current(wf: &Workflow) -> Option<&Condition> {
    wf.status.as_ref()?.conditions.iter().find(|c| c.type_ == TYPE)
}

async fn set(api: &Api<Workflow>, wf: &Workflow, manager: &str, (status, reason): (&str, &str), message: String) {
    if current(wf).is_some_and(|c| c.status == status && c.reason == reason && c.message == message) {
        return;
    }
    let mut updated = wf.clone();
    updated.metadata.managed_fields = None;
    let conditions = &mut updated.status.get_or_insert_with(Default::default).conditions;
    conditions.retain(|c| c.type_ != TYPE);
    conditions.push(Condition {
        type_: TYPE.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: wf.metadata.generation,
        last_transition_time: Time(jiff::Timestamp::now()),
    });
    let params = PostParams { field_manager: Some(manager.into()), ..Default::default() };
    // A conflict means the run moved on meanwhile: the next failed pass writes it again.
    if let Err(e) = api.replace_status(&wf.name_any(), &params, &updated).await {
        debug!(error = %e, "could not write the Archived condition");
    }
}
