//! Notifications, decided without side effects: which events a gate has reached, which of them
//! each channel still needs (and when to retry), and what each message says.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::api::notify::{DeliveryState, NotificationEvent, NotificationRecord};
use crate::api::{Approval, ApprovalPhase, InputSpec, InputType};

/// At most this many `everySeconds` reminders per gate.
pub const MAX_REMINDERS: i64 = 50;
/// Attempts per notification before it is given up (`Failed`).
pub const MAX_ATTEMPTS: i32 = 8;
/// The longest wait between two attempts.
pub const MAX_BACKOFF: SignedDuration = SignedDuration::from_secs(300);

/// One event a gate has reached, with its idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub event: NotificationEvent,
    pub key: String,
}

/// The events a gate has reached by `now`, and when the next one falls due. Nothing before the
/// operator first recorded the gate's status (its approvers are granted by then). Of the
/// reminders only the latest counts: after an outage people get one reminder, not a backlog; and
/// reminders and escalation stop with the gate.
pub fn reached(a: &Approval, now: Timestamp) -> (Vec<Due>, Option<Timestamp>) {
    let Some(phase) = a.status.as_ref().and_then(|s| s.phase) else { return (vec![], None) };
    let uid = a.metadata.uid.clone().unwrap_or_default();
    let key = |suffix: &str| format!("{uid}/{suffix}");
    let mut due = vec![Due { event: NotificationEvent::Requested, key: key("requested") }];
    let mut next = None;
    let terminal = match phase {
        ApprovalPhase::Pending => None,
        ApprovalPhase::Approved | ApprovalPhase::Rejected => Some((NotificationEvent::Decided, "decided")),
        ApprovalPhase::Expired => Some((NotificationEvent::Expired, "expired")),
        ApprovalPhase::Cancelled => Some((NotificationEvent::Cancelled, "cancelled")),
    };
    if let Some((event, suffix)) = terminal {
        due.push(Due { event, key: key(suffix) });
        return (due, None);
    }
    let created = a.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let (reminder, next_reminder) = latest_reminder(a, created, now);
    if let Some(suffix) = reminder {
        due.push(Due { event: NotificationEvent::Reminder, key: key(&suffix) });
    }
    next = earliest(next, next_reminder);
    if let Some(at) = escalates_at(a) {
        if at <= now {
            due.push(Due { event: NotificationEvent::Escalated, key: key("escalated") });
        } else {
            next = earliest(next, Some(at));
        }
    }
    (due, next)
}

/// When the gate escalates: as recorded (the step's start plus the delay); an Approval without
/// the record counts from its creation.
pub fn escalates_at(a: &Approval) -> Option<Timestamp> {
    let after = a.spec.gate.notify.as_ref()?.escalation.as_ref()?.after_seconds;
    if let Some(at) = &a.spec.escalates_at {
        return Some(at.0);
    }
    let created = a.metadata.creation_timestamp.as_ref()?.0;
    created.checked_add(SignedDuration::from_secs(after)).ok()
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The latest reminder due by `now` (its key suffix), and when the next one falls due.
fn latest_reminder(a: &Approval, created: Timestamp, now: Timestamp) -> (Option<String>, Option<Timestamp>) {
    let Some(r) = a.spec.gate.notify.as_ref().and_then(|n| n.reminders.as_ref()) else { return (None, None) };
    let deadline = a.spec.expires_at.as_ref().map(|t| t.0);
    let mut times: Vec<(Timestamp, String)> = vec![];
    if let Some(every) = r.every_seconds.filter(|&s| s > 0) {
        for n in 1..=MAX_REMINDERS {
            let Ok(at) = created.checked_add(SignedDuration::from_secs(every.saturating_mul(n))) else { break };
            if deadline.is_some_and(|d| at >= d) {
                break;
            }
            times.push((at, format!("reminder/{n}")));
            if at > now {
                break;
            }
        }
    }
    if let Some(d) = deadline {
        for &before in &r.before_deadline_seconds {
            if let Ok(at) = d.checked_sub(SignedDuration::from_secs(before))
                && at > created
            {
                times.push((at, format!("reminder/before-{before}")));
            }
        }
    }
    let latest = times.iter().filter(|(at, _)| *at <= now).max_by_key(|(at, _)| *at).map(|(_, k)| k.clone());
    let next = times.iter().map(|(at, _)| *at).filter(|at| *at > now).min();
    (latest, next)
}

/// What to do about one (event, channel) pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Delivered, or given up: nothing more.
    Done,
    /// Send now; this is attempt number `attempt`.
    Send { attempt: i32 },
    /// Retry at this time.
    RetryAt(Timestamp),
}

