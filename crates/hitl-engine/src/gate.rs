//! What an Approval's status should be: a pure function of the Approval and the time.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use std::collections::BTreeMap;

use super::approval_request::ApprovalRequest;
use super::event::Event;
use super::{conditions, inputs, quorum};
use hitl_api::{Approval, ApprovalPhase, ApprovalSpec, ApprovalStatus, Approvers, Decision, GateField, SelfApproval};

/// The Approval's next status, an Event if something happened, and when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct GateDecision {
    pub status: ApprovalStatus,
    pub event: Option<Event>,
    pub requeue_at: Option<Timestamp>,
}

/// The status of a gate whose Workflow ended before anyone decided: it can no longer be decided.
pub fn cancelled(a: &Approval, now: Timestamp) -> Option<ApprovalStatus> {
    let mut status = a.status.clone().unwrap_or_default();
    if status.phase.is_some_and(|p| p != ApprovalPhase::Pending) {
        return None;
    }
    status.phase = Some(ApprovalPhase::Cancelled);
    status.message = Some("the Workflow ended before anyone decided".into());
    let old = status.clone();
    set_conditions(&mut status, &old, None, now, a.metadata.generation);
    Some(status)
}

/// Who may decide, as a gate records it.
pub struct Deciders<'a> {
    pub approvers: Option<&'a Approvers>,
    /// Who may decide too since the gate escalated (None before).
    pub escalated: Option<&'a Approvers>,
    pub self_approval: Option<SelfApproval>,
    pub created_by: Option<&'a str>,
    /// Who wrote the run's CronWorkflow or WorkflowTemplate: creators too, for self-approval.
    pub authors: &'a [String],
}

impl<'a> Deciders<'a> {
    pub fn of(a: &'a Approval) -> Self {
        let spec = &a.spec;
        Deciders {
            approvers: spec.gate.approvers.as_ref(),
            escalated: escalated_approvers(a),
            self_approval: spec.gate.self_approval,
            created_by: spec.workflow_ref.created_by.as_deref(),
            authors: &spec.workflow_ref.authors,
        }
    }

    /// Why the decision recorded in `spec` may not count (the admission policies should have
    /// refused it already). Group membership is taken from `decidedByGroups`, which the API server
    /// fills in and checks against the requester's groups.
    pub fn refusal(&self, spec: &ApprovalSpec) -> Option<String> {
        let who = spec.decided_by.as_deref().filter(|d| !d.is_empty());
        if self.self_approval == Some(SelfApproval::Forbid) {
            match (who, self.created_by) {
                (_, None) => return Some("self-approval is forbidden, but the Workflow's creator is unknown".into()),
                (Some(w), Some(c)) if w == c => {
                    return Some(format!(
                        "{w} created the Workflow and may not decide its gate (self-approval is forbidden)"
                    ));
                }
                (Some(w), Some(_)) if self.authors.iter().any(|a| a == w) => {
                    return Some(format!(
                        "{w} wrote what the Workflow runs (its CronWorkflow or WorkflowTemplate) and may not \
                         decide its gate (self-approval is forbidden)"
                    ));
                }
                (None, Some(_)) => return Some("decidedBy is empty, but self-approval is forbidden".into()),
                _ => {}
            }
        }
        let approvers = self.approvers.filter(|a| !a.is_empty())?;
        let Some(who) = who else {
            return Some("decidedBy is empty, but this gate lists approvers".into());
        };
        let lists = std::iter::once(approvers).chain(self.escalated);
        let allowed = lists.into_iter().any(|list| {
            list.users.iter().any(|u| u == who) || spec.decided_by_groups.iter().any(|g| list.groups.contains(g))
        });
        (!allowed).then(|| format!("{who} is not among the approvers ({})", approvers.summary()))
    }
}

/// The escalation approvers of a gate that has escalated (its status says so; only the operator
/// writes status).
pub fn escalated_approvers(a: &Approval) -> Option<&Approvers> {
    a.status.as_ref()?.escalated_at.as_ref()?;
    Some(&a.spec.gate.notify.as_ref()?.escalation.as_ref()?.approvers)
}

/// The gate's deadline: recorded at creation from the step's start; older Approvals count from
/// their own creation.
fn expires_at(a: &Approval, now: Timestamp) -> Option<Time> {
    a.spec.expires_at.clone().or_else(|| {
        let created = a.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
        a.spec
            .gate
            .timeout_seconds
            .map(|s| Time(created.saturating_add(SignedDuration::from_secs(s)).unwrap_or(Timestamp::MAX)))
    })
}

