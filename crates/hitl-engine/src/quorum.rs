//! Quorum gates: `requiredApprovals` distinct approvers must approve. Each person's decision is
//! their vote (`spec.votes.<user>`, recorded by the API server); these functions count them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::approval_request::ApprovalRequest;
use super::event::Event;
use super::gate::{Deciders, Outcome};
use super::inputs;
use hitl_api::{
    Approval, ApprovalPhase, ApprovalSpec, ApprovalStatus, Approvers, Decision, InputSpec, RejectWhen, Vote,
};

/// A quorum gate's votes, counting only those its deciders allow.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub approvers: Vec<String>,
    pub rejecters: Vec<String>,
    /// The approving votes' input (every approving vote carries the same).
    pub input: BTreeMap<String, serde_json::Value>,
    /// Votes that do not count, and why.
    pub refused: Vec<String>,
}

/// Counts `votes` (in user order) as `deciders` allow them. A rejecting vote's input must hold up
/// as on any decision (`inputs::check_given`; what approving votes carry is checked once the
/// quorum is reached).
pub fn tally(deciders: &Deciders, specs: &[InputSpec], votes: &BTreeMap<String, Vote>) -> Tally {
    let mut t = Tally::default();
    for (user, vote) in votes {
        let as_decision = ApprovalSpec {
            decided_by: Some(user.clone()),
            decided_by_groups: vote.groups.clone(),
            ..Default::default()
        };
        if let Some(why) = deciders.refusal(&as_decision) {
            t.refused.push(why);
            continue;
        }
        match vote.decision {
            Decision::Reject => match inputs::check_given(specs, &vote.input.clone().unwrap_or_default()) {
                Ok(()) => t.rejecters.push(user.clone()),
                Err(e) => t.refused.push(format!("{user}'s rejection: {e}")),
            },
            Decision::Approve => {
                let input = vote.input.clone().unwrap_or_default();
                if t.approvers.is_empty() {
                    t.input = input;
                } else if input != t.input {
                    t.refused.push(format!("{user}'s input differs from the first approval's"));
                    continue;
                }
                t.approvers.push(user.clone());
            }
        }
    }
    t
}

/// What a tally comes to.
#[derive(Debug, PartialEq)]
pub enum Quorum {
    Open,
    Reached,
    /// Rejected, and why.
    Failed(String),
}

/// Whether `required` approvals are in, or can no longer be.
pub fn quorum(required: i32, reject_when: RejectWhen, approvers: Option<&Approvers>, t: &Tally) -> Quorum {
    if t.approvers.len() >= required as usize {
        return Quorum::Reached;
    }
    if reject_when == RejectWhen::AnyReject && !t.rejecters.is_empty() {
        return Quorum::Failed(format!("rejected by {}", t.rejecters.join(", ")));
    }
    // Only a list of users says how many can still approve.
    let users_only = approvers.filter(|a| a.groups.is_empty() && !a.users.is_empty());
    if let Some(a) = users_only {
        let possible = a.users.len().saturating_sub(t.rejecters.len());
        if possible < required as usize {
            return Quorum::Failed(format!(
                "rejected by {}: {required} approvals can no longer be reached",
                t.rejecters.join(", ")
            ));
        }
    }
    Quorum::Open
}

