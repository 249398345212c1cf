//! What step Pods may mount: a closed set of volume kinds, mounts that name them, and the run-wide
//! workspace. The types have no field for any other kind (`hostPath` and the like cannot be
//! written down), and the API server refuses unknown fields.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, SecretVolumeSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Name of the workspace volume in step Pods, and the name a `volumeMounts` entry uses to mount
/// the workspace (e.g. with a `subPath`). A Workflow with a `workspace` cannot declare a volume of
/// this name.
pub const WORKSPACE_VOLUME: &str = "workspace";

/// Where `workspace: true` mounts the workspace unless `spec.workspace.mountPath` says otherwise.
pub const DEFAULT_WORKSPACE_PATH: &str = "/workspace";

/// Most volumes a Workflow may declare, and mounts a step container may have.
pub const MAX_VOLUMES: usize = 32;

/// A volume step containers may mount: exactly one of `configMap`, `secret`, `emptyDir`,
/// `persistentVolumeClaim`. No other kind exists here (never `hostPath`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = volume_rules()))]
pub struct Volume {
    /// Volume name: a DNS label, unique in the Workflow; `volumeMounts[].name` refers to it.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// A ConfigMap of the Workflow's namespace, as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// A Secret of the Workflow's namespace, as files (`secretName` is required). Allowed only if
    /// whoever writes the Workflow may `get` that Secret themselves, or the namespace's
    /// WorkflowPolicy lists it in `secretNames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// A scratch directory that lives as long as the step's Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    /// An existing PersistentVolumeClaim of the Workflow's namespace. Allowed only if whoever
    /// writes the Workflow may `get` that claim themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

fn volume_rules() -> Value {
    json!([
        {
            "rule": "(has(self.configMap) ? 1 : 0) + (has(self.secret) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) + (has(self.persistentVolumeClaim) ? 1 : 0) == 1",
            "messageExpression": "'volume ' + self.name + ': set exactly one of configMap, secret, emptyDir or persistentVolumeClaim (no other kind of volume is allowed)'",
        },
        {
            "rule": "!has(self.secret) || (has(self.secret.secretName) && self.secret.secretName != '')",
            "messageExpression": "'volume ' + self.name + ': secret.secretName is required'",
            "fieldPath": ".secret",
        },
    ])
}

/// Where a step container mounts a volume: a lean subset of the core/v1 VolumeMount.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = mount_rules()))]
pub struct VolumeMount {
    /// A volume in `spec.volumes`, or `workspace` for the run's workspace (`spec.workspace`).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Absolute path in the container.
    #[schemars(length(min = 1, max = 1024))]
    pub mount_path: String,
    /// Mount read-only. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Mount only this path inside the volume: relative, without `..`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub sub_path: Option<String>,
}

fn mount_rules() -> Value {
    json!([
        {
            "rule": "self.mountPath.startsWith('/')",
            "messageExpression": "'volume mount ' + self.name + ': mountPath must be an absolute path, not \"' + self.mountPath + '\"'",
            "fieldPath": ".mountPath",
        },
        {
            "rule": "!has(self.subPath) || (!self.subPath.contains('..') && !self.subPath.startsWith('/'))",
            "messageExpression": "'volume mount ' + self.name + ': subPath must be a relative path without \"..\", not \"' + self.subPath + '\"'",
            "fieldPath": ".subPath",
        },
    ])
}

/// A run-wide workspace: one PersistentVolumeClaim created from `volumeClaimTemplate` when the run
/// starts (before its first Pod), named `<workflow>-workspace-<hash of the Workflow's UID>` and
/// recorded in `status.workspaceClaimName`, owned by the Workflow so it is deleted with it. Steps
/// that set `container.workspace: true` mount it at `mountPath`, so they hand files to each other.
/// Creating a Workflow with a workspace requires the right to create PersistentVolumeClaims in its
/// namespace. With ReadWriteOnce storage, steps that run at the same time must share a node.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// The claim to create.
    pub volume_claim_template: WorkspaceClaimTemplate,
    /// Where `container.workspace: true` mounts it. Default `/workspace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub mount_path: Option<String>,
}

/// The PersistentVolumeClaim a workspace is made from: a lean subset of its spec (no
/// `dataSource`, `selector` or `volumeName`, which would reach other claims and volumes).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceClaimTemplate {
    /// Access modes, e.g. `[ReadWriteOnce]` (the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 4), inner(length(max = 32)))]
    pub access_modes: Vec<String>,
    /// How much storage to request.
    pub resources: WorkspaceResources,
    /// StorageClass of the claim. Unset: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

/// The workspace claim's resources.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceResources {
    /// `storage`: the size to request, e.g. `1Gi`.
    pub requests: StorageRequest,
}

/// A storage request.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageRequest {
    /// Size of the claim, e.g. `1Gi`.
    pub storage: Quantity,
}

impl WorkspaceClaimTemplate {
    /// The claim's requests as a PersistentVolumeClaim spec carries them.
    pub fn requests(&self) -> BTreeMap<String, Quantity> {
        [("storage".to_string(), self.resources.requests.storage.clone())].into()
    }
}
