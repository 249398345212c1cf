//! `hitl-operator`: runs the Workflow and Approval controllers against the current kubeconfig
//! (or in-cluster service account), as the leader of its replicas.

use clap::{Parser, ValueEnum};
use hitl_operator::archive;
use hitl_operator::controller::{self, Config};
use hitl_operator::engine::notify_target::{Cidr, ClusterRanges};
use hitl_operator::leader::{self, LeaseConfig};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// What `--version` prints after the name: the crate's version and the commit it was built from
/// (build.rs; "unknown" when built outside a git checkout).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("HITL_GIT_COMMIT"), ")");

#[derive(Parser, Debug)]
#[command(name = "hitl-operator", version = VERSION, about = "Kubernetes operator for human-in-the-loop workflows")]
// A flag given twice takes its last value, as kubectl's do (a wrapper adds to what it was given).
#[command(args_override_self = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Mode>,
    /// Watch only these namespaces: repeat the flag or separate them with commas (default: all
    /// namespaces). The operator then needs rights in those namespaces only.
    #[arg(long = "namespace", env = "HITL_NAMESPACE", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Workflows (and Approvals) reconciled at once.
    #[arg(long, env = "HITL_CONCURRENCY", default_value_t = 32)]
    concurrency: u16,
    /// Create a Role and RoleBinding per Approval that lists approvers, giving exactly them
    /// `get` and `patch` on exactly that Approval.
    #[arg(long, env = "HITL_PER_GATE_GRANTS", default_value_t = true, action = clap::ArgAction::Set)]
    per_gate_grants: bool,
    /// Keep one ApprovalInbox per user and group that a pending gate lists (cluster-scoped),
    /// each readable by that user or group alone, so `kubectl hitl pending` finds their gates.
    /// Watching one namespace, the operator keeps that namespace's entries in them.
    #[arg(long, env = "HITL_INBOXES", default_value_t = true, action = clap::ArgAction::Set)]
    inboxes: bool,
    /// Processes that evaluate CEL expressions (`when`, `{{ }}`, `forEach.list`): evaluations
    /// at once. Each is stopped at the time limit, and limited in memory (next flag).
    #[arg(long, env = "HITL_CEL_WORKERS", default_value_t = hitl_operator::sandbox::WORKERS)]
    cel_workers: usize,
    /// MiB of memory one evaluation may use; an expression that needs more fails its step.
    #[arg(long, env = "HITL_CEL_MEMORY_LIMIT_MIB", default_value_t = hitl_operator::sandbox::MEMORY_LIMIT_MIB)]
    cel_memory_limit_mib: u64,
    /// Seconds a notification may take (connect, send, answer) before it counts as failed.
    #[arg(long, env = "HITL_NOTIFICATION_TIMEOUT", default_value_t = 10)]
    notification_timeout: u64,
    /// Notifications sent at once; a slow channel holds at most these.
    #[arg(long, env = "HITL_NOTIFICATION_WORKERS", default_value_t = 4)]
    notification_workers: u16,
    /// The cluster's Service address ranges (the API server's `--service-cluster-ip-range`),
    /// comma-separated. Notifications never reach them unless the namespace owner's
    /// WorkflowPolicy lists the host.
    #[arg(long, env = "HITL_SERVICE_CLUSTER_IP_RANGE", value_delimiter = ',', default_value = "10.96.0.0/12")]
    service_cluster_ip_range: Vec<Cidr>,
    /// The cluster's Pod address ranges (the controller manager's `--cluster-cidr`),
    /// comma-separated; kept from notifications as the Service ranges are.
    #[arg(long, env = "HITL_CLUSTER_CIDR", value_delimiter = ',', default_value = "10.244.0.0/16")]
    cluster_cidr: Vec<Cidr>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "HITL_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// PostgreSQL URL of the decision archive, which keeps every decided gate and finished run
    /// after their objects are gone (`sslmode=verify-full&sslrootcert=...` for TLS). Unset: no
    /// archive. Workflows then carry the `hitl.dev/archive` finalizer until their records are stored.
    #[arg(long, env = "HITL_ARCHIVE_DATABASE_URL", hide_env_values = true)]
    archive_database_url: Option<String>,
    /// How long the archive keeps records (`400d`, `90d`, `12h`); older ones are removed hourly,
    /// leaving a checkpoint so the hash chain still verifies.
    #[arg(long, env = "HITL_ARCHIVE_RETENTION", default_value = "400d", value_parser = hitl_operator::engine::archive::parse_age)]
    archive_retention: std::time::Duration,
    #[command(flatten)]
    archive_api: archive::server::ServeArgs,
    /// Log format.
    #[arg(long, env = "HITL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Reconcile only while holding the Lease, so that several replicas are safe. Turn off only
    /// where exactly one process runs (e.g. `cargo run` against a dev cluster).
    #[arg(long, env = "HITL_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, env = "HITL_LEADER_ELECTION_LEASE_NAME", default_value = "hitl-operator")]
    leader_election_lease_name: String,
    /// Namespace of the Lease. Default: the operator's own (POD_NAMESPACE, or the in-cluster
    /// service account's), else the watched namespace, else `default`.
    #[arg(long, env = "HITL_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Seconds the Lease stays valid after its last renewal: the longest a standby waits after
    /// the leader dies without releasing it.
    #[arg(long, env = "HITL_LEADER_ELECTION_LEASE_DURATION", default_value_t = 15)]
    leader_election_lease_duration: u64,
    /// Seconds before expiry at which the leader renews the Lease; also the clock skew between
    /// nodes that is tolerated. Must be less than the lease duration.
    #[arg(long, env = "HITL_LEADER_ELECTION_RENEW_GRACE", default_value_t = 5)]
    leader_election_renew_grace: u64,
}

