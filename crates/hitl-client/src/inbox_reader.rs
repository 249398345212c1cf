//! Finding the gates that wait for you, as `kubectl hitl pending` does: ask the API server who
//! you are (SelfSubjectReview), then read the ApprovalInbox of your user and of each of your
//! groups, which the operator keeps and lets only you (or your group) read. No right to list
//! Approvals is needed; whoever has one also sees the namespace's other pending gates.

use futures::future::join_all;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use hitl_api::{Approval, ApprovalInbox, ApprovalInboxStatus, InboxItem, LeftOut};
use hitl_engine::inbox_contents::{self, group, inbox_name, user};

/// Who the API server says the caller is.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// The inboxes that may hold gates for this identity: the user's, then each group's.
    pub fn inbox_names(&self) -> Vec<String> {
        std::iter::once(inbox_name(&user(&self.user)))
            .chain(self.groups.iter().map(|g| inbox_name(&group(g))))
            .collect()
    }
}

/// Asks the API server who the client's credentials are (authentication.k8s.io/v1).
pub async fn whoami(client: &Client) -> Result<Identity, kube::Error> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api.create(&PostParams::default(), &SelfSubjectReview::default()).await?;
    let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
    Ok(Identity { user: info.username.unwrap_or_default(), groups: info.groups.unwrap_or_default() })
}

/// The gates in the inboxes of `me`. An inbox that does not exist (nothing waits) or that the
/// caller may not read (its grant is on its way, or the operator keeps no inboxes) holds nothing.
pub async fn my_gates(client: &Client, me: &Identity) -> Result<Vec<InboxItem>, kube::Error> {
    Ok(my_inboxes(client, me).await?.into_iter().flat_map(|s| s.items).collect())
}

