//! The suspend step kind: a gate, open until a person decides on its Approval or it expires.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ctx::{BUSY_RETRY, Ctx, after, t};
use crate::approval_request::ApprovalRequest;
use crate::event::Event;
use crate::expr::{self, EvalError};
use crate::{gate, inputs, names, outputs};
use hitl_api::{ANNOTATION_CREATED_BY, Gate, InputSpec, OnTimeout, Step, StepPhase, StepStatus, Workflow, WorkflowRef};

/// Opens the gate: renders its message and asks for its Approval.
/// `steps`: the run's step statuses as this pass has them (an evidence step may have finished in it).
pub(super) fn start(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, scope: &expr::Scope, steps: &[StepStatus]) {
    let gate = step.suspend.as_ref().expect("suspend");
    let message = match gate.message.as_deref().map(|m| scope.render(m)).transpose() {
        Ok(m) => m,
        Err(EvalError::Busy(_)) => return ctx.wake_at(ctx.now + BUSY_RETRY),
        Err(EvalError::Failed(e)) => {
            ctx.finish(st, StepPhase::Failed, Some("ExpressionError"), Some(format!("suspend.message: {e}")));
            return;
        }
    };
    let index = ctx.item.as_ref().map(|(i, _)| *i);
    let name = match index {
        Some(i) => names::item_approval_name(&ctx.name, &step.name, i),
        None => names::approval_name(&ctx.name, &step.name),
    };
    st.phase = StepPhase::Waiting;
    st.started_at = Some(t(ctx.now));
    st.approval_name = Some(name.clone());
    st.message = message;
    let mut request = approval_request_in(ctx.wf, steps, step, st);
    request.item = index.map(|i| i as i32);
    ctx.plan.create_approvals.push(request);
    ctx.plan.events.push(Event {
        warning: false,
        reason: "ApprovalRequested",
        note: format!("step {} waits for a decision on Approval {name}", step.name),
    });
}

/// A waiting step: open its gate if the Approval is missing, else act on a decision the Approval
/// records, once it has been checked against the gate this step expects.
pub(super) fn observe(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, steps: &[StepStatus]) {
    let mut expected = approval_request_in(ctx.wf, steps, step, st);
    expected.item = ctx.item.as_ref().map(|(i, _)| *i as i32);
    let Some(a) = ctx.approvals.get(expected.name.as_str()).copied() else {
        ctx.plan.create_approvals.push(expected);
        return;
    };
    match gate::outcome(&expected, a, ctx.now) {
        gate::Outcome::Waiting => {}
        gate::Outcome::NotAccepted(why) => {
            // Told once; the step keeps waiting for a decision that can be acted on.
            if st.reason.as_deref() != Some("DecisionNotAccepted") {
                st.reason = Some("DecisionNotAccepted".into());
                let note = format!("step {}: Approval {} not acted on: {why}", step.name, expected.name);
                ctx.plan.events.push(Event { warning: true, reason: "DecisionNotAccepted", note });
            }
        }
        gate::Outcome::Approved { values, decided_by } => {
            st.outputs = gate_outputs(&expected.gate.inputs, &values, "Approve");
            st.decided_by = Some(decided_by);
            ctx.finish(st, StepPhase::Succeeded, Some("Approved"), a.spec.comment.clone());
        }
        gate::Outcome::Rejected { decided_by } => {
            st.outputs = BTreeMap::from([("decision".to_string(), "Reject".to_string())]);
            let msg = match &a.spec.comment {
                Some(c) => format!("rejected by {decided_by}: {c}"),
                None => format!("rejected by {decided_by}"),
            };
            st.decided_by = Some(decided_by);
            ctx.finish(st, StepPhase::Failed, Some("Rejected"), Some(msg));
        }
        gate::Outcome::Expired if expected.gate.on_timeout == Some(OnTimeout::Approve) => {
            st.outputs = gate_outputs(&expected.gate.inputs, &inputs::defaults(&expected.gate.inputs), "Expired");
            ctx.finish(st, StepPhase::Succeeded, Some("ApprovalExpired"), Some("expired; onTimeout: Approve".into()));
        }
        gate::Outcome::Expired => {
            st.outputs = BTreeMap::from([("decision".to_string(), "Expired".to_string())]);
            let msg = "nobody decided before the gate expired".to_string();
            ctx.finish(st, StepPhase::Failed, Some("ApprovalExpired"), Some(msg));
        }
    }
    if st.phase.is_terminal() {
        st.votes = a.spec.votes.iter().map(|(user, v)| format!("{user}: {:?}", v.decision)).collect();
        let outcome = st.outputs.get("decision").cloned().unwrap_or_default();
        let by = st.decided_by.clone().map(|b| format!(" by {b}")).unwrap_or_default();
        ctx.plan.events.push(Event {
            warning: st.phase == StepPhase::Failed,
            reason: if outcome == "Expired" { "ApprovalExpired" } else { "ApprovalDecided" },
            note: format!("step {}: {} {outcome}{by}", step.name, expected.name),
        });
    }
}

/// The gate a waiting step expects, from the Workflow and the step's status alone.
pub fn approval_request(wf: &Workflow, step: &Step, st: &StepStatus) -> ApprovalRequest {
    let recorded = wf.status.as_ref().map(|s| s.steps.as_slice()).unwrap_or_default();
    approval_request_in(wf, recorded, step, st)
}

/// The same, with the evidence read from `statuses`: in a pass, the status it is writing (the
/// evidence step may have finished in this very pass).
pub fn approval_request_in(wf: &Workflow, statuses: &[StepStatus], step: &Step, st: &StepStatus) -> ApprovalRequest {
    let gate = &step.suspend.as_ref().expect("suspend step").gate;
    let quorum = gate.required_approvals.filter(|&n| n > 1);
    let workflow_name = wf.metadata.name.clone().unwrap_or_default();
    // A run started by an earlier version keeps the name it recorded.
    let name = st.approval_name.clone().unwrap_or_else(|| names::approval_name(&workflow_name, &step.name));
    let created_by = wf.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_CREATED_BY)).cloned();
    let (evidence_pods, evidence_digest) = crate::evidence::of_gate(wf, statuses, step);
    ApprovalRequest {
        evidence_pods,
        evidence_digest,
        name,
        workflow: WorkflowRef {
            name: workflow_name,
            uid: wf.metadata.uid.clone().unwrap_or_default(),
            created_by,
            authors: crate::authors::of_run(wf),
        },
        step: step.name.clone(),
        item: None,
        message: st.message.clone(),
        gate: Gate {
            approvers: gate.approvers.clone().filter(|a| !a.is_empty()),
            required_approvals: quorum,
            reject_when: gate.reject_when.filter(|_| quorum.is_some()),
            ..gate.clone()
        },
        expires_at: gate.timeout_seconds.zip(st.started_at.as_ref()).map(|(s, started)| Time(after(started, s))),
        escalates_at: gate
            .notify
            .as_ref()
            .and_then(|n| n.escalation.as_ref())
            .zip(st.started_at.as_ref())
            .map(|(e, started)| Time(after(started, e.after_seconds))),
    }
}

/// A gate's outputs: every declared input (empty when neither given nor defaulted, so templates
/// can use it without `has()`), plus the decision.
fn gate_outputs(
    specs: &[InputSpec],
    values: &BTreeMap<String, serde_json::Value>,
    decision: &str,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        specs.iter().map(|s| (s.name.clone(), values.get(&s.name).map(outputs::to_text).unwrap_or_default())).collect();
    out.insert("decision".into(), decision.into());
    out
}
