//! `make bench`: latency and API-write figures of hitl-operator on the local cluster.
//!
//! Needs the cluster of `make cluster-up`. Installs the CRDs and `config/policy/` (if present),
//! runs the operator binary (the release build cargo makes for this bench) against a namespace of
//! its own, drives Workflows through it, prints a report and writes it as JSON to
//! `target/bench/latency.json`; the operator's log goes to `target/bench/operator.log`.
//!
//! 1. Step transition latency: from a step's Pod seen `Succeeded` to the next step's Pod seen
//!    `ADDED`, both in the bench's one Pod watch (label `hitl.dev/workflow`), so the watch delay
//!    cancels out. Chains of container steps, several Workflows at once, then one at a time.
//! 2. API writes per step: the delta of the API server's `apiserver_request_total` for write verbs
//!    over each run, by resource/subresource, verb and response code, attributed to the operator,
//!    the bench, kube-scheduler or kwok (the simulated node) by what each of them writes. The
//!    counter is cluster-wide, so the report also gives exact figures from the bench namespace
//!    (watch events, Event objects, the operator's own `hitl_api_writes_total`) and says when
//!    other clients were writing at the same time.
//! 3. Approval latency: from the approving merge patch returning to the next step's Pod seen
//!    `ADDED`.
//!
//! 4. The decision path part by part: the means over the run of the approving PATCH (admission
//!    included), the Approval pass, its status write, the Workflow pass, its Pod create and status
//!    write, from the API server's and the operator's duration histograms.
//!
//! Timings are client-side `Instant`s (Kubernetes timestamps have second precision). Figures
//! only, no assertions. Knobs: `HITL_BENCH_RUST_LOG` (the operator's `RUST_LOG`),
//! `HITL_BENCH_OPERATOR_BIN` (another operator binary), `HITL_BENCH_ONLY` (run keys, e.g.
//! `real_x1,approval_x8`), `KUBECTL`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[path = "latency/path_parts.rs"]
mod path_parts;

/// Container steps per Workflow in the transition runs (so `STEPS - 1` transitions each).
const CHAIN_STEPS: usize = 11;
/// Suspend steps per Workflow in the approval run; each is followed by a container step.
const GATES: usize = 4;
/// A person does not approve within microseconds of the gate opening: wait this long after the
/// Approval is Pending and the Workflow shows the step Waiting, so no reconcile is in flight.
const APPROVE_AFTER: Duration = Duration::from_millis(100);
/// Upper bound for one run; the whole bench takes a few minutes at most.
const RUN_TIMEOUT: Duration = Duration::from_secs(150);
/// After the last Workflow of a run finished: time for trailing writes (status, Events) to land
/// before the metrics are read again.
const SETTLE: Duration = Duration::from_millis(1500);
const LABEL_WORKFLOW: &str = "hitl.dev/workflow";
const LABEL_STEP: &str = "hitl.dev/step";
const NO_CLUSTER: &str = "no local Kubernetes cluster is reachable: start one with `make cluster-up` \
     (or `hack/cluster up`), then rerun `make bench`";

/// One measured run: `workflows` Workflows of one shape, `concurrency` of them at a time.
struct RunSpec {
    key: &'static str,
    prefix: &'static str,
    workflows: usize,
    concurrency: usize,
    shape: Shape,
}

#[derive(Clone, Copy)]
enum Shape {
    /// `n` container steps in sequence.
    Chain(usize),
    /// `n` container steps in sequence on the real node (containers that run; `busybox:1.36`'s
    /// `sh` with no input exits at once).
    RealChain(usize),
    /// `n` times: a suspend step (no approvers, no inputs), then a container step.
    Gates(usize),
}

impl Shape {
    /// Step names in order, and whether each is a suspend step.
    fn steps(self) -> Vec<(String, bool)> {
        match self {
            Shape::Chain(n) | Shape::RealChain(n) => (0..n).map(|i| (format!("s{i:02}"), false)).collect(),
            Shape::Gates(n) => (0..n).flat_map(|i| [(format!("g{i}"), true), (format!("c{i}"), false)]).collect(),
        }
    }

    /// The measured pairs (from, to): for a chain each step and its successor; for gates each
    /// suspend step and the container step after it.
    fn pairs(self) -> Vec<(String, String)> {
        let steps = self.steps();
        match self {
            Shape::Chain(_) | Shape::RealChain(_) => {
                steps.windows(2).map(|w| (w[0].0.clone(), w[1].0.clone())).collect()
            }
            Shape::Gates(_) => steps.chunks(2).map(|c| (c[0].0.clone(), c[1].0.clone())).collect(),
        }
    }

    fn describe(self) -> String {
        match self {
            Shape::Chain(n) => format!("{n} steps"),
            Shape::RealChain(n) => format!("{n} real steps"),
            Shape::Gates(n) => format!("{n} x (gate, step)"),
        }
    }

    fn manifest(self, ns: &str, name: &str) -> Value {
        let steps: Vec<Value> = self
            .steps()
            .into_iter()
            .map(|(step, gate)| {
                if gate {
                    json!({"name": step, "suspend": {"message": format!("bench gate {step}")}})
                } else {
                    json!({"name": step, "container": {"image": "busybox:1.36"}})
                }
            })
            .collect();
        let mut spec = json!({"steps": steps});
        if matches!(self, Shape::RealChain(_)) {
            spec["podTemplate"] = json!({"nodeSelector": {"hitl.dev/node": "real"}});
        }
        json!({
            "apiVersion": "hitl.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": ns, "labels": {"hitl.dev/bench": "true"}},
            "spec": spec,
        })
    }
}

/// The runs; with the local cluster's real node, one more on it (its gap excludes the container's
/// start, which comes before the Pod can finish).
fn runs(real_node: bool) -> Vec<RunSpec> {
    let real = RunSpec { key: "real_x1", prefix: "rn", workflows: 5, concurrency: 1, shape: Shape::RealChain(6) };
    let kwok = vec![
        RunSpec { key: "transition_x4", prefix: "ta", workflows: 20, concurrency: 4, shape: Shape::Chain(CHAIN_STEPS) },
        RunSpec { key: "transition_x1", prefix: "tb", workflows: 20, concurrency: 1, shape: Shape::Chain(CHAIN_STEPS) },
        RunSpec { key: "approval_x8", prefix: "ap", workflows: 50, concurrency: 8, shape: Shape::Gates(GATES) },
        // The decision path with nothing beside it: what one decision costs the cluster's writes.
        RunSpec { key: "approval_x1", prefix: "aq", workflows: 20, concurrency: 1, shape: Shape::Gates(GATES) },
    ];
    let only = std::env::var("HITL_BENCH_ONLY").unwrap_or_default();
    let wanted = |spec: &RunSpec| only.is_empty() || only.split(',').any(|k| k.trim() == spec.key);
    kwok.into_iter().chain(real_node.then_some(real)).filter(wanted).collect()
}

