//! Per-gate grants: when an Approval lists approvers, a Role and RoleBinding give exactly those
//! users and groups `get` and `patch` on exactly that Approval, so approvers need no standing
//! rights. Both are owned by the Approval and go when it goes.

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::Error;
use super::pods::{LABEL_MANAGED_BY, MANAGER};
use crate::api::Approval;
use crate::engine::names;

/// The Role and RoleBinding for an Approval, or None when it lists no approvers. Pure.
pub fn build(a: &Approval) -> Option<(Role, RoleBinding)> {
    let approvers = a.spec.gate.approvers.clone().filter(|p| !p.is_empty())?;
    grant(a, names::grant_name(&a.name_any(), a.metadata.uid.as_deref()?), &approvers)
}

/// The grant for the escalation approvers, once the gate escalated (`status.escalatedAt`). Pure.
pub fn build_escalated(a: &Approval) -> Option<(Role, RoleBinding)> {
    a.status.as_ref()?.escalated_at.as_ref()?;
    let approvers = a.spec.gate.notify.as_ref()?.escalation.as_ref()?.approvers.clone();
    if approvers.is_empty() {
        return None;
    }
    let name = format!("{}-escalated", names::grant_name(&a.name_any(), a.metadata.uid.as_deref()?));
    grant(a, name, &approvers)
}

fn grant(a: &Approval, name: String, approvers: &crate::api::Approvers) -> Option<(Role, RoleBinding)> {
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: a.namespace(),
        labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGER.to_string())].into()),
        owner_references: Some(vec![a.controller_owner_ref(&())?]),
        ..Default::default()
    };
    let role = Role {
        metadata: meta.clone(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["hitl.dev".into()]),
            resources: Some(vec!["approvals".into()]),
            resource_names: Some(vec![a.name_any()]),
            verbs: vec!["get".into(), "patch".into()],
            ..Default::default()
        }]),
    };
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
    ensure_grant(ctx, a, build_escalated(a)).await
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
        a.spec.gate.approvers = None;
        assert!(build(&a).is_none());
    }
}
