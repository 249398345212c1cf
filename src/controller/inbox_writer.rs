//! Keeps the ApprovalInboxes: one per user and group that a pending gate waits for, each readable
//! by that subject alone. RBAC cannot let a person list only the Approvals that name them, but
//! it can let them `get` one object by name: this controller writes what waits for them there.
//!
//! Level-triggered and debounced: any change to an Approval or an inbox wakes it, it waits a
//! moment for more, then computes every inbox from the Approval store (`engine::inbox_contents`) and
//! writes only the inboxes that differ. A periodic pass repairs anything missed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::Notify;

use super::pods::{LABEL_MANAGED_BY, MANAGER};
use super::{Context, Error, grants};
use crate::api::{Approval, ApprovalInbox, ApprovalInboxSpec, ApprovalInboxStatus};
use crate::engine::inbox_contents::{self, Change};
use crate::engine::names;

/// How long to wait after a change for more before computing: a Workflow opening ten gates, or a
/// burst of status writes, costs one pass.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// A full pass at least this often, whatever the watches said.
const RESYNC: Duration = Duration::from_secs(300);

/// Runs until the process stops. `approvals` is the Approval controller's store; `changed` is
/// woken on each of its events.
pub async fn run(ctx: Arc<Context>, approvals: Store<Approval>, changed: Arc<Notify>) {
    let api: Api<ApprovalInbox> = Api::all(ctx.client.clone());
    let (inboxes, writer) = reflector::store();
    let woken = changed.clone();
    let watch = watcher(api, watcher::Config::default().page_size(200)).default_backoff().reflect(writer).for_each(
        move |event| {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching ApprovalInboxes");
            }
            woken.notify_one();
            futures::future::ready(())
        },
    );
    futures::join!(watch, keep(ctx, approvals, inboxes, changed));
}

/// The loop: a pass whenever something changed (after the debounce), or every `RESYNC`.
async fn keep(ctx: Arc<Context>, approvals: Store<Approval>, inboxes: Store<ApprovalInbox>, changed: Arc<Notify>) {
    ready(&approvals).await;
    ready(&inboxes).await;
    let mut granted = HashSet::new();
    let mut namespaces = Namespaces::default();
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(DEBOUNCE).await;
        let again = match pass(&ctx, &approvals, &inboxes, &mut granted, &mut namespaces).await {
            Ok(again) => {
                failures = 0;
                again
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, category = e.category(), failures, "keeping the inboxes failed");
                ctx.metrics.failed("inbox", e.category());
                true
            }
        };
        let wait = if again { Duration::from_millis(200) * 2u32.pow(failures.min(8)) } else { RESYNC };
        let _ = tokio::time::timeout(wait, changed.notified()).await;
    }
}

/// Until the store has listed everything. A store wakes only the last task that waited on it,
/// and the controllers wait on the Approval store too: look every 100 ms.
async fn ready<K: Resource + Clone>(store: &Store<K>)
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await.is_err() {}
}

