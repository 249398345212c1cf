//! The run's workspace: one PersistentVolumeClaim per run, owned by the Workflow (so the garbage
//! collector deletes it with the run), created before the run's first Pod.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::pods::{LABEL_MANAGED_BY, LABEL_WORKFLOW, MANAGER};
use crate::api::Workflow;
use crate::engine::names;

/// The claim `name` for `wf`'s workspace, or None when the Workflow has none. Pure.
pub fn claim(wf: &Workflow, name: &str) -> Option<PersistentVolumeClaim> {
    let template = &wf.spec.workspace.as_ref()?.volume_claim_template;
    let access_modes =
        if template.access_modes.is_empty() { vec!["ReadWriteOnce".into()] } else { template.access_modes.clone() };
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: wf.namespace(),
            labels: Some(
                [
                    (LABEL_WORKFLOW.to_string(), names::workflow_label(&wf.name_any())),
                    (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![wf.controller_owner_ref(&()).expect("Workflow has a name and uid")]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(access_modes),
            resources: Some(VolumeResourceRequirements { requests: Some(template.requests()), limits: None }),
            storage_class_name: template.storage_class_name.clone(),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WorkflowSpec;

    #[test]
    fn the_claim_follows_the_template_and_belongs_to_the_run() {
        let mut wf = Workflow::new(
            "build",
            serde_json::from_value::<WorkflowSpec>(serde_json::json!({
                "workspace": {"volumeClaimTemplate": {"resources": {"requests": {"storage": "2Gi"}},
                                                      "storageClassName": "fast"}},
                "steps": [{"name": "s", "container": {"image": "x"}}]
            }))
            .unwrap(),
        );
        wf.metadata.namespace = Some("ns".into());
        wf.metadata.uid = Some("uid-1".into());
        let pvc = claim(&wf, "build-workspace-abcde").unwrap();
        assert_eq!(pvc.metadata.name.as_deref(), Some("build-workspace-abcde"));
        assert_eq!(pvc.metadata.namespace.as_deref(), Some("ns"));
        let owner = &pvc.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Workflow", "uid-1", Some(true)));
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]), "the default access mode");
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "2Gi");
        assert!(spec.volume_name.is_none() && spec.data_source.is_none() && spec.selector.is_none());
        wf.spec.workspace = None;
        assert!(claim(&wf, "x").is_none());
    }
}