/// What the process runs instead of the operator.
#[derive(clap::Subcommand, Debug)]
enum Mode {
    /// Serve the approval pages behind an authenticating proxy, as the chart's `ui` does (the
    /// same server as `kubectl hitl ui`).
    Ui(hitl_operator::ui::cli::UiArgs),
    /// An evaluator process, which the operator starts itself (reads requests on stdin).
    #[command(hide = true)]
    CelWorker {
        #[arg(long)]
        memory_limit_mib: u64,
    },
}

impl Args {
    fn lease(&self) -> anyhow::Result<LeaseConfig> {
        anyhow::ensure!(
            self.leader_election_renew_grace < self.leader_election_lease_duration,
            "--leader-election-renew-grace ({}) must be less than --leader-election-lease-duration ({})",
            self.leader_election_renew_grace,
            self.leader_election_lease_duration
        );
        let namespace = self
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()))
            .or_else(|| std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok())
            .or_else(|| self.namespaces.first().cloned())
            .unwrap_or_else(|| "default".into());
        let host = std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| "hitl-operator".into());
        Ok(LeaseConfig {
            name: self.leader_election_lease_name.clone(),
            namespace: namespace.trim().to_string(),
            identity: format!("{host}_{}", std::process::id()),
            duration: self.leader_election_lease_duration,
            renew_grace: self.leader_election_renew_grace,
        })
    }
}

/// The namespaces to watch, without blanks or repeats; empty: all.
fn watched(namespaces: &[String]) -> Vec<String> {
    let set: std::collections::BTreeSet<String> =
        namespaces.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    set.into_iter().collect()
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    match format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            let ansi = std::io::stdout().is_terminal();
            tracing_subscriber::fmt().with_ansi(ansi).with_env_filter(filter).init()
        }
    }
}

/// SIGTERM (Kubernetes stopping the Pod) or SIGINT.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // An evaluator process stays small: no logging, no async runtime.
    if let Some(Mode::CelWorker { memory_limit_mib }) = args.command {
        std::process::exit(hitl_operator::sandbox::worker::serve(memory_limit_mib));
    }
    hitl_operator::memory::limit_arenas();
    tokio::runtime::Runtime::new()?.block_on(operator(args))
}

/// Evaluations run in child processes of this program, stopped at their time and memory limits.
fn install_sandbox(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let sandbox = hitl_operator::sandbox::Sandbox::new(exe, args.cel_workers, args.cel_memory_limit_mib);
    anyhow::ensure!(
        hitl_operator::engine::cel_runner::install(std::sync::Arc::new(sandbox)),
        "an expression was evaluated before the evaluators were set up"
    );
    Ok(())
}

