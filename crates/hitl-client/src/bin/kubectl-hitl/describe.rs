//! `kubectl hitl describe`: one gate for a person, in a fixed layout (labels in a column, one
//! section per question: what is asked, who may decide, by when, what was decided).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hitl_api::{Approval, ApprovalPhase, Approvers, Decision, SelfApproval, Vote, Workflow};
use hitl_engine::foreach;
use hitl_engine::notify::{decide_command, describe_input, left};
use jiff::Timestamp;
use kube::ResourceExt;

use crate::decide::input_arg;

const NONE: &str = "<none>";

/// The description of `a` as of `now`.
#[cfg(test)]
pub fn render(a: &Approval, now: Timestamp) -> String {
    render_in(a, None, now)
}

/// The description of `a`, with how its forEach step stands when its Workflow `wf` could be read.
pub fn render_in(a: &Approval, wf: Option<&Workflow>, now: Timestamp) -> String {
    let mut out = String::new();
    let status = a.status.clone().unwrap_or_default();
    let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "<not yet recorded>".into());
    let spec = &a.spec;
    field(&mut out, "Name", &a.name_any());
    field(&mut out, "Namespace", &a.namespace().unwrap_or_default());
    field(&mut out, "Workflow", &spec.workflow_ref.name);
    field(&mut out, "Step", &spec.step);
    if let Some(i) = spec.item {
        field(&mut out, "Item", &item_line(i, &spec.step, wf));
    }
    field(&mut out, "Phase", &phase);
    field(&mut out, "Message", spec.message.as_deref().unwrap_or(NONE));
    inputs(&mut out, a);
    evidence(&mut out, a);
    who_may_decide(&mut out, a);
    field(&mut out, "Expires", &expiry(a, now));
    field(&mut out, "On timeout", &format!("{:?}", spec.gate.on_timeout.unwrap_or_default()));
    votes(&mut out, a);
    decision(&mut out, a);
    if status.phase == Some(ApprovalPhase::Pending) {
        field(&mut out, "Decide with", &agreeing_command(a).unwrap_or_else(|| decide_command(a)));
    }
    if let Some(m) = &status.message {
        field(&mut out, "Status message", m);
    }
    out
}

/// On a quorum gate with an approving vote in, every approval must carry the same input: the
/// command to agree with it, its input filled in, rather than a blank template.
fn agreeing_command(a: &Approval) -> Option<String> {
    let input = a.spec.votes.values().find(|v| v.decision == Decision::Approve)?.input.as_ref()?;
    let ns = a.namespace().unwrap_or_default();
    let flags: String =
        input.iter().map(|(k, v)| format!(" --input {}", shell_word(&format!("{k}={}", input_arg(v))))).collect();
    Some(format!("kubectl hitl approve {} -n {ns}{flags}", a.name_any()))
}

/// `word` as a POSIX shell reads it back: bare when it holds nothing special, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._:/@+-=,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `3 of 20 (12/20 items, 8 waiting)`: which item of the forEach this gate decides, and how the
/// step's items stand (from the Workflow's status, when the caller may read it).
fn item_line(i: i32, step: &str, wf: Option<&Workflow>) -> String {
    let st = wf.and_then(|w| w.status.as_ref()).and_then(|s| s.steps.iter().find(|s| s.name == step));
    match st.and_then(|st| Some((st, st.item_count?))) {
        Some((st, total)) => {
            let counts = foreach::Counts::of(&st.items, total as usize);
            format!("{i} of {total} ({})", counts.summary())
        }
        None => i.to_string(),
    }
}

/// `Label:` padded so values line up, as kubectl describe does.
fn field(out: &mut String, label: &str, value: &str) {
    let line = format!("{:<16}{value}", format!("{label}:"));
    let _ = writeln!(out, "{}", line.trim_end());
}

fn sub(out: &mut String, label: &str, value: &str) {
    let line = format!("  {:<20}{value}", format!("{label}:"));
    let _ = writeln!(out, "{}", line.trim_end());
}

