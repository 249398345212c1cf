//! The pages, rendered from what the API server returned to the person: pure functions of the
//! objects and the time, so each is tested without a server.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::form::{self, Typed};
use super::html::{esc, page, seg};
use crate::inbox_reader::Identity;
use hitl_api::{Approval, ApprovalPhase, Decision, InboxItem, Workflow};

/// A gate someone decided, for "Recently decided".
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub namespace: String,
    pub name: String,
    pub workflow: String,
    pub step: String,
    pub phase: String,
    pub decided_by: String,
    pub decided_at: Option<Time>,
}

impl Decided {
    /// The decided gate, or None while it waits. A decision the API server accepted counts at
    /// once, before the operator records it in status.
    pub fn of(a: &Approval) -> Option<Self> {
        let status = a.status.clone().unwrap_or_default();
        let recorded = status.phase.filter(|p| *p != ApprovalPhase::Pending).map(|p| format!("{p:?}"));
        let single = a.spec.gate.required_approvals.is_none_or(|n| n <= 1);
        let sent = a.spec.decision.filter(|_| single).map(|d| match d {
            Decision::Approve => "Approved".to_string(),
            Decision::Reject => "Rejected".to_string(),
        });
        let phase = recorded.or(sent)?;
        let decided_by = status.decided_by.or(a.spec.decided_by.clone());
        Some(Self {
            namespace: a.metadata.namespace.clone().unwrap_or_default(),
            name: a.metadata.name.clone().unwrap_or_default(),
            workflow: a.spec.workflow_ref.name.clone(),
            step: a.spec.step.clone(),
            phase,
            decided_by: decided_by.unwrap_or_else(|| "(nobody: timeout or cancel)".into()),
            decided_at: status.decided_at,
        })
    }
}

impl From<&InboxItem> for Decided {
    /// A decided gate from an inbox's `recent` list.
    fn from(i: &InboxItem) -> Self {
        Self {
            namespace: i.namespace.clone(),
            name: i.name.clone(),
            workflow: i.workflow.clone(),
            step: i.step.clone(),
            phase: i.outcome.clone().unwrap_or_default(),
            decided_by: i.decided_by.clone().unwrap_or_else(|| "(nobody: timeout or cancel)".into()),
            decided_at: i.decided_at.clone(),
        }
    }
}

/// What the inbox shows.
pub struct Inbox {
    pub me: Identity,
    /// Gates listing the person (or a group of theirs) as approver.
    pub decide: Vec<InboxItem>,
    /// Pending gates they may read but not decide.
    pub watch: Vec<InboxItem>,
    pub recent: Vec<Decided>,
    /// What their inboxes left out (`inbox_reader::left_out_note`), if anything.
    pub left_out: Option<String>,
}

/// Time left until `deadline`, as a person reads it.
pub fn time_left(deadline: Option<&Time>, now: Timestamp) -> String {
    let Some(deadline) = deadline else { return "no deadline".into() };
    let secs = deadline.0.as_second() - now.as_second();
    if secs <= 0 {
        return "deadline passed".into();
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s left"),
        (0, 0, m) => format!("{m}m left"),
        (0, h, m) => format!("{h}h {m}m left"),
        (d, h, _) => format!("{d}d {h}h left"),
    }
}

fn when(t: Option<&Time>) -> String {
    t.map(|t| t.0.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "–".into())
}

/// The gate page's address.
pub fn gate_href(ns: &str, name: &str) -> String {
    format!("/gates/{}/{}", seg(ns), seg(name))
}

fn run_href(ns: &str, name: &str) -> String {
    format!("/runs/{}/{}", seg(ns), seg(name))
}

fn gate_item(i: &InboxItem, now: Timestamp) -> String {
    let mut who = i.approvers.clone().unwrap_or_else(|| "anyone RBAC lets patch it".into());
    if i.escalated {
        who.push_str(" · escalated");
    }
    if let Some(v) = &i.votes {
        who.push_str(&format!(" · votes {v}"));
    }
    format!(
        "<li><a href=\"{gate}\"><strong>{wf} / {step}</strong></a> <span class=\"meta\">in {ns} · {left}</span>\
         <p class=\"msg\">{msg}</p><p class=\"meta\">May decide: {who} · <a href=\"{run}\">run</a></p></li>",
        gate = gate_href(&i.namespace, &i.name),
        run = run_href(&i.namespace, &i.workflow),
        wf = esc(&i.workflow),
        step = esc(&i.step),
        ns = esc(&i.namespace),
        left = esc(&time_left(i.expires_at.as_ref(), now)),
        msg = esc(i.message.as_deref().unwrap_or("")),
        who = esc(&who),
    )
}