/// The decision a person sent, if any: input without a decision approves.
fn sent_decision(spec: &ApprovalSpec) -> Option<Decision> {
    spec.decision.or(spec.input.as_ref().map(|_| Decision::Approve))
}

pub fn evaluate(a: &Approval, now: Timestamp) -> GateDecision {
    let old = a.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let finished = old.phase.is_some_and(|p| p != ApprovalPhase::Pending);
    if finished {
        return GateDecision { status, event: None, requeue_at: None };
    }
    status.phase = Some(ApprovalPhase::Pending);
    status.approvers = a.spec.gate.approvers.as_ref().filter(|p| !p.is_empty()).map(|p| p.summary());
    status.expires_at = expires_at(a, now);
    // A decision first seen after the deadline does not count, whatever the object says about
    // when it was written: people can write managedFields, so only our own clock is trusted.
    let expired = status.expires_at.as_ref().is_some_and(|e| e.0 <= now);
    let decision = sent_decision(&a.spec);
    // The first look at a new gate announces it; a decision seen at the same time is told instead.
    let mut event = old.phase.is_none().then(|| Event {
        warning: false,
        reason: "Requested",
        note: match &status.approvers {
            Some(who) => format!("waiting for a decision by {who}"),
            None => "waiting for a decision".into(),
        },
    });
    let mut problem = None;
    let required = a.spec.gate.required_approvals.filter(|&n| n > 1);
    match (decision, expired) {
        (_, false) if required.is_some() => {
            let (told, trouble) = quorum::evaluate(a, required.expect("checked"), &mut status, now);
            event = told.or(event);
            problem = trouble;
        }
        (_, true) => {
            let exp = status.expires_at.clone().expect("expired implies a deadline");
            status.phase = Some(ApprovalPhase::Expired);
            status.message = Some(match decision {
                Some(_) => format!("the gate expired at {}, before the decision was seen", exp.0),
                None => format!("nobody decided before {}", exp.0),
            });
            event = Some(Event { warning: true, reason: "Expired", note: "nobody decided in time".into() });
        }
        (Some(d), false) => match check_decision(a, d) {
            Err(p) => problem = Some(p),
            Ok(()) => {
                let (phase, reason) = match d {
                    Decision::Approve => (ApprovalPhase::Approved, "Approved"),
                    Decision::Reject => (ApprovalPhase::Rejected, "Rejected"),
                };
                let who = a.spec.decided_by.clone();
                status.phase = Some(phase);
                status.decided_by = who.clone();
                status.decided_at = Some(Time(now));
                status.message = a.spec.comment.clone();
                let by = who.unwrap_or_else(|| "an unnamed user".into());
                event = Some(Event { warning: false, reason, note: format!("{reason} by {by}") });
            }
        },
        (None, false) => {}
    }
    if let Some((reason, why)) = &problem {
        status.message = Some(format!("decision not acted on: {why}"));
        if old.message != status.message {
            event = Some(Event { warning: true, reason, note: status.message.clone().unwrap_or_default() });
        }
    } else if status.phase == Some(ApprovalPhase::Pending) {
        status.message = None;
    }
    // What the person had in front of them, on the record of the decision.
    if let (Some(ev), Some(digest)) = (event.as_mut(), &a.spec.evidence_digest)
        && matches!(ev.reason, "Approved" | "Rejected")
    {
        ev.note.push_str(&format!(" (evidence {digest}"));
        if let Some(seen) = &a.spec.evidence_seen {
            ev.note.push_str(&format!("; the page showed {seen}"));
        }
        ev.note.push(')');
    }
    set_conditions(&mut status, &old, problem.as_ref().map(|p| p.0), now, a.metadata.generation);
    let requeue_at =
        (status.phase == Some(ApprovalPhase::Pending)).then(|| status.expires_at.as_ref().map(|e| e.0)).flatten();
    GateDecision { status, event, requeue_at }
}

/// Checks a decision against the gate's own record: who may decide, and the input.
fn check_decision(a: &Approval, d: Decision) -> Result<(), (&'static str, String)> {
    if let Some(why) = Deciders::of(a).refusal(&a.spec) {
        return Err(("NotAnApprover", why));
    }
    let given = a.spec.input.clone().unwrap_or_default();
    match d {
        Decision::Approve => inputs::resolve(&a.spec.gate.inputs, &given).map(drop),
        Decision::Reject => inputs::check_given(&a.spec.gate.inputs, &given),
    }
    .map_err(|e| ("InputInvalid", e))
}

