//! What became of a step attempt's Pod, and the digest of it that routes Pod changes.

use k8s_openapi::api::core::v1::Pod;

/// What happened to a step attempt's Pod.
#[derive(Hash)]
pub(super) enum PodOutcome {
    /// Not finished (or not yet seen by the API server's list).
    Active,
    Succeeded {
        message: String,
    },
    Failed {
        reason: String,
        message: String,
        exit_code: Option<i32>,
    },
    /// Gone, or being deleted, before it finished.
    Vanished,
    /// Not started, and waiting cannot start it: its image is not on the node and may not be
    /// pulled, cannot be named, or failed to pull (the kubelet backs off and tries again forever).
    Stuck {
        reason: String,
        message: String,
    },
}

/// Why a container waits that waiting will not end (kubelet reasons). A pull failure counts once
/// the kubelet backs off from it: a registry hiccup is what `retries` are for.
pub const STUCK_WAITING_REASONS: [&str; 3] = ["ErrImageNeverPull", "InvalidImageName", "ImagePullBackOff"];

/// The first container that waits for good, as (reason, message).
fn stuck_container(status: Option<&k8s_openapi::api::core::v1::PodStatus>) -> Option<(String, String)> {
    let mut containers = status?.init_container_statuses.iter().chain(&status?.container_statuses).flatten();
    containers.find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref().filter(|r| STUCK_WAITING_REASONS.contains(r))?;
        let detail = waiting.message.as_deref().unwrap_or("the kubelet gave no message");
        Some((reason.to_string(), format!("container {}: {reason}: {detail}", c.name)))
    })
}

/// A fingerprint of all a pass reads of a step Pod (its outcome, and whether it is going). A
/// change of the Pod that keeps it cannot change the plan (bound to a node, container started,
/// finalizer released), so it need not wake the Workflow.
pub fn pod_outcome_digest(pod: &Pod) -> u64 {
    digest(&pod_outcome(Some(pod)))
}

/// The fingerprint of a Pod that has not finished and is not being deleted: what a Pod just
/// created looks like.
pub fn active_pod_digest() -> u64 {
    digest(&PodOutcome::Active)
}

fn digest(outcome: &PodOutcome) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    outcome.hash(&mut hasher);
    hasher.finish()
}

pub(super) fn pod_outcome(pod: Option<&Pod>) -> PodOutcome {
    let Some(pod) = pod else {
        return PodOutcome::Vanished;
    };
    let status = pod.status.as_ref();
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let message = terminated.and_then(|t| t.message.clone()).unwrap_or_default();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => PodOutcome::Succeeded { message },
        Some("Failed") => {
            let exit = terminated.map(|t| t.exit_code);
            let reason = terminated
                .and_then(|t| t.reason.clone())
                .or_else(|| status.and_then(|s| s.reason.clone()))
                .unwrap_or_else(|| "Error".into());
            let detail = match (exit, message.trim()) {
                (Some(code), "") => format!("exit code {code}"),
                (Some(code), m) => format!("exit code {code}: {m}"),
                (None, m) => m.to_string(),
            };
            PodOutcome::Failed { reason, message: detail, exit_code: exit }
        }
        _ if pod.metadata.deletion_timestamp.is_some() => PodOutcome::Vanished,
        _ => match stuck_container(status) {
            Some((reason, message)) => PodOutcome::Stuck { reason, message },
            None => PodOutcome::Active,
        },
    }
}
