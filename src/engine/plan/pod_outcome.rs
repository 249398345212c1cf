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
        _ => PodOutcome::Active,
    }
}
