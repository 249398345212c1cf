//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.
//! Labels are static categories (controller, error category, API write kind), never object names,
//! so their number stays bounded.

mod process;
mod stores;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::error_category::ErrorCategory;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// What was written, e.g. `create_pod`, `workflow_status`, `event`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    /// `webhook`, `slack`, `email` (or `unknown`: the channel was not found).
    pub channel_kind: &'static str,
    /// `requested`, `reminder`, `escalated`, `decided`, `expired`, `cancelled`.
    pub event: &'static str,
    /// `sent` or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `approved`, `rejected`, `expired`, `cancelled`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// `container`, `suspend`, `sleep`.
    pub kind: &'static str,
    /// `Succeeded` or `Failed`.
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArchiveLabels {
    /// `gate`, `run` or `checkpoint`.
    pub kind: &'static str,
    /// `stored`, `already` (stored before: a repeat) or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// How a gate can end; each is a series from the start.
pub const GATE_OUTCOMES: [&str; 4] = ["approved", "rejected", "expired", "cancelled"];
/// Step kinds and the phases a step that ran ends in.
const STEP_KINDS: [&str; 3] = ["container", "suspend", "sleep"];
const STEP_PHASES: [&str; 2] = ["Succeeded", "Failed"];
/// The controllers that reconcile, and those that can fail (the watch counts unreadable objects).
const RECONCILERS: [&str; 2] = ["workflow", "approval"];
const FAILING: [&str; 3] = ["workflow", "approval", "pod"];

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabel, Counter>,
    pub skipped: Family<ControllerLabel, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub writes: Family<WriteLabels, Counter>,
    pub notifications: Family<NotifyLabels, Counter>,
    /// Seconds from a gate's opening to its decision.
    pub decision_seconds: Histogram,
    pub gate_outcomes: Family<OutcomeLabel, Counter>,
    pub step_duration: Family<StepLabels, Histogram>,
    /// 1 while this replica runs the controllers (holds the Lease, or runs without election).
    pub leader: Gauge,
    /// Writes to the decision archive.
    pub archive_records: Family<ArchiveLabels, Counter>,
    /// Objects whose record waits for the archive (its database refused or is away).
    pub archive_backlog: Gauge,
    stores: stores::Stores,
    /// Why /readyz says no, or Ok once the operator can do its work (or stands by).
    readiness: Mutex<Result<(), String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(process::Process));
        let hitl = registry.sub_registry_with_prefix("hitl");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
        });
        let writes = Family::<WriteLabels, Counter>::default();
        hitl.register("reconciles", "Reconciles run", reconciles.clone());
        let skipped = Family::<ControllerLabel, Counter>::default();
        hitl.register(
            "passes_skipped",
            "Passes not run: nothing changed since the operator's own last write",
            skipped.clone(),
        );
        hitl.register("reconcile_failures", "Reconciles that failed, by error category", failures.clone());
        hitl.register("reconcile_duration_seconds", "Time spent in one reconcile", duration.clone());
        hitl.register("api_writes", "Writes this operator made to the API server", writes.clone());
        let notifications = Family::<NotifyLabels, Counter>::default();
        hitl.register(
            "notifications",
            "Notification attempts, by channel kind, event and result",
            notifications.clone(),
        );
        let decision_seconds = Histogram::new([
            1.0,
            10.0,
            60.0,
            300.0,
            900.0,
            3600.0,
            4.0 * 3600.0,
            86_400.0,
            3.0 * 86_400.0,
            7.0 * 86_400.0,
        ]);
        hitl.register(
            "approval_decision_seconds",
            "Seconds from a gate's opening to a person's decision (approved or rejected)",
            decision_seconds.clone(),
        );
        let gate_outcomes = Family::<OutcomeLabel, Counter>::default();
        hitl.register("gate_outcomes", "Gates that ended, by outcome", gate_outcomes.clone());
        let step_duration = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0, 86_400.0])
        });
        hitl.register(
            "step_duration_seconds",
            "Seconds from a step's start to its end, by step kind and final phase",
            step_duration.clone(),
        );
        hitl.register(
            "expression_evaluations_stopped",
            "CEL evaluations stopped at a limit (time or memory); each failed its step",
            crate::sandbox::STOPPED.clone(),
        );
        let leader = Gauge::default();
        hitl.register("leader", "1 while this replica runs the controllers, else 0", leader.clone());
        let archive_records = Family::<ArchiveLabels, Counter>::default();
        hitl.register(
            "archive_records",
            "Records written to the decision archive, by kind and result (stored, already, failed)",
            archive_records.clone(),
        );
        let archive_backlog = Gauge::default();
        hitl.register(
            "archive_backlog",
            "Gates and runs whose record waits for the decision archive's database",
            archive_backlog.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION"), commit: env!("HITL_GIT_COMMIT") })
            .set(1);
        hitl.register("build_info", "The operator's version and the commit it was built from; always 1", build);
        let stores = stores::Stores::default();
        hitl.register_collector(Box::new(stores.clone()));
        let m = Self {
            registry,
            reconciles,
            skipped,
            failures,
            duration,
            writes,
            notifications,
            decision_seconds,
            gate_outcomes,
            step_duration,
            leader,
            archive_records,
            archive_backlog,
            stores,
            readiness: Mutex::new(Err("starting".into())),
        };
        m.start_at_zero();
        m
    }
}