async fn operator(args: Args) -> anyhow::Result<()> {
    init_logging(args.log_format);
    if let Some(Mode::Ui(ui)) = args.command {
        let config = kube::Config::infer().await?;
        let namespace = config.default_namespace.clone();
        return hitl_operator::ui::cli::run(config, namespace, ui).await;
    }
    let lease = args.leader_elect.then(|| args.lease()).transpose()?;
    install_sandbox(&args)?;
    let metrics = std::sync::Arc::new(hitl_operator::metrics::Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    tokio::spawn(hitl_operator::metrics::serve(listener, metrics.clone()));
    tokio::spawn(hitl_operator::memory::trim_periodically());
    let client = kube::Client::try_default().await?;
    let archive = connect_archive(&args, &client, &metrics)?;
    if let Some(a) = &archive {
        // Every replica serves the archive's read path (its Service reaches any ready one); only
        // the leader writes.
        archive::server::start(&args.archive_api, a.store.clone(), client.clone()).await?;
    }
    let config = Config {
        namespaces: watched(&args.namespaces),
        namespace: None,
        concurrency: args.concurrency,
        per_gate_grants: args.per_gate_grants,
        inboxes: args.inboxes,
        notify_timeout: std::time::Duration::from_secs(args.notification_timeout.max(1)),
        notify_workers: args.notification_workers,
        notify_ranges: ClusterRanges { services: args.service_cluster_ip_range, pods: args.cluster_cidr },
        archive: None,
    };
    let retention = archive.as_ref().map(|a| (a.store.clone(), a.retention));
    let config = Config { archive: archive.map(|a| a.writer), ..config };
    let work = work(client.clone(), config, metrics.clone(), retention);
    let Some(lease) = lease else {
        // Leader before ready: whoever sees /readyz answer also sees hitl_leader 1.
        metrics.set_leader(true);
        metrics.set_ready();
        tracing::info!("hitl-operator starting (no leader election)");
        work.await;
        tracing::info!("hitl-operator stopped");
        return Ok(());
    };
    // A standby is ready: it serves its probes and takes over when the leader goes.
    metrics.set_ready();
    let mut leader = tokio::select! {
        held = leader::acquire(client.clone(), &lease) => held?,
        _ = shutdown_signal() => {
            tracing::info!("stopped while standing by");
            return Ok(());
        }
    };
    tracing::info!(version = VERSION, "hitl-operator starting");
    metrics.set_leader(true);
    tokio::select! {
        _ = work => {
            // The controllers stop on SIGTERM; hand the Lease over at once.
            leader.release().await;
            tracing::info!("hitl-operator stopped");
            Ok(())
        }
        _ = leader.lost() => {
            // Another replica holds the Lease: stop before doing anything more.
            tracing::error!("lost the lease to another replica; exiting");
            std::process::exit(1);
        }
    }
}

/// The archive, when one is configured. A URL that cannot be one stops the operator at start; a
/// database that is away does not (runs go on, records wait): it is reached on first use.
fn connect_archive(
    args: &Args,
    client: &kube::Client,
    metrics: &std::sync::Arc<hitl_operator::metrics::Metrics>,
) -> anyhow::Result<Option<Archiving>> {
    let Some(url) = args.archive_database_url.as_deref().filter(|u| !u.is_empty()) else { return Ok(None) };
    let store = archive::store::Archive::open(url)
        .map_err(|e| anyhow::anyhow!("--archive-database-url {}: {e}", redacted(url)))?;
    tracing::info!(database = %redacted(url), retention = ?args.archive_retention, "decision archive on");
    let manager = controller::pods::MANAGER;
    let writer = archive::writer::Writer::new(client.clone(), store.clone(), metrics.clone(), manager);
    Ok(Some(Archiving { store, writer, retention: args.archive_retention }))
}

/// The URL without its password, for logs and errors.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

struct Archiving {
    store: archive::store::Archive,
    writer: std::sync::Arc<archive::writer::Writer>,
    retention: std::time::Duration,
}

/// What the leader does: the controllers (with the archive's writer, when on), and the archive's
/// retention.
async fn work(
    client: kube::Client,
    config: Config,
    metrics: std::sync::Arc<hitl_operator::metrics::Metrics>,
    retention: Option<(archive::store::Archive, std::time::Duration)>,
) {
    tracing::info!(namespaces = ?config.namespaces, "watching");
    let retention = async move {
        match retention {
            Some((store, keep)) => archive::retention::run(store, keep).await,
            None => futures::future::pending().await,
        }
    };
    // The controllers end on SIGTERM; retention stops with them.
    tokio::select! {
        _ = controller::run(client, config, metrics) => {}
        _ = retention => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_repeat_or_come_comma_separated() {
        let args =
            Args::try_parse_from(["hitl-operator", "--namespace", "b,a", "--namespace", "c", "--namespace", "a"])
                .expect("valid flags");
        assert_eq!(watched(&args.namespaces), ["a", "b", "c"]);
        let all = Args::try_parse_from(["hitl-operator"]).unwrap();
        assert!(watched(&all.namespaces).is_empty(), "no flag: every namespace");
    }
}
