//! Gauges counted from the controllers' own watches at each scrape: Workflows and Approvals by
//! namespace and phase, pending Approvals, and the nearest deadline of a pending one. Derived
//! from what the API server holds, they are right after a restart too and never drift like
//! gauges kept by increments.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::api::{Approval, ApprovalPhase, Workflow, WorkflowPhase};

const WORKFLOW_PHASES: [WorkflowPhase; 5] = [
    WorkflowPhase::Pending,
    WorkflowPhase::Running,
    WorkflowPhase::Waiting,
    WorkflowPhase::Succeeded,
    WorkflowPhase::Failed,
];

const APPROVAL_PHASES: [ApprovalPhase; 5] = [
    ApprovalPhase::Pending,
    ApprovalPhase::Approved,
    ApprovalPhase::Rejected,
    ApprovalPhase::Expired,
    ApprovalPhase::Cancelled,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabel {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    namespace: String,
    phase: String,
}

/// The watches' stores, one per watched namespace (or one for all), registered as they start.
#[derive(Clone, Debug, Default)]
pub struct Stores {
    workflows: Arc<Mutex<Vec<Store<Workflow>>>>,
    approvals: Arc<Mutex<Vec<Store<Approval>>>>,
}

impl Stores {
    pub fn add_workflows(&self, store: Store<Workflow>) {
        self.workflows.lock().expect("lock").push(store);
    }

    pub fn add_approvals(&self, store: Store<Approval>) {
        self.approvals.lock().expect("lock").push(store);
    }
}

/// What the gauges show, from a snapshot of the objects.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    /// (namespace, phase) -> Workflows; every phase of a namespace that has any, zeros included.
    pub workflows: BTreeMap<(String, String), i64>,
    pub approvals: BTreeMap<(String, String), i64>,
    /// namespace -> Approvals waiting for a decision, for every namespace that has Approvals.
    pub pending: BTreeMap<String, i64>,
    /// namespace -> the earliest `expiresAt` of a pending Approval, in Unix seconds.
    pub next_expiry: BTreeMap<String, i64>,
}

fn namespace_of<K: kube::Resource>(obj: &K) -> String {
    obj.meta().namespace.clone().unwrap_or_default()
}

/// Counts the objects. A Workflow without a status yet is Pending, and so is such an Approval.
pub fn count<'a>(
    workflows: impl Iterator<Item = &'a Workflow>,
    approvals: impl Iterator<Item = &'a Approval>,
) -> Counts {
    let mut c = Counts::default();
    for wf in workflows {
        let ns = namespace_of(wf);
        for p in WORKFLOW_PHASES {
            c.workflows.entry((ns.clone(), format!("{p:?}"))).or_default();
        }
        let phase = wf.status.as_ref().and_then(|s| s.phase).unwrap_or(WorkflowPhase::Pending);
        *c.workflows.entry((ns, format!("{phase:?}"))).or_default() += 1;
    }
    for a in approvals {
        let ns = namespace_of(a);
        for p in APPROVAL_PHASES {
            c.approvals.entry((ns.clone(), format!("{p:?}"))).or_default();
        }
        let status = a.status.as_ref();
        let phase = status.and_then(|s| s.phase).unwrap_or(ApprovalPhase::Pending);
        *c.approvals.entry((ns.clone(), format!("{phase:?}"))).or_default() += 1;
        let pending = c.pending.entry(ns.clone()).or_default();
        if phase == ApprovalPhase::Pending {
            *pending += 1;
            if let Some(at) = status.and_then(|s| s.expires_at.as_ref()) {
                let secs = at.0.as_second();
                c.next_expiry.entry(ns).and_modify(|e| *e = (*e).min(secs)).or_insert(secs);
            }
        }
    }
    c
}

impl Collector for Stores {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let workflows: Vec<Arc<Workflow>> =
            self.workflows.lock().expect("lock").iter().flat_map(|s| s.state()).collect();
        let approvals: Vec<Arc<Approval>> =
            self.approvals.lock().expect("lock").iter().flat_map(|s| s.state()).collect();
        let c = count(workflows.iter().map(|w| w.as_ref()), approvals.iter().map(|a| a.as_ref()));
        let phases = |m: BTreeMap<(String, String), i64>| {
            m.into_iter().map(|((namespace, phase), n)| (PhaseLabels { namespace, phase }, n)).collect::<Vec<_>>()
        };
        let by_namespace =
            |m: BTreeMap<String, i64>| m.into_iter().map(|(namespace, n)| (NamespaceLabel { namespace }, n)).collect();
        gauge(&mut encoder, "workflows", "Workflows by namespace and phase", phases(c.workflows))?;
        gauge(&mut encoder, "approvals", "Approvals by namespace and phase", phases(c.approvals))?;
        gauge(
            &mut encoder,
            "approvals_pending",
            "Approvals waiting for a decision, by namespace",
            by_namespace(c.pending),
        )?;
        gauge(
            &mut encoder,
            "approval_next_expiry_timestamp_seconds",
            "When the first pending Approval of the namespace expires (Unix seconds)",
            by_namespace(c.next_expiry),
        )
    }
}

fn gauge<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, n) in series {
        ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workflow(ns: &str, phase: Option<&str>) -> Workflow {
        let mut w = json!({"apiVersion": "hitl.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "w", "namespace": ns}, "spec": {"steps": [{"name": "a", "sleep": "1s"}]}});
        if let Some(p) = phase {
            w["status"] = json!({"phase": p});
        }
        serde_json::from_value(w).unwrap()
    }

    fn approval(ns: &str, phase: Option<&str>, expires: Option<&str>) -> Approval {
        let mut a = json!({"apiVersion": "hitl.dev/v1alpha1", "kind": "Approval",
            "metadata": {"name": "a", "namespace": ns},
            "spec": {"workflowRef": {"name": "w", "uid": "u"}, "step": "s"}});
        if let Some(p) = phase {
            a["status"] = json!({"phase": p});
            if let Some(e) = expires {
                a["status"]["expiresAt"] = json!(e);
            }
        }
        serde_json::from_value(a).unwrap()
    }

    #[test]
    fn counts_by_namespace_and_phase_with_zeros_and_the_nearest_expiry() {
        let wfs = [workflow("a", Some("Running")), workflow("a", None), workflow("b", Some("Succeeded"))];
        let aps = [
            approval("a", Some("Pending"), Some("2030-01-01T00:01:40Z")),
            approval("a", Some("Pending"), Some("2030-01-01T00:00:10Z")),
            approval("a", None, None),
            approval("b", Some("Approved"), Some("2030-01-01T00:00:01Z")),
        ];
        let c = count(wfs.iter(), aps.iter());
        let key = |ns: &str, p: &str| (ns.to_string(), p.to_string());
        assert_eq!(c.workflows[&key("a", "Running")], 1);
        assert_eq!(c.workflows[&key("a", "Pending")], 1, "no status yet counts as Pending");
        assert_eq!(c.workflows[&key("a", "Failed")], 0, "every phase of a namespace is there, at zero");
        assert_eq!(c.workflows[&key("b", "Succeeded")], 1);
        assert_eq!(c.approvals[&key("a", "Pending")], 3);
        assert_eq!(c.approvals[&key("b", "Approved")], 1);
        assert_eq!(c.approvals[&key("b", "Cancelled")], 0);
        assert_eq!(c.pending, [("a".to_string(), 3), ("b".to_string(), 0)].into());
        let expected: jiff::Timestamp = "2030-01-01T00:00:10Z".parse().unwrap();
        assert_eq!(c.next_expiry, [("a".to_string(), expected.as_second())].into(), "decided gates do not count");
    }
}
