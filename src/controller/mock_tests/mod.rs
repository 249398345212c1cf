//! The controller's side effects, in order, against a scripted API server instead of a cluster
//! (#25.6): which requests a pass sends, in which order, and what a refusal does to the rest.
//! The fixtures are the objects an earlier pass left, built with the engine's own plan.

mod approval_pass;
mod cached_reads;
mod decision_first;
mod event_series;
mod mock_api;
mod notify_pass;
mod settled_passes;
mod workflow_pass;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus};
use kube::Client;
use tokio::sync::mpsc;

use super::{Config, Context, notify, pods};
use crate::api::{Approval, Gate, Step, StepContainer, SuspendStep, Workflow, WorkflowSpec};
use crate::engine::plan::{self, Plan, PodRequest};

pub const PODS: &str = "/api/v1/namespaces/ns/pods";
pub const WORKFLOWS: &str = "/apis/hitl.dev/v1alpha1/namespaces/ns/workflows";
pub const APPROVALS: &str = "/apis/hitl.dev/v1alpha1/namespaces/ns/approvals";
pub const POLICIES: &str = "/apis/hitl.dev/v1alpha1/namespaces/ns/workflowpolicies";
pub const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles";
pub const BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings";

/// The operator's context over `client`, set up as the chart sets it (per-gate grants on), and
/// the queue its notifier fills.
fn context(client: Client) -> (Arc<Context>, mpsc::Receiver<notify::Job>) {
    let config = Config {
        namespaces: vec![],
        namespace: None,
        concurrency: 1,
        per_gate_grants: true,
        inboxes: false,
        notify_timeout: Duration::from_secs(1),
        notify_workers: 1,
        notify_ranges: Default::default(),
        archive: None,
    };
    // The channel watch is never driven: no NotificationChannel is known.
    let (notifier, jobs, _channel_watch) = notify::Notifier::new(&client, &config);
    let events = Arc::new(crate::controller::events::Events::new(client.clone(), "hitl-operator", None));
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let unsynced = Arc::new(AtomicUsize::new(0));
    let ctx =
        Context::new(client, config, metrics, notifier, unsynced, "system:serviceaccount:hitl:operator".into(), events);
    (ctx, jobs)
}

/// Workflow `wf` in namespace `ns`, as stored.
fn workflow(steps: Vec<Step>) -> Workflow {
    let mut wf = Workflow::new("wf", WorkflowSpec { steps, ..Default::default() });
    wf.metadata.namespace = Some("ns".into());
    wf.metadata.uid = Some("wf-uid".into());
    wf.metadata.generation = Some(1);
    wf.metadata.resource_version = Some("1".into());
    wf
}

fn container(name: &str) -> Step {
    let container = StepContainer { image: "busybox".into(), ..Default::default() };
    Step { name: name.into(), container: Some(container), ..Default::default() }
}

fn suspend(name: &str, gate: Gate) -> Step {
    Step { name: name.into(), suspend: Some(SuspendStep { message: None, gate }), ..Default::default() }
}

/// An earlier pass as the controller records it: the plan's status stored on `wf`.
fn passed(wf: &mut Workflow, pods: &[Pod], approvals: &[Approval]) -> Plan {
    let plan = plan::plan(wf, pods, approvals, Timestamp::now());
    wf.status = Some(plan.status.clone());
    plan
}

/// The Pod the controller creates for `req`, as the kubelet leaves it once its container exited 0.
fn succeeded(wf: &Workflow, req: &PodRequest) -> Pod {
    let mut pod = pods::build(wf, req);
    pod.metadata.resource_version = Some("2".into());
    let exited = ContainerStateTerminated { exit_code: 0, reason: Some("Completed".into()), ..Default::default() };
    pod.status = Some(PodStatus {
        phase: Some("Succeeded".into()),
        container_statuses: Some(vec![ContainerStatus {
            name: "main".into(),
            state: Some(ContainerState { terminated: Some(exited), ..Default::default() }),
            ..Default::default()
        }]),
        ..Default::default()
    });
    pod
}
