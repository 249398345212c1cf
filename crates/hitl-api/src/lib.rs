//! The CRD types: the contract users write against.
// kube-derive repeats `type_` once per printcolumn, which this lint misreads as a mistake.
#![allow(clippy::duplicated_attributes)]
pub mod approval;
pub mod approval_inbox;
pub mod cron;
pub mod notify;
pub mod policy;
pub mod shared;
pub mod template;
mod validation;
pub mod volumes;
pub mod workflow;

pub use approval::{Approval, ApprovalPhase, ApprovalSpec, ApprovalStatus, Decision, GateField, Vote, WorkflowRef};
pub use approval_inbox::{
    ApprovalInbox, ApprovalInboxSpec, ApprovalInboxStatus, InboxItem, InboxSubject, LeftOut, SubjectKind,
};
pub use cron::{ConcurrencyPolicy, CronWorkflow, CronWorkflowSpec, CronWorkflowStatus};
pub use notify::{NotificationChannel, NotificationEvent, NotifySpec};
pub use policy::{SelfApproval, WorkflowPolicy, WorkflowPolicySpec};
pub use shared::{Approvers, Evidence, Gate, InputSpec, InputType, OnTimeout, RejectWhen};
pub use template::{ParameterSpec, ResolvedTemplate, WorkflowTemplate, WorkflowTemplateRef, WorkflowTemplateSpec};
pub use volumes::{Volume, VolumeMount, Workspace};
pub use workflow::{
    ANNOTATION_CREATED_BY, ForEach, ItemStatus, Step, StepContainer, StepKind, StepPhase, StepStatus, SuspendStep,
    Workflow, WorkflowPhase, WorkflowSpec, WorkflowStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRDs as installed: derived schemas plus the rules that need the whole object.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        validation::with_root_rules(Workflow::crd()),
        Approval::crd(),
        WorkflowPolicy::crd(),
        NotificationChannel::crd(),
        ApprovalInbox::crd(),
        WorkflowTemplate::crd(),
        validation::with_cron_rules(CronWorkflow::crd()),
    ]
}

/// The CRDs as one multi-document YAML stream (the content of `crds/`).
pub fn crds_yaml() -> String {
    crds().iter().map(|crd| serde_yaml::to_string(crd).expect("CRDs serialize")).collect::<Vec<_>>().join("---\n")
}

#[cfg(test)]
mod tests {
    /// `crds/` is generated; this fails when the Rust types changed and `make crds` was not run.
    #[test]
    fn committed_crds_are_current() {
        let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/hitl.dev.yaml"))
            .expect("crds/hitl.dev.yaml exists");
        assert!(committed == super::crds_yaml(), "crds/hitl.dev.yaml is stale: run `make crds` and commit it");
    }
}