/// What a waiting step makes of its Approval.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nobody has decided (or the controller has not yet recorded it).
    Waiting,
    Approved {
        values: BTreeMap<String, serde_json::Value>,
        decided_by: String,
    },
    Rejected {
        decided_by: String,
    },
    Expired,
    /// The Approval claims an outcome that does not hold up: never acted on.
    NotAccepted(String),
}

/// Reads a gate's outcome from its Approval, trusting nothing the Workflow can check itself: the
/// Approval must carry exactly the gate `expected` (built from the Workflow), the recorded decider
/// must be one the step's approvers allow, the decision must be in its spec and have been seen
/// before the step's deadline, and an expiry must not come before that deadline.
pub fn outcome(expected: &ApprovalRequest, a: &Approval, now: Timestamp) -> Outcome {
    if let Some(why) = mismatch(expected, &a.spec) {
        return Outcome::NotAccepted(format!("it does not match the step's gate: {why}"));
    }
    let status = a.status.clone().unwrap_or_default();
    let deadline = expected.expires_at.as_ref().map(|e| e.0);
    let decided = match status.phase {
        Some(ApprovalPhase::Approved) => Decision::Approve,
        Some(ApprovalPhase::Rejected) => Decision::Reject,
        Some(ApprovalPhase::Expired) if deadline.is_some_and(|d| d <= now) => return Outcome::Expired,
        Some(ApprovalPhase::Expired) => return Outcome::NotAccepted("it is marked Expired before the deadline".into()),
        _ => return unrecorded(expected, a, &status, now),
    };
    let seen = status.decided_at.as_ref().map(|t| t.0);
    if let Some(deadline) = deadline
        && seen.is_none_or(|s| s > deadline)
    {
        return Outcome::NotAccepted("the decision was not seen before the gate expired".into());
    }
    if let Some(required) = expected.gate.required_approvals.filter(|&n| n > 1) {
        return quorum::outcome(expected, a, required, decided);
    }
    if sent_decision(&a.spec) != Some(decided) {
        return Outcome::NotAccepted(format!("its status says {decided:?}, but its spec holds no such decision"));
    }
    if status.decided_by.clone().unwrap_or_default() != a.spec.decided_by.clone().unwrap_or_default() {
        return Outcome::NotAccepted("the decider in its status differs from the one in its spec".into());
    }
    accepted(expected, a, &status, decided, seen)
}

/// A decision in the Approval's spec that its controller has not recorded yet. The Workflow acts
/// on it at once when it holds up on the Workflow's own checks (one decider, an allowed one,
/// valid input, seen by this pass before the deadline), so the next step does not wait for the
/// Approval's status write; the Approval controller then records the same decision at the time
/// the run saw it. Anything else (a quorum, a forEach item's gate, a decision that does not hold
/// up) waits for that record, and the Approval controller says why.
fn unrecorded(expected: &ApprovalRequest, a: &Approval, status: &ApprovalStatus, now: Timestamp) -> Outcome {
    let Some(decided) = sent_decision(&a.spec) else { return Outcome::Waiting };
    let quorum = expected.gate.required_approvals.is_some_and(|n| n > 1);
    let expired = expected.expires_at.as_ref().is_some_and(|d| d.0 <= now);
    if quorum || expected.item.is_some() || expired {
        return Outcome::Waiting;
    }
    match accepted(expected, a, status, decided, Some(now)) {
        outcome @ (Outcome::Approved { .. } | Outcome::Rejected { .. }) => outcome,
        _ => Outcome::Waiting,
    }
}

