//! Per-gate grants: when an Approval lists approvers, a Role and RoleBinding give exactly those
//! users and groups `get` and `patch` on exactly that Approval, so approvers need no standing
//! rights. Both are owned by the Approval and go when it goes. A gate that shows logs as evidence
//! also gives them `get` on exactly those Pods' logs, in a Role of its own that goes as soon as
//! the gate is decided.

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::Error;
use super::pods::{LABEL_MANAGED_BY, MANAGER};
use crate::api::Approval;
use crate::engine::names;

/// The Role and RoleBinding for an Approval, or None when it lists no approvers. Pure.
pub fn build(a: &Approval) -> Option<(Role, RoleBinding)> {
    let approvers = a.spec.gate.approvers.clone().filter(|p| !p.is_empty())?;
    grant(a, names::grant_name(&a.name_any(), a.metadata.uid.as_deref()?), &approvers, approval_rule(a))
}

/// The grant for the escalation approvers, once the gate escalated (`status.escalatedAt`). Pure.
pub fn build_escalated(a: &Approval) -> Option<(Role, RoleBinding)> {
    let approvers = escalation_approvers(a)?;
    let name = format!("{}-escalated", names::grant_name(&a.name_any(), a.metadata.uid.as_deref()?));
    grant(a, name, &approvers, approval_rule(a))
}

/// The evidence grant: the gate's approvers may `get` the logs of exactly its evidence Pods.
/// None when it shows no logs or lists nobody (then the person's own rights decide). Pure.
pub fn build_evidence(a: &Approval) -> Option<(Role, RoleBinding)> {
    let approvers = a.spec.gate.approvers.clone().filter(|p| !p.is_empty())?;
    grant(a, evidence_grant_name(a, "")?, &approvers, log_rule(a)?)
}

/// The evidence grant of the escalation approvers, once the gate escalated. Pure.
pub fn build_escalated_evidence(a: &Approval) -> Option<(Role, RoleBinding)> {
    let approvers = escalation_approvers(a)?;
    grant(a, evidence_grant_name(a, "-escalated")?, &approvers, log_rule(a)?)
}

fn evidence_grant_name(a: &Approval, suffix: &str) -> Option<String> {
    Some(format!("{}{suffix}-evidence", names::grant_name(&a.name_any(), a.metadata.uid.as_deref()?)))
}

fn escalation_approvers(a: &Approval) -> Option<crate::api::Approvers> {
    a.status.as_ref()?.escalated_at.as_ref()?;
    let approvers = a.spec.gate.notify.as_ref()?.escalation.as_ref()?.approvers.clone();
    (!approvers.is_empty()).then_some(approvers)
}

fn approval_rule(a: &Approval) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec!["hitl.dev".into()]),
        resources: Some(vec!["approvals".into()]),
        resource_names: Some(vec![a.name_any()]),
        verbs: vec!["get".into(), "patch".into()],
        ..Default::default()
    }
}

fn log_rule(a: &Approval) -> Option<PolicyRule> {
    let pods: Vec<String> = a.spec.evidence_pods.iter().filter_map(|e| e.pod.clone()).collect();
    (!pods.is_empty()).then(|| PolicyRule {
        api_groups: Some(vec!["".into()]),
        resources: Some(vec!["pods/log".into()]),
        resource_names: Some(pods),
        verbs: vec!["get".into()],
        ..Default::default()
    })
}

fn grant(
    a: &Approval,
    name: String,
    approvers: &crate::api::Approvers,
    rule: PolicyRule,
) -> Option<(Role, RoleBinding)> {
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: a.namespace(),
        labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGER.to_string())].into()),
        owner_references: Some(vec![a.controller_owner_ref(&())?]),
        ..Default::default()
    };
    let role = Role { metadata: meta.clone(), rules: Some(vec![rule]) };
    let subject = |kind: &str, name: &str| Subject {
        kind: kind.into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    };
    let subjects = approvers
        .users
        .iter()
        .map(|u| subject("User", u))
        .chain(approvers.groups.iter().map(|g| subject("Group", g)))
        .collect();
    let binding = RoleBinding {
        metadata: meta,
        role_ref: RoleRef { api_group: Some("rbac.authorization.k8s.io".into()), kind: "Role".into(), name },
        subjects: Some(subjects),
    };
    Some((role, binding))
}

/// Creates the grant unless it exists. An existing Role or RoleBinding of that name counts only if
/// this Approval owns it and it grants exactly what `build` would: anything else is reported,
/// never used.
pub async fn ensure(ctx: &super::Context, a: &Approval) -> Result<(), Error> {
    ensure_grant(ctx, a, build(a)).await
}

/// Grants the escalation approvers, once the gate escalated.
pub async fn ensure_escalated(ctx: &super::Context, a: &Approval) -> Result<(), Error> {
    ensure_grant(ctx, a, build_escalated(a)).await?;
    ensure_grant(ctx, a, build_escalated_evidence(a)).await
}

