//! The operator's one watch of step Pods. Its store serves the Workflow controller (a pass reads
//! its running steps' Pods from it) and the outcome controller; its changes are routed by
//! `pod_changes`: a Workflow is woken only by a change of what its plan reads, the
//! outcome controller only by a Pod being deleted while our finalizer holds it.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodStatus};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::Context;
use super::pod_changes::PodChanges;
use super::pods::LABEL_WORKFLOW;
use crate::engine::plan::STUCK_WAITING_REASONS;

/// A stream of Pods to wake a controller with (never an error: the watch retries on its own).
pub type Wakes = mpsc::UnboundedReceiver<Result<Pod, watcher::Error>>;

pub struct StepPods {
    pub store: Store<Pod>,
    /// Pods whose change matters to their Workflow.
    pub for_workflows: Wakes,
    /// Pods being deleted while our finalizer holds them.
    pub held: Wakes,
}

/// Starts the watch (it runs until the process ends) and returns its store and routed changes.
pub fn watch(ctx: &Arc<Context>) -> StepPods {
    let api = super::api_in::<Pod>(&ctx.client, &ctx.config);
    let config = watcher::Config::default().labels(LABEL_WORKFLOW).page_size(200);
    let (store, writer) = reflector::store();
    let events = watcher(api, config).modify(trim_pod).default_backoff();
    let (to_workflows, for_workflows) = mpsc::unbounded();
    let (to_held, held) = mpsc::unbounded();
    tokio::spawn(route(events, writer, to_workflows, to_held));
    let _ = ctx.pods.set(store.clone());
    StepPods { store, for_workflows, held }
}

/// What the plan and the outcome controller read of a step Pod: its identity, owners, finalizers,
/// phase, the containers' terminated states and the waits that never end (an image not there). The rest (spec, managedFields, conditions,
/// addresses) is most of its size, and every running step's Pod is in the cache.
fn trim_pod(pod: &mut Pod) {
    pod.spec = None;
    let meta = &mut pod.metadata;
    (meta.managed_fields, meta.annotations, meta.generate_name, meta.generation) = (None, None, None, None);
    if let Some(status) = pod.status.as_mut() {
        *status = PodStatus {
            phase: status.phase.take(),
            reason: status.reason.take(),
            message: status.message.take(),
            container_statuses: status.container_statuses.take().map(trim_containers),
            init_container_statuses: status.init_container_statuses.take().map(trim_containers),
            ..Default::default()
        };
    }
}

fn trim_containers(all: Vec<ContainerStatus>) -> Vec<ContainerStatus> {
    let stuck = |w: &ContainerStateWaiting| w.reason.as_deref().is_some_and(|r| STUCK_WAITING_REASONS.contains(&r));
    all.into_iter()
        .map(|c| ContainerStatus {
            name: c.name,
            state: c.state.map(|s| ContainerState {
                terminated: s.terminated,
                waiting: s.waiting.filter(stuck),
                running: None,
            }),
            ..Default::default()
        })
        .collect()
}

/// Feeds the store, then wakes: the store has seen every change that wakes a pass.
async fn route(
    events: impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>>,
    mut store: reflector::store::Writer<Pod>,
    to_workflows: mpsc::UnboundedSender<Result<Pod, watcher::Error>>,
    to_held: mpsc::UnboundedSender<Result<Pod, watcher::Error>>,
) {
    let mut changes = PodChanges::default();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "watch of step Pods failed; retrying");
                continue;
            }
        };
        let wake = changes.route(event);
        if let Some(event) = &wake.store {
            store.apply_watcher_event(event);
        }
        for pod in wake.workflows {
            let _ = to_workflows.unbounded_send(Ok(pod));
        }
        for pod in wake.held {
            let _ = to_held.unbounded_send(Ok(pod));
        }
    }
}