fn gate_list(id: &str, items: &[InboxItem], empty: &str, now: Timestamp) -> String {
    if items.is_empty() {
        return format!("<p id=\"{id}\">{}</p>", esc(empty));
    }
    let lis: String = items.iter().map(|i| gate_item(i, now)).collect();
    format!("<ul class=\"gates\" id=\"{id}\">{lis}</ul>")
}

fn recent_table(recent: &[Decided]) -> String {
    if recent.is_empty() {
        return "<p id=\"recent\">Nothing decided that you may read.</p>".into();
    }
    let rows: String = recent
        .iter()
        .map(|d| {
            format!(
                "<tr><td><a href=\"{}\">{} / {}</a></td><td class=\"phase {p}\">{p}</td><td>{}</td><td>{}</td></tr>",
                gate_href(&d.namespace, &d.name),
                esc(&d.workflow),
                esc(&d.step),
                esc(&d.decided_by),
                when(d.decided_at.as_ref()),
                p = esc(&d.phase),
            )
        })
        .collect();
    format!(
        "<div class=\"scroll\"><table id=\"recent\"><caption class=\"skip\">Recently decided</caption>\
         <thead><tr><th scope=\"col\">Gate</th><th scope=\"col\">Outcome</th><th scope=\"col\">By</th><th scope=\"col\">When</th></tr></thead>\
         <tbody>{rows}</tbody></table></div>"
    )
}

/// The inbox: what waits for the person, what they may watch, what was decided lately.
pub fn inbox(view: &Inbox, now: Timestamp) -> String {
    let body = format!(
        "<h1>Inbox</h1><h2>Waiting for you</h2>{}{}<h2>You may watch</h2>{}<h2>Recently decided</h2>{}",
        view.left_out
            .as_deref()
            .map(|n| format!("<p id=\"left-out\" role=\"status\">{}</p>", esc(n)))
            .unwrap_or_default(),
        gate_list("decide", &view.decide, "Nothing waits for you.", now),
        gate_list("watch", &view.watch, "No other pending gates that you may read.", now),
        recent_table(&view.recent),
    );
    page("Inbox", &view.me.user, &body)
}

/// What the gate page needs besides the Approval.
pub struct GateForm<'a> {
    /// The person may decide (listed, or the gate lists nobody): show the form.
    pub may_decide: bool,
    /// The person may read the gate's Workflow: link to its run page.
    pub may_read_run: bool,
    pub csrf: &'a str,
    pub typed: &'a Typed,
    /// The API server's refusal of the last submission, word for word.
    pub refusal: Option<&'a str>,
    /// The Evidence section (`evidence::section`), already rendered.
    pub evidence: String,
    /// What that section showed of the logs, sent with the decision (`spec.evidenceSeen`).
    pub evidence_seen: Option<String>,
}

/// The run a gate belongs to: a link for who may read it; for an approver whose grant covers only
/// the gate, its name and what they see instead of a link that would answer "forbidden".
fn run_cell(a: &Approval, may_read_run: bool) -> String {
    let ns = a.metadata.namespace.clone().unwrap_or_default();
    let name = &a.spec.workflow_ref.name;
    if may_read_run {
        return format!("<a href=\"{}\">{}</a>", run_href(&ns, name), esc(name));
    }
    format!(
        "{} <span class=\"meta\" id=\"run-unreadable\">(you may not read this Workflow; this page shows all \
         its gate asks of you, and the earlier steps' outputs are in its message)</span>",
        esc(name)
    )
}

fn gate_facts(a: &Approval, may_read_run: bool, now: Timestamp) -> String {
    let status = a.status.clone().unwrap_or_default();
    let mut rows = vec![
        ("Run", run_cell(a, may_read_run)),
        ("Step", esc(&a.spec.step)),
        ("May decide", esc(status.approvers.as_deref().unwrap_or("anyone RBAC lets patch it"))),
        ("Time left", esc(&time_left(status.expires_at.as_ref().or(a.spec.expires_at.as_ref()), now))),
    ];
    if let Some(v) = &status.votes {
        rows.push(("Votes", esc(v)));
    }
    if let Some(at) = &a.spec.escalates_at {
        let state = match &status.escalated_at {
            Some(t) => format!("escalated at {}", when(Some(t))),
            None => format!("escalates at {}", when(Some(at))),
        };
        rows.push(("Escalation", esc(&state)));
    }
    let sent: Vec<String> =
        status.notifications.iter().map(|n| format!("{} via {}: {:?}", n.key, n.channel, n.state)).collect();
    if !sent.is_empty() {
        rows.push(("Notifications", esc(&sent.join("; "))));
    }
    let cells: String = rows.iter().map(|(k, v)| format!("<tr><th scope=\"row\">{k}</th><td>{v}</td></tr>")).collect();
    format!("<table class=\"facts\">{cells}</table>")
}