/// What the gate shows as evidence: each step's outputs when the gate opened, and how to read its
/// log (at most 20 lines; a forEach step's items are counted, not listed).
fn evidence(out: &mut String, a: &Approval) {
    let shown = &a.spec.evidence_pods;
    if shown.is_empty() {
        return;
    }
    field(out, "Evidence", a.spec.evidence_digest.as_deref().unwrap_or(""));
    for e in shown.iter().take(20) {
        let outputs = e.outputs.as_deref().unwrap_or("no outputs");
        let log = if e.pod.is_some() { ", log shown" } else { "" };
        sub(out, &crate::logs::label(e), &format!("{outputs}{log}"));
    }
    if shown.len() > 20 {
        sub(out, "and", &format!("{} more", shown.len() - 20));
    }
    if shown.iter().any(|e| e.pod.is_some()) {
        let read = format!("kubectl hitl logs {} -n {}", a.name_any(), a.namespace().unwrap_or_default());
        sub(out, "Read the logs with", &read);
    }
}

fn inputs(out: &mut String, a: &Approval) {
    if a.spec.gate.inputs.is_empty() {
        field(out, "Inputs", NONE);
        return;
    }
    field(out, "Inputs", "");
    for i in &a.spec.gate.inputs {
        let _ = writeln!(out, "  {}", describe_input(i));
    }
}

fn who_may_decide(out: &mut String, a: &Approval) {
    let spec = &a.spec;
    field(out, "Who may decide", "");
    match spec.gate.approvers.as_ref().filter(|p| !p.is_empty()) {
        Some(p) => {
            sub(out, "Users", &list(&p.users));
            sub(out, "Groups", &list(&p.groups));
        }
        None => sub(out, "Approvers", "anyone allowed to patch approvals in this namespace"),
    }
    sub(out, "Required approvals", &spec.gate.required_approvals.unwrap_or(1).to_string());
    if spec.gate.required_approvals.is_some_and(|n| n > 1) {
        sub(out, "Rejected when", &format!("{:?}", spec.gate.reject_when.unwrap_or_default()));
    }
    sub(out, "Self-approval", &self_approval(a));
    if let Some(e) = spec.gate.notify.as_ref().and_then(|n| n.escalation.as_ref()) {
        let when = match a.status.as_ref().and_then(|s| s.escalated_at.as_ref()) {
            Some(t) => format!("escalated at {}", t.0),
            None => format!("after {}s", e.after_seconds),
        };
        sub(out, "Escalation", &format!("{} ({when})", summary(&e.approvers)));
    }
}

fn self_approval(a: &Approval) -> String {
    let reference = &a.spec.workflow_ref;
    let creator = reference.created_by.as_deref().unwrap_or("unknown");
    let authors = if reference.authors.is_empty() {
        String::new()
    } else {
        format!(", nor may its authors {}", reference.authors.join(", "))
    };
    match a.spec.gate.self_approval.unwrap_or_default() {
        SelfApproval::Allow => format!("Allow (the Workflow's creator, {creator}, may decide if listed)"),
        SelfApproval::Forbid => format!("Forbid (the Workflow's creator, {creator}, may not decide{authors})"),
    }
}

fn expiry(a: &Approval, now: Timestamp) -> String {
    let deadline = a.spec.expires_at.as_ref().or(a.status.as_ref().and_then(|s| s.expires_at.as_ref()));
    let Some(deadline) = deadline.map(|t| t.0) else {
        return "never".into();
    };
    let pending = a.status.as_ref().and_then(|s| s.phase).is_none_or(|p| p == ApprovalPhase::Pending);
    match (pending, deadline > now) {
        (true, true) => format!("{deadline} (in {})", left(deadline, now)),
        (true, false) | (false, false) => format!("{deadline} (expired)"),
        (false, true) => deadline.to_string(),
    }
}

fn votes(out: &mut String, a: &Approval) {
    let needed = a.spec.gate.required_approvals.unwrap_or(1);
    if needed <= 1 && a.spec.votes.is_empty() {
        return;
    }
    let tally = a.status.as_ref().and_then(|s| s.votes.clone()).unwrap_or_else(|| format!("?/{needed}"));
    if a.spec.votes.is_empty() {
        field(out, "Votes", &format!("{tally} approving; none cast"));
        return;
    }
    field(out, "Votes", &format!("{tally} approving"));
    for (user, vote) in &a.spec.votes {
        sub(out, user, &vote_line(vote));
    }
}