/// From the record of earlier attempts (if any): send, wait, or nothing.
pub fn next_step(record: Option<&NotificationRecord>, now: Timestamp) -> Step {
    let Some(r) = record else { return Step::Send { attempt: 1 } };
    match r.state {
        DeliveryState::Delivered | DeliveryState::Failed => Step::Done,
        DeliveryState::Pending => {
            let Some(last) = r.last_attempt_at.as_ref().map(|t| t.0) else {
                return Step::Send { attempt: r.attempts + 1 };
            };
            let at = last.checked_add(backoff(r.attempts)).unwrap_or(last);
            if at <= now { Step::Send { attempt: r.attempts + 1 } } else { Step::RetryAt(at) }
        }
    }
}

/// The wait after `attempts` failed attempts: 1 s, 2 s, 4 s, ... up to `MAX_BACKOFF`.
pub fn backoff(attempts: i32) -> SignedDuration {
    let exp = attempts.clamp(1, 20) - 1;
    SignedDuration::from_secs(1i64 << exp).min(MAX_BACKOFF)
}

/// The record after an attempt: `Delivered`, or the error and `Pending` until the attempts run out.
pub fn record_attempt(
    key: &str,
    channel: &str,
    attempt: i32,
    result: Result<(), String>,
    now: Timestamp,
) -> NotificationRecord {
    let (state, last_error) = match result {
        Ok(()) => (DeliveryState::Delivered, None),
        Err(e) if attempt >= MAX_ATTEMPTS => (DeliveryState::Failed, Some(e)),
        Err(e) => (DeliveryState::Pending, Some(e)),
    };
    NotificationRecord {
        key: key.into(),
        channel: channel.into(),
        state,
        attempts: attempt,
        last_attempt_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
        last_error,
    }
}

/// One message, in the forms the channel kinds send.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// A one-line summary (e-mail subject).
    pub subject: String,
    /// The readable text (Slack message, e-mail body).
    pub text: String,
    /// The CloudEvents 1.0 structured-mode document (webhook body).
    pub cloud_event: Value,
}

