//! Notifications, decided without side effects: which events a gate has reached, which of them
//! each channel still needs (and when to retry), and what each message says.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use hitl_api::notify::{DeliveryState, NotificationEvent, NotificationRecord};
use hitl_api::{Approval, ApprovalPhase, InputSpec, InputType};

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
/// reminders only the latest counts: after an outage people get one reminder, not a backlog. An
/// ended gate owes only the news of its end: a "decision needed" not yet delivered by then would
/// ask people to decide what is decided (`stale_after_end` drops its record).
pub fn reached(a: &Approval, now: Timestamp) -> (Vec<Due>, Option<Timestamp>) {
    let Some(phase) = a.status.as_ref().and_then(|s| s.phase) else { return (vec![], None) };
    let uid = a.metadata.uid.clone().unwrap_or_default();
    let key = |suffix: &str| format!("{uid}/{suffix}");
    if let Some(event) = end_event(phase) {
        return (vec![Due { event, key: key(event.as_str()) }], None);
    }
    let mut due = vec![Due { event: NotificationEvent::Requested, key: key("requested") }];
    let mut next = None;
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

/// The gate still waits for a decision.
pub fn waits(a: &Approval) -> bool {
    a.status.as_ref().and_then(|s| s.phase) == Some(ApprovalPhase::Pending)
}

/// The event that tells how a gate ended, or None while it waits.
fn end_event(phase: ApprovalPhase) -> Option<NotificationEvent> {
    match phase {
        ApprovalPhase::Pending => None,
        ApprovalPhase::Approved | ApprovalPhase::Rejected => Some(NotificationEvent::Decided),
        ApprovalPhase::Expired => Some(NotificationEvent::Expired),
        ApprovalPhase::Cancelled => Some(NotificationEvent::Cancelled),
    }
}

/// The events that ask people to decide: wrong to send once the gate ended.
fn asks_to_decide(event: NotificationEvent) -> bool {
    matches!(event, NotificationEvent::Requested | NotificationEvent::Reminder | NotificationEvent::Escalated)
}

/// The event a record's key (`<uid>/<event>[/<n>]`) is about.
pub fn event_of_key(key: &str) -> Option<NotificationEvent> {
    let suffix = key.split_once('/')?.1;
    let name = suffix.split('/').next()?;
    [
        NotificationEvent::Requested,
        NotificationEvent::Reminder,
        NotificationEvent::Escalated,
        NotificationEvent::Decided,
        NotificationEvent::Expired,
        NotificationEvent::Cancelled,
    ]
    .into_iter()
    .find(|e| e.as_str() == name)
}

/// Why `event` must no longer be sent for this gate: it ended, and the event asks people to
/// decide. None while it may still go out.
pub fn drop_reason(a: &Approval, event: NotificationEvent) -> Option<String> {
    let phase = a.status.as_ref().and_then(|s| s.phase)?;
    let ended = match phase {
        ApprovalPhase::Pending => return None,
        ApprovalPhase::Approved | ApprovalPhase::Rejected => "was decided",
        ApprovalPhase::Expired => "expired",
        ApprovalPhase::Cancelled => "was cancelled",
    };
    asks_to_decide(event).then(|| format!("not sent: the gate {ended} before it went out"))
}

/// The records of an ended gate that still wait to ask people to decide: each is to be recorded
/// `Dropped`, never sent.
pub fn stale_after_end(a: &Approval) -> Vec<&NotificationRecord> {
    let records = a.status.as_ref().map(|s| s.notifications.as_slice()).unwrap_or_default();
    records
        .iter()
        .filter(|r| r.state == DeliveryState::Pending)
        .filter(|r| event_of_key(&r.key).is_some_and(|e| drop_reason(a, e).is_some()))
        .collect()
}

/// The record of a notification that will never go out.
pub fn dropped(record: &NotificationRecord, reason: String) -> NotificationRecord {
    NotificationRecord { state: DeliveryState::Dropped, last_error: Some(reason), ..record.clone() }
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

/// From the record of earlier attempts (if any): send, wait, or nothing. A record held up by the
/// channel's configuration is checked again on its own, shorter backoff: fixing it is a person's
/// work, and the message should follow soon after.
pub fn next_step(record: Option<&NotificationRecord>, now: Timestamp) -> Step {
    let Some(r) = record else { return Step::Send { attempt: 1 } };
    match r.state {
        DeliveryState::Delivered | DeliveryState::Failed | DeliveryState::Dropped => Step::Done,
        DeliveryState::Pending => {
            let Some(last) = r.last_attempt_at.as_ref().map(|t| t.0) else {
                return Step::Send { attempt: r.attempts + 1 };
            };
            let wait = match r.configuration_checks {
                0 => backoff(r.attempts),
                checks => backoff(checks).min(MAX_CONFIGURATION_WAIT),
            };
            let at = last.checked_add(wait).unwrap_or(last);
            if at <= now { Step::Send { attempt: r.attempts + 1 } } else { Step::RetryAt(at) }
        }
    }
}

/// The longest wait between two checks of a channel's configuration.
pub const MAX_CONFIGURATION_WAIT: SignedDuration = SignedDuration::from_secs(30);

/// The wait after `attempts` failed attempts: 1 s, 2 s, 4 s, ... up to `MAX_BACKOFF`.
pub fn backoff(attempts: i32) -> SignedDuration {
    let exp = attempts.clamp(1, 20) - 1;
    SignedDuration::from_secs(1i64 << exp).min(MAX_BACKOFF)
}

/// Why one try did not deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The channel's configuration stops it before anything is sent: no consent to read its
    /// Secrets, a missing Secret or channel, a refused target. The namespace owner can fix it, so
    /// it is no attempt: the record stays `Pending` and is checked again.
    Configuration(String),
    /// Sent, and not delivered: the receiver could not be reached, did not answer in time, or
    /// refused. Recorded in one wording (`DELIVERY_FAILED`) whatever happened, so the record
    /// cannot tell an open port from a closed one; the detail goes to the operator's log.
    Delivery,
}

/// The one recorded wording for every failure on the network.
pub const DELIVERY_FAILED: &str = "not delivered: the receiver could not be reached, did not answer in time, or \
                                   did not accept it (the operator's log has the detail)";

/// The record after a try: `Delivered`; the error and `Pending` until the attempts run out; or,
/// for a configuration cause while the gate waits, `Pending` with the attempts unchanged and one
/// more check counted. Once the gate ended nobody is waiting on a fix, and checking an ended
/// gate's channels for ever would cost reads without end: a configuration cause then counts as
/// an attempt like any failure (its words kept).
pub fn record_attempt(
    previous: Option<&NotificationRecord>,
    key: &str,
    channel: &str,
    attempt: i32,
    result: Result<(), Failure>,
    gate_waits: bool,
    now: Timestamp,
) -> NotificationRecord {
    let (before, checks) = previous.map_or((0, 0), |p| (p.attempts, p.configuration_checks));
    let failed = |e: String| match attempt >= MAX_ATTEMPTS {
        true => (DeliveryState::Failed, attempt, 0, Some(e)),
        false => (DeliveryState::Pending, attempt, 0, Some(e)),
    };
    let (state, attempts, configuration_checks, last_error) = match result {
        Ok(()) => (DeliveryState::Delivered, attempt, 0, None),
        Err(Failure::Configuration(e)) if gate_waits => (DeliveryState::Pending, before, checks + 1, Some(e)),
        Err(Failure::Configuration(e)) => failed(e),
        Err(Failure::Delivery) => failed(DELIVERY_FAILED.into()),
    };
    NotificationRecord {
        key: key.into(),
        channel: channel.into(),
        state,
        attempts,
        configuration_checks,
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
        if let Some(evidence) = evidence_line(a) {
            lines.push(evidence);
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
        "evidenceSteps": evidence_steps(a), "evidenceDigest": spec.evidence_digest,
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

/// The evidence steps a gate shows, each once, in order. Names only: a log or an output may hold
/// what the channel's readers must not see, so neither is ever sent.
fn evidence_steps(a: &Approval) -> Vec<&str> {
    let mut steps: Vec<&str> = vec![];
    for e in &a.spec.evidence_pods {
        if !steps.contains(&e.step.as_str()) {
            steps.push(&e.step);
        }
    }
    steps
}

/// `Evidence: steps plan, scan (logs: kubectl hitl logs NAME -n NS, or the page)`.
fn evidence_line(a: &Approval) -> Option<String> {
    let steps = evidence_steps(a);
    if steps.is_empty() {
        return None;
    }
    let (ns, name) = (a.metadata.namespace.clone().unwrap_or_default(), a.metadata.name.clone().unwrap_or_default());
    let logs = a.spec.evidence_pods.iter().any(|e| e.pod.is_some());
    let read =
        if logs { format!(" (read it on the page, or kubectl hitl logs {name} -n {ns})") } else { String::new() };
    Some(format!("Evidence: step{} {}{read}", if steps.len() > 1 { "s" } else { "" }, steps.join(", ")))
}

fn headline(event: NotificationEvent, status: &hitl_api::ApprovalStatus, ns: &str, name: &str) -> String {
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
    use hitl_api::notify::{Escalation, NotifySpec, Reminders};
    use hitl_api::{ApprovalSpec, ApprovalStatus, Approvers};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn gate(notify: NotifySpec, phase: Option<ApprovalPhase>) -> Approval {
        let mut a = Approval::new(
            "wf.review",
            ApprovalSpec {
                expires_at: Some(Time(t(3600))),
                gate: hitl_api::Gate {
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
        assert_eq!(keys(&reached(&a, t(600)).0), ["u1/decided"]);
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
            assert_eq!(keys(&due), [key], "{phase:?}: no request or reminder after the end");
            assert_eq!((due[0].event, next), (event, None), "{phase:?}");
        }
    }

    #[test]
    fn failed_attempts_back_off_then_give_up() {
        let failed = |attempt| record_attempt(None, "k", "c", attempt, Err(Failure::Delivery), true, t(0));
        assert_eq!(next_step(None, t(0)), Step::Send { attempt: 1 });
        assert_eq!(next_step(Some(&failed(1)), t(0)), Step::RetryAt(t(1)));
        assert_eq!(next_step(Some(&failed(3)), t(4)), Step::Send { attempt: 4 });
        assert_eq!(next_step(Some(&failed(3)), t(3)), Step::RetryAt(t(4)));
        assert_eq!(backoff(30), MAX_BACKOFF);
        assert_eq!(failed(MAX_ATTEMPTS).state, DeliveryState::Failed);
        assert_eq!(next_step(Some(&failed(MAX_ATTEMPTS)), t(10_000)), Step::Done);
        let ok = record_attempt(None, "k", "c", 2, Ok(()), true, t(0));
        assert_eq!((ok.state, ok.last_error.as_deref()), (DeliveryState::Delivered, None));
        assert_eq!(next_step(Some(&ok), t(10)), Step::Done);
    }

    #[test]
    fn every_network_failure_is_recorded_in_the_same_words() {
        let r = record_attempt(None, "k", "c", 1, Err(Failure::Delivery), true, t(0));
        assert_eq!(r.last_error.as_deref(), Some(DELIVERY_FAILED));
    }

    #[test]
    fn a_configuration_cause_is_no_attempt_and_is_checked_again_until_fixed() {
        let refused = Failure::Configuration("the operator may not read Secret key".into());
        let mut record = record_attempt(None, "k", "c", 1, Err(refused.clone()), true, t(0));
        // Far more checks than attempts allowed: never given up, attempts untouched.
        for n in 1..=3 * MAX_ATTEMPTS {
            assert_eq!((record.state, record.attempts, record.configuration_checks), (DeliveryState::Pending, 0, n));
            let Step::RetryAt(at) = next_step(Some(&record), t(0)) else { panic!("waits") };
            assert!(at <= t(0).checked_add(MAX_CONFIGURATION_WAIT).unwrap(), "checked again within 30 s");
            assert_eq!(next_step(Some(&record), at), Step::Send { attempt: 1 });
            record = record_attempt(Some(&record), "k", "c", 1, Err(refused.clone()), true, t(0));
        }
        let fixed = record_attempt(Some(&record), "k", "c", 1, Ok(()), true, t(0));
        assert_eq!((fixed.state, fixed.attempts, fixed.configuration_checks), (DeliveryState::Delivered, 1, 0));
        // After real attempts, a configuration cause keeps their count.
        let failed = record_attempt(None, "k", "c", 3, Err(Failure::Delivery), true, t(0));
        let held = record_attempt(Some(&failed), "k", "c", 4, Err(refused.clone()), true, t(0));
        assert_eq!((held.attempts, held.configuration_checks), (3, 1));
        // Once the gate ended, nobody waits on a fix: the cause counts, and in the end gives up.
        let ended = record_attempt(Some(&held), "k", "c", 4, Err(refused.clone()), false, t(0));
        assert_eq!((ended.state, ended.attempts, ended.configuration_checks), (DeliveryState::Pending, 4, 0));
        assert_eq!(ended.last_error.as_deref(), Some("the operator may not read Secret key"), "its words kept");
        let last = record_attempt(Some(&ended), "k", "c", MAX_ATTEMPTS, Err(refused), false, t(0));
        assert_eq!(last.state, DeliveryState::Failed);
    }

    #[test]
    fn an_ended_gate_drops_what_asks_people_to_decide_and_keeps_the_rest() {
        let mut a = gate(NotifySpec::default(), Some(ApprovalPhase::Pending));
        let pending = |key: &str| record_attempt(None, key, "c", 1, Err(Failure::Delivery), true, t(0));
        let delivered = record_attempt(None, "u1/reminder/1", "d", 1, Ok(()), true, t(0));
        a.status.as_mut().unwrap().notifications = vec![
            pending("u1/requested"),
            pending("u1/reminder/2"),
            pending("u1/escalated"),
            pending("u1/decided"),
            delivered,
        ];
        assert!(stale_after_end(&a).is_empty(), "nothing is dropped while the gate waits");
        assert_eq!(drop_reason(&a, NotificationEvent::Requested), None);
        for (phase, words) in [
            (ApprovalPhase::Approved, "was decided"),
            (ApprovalPhase::Rejected, "was decided"),
            (ApprovalPhase::Expired, "expired"),
            (ApprovalPhase::Cancelled, "was cancelled"),
        ] {
            a.status.as_mut().unwrap().phase = Some(phase);
            let stale: Vec<&str> = stale_after_end(&a).iter().map(|r| r.key.as_str()).collect();
            assert_eq!(stale, ["u1/requested", "u1/reminder/2", "u1/escalated"], "{phase:?}");
            let reason = drop_reason(&a, NotificationEvent::Reminder).unwrap();
            assert_eq!(reason, format!("not sent: the gate {words} before it went out"));
            assert_eq!(drop_reason(&a, NotificationEvent::Decided), None, "the news of the end still goes");
            let d = dropped(stale_after_end(&a)[0], reason);
            assert_eq!((d.state, next_step(Some(&d), t(99))), (DeliveryState::Dropped, Step::Done));
        }
    }

    #[test]
    fn a_key_names_its_event() {
        assert_eq!(event_of_key("u1/requested"), Some(NotificationEvent::Requested));
        assert_eq!(event_of_key("u1/reminder/before-300"), Some(NotificationEvent::Reminder));
        assert_eq!(event_of_key("u1/expired"), Some(NotificationEvent::Expired));
        assert_eq!(event_of_key("u1"), None);
        assert_eq!(event_of_key("u1/other"), None);
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

    /// A gate's evidence is named, never sent: its outputs and log may hold what the channel's
    /// readers must not see.
    #[test]
    fn a_request_names_the_evidence_but_carries_none_of_it() {
        let mut a = gate(NotifySpec::default(), Some(ApprovalPhase::Pending));
        a.spec.evidence_pods = vec![hitl_api::approval::EvidencePod {
            step: "plan".into(),
            item: None,
            pod: Some("wf-plan-1-x".into()),
            outputs: Some(r#"{"password":"hunter2"}"#.into()),
        }];
        let due = Due { event: NotificationEvent::Requested, key: "u1/requested".into() };
        let m = render(&a, &due, None, t(0));
        assert!(m.text.contains("Evidence: step plan (read it on the page, or kubectl hitl logs"), "{}", m.text);
        assert!(!m.text.contains("hunter2") && !m.cloud_event.to_string().contains("hunter2"), "{m:?}");
        assert_eq!(m.cloud_event["data"]["evidenceSteps"], serde_json::json!(["plan"]));
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
