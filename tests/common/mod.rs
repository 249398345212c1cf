//! Helpers shared by the integration tests. They drive the local cluster started by `hack/cluster up`
//! (`make cluster-up`) through `kubectl`, as its users would: `admin` (system:masters), `alice`
//! and `carol` (group `legal`), `bob` (no group). Without a reachable cluster every helper that
//! needs one panics with instructions: an integration test never passes silently.

// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

pub mod archive_api;
pub mod fixtures;
pub mod postgres;
pub mod watch;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The crate's root directory (where `hack/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubectl plugin, `kubectl-hitl`, as cargo built it for this test's profile and target.
///
/// The plugin is a binary of another package of the workspace (hitl-client), and cargo sets
/// `CARGO_BIN_EXE_<name>` only for the test's own package, nor does it build other packages'
/// binaries for `cargo test --test X`. So it is looked up next to this test executable
/// (`<target>/<profile>/deps/<test>`, the plugin in `<target>/<profile>/`; `CARGO_TARGET_DIR` and
/// `--target` included), and it must be built first (`make test-integration` does): a missing or
/// stale one panics rather than testing the plugin of some other version.
pub fn plugin_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        let dir = exe.parent().and_then(|deps| deps.parent()).expect("the test executable is in <profile>/deps/");
        let bin = dir.join(format!("kubectl-hitl{}", std::env::consts::EXE_SUFFIX));
        const BUILD: &str = "run `cargo build --workspace --bins` first";
        let built = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| panic!("no kubectl plugin at {}: {BUILD}", bin.display()));
        let sources = ["crates/hitl-api", "crates/hitl-engine", "crates/hitl-client", "Cargo.lock"];
        if let Some(newer) = sources.iter().filter_map(|s| newest_file(&repo_root().join(s))).find(|(t, _)| *t > built)
        {
            panic!("the kubectl plugin at {} is older than {}: {BUILD}", bin.display(), newer.1.display());
        }
        bin
    })
    .clone()
}

/// The most recently modified file under `path` (or `path` itself), and when.
fn newest_file(path: &std::path::Path) -> Option<(SystemTime, PathBuf)> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some((meta.modified().ok()?, path.to_path_buf()));
    }
    std::fs::read_dir(path).ok()?.flatten().filter_map(|e| newest_file(&e.path())).max_by_key(|(t, _)| *t)
}

const NO_CLUSTER: &str = "no local Kubernetes cluster is reachable: start one with `make cluster-up` \
     (or `hack/cluster up`), then rerun the tests";

fn hack(script: &str, args: &[&str]) -> Output {
    let path = repo_root().join("hack").join(script);
    Command::new(&path).args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
}

/// The kubectl to use: `$KUBECTL` if set, else the pinned one (`hack/asset-path kubectl`).
pub fn kubectl_bin() -> PathBuf {
    if let Some(k) = std::env::var_os("KUBECTL").filter(|k| !k.is_empty()) {
        return PathBuf::from(k);
    }
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = hack("asset-path", &["kubectl"]);
        assert!(out.status.success(), "hack/asset-path kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            path.is_file(),
            "kubectl is not built at {} ({NO_CLUSTER}; it builds kubectl too), or set $KUBECTL",
            path.display()
        );
        path
    })
    .clone()
}

/// Whether the API server answered /readyz, checked once per test binary.
fn cluster_reachable(kubeconfig: &PathBuf) -> Result<(), String> {
    static REACHABLE: OnceLock<Result<(), String>> = OnceLock::new();
    REACHABLE
        .get_or_init(|| {
            let out = Command::new(kubectl_bin())
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["get", "--raw", "/readyz", "--request-timeout=10s"])
                .output()
                .map_err(|e| format!("cannot run kubectl: {e}"))?;
            if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) }
        })
        .clone()
}

