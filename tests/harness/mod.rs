//! Running the operator under test, and reading Workflows, for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::common::{self, kubectl, kubectl_ok, kubectl_stdin, repo_root, try_wait_for, wait_for};

/// Installs the generated CRDs and the admission policies once per test binary, as a user installs
/// them, and waits until they are served.
pub fn ensure_crds() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let crds = repo_root().join("crds/hitl.dev.yaml");
        kubectl_ok("admin", &["apply", "--server-side", "--force-conflicts", "-f", crds.to_str().unwrap()]);
        let established = ["wait", "--for=condition=Established", "--timeout=60s"];
        kubectl_ok("admin", &[&established[..], &["crd/workflows.hitl.dev", "crd/approvals.hitl.dev"]].concat());
        let policy = repo_root().join("config/policy");
        kubectl_ok("admin", &["apply", "--server-side", "--force-conflicts", "-f", policy.to_str().unwrap()]);
        wait_for_policies();
    });
}

/// The API server enforces a new policy only once its informers have seen it (about a second):
/// probe with server-side dry runs until the policies answer, so no test runs before they do.
fn wait_for_policies() {
    let approval = serde_json::json!({
        "apiVersion": "hitl.dev/v1alpha1", "kind": "Approval",
        "metadata": {"name": "policy-probe", "namespace": "default"},
        "spec": {"workflowRef": {"name": "probe", "uid": "probe"}, "step": "probe"},
    })
    .to_string();
    let workflow = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: policy-probe, namespace: default}\nspec:\n  steps: [{name: s, sleep: 1s}]\n";
    wait_for("the admission policies to take effect", Duration::from_secs(60), || {
        let refused = kubectl_stdin("admin", &["create", "--dry-run=server", "-f", "-"], &approval);
        let recorded = kubectl_stdin("admin", &["create", "--dry-run=server", "-o", "json", "-f", "-"], workflow);
        let created_by = serde_json::from_slice::<Value>(&recorded.stdout)
            .map(|w| w["metadata"]["annotations"]["hitl.dev/created-by"] == "admin")
            .unwrap_or(false);
        let dangling = kubectl_stdin(
            "admin",
            &["create", "--dry-run=server", "-f", "-"],
            &workflow.replace("sleep: 1s}", "sleep: 1s, dependsOn: [nope]}"),
        );
        let spec_checked = String::from_utf8_lossy(&dangling.stderr).contains("depends on a step that does not exist");
        (String::from_utf8_lossy(&refused.stderr).contains("Approvals are created only by")
            && created_by
            && spec_checked)
            .then_some(())
    });
}

/// The operator binary, running against one namespace, with its log in target/test-logs/.
pub struct Operator {
    child: Option<Child>,
    namespace: String,
    args: Vec<String>,
    /// Whose kubeconfig it runs with (`hack/cluster kubeconfig USER`).
    user: String,
    pub log: PathBuf,
}

impl Operator {
    /// The one operator of a test: no leader election.
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, "", &["--leader-elect=false"])
    }

    /// An operator with its own log (`<namespace><suffix>.log`) and extra flags.
    pub fn start_with(namespace: &str, log_suffix: &str, args: &[&str]) -> Self {
        Self::start_as(&operator_user(), namespace, log_suffix, args)
    }

    /// An operator running with `user`'s kubeconfig.
    pub fn start_as(user: &str, namespace: &str, log_suffix: &str, args: &[&str]) -> Self {
        ensure_crds();
        let log = repo_root().join("target/test-logs").join(format!("{namespace}{log_suffix}.log"));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut op = Operator { child: None, namespace: namespace.into(), args, user: user.into(), log };
        op.restart();
        op
    }

    /// Starts the process (again), appending to the same log.
    pub fn restart(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hitl-operator"))
            .args(["--namespace", &self.namespace, "--metrics-addr", "127.0.0.1:0"])
            // Operators of concurrent tests, each with the archive on, must not share its port.
            .args(["--archive-serve-addr", "127.0.0.1:0"])
            .args(&self.args)
            .env("KUBECONFIG", common::kubeconfig(&self.user))
            .env("RUST_LOG", "info,hitl_operator=debug,kube=warn")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start hitl-operator");
        self.child = Some(child);
    }

    /// The operator's /metrics page (its address is in the log, as the port is chosen at start).
    pub fn metrics(&self) -> String {
        let response = self.http_get("/metrics");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    /// `GET path` on the operator's metrics and probe server; the whole response, status line
    /// first. The connection has a timeout, so a stalled operator fails the test instead of
    /// hanging it.
    pub fn http_get(&self, path: &str) -> String {
        let addr = wait_for("the operator's metrics address", Duration::from_secs(20), || {
            let log = std::fs::read_to_string(&self.log).ok()?;
            let line = log.lines().rev().find(|l| l.contains("serving /metrics"))?;
            let at = line.find("addr=")? + 5;
            Some(line[at..].split_whitespace().next()?.to_string())
        });
        common::http_get(&addr, path, &[])
    }

    /// The process id of the running operator.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the operator runs").id()
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().expect("wait on the operator").is_none())
    }

    /// SIGTERM, as Kubernetes stops a Pod; waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        child.wait().expect("wait for the operator")
    }

    /// SIGKILL: no graceful shutdown, as when a node dies.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which kubeconfig the operator runs with: by default `operator`, a ServiceAccount token bound
