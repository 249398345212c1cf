//! `make bench-scale`: hitl-operator under load on the local cluster. Figures only, no assertions.
//!
//! 1. The physical limit: N bare Pods created at once, no controller involved, from first create
//!    to last seen `Succeeded` (the same kwok timing the step Pods get).
//! 2. N one-Pod Workflows created at once: Workflows completed per minute, as a fraction of (1).
//! 3. Five-step Workflows, `HITL_SCALE_CHAINS` at once (and 20 at once): the step gap (a step's
//!    Pod seen `Succeeded` -> the next step's Pod seen `ADDED`, both in the bench's one Pod watch).
//! 4. One-gate Workflows approved by a scripted person as soon as they wait.
//! 5. The decision burst: `HITL_SCALE_BURST` (default 1000) gates wait at once and are all
//!    approved in one burst: per gate, the approving patch returned -> the next step's Pod seen.
//!
//! For each: the API server's `apiserver_request_total` delta by verb and resource, per Workflow
//! (cluster-wide: the scheduler and kwok are in it too; the bench's own requests are listed), 429s,
//! and the operator's CPU seconds and peak RSS (from /proc). The finished Workflows are kept, so
//! the last RSS figure is with all of them in the operator's caches.
//!
//! Knobs: `HITL_SCALE_N` (default 1000), `HITL_SCALE_CHAINS` (default 200), `HITL_SCALE_GATES`
//! (default 200), `HITL_SCALE_BURST` (default 1000), `HITL_SCALE_ONLY` (some of
//! `bare,one,ch20,chain,fan,gate,burst`, for a quicker look), `HITL_BENCH_OPERATOR_BIN` (another
//! operator binary), `HITL_BENCH_RUST_LOG` (its `RUST_LOG`, default `warn`), `HITL_SCALE_WRAP` (a
//! profiler to run the operator under),
//! `HITL_SCALE_ARCHIVE=1` (the decision archive on: `hack/postgres up`, its URL to the operator, so
//! the figures are with every decision and run written to PostgreSQL). Report on stdout and in
//! `target/bench/scale.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

#[path = "scale/burst.rs"]
mod burst;

const CREATE_CONCURRENCY: usize = 32;
const PHASE_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long after the last phase (and after a restart) the steady memory is read.
const SETTLE: Duration = Duration::from_secs(15);

/// Whether `HITL_SCALE_ONLY` (unset: every phase) names this phase.
fn wanted(phase: &str) -> bool {
    std::env::var("HITL_SCALE_ONLY").map_or(true, |only| only.split(',').any(|p| p.trim() == phase))
}

fn env_n(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    if let Err(e) = bench().await {
        eprintln!("\nbench-scale failed: {e:#}");
        std::process::exit(1);
    }
}

struct Cluster {
    root: PathBuf,
    client: Client,
    kubectl: PathBuf,
    admin: PathBuf,
}

