//! The volumes of a step Pod and the mounts of its container: only what the step mounts, so a
//! step that does not mount a Secret's volume has no such volume in its Pod.

use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume as PodVolume, VolumeMount as PodMount};
use kube::ResourceExt;

use crate::api::volumes::{DEFAULT_WORKSPACE_PATH, WORKSPACE_VOLUME};
use crate::api::{StepContainer, Volume, Workflow};
use crate::engine::names;

/// The container's mounts: its `volumeMounts`, then the workspace if it sets `workspace: true`.
pub fn mounts(wf: &Workflow, c: &StepContainer) -> Vec<PodMount> {
    let mut out: Vec<PodMount> = c
        .volume_mounts
        .iter()
        .map(|m| PodMount {
            name: m.name.clone(),
            mount_path: m.mount_path.clone(),
            read_only: m.read_only,
            sub_path: m.sub_path.clone(),
            ..Default::default()
        })
        .collect();
    if let Some(ws) = wf.spec.workspace.as_ref().filter(|_| c.workspace) {
        let path = ws.mount_path.clone().unwrap_or_else(|| DEFAULT_WORKSPACE_PATH.into());
        out.push(PodMount { name: WORKSPACE_VOLUME.into(), mount_path: path, ..Default::default() });
    }
    out
}

/// The Pod's volumes: each declared volume the container mounts, once, in declaration order, and
/// the workspace claim if it mounts that.
pub fn volumes(wf: &Workflow, mounts: &[PodMount]) -> Vec<PodVolume> {
    let mounted = |name: &str| mounts.iter().any(|m| m.name == name);
    let mut out: Vec<PodVolume> = wf.spec.volumes.iter().filter(|v| mounted(&v.name)).map(pod_volume).collect();
    if wf.spec.workspace.is_some() && mounted(WORKSPACE_VOLUME) {
        out.push(PodVolume {
            name: WORKSPACE_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::workspace_claim_name(&wf.name_any(), &wf.uid().unwrap_or_default()),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    out
}

/// A declared volume as the Pod carries it: the four kinds a Workflow can declare, nothing else.
fn pod_volume(v: &Volume) -> PodVolume {
    PodVolume {
        name: v.name.clone(),
        config_map: v.config_map.clone(),
        secret: v.secret.clone(),
        empty_dir: v.empty_dir.clone(),
        persistent_volume_claim: v.persistent_volume_claim.clone(),
        ..Default::default()
    }
}
