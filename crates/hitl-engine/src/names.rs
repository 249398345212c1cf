//! Deterministic names for the objects a Workflow owns, so a retried reconcile finds what an
//! earlier one created instead of creating it twice.

use sha2::{Digest, Sha256};

fn short_hash(s: &str, len: usize) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..len].to_string()
}

/// Finalizer on step Pods: a Pod deleted (evicted, collected, by a person) before the operator
/// recorded its outcome stays until it has, so a finished step is never run again.
pub const FINALIZER_OUTCOME: &str = "hitl.dev/outcome";

/// Shortens `name` to `max` characters, keeping it unique with a hash of the whole.
pub fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = short_hash(name, 8);
    // A name may not end in '-' or '.' before the hash is appended ("a.-hash" is refused).
    let keep = name[..max - 9].trim_end_matches(['-', '.']).to_string();
    format!("{keep}-{hash}")
}

/// A step attempt's Pod: `<workflow>-<step>-<attempt>-<uid hash>`. The hash of the Workflow's UID
/// keeps a re-created Workflow of the same name from adopting the old run's Pods. At most 63
/// characters, so it also works as a hostname.
pub fn pod_name(workflow: &str, uid: &str, step: &str, attempt: i32) -> String {
    fit(&format!("{workflow}-{step}-{attempt}-{}", short_hash(uid, 5)), 63)
}

/// The Pod of one attempt of one item of a `forEach` step:
/// `<workflow>-<step>-<index>-<attempt>-<hash>`, at most 63 characters. The hash covers the UID,
/// step and index, so item 1 of step `a` never takes the name of a plain step `a-1`'s Pod.
pub fn item_pod_name(workflow: &str, uid: &str, step: &str, index: usize, attempt: i32) -> String {
    let hash = short_hash(&format!("{uid}/{step}/{index}"), 5);
    fit(&format!("{workflow}-{step}-{index}-{attempt}-{hash}"), 63)
}

/// The Approval of one item of a `forEach` suspend step: `<workflow>.<step>.<index>`.
pub fn item_approval_name(workflow: &str, step: &str, index: usize) -> String {
    fit(&format!("{workflow}.{step}.{index}"), 253)
}

/// A suspend step's Approval: `<workflow>.<step>`, short enough to type in `kubectl patch`.
/// Workflow and step names are DNS labels (no dots), so the dot keeps every pair apart:
/// `col-x` + `gate` and `col` + `x-gate` would both be `col-x-gate` with a dash.
pub fn approval_name(workflow: &str, step: &str) -> String {
    fit(&format!("{workflow}.{step}"), 253)
}

/// The per-gate Role and RoleBinding of an Approval. The Approval's UID is part of it, so a grant
/// left by an earlier Approval of the same name (a re-created Workflow) is never taken for ours.
pub fn grant_name(approval: &str, approval_uid: &str) -> String {
    fit(&format!("hitl-approve-{approval}-{}", short_hash(approval_uid, 6)), 253)
}

/// The ClusterRole and ClusterRoleBinding that let an inbox's subject read it:
/// `hitl-inbox-<inbox>-<uid hash>`. The hash keeps a re-created inbox from meeting the grant of
/// the one before it, which the garbage collector may not have removed yet.
pub fn inbox_grant_name(inbox: &str, inbox_uid: &str) -> String {
    fit(&format!("hitl-inbox-{inbox}-{}", short_hash(inbox_uid, 6)), 253)
}

/// The run's workspace claim: `<workflow>-workspace-<uid hash>`. The hash keeps a re-created
/// Workflow of the same name from mounting the old run's files.
pub fn workspace_claim_name(workflow: &str, uid: &str) -> String {
    fit(&format!("{workflow}-workspace-{}", short_hash(uid, 5)), 253)
}

/// A label value naming the Workflow (label values are limited to 63 characters).
pub fn workflow_label(workflow: &str) -> String {
    fit(workflow, 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_bounded() {
        let a = pod_name("contract-review", "uid-1", "scan", 1);
        assert_eq!(a, pod_name("contract-review", "uid-1", "scan", 1));
        assert!(a.starts_with("contract-review-scan-1-"));
        assert_ne!(a, pod_name("contract-review", "uid-2", "scan", 1));
        assert_ne!(a, pod_name("contract-review", "uid-1", "scan", 2));
        let long = pod_name(&"w".repeat(200), "uid", &"s".repeat(63), 3);
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, pod_name(&"w".repeat(200), "uid", &"s".repeat(63), 4));
        assert_eq!(approval_name("contract-review", "review"), "contract-review.review");
        assert_ne!(approval_name("col-x", "gate"), approval_name("col", "x-gate"));
        assert_eq!(workflow_label(&"x".repeat(100)).len(), 63);
        assert_ne!(grant_name("w.gate", "uid-1"), grant_name("w.gate", "uid-2"));
        let ws = workspace_claim_name("build", "uid-1");
        assert!(ws.starts_with("build-workspace-") && ws.len() == "build-workspace-".len() + 5, "{ws}");
        assert_ne!(ws, workspace_claim_name("build", "uid-2"));
    }

    #[test]
    fn item_names_are_deterministic_distinct_and_bounded() {
        let a = item_pod_name("wf", "uid-1", "scan", 7, 1);
        assert_eq!(a, item_pod_name("wf", "uid-1", "scan", 7, 1));
        assert!(a.starts_with("wf-scan-7-1-"), "{a}");
        // Item 1 of `a` and a plain step `a-1` spell the same prefix; the hash keeps them apart.
        assert_ne!(item_pod_name("wf", "uid", "a", 1, 2), pod_name("wf", "uid", "a-1", 2));
        assert_ne!(item_pod_name("wf", "uid", "a", 1, 2), item_pod_name("wf", "uid", "a", 12, 2));
        let long: Vec<String> =
            (0..1000).map(|i| item_pod_name(&"w".repeat(63), "uid", &"s".repeat(63), i, 20)).collect();
        assert!(long.iter().all(|n| n.len() <= 63 && !n.contains("--")), "{:?}", &long[..3]);
        let distinct: std::collections::HashSet<&String> = long.iter().collect();
        assert_eq!(distinct.len(), long.len());
        assert_eq!(item_approval_name("review", "account", 3), "review.account.3");
        assert_ne!(item_approval_name("review", "account", 3), approval_name("review", "account"));
    }

    #[test]
    fn a_shortened_name_never_ends_in_a_dot_or_dash_before_its_hash() {
        // Cut at 54 characters: the 54th is a '.' here.
        let name = format!("{}.{}", "a".repeat(53), "b".repeat(20));
        let fitted = fit(&name, 63);
        assert!(fitted.len() <= 63);
        assert!(!fitted.contains(".-") && !fitted.contains("--"), "{fitted}");
    }
}
