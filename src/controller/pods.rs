//! Step Pods: a pure builder.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Capabilities, Container, Pod, PodSpec, SeccompProfile, SecurityContext};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::Workflow;
use crate::engine::names;
use crate::engine::plan::PodRequest;

pub const LABEL_WORKFLOW: &str = "hitl.dev/workflow";
pub const LABEL_STEP: &str = "hitl.dev/step";
pub const LABEL_ATTEMPT: &str = "hitl.dev/attempt";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "hitl-operator";

/// Removes the outcome finalizer from a step Pod (once its outcome is recorded, or its Workflow is
/// gone). Guarded by the resourceVersion read, so a concurrent change is not overwritten.
pub async fn release(api: &kube::Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let kept: Vec<String> =
        pod.metadata.finalizers.iter().flatten().filter(|f| *f != names::FINALIZER_OUTCOME).cloned().collect();
    let patch = serde_json::json!({"metadata": {"finalizers": kept, "resourceVersion": pod.metadata.resource_version}});
    match api.patch(&pod.name_any(), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// No privilege escalation, no capabilities, the runtime's default seccomp profile.
fn secure_defaults() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// The Pod for one attempt of a container step. Pure: the same inputs give the same Pod.
pub fn build(wf: &Workflow, req: &PodRequest) -> Pod {
    let template = wf.spec.pod_template.clone().unwrap_or_default();
    let step = wf.spec.steps.iter().find(|s| s.name == req.step);
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    for meta in [template.metadata.as_ref(), step.and_then(|s| s.metadata.as_ref())].into_iter().flatten() {
        labels.extend(meta.labels.clone());
        annotations.extend(meta.annotations.clone());
    }
    labels.retain(|k, _| !k.starts_with("hitl.dev/"));
    labels.insert(LABEL_WORKFLOW.into(), names::workflow_label(&wf.name_any()));
    labels.insert(LABEL_STEP.into(), req.step.clone());
    labels.insert(LABEL_ATTEMPT.into(), req.attempt.to_string());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGER.into());

    let c = &req.container;
    let container = Container {
        name: "main".into(),
        image: Some(c.image.clone()),
        command: (!c.command.is_empty()).then(|| c.command.clone()),
        args: (!c.args.is_empty()).then(|| c.args.clone()),
        env: (!c.env.is_empty()).then(|| c.env.clone()),
        env_from: (!c.env_from.is_empty()).then(|| c.env_from.clone()),
        resources: c.resources.clone(),
        working_dir: c.working_dir.clone(),
        security_context: Some(c.security_context.clone().unwrap_or_else(secure_defaults)),
        // Outputs come from the termination message; the log tail explains a crash without one.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(req.name.clone()),
            namespace: wf.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![wf.controller_owner_ref(&()).expect("Workflow has a name and uid")]),
            finalizers: Some(vec![names::FINALIZER_OUTCOME.into()]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: wf.spec.service_account_name.clone(),
            node_selector: (!template.node_selector.is_empty()).then_some(template.node_selector),
            tolerations: (!template.tolerations.is_empty()).then_some(template.tolerations),
            containers: vec![container],
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{StepContainer, WorkflowSpec};

    fn workflow() -> Workflow {
        let mut wf = Workflow::new(
            "wf",
            serde_json::from_value::<WorkflowSpec>(serde_json::json!({
                "serviceAccountName": "reviewer",
                "podTemplate": {"metadata": {"labels": {"team": "legal", "hitl.dev/step": "spoof"}},
                                 "nodeSelector": {"disk": "ssd"}},
                "steps": [{"name": "scan", "metadata": {"annotations": {"sim.hitl.dev/outcome": "Failed"}},
                           "container": {"image": "busybox"}}]
            }))
            .unwrap(),
        );
        wf.metadata.namespace = Some("ns".into());
        wf.metadata.uid = Some("uid-1".into());
        wf
    }

    #[test]
    fn builds_a_secure_owned_pod() {
        let wf = workflow();
        let req = PodRequest {
            name: "wf-scan-1-abcde".into(),
            step: "scan".into(),
            attempt: 1,
            container: StepContainer { image: "busybox".into(), args: vec!["echo".into()], ..Default::default() },
        };
        let pod = build(&wf, &req);
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["hitl.dev/workflow"], "wf");
        assert_eq!(labels["hitl.dev/step"], "scan");
        assert_eq!(labels["hitl.dev/attempt"], "1");
        assert_eq!(labels["team"], "legal");
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()["sim.hitl.dev/outcome"], "Failed");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("uid-1", Some(true)));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.service_account_name.as_deref(), Some("reviewer"));
        let c = &spec.containers[0];
        assert_eq!(c.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(build(&wf, &req), build(&wf, &req));
    }
}
