//! Who each pending gate waits for, and so what each `ApprovalInbox` holds. Pure: the inbox
//! controller gathers the Approvals and the inboxes, asks `plan`, and carries the changes out.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use sha2::{Digest, Sha256};

use hitl_api::{
    Approval, ApprovalInbox, ApprovalInboxStatus, ApprovalPhase, Approvers, InboxItem, InboxSubject, LeftOut,
    SubjectKind,
};

/// Items kept in one inbox, shared out between Workflows (`fair_share`); `truncated` counts the
/// rest and `leftOut` says whose they are. With the per-item bounds below an inbox stays well
/// under etcd's 1.5 MiB object limit.
pub const MAX_ITEMS: usize = 500;
/// Workflows named in `leftOut`, those with the most gates left out first.
pub const MAX_LEFT_OUT: usize = 20;
/// Characters of a gate's message copied into an inbox.
pub const MAX_MESSAGE: usize = 512;
/// Characters of the approvers summary copied into an inbox.
const MAX_APPROVERS: usize = 256;
/// Decided gates kept in one inbox, newest first.
pub const MAX_RECENT: usize = 20;
/// How long a decided gate stays in its approvers' inboxes. The controller's full pass (at least
/// every 5 minutes) drops older ones.
pub const RECENT_SECONDS: i64 = 7 * 24 * 3600;

/// The inbox of a subject: `user-<sha256 hex>` or `group-<sha256 hex>` of the name. User names
/// may hold `:` and `@`, which object names may not; the full digest leaves no room for two
/// subjects to share an inbox.
pub fn inbox_name(subject: &InboxSubject) -> String {
    let digest = Sha256::digest(subject.name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let prefix = match subject.kind {
        SubjectKind::User => "user",
        SubjectKind::Group => "group",
    };
    format!("{prefix}-{hex}")
}

pub fn user(name: &str) -> InboxSubject {
    InboxSubject { kind: SubjectKind::User, name: name.into() }
}

pub fn group(name: &str) -> InboxSubject {
    InboxSubject { kind: SubjectKind::Group, name: name.into() }
}

/// Whom a gate waits for now, each with whether they are there through escalation: its
/// approvers, and its escalation approvers once it escalated. Nobody while the gate is not
/// pending, and nobody for a gate the operator does not act on (it matched no Workflow step, so
/// its approvers were granted nothing: they must not be shown it either).
pub fn waits_for(a: &Approval) -> BTreeMap<InboxSubject, bool> {
    let phase = a.status.as_ref().and_then(|s| s.phase);
    if phase != Some(ApprovalPhase::Pending) {
        return BTreeMap::new();
    }
    listed_on(a)
}

/// Whom a gate that ended since `since` (unix seconds) listed: its approvers, and its escalation
/// approvers if it escalated; they see how it ended under "Recently decided".
pub fn decided_for(a: &Approval, since: i64) -> BTreeMap<InboxSubject, bool> {
    let status = a.status.clone().unwrap_or_default();
    let ended = status.phase.is_some_and(|p| p != ApprovalPhase::Pending);
    let recent = status.decided_at.as_ref().is_some_and(|t| t.0.as_second() >= since);
    if !ended || !recent {
        return BTreeMap::new();
    }
    listed_on(a)
}

/// The subjects a gate the operator acts on lists, each with whether through escalation.
fn listed_on(a: &Approval) -> BTreeMap<InboxSubject, bool> {
    let status = a.status.clone().unwrap_or_default();
    let not_acted_on = status.conditions.iter().any(|c| c.reason == "GateMismatch" && c.status == "False");
    if not_acted_on {
        return BTreeMap::new();
    }
    let mut subjects = BTreeMap::new();
    if let Some(escalated) = crate::gate::escalated_approvers(a) {
        subjects.extend(listed(escalated).map(|s| (s, true)));
    }
    // Listed on the gate itself wins over escalation.
    if let Some(approvers) = &a.spec.gate.approvers {
        subjects.extend(listed(approvers).map(|s| (s, false)));
    }
    subjects
}

fn listed(approvers: &Approvers) -> impl Iterator<Item = InboxSubject> + '_ {
    approvers.users.iter().map(|u| user(u)).chain(approvers.groups.iter().map(|g| group(g)))
}