impl Metrics {
    pub fn write(&self, kind: &'static str) {
        self.writes.get_or_create(&WriteLabels { kind }).inc();
    }

    pub fn reconciled(&self, controller: &'static str, took: Duration) {
        self.reconciles.get_or_create(&ControllerLabel { controller }).inc();
        self.duration.get_or_create(&ControllerLabel { controller }).observe(took.as_secs_f64());
    }

    pub fn skipped(&self, controller: &'static str) {
        self.skipped.get_or_create(&ControllerLabel { controller }).inc();
    }

    pub fn failed(&self, controller: &'static str, category: &'static str) {
        self.failures.get_or_create(&ErrorLabels { controller, category }).inc();
    }

    pub fn notified(&self, channel_kind: &'static str, event: &'static str, ok: bool) {
        let result = if ok { "sent" } else { "failed" };
        self.notifications.get_or_create(&NotifyLabels { channel_kind, event, result }).inc();
    }

    /// Counts Workflows by phase from this store (one watched namespace's, or all) at each scrape.
    pub fn count_workflows_from(&self, store: kube::runtime::reflector::Store<crate::api::Workflow>) {
        self.stores.add_workflows(store);
    }

    /// Counts Approvals by phase, pending ones, and their nearest expiry from this store.
    pub fn count_approvals_from(&self, store: kube::runtime::reflector::Store<crate::api::Approval>) {
        self.stores.add_approvals(store);
    }

    /// Every series a rate or an alert reads exists from the start, at zero: a failure that
    /// happens once is then a change from 0 to 1, which `rate()` and `increase()` see.
    fn start_at_zero(&self) {
        for channel_kind in ["webhook", "slack", "email"] {
            for event in ["requested", "reminder", "escalated", "decided", "expired", "cancelled"] {
                for result in ["sent", "failed"] {
                    let _ = self.notifications.get_or_create(&NotifyLabels { channel_kind, event, result });
                }
            }
        }
        for controller in RECONCILERS {
            let _ = self.reconciles.get_or_create(&ControllerLabel { controller });
            let _ = self.duration.get_or_create(&ControllerLabel { controller });
        }
        // Only the Workflow controller skips passes (see controller::settled).
        let _ = self.skipped.get_or_create(&ControllerLabel { controller: "workflow" });
        for controller in FAILING {
            for category in ErrorCategory::ALL.map(ErrorCategory::as_str) {
                let _ = self.failures.get_or_create(&ErrorLabels { controller, category });
            }
        }
        let _ = self.failures.get_or_create(&ErrorLabels { controller: "watch", category: "Unreadable" });
        for outcome in GATE_OUTCOMES {
            let _ = self.gate_outcomes.get_or_create(&OutcomeLabel { outcome });
        }
        for kind in STEP_KINDS {
            for phase in STEP_PHASES {
                let _ = self.step_duration.get_or_create(&StepLabels { kind, phase });
            }
        }
    }

    /// A gate ended: `outcome` is one of [`GATE_OUTCOMES`].
    pub fn gate_ended(&self, outcome: &'static str) {
        self.gate_outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A step ended after `seconds`.
    pub fn step_ended(&self, kind: &'static str, phase: &'static str, seconds: f64) {
        self.step_duration.get_or_create(&StepLabels { kind, phase }).observe(seconds.max(0.0));
    }

    /// This replica runs the controllers (true) or stands by (false).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn archived(&self, kind: &'static str, result: &'static str) {
        self.archive_records.get_or_create(&ArchiveLabels { kind, result }).inc();
    }

    pub fn decided(&self, seconds: f64) {
        self.decision_seconds.observe(seconds.max(0.0));
    }

    pub fn set_ready(&self) {
        *self.readiness.lock().expect("lock") = Ok(());
    }

    /// /readyz answers 503 with `why`.
    pub fn set_not_ready(&self, why: impl Into<String>) {
        *self.readiness.lock().expect("lock") = Err(why.into());
    }

    pub fn readiness(&self) -> Result<(), String> {
        self.readiness.lock().expect("lock").clone()
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String");
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (axum on hyper) until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|axum::extract::State(m): axum::extract::State<Arc<Metrics>>| async move {
                ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|axum::extract::State(m): axum::extract::State<Arc<Metrics>>| async move {
                match m.readiness() {
                    Ok(()) => (StatusCode::OK, "ok\n".to_string()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                }
            }),
        )
        .with_state(metrics);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_probes() {
        let m = Arc::new(Metrics::default());
        m.write("create_pod");
        m.reconciled("workflow", Duration::from_millis(3));
        m.failed("workflow", "KubeError");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, m.clone()));
        let body = get(addr, "/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains(r#"hitl_api_writes_total{kind="create_pod"} 1"#), "{body}");
        assert!(body.contains(r#"hitl_reconcile_failures_total{controller="workflow",category="KubeError"} 1"#));
        assert!(body.contains("hitl_reconcile_duration_seconds_bucket"));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503") && not_ready.ends_with("starting\n"), "{not_ready}");
        m.set_not_ready("the Workflow CRD is not installed");
        assert!(get(addr, "/readyz").await.contains("the Workflow CRD is not installed"));
        m.set_ready();
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}