/// One decider's decision, `seen` at that time, checked against the step's approvers and inputs.
fn accepted(
    expected: &ApprovalRequest,
    a: &Approval,
    status: &ApprovalStatus,
    decided: Decision,
    seen: Option<Timestamp>,
) -> Outcome {
    let step_deciders = Deciders {
        approvers: expected.gate.approvers.as_ref(),
        escalated: escalation_counts(expected, status, seen).then(|| escalated_approvers(a)).flatten(),
        self_approval: a.spec.gate.self_approval,
        created_by: expected.workflow.created_by.as_deref(),
        authors: &expected.workflow.authors,
    };
    if let Some(why) = step_deciders.refusal(&a.spec) {
        return Outcome::NotAccepted(why);
    }
    let decided_by = a.spec.decided_by.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "someone".to_string());
    let given = a.spec.input.clone().unwrap_or_default();
    match decided {
        Decision::Reject => match inputs::check_given(&expected.gate.inputs, &given) {
            Ok(()) => Outcome::Rejected { decided_by },
            Err(e) => Outcome::NotAccepted(e),
        },
        Decision::Approve => match inputs::resolve(&expected.gate.inputs, &given) {
            Ok(values) => Outcome::Approved { values, decided_by },
            Err(e) => Outcome::NotAccepted(e),
        },
    }
}

/// Whether the Workflow accepts escalation approvers: the gate escalated no earlier than the
/// step's own escalation time, and the decision was seen after it escalated.
fn escalation_counts(expected: &ApprovalRequest, status: &ApprovalStatus, seen: Option<Timestamp>) -> bool {
    let (Some(escalated), Some(at)) = (status.escalated_at.as_ref(), expected.escalates_at.as_ref()) else {
        return false;
    };
    escalated.0 >= at.0 && seen.is_some_and(|d| d >= escalated.0)
}

/// Which of the controller's fields of an Approval differ from the gate expected; None when it
/// is exactly that gate. The namespace's policy may have made a gate stricter (self-approval
/// forbidden), never laxer.
pub fn mismatch(expected: &ApprovalRequest, spec: &ApprovalSpec) -> Option<String> {
    let want = expected.spec();
    let fields: Vec<&str> =
        GateField::ALL.into_iter().filter(|&f| !same(f, spec, &want)).map(GateField::name).collect();
    (!fields.is_empty()).then(|| format!("{} differ", fields.join(", ")))
}

/// Whether one of the controller's fields of `spec` is as the gate expects (`want`). Empty
/// approvers are none, and an unset `onTimeout` is its default; the namespace's policy may have
/// made a gate stricter (self-approval forbidden), never laxer.
fn same(field: GateField, spec: &ApprovalSpec, want: &ApprovalSpec) -> bool {
    match field {
        GateField::WorkflowRef => spec.workflow_ref == want.workflow_ref,
        GateField::Step => spec.step == want.step,
        GateField::Item => spec.item == want.item,
        GateField::Message => spec.message == want.message,
        GateField::Approvers => spec.gate.approvers.clone().filter(|a| !a.is_empty()) == want.gate.approvers,
        GateField::Inputs => spec.gate.inputs == want.gate.inputs,
        GateField::TimeoutSeconds => spec.gate.timeout_seconds == want.gate.timeout_seconds,
        GateField::OnTimeout => spec.gate.on_timeout.unwrap_or_default() == want.gate.on_timeout.unwrap_or_default(),
        GateField::ExpiresAt => spec.expires_at == want.expires_at,
        GateField::SelfApproval => {
            want.gate.self_approval != Some(SelfApproval::Forbid)
                || spec.gate.self_approval == Some(SelfApproval::Forbid)
        }
        GateField::RequiredApprovals => spec.gate.required_approvals == want.gate.required_approvals,
        GateField::RejectWhen => spec.gate.reject_when == want.gate.reject_when,
        GateField::Notify => spec.gate.notify == want.gate.notify,
        GateField::EscalatesAt => spec.escalates_at == want.escalates_at,
        GateField::Evidence => spec.gate.evidence == want.gate.evidence,
        GateField::EvidencePods => spec.evidence_pods == want.evidence_pods,
        GateField::EvidenceDigest => spec.evidence_digest == want.evidence_digest,
    }
}

/// Marks a status as not acted on: condition `Accepted=False` with `reason`, `Decided` as it was.
pub fn set_problem(
    status: &mut ApprovalStatus,
    old: &ApprovalStatus,
    reason: &str,
    now: Timestamp,
    generation: Option<i64>,
) {
    set_conditions(status, old, Some(reason), now, generation);
}