impl Cluster {
    async fn connect() -> anyhow::Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let admin = PathBuf::from(output(&root, "hack/cluster", &["kubeconfig", "admin"])?.trim());
        let kubectl = PathBuf::from(output(&root, "hack/asset-path", &["kubectl"])?.trim());
        let kc = kube::config::Kubeconfig::read_from(&admin)?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        config.read_timeout = Some(Duration::from_secs(300));
        Ok(Self { client: Client::try_from(config)?, root, kubectl, admin })
    }

    fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.kubectl).arg("--kubeconfig").arg(&self.admin).args(args).output()?;
        if !out.status.success() {
            bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `apiserver_request_total` by (verb, resource[/subresource], code).
    /// An earlier run's namespaces are deleted as it ends; their garbage collection would run
    /// alongside this run's measurements.
    async fn wait_for_earlier_runs_to_go(&self) -> anyhow::Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let earlier = kube::api::ListParams::default().labels("hitl.dev/bench=true");
        let deadline = Instant::now() + PHASE_TIMEOUT;
        let mut told = false;
        while !namespaces.list(&earlier).await?.items.is_empty() {
            if !told {
                eprintln!("waiting for an earlier run's namespaces to be deleted ...");
                told = true;
            }
            if Instant::now() > deadline {
                bail!("earlier runs' namespaces (label hitl.dev/bench=true) are still there");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    fn requests(&self) -> anyhow::Result<HashMap<(String, String, String), f64>> {
        let mut out = HashMap::new();
        for line in self.kubectl(&["get", "--raw", "/metrics"])?.lines() {
            // The server's own time per request, as "code" `sum`/`count` (seconds, requests).
            let (rest, code) = if let Some(rest) = line.strip_prefix("apiserver_request_total{") {
                (rest, None)
            } else if let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_sum{") {
                (rest, Some("sum"))
            } else if let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_count{") {
                (rest, Some("count"))
            } else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
            let label = |k: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            let resource = match label("subresource").as_str() {
                "" => label("resource"),
                sub => format!("{}/{sub}", label("resource")),
            };
            let code = code.map_or_else(|| label("code"), str::to_string);
            *out.entry((label("verb"), resource, code)).or_default() += value.parse::<f64>().unwrap_or(0.0);
        }
        Ok(out)
    }
}

fn output(root: &Path, script: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(root.join(script)).args(args).output().with_context(|| format!("run {script}"))?;
    if !out.status.success() {
        bail!("{script}: {} (is the local cluster up? make cluster-up)", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The operator, as a process whose CPU and memory /proc tells, and its metrics port.
struct Operator(Child, u16);

impl Operator {
    fn start(c: &Cluster, ns: &str, log: &Path) -> anyhow::Result<Self> {
        let kubeconfig = output(&c.root, "hack/operator-token", &[])?;
        // Another build (say, the code before a change) to compare, as `make bench` takes it.
        let bin = std::env::var_os("HITL_BENCH_OPERATOR_BIN")
            .map_or_else(|| c.root.join("target/release/hitl-operator"), PathBuf::from);
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let metrics = format!("127.0.0.1:{port}");
        // `HITL_SCALE_WRAP="heaptrack -o target/bench/heap"` runs the operator under a profiler
        // (its CPU and memory figures are then the wrapper's).
        let wrap = std::env::var("HITL_SCALE_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut command = match wrap.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(wrap).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        command.args(["--namespace", ns, "--leader-elect=false", "--metrics-addr", &metrics]);
        if std::env::var("HITL_SCALE_ARCHIVE").is_ok_and(|v| v == "1") {
            output(&c.root, "hack/postgres", &["up"])?;
            command.args(["--archive-database-url", output(&c.root, "hack/postgres", &["url"])?.trim()]);
        }
        let child = command
            .env("KUBECONFIG", kubeconfig.trim())
            .env("RUST_LOG", std::env::var("HITL_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Self(child, port))
    }

    /// Waits until /readyz answers 200 (every watch has listed everything).
    async fn ready(&self) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.1);
        let deadline = Instant::now() + PHASE_TIMEOUT;
        while Instant::now() < deadline {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the operator did not become ready")
    }

    /// What the decision archive wrote, from the operator's metrics (non-zero series only).
    async fn archive_figures(&self) -> anyhow::Result<String> {
        let page = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.1)).await?.text().await?;
        let lines: Vec<&str> = page.lines().filter(|l| l.starts_with("hitl_archive") && !l.ends_with(" 0")).collect();
        Ok(lines.join("; "))
    }

    /// Resident memory now, MiB: (anonymous: heap and stacks, file-backed: the binary's pages).
    fn rss_split(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        };
        (kib("RssAnon:").unwrap_or(0.0) / 1024.0, kib("RssFile:").unwrap_or(0.0) / 1024.0)
    }

    /// (CPU seconds, peak RSS MiB, current RSS MiB).
    fn usage(&self) -> (f64, f64, f64) {
        let pid = self.0.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let cpu = (ticks(11) + ticks(12)) / 100.0;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (cpu, kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workflow_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("hitl.dev", "v1alpha1", "Workflow");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

fn approval_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("hitl.dev", "v1alpha1", "Approval");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

fn container_steps(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"name": format!("s{i}"), "container": {"image": "busybox:1.36"}})).collect()
}

/// What one phase measured.
#[derive(Default)]
struct Phase {
    name: String,
    count: usize,
    seconds: f64,
    per_minute: f64,
    gaps_ms: Vec<f64>,
    /// The decision burst's approving patch returned -> next step's Pod seen, per gate.
    decisions_ms: Vec<f64>,
    requests: BTreeMap<String, f64>,
    throttled: f64,
    cpu_seconds: f64,
    peak_rss_mib: f64,
}

/// Pod watch events for the step gap: (workflow, step index) -> (added, succeeded).
type PodTimes = HashMap<(String, usize), (Option<Instant>, Option<Instant>)>;

async fn bench() -> anyhow::Result<()> {
    let n = env_n("HITL_SCALE_N", 1000);
    let chains = env_n("HITL_SCALE_CHAINS", 200);
    let gates = env_n("HITL_SCALE_GATES", 200);
    let burst = env_n("HITL_SCALE_BURST", 1000);
    let c = Cluster::connect().await?;
    c.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", c.root.join("crds").to_str().unwrap()])?;
    c.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", c.root.join("config/policy").to_str().unwrap()])?;
    c.wait_for_earlier_runs_to_go().await?;
    let out_dir = c.root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut phases = vec![];

    let mut namespaces = vec![];
    // 1. Bare Pods, no controller.
    if wanted("bare") {
        let ns = namespace(&c, "bare").await?;
        phases.push(bare_pods(&c, &ns, n).await?);
        namespaces.push(ns);
    }

    // 2-4. The operator.
    let ns = namespace(&c, "scale").await?;
    namespaces.push(ns.clone());
    let op = Operator::start(&c, &ns, &out_dir.join("scale-operator.log"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut kept = 0;
    if wanted("one") {
        let one_pod = json!({"steps": container_steps(1)});
        phases.push(workflows(&c, &op, &ns, "one-Pod Workflows", "one", n, &one_pod, false).await?);
        kept += n;
    }
    let chain = json!({"steps": container_steps(5)});
    if wanted("ch20") {
        phases.push(workflows(&c, &op, &ns, "5-step Workflows, 20 at once", "ch20", 20, &chain, false).await?);
        kept += 20;
    }
    if wanted("chain") {
        let label = format!("5-step Workflows, {chains} at once");
        phases.push(workflows(&c, &op, &ns, &label, "chain", chains, &chain, false).await?);
        kept += chains;
    }
    if wanted("fan") {
        // A fan-out of 64 Pods running at once and a step after them: the reads of one pass
        // must not grow with the number of Pods running.
        let items: Vec<usize> = (0..64).collect();
        let list = serde_json::to_string(&items)?;
        let steps = json!([
            {"name": "fan", "forEach": {"list": list, "parallelism": 64}, "container": {"image": "busybox:1.36"}},
            {"name": "join", "container": {"image": "busybox:1.36"}},
        ]);
        let label = "forEach of 64 Pods at once + 1 step, 4 at once (per Workflow = per 65 Pods)";
        phases.push(workflows(&c, &op, &ns, label, "fan", 4, &json!({"steps": steps}), false).await?);
        kept += 4;
    }
    if wanted("gate") {
        let gate = json!({"steps": [{"name": "gate", "suspend": {}}, {"name": "after", "container": {"image": "busybox:1.36"}}]});
        let label = format!("gate + step, {gates} at once, approved on sight");
        phases.push(workflows(&c, &op, &ns, &label, "gate", gates, &gate, true).await?);
        kept += gates;
    }
    if wanted("burst") {
        phases.push(burst::phase(&c, &op, &ns, burst).await?);
        kept += burst;
    }
    if std::env::var("HITL_SCALE_ARCHIVE").is_ok_and(|v| v == "1") {
        println!("decision archive on: {}", op.archive_figures().await?);
    }
    // Steady: once the operator's periodic trim (every 10 s) could hand back what the phases freed.
    tokio::time::sleep(SETTLE).await;
    let (cpu, peak, rss) = op.usage();
    drop(op);
    // A restart lists everything kept: how long until ready, and the memory of the caches alone.
    let restarted = Instant::now();
    let op = Operator::start(&c, &ns, &out_dir.join("scale-operator-restart.log"))?;
    op.ready().await?;
    let ready_seconds = restarted.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let (_, restart_peak, restart_rss) = op.usage();
    let (anon, file) = op.rss_split();
    println!("{}", report(n, &phases));
    println!(
        "operator with {kept} finished Workflows kept, 15 s after the last phase: RSS {rss:.1} MiB, peak {peak:.1} MiB, CPU {cpu:.1} s in all"
    );
    println!(
        "restarted with them: ready in {ready_seconds:.1} s; RSS {restart_rss:.1} MiB ({anon:.1} MiB heap and \
         stacks, {file:.1} MiB the binary's pages), peak {restart_peak:.1} MiB"
    );
    let json = json!({
        "n": n, "kept_workflows": kept, "rss_mib": rss, "peak_rss_mib": peak, "cpu_seconds": cpu,
        "restart": {"ready_seconds": ready_seconds, "rss_mib": restart_rss, "peak_rss_mib": restart_peak,
                    "rss_anon_mib": anon, "rss_file_mib": file},
        "phases": phases.iter().map(|p| json!({
            "name": p.name, "count": p.count, "seconds": p.seconds, "per_minute": p.per_minute,
            "gap_ms": stats(&p.gaps_ms), "decision_ms": stats(&p.decisions_ms), "requests_per_item": p.requests, "throttled": p.throttled,
            "operator_cpu_seconds": p.cpu_seconds, "operator_peak_rss_mib": p.peak_rss_mib,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(out_dir.join("scale.json"), serde_json::to_string_pretty(&json)?)?;
    // What this run kept would weigh on the next one (etcd, the API server's caches): it goes,
    // while the operator still runs to release what it holds.
    let mut delete = vec!["delete", "namespace", "--wait=false"];
    delete.extend(namespaces.iter().map(String::as_str));
    c.kubectl(&delete)?;
    drop(op);
    println!("JSON: {}", out_dir.join("scale.json").display());
    Ok(())
}

async fn namespace(c: &Cluster, prefix: &str) -> anyhow::Result<String> {
    let name = format!("hitl-{prefix}-{}", std::process::id());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"hitl.dev/bench": "true"}}}))?;
    Api::<Namespace>::all(c.client.clone()).create(&PostParams::default(), &ns).await?;
    Ok(name)
}

/// Runs `create` for 0..count, `CREATE_CONCURRENCY` at a time.
async fn create_all<F, Fut>(count: usize, create: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    futures::stream::iter((0..count).map(create)).buffer_unordered(CREATE_CONCURRENCY).try_collect::<Vec<_>>().await?;
    Ok(())
}

async fn bare_pods(c: &Cluster, ns: &str, n: usize) -> anyhow::Result<Phase> {
    eprintln!("bare Pods: {n} ...");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    let before = c.requests()?;
    let watch = watch_until(pods.clone(), n, |p: &Pod| p.status.as_ref()?.phase.as_deref().map(|ph| ph == "Succeeded"));
    let watch = tokio::spawn(watch);
    let started = Instant::now();
    create_all(n, |i| {
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("bare-{i}")},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]},
            }))?;
            pods.create(&PostParams::default(), &pod).await?;
            Ok(())
        }
    })
    .await?;
    watch.await??;
    let seconds = started.elapsed().as_secs_f64();
    let (requests, throttled) = per_item(&before, &c.requests()?, n);
    Ok(Phase {
        name: "bare Pods (no controller)".into(),
        count: n,
        seconds,
        per_minute: n as f64 * 60.0 / seconds,
        requests,
        throttled,
        ..Default::default()
    })
}

