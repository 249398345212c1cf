//! `hitl-operator`: runs the Workflow and Approval controllers against the current kubeconfig
//! (or in-cluster service account).

use clap::{Parser, ValueEnum};
use hitl_operator::controller::{self, Config};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Parser, Debug)]
#[command(name = "hitl-operator", version, about = "Kubernetes operator for human-in-the-loop workflows")]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "HITL_NAMESPACE")]
    namespace: Option<String>,
    /// Workflows (and Approvals) reconciled at once.
    #[arg(long, env = "HITL_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Create a Role and RoleBinding per Approval that lists approvers, giving exactly them
    /// `get` and `patch` on exactly that Approval.
    #[arg(long, env = "HITL_PER_GATE_GRANTS", default_value_t = true, action = clap::ArgAction::Set)]
    per_gate_grants: bool,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "HITL_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Log format.
    #[arg(long, env = "HITL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            let ansi = std::io::stdout().is_terminal();
            tracing_subscriber::fmt().with_ansi(ansi).with_env_filter(filter).init()
        }
    }
    let metrics = std::sync::Arc::new(hitl_operator::metrics::Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    tokio::spawn(hitl_operator::metrics::serve(listener, metrics.clone()));
    let client = kube::Client::try_default().await?;
    metrics.set_ready();
    tracing::info!(namespace = ?args.namespace, "hitl-operator starting");
    controller::run(
        client,
        Config { namespace: args.namespace, concurrency: args.concurrency, per_gate_grants: args.per_gate_grants },
        metrics,
    )
    .await;
    tracing::info!("hitl-operator stopped");
    Ok(())
}