fn set_conditions(
    status: &mut ApprovalStatus,
    old: &ApprovalStatus,
    problem: Option<&str>,
    now: Timestamp,
    generation: Option<i64>,
) {
    let decided = match status.phase {
        Some(ApprovalPhase::Approved) => ("True", "Approved"),
        Some(ApprovalPhase::Rejected) => ("True", "Rejected"),
        Some(ApprovalPhase::Expired) => ("False", "Expired"),
        Some(ApprovalPhase::Cancelled) => ("False", "Cancelled"),
        _ => ("False", "Pending"),
    };
    // `Approved` is the one a script waits on: `Decided` is True for a rejection too.
    let approved = if status.phase == Some(ApprovalPhase::Approved) { "True" } else { "False" };
    let message = status.message.clone().unwrap_or_default();
    let mut wanted =
        vec![("Decided", decided.0, decided.1, message.clone()), ("Approved", approved, decided.1, message)];
    if let Some(reason) = problem {
        wanted.push(("Accepted", "False", reason, status.message.clone().unwrap_or_default()));
    }
    // `Notified` is the delivery workers' condition: kept as they wrote it.
    let notified = old.conditions.iter().filter(|c| c.type_ == "Notified").cloned();
    status.conditions = conditions::merge(&old.conditions, wanted, Time(now), generation);
    status.conditions.extend(notified);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::{ApprovalSpec, Approvers};
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn gate(approvers: &[&str], groups: &[&str]) -> Approval {
        let mut a = Approval::new(
            "wf-review",
            ApprovalSpec {
                gate: hitl_api::Gate {
                    approvers: Some(Approvers {
                        users: approvers.iter().map(|s| s.to_string()).collect(),
                        groups: groups.iter().map(|s| s.to_string()).collect(),
                    }),
                    inputs: serde_json::from_value(json!([{"name": "verdict", "enum": ["sign"], "required": true}]))
                        .unwrap(),
                    timeout_seconds: Some(60),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        a.metadata.creation_timestamp = Some(Time(t(0)));
        a
    }

    #[test]
    fn a_new_gate_is_pending_until_it_expires() {
        let a = gate(&["alice"], &["legal"]);
        let d = evaluate(&a, t(1));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Pending));
        assert_eq!(d.status.expires_at, Some(Time(t(60))));
        assert_eq!(d.status.approvers.as_deref(), Some("alice, group:legal"));
        assert_eq!(d.event.as_ref().unwrap().note, "waiting for a decision by alice, group:legal");
        assert_eq!(d.requeue_at, Some(t(60)));
        let mut a = a;
        a.status = Some(d.status);
        let d = evaluate(&a, t(60));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Expired));
        assert_eq!(d.status.decided_by, None, "an expiry is nobody's decision");
        assert_eq!(d.event.unwrap().reason, "Expired");
    }

    #[test]
    fn a_valid_decision_by_a_listed_user_is_recorded() {
        let mut a = gate(&["alice"], &[]);
        a.spec.decision = Some(Decision::Approve);
        a.spec.decided_by = Some("alice".into());
        a.spec.input = Some(serde_json::from_value(json!({"verdict": "sign"})).unwrap());
        let d = evaluate(&a, t(5));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Approved));
        assert_eq!(d.status.decided_by.as_deref(), Some("alice"));
        assert_eq!(d.status.decided_at, Some(Time(t(5))));
        let decided = d.status.conditions.iter().find(|c| c.type_ == "Decided").unwrap();
        assert_eq!((decided.status.as_str(), decided.reason.as_str()), ("True", "Approved"));
        let approved = d.status.conditions.iter().find(|c| c.type_ == "Approved").unwrap();
        assert_eq!(approved.status, "True");
    }

    #[test]
    fn a_rejection_is_decided_but_not_approved() {
        let mut a = gate(&["alice"], &[]);
        a.spec.decision = Some(Decision::Reject);
        a.spec.decided_by = Some("alice".into());
        let d = evaluate(&a, t(5));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Rejected));
        let status_of = |type_: &str| d.status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        assert_eq!((status_of("Decided").status.as_str(), status_of("Decided").reason.as_str()), ("True", "Rejected"));
        assert_eq!(
            (status_of("Approved").status.as_str(), status_of("Approved").reason.as_str()),
            ("False", "Rejected")
        );
    }

    #[test]
    fn the_controller_does_not_act_on_what_admission_should_have_refused() {
        // No decidedBy although approvers are listed.
        let mut a = gate(&["alice"], &[]);
        a.spec.decision = Some(Decision::Approve);
        a.spec.input = Some(serde_json::from_value(json!({"verdict": "sign"})).unwrap());
        let d = evaluate(&a, t(5));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Pending));
        let accepted = d.status.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
        assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("False", "NotAnApprover"));
        assert_eq!(d.event.as_ref().unwrap().reason, "NotAnApprover");
        // A user the list cannot allow.
        a.spec.decided_by = Some("bob".into());
        assert!(evaluate(&a, t(5)).status.message.unwrap().contains("bob is not among the approvers (alice)"));
        // Input that fails the check, even from a listed user.
        a.spec.decided_by = Some("alice".into());
        a.spec.input = Some(serde_json::from_value(json!({"verdict": "burn"})).unwrap());
        let d = evaluate(&a, t(5));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Pending));
        assert!(d.status.message.unwrap().contains("input verdict: must be one of sign"));
        // The same problem seen again records no second Event.
        a.status = Some(evaluate(&a, t(5)).status);
        assert!(evaluate(&a, t(6)).event.is_none());
    }

    /// A rejection's input is checked as an approval's is (the admission policy refuses it too),
    /// except that nothing is required.
    #[test]
    fn a_rejection_with_input_the_gate_does_not_ask_for_is_not_acted_on() {
        let mut a = gate(&["alice"], &[]);
        a.spec.decision = Some(Decision::Reject);
        a.spec.decided_by = Some("alice".into());
        a.spec.input = Some(serde_json::from_value(json!({"colour": "red"})).unwrap());
        let d = evaluate(&a, t(5));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Pending));
        assert!(d.status.message.unwrap().contains("input colour: not asked for by this gate"));
        a.spec.input = Some(BTreeMap::new());
        assert_eq!(evaluate(&a, t(5)).status.phase, Some(ApprovalPhase::Rejected), "required is for approvals");

        let expected = ApprovalRequest { expires_at: None, ..expected_of(&a) };
        let mut a = Approval { spec: expected.spec(), ..a };
        a.spec.decision = Some(Decision::Reject);
        a.spec.decided_by = Some("alice".into());
        a.spec.input = Some(serde_json::from_value(json!({"verdict": null})).unwrap());
        a.status = Some(ApprovalStatus {
            phase: Some(ApprovalPhase::Rejected),
            decided_by: Some("alice".into()),
            decided_at: Some(Time(t(5))),
            ..Default::default()
        });
        assert!(matches!(outcome(&expected, &a, t(6)), Outcome::NotAccepted(e) if e.contains("null is not one")));
    }

    /// The gate `a` records, as its Workflow would expect it, with a deadline at t(60).
    fn expected_of(a: &Approval) -> ApprovalRequest {
        ApprovalRequest {
            name: "wf-review".into(),
            workflow: a.spec.workflow_ref.clone(),
            step: a.spec.step.clone(),
            item: None,
            message: None,
            gate: a.spec.gate.clone(),
            expires_at: Some(Time(t(60))),
            escalates_at: None,
            evidence_pods: vec![],
            evidence_digest: None,
        }
    }

    fn decided(by: &str, decision: Decision, input: serde_json::Value) -> Approval {
        let a = gate(&["alice"], &[]);
        let mut a = Approval { spec: expected_of(&a).spec(), ..a };
        a.spec.decision = Some(decision);
        a.spec.decided_by = Some(by.into());
        a.spec.input = Some(serde_json::from_value(input).unwrap());
        a.status = Some(ApprovalStatus { phase: Some(ApprovalPhase::Pending), ..Default::default() });
        a
    }

    /// The run acts on a decision before the Approval controller records it, when it holds up on
    /// the run's own checks, so the next step does not wait for the Approval's status write.
    #[test]
    fn the_run_acts_on_a_sound_decision_the_approval_does_not_record_yet() {
        let a = decided("alice", Decision::Approve, json!({"verdict": "sign"}));
        let Outcome::Approved { values, decided_by } = outcome(&expected_of(&a), &a, t(5)) else {
            panic!("not acted on: {:?}", outcome(&expected_of(&a), &a, t(5)));
        };
        assert_eq!((decided_by.as_str(), values["verdict"].clone()), ("alice", json!("sign")));
        let a = decided("alice", Decision::Reject, json!({}));
        assert!(
            matches!(outcome(&expected_of(&a), &a, t(5)), Outcome::Rejected { decided_by } if decided_by == "alice")
        );
    }

    /// Anything short of that waits for the Approval controller's record (and its reasons).
    #[test]
    fn an_unrecorded_decision_that_does_not_hold_up_keeps_the_step_waiting() {
        let by_bob = decided("bob", Decision::Approve, json!({"verdict": "sign"}));
        assert_eq!(outcome(&expected_of(&by_bob), &by_bob, t(5)), Outcome::Waiting, "not an approver");
        let bad_input = decided("alice", Decision::Approve, json!({"verdict": "shred"}));
        assert_eq!(outcome(&expected_of(&bad_input), &bad_input, t(5)), Outcome::Waiting, "input refused");
        let late = decided("alice", Decision::Approve, json!({"verdict": "sign"}));
        assert_eq!(outcome(&expected_of(&late), &late, t(60)), Outcome::Waiting, "seen at the deadline");
        let mut quorum = decided("alice", Decision::Approve, json!({"verdict": "sign"}));
        quorum.spec.gate.required_approvals = Some(2);
        let mut expected = expected_of(&quorum);
        expected.gate.required_approvals = Some(2);
        assert_eq!(outcome(&expected, &quorum, t(5)), Outcome::Waiting, "a quorum counts votes");
        let item = decided("alice", Decision::Approve, json!({"verdict": "sign"}));
        let expected = ApprovalRequest { item: Some(0), ..expected_of(&item) };
        let item = Approval { spec: ApprovalSpec { item: Some(0), ..item.spec.clone() }, ..item };
        assert_eq!(outcome(&expected, &item, t(5)), Outcome::Waiting, "a forEach item's gate");
    }

    #[test]
    fn a_decision_first_seen_after_expiry_does_not_count_whatever_the_object_claims() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let mut a = gate(&[], &[]);
        a.status = Some(evaluate(&a, t(1)).status);
        a.spec.decision = Some(Decision::Reject);
        // managedFields are writable by anyone who may patch the object: a forged early time.
        a.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kubectl-patch".into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(json!({"f:spec": {"f:decision": {}}}))),
            time: Some(Time(t(10))),
            ..Default::default()
        }]);
        let d = evaluate(&a, t(70));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Expired));
        assert!(d.status.message.unwrap().contains("before the decision was seen"));
        assert_eq!(evaluate(&a, t(59)).status.phase, Some(ApprovalPhase::Rejected), "seen in time, it counts");
    }

    #[test]
    fn the_deadline_recorded_by_the_controller_wins_over_the_objects_age() {
        let mut a = gate(&[], &[]);
        a.spec.expires_at = Some(Time(t(30)));
        let d = evaluate(&a, t(31));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Expired), "created at 0 with 60 s, but due at 30");
    }

    #[test]
    fn group_approvers_need_the_group_recorded() {
        let mut a = gate(&["alice"], &["legal"]);
        a.spec.decision = Some(Decision::Reject);
        a.spec.decided_by = Some("carol".into());
        assert!(evaluate(&a, t(5)).status.message.unwrap().contains("carol is not among the approvers"));
        a.spec.decided_by_groups = vec!["legal".into()];
        assert_eq!(evaluate(&a, t(5)).status.phase, Some(ApprovalPhase::Rejected));
    }

    #[test]
    fn a_finished_gate_never_changes() {
        let mut a = gate(&[], &[]);
        a.status = Some(ApprovalStatus { phase: Some(ApprovalPhase::Expired), ..Default::default() });
        a.spec.decision = Some(Decision::Approve);
        let d = evaluate(&a, t(100));
        assert_eq!(d.status, a.status.clone().unwrap());
        assert!(d.event.is_none() && d.requeue_at.is_none());
    }
}

#[cfg(test)]
mod cancel_tests {
    use super::*;

    #[test]
    fn only_a_pending_gate_is_cancelled() {
        let mut a = Approval::new("g", Default::default());
        let st = cancelled(&a, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(st.phase, Some(ApprovalPhase::Cancelled));
        let decided = st.conditions.iter().find(|c| c.type_ == "Decided").unwrap();
        assert_eq!((decided.status.as_str(), decided.reason.as_str()), ("False", "Cancelled"));
        a.status = Some(ApprovalStatus { phase: Some(ApprovalPhase::Approved), ..Default::default() });
        assert!(cancelled(&a, Timestamp::UNIX_EPOCH).is_none(), "a decision stands");
        a.status = Some(st);
        a.spec.decision = Some(Decision::Approve);
        assert_eq!(evaluate(&a, Timestamp::UNIX_EPOCH).status.phase, Some(ApprovalPhase::Cancelled));
    }
}