/// Absolute path of `user`'s kubeconfig (`hack/cluster kubeconfig USER`), cached per user.
/// Panics, saying how to start one, when no local cluster is up or reachable.
pub fn kubeconfig(user: &str) -> PathBuf {
    if let Some(p) = cached_kubeconfig(user) {
        return p;
    }
    let out = hack("cluster", &["kubeconfig", user]);
    if !out.status.success() {
        panic!("{NO_CLUSTER}\n(hack/cluster kubeconfig {user}: {})", String::from_utf8_lossy(&out.stderr).trim());
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if let Err(e) = cluster_reachable(&path) {
        panic!("{NO_CLUSTER}\n(kubectl get --raw /readyz as {user}: {e})");
    }
    kubeconfigs().lock().unwrap_or_else(|e| e.into_inner()).insert(user.to_string(), path.clone());
    path
}

/// Mints `user` (no groups) in the local cluster once per test binary, beside the four built in.
pub fn add_user(user: &str) {
    static ADDED: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let mut added = ADDED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if added.iter().any(|u| u == user) {
        return;
    }
    let out = hack("cluster", &["add-user", user]);
    assert!(out.status.success(), "hack/cluster add-user {user}: {}", String::from_utf8_lossy(&out.stderr));
    added.push(user.to_string());
}

fn kubeconfigs() -> &'static Mutex<HashMap<String, PathBuf>> {
    static CACHE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn cached_kubeconfig(user: &str) -> Option<PathBuf> {
    // A panic elsewhere while holding the lock must not turn every later call into a PoisonError.
    kubeconfigs().lock().unwrap_or_else(|e| e.into_inner()).get(user).cloned()
}

fn command(user: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(kubectl_bin());
    cmd.arg("--kubeconfig").arg(kubeconfig(user)).args(args);
    cmd
}

fn describe(user: &str, args: &[&str], out: &Output) -> String {
    format!(
        "kubectl (as {user}) {}\nexit: {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Runs kubectl as `user`; the caller judges the outcome.
pub fn kubectl(user: &str, args: &[&str]) -> Output {
    command(user, args).output().unwrap_or_else(|e| panic!("cannot run kubectl: {e}"))
}

/// Runs kubectl as `user` and returns its stdout; panics (showing args and stderr) if it fails.
pub fn kubectl_ok(user: &str, args: &[&str]) -> String {
    let out = kubectl(user, args);
    if !out.status.success() {
        panic!("expected success:\n{}", describe(user, args, &out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs kubectl as `user`, expecting it to fail; returns its stderr. Panics if it succeeded.
pub fn kubectl_err(user: &str, args: &[&str]) -> String {
    let out = kubectl(user, args);
    if out.status.success() {
        panic!("expected failure:\n{}", describe(user, args, &out));
    }
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs kubectl as `user` with `stdin` as its input (e.g. `apply -f -`).
pub fn kubectl_stdin(user: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = command(user, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_owned();
    // Written from a thread so a kubectl that answers before reading everything cannot deadlock
    // us; a kubectl that exits without reading yields a broken pipe, which is its answer.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(data.as_bytes());
    });
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("kubectl: {e}"));
    let _ = writer.join();
    out
}

/// `kubectl apply -f -` of `manifest` (YAML or JSON) as `user`; panics on failure.
pub fn apply_ok(user: &str, manifest: &str) -> String {
    let args = ["apply", "-f", "-"];
    let out = kubectl_stdin(user, &args, manifest);
    if !out.status.success() {
        panic!("expected success:\n{}\nmanifest:\n{manifest}", describe(user, &args, &out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl -n ns get resource -o jsonpath=path` as `user`. `path` may omit the braces
/// (`.status.phase` is `{.status.phase}`). Panics if the object cannot be read.
pub fn jsonpath(user: &str, ns: &str, resource: &str, path: &str) -> String {
    try_jsonpath(user, ns, resource, path).unwrap_or_else(|| {
        let p = braced(path);
        let args = ["-n", ns, "get", resource, "-o", &p];
        panic!("expected success:\n{}", describe(user, &args, &kubectl(user, &args)));
    })
}

/// Like [`jsonpath`], but `None` when kubectl fails (e.g. the object does not exist yet).
pub fn try_jsonpath(user: &str, ns: &str, resource: &str, path: &str) -> Option<String> {
    let p = braced(path);
    let out = kubectl(user, &["-n", ns, "get", resource, "-o", &p]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn braced(path: &str) -> String {
    if path.starts_with('{') { format!("jsonpath={path}") } else { format!("jsonpath={{{path}}}") }
}

/// `kubectl -n ns get resource -o json` as `user`, parsed. Panics if it cannot be read.
pub fn get_json(user: &str, ns: &str, resource: &str) -> serde_json::Value {
    let out = kubectl_ok(user, &["-n", ns, "get", resource, "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl get {resource}: bad JSON: {e}"))
}

/// Polls `f` about every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    try_wait_for(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `f` about every 50 ms until it returns `Some`; `None` after `timeout` (the caller says
/// what it saw).
pub fn try_wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `prefix` plus a suffix unique across concurrent tests and test processes, usable as a DNS
/// label (lower-case alphanumerics and '-', at most 63 characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64 ^ d.as_secs()).unwrap_or(0);
    let suffix = format!(
        "{}{}{}",
        base36(std::process::id() as u64),
        base36(nanos % 36u64.pow(4)),
        base36(COUNTER.fetch_add(1, Ordering::Relaxed))
    );
    let mut p: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    p.truncate(62 - suffix.len());
    let p = p.trim_matches('-');
    if p.is_empty() { format!("t{suffix}") } else { format!("{p}-{suffix}") }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).expect("ascii")
}

/// A namespace of its own for one test, created by `admin` and deleted (without waiting) when
/// dropped, also when the test panics. Set `HITL_KEEP_NAMESPACES=1` to keep them for a look.
pub struct TestNamespace {
    pub name: String,
}

/// Creates a uniquely named namespace `prefix-<suffix>`, labelled `hitl.dev/test=true` so that
/// leftovers can be swept (`kubectl delete ns -l hitl.dev/test=true`), and enforcing the Pod
/// Security Standard `restricted` as a careful cluster would: every step Pod must pass it.
pub fn test_namespace(prefix: &str) -> TestNamespace {
    let name = unique_name(prefix);
    apply_ok(
        "admin",
        &serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {
                "hitl.dev/test": "true",
                "pod-security.kubernetes.io/enforce": "restricted",
            }},
        })
        .to_string(),
    );
    TestNamespace { name }
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("HITL_KEEP_NAMESPACES").is_some_and(|v| !v.is_empty() && v != "0") {
            eprintln!("keeping namespace {}", self.name);
            return;
        }
        // Best effort, and nothing here may panic: drop also runs while a failed test unwinds.
        // test_namespace() has cached admin's kubeconfig and the kubectl path.
        let Some(kc) = cached_kubeconfig("admin") else {
            return;
        };
        let _ = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(kc)
            .args(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The local cluster's real node (`hack/cluster up` starts it where the host can run it).
pub const REAL_NODE: &str = "real-node-0";

/// Panics, saying how to get one, unless the real node is Ready and its kubelet alive (it renewed
/// its node Lease lately: no node controller runs here to mark a node whose kubelet died).
pub fn require_real_node() {
    let how = "`hack/cluster up` starts one on Linux as root (it said why not when it started; \
               HITL_REAL_NODE=0 turns it off)";
    let ready = kubectl(
        "admin",
        &["get", "node", REAL_NODE, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"],
    );
    assert!(
        ready.status.success() && ready.stdout == b"True",
        "the local cluster has no Ready real node {REAL_NODE}: {how}. kubectl: {}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let renewed =
        kubectl_ok("admin", &["-n", "kube-node-lease", "get", "lease", REAL_NODE, "-o", "jsonpath={.spec.renewTime}"]);
    let renewed: jiff::Timestamp = renewed.parse().unwrap_or_else(|e| panic!("renewTime {renewed:?}: {e}"));
    let age = jiff::Timestamp::now().duration_since(renewed);
    assert!(
        age.as_secs() < 40,
        "the kubelet of {REAL_NODE} last renewed its Lease {age:#} ago: it is not running ({how})"
    );
}

/// A plain HTTP/1.1 GET of `path` on `addr` (host:port) with `headers` (`Name: value`), the
/// connection closed after it; the whole response, status line first. It times out, so a
/// stalled server fails the test instead of hanging it.
pub fn http_get(addr: &str, path: &str, headers: &[&str]) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    response
}