/// Waits until `want` objects satisfy `done`, each counted once.
async fn watch_until<K, F>(api: Api<K>, want: usize, done: F) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(&K) -> Option<bool>,
{
    let mut seen = std::collections::HashSet::new();
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    while seen.len() < want {
        let next = tokio::time::timeout_at(deadline, stream.next()).await.context("phase timed out")?;
        if let Some(Ok(Event::Apply(obj) | Event::InitApply(obj))) = next
            && done(&obj) == Some(true)
        {
            seen.insert(obj.name_any());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn workflows(
    c: &Cluster,
    op: &Operator,
    ns: &str,
    name: &str,
    prefix: &str,
    count: usize,
    spec: &Value,
    approve: bool,
) -> anyhow::Result<Phase> {
    eprintln!("{name}: {count} ...");
    let api = workflow_api(&c.client, ns);
    let before = c.requests()?;
    let (cpu_before, _, _) = op.usage();
    let gaps = Arc::new(Mutex::new(vec![]));
    let gap_watch = tokio::spawn(step_gaps(Api::namespaced(c.client.clone(), ns), prefix.to_string(), gaps.clone()));
    let approver =
        approve.then(|| tokio::spawn(approve_on_sight(approval_api(&c.client, ns), prefix.to_string(), count)));
    let prefix_owned = format!("{prefix}-");
    let watch = tokio::spawn(watch_until(api.clone(), count, move |w: &DynamicObject| {
        Some(w.name_any().starts_with(&prefix_owned) && w.data["status"]["phase"] == "Succeeded")
    }));
    let started = Instant::now();
    create_all(count, |i| {
        let api = api.clone();
        let spec = spec.clone();
        async move {
            let mut wf = DynamicObject::new(
                &format!("{prefix}-{i}"),
                &ApiResource::from_gvk(&GroupVersionKind::gvk("hitl.dev", "v1alpha1", "Workflow")),
            );
            wf.data = json!({"spec": spec});
            api.create(&PostParams::default(), &wf).await?;
            Ok(())
        }
    })
    .await?;
    watch.await??;
    let seconds = started.elapsed().as_secs_f64();
    gap_watch.abort();
    let gaps_ms = gaps.lock().unwrap().clone();
    if let Some(a) = approver {
        a.abort();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // trailing writes
    let (requests, throttled) = per_item(&before, &c.requests()?, count);
    let (cpu, peak, _) = op.usage();
    Ok(Phase {
        name: name.into(),
        count,
        seconds,
        per_minute: count as f64 * 60.0 / seconds,
        gaps_ms,
        requests,
        throttled,
        cpu_seconds: cpu - cpu_before,
        peak_rss_mib: peak,
        ..Default::default()
    })
}

/// Records the step gaps of Workflows named `<prefix>-*` into `gaps`, from the bench's one Pod
/// watch, until aborted.
async fn step_gaps(pods: Api<Pod>, prefix: String, gaps: Arc<Mutex<Vec<f64>>>) {
    let mut times: PodTimes = HashMap::new();
    let mut stream = watcher::watcher(pods, watcher::Config::default().labels("hitl.dev/workflow")).boxed();
    while let Some(event) = stream.next().await {
        let Ok(Event::Apply(pod) | Event::InitApply(pod)) = event else { continue };
        let labels = pod.labels();
        let (Some(wf), Some(step)) = (labels.get("hitl.dev/workflow"), labels.get("hitl.dev/step")) else { continue };
        let Some(index) = step.strip_prefix('s').and_then(|s| s.parse::<usize>().ok()) else { continue };
        if !wf.starts_with(&format!("{prefix}-")) {
            continue;
        }
        let now = Instant::now();
        let first_sight = !times.contains_key(&(wf.clone(), index));
        let entry = times.entry((wf.clone(), index)).or_default();
        entry.0.get_or_insert(now);
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded") && entry.1.is_none() {
            entry.1 = Some(now);
        }
        let previous_done = index.checked_sub(1).and_then(|p| times.get(&(wf.clone(), p))).and_then(|e| e.1);
        if let (true, Some(done)) = (first_sight, previous_done) {
            gaps.lock().unwrap().push(now.duration_since(done).as_secs_f64() * 1000.0);
        }
    }
}

/// A scripted person: approves each `<prefix>-*` gate once it is Pending.
async fn approve_on_sight(api: Api<DynamicObject>, prefix: String, count: usize) {
    let mut done = std::collections::HashSet::new();
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    while done.len() < count {
        let Some(Ok(Event::Apply(a) | Event::InitApply(a))) = stream.next().await else { continue };
        let name = a.name_any();
        if !name.starts_with(&format!("{prefix}-")) || a.data["status"]["phase"] != "Pending" || done.contains(&name) {
            continue;
        }
        let patch = json!({"spec": {"decision": "Approve"}});
        if api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
            done.insert(name);
        }
    }
}

/// Requests per item by "VERB resource", and the 429s, between two snapshots.
fn per_item(
    before: &HashMap<(String, String, String), f64>,
    after: &HashMap<(String, String, String), f64>,
    items: usize,
) -> (BTreeMap<String, f64>, f64) {
    let mut by = BTreeMap::new();
    let mut throttled = 0.0;
    let delta = |key: &(String, String, String)| {
        after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
    };
    for key in after.keys().filter(|k| k.2 == "count") {
        let (count, seconds) = (delta(key), delta(&(key.0.clone(), key.1.clone(), "sum".into())));
        if count >= items as f64 * 0.5 && matches!(key.0.as_str(), "POST" | "PUT" | "PATCH") {
            by.insert(format!("~ server ms per {} {}", key.0, key.1), 1000.0 * seconds / count);
        }
    }
    for (key, v) in after {
        let d = v - before.get(key).copied().unwrap_or(0.0);
        if d <= 0.0 || key.2 == "sum" || key.2 == "count" {
            continue;
        }
        if key.2 == "429" {
            throttled += d;
        }
        *by.entry(format!("{} {}", key.0, key.1)).or_insert(0.0) += d / items as f64;
    }
    by.retain(|_, v| *v >= 0.01);
    (by, throttled)
}

fn stats(values: &[f64]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    json!({"n": v.len(), "p50": at(0.5), "p99": at(0.99), "max": v[v.len() - 1]})
}

/// `  what: p50 .. ms, p99 .. ms, max .. ms (n = ..)`, when there are values.
fn stats_line(what: &str, values_ms: &[f64]) -> Option<String> {
    let s = stats(values_ms);
    let at = |q: &str| s[q].as_f64().unwrap_or(0.0);
    s.is_object().then(|| {
        format!("  {what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})", at("p50"), at("p99"), at("max"), s["n"])
    })
}

fn report(n: usize, phases: &[Phase]) -> String {
    let limit =
        phases.iter().find(|p| p.cpu_seconds == 0.0 && p.name.starts_with("bare")).map_or(0.0, |p| p.per_minute);
    let mut out = vec![format!("\nSCALE (N = {n}; 2-core machine, local cluster with a kwok node)")];
    for p in phases {
        let share =
            if limit > 0.0 { format!(" ({:.0} % of bare Pods)", 100.0 * p.per_minute / limit) } else { String::new() };
        out.push(format!("\n{}: {} in {:.1} s = {:.0}/min{share}", p.name, p.count, p.seconds, p.per_minute));
        out.extend(stats_line("step gap", &p.gaps_ms));
        out.extend(stats_line("approving patch returned -> next Pod seen", &p.decisions_ms));
        if p.cpu_seconds > 0.0 {
            out.push(format!("  operator: {:.1} CPU s, peak RSS {:.1} MiB", p.cpu_seconds, p.peak_rss_mib));
        }
        out.push(format!(
            "  API requests per item (all clients), 429s: {}; '~' lines: the API server's mean time per request",
            p.throttled
        ));
        for (k, v) in &p.requests {
            out.push(format!("    {k:<40} {v:>8.2}"));
        }
    }
    out.join("\n")
}
