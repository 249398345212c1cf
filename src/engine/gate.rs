//! What an Approval's status should be: a pure function of the Approval and the time.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::Event;
use super::{conditions, inputs};
use crate::api::{Approval, ApprovalPhase, ApprovalStatus, Decision};

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

/// Why a person's patch is not acted on (the admission policy should have refused it already).
fn refusal(a: &Approval) -> Option<String> {
    let approvers = a.spec.approvers.clone().unwrap_or_default();
    if approvers.is_empty() {
        return None;
    }
    match a.spec.decided_by.as_deref().filter(|d| !d.is_empty()) {
        None => Some("decidedBy is empty, but this gate lists approvers".into()),
        Some(who) if approvers.groups.is_empty() && !approvers.users.iter().any(|u| u == who) => {
            Some(format!("{who} is not among the approvers ({})", approvers.summary()))
        }
        Some(_) => None,
    }
}

/// When the decision fields were written, from the API server's own record (managedFields, to
/// the second). None when unknown.
fn decided_at(a: &Approval) -> Option<Timestamp> {
    a.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            let fields = m.fields_v1.as_ref().map(|f| f.0.to_string()).unwrap_or_default();
            fields.contains("\"f:decision\"") || fields.contains("\"f:input\"")
        })
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
}

pub fn evaluate(a: &Approval, now: Timestamp) -> GateDecision {
    let old = a.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let finished = old.phase.is_some_and(|p| p != ApprovalPhase::Pending);
    if finished {
        return GateDecision { status, event: None, requeue_at: None };
    }
    status.phase = Some(ApprovalPhase::Pending);
    status.approvers = a.spec.approvers.as_ref().filter(|p| !p.is_empty()).map(|p| p.summary());
    if status.expires_at.is_none() {
        let created = a.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
        status.expires_at = a
            .spec
            .timeout_seconds
            .map(|s| Time(created.saturating_add(SignedDuration::from_secs(s)).unwrap_or(Timestamp::MAX)));
    }
    // Input without a decision approves: a gate that only asks for input goes on when it arrives.
    // A decision written after the gate expired (seen late, e.g. while the controller was down)
    // does not count: the gate expired first.
    let expires = status.expires_at.as_ref().map(|e| e.0);
    let late = matches!((decided_at(a), expires), (Some(d), Some(e)) if d > e);
    let decision = a.spec.decision.or(a.spec.input.as_ref().map(|_| Decision::Approve)).filter(|_| !late);
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
    match decision {
        Some(d) => match refusal(a) {
            Some(why) => problem = Some(("NotAnApprover", why)),
            None => {
                let checked = match d {
                    Decision::Approve => {
                        inputs::resolve(&a.spec.inputs, &a.spec.input.clone().unwrap_or_default()).map(|_| ())
                    }
                    Decision::Reject => Ok(()),
                };
                match checked {
                    Err(e) => problem = Some(("InputInvalid", e)),
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
                }
            }
        },
        None => {
            if let Some(exp) = status.expires_at.as_ref().filter(|e| e.0 <= now) {
                status.phase = Some(ApprovalPhase::Expired);
                status.message = Some(match late {
                    true => format!("the gate expired at {}, before the decision was made", exp.0),
                    false => format!("nobody decided before {}", exp.0),
                });
                event = Some(Event { warning: true, reason: "Expired", note: "nobody decided in time".into() });
            }
        }
    }
    if let Some((reason, why)) = &problem {
        status.message = Some(format!("decision not acted on: {why}"));
        if old.message != status.message {
            event = Some(Event { warning: true, reason, note: status.message.clone().unwrap_or_default() });
        }
    } else if status.phase == Some(ApprovalPhase::Pending) {
        status.message = None;
    }
    set_conditions(&mut status, &old, problem.as_ref().map(|p| p.0), now, a.metadata.generation);
    let requeue_at =
        (status.phase == Some(ApprovalPhase::Pending)).then(|| status.expires_at.as_ref().map(|e| e.0)).flatten();
    GateDecision { status, event, requeue_at }
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
    let mut wanted = vec![("Decided", decided.0, decided.1, status.message.clone().unwrap_or_default())];
    if let Some(reason) = problem {
        wanted.push(("Accepted", "False", reason, status.message.clone().unwrap_or_default()));
    }
    status.conditions = conditions::merge(&old.conditions, wanted, Time(now), generation);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApprovalSpec, Approvers};
    use serde_json::json;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn gate(approvers: &[&str], groups: &[&str]) -> Approval {
        let mut a = Approval::new(
            "wf-review",
            ApprovalSpec {
                approvers: Some(Approvers {
                    users: approvers.iter().map(|s| s.to_string()).collect(),
                    groups: groups.iter().map(|s| s.to_string()).collect(),
                }),
                inputs: serde_json::from_value(json!([{"name": "verdict", "enum": ["sign"], "required": true}]))
                    .unwrap(),
                timeout_seconds: Some(60),
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

    #[test]
    fn a_decision_written_after_expiry_does_not_count() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let mut a = gate(&[], &[]);
        a.status = Some(evaluate(&a, t(1)).status);
        a.spec.decision = Some(Decision::Reject);
        let written = |at: i64| ManagedFieldsEntry {
            manager: Some("kubectl-patch".into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(json!({"f:spec": {"f:decision": {}}}))),
            time: Some(Time(t(at))),
            ..Default::default()
        };
        a.metadata.managed_fields = Some(vec![written(61)]);
        let d = evaluate(&a, t(70));
        assert_eq!(d.status.phase, Some(ApprovalPhase::Expired));
        assert!(d.status.message.unwrap().contains("before the decision was made"));
        a.metadata.managed_fields = Some(vec![written(59)]);
        assert_eq!(evaluate(&a, t(70)).status.phase, Some(ApprovalPhase::Rejected), "decided in time, seen late");
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