#[tokio::main]
async fn main() {
    if let Err(e) = bench().await {
        eprintln!("\nbench failed: {e:#}");
        std::process::exit(1);
    }
}

async fn bench() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let kubeconfig = admin_kubeconfig(&root)?;
    let kubectl = Kubectl::new(&root, &kubeconfig)?;
    let client = connect(&kubeconfig).await?;

    kubectl.run(&["apply", "--server-side", "--force-conflicts", "-f", root.join("crds").to_str().unwrap()])?;
    kubectl.run(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/workflows.hitl.dev",
        "crd/approvals.hitl.dev",
    ])?;
    let policy_dir = root.join("config/policy");
    // What users install with the CRDs; `-f` skips the directory's Kustomization file.
    let policy = if policy_dir.is_dir() {
        match kubectl.run(&["apply", "-f", policy_dir.to_str().unwrap()]) {
            Ok(_) => "config/policy/ applied".to_string(),
            Err(e) => {
                eprintln!("warning: {e:#}");
                format!("config/policy/ could NOT be applied ({e:#})")
            }
        }
    } else {
        "none (config/policy/ does not exist)".to_string()
    };

    let ns = format!("hitl-bench-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj: Namespace = serde_json::from_value(json!({
        "metadata": {"name": ns, "labels": {"hitl.dev/bench": "true"}}
    }))?;
    namespaces.create(&PostParams::default(), &ns_obj).await.with_context(|| format!("create namespace {ns}"))?;
    let log = out_dir.join("operator.log");
    let operator = Operator::start(&ns, &operator_kubeconfig(&root)?, &log);

    let result = match operator {
        Ok(mut op) => {
            let r = tokio::select! {
                r = measure(&client, &kubectl, &ns, &log, &policy, &out_dir) => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            };
            op.stop();
            r
        }
        Err(e) => Err(e),
    };
    match namespaces.delete(&ns, &DeleteParams::background()).await {
        Ok(_) => eprintln!("deleted namespace {ns} (in the background)"),
        Err(e) => eprintln!("could not delete namespace {ns}: {e}; delete it by hand"),
    }
    result
}