/// The text as Slack must receive it: `&`, `<` and `>` are its markup (links, `<!channel>`
/// mentions), so whatever a Workflow's author wrote (the gate message) or we print (`<sign|redact>`)
/// arrives as written, never as markup. A line's leading `> ` (our quote of the gate message) stays
/// Slack's quote.
pub fn slack_text(text: &str) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    text.lines()
        .map(|line| match line.strip_prefix("> ") {
            Some(quoted) => format!("> {}", escape(quoted)),
            None => escape(line),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders one event of a gate. `page` is the approval page link, if the channel has one.
pub fn render(a: &Approval, due: &Due, page: Option<&str>, now: Timestamp) -> Message {
    let ns = a.metadata.namespace.clone().unwrap_or_default();
    let name = a.metadata.name.clone().unwrap_or_default();
    let status = a.status.clone().unwrap_or_default();
    let spec = &a.spec;
    let approvers = spec.gate.approvers.as_ref().map(|p| p.summary()).filter(|s| !s.is_empty());
    let escalation = spec.gate.notify.as_ref().and_then(|n| n.escalation.as_ref()).map(|e| e.approvers.summary());
    let escalated = status.escalated_at.is_some();
    let who = match (&approvers, &escalation) {
        (Some(a), Some(e)) if escalated => format!("{a}, and since escalation {e}"),
        (Some(a), _) => a.clone(),
        (None, _) => "anyone allowed to patch approvals in this namespace".into(),
    };
    let deadline = spec.expires_at.as_ref().map(|t| t.0);
    let headline = headline(due.event, &status, &ns, &name);
    let mut lines = vec![headline.clone(), format!("Workflow {} / step {}", spec.workflow_ref.name, spec.step)];
    if let Some(m) = &spec.message {
        lines.push(format!("> {m}"));
    }
    let waiting =
        matches!(due.event, NotificationEvent::Requested | NotificationEvent::Reminder | NotificationEvent::Escalated);
    if waiting {
        if !spec.gate.inputs.is_empty() {
            lines.push("Inputs:".into());
            lines.extend(spec.gate.inputs.iter().map(|i| format!("  - {}", describe_input(i))));
        }
        lines.push(format!("Who may decide: {who}"));
        if let Some(d) = deadline {
            lines.push(format!("Deadline: {d} ({} left)", left(d, now)));
        }
        lines.push(format!("Decide: {}", decide_command(a)));
        lines.push(format!("   or: kubectl hitl reject {name} -n {ns} --comment '...'"));
    } else if due.event == NotificationEvent::Decided {
        if let Some(input) = &spec.input {
            let values: Vec<String> = input.iter().map(|(k, v)| format!("{k}={v}")).collect();
            lines.push(format!("Input: {}", values.join(", ")));
        }
        if let Some(c) = &spec.comment {
            lines.push(format!("Comment: {c}"));
        }
    }
    if let Some(url) = page {
        lines.push(format!("Page: {url}"));
    }
    let data = json!({
        "namespace": ns, "name": name, "uid": a.metadata.uid,
        "workflow": spec.workflow_ref.name, "step": spec.step,
        "message": spec.message, "inputs": spec.gate.inputs,
        "approvers": spec.gate.approvers, "escalationApprovers": spec.gate.notify.as_ref().and_then(|n| n.escalation.as_ref()).map(|e| &e.approvers),
        "escalated": escalated, "expiresAt": spec.expires_at,
        "phase": status.phase, "decision": spec.decision, "decidedBy": status.decided_by,
        "input": spec.input, "comment": spec.comment, "votes": status.votes,
        "decideCommand": decide_command(a), "approvalUrl": page,
    });
    let cloud_event = json!({
        "specversion": "1.0",
        "type": format!("dev.hitl.approval.{}", due.event.as_str()),
        "source": format!("/apis/hitl.dev/v1alpha1/namespaces/{ns}/approvals/{name}"),
        "subject": format!("{ns}/{name}"),
        "id": due.key,
        "time": now.to_string(),
        "datacontenttype": "application/json",
        "data": data,
    });
    Message { subject: headline, text: lines.join("\n"), cloud_event }
}

fn headline(event: NotificationEvent, status: &crate::api::ApprovalStatus, ns: &str, name: &str) -> String {
    let by = status.decided_by.clone().unwrap_or_else(|| "someone".into());
    match event {
        NotificationEvent::Requested => format!("Decision needed: approval {name} in {ns}"),
        NotificationEvent::Reminder => format!("Reminder: approval {name} in {ns} still waits for a decision"),
        NotificationEvent::Escalated => format!("Escalated: approval {name} in {ns} waits; more approvers may decide"),
        NotificationEvent::Decided => match status.phase {
            Some(ApprovalPhase::Rejected) => format!("Rejected by {by}: approval {name} in {ns}"),
            _ => format!("Approved by {by}: approval {name} in {ns}"),
        },
        NotificationEvent::Expired => format!("Expired: nobody decided approval {name} in {ns} in time"),
        NotificationEvent::Cancelled => format!("Cancelled: approval {name} in {ns} is no longer needed"),
    }
}

/// `verdict (string, one of sign|redact, required)`. Also what `kubectl hitl describe` shows.
pub fn describe_input(i: &InputSpec) -> String {
    let mut facts = vec![
        match i.type_ {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
        }
        .to_string(),
    ];
    if !i.enum_.is_empty() {
        facts.push(format!("one of {}", i.enum_.join("|")));
    }
    match (i.minimum, i.maximum) {
        (Some(lo), Some(hi)) => facts.push(format!("{lo}..{hi}")),
        (Some(lo), None) => facts.push(format!(">= {lo}")),
        (None, Some(hi)) => facts.push(format!("<= {hi}")),
        _ => {}
    }
    if let Some(p) = &i.pattern {
        facts.push(format!("matching {p}"));
    }
    if let Some(n) = i.max_length {
        facts.push(format!("at most {n} characters"));
    }
    if let Some(d) = &i.default {
        facts.push(format!("default {d}"));
    }
    if i.required {
        facts.push("required".into());
    }
    let about = i.description.as_ref().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{} ({}){about}", i.name, facts.join(", "))
}

/// The exact command an approver types, with a placeholder per required input.
pub fn decide_command(a: &Approval) -> String {
    let ns = a.metadata.namespace.clone().unwrap_or_default();
    let name = a.metadata.name.clone().unwrap_or_default();
    let inputs: String = a
        .spec
        .gate
        .inputs
        .iter()
        .filter(|i| i.required)
        .map(|i| {
            format!(" --input {}=<{}>", i.name, if i.enum_.is_empty() { "value".into() } else { i.enum_.join("|") })
        })
        .collect();
    format!("kubectl hitl approve {name} -n {ns}{inputs}")
}

/// Time from `now` to `deadline`, for humans (`1h 0m`); `0s` once it passed.
pub fn left(deadline: Timestamp, now: Timestamp) -> String {
    let secs = deadline.duration_since(now).as_secs().max(0);
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The HMAC-SHA256 of `body` under `key`, as the `X-Hitl-Signature` header carries it.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The approval page link from a channel's template.
pub fn page_url(template: Option<&str>, a: &Approval) -> Option<String> {
    let t = template?;
    Some(
        t.replace("{namespace}", a.metadata.namespace.as_deref().unwrap_or_default())
            .replace("{name}", a.metadata.name.as_deref().unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::notify::{Escalation, NotifySpec, Reminders};
    use crate::api::{ApprovalSpec, ApprovalStatus, Approvers};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn gate(notify: NotifySpec, phase: Option<ApprovalPhase>) -> Approval {
        let mut a = Approval::new(
            "wf.review",
            ApprovalSpec {
                expires_at: Some(Time(t(3600))),
                gate: crate::api::Gate {
                    approvers: Some(Approvers { users: vec!["alice".into()], groups: vec![] }),
                    timeout_seconds: Some(3600),
                    notify: Some(notify),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        a.metadata.uid = Some("u1".into());
        a.metadata.namespace = Some("legal".into());
        a.metadata.creation_timestamp = Some(Time(t(0)));
        a.status = phase.map(|p| ApprovalStatus { phase: Some(p), ..Default::default() });
        a
    }

    fn keys(due: &[Due]) -> Vec<&str> {
        due.iter().map(|d| d.key.as_str()).collect()
    }

    #[test]
    fn nothing_is_told_before_the_gate_was_recorded() {
        assert_eq!(reached(&gate(NotifySpec::default(), None), t(5)), (vec![], None));
    }

    #[test]
    fn only_the_latest_reminder_counts_and_the_next_one_is_scheduled() {
        let reminders = Reminders { every_seconds: Some(600), before_deadline_seconds: vec![300] };
        let a = gate(NotifySpec { reminders: Some(reminders), ..Default::default() }, Some(ApprovalPhase::Pending));
        let (due, next) = reached(&a, t(1900));
        assert_eq!(keys(&due), ["u1/requested", "u1/reminder/3"], "reminders 1 and 2 are overdue and dropped");
        assert_eq!(next, Some(t(2400)));
        let (due, next) = reached(&a, t(3350));
        assert_eq!(keys(&due), ["u1/requested", "u1/reminder/before-300"]);
        assert_eq!(next, None, "no reminder at or after the deadline");
    }

    #[test]
    fn escalation_falls_due_after_its_delay_and_stops_with_the_gate() {
        let escalation =
            Escalation { after_seconds: 60, approvers: Approvers { users: vec!["bob".into()], groups: vec![] } };
        let mut a =
            gate(NotifySpec { escalation: Some(escalation), ..Default::default() }, Some(ApprovalPhase::Pending));
        assert_eq!(reached(&a, t(59)).1, Some(t(60)));
        assert_eq!(keys(&reached(&a, t(60)).0), ["u1/requested", "u1/escalated"]);
        a.status.as_mut().unwrap().phase = Some(ApprovalPhase::Rejected);
        assert_eq!(keys(&reached(&a, t(600)).0), ["u1/requested", "u1/decided"]);
    }

    #[test]
    fn an_ended_gate_tells_how_it_ended_and_nothing_more() {
        use NotificationEvent::{Cancelled, Decided, Expired};
        let reminders = Reminders { every_seconds: Some(10), before_deadline_seconds: vec![] };
        for (phase, event, key) in [
            (ApprovalPhase::Approved, Decided, "u1/decided"),
            (ApprovalPhase::Rejected, Decided, "u1/decided"),
            (ApprovalPhase::Expired, Expired, "u1/expired"),
            (ApprovalPhase::Cancelled, Cancelled, "u1/cancelled"),
        ] {
            let a = gate(NotifySpec { reminders: Some(reminders.clone()), ..Default::default() }, Some(phase));
            let (due, next) = reached(&a, t(35));
            assert_eq!(keys(&due), ["u1/requested", key], "{phase:?}: no reminder after the end");
            assert_eq!((due[1].event, next), (event, None), "{phase:?}");
        }
    }

    #[test]
    fn failed_attempts_back_off_then_give_up() {
        let failed = |attempt| record_attempt("k", "c", attempt, Err("503".into()), t(0));
        assert_eq!(next_step(None, t(0)), Step::Send { attempt: 1 });
        assert_eq!(next_step(Some(&failed(1)), t(0)), Step::RetryAt(t(1)));
        assert_eq!(next_step(Some(&failed(3)), t(4)), Step::Send { attempt: 4 });
        assert_eq!(next_step(Some(&failed(3)), t(3)), Step::RetryAt(t(4)));
        assert_eq!(backoff(30), MAX_BACKOFF);
        assert_eq!(failed(MAX_ATTEMPTS).state, DeliveryState::Failed);
        assert_eq!(next_step(Some(&failed(MAX_ATTEMPTS)), t(10_000)), Step::Done);
        let ok = record_attempt("k", "c", 2, Ok(()), t(0));
        assert_eq!((ok.state, ok.last_error.as_deref()), (DeliveryState::Delivered, None));
        assert_eq!(next_step(Some(&ok), t(10)), Step::Done);
    }

    #[test]
    fn a_request_says_what_waits_who_decides_by_when_and_how() {
        let mut a = gate(NotifySpec::default(), Some(ApprovalPhase::Pending));
        a.spec.message = Some("Scan flagged 3 clauses".into());
        a.spec.workflow_ref.name = "wf".into();
        a.spec.step = "review".into();
        a.spec.gate.inputs = vec![InputSpec {
            name: "verdict".into(),
            enum_: vec!["sign".into(), "redact".into()],
            required: true,
            ..Default::default()
        }];
        let due = Due { event: NotificationEvent::Requested, key: "u1/requested".into() };
        let m = render(&a, &due, page_url(Some("https://x/{namespace}/{name}"), &a).as_deref(), t(0));
        for want in [
            "Decision needed: approval wf.review in legal",
            "> Scan flagged 3 clauses",
            "verdict (string, one of sign|redact, required)",
            "Who may decide: alice",
            "(1h 0m left)",
            "Decide: kubectl hitl approve wf.review -n legal --input verdict=<sign|redact>",
            "Page: https://x/legal/wf.review",
        ] {
            assert!(m.text.contains(want), "{want:?} missing from:\n{}", m.text);
        }
        assert_eq!(m.cloud_event["type"], "dev.hitl.approval.requested");
        assert_eq!(m.cloud_event["id"], "u1/requested");
        assert_eq!(m.cloud_event["data"]["approvers"]["users"][0], "alice");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

#[cfg(test)]
mod slack_tests {
    use super::slack_text;

    #[test]
    fn slack_markup_in_the_text_arrives_as_text() {
        let text = "Decision needed\n> review <!channel> <http://evil|the page> & sign\n--input verdict=<sign|redact>";
        assert_eq!(
            slack_text(text),
            "Decision needed\n> review &lt;!channel&gt; &lt;http://evil|the page&gt; &amp; sign\n\
             --input verdict=&lt;sign|redact&gt;"
        );
        // Only a leading "> " is a quote; one inside the gate message is text.
        assert_eq!(slack_text("> a > b\n>> c"), "> a &gt; b\n&gt;&gt; c");
    }
}