/// Lets the gate's approvers read its evidence logs while it waits.
pub async fn ensure_evidence(ctx: &super::Context, a: &Approval) -> Result<(), Error> {
    ensure_grant(ctx, a, build_evidence(a)).await
}

/// Takes the evidence logs back once the gate is decided, expired or cancelled. Deleting what
/// is already gone is fine, so this is safe to repeat.
pub async fn revoke_evidence(ctx: &super::Context, a: &Approval) -> Result<(), Error> {
    let uid = a.uid().unwrap_or_default();
    if log_rule(a).is_none() || ctx.evidence_revoked(&uid) {
        return Ok(());
    }
    let ns = a.namespace().unwrap_or_default();
    let roles: Api<Role> = Api::namespaced(ctx.client.clone(), &ns);
    let bindings: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
    for suffix in ["", "-escalated"] {
        let Some(name) = evidence_grant_name(a, suffix) else { return Ok(()) };
        ctx.metrics.write("delete_rolebinding");
        gone(bindings.delete(&name, &DeleteParams::default()).await)?;
        ctx.metrics.write("delete_role");
        gone(roles.delete(&name, &DeleteParams::default()).await)?;
    }
    ctx.revoked_evidence(&uid);
    Ok(())
}

fn gone<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

async fn ensure_grant(ctx: &super::Context, a: &Approval, grant: Option<(Role, RoleBinding)>) -> Result<(), Error> {
    let Some((role, binding)) = grant else { return Ok(()) };
    let ns = a.namespace().unwrap_or_default();
    let roles: Api<Role> = Api::namespaced(ctx.client.clone(), &ns);
    let bindings: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.metrics.write("create_role");
    create_exact(&roles, &role, |r: &Role| r.rules == role.rules).await?;
    ctx.metrics.write("create_rolebinding");
    create_exact(&bindings, &binding, |b: &RoleBinding| {
        b.role_ref == binding.role_ref && b.subjects == binding.subjects
    })
    .await
}

pub(super) async fn create_exact<K>(api: &Api<K>, want: &K, same_grant: impl Fn(&K) -> bool) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    match api.create(&pp, want).await {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(Error::Create(e)),
    }
    let existing = api.get(&want.name_any()).await.map_err(Error::Kube)?;
    let owner = want.meta().owner_references.as_ref().and_then(|o| o.first()).map(|o| o.uid.clone());
    let owned = existing.meta().owner_references.iter().flatten().any(|o| Some(&o.uid) == owner.as_ref());
    if owned && same_grant(&existing) {
        Ok(())
    } else {
        Err(Error::NotOwned(format!(
            "{} {} exists but is not this gate's grant; its approvers get no rights through it",
            K::kind(&()),
            want.name_any()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApprovalSpec, Approvers};

    #[test]
    fn grants_exactly_one_approval_to_exactly_the_approvers() {
        let mut a = Approval::new(
            "wf-review",
            ApprovalSpec {
                gate: crate::api::Gate {
                    approvers: Some(Approvers { users: vec!["alice".into()], groups: vec!["legal".into()] }),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        a.metadata.namespace = Some("ns".into());
        a.metadata.uid = Some("uid".into());
        let (role, binding) = build(&a).unwrap();
        let rule = &role.rules.unwrap()[0];
        assert_eq!(rule.resource_names.as_deref(), Some(&["wf-review".to_string()][..]));
        assert_eq!(rule.verbs, ["get", "patch"]);
        let subjects = binding.subjects.unwrap();
        assert_eq!(
            subjects.iter().map(|s| (s.kind.as_str(), s.name.as_str())).collect::<Vec<_>>(),
            [("User", "alice"), ("Group", "legal")]
        );
        assert_eq!(role.metadata.owner_references.unwrap()[0].uid, "uid");
        assert!(role.metadata.name.unwrap().starts_with("hitl-approve-wf-review-"));
        assert!(build_evidence(&a).is_none(), "no evidence logs, no log grant");
        a.spec.evidence_pods = vec![crate::api::approval::EvidencePod {
            step: "plan".into(),
            pod: Some("wf-plan-1-abc".into()),
            ..Default::default()
        }];
        let (role, binding) = build_evidence(&a).unwrap();
        let rule = &role.rules.unwrap()[0];
        assert_eq!(rule.resources.as_deref(), Some(&["pods/log".to_string()][..]));
        assert_eq!(rule.resource_names.as_deref(), Some(&["wf-plan-1-abc".to_string()][..]));
        assert_eq!(rule.verbs, ["get"]);
        assert!(role.metadata.name.unwrap().ends_with("-evidence"));
        assert_eq!(binding.subjects.unwrap().len(), 2);
        a.spec.gate.approvers = None;
        assert!(build(&a).is_none());
        assert!(build_evidence(&a).is_none(), "nobody listed: their own rights decide");
    }
}