fn decided(a: &Approval) -> String {
    let Some(d) = Decided::of(a) else { return String::new() };
    let comment = a.spec.comment.as_deref().map(|c| format!(" · “{}”", esc(c))).unwrap_or_default();
    format!(
        "<p class=\"notice\" role=\"status\" id=\"outcome\"><span class=\"phase {p}\">{p}</span> by {by} at {at}{comment}</p>",
        p = esc(&d.phase),
        by = esc(&d.decided_by),
        at = when(d.decided_at.as_ref()),
    )
}

/// The API server's refusal of the last submission, shown whether or not the form is: what was
/// wrong first, then which policy said so (the API server's own words, all of them).
fn refusal(f: &GateForm) -> String {
    f.refusal
        .map(|r| {
            let (said, source) = split_refusal(r);
            let source = source.map(|s| format!(" <span class=\"meta\" id=\"refusal-source\">({})</span>", esc(s)));
            format!(
                "<div class=\"alert\" role=\"alert\" id=\"refusal\" tabindex=\"-1\"><strong>Refused:</strong> {}{}</div>",
                esc(said),
                source.unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

/// `approvals.hitl.dev "x" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied
/// request: input n: must be at most 5` → (`input n: must be at most 5`, the part before it),
/// each word of the API server's kept.
pub fn split_refusal(said: &str) -> (&str, Option<&str>) {
    const MARK: &str = " denied request";
    match said.find(MARK) {
        Some(at) if said[at + MARK.len()..].starts_with(": ") => {
            (&said[at + MARK.len() + 2..], Some(&said[..at + MARK.len()]))
        }
        _ => (said, None),
    }
}

/// The input a refusal names (`input priority: ...`), so its field is marked.
pub fn refused_input(said: &str) -> Option<&str> {
    let (said, _) = split_refusal(said);
    said.strip_prefix("input ")?.split_once(": ").map(|(name, _)| name).filter(|n| !n.contains(' '))
}

fn decision_form(a: &Approval, f: &GateForm) -> String {
    // novalidate: the API server judges every value, in one dialect, and says why.
    // Enter in a field submits the form with its default button, the first submit button: that
    // one is disabled (and hidden), so Enter decides nothing; only a click on Approve or Reject
    // (or Space/Enter on the focused button) does.
    format!(
        "<form method=\"post\" novalidate><button type=\"submit\" id=\"no-implicit-submit\" disabled hidden aria-hidden=\"true\" tabindex=\"-1\"></button>\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{seen}{fields}\
         <div class=\"buttons\"><button type=\"submit\" class=\"approve\" name=\"decision\" value=\"Approve\" id=\"approve\">Approve</button>\
         <button type=\"submit\" class=\"reject\" name=\"decision\" value=\"Reject\" id=\"reject\">Reject</button></div></form>",
        csrf = esc(f.csrf),
        seen = f
            .evidence_seen
            .as_deref()
            .map(|s| format!("<input type=\"hidden\" name=\"evidence_seen\" value=\"{}\">", esc(s)))
            .unwrap_or_default(),
        fields = form::fields(&a.spec.gate.inputs, f.typed, f.refusal.and_then(refused_input)),
    )
}

/// A gate: its question, facts, and the decision form while it waits for this person.
pub fn gate(a: &Approval, me: &str, f: &GateForm, now: Timestamp) -> String {
    let pending = Decided::of(a).is_none();
    let action = match (pending, f.may_decide) {
        (true, true) => decision_form(a, f),
        (true, false) => {
            "<p id=\"watch-only\">You may watch this gate; it does not list you as an approver.</p>".into()
        }
        (false, _) => decided(a),
    };
    let message = a.status.as_ref().and_then(|s| s.message.clone()).or(a.spec.message.clone()).unwrap_or_default();
    let body = format!(
        "<h1>{wf} / {step}</h1><p class=\"msg\" id=\"message\">{msg}</p>{facts}{evidence}{refused}{action}",
        evidence = f.evidence,
        refused = refusal(f),
        wf = esc(&a.spec.workflow_ref.name),
        step = esc(&a.spec.step),
        msg = esc(&message),
        facts = gate_facts(a, f.may_read_run, now),
    );
    page(&format!("Gate {}", a.metadata.name.clone().unwrap_or_default()), me, &body)
}

fn step_rows(wf: &Workflow) -> String {
    let statuses = wf.status.as_ref().map(|s| s.steps.as_slice()).unwrap_or_default();
    let ns = wf.metadata.namespace.clone().unwrap_or_default();
    statuses
        .iter()
        .map(|s| {
            // A fan-out's outputs.items can be long: the page shows the start of each value.
            let outputs: Vec<String> = s.outputs.iter().map(|(k, v)| format!("{k}={}", clip(v, 120))).collect();
            let decision = match (&s.approval_name, &s.decided_by) {
                (Some(apr), by) => format!(
                    "<a href=\"{}\">gate</a>{}",
                    gate_href(&ns, apr),
                    by.as_ref().map(|b| format!(" by {}", esc(b))).unwrap_or_default()
                ),
                (None, _) => String::new(),
            };
            // A fan-out says how its items stand (`12/20 items, 8 running`) in its message.
            let detail = match (&s.item_count, &s.message) {
                (Some(_), Some(m)) => format!("<br><span class=\"meta\">{}</span>", esc(m)),
                _ => String::new(),
            };
            format!(
                "<tr><td>{}</td><td><span class=\"phase {p}\">{p}</span>{detail}</td><td>{}</td><td>{}</td><td>{}</td><td>{decision}</td></tr>",
                esc(&s.name),
                when(s.started_at.as_ref()),
                when(s.finished_at.as_ref()),
                esc(&outputs.join(", ")),
                p = s.phase.as_str(),
            )
        })
        .collect()
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars().take(max - 1).chain(std::iter::once('…')).collect()
}

/// The run's live part: phase, graph and steps (the SSE stream sends this again on change).
pub fn run_fragment(wf: &Workflow) -> String {
    // A template run's steps are in its record.
    let wf = hitl_engine::template::as_run(wf);
    let wf = wf.as_ref();
    let status = wf.status.clone().unwrap_or_default();
    let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "Pending".into());
    format!(
        "<p><span class=\"phase {p}\" id=\"run-phase\">{p}</span> · {progress} · {msg}</p>\
         <div class=\"scroll\">{svg}</div><div class=\"scroll\"><table id=\"steps\"><thead><tr><th scope=\"col\">Step</th>\
         <th scope=\"col\">Phase</th><th scope=\"col\">Started</th><th scope=\"col\">Finished</th><th scope=\"col\">Outputs</th>\
         <th scope=\"col\">Decision</th></tr></thead><tbody>{rows}</tbody></table></div>",
        p = esc(&phase),
        progress = esc(status.progress.as_deref().unwrap_or("")),
        msg = esc(status.message.as_deref().unwrap_or("")),
        svg = super::dag::svg(&wf.spec.steps, &wf.spec.on_exit, &status.steps),
        rows = step_rows(wf),
    )
}

/// A run page; its script swaps in the fragment the server streams when the run changes.
pub fn run(wf: &Workflow, me: &str) -> String {
    let ns = wf.metadata.namespace.clone().unwrap_or_default();
    let name = wf.metadata.name.clone().unwrap_or_default();
    let body = format!(
        "<h1>Run {n}</h1><p class=\"meta\">in {ns}</p><div id=\"run\" aria-live=\"polite\">{fragment}</div>\
         <script src=\"{live}\" defer></script>",
        live = super::html::LIVE_PATH,
        n = esc(&name),
        ns = esc(&ns),
        fragment = run_fragment(wf),
    );
    page(&format!("Run {name}"), me, &body)
}

/// A page that says what went wrong, as the API server put it.
pub fn problem(title: &str, me: &str, said: &str) -> String {
    page(title, me, &format!("<h1>{}</h1><p class=\"alert\" role=\"alert\">{}</p>", esc(title), esc(said)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::{ApprovalSpec, ApprovalStatus, InputSpec, WorkflowRef};

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn gate_approval(phase: ApprovalPhase) -> Approval {
        let mut a = Approval::new(
            "wf.review",
            ApprovalSpec {
                workflow_ref: WorkflowRef { name: "wf".into(), ..Default::default() },
                step: "review".into(),
                message: Some("<b>sign?</b>".into()),
                gate: hitl_api::Gate {
                    inputs: vec![InputSpec { name: "verdict".into(), ..Default::default() }],
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        a.metadata.namespace = Some("legal".into());
        a.status =
            Some(ApprovalStatus { phase: Some(phase), expires_at: Some(at(1_000 + 3_700)), ..Default::default() });
        a
    }

    fn form<'a>(may_decide: bool, typed: &'a Typed, refusal: Option<&'a str>) -> GateForm<'a> {
        GateForm {
            may_decide,
            may_read_run: true,
            csrf: "tok",
            typed,
            refusal,
            evidence: String::new(),
            evidence_seen: None,
        }
    }

    #[test]
    fn time_left_reads_as_a_person_would_say_it() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(time_left(None, now), "no deadline");
        assert_eq!(time_left(Some(&at(999)), now), "deadline passed");
        assert_eq!(time_left(Some(&at(1_030)), now), "30s left");
        assert_eq!(time_left(Some(&at(1_000 + 300)), now), "5m left");
        assert_eq!(time_left(Some(&at(1_000 + 3_700)), now), "1h 1m left");
        assert_eq!(time_left(Some(&at(1_000 + 90_000)), now), "1d 1h left");
    }

    #[test]
    fn an_approver_gets_the_form_a_watcher_does_not() {
        let now = Timestamp::from_second(1_000).unwrap();
        let a = gate_approval(ApprovalPhase::Pending);
        let typed = Typed::new();
        let page = gate(&a, "alice", &form(true, &typed, None), now);
        assert!(page.contains("id=\"approve\"") && page.contains("value=\"tok\""), "{page}");
        assert!(page.contains("&lt;b&gt;sign?&lt;/b&gt;"), "the message is text, not markup");
        assert!(page.contains("1h 1m left"));
        let watcher = gate(&a, "bob", &form(false, &typed, Some("denied: not an approver")), now);
        assert!(!watcher.contains("id=\"approve\""));
        assert!(watcher.contains("id=\"watch-only\""));
        assert!(watcher.contains("denied: not an approver"), "a refusal shows even without the form");
    }

    #[test]
    fn a_decision_shows_at_once_before_the_operator_records_it() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut a = gate_approval(ApprovalPhase::Pending);
        a.spec.decision = Some(Decision::Approve);
        a.spec.decided_by = Some("alice".into());
        let page = gate(&a, "alice", &form(true, &Typed::new(), None), now);
        assert!(!page.contains("id=\"approve\""), "no second decision: {page}");
        assert!(page.contains("Approved</span> by alice"), "{page}");
        let mut quorum = gate_approval(ApprovalPhase::Pending);
        quorum.spec.gate.required_approvals = Some(2);
        quorum.spec.decision = Some(Decision::Approve);
        assert_eq!(Decided::of(&quorum), None, "a vote on a quorum gate is not the outcome");
    }

    #[test]
    fn the_inbox_separates_deciding_watching_and_decided() {
        let now = Timestamp::from_second(1_000).unwrap();
        let item = |name: &str| InboxItem {
            namespace: "legal".into(),
            name: name.into(),
            workflow: "wf".into(),
            step: name.into(),
            message: Some("please".into()),
            ..Default::default()
        };
        let mut done = gate_approval(ApprovalPhase::Rejected);
        done.status.as_mut().unwrap().decided_by = Some("carol".into());
        let view = Inbox {
            me: Identity { user: "alice".into(), groups: vec![] },
            decide: vec![item("mine")],
            watch: vec![item("theirs")],
            recent: Decided::of(&done).into_iter().collect(),
            left_out: Some("3 more gates wait for you <b>".into()),
        };
        let page = inbox(&view, now);
        assert!(page.contains("<p id=\"left-out\" role=\"status\">3 more gates wait for you &lt;b&gt;</p>"), "{page}");
        let decide = &page[page.find("id=\"decide\"").unwrap()..page.find("id=\"watch\"").unwrap()];
        assert!(decide.contains("/gates/legal/mine") && !decide.contains("theirs"), "{decide}");
        assert!(page[page.find("id=\"watch\"").unwrap()..].contains("/gates/legal/theirs"));
        assert!(page.contains("Rejected</td><td>carol"), "{page}");
    }

    #[test]
    fn a_refusal_puts_what_was_wrong_first_and_names_the_field() {
        let said = r#"approvals.hitl.dev "c.review" is forbidden: ValidatingAdmissionPolicy 'hitl-approval-input' with binding 'hitl-approval-input' denied request: input priority: must be at most 5"#;
        let (what, source) = split_refusal(said);
        assert_eq!(what, "input priority: must be at most 5");
        assert!(source.is_some_and(|s| s.ends_with("with binding 'hitl-approval-input' denied request")), "{source:?}");
        assert_eq!(refused_input(said), Some("priority"));
        assert_eq!(refused_input("user bob is not an approver of this gate"), None);
        assert_eq!(split_refusal("plain words"), ("plain words", None));
    }
}