async fn measure(
    client: &Client,
    kubectl: &Kubectl,
    ns: &str,
    log: &Path,
    policy: &str,
    out_dir: &Path,
) -> anyhow::Result<()> {
    let mut b = Bench::start(client.clone(), ns).await?;
    eprintln!("operator log: {}", log.display());

    // Warm-up, unmeasured: the operator's caches and connections, kwok's first Pods.
    let warmup = RunSpec { key: "warmup", prefix: "wu", workflows: 2, concurrency: 2, shape: Shape::Gates(1) };
    b.run(&warmup).await.with_context(|| format!("warm-up (operator log: {})", log.display()))?;

    let mut results = Vec::new();
    let real_node = kubectl
        .run(&["get", "node", "real-node-0", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
        .is_ok_and(|ready| ready.trim() == "True");
    if !real_node {
        eprintln!("no Ready real node (real-node-0): the real-node run is left out");
    }
    for spec in runs(real_node) {
        eprintln!(
            "run {}: {} Workflows of {}, {} at a time ...",
            spec.key,
            spec.workflows,
            spec.shape.describe(),
            spec.concurrency
        );
        b.drain_for(SETTLE).await?;
        let before = kubectl.write_counters()?;
        let events_before = b.event_occurrences().await?;
        let ops_before = operator_writes(log);
        let passes_before = operator_passes(log);
        let path_before = path_totals(kubectl, log)?;
        let seen_before = b.obs.seen;
        let started = Instant::now();
        let mut res =
            b.run(&spec).await.with_context(|| format!("run {} (operator log: {})", spec.key, log.display()))?;
        let elapsed = started.elapsed();
        b.drain_for(SETTLE).await?;
        let after = kubectl.write_counters()?;
        let events_after = b.event_occurrences().await?;
        res.seen = b.obs.seen.since(seen_before);
        res.operator_writes = ops_before.zip(operator_writes(log)).map(|(before, after)| counted_since(&before, after));
        res.operator_passes =
            passes_before.zip(operator_passes(log)).map(|(before, after)| counted_since(&before, after));
        res.path = path_parts::over_run(&path_before, &path_totals(kubectl, log)?);
        res.elapsed = elapsed;
        res.writes = delta(&before, &after);
        res.events = events_delta(&events_before, &events_after);
        eprintln!("  done in {:.1}s: {} latencies", elapsed.as_secs_f64(), res.latencies.len());
        results.push((spec, res));
    }

    let report = Report { ns, policy, results: &results };
    println!("{}", report.text());
    let json_path = out_dir.join("latency.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report.json())?)?;
    println!("JSON: {}", json_path.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cluster access

fn admin_kubeconfig(root: &Path) -> anyhow::Result<PathBuf> {
    let out =
        Command::new(root.join("hack/cluster")).args(["kubeconfig", "admin"]).output().context("run hack/cluster")?;
    if !out.status.success() {
        bail!("{NO_CLUSTER}\n(hack/cluster kubeconfig admin: {})", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The operator runs as its ServiceAccount with the chart's RBAC (hack/operator-token): the
/// admission policies let only that identity write status and create Approvals.
fn operator_kubeconfig(root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(root.join("hack/operator-token")).output().context("run hack/operator-token")?;
    if !out.status.success() {
        bail!("hack/operator-token: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

async fn connect(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("{NO_CLUSTER}\n(reading {})", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("{NO_CLUSTER}\n(loading {})", kubeconfig.display()))?;
    let client = Client::try_from(config)?;
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => bail!("{NO_CLUSTER}\n(API server: {e})"),
        Err(_) => bail!("{NO_CLUSTER}\n(API server did not answer within 10s)"),
    }
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(root: &Path, kubeconfig: &Path) -> anyhow::Result<Self> {
        let bin = match std::env::var_os("KUBECTL").filter(|k| !k.is_empty()) {
            Some(k) => PathBuf::from(k),
            None => {
                let out = Command::new(root.join("hack/asset-path"))
                    .arg("kubectl")
                    .output()
                    .context("run hack/asset-path kubectl")?;
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            }
        };
        if !bin.is_file() {
            bail!("kubectl is not built at {} ({NO_CLUSTER}), or set $KUBECTL", bin.display());
        }
        Ok(Self { bin, kubeconfig: kubeconfig.to_path_buf() })
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .context("run kubectl")?;
        if !out.status.success() {
            bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `apiserver_request_total` for write verbs, from `kubectl get --raw /metrics` as admin.
    fn write_counters(&self) -> anyhow::Result<HashMap<MetricKey, f64>> {
        let text = self.run(&["get", "--raw", "/metrics"])?;
        let mut counters = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let labels = parse_labels(labels);
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let verb = get("verb");
            if !WRITE_VERBS.contains(&verb.as_str()) {
                continue;
            }
            let key = MetricKey {
                verb,
                group: get("group"),
                resource: get("resource"),
                subresource: get("subresource"),
                code: get("code"),
            };
            *counters.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
        }
        if counters.is_empty() {
            bail!("no apiserver_request_total samples in /metrics");
        }
        Ok(counters)
    }
}

const WRITE_VERBS: &[&str] = &["POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"];

/// `a="x",b="y"` (Prometheus text format; values may contain escaped quotes).
fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if name.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(name.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// The operator binary cargo built for this bench, as its ServiceAccount, logging to a file.
struct Operator(Option<Child>);

impl Operator {
    fn start(ns: &str, kubeconfig: &Path, log: &Path) -> anyhow::Result<Self> {
        let bin = std::env::var_os("HITL_BENCH_OPERATOR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hitl-operator")));
        let out = std::fs::File::create(log)?;
        let child = Command::new(&bin)
            .args(["--namespace", ns, "--leader-elect=false"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", std::env::var("HITL_BENCH_RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into()))
            // Loopback only, on a free port; found again in the log (see `operator_writes`).
            .env("HITL_METRICS_ADDR", "127.0.0.1:0")
            .env("HITL_LOG_FORMAT", "text")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        eprintln!("operator: {} --namespace {ns}", bin.display());
        Ok(Self(Some(child)))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The operator's own count of its API writes (`hitl_api_writes_total` by kind, from its
/// /metrics, whose address it logs at start); None when this operator build does not serve it.
fn operator_writes(log: &Path) -> Option<BTreeMap<String, f64>> {
    Some(series(&operator_metrics(log)?, "hitl_api_writes_total", "kind", ""))
}

/// The operator's passes by controller: those it ran (`hitl_reconciles_total`) and those it
/// skipped as nothing had changed since its own write (`hitl_passes_skipped_total`, absent from
/// builds before it).
fn operator_passes(log: &Path) -> Option<BTreeMap<String, f64>> {
    let body = operator_metrics(log)?;
    let mut passes = series(&body, "hitl_reconciles_total", "controller", " run");
    passes.extend(series(&body, "hitl_passes_skipped_total", "controller", " skipped"));
    Some(passes)
}

/// What each series counted between two readings.
fn counted_since(before: &BTreeMap<String, f64>, after: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after.into_iter().map(|(k, v)| (k.clone(), v - before.get(&k).copied().unwrap_or(0.0))).collect()
}

/// One counter's series by the value of `label` (with `suffix`), from a /metrics text.
fn series(body: &str, counter: &str, label: &str, suffix: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(counter)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            Some((parse_labels(labels).remove(label)? + suffix, value.trim().parse().ok()?))
        })
        .collect()
}

/// The decision path's parts as they stand: the API server's and the operator's histograms.
fn path_totals(kubectl: &Kubectl, log: &Path) -> anyhow::Result<path_parts::Parts> {
    let mut parts = path_parts::api_server(&kubectl.run(&["get", "--raw", "/metrics"])?);
    parts.extend(operator_metrics(log).map(|text| path_parts::operator(&text)).unwrap_or_default());
    Ok(parts)
}

/// The operator's /metrics (HTTP answer included), from the address it logs at start.
fn operator_metrics(log: &Path) -> Option<String> {
    use std::io::{Read, Write};
    let addr = (0..50).find_map(|_| {
        let found = std::fs::read_to_string(log).ok().and_then(|text| {
            let line = text.lines().rev().find(|l| l.contains("serving /metrics"))?;
            let at = line.find("addr=")? + 5;
            Some(line[at..].split_whitespace().next()?.to_string())
        });
        if found.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        found
    })?;
    let mut conn = std::net::TcpStream::connect(&addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.1 200").then_some(body)
}

// ---------------------------------------------------------------------------------------------
// Watching and driving Workflows

enum Msg {
    Pod(Instant, Box<WatchEvent<Pod>>),
    Workflow(WatchEvent<DynamicObject>),
    Approval(WatchEvent<DynamicObject>),
    Created(String, Result<(), String>),
    Patched { key: StepKey, at: Instant, result: Result<(), String> },
    WatchEnded(&'static str, String),
}

type StepKey = (String, String);

/// What the watches showed, across runs.
#[derive(Default)]
struct Obs {
    pod_added: HashMap<StepKey, Instant>,
    pod_succeeded: HashMap<StepKey, Instant>,
    wf_phase: HashMap<String, (String, String)>,
    waiting: HashSet<StepKey>,
    approval_name: HashMap<StepKey, String>,
    approval_pending: HashSet<StepKey>,
    approve_sent: HashSet<StepKey>,
    approved_at: HashMap<StepKey, Instant>,
    seen: Seen,
}

/// Changes the watches delivered in the bench namespace: exactly one per write that changed an
/// object there, whoever made it, and none from other namespaces.
#[derive(Clone, Copy, Default)]
struct Seen {
    pods_added: u64,
    pods_modified: u64,
    workflows_added: u64,
    workflows_modified: u64,
    approvals_added: u64,
    approvals_modified: u64,
}

impl Seen {
    fn since(self, before: Seen) -> Seen {
        Seen {
            pods_added: self.pods_added - before.pods_added,
            pods_modified: self.pods_modified - before.pods_modified,
            workflows_added: self.workflows_added - before.workflows_added,
            workflows_modified: self.workflows_modified - before.workflows_modified,
            approvals_added: self.approvals_added - before.approvals_added,
            approvals_modified: self.approvals_modified - before.approvals_modified,
        }
    }

    /// (label, count), in report order.
    fn rows(self) -> [(&'static str, u64); 6] {
        [
            ("Pod ADDED (operator creates)", self.pods_added),
            ("Pod MODIFIED (scheduler binds, kwok runs it)", self.pods_modified),
            ("Workflow ADDED (bench creates)", self.workflows_added),
            ("Workflow MODIFIED (operator status writes)", self.workflows_modified),
            ("Approval ADDED (operator creates)", self.approvals_added),
            ("Approval MODIFIED (bench approves, operator status)", self.approvals_modified),
        ]
    }
}

/// The result of one run, before and after the counters are filled in.
#[derive(Default)]
struct RunResult {
    workflows: usize,
    latencies: Vec<f64>,
    missing: usize,
    steps: usize,
    elapsed: Duration,
    approvals_patched: usize,
    seen: Seen,
    writes: BTreeMap<MetricKey, f64>,
    operator_writes: Option<BTreeMap<String, f64>>,
    /// Passes by controller, run and skipped, over the run.
    operator_passes: Option<BTreeMap<String, f64>>,
    events: BTreeMap<String, (u64, u64)>,
    /// The decision path's parts over the run (means), in their order.
    path: Vec<path_parts::Part>,
}

struct Bench {
    ns: String,
    workflows: Api<DynamicObject>,
    approvals: Api<DynamicObject>,
    events: Api<KubeEvent>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    obs: Obs,
    decided_by: Arc<AtomicBool>,
}

fn hitl(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("hitl.dev", "v1alpha1", kind), plural)
}

impl Bench {
    /// Starts the three watches (Pods by label, Workflows, Approvals) in the namespace.
    async fn start(client: Client, ns: &str) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let workflows: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &hitl("Workflow", "workflows"));
        let approvals: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &hitl("Approval", "approvals"));
        watch(pods, "pods", LABEL_WORKFLOW, tx.clone(), |at, e| Msg::Pod(at, Box::new(e))).await?;
        watch(workflows.clone(), "workflows", "", tx.clone(), |_, e| Msg::Workflow(e)).await?;
        watch(approvals.clone(), "approvals", "", tx.clone(), |_, e| Msg::Approval(e)).await?;
        Ok(Self {
            ns: ns.into(),
            workflows,
            approvals,
            events: Api::namespaced(client, ns),
            tx,
            rx,
            obs: Obs::default(),
            decided_by: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs `spec` to the end: keeps `concurrency` Workflows going, approves gates, and returns
    /// the measured latencies.
    async fn run(&mut self, spec: &RunSpec) -> anyhow::Result<RunResult> {
        let names: Vec<String> = (0..spec.workflows).map(|i| format!("{}-{i:03}", spec.prefix)).collect();
        let mine: HashSet<&str> = names.iter().map(String::as_str).collect();
        let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
        let mut next = 0;
        let mut finished = HashSet::new();
        let mut patched = 0;
        while finished.len() < names.len() {
            while next < names.len() && next - finished.len() < spec.concurrency {
                self.create(spec.shape, &names[next]);
                next += 1;
            }
            let msg = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => bail!("watch channel closed"),
                Err(_) => bail!(
                    "timed out after {RUN_TIMEOUT:?}: {} of {} Workflows finished; unfinished: {}",
                    finished.len(),
                    names.len(),
                    self.describe_unfinished(&names[..next], &finished)
                ),
            };
            let touched = self.observe(msg)?;
            let Some(wf) = touched.filter(|w| mine.contains(w.as_str())) else {
                continue;
            };
            match self.obs.wf_phase.get(&wf) {
                Some((phase, _)) if phase == "Succeeded" => {
                    finished.insert(wf.clone());
                }
                Some((phase, message)) if phase == "Failed" => {
                    bail!("Workflow {wf} failed: {message}")
                }
                _ => {}
            }
            if matches!(spec.shape, Shape::Gates(_)) {
                patched += self.approve_ready(spec.shape, &wf);
            }
        }

        let mut res = RunResult {
            workflows: names.len(),
            steps: names.len() * spec.shape.steps().len(),
            approvals_patched: patched,
            ..Default::default()
        };
        // Late messages (a Patched that lost the race with the Pod it caused) are fine: wait a
        // little for every pair to have both ends.
        let pairs = spec.shape.pairs();
        let gates = matches!(spec.shape, Shape::Gates(_));
        let complete = |obs: &Obs| {
            names.iter().all(|w| {
                pairs.iter().all(|(a, b)| {
                    let from = if gates {
                        obs.approved_at.contains_key(&(w.clone(), a.clone()))
                    } else {
                        obs.pod_succeeded.contains_key(&(w.clone(), a.clone()))
                    };
                    from && obs.pod_added.contains_key(&(w.clone(), b.clone()))
                })
            })
        };
        let until = Instant::now() + Duration::from_secs(2);
        while !complete(&self.obs) && Instant::now() < until {
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), self.rx.recv()).await {
                self.observe(m)?;
            }
        }
        for w in &names {
            for (a, b) in &pairs {
                let (ka, kb) = ((w.clone(), a.clone()), (w.clone(), b.clone()));
                let from = if gates { self.obs.approved_at.get(&ka) } else { self.obs.pod_succeeded.get(&ka) };
                match (from, self.obs.pod_added.get(&kb)) {
                    (Some(&from), Some(&to)) => res.latencies.push(signed_ms(from, to)),
                    _ => res.missing += 1,
                }
            }
        }
        Ok(res)
    }

    fn create(&self, shape: Shape, name: &str) {
        let api = self.workflows.clone();
        let tx = self.tx.clone();
        let obj: DynamicObject = serde_json::from_value(shape.manifest(&self.ns, name)).expect("a valid Workflow");
        let name = name.to_string();
        tokio::spawn(async move {
            let r = api.create(&PostParams::default(), &obj).await.map(|_| ()).map_err(|e| e.to_string());
            let _ = tx.send(Msg::Created(name, r));
        });
    }

    /// Sends the approving patch for every gate of `wf` that is open and settled.
    fn approve_ready(&mut self, shape: Shape, wf: &str) -> usize {
        let mut sent = 0;
        for (step, gate) in shape.steps() {
            let key = (wf.to_string(), step);
            if !gate
                || self.obs.approve_sent.contains(&key)
                || !self.obs.approval_pending.contains(&key)
                || !self.obs.waiting.contains(&key)
            {
                continue;
            }
            let Some(name) = self.obs.approval_name.get(&key).cloned() else {
                continue;
            };
            self.obs.approve_sent.insert(key.clone());
            sent += 1;
            let api = self.approvals.clone();
            let tx = self.tx.clone();
            let decided_by = self.decided_by.clone();
            tokio::spawn(async move {
                tokio::time::sleep(APPROVE_AFTER).await;
                let (at, result) = approve(&api, &name, &decided_by).await;
                let _ = tx.send(Msg::Patched { key, at, result });
            });
        }
        sent
    }

    /// Applies one watch message to what is known; returns the Workflow it concerns.
    fn observe(&mut self, msg: Msg) -> anyhow::Result<Option<String>> {
        let o = &mut self.obs;
        Ok(match msg {
            Msg::Pod(at, ev) => {
                let (added, pod) = match *ev {
                    WatchEvent::Added(p) => (true, p),
                    WatchEvent::Modified(p) => (false, p),
                    _ => return Ok(None),
                };
                let labels = pod.labels();
                let (Some(wf), Some(step)) = (labels.get(LABEL_WORKFLOW), labels.get(LABEL_STEP)) else {
                    return Ok(None);
                };
                let key = (wf.clone(), step.clone());
                if added {
                    o.seen.pods_added += 1;
                    o.pod_added.entry(key.clone()).or_insert(at);
                } else {
                    o.seen.pods_modified += 1;
                }
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Succeeded") {
                    o.pod_succeeded.entry(key).or_insert(at);
                } else if phase == Some("Failed") {
                    bail!("Pod {} failed (the bench's Pods should not)", pod.name_any());
                }
                Some(wf.clone())
            }
            Msg::Workflow(ev) => {
                let (modified, wf) = match ev {
                    WatchEvent::Added(w) => (false, w),
                    WatchEvent::Modified(w) => (true, w),
                    _ => return Ok(None),
                };
                let name = wf.name_any();
                let status = &wf.data["status"];
                if modified {
                    o.seen.workflows_modified += 1;
                } else {
                    o.seen.workflows_added += 1;
                }
                let s = |v: &Value| v.as_str().unwrap_or("").to_string();
                o.wf_phase.insert(name.clone(), (s(&status["phase"]), s(&status["message"])));
                for step in status["steps"].as_array().into_iter().flatten() {
                    if step["phase"] == "Waiting" {
                        o.waiting.insert((name.clone(), s(&step["name"])));
                    }
                }
                Some(name)
            }
            Msg::Approval(ev) => {
                let (added, a) = match ev {
                    WatchEvent::Added(a) => (true, a),
                    WatchEvent::Modified(a) => (false, a),
                    _ => return Ok(None),
                };
                let labels = a.labels();
                let wf = labels
                    .get(LABEL_WORKFLOW)
                    .cloned()
                    .or_else(|| a.data["spec"]["workflowRef"]["name"].as_str().map(Into::into));
                let step = labels.get(LABEL_STEP).cloned().or_else(|| a.data["spec"]["step"].as_str().map(Into::into));
                let (Some(wf), Some(step)) = (wf, step) else {
                    return Ok(None);
                };
                let key = (wf.clone(), step);
                if added {
                    o.seen.approvals_added += 1;
                } else {
                    o.seen.approvals_modified += 1;
                }
                o.approval_name.insert(key.clone(), a.name_any());
                if a.data["status"]["phase"] == "Pending" {
                    o.approval_pending.insert(key);
                }
                Some(wf)
            }
            Msg::Created(name, r) => {
                r.map_err(|e| anyhow!("create Workflow {name}: {e}"))?;
                None
            }
            Msg::Patched { key, at, result } => {
                result.map_err(|e| anyhow!("approve {}/{}: {e}", key.0, key.1))?;
                o.approved_at.insert(key.clone(), at);
                Some(key.0)
            }
            Msg::WatchEnded(what, why) => bail!("the {what} watch ended: {why}"),
        })
    }

    /// Keeps consuming watch messages for `d` (trailing updates of a finished run).
    async fn drain_for(&mut self, d: Duration) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some(m)) = tokio::time::timeout_at(until, self.rx.recv()).await {
            self.observe(m)?;
        }
        Ok(())
    }

    fn describe_unfinished(&self, started: &[String], finished: &HashSet<String>) -> String {
        started
            .iter()
            .filter(|w| !finished.contains(*w))
            .take(8)
            .map(|w| {
                let (p, m) = self.obs.wf_phase.get(w).cloned().unwrap_or_default();
                format!("{w} [{p}] {m}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Event objects in the namespace: (object count, occurrences) per reporting controller, by
    /// Event name so that runs can be told apart.
    async fn event_occurrences(&self) -> anyhow::Result<HashMap<String, (String, u64)>> {
        let list = self.events.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .map(|e| {
                let count = e
                    .series
                    .as_ref()
                    .map(|s| s.count as u64)
                    .or(e.deprecated_count.map(|c| c as u64))
                    .unwrap_or(1)
                    .max(1);
                let who =
                    e.reporting_controller.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| "(unknown)".into());
                (e.name_any(), (who, count))
            })
            .collect())
    }
}

/// The approving merge patch, as admin; `decidedBy` is added if an admission policy asks for it.
/// Returns the instant the accepted patch returned.
async fn approve(api: &Api<DynamicObject>, name: &str, decided_by: &AtomicBool) -> (Instant, Result<(), String>) {
    for _ in 0..3 {
        let mut spec = json!({"decision": "Approve"});
        if decided_by.load(Ordering::Relaxed) {
            spec["decidedBy"] = json!("admin");
        }
        let patch = Patch::Merge(json!({ "spec": spec }));
        match api.patch(name, &PatchParams::default(), &patch).await {
            Ok(_) => return (Instant::now(), Ok(())),
            Err(kube::Error::Api(s)) if s.message.contains("decidedBy") && !decided_by.load(Ordering::Relaxed) => {
                decided_by.store(true, Ordering::Relaxed);
            }
            Err(e) => return (Instant::now(), Err(e.to_string())),
        }
    }
    (Instant::now(), Err("refused three times".into()))
}

/// Starts a watch from now (after a list for the resourceVersion) and returns once the API server
/// has accepted it; a task forwards its events, stamped with the instant they arrived, and
/// re-watches from the last resourceVersion when the server closes it.
async fn watch<K>(
    api: Api<K>,
    what: &'static str,
    labels: &str,
    tx: mpsc::UnboundedSender<Msg>,
    wrap: fn(Instant, WatchEvent<K>) -> Msg,
) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut lp = ListParams::default().limit(1);
    let mut wp = WatchParams::default().timeout(290);
    if !labels.is_empty() {
        lp = lp.labels(labels);
        wp = wp.labels(labels);
    }
    let mut rv = api.list(&lp).await?.metadata.resource_version.unwrap_or_default();
    let first: BoxStream<'static, kube::Result<WatchEvent<K>>> = api.watch(&wp, &rv).await?.boxed();
    tokio::spawn(async move {
        let mut stream = Some(first);
        // Each watch lasts up to 290 s; the bench is over long before this bound.
        for _ in 0..10 {
            let mut s = match stream.take() {
                Some(s) => s,
                None => match api.watch(&wp, &rv).await {
                    Ok(s) => s.boxed(),
                    Err(e) => {
                        let _ = tx.send(Msg::WatchEnded(what, e.to_string()));
                        return;
                    }
                },
            };
            while let Some(ev) = s.next().await {
                let at = Instant::now();
                let ev = match ev {
                    Ok(WatchEvent::Error(status)) => {
                        let _ = tx.send(Msg::WatchEnded(what, status.message));
                        return;
                    }
                    Ok(ev) => ev,
                    Err(e) => {
                        let _ = tx.send(Msg::WatchEnded(what, e.to_string()));
                        return;
                    }
                };
                match &ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                        rv = o.resource_version().unwrap_or_else(|| rv.clone());
                    }
                    WatchEvent::Bookmark(b) => rv = b.metadata.resource_version.clone(),
                    WatchEvent::Error(_) => {}
                }
                if tx.send(wrap(at, ev)).is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(Msg::WatchEnded(what, "re-watched too often".into()));
    });
    Ok(())
}

fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from { (to - from).as_secs_f64() * 1e3 } else { -((from - to).as_secs_f64() * 1e3) }
}

// ---------------------------------------------------------------------------------------------
// Figures

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct MetricKey {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    code: String,
}

impl MetricKey {
    fn resource_path(&self) -> String {
        let mut r = self.resource.clone();
        if !self.group.is_empty() {
            r = format!("{r}.{}", self.group);
        }
        if !self.subresource.is_empty() {
            r = format!("{r}/{}", self.subresource);
        }
        r
    }

    /// Who writes this, on this cluster: the operator, the bench, kube-scheduler and kwok each
    /// write their own kinds of request, so resource, subresource and verb tell them apart. Events
    /// are written by both the operator and the scheduler; the Event objects tell how many each.
    /// The bench deletes nothing while it measures: deletions are other clients' clean-up.
    fn writer(&self) -> Writer {
        let (g, r, s, v) = (self.group.as_str(), self.resource.as_str(), self.subresource.as_str(), self.verb.as_str());
        match (g, r, s, v) {
            (_, _, _, "DELETE" | "DELETECOLLECTION") => Writer::Other,
            ("hitl.dev", "workflows", "", "POST") | ("hitl.dev", "approvals", "", "PATCH") => Writer::Bench,
            ("hitl.dev", _, _, _) | ("", "pods", "", "POST") => Writer::Operator,
            ("", "pods", "binding", _) => Writer::Scheduler,
            ("", "pods", "status" | "", _) => Writer::Kwok,
            ("events.k8s.io" | "", "events", _, _) => Writer::Events,
            ("coordination.k8s.io", "leases", _, _) | ("", "nodes", "status", _) => Writer::Background,
            _ => Writer::Other,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Writer {
    Operator,
    Events,
    Bench,
    Scheduler,
    Kwok,
    Background,
    Other,
}

impl Writer {
    fn label(self) -> &'static str {
        match self {
            Writer::Operator => "operator",
            Writer::Events => "operator + kube-scheduler (Events)",
            Writer::Bench => "bench (creates Workflows, approves)",
            Writer::Scheduler => "kube-scheduler",
            Writer::Kwok => "kwok (simulated node)",
            Writer::Background => "background (node/lease heartbeats)",
            Writer::Other => "other clients, clean-up (not this bench)",
        }
    }

    /// Whether the bench's steps cause these writes (then they are shown per step).
    fn per_step(self) -> bool {
        !matches!(self, Writer::Background | Writer::Other)
    }
}

/// after - before, summed over the response codes of one class (2xx, or each other code).
fn delta(before: &HashMap<MetricKey, f64>, after: &HashMap<MetricKey, f64>) -> BTreeMap<MetricKey, f64> {
    let mut out = BTreeMap::new();
    for (k, &v) in after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d <= 0.0 {
            continue;
        }
        let mut k = k.clone();
        if k.code.starts_with('2') {
            k.code = "2xx".into();
        }
        *out.entry(k).or_insert(0.0) += d;
    }
    out
}

/// Per reporting controller: (new Event objects, new occurrences) between two listings.
fn events_delta(
    before: &HashMap<String, (String, u64)>,
    after: &HashMap<String, (String, u64)>,
) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (name, (who, n)) in after {
        let e = out.entry(who.clone()).or_default();
        match before.get(name) {
            None => {
                e.0 += 1;
                e.1 += n;
            }
            Some((_, m)) => e.1 += n.saturating_sub(*m),
        }
    }
    out.retain(|_, v| v.1 > 0);
    out
}

struct Stats {
    count: usize,
    min: f64,
    median: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

/// Nearest-rank percentiles.
fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Stats {
        count: v.len(),
        min: v[0],
        median: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        max: v[v.len() - 1],
        mean: v.iter().sum::<f64>() / v.len() as f64,
    })
}

struct Report<'a> {
    ns: &'a str,
    policy: &'a str,
    results: &'a [(RunSpec, RunResult)],
}

/// Width of one run's column in the tables.
const COL: usize = 22;

impl Report<'_> {
    fn title(spec: &RunSpec) -> String {
        let what = match spec.shape {
            Shape::Chain(_) => "step transition",
            Shape::RealChain(_) => "step transition, real node",
            Shape::Gates(_) => "approval -> next Pod",
        };
        format!("{what}: {} wf x {}, {} at a time", spec.workflows, spec.shape.describe(), spec.concurrency)
    }

    /// A table row: a label, then one cell per run.
    fn row(&self, label: &str, cell: impl Fn(&RunResult) -> String) -> String {
        let mut row = format!("  {label:<58}");
        for (_, r) in self.results {
            row.push_str(&format!(" {:>COL$}", cell(r)));
        }
        row
    }

    fn text(&self) -> String {
        let mut o = Vec::<String>::new();
        o.push(String::new());
        o.push(format!("hitl-operator latency bench; namespace {}; admission policy: {}", self.ns, self.policy));
        o.push(String::new());
        o.push("LATENCY (ms; client-side Instants, both ends seen by the bench's own watch streams)".into());
        o.push("  transition: step Pod seen phase=Succeeded -> next step's Pod seen ADDED (same Pod watch)".into());
        o.push(
            r#"  approval:   merge patch {"spec":{"decision":"Approve"}} returned -> next step's Pod seen ADDED"#
                .into(),
        );
        o.push(format!(
            "  {:<58} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7}",
            "measurement", "count", "min", "median", "p90", "p99", "max"
        ));
        for (spec, r) in self.results {
            let title = Self::title(spec);
            match stats(&r.latencies) {
                Some(s) => o.push(format!(
                    "  {title:<58} {:>5} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1}",
                    s.count, s.min, s.median, s.p90, s.p99, s.max
                )),
                None => o.push(format!("  {title:<58} no data")),
            }
            if r.missing > 0 {
                o.push(format!("    ({} pairs were not observed at both ends)", r.missing));
            }
        }

        self.path_text(&mut o);
        o.push(String::new());
        o.push("API WRITES PER STEP: apiserver_request_total delta (write verbs) over each run / steps run".into());
        o.push("  Writer by resource and verb: the operator creates Pods and writes hitl.dev objects (but".into());
        o.push("  the bench creates the Workflows and patches the decisions); kube-scheduler binds Pods;".into());
        o.push("  kwok, the simulated node, patches Pods and pods/status. The counter is cluster-wide.".into());
        let keys_line = {
            let mut l = format!("  {:<58}", "writer / verb code resource");
            for (spec, r) in self.results {
                l.push_str(&format!(" {:>COL$}", format!("{} ({})", spec.key, r.steps)));
            }
            l
        };
        o.push(keys_line);
        let mut keys: Vec<&MetricKey> = self.results.iter().flat_map(|(_, r)| r.writes.keys()).collect();
        keys.sort_by_key(|k| (k.writer(), k.resource_path(), k.verb.clone(), k.code.clone()));
        keys.dedup();
        let mut writer = None;
        for k in keys.iter().filter(|k| k.writer().per_step()) {
            if writer != Some(k.writer()) {
                writer = Some(k.writer());
                o.push(format!("  {}", k.writer().label()));
            }
            let label = format!("  {} {} {}", k.verb, k.code, k.resource_path());
            o.push(self.row(&label, |r| format!("{:.3}", r.writes.get(*k).copied().unwrap_or(0.0) / r.steps as f64)));
        }
        let sum = |r: &RunResult, f: &dyn Fn(Writer) -> bool| -> f64 {
            r.writes.iter().filter(|(k, _)| f(k.writer())).map(|(_, v)| v).sum::<f64>() + 0.0
        };
        o.push("  sums".into());
        o.push(self.row("  operator, without Events", |r| {
            format!("{:.3}", sum(r, &|w| w == Writer::Operator) / r.steps as f64)
        }));
        o.push(self.row("  Events (operator + kube-scheduler)", |r| {
            format!("{:.3}", sum(r, &|w| w == Writer::Events) / r.steps as f64)
        }));
        o.push(self.row("  kube-scheduler + kwok", |r| {
            format!("{:.3}", sum(r, &|w| matches!(w, Writer::Scheduler | Writer::Kwok)) / r.steps as f64)
        }));
        o.push("  not caused by the steps (totals over the run; details in the JSON)".into());
        o.push(self.row(&format!("  {}", Writer::Background.label()), |r| {
            format!("{:.0}", sum(r, &|w| w == Writer::Background))
        }));
        o.push(
            self.row(&format!("  {}", Writer::Other.label()), |r| format!("{:.0}", sum(r, &|w| w == Writer::Other))),
        );

        o.push(String::new());
        o.push("EXACT, FROM THE BENCH NAMESPACE ONLY (per step; other clients cannot add to these)".into());
        o.push("  watch events: one per write that changed an object (a no-op or refused write makes none)".into());
        for (i, (label, _)) in Seen::default().rows().into_iter().enumerate() {
            o.push(self.row(&format!("  {label}"), |r| format!("{:.3}", r.seen.rows()[i].1 as f64 / r.steps as f64)));
        }
        o.push("  Event objects / occurrences, by reportingController".into());
        let mut reporters: Vec<&String> = self.results.iter().flat_map(|(_, r)| r.events.keys()).collect();
        reporters.sort();
        reporters.dedup();
        for who in reporters {
            o.push(self.row(&format!("  {who}"), |r| {
                let (objs, occ) = r.events.get(who).copied().unwrap_or_default();
                format!("{:.3} / {:.3}", objs as f64 / r.steps as f64, occ as f64 / r.steps as f64)
            }));
        }
        let kinds: Vec<&String> = {
            let mut k: Vec<&String> =
                self.results.iter().filter_map(|(_, r)| r.operator_writes.as_ref()).flat_map(|m| m.keys()).collect();
            k.sort();
            k.dedup();
            k
        };
        if !kinds.is_empty() {
            o.push("  operator's own count, hitl_api_writes_total (write attempts, by kind)".into());
            for kind in kinds {
                o.push(self.row(&format!("  {kind}"), |r| {
                    let n = r.operator_writes.as_ref().and_then(|m| m.get(kind)).copied().unwrap_or(0.0);
                    format!("{:.3}", n / r.steps as f64)
                }));
            }
        }

        let passes: std::collections::BTreeSet<&String> =
            self.results.iter().filter_map(|(_, r)| r.operator_passes.as_ref()).flat_map(|m| m.keys()).collect();
        if !passes.is_empty() {
            o.push("  operator's passes, by controller: run (hitl_reconciles_total) and skipped as nothing".into());
            o.push("  changed since its own write (hitl_passes_skipped_total)".into());
            for name in passes {
                o.push(self.row(&format!("  {name}"), |r| {
                    let n = r.operator_passes.as_ref().and_then(|m| m.get(name)).copied().unwrap_or(0.0);
                    format!("{:.3}", n / r.steps as f64)
                }));
            }
        }

        o.push(String::new());
        o.push("CROSS-CHECK: cluster-wide counter vs what the bench did or saw in its namespace".into());
        for (spec, r) in self.results {
            let c = r.cross_check();
            o.push(format!(
                "  {:<22} Workflow POST {} (bench created {}); Pod POST {} (Pods added {}); approval PATCH {} (bench sent {}): {}",
                spec.key,
                c.workflow_posts,
                r.workflows,
                c.pod_posts,
                r.seen.pods_added,
                c.approval_patches,
                r.approvals_patched,
                if c.clean {
                    "no other writers seen"
                } else {
                    "OTHER CLIENTS WROTE TOO: the counter figures above include them; the exact ones do not"
                }
            ));
        }
        o.join("\n")
    }

    /// The decision path part by part, for the runs that approved gates.
    fn path_text(&self, o: &mut Vec<String>) {
        o.push(String::new());
        o.push("DECISION PATH, PART BY PART (means over each run; the API server's histograms are".into());
        o.push("cluster-wide, the operator's its own; parts overlap: a pass includes its writes)".into());
        for (spec, r) in self.results.iter().filter(|(_, r)| r.approvals_patched > 0) {
            o.push(format!("  {}", Self::title(spec)));
            o.push(format!("    {:<62} {:>9} {:>9}", "part", "mean ms", "per gate"));
            for part in &r.path {
                let per_gate = part.count / r.approvals_patched as f64;
                o.push(format!("    {:<62} {:>9.2} {:>9.2}", part.name, part.mean_ms, per_gate));
            }
        }
    }

    fn json(&self) -> Value {
        let runs: Vec<Value> = self
            .results
            .iter()
            .map(|(spec, r)| {
                let per_step = |n: f64| n / r.steps as f64;
                let latency = stats(&r.latencies).map(|s| {
                    json!({
                        "count": s.count, "min_ms": s.min, "median_ms": s.median, "p90_ms": s.p90,
                        "p99_ms": s.p99, "max_ms": s.max, "mean_ms": s.mean, "missing": r.missing,
                    })
                });
                let writes: Vec<Value> = r
                    .writes
                    .iter()
                    .map(|(k, &n)| {
                        json!({
                            "writer": k.writer().label(), "verb": k.verb, "code": k.code,
                            "group": k.group, "resource": k.resource, "subresource": k.subresource,
                            "count": n, "per_step": per_step(n), "caused_by_steps": k.writer().per_step(),
                        })
                    })
                    .collect();
                let seen: BTreeMap<&str, Value> = r
                    .seen
                    .rows()
                    .into_iter()
                    .map(|(label, n)| (label, json!({"count": n, "per_step": per_step(n as f64)})))
                    .collect();
                let events: BTreeMap<&String, Value> = r
                    .events
                    .iter()
                    .map(|(who, &(objs, occ))| {
                        (who, json!({"objects": objs, "occurrences": occ, "objects_per_step": per_step(objs as f64), "occurrences_per_step": per_step(occ as f64)}))
                    })
                    .collect();
                let operator_writes = r.operator_writes.as_ref().map(|m| {
                    m.iter()
                        .map(|(k, &n)| (k.clone(), json!({"count": n, "per_step": per_step(n)})))
                        .collect::<BTreeMap<String, Value>>()
                });
                let c = r.cross_check();
                json!({
                    "key": spec.key,
                    "title": Self::title(spec),
                    "measure": match spec.shape {
                        Shape::Chain(_) | Shape::RealChain(_) => {
                            "pod seen Succeeded -> next step's pod seen ADDED (one pod watch)"
                        }
                        Shape::Gates(_) => "approve merge patch returned -> next step's pod seen ADDED",
                    },
                    "workflows": spec.workflows,
                    "concurrency": spec.concurrency,
                    "steps_per_workflow": spec.shape.steps().len(),
                    "steps": r.steps,
                    "elapsed_s": r.elapsed.as_secs_f64(),
                    "latency": latency,
                    "latencies_ms": r.latencies,
                    "path_parts": r.path.iter().map(|p| json!({
                        "part": p.name, "mean_ms": p.mean_ms, "count": p.count,
                    })).collect::<Vec<_>>(),
                    "apiserver_writes": writes,
                    "namespace_watch_events": seen,
                    "events_by_reporting_controller": events,
                    "operator_api_writes_total": operator_writes,
                    "operator_passes_per_step": r.operator_passes.as_ref().map(|m| {
                        m.iter().map(|(k, &n)| (k.clone(), n / r.steps as f64)).collect::<BTreeMap<String, f64>>()
                    }),
                    "cross_check": {
                        "workflows_created_by_bench": r.workflows,
                        "workflow_posts_counted": c.workflow_posts,
                        "pods_added_in_namespace": r.seen.pods_added,
                        "pod_posts_counted": c.pod_posts,
                        "approvals_patched_by_bench": r.approvals_patched,
                        "approval_patches_counted": c.approval_patches,
                        "no_other_writers_seen": c.clean,
                    },
                })
            })
            .collect();
        json!({
            "bench": "latency",
            "namespace": self.ns,
            "admission_policy": self.policy,
            "approve_after_ms": APPROVE_AFTER.as_millis() as u64,
            "at": jiff::Timestamp::now().to_string(),
            "runs": runs,
        })
    }
}

struct CrossCheck {
    workflow_posts: f64,
    pod_posts: f64,
    approval_patches: f64,
    clean: bool,
}

impl RunResult {
    fn cross_check(&self) -> CrossCheck {
        let count = |group: &str, resource: &str, verb: &str| -> f64 {
            self.writes
                .iter()
                .filter(|(k, _)| {
                    k.group == group && k.resource == resource && k.subresource.is_empty() && k.verb == verb
                })
                .map(|(_, v)| v)
                .sum::<f64>()
                + 0.0
        };
        let workflow_posts = count("hitl.dev", "workflows", "POST");
        let pod_posts = count("", "pods", "POST");
        let approval_patches = count("hitl.dev", "approvals", "PATCH");
        let others = self.writes.keys().any(|k| k.writer() == Writer::Other);
        let clean = pod_posts <= self.seen.pods_added as f64
            && workflow_posts <= self.workflows as f64
            && approval_patches <= self.approvals_patched as f64
            && !others;
        CrossCheck { workflow_posts, pod_posts, approval_patches, clean }
    }
}