/// One pass: every inbox as the gates say. True when something must be looked at again soon (a
/// write met a newer object, or the store has not yet seen our last write).
async fn pass(
    ctx: &Context,
    approvals: &Store<Approval>,
    inboxes: &Store<ApprovalInbox>,
    granted: &mut HashSet<String>,
    namespaces: &mut Namespaces,
) -> Result<bool, Error> {
    let existing: Vec<ApprovalInbox> = inboxes.state().iter().map(|i| (**i).clone()).collect();
    if existing.iter().any(|i| ctx.is_stale(i)) {
        // Our own write is on its way through the watch, which wakes us again.
        return Ok(true);
    }
    let scope = ctx.config.namespace.as_deref();
    let gone = namespaces.gone(ctx, inbox_contents::foreign_namespaces(&existing, scope)).await?;
    let gates = approvals.state();
    let since = jiff::Timestamp::now().as_second() - inbox_contents::RECENT_SECONDS;
    let desired = inbox_contents::contents(gates.iter().map(|a| a.as_ref()), since);
    // One inbox that cannot be written (say, a stranger's ClusterRole holds its grant's name)
    // must not hold up the others: each is tried, the first failure reported.
    let mut again = false;
    let mut failed = None;
    for change in inbox_contents::plan(&existing, desired, scope, &gone) {
        match apply(ctx, change, granted).await {
            Ok(a) => again |= a,
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    // Grants of inboxes made before this process started, or whose grant creation failed.
    granted.retain(|uid| existing.iter().any(|i| i.uid().as_deref() == Some(uid)));
    let ungranted: Vec<&ApprovalInbox> =
        existing.iter().filter(|i| i.uid().is_some_and(|u| !granted.contains(&u))).collect();
    for i in ungranted {
        if let Err(e) = ensure_grant(ctx, i, granted).await {
            failed = failed.or(Some(e));
        }
    }
    failed.map_or(Ok(again), Err)
}

/// Which namespaces exist, as last looked up: an operator that watches one namespace checks the
/// namespaces of the other entries in the inboxes, so that entries whose namespace was deleted
/// (and whose operator may have stopped first) go. Looked up again after a while, and never for
/// an operator that watches all namespaces (every entry is its own).
#[derive(Default)]
struct Namespaces {
    known: std::collections::HashMap<String, (bool, std::time::Instant)>,
}

/// How long a namespace lookup is trusted.
const NAMESPACE_KEPT: Duration = Duration::from_secs(60);

impl Namespaces {
    async fn gone(
        &mut self,
        ctx: &Context,
        wanted: std::collections::BTreeSet<String>,
    ) -> Result<std::collections::BTreeSet<String>, Error> {
        self.known.retain(|ns, (_, at)| wanted.contains(ns) && at.elapsed() < NAMESPACE_KEPT);
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
        let unknown: Vec<String> = wanted.into_iter().filter(|ns| !self.known.contains_key(ns)).collect();
        for ns in unknown {
            let exists = api.get_metadata_opt(&ns).await.map_err(Error::Kube)?.is_some();
            self.known.insert(ns, (exists, std::time::Instant::now()));
        }
        Ok(self.known.iter().filter(|(_, (exists, _))| !exists).map(|(ns, _)| ns.clone()).collect())
    }
}

/// Carries one change out; true when it met a newer object and must be planned again.
async fn apply(ctx: &Context, change: Change, granted: &mut HashSet<String>) -> Result<bool, Error> {
    let api: Api<ApprovalInbox> = Api::all(ctx.client.clone());
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    match change {
        Change::Create { name, subject, status } => {
            let mut new = ApprovalInbox::new(&name, ApprovalInboxSpec { subject });
            new.metadata.labels = Some([(LABEL_MANAGED_BY.to_string(), MANAGER.to_string())].into());
            ctx.metrics.write("create_inbox");
            let created = match api.create(&pp, &new).await {
                Ok(c) => c,
                // The store has not seen it yet: the watch brings it, and a pass after.
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(true),
                Err(e) => return Err(Error::Create(e)),
            };
            // Granted before it holds anything, so its subject never waits on a 403.
            ensure_grant(ctx, &created, granted).await?;
            write_status(ctx, &api, created, status).await
        }
        Change::Update { name, resource_version, status } => {
            let mut current = ApprovalInbox::new(&name, ApprovalInboxSpec::default());
            // A status write takes only the status from the body; the version makes it conditional.
            current.metadata.resource_version = resource_version;
            write_status(ctx, &api, current, status).await
        }
        Change::Delete { name, resource_version } => {
            ctx.metrics.write("delete_inbox");
            let dp = DeleteParams {
                preconditions: Some(Preconditions { resource_version, uid: None }),
                ..Default::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => Ok(false),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
                Err(e) => Err(Error::Kube(e)),
            }
        }
    }
}

/// Replaces the inbox's status, as of the resourceVersion in `inbox`.
async fn write_status(
    ctx: &Context,
    api: &Api<ApprovalInbox>,
    mut inbox: ApprovalInbox,
    status: ApprovalInboxStatus,
) -> Result<bool, Error> {
    inbox.status = Some(status);
    inbox.metadata.managed_fields = None;
    ctx.metrics.write("inbox_status");
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    match api.replace_status(&inbox.name_any(), &pp, &inbox).await {
        Ok(written) => {
            ctx.wrote(&written);
            Ok(false)
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(true),
        Err(e) => Err(Error::Kube(e)),
    }
}

async fn ensure_grant(ctx: &Context, inbox: &ApprovalInbox, granted: &mut HashSet<String>) -> Result<(), Error> {
    let (Some((role, binding)), Some(uid)) = (grant(inbox), inbox.uid()) else { return Ok(()) };
    ctx.metrics.write("create_clusterrole");
    grants::create_exact(&Api::<ClusterRole>::all(ctx.client.clone()), &role, |r: &ClusterRole| r.rules == role.rules)
        .await?;
    ctx.metrics.write("create_clusterrolebinding");
    let bindings = Api::<ClusterRoleBinding>::all(ctx.client.clone());
    grants::create_exact(&bindings, &binding, |b: &ClusterRoleBinding| {
        b.role_ref == binding.role_ref && b.subjects == binding.subjects
    })
    .await?;
    granted.insert(uid);
    Ok(())
}

/// The ClusterRole and ClusterRoleBinding that let the inbox's subject, and nobody else, `get`
/// and `watch` exactly this inbox. Owned by the inbox: they go when it goes. Pure.
pub fn grant(inbox: &ApprovalInbox) -> Option<(ClusterRole, ClusterRoleBinding)> {
    let name = names::inbox_grant_name(&inbox.name_any(), inbox.metadata.uid.as_deref()?);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGER.to_string())].into()),
        owner_references: Some(vec![inbox.controller_owner_ref(&())?]),
        ..Default::default()
    };
    let role = ClusterRole {
        metadata: meta.clone(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["hitl.dev".into()]),
            resources: Some(vec!["approvalinboxes".into()]),
            resource_names: Some(vec![inbox.name_any()]),
            verbs: vec!["get".into(), "watch".into()],
            ..Default::default()
        }]),
        aggregation_rule: None,
    };
    let subject = Subject {
        kind: inbox.spec.subject.kind.as_str().into(),
        name: inbox.spec.subject.name.clone(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    };
    let binding = ClusterRoleBinding {
        metadata: meta,
        role_ref: RoleRef { api_group: Some("rbac.authorization.k8s.io".into()), kind: "ClusterRole".into(), name },
        subjects: Some(vec![subject]),
    };
    Some((role, binding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::inbox_contents::{group, inbox_name, user};

    #[test]
    fn the_grant_lets_exactly_the_subject_read_exactly_its_inbox() {
        let mut i = ApprovalInbox::new(&inbox_name(&group("legal")), ApprovalInboxSpec { subject: group("legal") });
        assert!(grant(&i).is_none(), "no UID yet: nothing to own the grant");
        i.metadata.uid = Some("uid-1".into());
        let (role, binding) = grant(&i).unwrap();
        let rule = &role.rules.as_ref().unwrap()[0];
        assert_eq!(rule.resources.as_deref(), Some(&["approvalinboxes".to_string()][..]));
        assert_eq!(rule.resource_names.as_deref(), Some(&[inbox_name(&group("legal"))][..]));
        assert_eq!(rule.verbs, ["get", "watch"]);
        let subjects = binding.subjects.unwrap();
        assert_eq!((subjects[0].kind.as_str(), subjects[0].name.as_str()), ("Group", "legal"));
        assert_eq!(subjects.len(), 1);
        assert_eq!(binding.role_ref.name, role.metadata.name.clone().unwrap());
        let owner = &role.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("ApprovalInbox", "uid-1"));
        i.metadata.uid = Some("uid-2".into());
        assert_ne!(grant(&i).unwrap().0.metadata.name, role.metadata.name, "a new inbox, a new grant name");
        let u = ApprovalInbox::new(&inbox_name(&user("legal")), ApprovalInboxSpec { subject: user("legal") });
        assert_ne!(u.name_any(), i.name_any());
    }
}