/// A quorum gate's next status (not yet expired, still Pending), and an Event or a problem to tell.
pub fn evaluate(
    a: &Approval,
    required: i32,
    status: &mut ApprovalStatus,
    now: Timestamp,
) -> (Option<Event>, Option<(&'static str, String)>) {
    // Escalation is refused on quorum gates (CRD rule), so only the gate's own approvers vote.
    let t = tally(&Deciders { escalated: None, ..Deciders::of(a) }, &a.spec.gate.inputs, &a.spec.votes);
    status.votes = Some(format!("{}/{required}", t.approvers.len()));
    let reject_when = a.spec.gate.reject_when.unwrap_or_default();
    let problem = t.refused.first().map(|why| ("NotAnApprover", why.clone()));
    match quorum(required, reject_when, a.spec.gate.approvers.as_ref(), &t) {
        Quorum::Open => (None, problem),
        Quorum::Reached => match inputs::resolve(&a.spec.gate.inputs, &t.input) {
            Err(e) => (None, Some(("InputInvalid", e))),
            Ok(_) => {
                let by = t.approvers.join(", ");
                status.phase = Some(ApprovalPhase::Approved);
                status.decided_by = Some(by.clone());
                status.decided_at = Some(Time(now));
                status.message = None;
                (Some(Event { warning: false, reason: "Approved", note: format!("Approved by {by}") }), None)
            }
        },
        Quorum::Failed(why) => {
            status.phase = Some(ApprovalPhase::Rejected);
            status.decided_by = Some(t.rejecters.join(", "));
            status.decided_at = Some(Time(now));
            status.message = Some(why.clone());
            (Some(Event { warning: false, reason: "Rejected", note: why }), None)
        }
    }
}

/// A quorum gate's outcome, counted again from its votes against the step's own approvers.
pub fn outcome(expected: &ApprovalRequest, a: &Approval, required: i32, decided: Decision) -> Outcome {
    let deciders = Deciders {
        approvers: expected.gate.approvers.as_ref(),
        escalated: None,
        self_approval: a.spec.gate.self_approval,
        created_by: expected.workflow.created_by.as_deref(),
        authors: &expected.workflow.authors,
    };
    let t = tally(&deciders, &expected.gate.inputs, &a.spec.votes);
    let reject_when = expected.gate.reject_when.unwrap_or_default();
    match (quorum(required, reject_when, expected.gate.approvers.as_ref(), &t), decided) {
        (Quorum::Reached, Decision::Approve) => match inputs::resolve(&expected.gate.inputs, &t.input) {
            Ok(values) => Outcome::Approved { values, decided_by: t.approvers.join(", ") },
            Err(e) => Outcome::NotAccepted(e),
        },
        (Quorum::Failed(_), Decision::Reject) => Outcome::Rejected { decided_by: t.rejecters.join(", ") },
        (_, d) => Outcome::NotAccepted(format!(
            "its status says {d:?}, but its votes ({} approving of {required} needed) do not",
            t.approvers.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::Vote;

    fn vote(d: Decision, groups: &[&str], input: serde_json::Value) -> Vote {
        Vote {
            decision: d,
            input: serde_json::from_value(input).unwrap(),
            comment: None,
            evidence_seen: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn only_votes_the_gate_allows_count_and_approvals_share_their_input() {
        let approvers = Approvers { users: vec!["dave".into()], groups: vec!["legal".into()] };
        let deciders = Deciders {
            approvers: Some(&approvers),
            escalated: None,
            self_approval: None,
            created_by: None,
            authors: &[],
        };
        let votes = BTreeMap::from([
            ("alice".to_string(), vote(Decision::Approve, &["legal"], serde_json::json!({"v": "sign"}))),
            ("bob".to_string(), vote(Decision::Approve, &[], serde_json::json!({"v": "sign"}))),
            ("carol".to_string(), vote(Decision::Approve, &["legal"], serde_json::json!({"v": "redact"}))),
            ("dave".to_string(), vote(Decision::Reject, &[], serde_json::json!(null))),
        ]);
        let t = tally(&deciders, &[], &votes);
        assert_eq!(t.approvers, ["alice"]);
        assert_eq!(t.rejecters, ["dave"]);
        assert_eq!(t.refused.len(), 2, "bob is not listed, carol's input differs: {:?}", t.refused);
        assert_eq!(quorum(2, RejectWhen::QuorumUnreachable, Some(&approvers), &t), Quorum::Open, "groups: unknown");
        assert!(matches!(quorum(2, RejectWhen::AnyReject, Some(&approvers), &t), Quorum::Failed(_)));
        assert_eq!(quorum(1, RejectWhen::AnyReject, Some(&approvers), &t), Quorum::Reached);
    }

    /// As the admission policy refuses it: a rejection carries no input the gate does not ask for.
    #[test]
    fn a_rejecting_vote_with_input_the_gate_does_not_ask_for_does_not_count() {
        let approvers = Approvers { users: vec!["a".into(), "b".into()], groups: vec![] };
        let deciders = Deciders {
            approvers: Some(&approvers),
            escalated: None,
            self_approval: None,
            created_by: None,
            authors: &[],
        };
        let specs: Vec<InputSpec> = serde_json::from_value(serde_json::json!([{"name": "v"}])).unwrap();
        let votes = BTreeMap::from([
            ("a".to_string(), vote(Decision::Reject, &[], serde_json::json!({"colour": "red"}))),
            ("b".to_string(), vote(Decision::Reject, &[], serde_json::json!({"v": "no"}))),
        ]);
        let t = tally(&deciders, &specs, &votes);
        assert_eq!(t.rejecters, ["b"]);
        assert!(t.refused[0].starts_with("a's rejection: input colour: not asked for"), "{:?}", t.refused);
    }

    #[test]
    fn with_users_only_a_quorum_out_of_reach_is_a_rejection() {
        let approvers = Approvers { users: vec!["a".into(), "b".into(), "c".into()], groups: vec![] };
        let t = Tally { approvers: vec!["a".into()], rejecters: vec!["b".into()], ..Default::default() };
        assert_eq!(quorum(2, RejectWhen::QuorumUnreachable, Some(&approvers), &t), Quorum::Open);
        assert!(
            matches!(quorum(3, RejectWhen::QuorumUnreachable, Some(&approvers), &t), Quorum::Failed(m) if m.contains("can no longer be reached"))
        );
    }
}
