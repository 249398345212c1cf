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
/// The item's index, on the Pods and Approvals of a `forEach` step.
pub const LABEL_ITEM: &str = "hitl.dev/item";
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

/// UID step containers run as unless the step says: non-root, so `runAsNonRoot` holds even for
/// images built to run as root (busybox), as for distroless' `nonroot`.
pub const DEFAULT_UID: i64 = 65532;

/// The step's security context merged over the secure defaults, which pass Pod Security
/// `restricted`: no privilege escalation, all capabilities dropped (what the step adds is kept),
/// the runtime's default seccomp profile, non-root. Each field the step sets wins; the rest stay
/// secure. (Whether a relaxation is allowed at all is the admission policy's to say.)
pub fn secure_context(asked: Option<&SecurityContext>) -> SecurityContext {
    let mut sc = asked.cloned().unwrap_or_default();
    sc.allow_privilege_escalation.get_or_insert(false);
    let caps = sc.capabilities.get_or_insert_with(Capabilities::default);
    let drop = caps.drop.get_or_insert_with(Vec::new);
    if !drop.iter().any(|d| d == "ALL") {
        drop.push("ALL".into());
    }
    sc.seccomp_profile.get_or_insert(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() });
    sc.run_as_non_root.get_or_insert(true);
    if sc.run_as_non_root == Some(true) {
        sc.run_as_user.get_or_insert(DEFAULT_UID);
    }
    sc
}