/// to exactly the chart's ClusterRole (hack/operator-token), which proves that role is enough.
/// `HITL_OPERATOR_USER=admin` runs it as cluster admin instead.
pub fn operator_user() -> String {
    let user = std::env::var("HITL_OPERATOR_USER").unwrap_or_else(|_| "operator".into());
    if user == "operator" {
        static TOKEN: OnceLock<()> = OnceLock::new();
        TOKEN.get_or_init(|| {
            let out = Command::new(repo_root().join("hack/operator-token")).output().expect("run hack/operator-token");
            assert!(out.status.success(), "hack/operator-token failed: {}", String::from_utf8_lossy(&out.stderr));
        });
    }
    user
}

pub fn apply(ns: &str, yaml: &str) {
    let out = kubectl_stdin("admin", &["-n", ns, "apply", "-f", "-"], yaml);
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Applies and expects a refusal; returns the API server's message.
pub fn apply_refused(ns: &str, yaml: &str) -> String {
    let out = kubectl_stdin("admin", &["-n", ns, "apply", "-f", "-"], yaml);
    assert!(!out.status.success(), "expected a refusal, but it was accepted:\n{yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn get_json(ns: &str, kind: &str, name: &str) -> Option<Value> {
    let out = kubectl("admin", &["-n", ns, "get", kind, name, "-o", "json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("json"))
}

pub fn workflow(ns: &str, name: &str) -> Value {
    get_json(ns, "workflow", name).unwrap_or_else(|| panic!("workflow {ns}/{name} not found"))
}

pub fn phase(wf: &Value) -> &str {
    wf["status"]["phase"].as_str().unwrap_or("")
}

/// Waits until the Workflow reaches `want` (or any terminal phase, which then must be `want`).
/// On a timeout it says where the run stood.
pub fn wait_phase(ns: &str, name: &str, want: &str, timeout: Duration) -> Value {
    let wf = try_wait_for(timeout, || {
        let wf = workflow(ns, name);
        let p = phase(&wf).to_string();
        (p == want || p == "Succeeded" || p == "Failed").then_some(wf)
    })
    .unwrap_or_else(|| {
        let status = serde_json::to_string_pretty(&workflow(ns, name)["status"]).unwrap();
        panic!("timed out after {timeout:?} waiting for workflow {ns}/{name} to reach {want}; its status:\n{status}")
    });
    assert_eq!(
        phase(&wf),
        want,
        "workflow {name} ended {}: {}",
        phase(&wf),
        serde_json::to_string_pretty(&wf["status"]).unwrap()
    );
    wf
}

pub fn step<'a>(wf: &'a Value, name: &str) -> &'a Value {
    try_step(wf, name).unwrap_or_else(|| panic!("no status for step {name}: {}", wf["status"]))
}

/// The step's status, if the run has recorded one yet (for polling a run that may have just been
/// applied).
pub fn try_step<'a>(wf: &'a Value, name: &str) -> Option<&'a Value> {
    wf["status"]["steps"].as_array().and_then(|s| s.iter().find(|s| s["name"] == name))
}

/// The Pods of a Workflow, as JSON objects.
pub fn pods(ns: &str, workflow: &str) -> Vec<Value> {
    let out =
        kubectl_ok("admin", &["-n", ns, "get", "pods", "-l", &format!("hitl.dev/workflow={workflow}"), "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Events recorded on an object, as `reason: message` lines, one per occurrence (a repeated Event
/// is kept by the API server as one object with a count).
pub fn events(ns: &str, name: &str) -> Vec<String> {
    let out = kubectl_ok(
        "admin",
        &["-n", ns, "get", "events", "--field-selector", &format!("involvedObject.name={name}"), "-o", "json"],
    );
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| {
            let line = format!("{}: {}", e["reason"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""));
            let count = e["count"].as_u64().or(e["series"]["count"].as_u64()).unwrap_or(1).max(1);
            std::iter::repeat_n(line, count as usize)
        })
        .collect()
}

pub fn time(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

pub fn approval(ns: &str, name: &str) -> Value {
    get_json(ns, "approval", name).unwrap_or_else(|| panic!("approval {ns}/{name} not found"))
}

/// Waits until the Approval exists and the controller has stamped it Pending.
pub fn wait_pending(ns: &str, name: &str) -> Value {
    wait_for(&format!("approval {ns}/{name} to be Pending"), Duration::from_secs(60), || {
        get_json(ns, "approval", name).filter(|a| a["status"]["phase"] == "Pending")
    })
}

/// Waits until the Approval's status records its outcome. A run acts on a sound decision as soon
/// as it sees it, so its step may end a few milliseconds before the Approval's status says so.
pub fn wait_decided(ns: &str, name: &str) -> Value {
    wait_for(&format!("approval {ns}/{name} to record its outcome"), Duration::from_secs(60), || {
        get_json(ns, "approval", name).filter(|a| !matches!(a["status"]["phase"].as_str(), None | Some("Pending")))
    })
}

/// `kubectl patch approval` as `user`, with a merge patch; returns Ok(stdout) or Err(stderr).
pub fn patch_approval(user: &str, ns: &str, name: &str, patch: &str) -> Result<String, String> {
    let out = kubectl(user, &["-n", ns, "patch", "approval", name, "--type", "merge", "-p", patch]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The per-gate grant of an Approval: the Role (or RoleBinding, `kind`) it owns, if any. Its name
/// carries a hash of the Approval's UID, so it is found by owner.
pub fn grant(ns: &str, kind: &str, approval: &str) -> Option<Value> {
    let out =
        kubectl_ok("admin", &["-n", ns, "get", kind, "-l", "app.kubernetes.io/managed-by=hitl-operator", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array()?.iter().find(|o| o["metadata"]["ownerReferences"][0]["name"] == approval).cloned()
}