/// The status of each inbox of `me` that exists and that they may read.
pub async fn my_inboxes(client: &Client, me: &Identity) -> Result<Vec<ApprovalInboxStatus>, kube::Error> {
    let api: Api<ApprovalInbox> = Api::all(client.clone());
    let reads = join_all(me.inbox_names().into_iter().map(|name| {
        let api = api.clone();
        async move { api.get_opt(&name).await }
    }))
    .await;
    let mut found = Vec::new();
    for read in reads {
        match read {
            Ok(inbox) => found.extend(inbox.and_then(|i| i.status)),
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// Workflows named in a note on what the inboxes left out.
const NAMED_LEFT_OUT: usize = 5;

/// What the caller's inboxes left out, in a sentence (None when nothing was): how many gates,
/// and the Workflows with the most of them.
pub fn left_out_note(inboxes: &[ApprovalInboxStatus]) -> Option<String> {
    let total: i32 = inboxes.iter().filter_map(|s| s.truncated).sum();
    if total <= 0 {
        return None;
    }
    let mut from: Vec<&LeftOut> = inboxes.iter().flat_map(|s| &s.left_out).collect();
    from.sort_by(|a, b| {
        b.gates.cmp(&a.gates).then_with(|| (&a.namespace, &a.workflow).cmp(&(&b.namespace, &b.workflow)))
    });
    let mut named: Vec<String> =
        from.iter().take(NAMED_LEFT_OUT).map(|l| format!("{} of {}/{}", l.gates, l.namespace, l.workflow)).collect();
    if from.len() > NAMED_LEFT_OUT {
        named.push("...".into());
    }
    Some(format!(
        "{total} more gates wait for you and are not listed: your inbox holds at most {} (shared out between \
         Workflows, soonest deadline first). Left out: {}.",
        inbox_contents::MAX_ITEMS,
        named.join(", ")
    ))
}

/// The pending gates the caller may list in `namespace` (all namespaces: None), or None when
/// RBAC does not let them list Approvals there.
pub async fn listed_gates(client: &Client, namespace: Option<&str>) -> Result<Option<Vec<InboxItem>>, kube::Error> {
    let api: Api<Approval> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(Some(
            list.items
                .iter()
                .filter(|a| a.status.as_ref().and_then(|s| s.phase) == Some(hitl_api::ApprovalPhase::Pending))
                .map(|a| inbox_contents::item(a, false))
                .collect(),
        )),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every gate once, soonest deadline first.
pub fn merge(items: Vec<InboxItem>) -> Vec<InboxItem> {
    let mut items = items;
    items.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    items.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    inbox_contents::merge(&[], items, None, &Default::default()).items
}

/// The gates as a table, or a sentence when there are none.
pub fn table(items: &[InboxItem]) -> String {
    if items.is_empty() {
        return "No gates are waiting for you.\n".into();
    }
    let mut out = format!(
        "{:<20} {:<32} {:<28} {:<24} {:<22} MESSAGE\n",
        "NAMESPACE", "APPROVAL", "WORKFLOW/STEP", "APPROVERS", "EXPIRES"
    );
    for i in items {
        let mut approvers = i.approvers.clone().unwrap_or_else(|| "(RBAC)".into());
        if i.escalated {
            approvers.push_str(" (escalated)");
        }
        if let Some(v) = &i.votes {
            approvers.push_str(&format!(" [{v}]"));
        }
        let expires = i.expires_at.as_ref().map(|t| t.0.to_string()).unwrap_or_else(|| "never".into());
        let message = i.message.clone().unwrap_or_default().replace(['\n', '\r'], " ");
        out.push_str(&format!(
            "{:<20} {:<32} {:<28} {:<24} {:<22} {}\n",
            i.namespace,
            i.name,
            format!("{}/{}", i.workflow, i.step),
            approvers,
            expires,
            message
        ));
    }
    out
}

/// `kubectl hitl pending`: the gates waiting for the caller (their inboxes), plus the pending
/// gates they may list in `namespace`. `all_namespaces`: every pending gate, which needs the
/// right to list Approvals in all namespaces (as a cluster admin has).
pub async fn pending(client: &Client, namespace: &str, all_namespaces: bool) -> anyhow::Result<String> {
    if all_namespaces {
        let Some(all) = listed_gates(client, None).await? else {
            anyhow::bail!(
                "you may not list Approvals in all namespaces; `kubectl hitl pending` without -A shows the gates waiting for you"
            );
        };
        return Ok(table(&merge(all)));
    }
    let me = whoami(client).await?;
    let inboxes = my_inboxes(client, &me).await?;
    let mut items: Vec<InboxItem> = inboxes.iter().flat_map(|s| s.items.clone()).collect();
    items.extend(listed_gates(client, Some(namespace)).await?.unwrap_or_default());
    let mut out = table(&merge(items));
    if let Some(note) = left_out_note(&inboxes) {
        out.push_str(&format!("\n{note}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(ns: &str, name: &str, expires: Option<i64>) -> InboxItem {
        InboxItem {
            namespace: ns.into(),
            name: name.into(),
            workflow: "wf".into(),
            step: "review".into(),
            message: Some(format!("decide {name}\nplease")),
            approvers: Some("alice, group:legal".into()),
            expires_at: expires.map(|s| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::from_second(s).unwrap())
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_gate_in_two_inboxes_is_shown_once_soonest_first() {
        let merged = merge(vec![
            gate("b", "late", None),
            gate("a", "soon", Some(1_900_000_000)),
            gate("b", "late", None),
            gate("a", "sooner", Some(1_800_000_000)),
        ]);
        let names: Vec<&str> = merged.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["sooner", "soon", "late"]);
    }

    #[test]
    fn the_table_has_one_line_per_gate() {
        let mut escalated = gate("ns", "g", Some(1_800_000_000));
        escalated.escalated = true;
        escalated.votes = Some("1/2".into());
        let t = table(&[escalated]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].starts_with("NAMESPACE"));
        for part in ["ns", "g", "wf/review", "(escalated)", "[1/2]", "2027-01-15T08:00:00Z", "decide g please"] {
            assert!(lines[1].contains(part), "{part}: {t}");
        }
        assert_eq!(table(&[]), "No gates are waiting for you.\n");
    }

    #[test]
    fn a_note_says_how_many_gates_were_left_out_and_whose() {
        assert_eq!(left_out_note(&[ApprovalInboxStatus::default()]), None);
        let left = |wf: &str, gates| LeftOut { namespace: "ns".into(), workflow: wf.into(), gates };
        let user = ApprovalInboxStatus {
            truncated: Some(150),
            left_out: vec![left("a", 100), left("b", 50)],
            ..Default::default()
        };
        let group = ApprovalInboxStatus { truncated: Some(120), left_out: vec![left("c", 120)], ..Default::default() };
        let note = left_out_note(&[user, group]).unwrap();
        assert!(note.starts_with("270 more gates wait for you and are not listed"), "{note}");
        assert!(note.ends_with("Left out: 120 of ns/c, 100 of ns/a, 50 of ns/b."), "{note}");
    }

    #[test]
    fn the_inboxes_read_are_the_users_and_each_groups() {
        let me = Identity { user: "alice".into(), groups: vec!["legal".into(), "system:authenticated".into()] };
        assert_eq!(
            me.inbox_names(),
            [inbox_name(&user("alice")), inbox_name(&group("legal")), inbox_name(&group("system:authenticated"))]
        );
    }
}
