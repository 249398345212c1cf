//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.
//! Labels are static categories (controller, error category, API write kind), never object names,
//! so their number stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabel, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub writes: Family<WriteLabels, Counter>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hitl");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
        });
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that failed, by error category", failures.clone());
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", duration.clone());
        registry.register("api_writes", "Writes this operator made to the API server", writes.clone());
        Self { registry, reconciles, failures, duration, writes, ready: AtomicBool::new(false) }
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

    pub fn failed(&self, controller: &'static str, category: &'static str) {
        self.failures.get_or_create(&ErrorLabels { controller, category }).inc();
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String");
        out
    }

    /// The response to one request line, e.g. `GET /metrics HTTP/1.1`.
    pub fn respond(&self, request_line: &str) -> (u16, &'static str, String) {
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        match path {
            "/metrics" => (200, "application/openmetrics-text; version=1.0.0; charset=utf-8", self.encode()),
            "/healthz" => (200, "text/plain", "ok\n".into()),
            "/readyz" if self.ready.load(Ordering::Relaxed) => (200, "text/plain", "ok\n".into()),
            "/readyz" => (503, "text/plain", "starting\n".into()),
            _ => (404, "text/plain", "not found\n".into()),
        }
    }
}

/// Serves the endpoints until the process ends. Plain HTTP/1.1, one request per connection: the
/// only clients are Prometheus and the kubelet's probes.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let head = String::from_utf8_lossy(&buf[..n]);
            let (code, content_type, body) = metrics.respond(head.lines().next().unwrap_or(""));
            let reason = match code {
                200 => "OK",
                503 => "Service Unavailable",
                _ => "Not Found",
            };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_metrics_and_probes() {
        let m = Metrics::default();
        m.write("create_pod");
        m.reconciled("workflow", Duration::from_millis(3));
        m.failed("workflow", "KubeError");
        let (code, _, body) = m.respond("GET /metrics HTTP/1.1");
        assert_eq!(code, 200);
        assert!(body.contains(r#"hitl_api_writes_total{kind="create_pod"} 1"#), "{body}");
        assert!(body.contains(r#"hitl_reconcile_failures_total{controller="workflow",category="KubeError"} 1"#));
        assert!(body.contains("hitl_reconcile_duration_seconds_bucket"));
        assert_eq!(m.respond("GET /healthz HTTP/1.1").0, 200);
        assert_eq!(m.respond("GET /readyz HTTP/1.1").0, 503);
        m.set_ready();
        assert_eq!(m.respond("GET /readyz HTTP/1.1").0, 200);
        assert_eq!(m.respond("GET /nope HTTP/1.1").0, 404);
    }
}