/// The Pod for one attempt of a container step. Pure: the same inputs give the same Pod.
pub fn build(wf: &Workflow, req: &PodRequest) -> Pod {
    let template = wf.spec.pod_template.clone().unwrap_or_default();
    let step = wf.spec.all_steps().find(|s| s.name == req.step);
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
    if let Some(i) = req.item {
        labels.insert(LABEL_ITEM.into(), i.to_string());
    }
    labels.insert(LABEL_MANAGED_BY.into(), MANAGER.into());

    let c = &req.container;
    let mounts = super::mounts::mounts(wf, c);
    let volumes = super::mounts::volumes(wf, &mounts);
    let container = Container {
        name: "main".into(),
        image: Some(c.image.clone()),
        command: (!c.command.is_empty()).then(|| c.command.clone()),
        args: (!c.args.is_empty()).then(|| c.args.clone()),
        env: (!c.env.is_empty()).then(|| c.env.clone()),
        env_from: (!c.env_from.is_empty()).then(|| c.env_from.clone()),
        // The step's own resources, as a whole, else the Workflow's defaults.
        resources: c.resources.clone().or_else(|| template.default_resources.clone()),
        working_dir: c.working_dir.clone(),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        security_context: Some(secure_context(c.security_context.as_ref())),
        // Outputs come from the termination message alone: never the log, which may hold what the
        // step read from a Secret, since everyone who can read the Workflow reads its status.
        termination_message_policy: Some("File".into()),
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
            automount_service_account_token: Some(c.automount_service_account_token.unwrap_or(false)),
            node_selector: (!template.node_selector.is_empty()).then_some(template.node_selector),
            tolerations: (!template.tolerations.is_empty()).then_some(template.tolerations),
            affinity: step.and_then(|s| s.affinity.clone()).or(template.affinity),
            priority_class_name: template.priority_class_name,
            image_pull_secrets: (!template.image_pull_secrets.is_empty()).then_some(template.image_pull_secrets),
            volumes: (!volumes.is_empty()).then_some(volumes),
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
            item: None,
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
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!((sc.run_as_non_root, sc.run_as_user), (Some(true), Some(DEFAULT_UID)));
        assert_eq!(spec.automount_service_account_token, Some(false), "no API token unless asked");
        assert_eq!(spec.node_selector.as_ref().unwrap()["disk"], "ssd");
        assert_eq!(pod.metadata.finalizers.as_deref(), Some(&["hitl.dev/outcome".to_string()][..]));
    }

    /// A Workflow using every Pod-wide field, with two steps: `build` mounts, `test` does not.
    fn workflow_with_pod_fields() -> Workflow {
        let mut wf = Workflow::new(
            "ci",
            serde_json::from_value::<WorkflowSpec>(serde_json::json!({
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "settings"}},
                    {"name": "db", "secret": {"secretName": "db-password"}},
                    {"name": "cache", "persistentVolumeClaim": {"claimName": "cache", "readOnly": true}},
                    {"name": "tmp", "emptyDir": {"medium": "Memory"}}
                ],
                "workspace": {"volumeClaimTemplate": {"resources": {"requests": {"storage": "1Gi"}}}, "mountPath": "/ws"},
                "podTemplate": {
                    "priorityClassName": "batch-low",
                    "imagePullSecrets": [{"name": "regcred"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}},
                    "defaultResources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
                },
                "steps": [
                    {"name": "build", "container": {"image": "x", "workingDir": "/ws/src", "workspace": true,
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                         {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true, "subPath": "build"}]}},
                    {"name": "test", "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}},
                     "container": {"image": "x", "resources": {"limits": {"cpu": "2"}}}}
                ]
            }))
            .unwrap(),
        );
        wf.metadata.namespace = Some("ns".into());
        wf.metadata.uid = Some("uid-1".into());
        wf
    }

    fn pod_for(wf: &Workflow, step: &str) -> PodSpec {
        let container = wf.spec.steps.iter().find(|s| s.name == step).unwrap().container.clone().unwrap();
        let req =
            PodRequest { name: format!("ci-{step}-1-abcde"), step: step.into(), attempt: 1, item: None, container };
        build(wf, &req).spec.unwrap()
    }

    #[test]
    fn a_pod_has_the_volumes_its_step_mounts_and_no_others() {
        let wf = workflow_with_pod_fields();
        let spec = pod_for(&wf, "build");
        let volumes = spec.volumes.as_ref().unwrap();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["cfg", "tmp", "workspace"], "declaration order, the workspace last; db and cache unused");
        assert_eq!(volumes[0].config_map.as_ref().unwrap().name, "settings");
        assert_eq!(volumes[1].empty_dir.as_ref().unwrap().medium.as_deref(), Some("Memory"));
        let claim = volumes[2].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim.claim_name, names::workspace_claim_name("ci", "uid-1"));
        let c = &spec.containers[0];
        let mounts: Vec<(&str, &str, Option<bool>, Option<&str>)> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only, m.sub_path.as_deref()))
            .collect();
        assert_eq!(
            mounts,
            [
                ("tmp", "/tmp", None, None),
                ("cfg", "/etc/cfg", Some(true), Some("build")),
                ("workspace", "/ws", None, None)
            ]
        );
        assert_eq!(c.working_dir.as_deref(), Some("/ws/src"));
        // A step that mounts nothing gets no volume at all, not even the Secret's.
        let test = pod_for(&wf, "test");
        assert!(test.volumes.is_none() && test.containers[0].volume_mounts.is_none(), "{test:?}");
    }

    #[test]
    fn pod_wide_fields_reach_every_step_pod() {
        let wf = workflow_with_pod_fields();
        for step in ["build", "test"] {
            let spec = pod_for(&wf, step);
            assert_eq!(spec.priority_class_name.as_deref(), Some("batch-low"), "{step}");
            assert_eq!(spec.image_pull_secrets.as_ref().unwrap()[0].name, "regcred", "{step}");
        }
        let key = |spec: &PodSpec| {
            let na = spec.affinity.as_ref().unwrap().node_affinity.as_ref().unwrap();
            let terms = &na.required_during_scheduling_ignored_during_execution.as_ref().unwrap().node_selector_terms;
            terms[0].match_expressions.as_ref().unwrap()[0].key.clone()
        };
        assert_eq!(key(&pod_for(&wf, "build")), "disk", "the Workflow's affinity");
        assert_eq!(key(&pod_for(&wf, "test")), "gpu", "a step's own affinity replaces it");
    }

    #[test]
    fn default_resources_apply_only_to_a_step_that_sets_none() {
        let wf = workflow_with_pod_fields();
        let defaulted = pod_for(&wf, "build").containers[0].resources.clone().unwrap();
        assert_eq!(defaulted.requests.as_ref().unwrap()["cpu"].0, "100m");
        assert_eq!(defaulted.requests.as_ref().unwrap()["memory"].0, "64Mi");
        assert_eq!(defaulted.limits.as_ref().unwrap()["memory"].0, "128Mi");
        let own = pod_for(&wf, "test").containers[0].resources.clone().unwrap();
        assert_eq!(own.limits.as_ref().unwrap()["cpu"].0, "2");
        assert!(own.requests.is_none(), "the step's resources replace the defaults as a whole: {own:?}");
        assert!(!own.limits.unwrap().contains_key("memory"));
    }

    #[test]
    fn a_steps_security_context_is_merged_over_the_defaults() {
        let asked = SecurityContext {
            run_as_user: Some(1000),
            capabilities: Some(Capabilities { add: Some(vec!["NET_BIND_SERVICE".into()]), ..Default::default() }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        };
        let sc = secure_context(Some(&asked));
        assert_eq!(sc.run_as_user, Some(1000), "what the step sets wins");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let caps = sc.capabilities.unwrap();
        assert_eq!(
            (caps.add.unwrap(), caps.drop.unwrap()),
            (vec!["NET_BIND_SERVICE".to_string()], vec!["ALL".to_string()])
        );
        assert_eq!(sc.allow_privilege_escalation, Some(false), "what it leaves out stays secure");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        // A relaxation the namespace allowed is kept as asked.
        let root = SecurityContext { run_as_non_root: Some(false), ..Default::default() };
        let sc = secure_context(Some(&root));
        assert_eq!((sc.run_as_non_root, sc.run_as_user), (Some(false), None));
    }
}
