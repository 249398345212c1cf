//! What the archive keeps of a gate and of a run: built from the objects alone, serialized once
//! (field order fixed, maps sorted), and stored as that text so its hash can be checked later.

use std::collections::BTreeMap;

use hitl_api::approval::{Approval, ApprovalPhase, Vote};
use hitl_api::shared::{Approvers, InputSpec};
use hitl_api::workflow::{StepPhase, Workflow};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What is stored of one gate, once it is decided, expired or cancelled.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateRecord<'a> {
    pub approval: &'a str,
    pub workflow: &'a str,
    pub workflow_uid: &'a str,
    pub step: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<&'a Approvers>,
    pub inputs_asked: &'a [InputSpec],
    /// Approved, Rejected, Expired or Cancelled.
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<&'a str>,
    pub decided_by_groups: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub votes: &'a BTreeMap<String, Vote>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<&'a Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<&'a Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence_seen: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<&'a str>,
}

/// What is stored of one run, once it finished (or is being deleted unfinished).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord<'a> {
    pub workflow: &'a str,
    pub workflow_uid: &'a str,
    /// `sha256:<hex>` of the spec as it ran.
    pub spec_digest: String,
    /// The run's phase; `Deleted` when it was deleted before it finished.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<&'a Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<&'a Time>,
    pub steps: Vec<StepRecord<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord<'a> {
    pub name: &'a str,
    pub phase: StepPhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<&'a Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<&'a Time>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<&'a str>,
}

/// The gate's record as canonical JSON, or None while it waits.
pub fn gate(approval: &Approval) -> Option<String> {
    let status = approval.status.as_ref()?;
    let outcome = match status.phase? {
        ApprovalPhase::Pending => return None,
        ApprovalPhase::Approved => "Approved",
        ApprovalPhase::Rejected => "Rejected",
        ApprovalPhase::Expired => "Expired",
        ApprovalPhase::Cancelled => "Cancelled",
    };
    let spec = &approval.spec;
    let record = GateRecord {
        approval: approval.metadata.name.as_deref().unwrap_or_default(),
        workflow: &spec.workflow_ref.name,
        workflow_uid: &spec.workflow_ref.uid,
        step: &spec.step,
        item: spec.item,
        message: spec.message.as_deref(),
        approvers: spec.gate.approvers.as_ref(),
        inputs_asked: &spec.gate.inputs,
        outcome,
        input: spec.input.as_ref(),
        comment: spec.comment.as_deref(),
        decided_by: status.decided_by.as_deref().or(spec.decided_by.as_deref()),
        decided_by_groups: &spec.decided_by_groups,
        votes: &spec.votes,
        decided_at: status.decided_at.as_ref(),
        expires_at: spec.expires_at.as_ref(),
        evidence_digest: spec.evidence_digest.as_deref(),
        evidence_seen: spec.evidence_seen.as_deref(),
        created_by: spec.workflow_ref.created_by.as_deref(),
    };
    serde_json::to_string(&record).ok()
}

/// The run's record as canonical JSON, or None while it runs and is not being deleted.
pub fn run(workflow: &Workflow) -> Option<String> {
    let status = workflow.status.as_ref();
    let finished = status.and_then(|s| s.phase).filter(|p| p.is_terminal());
    let deleting = workflow.metadata.deletion_timestamp.is_some();
    let phase = match (finished, deleting) {
        (Some(phase), _) => format!("{phase:?}"),
        (None, true) => "Deleted".to_string(),
        (None, false) => return None,
    };
    let spec = serde_json::to_vec(&workflow.spec).ok()?;
    let steps = status.map(|s| s.steps.as_slice()).unwrap_or_default();
    let record = RunRecord {
        workflow: workflow.metadata.name.as_deref().unwrap_or_default(),
        workflow_uid: workflow.metadata.uid.as_deref().unwrap_or_default(),
        spec_digest: format!("sha256:{:x}", Sha256::digest(spec)),
        phase,
        created_by: workflow.annotations().get(hitl_api::workflow::ANNOTATION_CREATED_BY).map(String::as_str),
        started_at: status.and_then(|s| s.started_at.as_ref()),
        finished_at: status.and_then(|s| s.finished_at.as_ref()),
        steps: steps
            .iter()
            .map(|s| StepRecord {
                name: &s.name,
                phase: s.phase,
                started_at: s.started_at.as_ref(),
                finished_at: s.finished_at.as_ref(),
                outputs: &s.outputs,
                decided_by: s.decided_by.as_deref(),
            })
            .collect(),
    };
    serde_json::to_string(&record).ok()
}