/// A gate as an inbox shows it.
pub fn item(a: &Approval, escalated: bool) -> InboxItem {
    let status = a.status.clone().unwrap_or_default();
    InboxItem {
        namespace: a.namespace().unwrap_or_default(),
        name: a.name_any(),
        workflow: a.spec.workflow_ref.name.clone(),
        step: a.spec.step.clone(),
        message: a.spec.message.as_deref().map(|m| shorten(m, MAX_MESSAGE)),
        inputs: a
            .spec
            .gate
            .inputs
            .iter()
            .map(|i| if i.required { format!("{}*", i.name) } else { i.name.clone() })
            .collect(),
        approvers: status.approvers.as_deref().map(|s| shorten(s, MAX_APPROVERS)),
        expires_at: status.expires_at.or_else(|| a.spec.expires_at.clone()),
        escalated,
        votes: status.votes,
        ..Default::default()
    }
}

/// A gate that ended, as "Recently decided" shows it.
pub fn decided_item(a: &Approval) -> InboxItem {
    let status = a.status.clone().unwrap_or_default();
    InboxItem {
        message: None,
        inputs: vec![],
        expires_at: None,
        votes: None,
        outcome: status.phase.map(|p| format!("{p:?}")),
        decided_by: status.decided_by.clone(),
        decided_at: status.decided_at.clone(),
        ..item(a, false)
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Every subject's items, from the Approvals this operator watches: pending gates, and gates
/// that ended since `since` (unix seconds), which carry an `outcome`.
pub fn contents<'a>(
    approvals: impl IntoIterator<Item = &'a Approval>,
    since: i64,
) -> BTreeMap<InboxSubject, Vec<InboxItem>> {
    let mut inboxes: BTreeMap<InboxSubject, Vec<InboxItem>> = BTreeMap::new();
    for a in approvals {
        for (subject, escalated) in waits_for(a) {
            inboxes.entry(subject).or_default().push(item(a, escalated));
        }
        for subject in decided_for(a, since).into_keys() {
            inboxes.entry(subject).or_default().push(decided_item(a));
        }
    }
    inboxes
}

/// Whether an item is this operator's to keep: every item when it watches all namespaces, the
/// items of its namespace when it watches one. Several operators, each watching one namespace,
/// so share an inbox, each keeping its own items in it.
pub fn in_scope(item: &InboxItem, scope: Option<&str>) -> bool {
    scope.is_none_or(|ns| item.namespace == ns)
}

/// An inbox's whole status: `mine` (pending and decided) merged into `existing`.
fn merge_status(
    existing: &ApprovalInboxStatus,
    mine: Vec<InboxItem>,
    scope: Option<&str>,
    gone: &BTreeSet<String>,
) -> ApprovalInboxStatus {
    let (decided, pending): (Vec<InboxItem>, Vec<InboxItem>) = mine.into_iter().partition(|i| i.outcome.is_some());
    let mut status = merge(&existing.items, pending, scope, gone);
    status.recent = merge_recent(&existing.recent, decided, scope, gone);
    status
}

/// The decided gates: what is kept from outside `scope`, plus `mine`; newest first, at most
/// `MAX_RECENT`.
fn merge_recent(
    existing: &[InboxItem],
    mine: Vec<InboxItem>,
    scope: Option<&str>,
    gone: &BTreeSet<String>,
) -> Vec<InboxItem> {
    let kept = existing.iter().filter(|i| !in_scope(i, scope) && !gone.contains(&i.namespace));
    let mut items: Vec<InboxItem> = kept.cloned().chain(mine).collect();
    items.sort_by(|a, b| {
        let at = |i: &InboxItem| i.decided_at.as_ref().map(|t| t.0);
        at(b).cmp(&at(a)).then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    items.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    items.truncate(MAX_RECENT);
    items
}

/// An inbox's pending gates: what it holds from outside `scope` (except from namespaces that are
/// `gone`), plus `mine`; at most `MAX_ITEMS` chosen fairly (`fair_share`), soonest deadline
/// first, and what was left out counted per Workflow.
pub fn merge(
    existing: &[InboxItem],
    mine: Vec<InboxItem>,
    scope: Option<&str>,
    gone: &BTreeSet<String>,
) -> ApprovalInboxStatus {
    let kept = existing.iter().filter(|i| !in_scope(i, scope) && !gone.contains(&i.namespace));
    let mut items: Vec<InboxItem> = kept.cloned().chain(mine).collect();
    items.sort_by(by_deadline);
    items.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    let (mut items, left) = fair_share(items, MAX_ITEMS);
    items.sort_by(by_deadline);
    ApprovalInboxStatus {
        pending: items.len() as i32,
        items,
        truncated: (!left.is_empty()).then_some(left.len() as i32),
        left_out: left_out_by_workflow(&left),
        recent: vec![],
    }
}

/// Soonest deadline first, gates without one last, then by name.
fn by_deadline(a: &InboxItem, b: &InboxItem) -> std::cmp::Ordering {
    let deadline = |i: &InboxItem| (i.expires_at.is_none(), i.expires_at.as_ref().map(|t| t.0));
    deadline(a).cmp(&deadline(b)).then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
}

/// At most `max` of `items` (sorted by deadline), shared out between the Workflows they come
/// from: every Workflow's soonest gate before any Workflow's second, and so on, nearest deadline
/// first within a round. So one Workflow's forEach of hundreds of gates (or five of them) cannot
/// push another Workflow's one gate out of a person's inbox. (kept, left out).
fn fair_share(items: Vec<InboxItem>, max: usize) -> (Vec<InboxItem>, Vec<InboxItem>) {
    if items.len() <= max {
        return (items, vec![]);
    }
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut ranked: Vec<(usize, InboxItem)> = items
        .into_iter()
        .map(|i| {
            let round = seen.entry((i.namespace.clone(), i.workflow.clone())).or_default();
            *round += 1;
            (*round, i)
        })
        .collect();
    // Stable: within a round, the deadline order of `items` stays.
    ranked.sort_by_key(|(round, _)| *round);
    let left = ranked.split_off(max);
    (ranked.into_iter().map(|(_, i)| i).collect(), left.into_iter().map(|(_, i)| i).collect())
}

/// Gates left out, counted per Workflow, most first; at most `MAX_LEFT_OUT` Workflows.
fn left_out_by_workflow(left: &[InboxItem]) -> Vec<LeftOut> {
    let mut counts: BTreeMap<(&str, &str), i32> = BTreeMap::new();
    for i in left {
        *counts.entry((&i.namespace, &i.workflow)).or_default() += 1;
    }
    let mut out: Vec<LeftOut> = counts
        .into_iter()
        .map(|((namespace, workflow), gates)| LeftOut { namespace: namespace.into(), workflow: workflow.into(), gates })
        .collect();
    out.sort_by_key(|l| std::cmp::Reverse(l.gates));
    out.truncate(MAX_LEFT_OUT);
    out
}

/// One write that brings the inboxes to what the gates say.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A subject with gates and no inbox yet: create it, grant it, write its status.
    Create { name: String, subject: InboxSubject, status: ApprovalInboxStatus },
    /// An inbox whose items changed: replace its status (as of `resource_version`).
    Update { name: String, resource_version: Option<String>, status: ApprovalInboxStatus },
    /// An inbox left with no items: delete it (as of `resource_version`); its grant goes with it.
    Delete { name: String, resource_version: Option<String> },
}

/// The changes that bring `existing` inboxes to `desired` (from `contents`), for an operator
/// watching `scope`. Entries of namespaces that are `gone` go too: their operator, which watched
/// only that namespace, may have stopped before it could remove them. An inbox whose subject does
/// not match its name was not made by the operator and is left alone (the admission policy lets
/// nobody else create one).
pub fn plan(
    existing: &[ApprovalInbox],
    mut desired: BTreeMap<InboxSubject, Vec<InboxItem>>,
    scope: Option<&str>,
    gone: &BTreeSet<String>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut seen = BTreeSet::new();
    for inbox in existing {
        let name = inbox.name_any();
        if inbox_name(&inbox.spec.subject) != name || !seen.insert(name.clone()) {
            continue;
        }
        let mine = desired.remove(&inbox.spec.subject).unwrap_or_default();
        let current = inbox.status.clone().unwrap_or_default();
        let want = merge_status(&current, mine, scope, gone);
        let resource_version = inbox.resource_version();
        if want.items.is_empty() && want.recent.is_empty() {
            changes.push(Change::Delete { name, resource_version });
        } else if needs_write(&current, &want, scope) {
            changes.push(Change::Update { name, resource_version, status: want });
        }
    }
    for (subject, mine) in desired {
        let name = inbox_name(&subject);
        if !mine.is_empty() && !seen.contains(&name) {
            changes.push(Change::Create {
                name,
                subject,
                status: merge_status(&Default::default(), mine, scope, gone),
            });
        }
    }
    changes
}

/// The namespaces of entries that another operator keeps (outside `scope`): those whose
/// existence to check, so entries of deleted namespaces can go.
pub fn foreign_namespaces(existing: &[ApprovalInbox], scope: Option<&str>) -> BTreeSet<String> {
    existing
        .iter()
        .flat_map(|i| i.status.iter().flat_map(|s| s.items.iter().chain(&s.recent)))
        .filter(|i| !in_scope(i, scope))
        .map(|i| i.namespace.clone())
        .collect()
}

/// Whether `current` must be rewritten as `want`. An operator that watches one namespace writes
/// only when the items differ: its count of what the cap left out is its own view, and two
/// operators correcting each other's count would write forever.
fn needs_write(current: &ApprovalInboxStatus, want: &ApprovalInboxStatus, scope: Option<&str>) -> bool {
    match scope {
        None => current != want,
        Some(_) => current.items != want.items || current.recent != want.recent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::notify::{Escalation, NotifySpec};
    use hitl_api::{ApprovalSpec, ApprovalStatus, InputSpec, WorkflowRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn at(s: i64) -> Option<Time> {
        Some(Time(jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()))
    }

    /// A `since` no decision is after: only pending gates count.
    const NOTHING_RECENT: i64 = i64::MAX;

    fn decided(mut a: Approval, phase: ApprovalPhase, by: &str, s: i64) -> Approval {
        let status = a.status.as_mut().unwrap();
        status.phase = Some(phase);
        status.decided_by = Some(by.into());
        status.decided_at = at(s);
        a
    }

    #[test]
    fn a_gate_that_ended_lately_is_in_its_approvers_recent_list_newest_first() {
        let since = 1_800_000_000 + 100;
        let old = decided(gate("ns", "old", &["alice"], &[]), ApprovalPhase::Approved, "alice", 99);
        let first = decided(gate("ns", "first", &["alice"], &["legal"]), ApprovalPhase::Rejected, "carol", 200);
        let second = decided(gate("ns", "second", &["alice"], &[]), ApprovalPhase::Expired, "", 300);
        let waiting = gate("ns", "waiting", &["alice"], &[]);
        let inboxes = contents([&old, &first, &second, &waiting], since);
        let changes = plan(&[], inboxes, None, &none());
        let alice = changes
            .iter()
            .find_map(|c| match c {
                Change::Create { subject, status, .. } if *subject == user("alice") => Some(status.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(names(&alice.items), ["ns/waiting"]);
        assert_eq!(names(&alice.recent), ["ns/second", "ns/first"], "newest first, none older than since");
        assert_eq!(alice.recent[1].outcome.as_deref(), Some("Rejected"));
        assert_eq!(alice.recent[1].decided_by.as_deref(), Some("carol"));
        assert_eq!(alice.pending, 1);
        // An inbox with only decided gates is kept; one with neither goes.
        let legal = inbox(group("legal"), vec![]);
        let legal_name = inbox_name(&group("legal"));
        let kept = plan(std::slice::from_ref(&legal), contents([&first], since), None, &none());
        assert!(
            kept.iter().any(|c| matches!(c, Change::Update { name, status, .. }
                if *name == legal_name && names(&status.recent) == ["ns/first"])),
            "{kept:#?}"
        );
        let gone = plan(&[legal], contents([&first], since + 1_000), None, &none());
        assert!(matches!(&gone[..], [Change::Delete { name, .. }] if *name == legal_name), "{gone:#?}");
    }

    #[test]
    fn the_recent_list_is_capped() {
        let many: Vec<Approval> = (0..30)
            .map(|n| decided(gate("ns", &format!("g{n:02}"), &["alice"], &[]), ApprovalPhase::Approved, "alice", n))
            .collect();
        let changes = plan(&[], contents(many.iter(), 0), None, &none());
        let Change::Create { status, .. } = &changes[0] else { panic!("{changes:#?}") };
        assert_eq!(status.recent.len(), MAX_RECENT);
        assert_eq!(status.recent[0].name, "g29");
        assert!(status.items.is_empty());
    }

    fn gate(ns: &str, name: &str, users: &[&str], groups: &[&str]) -> Approval {
        let mut a = Approval::new(
            name,
            ApprovalSpec {
                workflow_ref: WorkflowRef { name: format!("{name}-wf"), ..Default::default() },
                step: "review".into(),
                message: Some(format!("message of {name}")),
                gate: hitl_api::Gate {
                    approvers: Some(Approvers {
                        users: users.iter().map(|s| s.to_string()).collect(),
                        groups: groups.iter().map(|s| s.to_string()).collect(),
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        a.metadata.namespace = Some(ns.into());
        a.status = Some(ApprovalStatus {
            phase: Some(ApprovalPhase::Pending),
            approvers: Some(a.spec.gate.approvers.as_ref().unwrap().summary()),
            ..Default::default()
        });
        a
    }

    fn escalating(mut a: Approval, to_users: &[&str], escalated: bool) -> Approval {
        a.spec.gate.notify = Some(NotifySpec {
            escalation: Some(Escalation {
                after_seconds: 60,
                approvers: Approvers { users: to_users.iter().map(|s| s.to_string()).collect(), groups: vec![] },
            }),
            ..Default::default()
        });
        if escalated {
            a.status.as_mut().unwrap().escalated_at = at(60);
        }
        a
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn names(items: &[InboxItem]) -> Vec<String> {
        items.iter().map(|i| format!("{}/{}", i.namespace, i.name)).collect()
    }

    fn inbox(subject: InboxSubject, items: Vec<InboxItem>) -> ApprovalInbox {
        let mut i = ApprovalInbox::new(&inbox_name(&subject), hitl_api::ApprovalInboxSpec { subject });
        i.metadata.resource_version = Some("7".into());
        i.status = Some(merge(&[], items, None, &none()));
        i
    }

    #[test]
    fn names_are_valid_object_names_and_differ_by_kind_and_name() {
        let odd = inbox_name(&user("system:serviceaccount:ns:bot@example.com"));
        assert!(odd.starts_with("user-") && odd.len() == 5 + 64, "{odd}");
        assert!(odd.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{odd}");
        assert_ne!(inbox_name(&user("legal")), inbox_name(&group("legal")));
        assert_ne!(inbox_name(&user("alice")), inbox_name(&user("alice ")));
        assert_eq!(inbox_name(&user("alice")), inbox_name(&user("alice")));
    }

    #[test]
    fn a_gate_waits_for_its_users_and_groups_only_while_pending() {
        let a = gate("ns", "g", &["alice"], &["legal"]);
        assert_eq!(waits_for(&a), BTreeMap::from([(user("alice"), false), (group("legal"), false)]));
        for phase in
            [ApprovalPhase::Approved, ApprovalPhase::Rejected, ApprovalPhase::Expired, ApprovalPhase::Cancelled]
        {
            let mut done = a.clone();
            done.status.as_mut().unwrap().phase = Some(phase);
            assert!(waits_for(&done).is_empty(), "{phase:?}");
        }
        let mut unstamped = a.clone();
        unstamped.status = None;
        assert!(waits_for(&unstamped).is_empty(), "not yet checked against its Workflow");
        let mut open = a.clone();
        open.spec.gate.approvers = None;
        assert!(waits_for(&open).is_empty(), "a gate for whoever RBAC allows names nobody");
    }

    #[test]
    fn a_gate_the_operator_does_not_act_on_is_in_no_inbox() {
        let mut a = gate("ns", "g", &["alice"], &[]);
        a.status.as_mut().unwrap().conditions.push(Condition {
            type_: "Accepted".into(),
            status: "False".into(),
            reason: "GateMismatch".into(),
            message: "not acted on".into(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        });
        assert!(waits_for(&a).is_empty());
        a.status.as_mut().unwrap().conditions[0].reason = "InvalidInput".into();
        assert_eq!(waits_for(&a).len(), 1, "a refused decision leaves the gate waiting");
    }

    #[test]
    fn escalation_approvers_join_only_once_the_gate_escalated() {
        let before = escalating(gate("ns", "g", &["alice"], &[]), &["dave", "alice"], false);
        assert_eq!(waits_for(&before), BTreeMap::from([(user("alice"), false)]));
        let after = escalating(gate("ns", "g", &["alice"], &[]), &["dave", "alice"], true);
        assert_eq!(waits_for(&after), BTreeMap::from([(user("alice"), false), (user("dave"), true)]));
        let items = contents([&after], NOTHING_RECENT);
        assert!(items[&user("dave")][0].escalated);
        assert!(!items[&user("alice")][0].escalated, "listed on the gate itself");
    }

    #[test]
    fn items_summarise_the_gate_within_bounds() {
        let mut a = gate("ns", "g", &["alice"], &[]);
        a.spec.message = Some("x".repeat(10_000));
        a.spec.gate.inputs = vec![
            InputSpec { name: "verdict".into(), required: true, ..Default::default() },
            InputSpec { name: "notes".into(), ..Default::default() },
        ];
        a.status.as_mut().unwrap().expires_at = at(5);
        a.status.as_mut().unwrap().votes = Some("1/2".into());
        let i = item(&a, false);
        assert_eq!(i.message.as_ref().unwrap().chars().count(), MAX_MESSAGE);
        assert!(i.message.as_ref().unwrap().ends_with('…'));
        assert_eq!(i.inputs, ["verdict*", "notes"]);
        assert_eq!((i.workflow.as_str(), i.step.as_str(), i.approvers.as_deref()), ("g-wf", "review", Some("alice")));
        assert_eq!((i.expires_at.clone(), i.votes.as_deref()), (at(5), Some("1/2")));
    }

    #[test]
    fn contents_group_gates_by_subject() {
        let a = gate("one", "a", &["alice"], &[]);
        let b = gate("two", "b", &[], &["legal"]);
        let c = gate("two", "c", &["zed"], &["legal"]);
        let inboxes = contents([&a, &b, &c], NOTHING_RECENT);
        assert_eq!(names(&inboxes[&user("alice")]), ["one/a"]);
        assert_eq!(names(&inboxes[&group("legal")]), ["two/b", "two/c"]);
        assert_eq!(names(&inboxes[&user("zed")]), ["two/c"]);
        assert!(!inboxes.contains_key(&user("legal")), "a group is not a user of the same name");
        assert_eq!(inboxes.len(), 3);
    }

    #[test]
    fn merge_sorts_by_deadline_and_caps() {
        let mut items: Vec<InboxItem> = (0..MAX_ITEMS + 3)
            .map(|n| {
                let mut i = item(&gate("ns", &format!("g{n:04}"), &["alice"], &[]), false);
                i.expires_at = if n % 2 == 0 { at(1000 - n as i64) } else { None };
                i
            })
            .collect();
        items.reverse();
        let status = merge(&[], items, None, &none());
        assert_eq!(status.items.len(), MAX_ITEMS);
        assert_eq!((status.pending, status.truncated), (MAX_ITEMS as i32, Some(3)));
        assert_eq!(status.items[0].name, format!("g{:04}", MAX_ITEMS + 2), "soonest deadline first");
        let first_open = status.items.iter().position(|i| i.expires_at.is_none()).unwrap();
        assert!(status.items[first_open..].iter().all(|i| i.expires_at.is_none()), "no deadline: last");
        assert!(status.items[first_open..].windows(2).all(|w| w[0].name < w[1].name), "then by name");
    }

    /// The reported flood (issue 26.11): five forEach gates of 100 items each listing alice, all
    /// due sooner than her one real gate. Every Workflow gets its share; the cut is said per
    /// Workflow.
    #[test]
    fn a_flood_of_one_workflows_gates_leaves_room_for_anothers() {
        let mut items = vec![];
        for w in 0..5 {
            for n in 0..100 {
                let mut i = item(&gate("flood", &format!("f{w}-{n:03}"), &["alice"], &[]), false);
                i.workflow = format!("flood-{w}");
                i.expires_at = at(n);
                items.push(i);
            }
        }
        let mut real = item(&gate("legal", "contract.review", &["alice"], &[]), false);
        real.expires_at = at(10_000);
        items.push(real);
        let status = merge(&[], items, None, &none());
        assert_eq!(status.items.len(), MAX_ITEMS);
        assert!(status.items.iter().any(|i| i.name == "contract.review"), "the real gate is kept");
        assert_eq!(status.items.last().unwrap().name, "contract.review", "shown in deadline order");
        assert_eq!(status.truncated, Some(1));
        assert_eq!(status.left_out, [LeftOut { namespace: "flood".into(), workflow: "flood-4".into(), gates: 1 }]);
        let kept_of = |w: &str| status.items.iter().filter(|i| i.workflow == w).count();
        assert_eq!((0..5).map(|w| kept_of(&format!("flood-{w}"))).collect::<Vec<_>>(), [100, 100, 100, 100, 99]);
    }

    #[test]
    fn each_workflow_keeps_its_soonest_gates_and_the_rest_is_counted_per_workflow() {
        let many = |wf: &str, count: usize, first_deadline: i64| -> Vec<InboxItem> {
            (0..count)
                .map(|n| {
                    let mut i = item(&gate("ns", &format!("{wf}-{n:04}"), &["alice"], &[]), false);
                    i.workflow = wf.into();
                    i.expires_at = at(first_deadline + n as i64);
                    i
                })
                .collect()
        };
        let items = [many("big", 800, 0), many("mid", 300, 5), many("small", 2, 100_000)].concat();
        let status = merge(&[], items, None, &none());
        let kept_of = |w: &str| status.items.iter().filter(|i| i.workflow == w).count();
        assert_eq!((kept_of("big"), kept_of("mid"), kept_of("small")), (249, 249, 2));
        assert!(
            status.items.iter().any(|i| i.name == "big-0248") && !status.items.iter().any(|i| i.name == "big-0249")
        );
        assert_eq!(status.truncated, Some(602));
        let left: Vec<(&str, i32)> = status.left_out.iter().map(|l| (l.workflow.as_str(), l.gates)).collect();
        assert_eq!(left, [("big", 551), ("mid", 51)]);
        assert!(status.items.windows(2).all(|w| by_deadline(&w[0], &w[1]).is_le()), "soonest deadline first");
    }

    #[test]
    fn a_namespaced_operator_keeps_the_other_namespaces_items() {
        let theirs = item(&gate("other", "x", &["alice"], &[]), false);
        let my_old = item(&gate("mine", "old", &["alice"], &[]), false);
        let my_new = item(&gate("mine", "new", &["alice"], &[]), false);
        let merged = merge(&[theirs.clone(), my_old.clone()], vec![my_new.clone()], Some("mine"), &none());
        assert_eq!(names(&merged.items), ["mine/new", "other/x"]);
        let everything = merge(&[theirs, my_old], vec![my_new], None, &none());
        assert_eq!(names(&everything.items), ["mine/new"], "watching all namespaces, all items are its own");
    }

    #[test]
    fn plan_creates_updates_and_deletes_only_what_changed() {
        let a = gate("ns", "a", &["alice"], &[]);
        let b = gate("ns", "b", &["bob"], &["legal"]);
        let unchanged = inbox(user("alice"), vec![item(&a, false)]);
        let emptied = inbox(user("carol"), vec![item(&gate("ns", "old", &["carol"], &[]), false)]);
        let stale = inbox(group("legal"), vec![item(&a, false)]);
        let changes = plan(&[unchanged, emptied, stale], contents([&a, &b], NOTHING_RECENT), None, &none());
        assert_eq!(changes.len(), 3, "{changes:#?}");
        assert!(
            changes.contains(&Change::Delete { name: inbox_name(&user("carol")), resource_version: Some("7".into()) })
        );
        assert!(changes.iter().any(|c| matches!(c,
            Change::Update { name, status, .. } if *name == inbox_name(&group("legal")) && names(&status.items) == ["ns/b"])));
        assert!(changes.iter().any(|c| matches!(c,
            Change::Create { name, subject, status } if *name == inbox_name(&user("bob"))
                && *subject == user("bob") && names(&status.items) == ["ns/b"])));
    }

    #[test]
    fn plan_leaves_an_inbox_alone_whose_name_is_not_its_subjects() {
        let a = gate("ns", "a", &["alice"], &[]);
        let mut forged = inbox(user("alice"), vec![]);
        forged.metadata.name = Some(inbox_name(&user("mallory")));
        let changes = plan(&[forged], contents([&a], NOTHING_RECENT), None, &none());
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert!(matches!(&changes[0], Change::Create { name, .. } if *name == inbox_name(&user("alice"))));
    }

    #[test]
    fn a_namespaced_operator_deletes_an_inbox_only_when_no_namespace_has_items_in_it() {
        let theirs = item(&gate("other", "x", &["alice"], &[]), false);
        let mine = item(&gate("mine", "y", &["alice"], &[]), false);
        let shared = inbox(user("alice"), vec![theirs, mine.clone()]);
        let changes = plan(std::slice::from_ref(&shared), BTreeMap::new(), Some("mine"), &none());
        assert!(matches!(&changes[..], [Change::Update { status, .. }] if names(&status.items) == ["other/x"]));
        let only_mine = inbox(user("alice"), vec![mine]);
        let changes = plan(&[only_mine], BTreeMap::new(), Some("mine"), &none());
        assert!(matches!(&changes[..], [Change::Delete { .. }]), "{changes:#?}");
        let changes = plan(std::slice::from_ref(&shared), BTreeMap::new(), Some("third"), &none());
        assert!(changes.is_empty(), "nothing of its own in it: {changes:#?}");
        assert_eq!(foreign_namespaces(std::slice::from_ref(&shared), Some("third")), set(&["mine", "other"]));
        assert_eq!(foreign_namespaces(std::slice::from_ref(&shared), Some("mine")), set(&["other"]));
        assert!(foreign_namespaces(std::slice::from_ref(&shared), None).is_empty());
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entries_of_a_deleted_namespace_go_whoever_kept_them() {
        let stale = item(&gate("deleted", "x", &["alice"], &[]), false);
        let alive = item(&gate("other", "y", &["alice"], &[]), false);
        let inbox = inbox(user("alice"), vec![stale.clone(), alive]);
        let changes = plan(std::slice::from_ref(&inbox), BTreeMap::new(), Some("mine"), &set(&["deleted"]));
        assert!(
            matches!(&changes[..], [Change::Update { status, .. }] if names(&status.items) == ["other/y"]),
            "{changes:#?}"
        );
        let only_stale = self::inbox(user("alice"), vec![stale]);
        let changes = plan(&[only_stale], BTreeMap::new(), Some("mine"), &set(&["deleted"]));
        assert!(matches!(&changes[..], [Change::Delete { .. }]), "{changes:#?}");
    }
}