fn vote_line(v: &Vote) -> String {
    let mut line = format!("{:?}", v.decision);
    if let Some(input) = &v.input {
        line += &format!(", input {}", values(input));
    }
    if let Some(c) = &v.comment {
        line += &format!(", comment {c:?}");
    }
    line
}

fn decision(out: &mut String, a: &Approval) {
    let status = a.status.clone().unwrap_or_default();
    let Some(d) = a.spec.decision else {
        if a.spec.gate.required_approvals.is_none_or(|n| n <= 1) {
            field(out, "Decision", NONE);
        }
        return;
    };
    field(out, "Decision", &format!("{d:?}"));
    let by = status.decided_by.or_else(|| a.spec.decided_by.clone());
    sub(out, "Decided by", by.as_deref().unwrap_or(NONE));
    sub(out, "Decided at", &status.decided_at.map(|t| t.0.to_string()).unwrap_or_else(|| NONE.into()));
    sub(out, "Comment", a.spec.comment.as_deref().unwrap_or(NONE));
    sub(out, "Input", &a.spec.input.as_ref().map(values).unwrap_or_else(|| NONE.into()));
}

/// `channel=beta priority=2`: each value as `--input` takes it.
fn values(input: &BTreeMap<String, serde_json::Value>) -> String {
    input.iter().map(|(k, v)| format!("{k}={}", input_arg(v))).collect::<Vec<_>>().join(" ")
}

fn list(items: &[String]) -> String {
    if items.is_empty() { NONE.into() } else { items.join(", ") }
}

