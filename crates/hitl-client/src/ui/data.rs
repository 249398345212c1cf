//! What the pages read, read as the person: their inboxes, the Approvals they may list, one gate,
//! one run. A 403 is an answer ("you may not"), not an error.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use super::view::{Decided, Inbox};
use crate::inbox_reader::{Identity, left_out_note, merge, my_inboxes};
use hitl_api::{Approval, InboxItem};
use hitl_engine::inbox_contents::item;

/// Decided gates shown under "Recently decided".
const RECENT: usize = 20;

/// The Approvals the person may list: in all namespaces if allowed, else in `namespaces`.
async fn listable(client: &Client, namespaces: &[String]) -> Result<Vec<Approval>, kube::Error> {
    match Api::<Approval>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => return Ok(list.items),
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        Err(e) => return Err(e),
    }
    let mut found = Vec::new();
    for ns in namespaces {
        match Api::<Approval>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
            Ok(list) => found.extend(list.items),
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// The gate lists `me` (a user or a group of theirs), counting escalation approvers once it
/// escalated, as the admission policy counts them.
pub fn lists(a: &Approval, me: &Identity) -> bool {
    let escalated = a.status.as_ref().is_some_and(|s| s.escalated_at.is_some());
    let escalation = a.spec.gate.notify.as_ref().and_then(|n| n.escalation.as_ref()).filter(|_| escalated);
    a.spec
        .gate
        .approvers
        .iter()
        .chain(escalation.map(|e| &e.approvers))
        .any(|ap| ap.users.contains(&me.user) || ap.groups.iter().any(|g| me.groups.contains(g)))
}

/// Whether RBAC lets the person patch the gate (for gates that list nobody).
pub async fn may_patch(client: &Client, a: &Approval) -> bool {
    let (ns, name) = (a.metadata.namespace.clone(), a.metadata.name.clone());
    may(client, "patch", "approvals", ns, name).await
}

/// Whether the person may read the Workflow a gate belongs to (an approver's per-gate grant
/// covers only the gate): the gate page links to the run only then.
pub async fn may_read_run(client: &Client, a: &Approval) -> bool {
    let (ns, name) = (a.metadata.namespace.clone(), Some(a.spec.workflow_ref.name.clone()));
    may(client, "get", "workflows", ns, name).await
}

/// What the API server answers to "may I `verb` this hitl.dev object?" (a SelfSubjectAccessReview).
async fn may(client: &Client, verb: &str, resource: &str, namespace: Option<String>, name: Option<String>) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some("hitl.dev".into()),
                resource: Some(resource.into()),
                verb: Some(verb.into()),
                namespace,
                name,
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &review).await.ok().and_then(|r| r.status).is_some_and(|s| s.allowed)
}

/// Whether the person may decide the gate now: it waits, they have not voted, and it lists them
/// (or lists nobody and RBAC lets them patch it). The API server has the last word.
pub async fn may_decide(client: &Client, a: &Approval, me: &Identity) -> bool {
    if Decided::of(a).is_some() || a.spec.votes.contains_key(&me.user) {
        return false;
    }
    match &a.spec.gate.approvers {
        Some(ap) if !ap.is_empty() => lists(a, me),
        _ => may_patch(client, a).await,
    }
}

/// The inbox: the person's inboxes, plus what they may list, split into decide and watch.
pub async fn inbox(client: &Client, me: &Identity, namespaces: &[String]) -> Result<Inbox, kube::Error> {
    // First ask who the API server takes the person for. When it will not take them at all (in
    // proxy mode: a group the server may not impersonate), every read below is refused with 403,
    // which the reads take as "nothing for you": the inbox would look empty. Its words instead.
    crate::inbox_reader::whoami(client).await?;
    let inboxes = my_inboxes(client, me).await?;
    let mut decide: Vec<InboxItem> = inboxes.iter().flat_map(|s| s.items.clone()).collect();
    let listed = listable(client, namespaces).await?;
    let mine: BTreeSet<(String, String)> = decide.iter().map(|i| (i.namespace.clone(), i.name.clone())).collect();
    let mut watch: Vec<InboxItem> = Vec::new();
    for a in listed.iter().filter(|a| Decided::of(a).is_none()) {
        let escalated = a.status.as_ref().is_some_and(|s| s.escalated_at.is_some());
        let key = (a.metadata.namespace.clone().unwrap_or_default(), a.metadata.name.clone().unwrap_or_default());
        if mine.contains(&key) {
            continue;
        }
        if may_decide(client, a, me).await {
            decide.push(item(a, escalated));
        } else {
            watch.push(item(a, escalated));
        }
    }
    // Decided gates that listed them (from their inboxes), and those they may list.
    let mut recent: Vec<Decided> = inboxes.iter().flat_map(|s| s.recent.iter().map(Decided::from)).collect();
    recent.extend(listed.iter().filter_map(Decided::of));
    recent.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    recent.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    recent.sort_by(|a, b| b.decided_at.as_ref().map(|t| t.0).cmp(&a.decided_at.as_ref().map(|t| t.0)));
    recent.truncate(RECENT);
    let left_out = left_out_note(&inboxes);
    Ok(Inbox { me: me.clone(), decide: merge(decide), watch: merge(watch), recent, left_out })
}