fn summary(p: &Approvers) -> String {
    if p.is_empty() { NONE.into() } else { p.summary() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::{ApprovalSpec, ApprovalStatus, Decision, InputSpec, InputType, WorkflowRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn gate() -> Approval {
        let mut a = Approval::new(
            "ship.go",
            ApprovalSpec {
                workflow_ref: WorkflowRef {
                    name: "ship".into(),
                    uid: "u".into(),
                    created_by: Some("admin".into()),
                    authors: vec![],
                },
                step: "go".into(),
                message: Some("Ship release 1.2?".into()),
                gate: hitl_api::Gate {
                    approvers: Some(Approvers { users: vec!["alice".into()], groups: vec!["legal".into()] }),
                    inputs: vec![
                        InputSpec {
                            name: "priority".into(),
                            type_: InputType::Integer,
                            required: true,
                            minimum: Some(1.0),
                            maximum: Some(5.0),
                            default: Some(3.into()),
                            ..Default::default()
                        },
                        InputSpec {
                            name: "channel".into(),
                            enum_: vec!["stable".into(), "beta".into()],
                            ..Default::default()
                        },
                        InputSpec { name: "ticket".into(), pattern: Some("^OPS-[0-9]+$".into()), ..Default::default() },
                    ],
                    ..Default::default()
                },
                expires_at: Some(Time(t(3600))),
                ..Default::default()
            },
        );
        a.metadata.namespace = Some("legal".into());
        a.status = Some(ApprovalStatus { phase: Some(ApprovalPhase::Pending), ..Default::default() });
        a
    }

    #[test]
    fn a_pending_gate_shows_what_is_asked_who_decides_and_the_time_left() {
        let text = render(&gate(), t(0));
        for want in [
            "Name:           ship.go\n",
            "Phase:          Pending\n",
            "Message:        Ship release 1.2?\n",
            "  priority (integer, 1..5, default 3, required)\n",
            "  channel (string, one of stable|beta)\n",
            "  ticket (string, matching ^OPS-[0-9]+$)\n",
            "  Users:              alice\n",
            "  Groups:             legal\n",
            "  Required approvals: 1\n",
            "  Self-approval:      Allow (the Workflow's creator, admin, may decide if listed)\n",
            "Expires:        2027-01-15T09:00:00Z (in 1h 0m)\n",
            "Decision:       <none>\n",
            "Decide with:    kubectl hitl approve ship.go -n legal --input priority=<value>\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn an_item_gate_says_which_item_and_how_the_items_stand() {
        let mut a = gate();
        a.spec.item = Some(3);
        assert!(render(&a, t(0)).contains("\nItem:           3\n"), "{}", render(&a, t(0)));
        let wf: Workflow = serde_json::from_value(serde_json::json!({
            "apiVersion": "hitl.dev/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"},
            "spec": {"steps": [{"name": a.spec.step, "suspend": {}}]},
            "status": {"steps": [{"name": a.spec.step, "phase": "Waiting", "itemCount": 20,
                "items": [{"phase": "Succeeded"}, {"phase": "Waiting"}, {"phase": "Succeeded"}, {"phase": "Waiting"}]}]},
        }))
        .unwrap();
        let text = render_in(&a, Some(&wf), t(0));
        assert!(text.contains("\nItem:           3 of 20 (2/20 items, 2 waiting)\n"), "{text}");
    }

    #[test]
    fn past_the_deadline_it_says_expired() {
        assert!(render(&gate(), t(3601)).contains("(expired)\n"));
    }

    #[test]
    fn a_decided_gate_shows_who_when_why_and_the_values() {
        let mut a = gate();
        a.spec.decision = Some(Decision::Approve);
        a.spec.comment = Some("go".into());
        a.spec.input = Some([("priority".into(), 2.into()), ("channel".into(), "beta".into())].into());
        a.status = Some(ApprovalStatus {
            phase: Some(ApprovalPhase::Approved),
            decided_by: Some("alice".into()),
            decided_at: Some(Time(t(60))),
            ..Default::default()
        });
        let text = render(&a, t(120));
        for want in [
            "Decision:       Approve\n",
            "  Decided by:         alice\n",
            "  Decided at:         2027-01-15T08:01:00Z\n",
            "  Comment:            go\n",
            "  Input:              channel=beta priority=2\n",
            "Expires:        2027-01-15T09:00:00Z\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(!text.contains("Decide with"), "{text}");
    }

    #[test]
    fn a_quorum_gate_lists_each_vote() {
        let mut a = gate();
        a.spec.gate.required_approvals = Some(2);
        a.spec.gate.self_approval = Some(SelfApproval::Forbid);
        a.spec.votes = [(
            "carol".to_string(),
            Vote {
                decision: Decision::Approve,
                input: None,
                comment: Some("ok".into()),
                evidence_seen: None,
                groups: vec![],
            },
        )]
        .into();
        a.status.as_mut().unwrap().votes = Some("1/2".into());
        let text = render(&a, t(0));
        for want in [
            "  Required approvals: 2\n",
            "  Rejected when:      QuorumUnreachable\n",
            "  Self-approval:      Forbid (the Workflow's creator, admin, may not decide)\n",
            "Votes:          1/2 approving\n",
            "  carol:              Approve, comment \"ok\"\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn a_second_voter_is_offered_the_first_votes_input() {
        let mut a = gate();
        a.spec.gate.required_approvals = Some(2);
        let input = [("priority".to_string(), 4.into()), ("ticket".to_string(), "OPS-7 and more".into())].into();
        a.spec.votes = [(
            "carol".to_string(),
            Vote {
                decision: Decision::Approve,
                input: Some(input),
                comment: None,
                evidence_seen: None,
                groups: vec![],
            },
        )]
        .into();
        let text = render(&a, t(0));
        let want = "Decide with:    kubectl hitl approve ship.go -n legal --input priority=4 --input 'ticket=OPS-7 and more'\n";
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    #[test]
    fn a_gate_with_evidence_lists_it_and_says_how_to_read_its_log() {
        let mut a = gate();
        a.spec.evidence_digest = Some("sha256:ab".into());
        a.spec.evidence_pods = vec![hitl_api::approval::EvidencePod {
            step: "plan".into(),
            item: None,
            pod: Some("ship-plan-1-x".into()),
            outputs: Some(r#"{"adds":"3"}"#.into()),
        }];
        let text = render(&a, t(0));
        for want in [
            "Evidence:       sha256:ab\n",
            "  step plan:          {\"adds\":\"3\"}, log shown\n",
            "  Read the logs with: kubectl hitl logs ship.go -n legal\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }
}
