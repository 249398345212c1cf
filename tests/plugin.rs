//! The `kubectl hitl` plugin, typed as a person at a gate would: `kubectl hitl ...` with the
//! built plugin, its completion script and kubectl on PATH, as alice, bob or admin.

mod common;
mod harness;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{kubeconfig, kubectl_bin, repo_root, test_namespace, unique_name};
use harness::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a run printed, and whether it succeeded.
struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A directory like a user's ~/bin: kubectl, kubectl-hitl and kubectl_complete-hitl.
fn bin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique_name("hitl-path"));
        std::fs::create_dir_all(&dir).unwrap();
        let link = |from: &Path, name: &str| std::os::unix::fs::symlink(from, dir.join(name)).unwrap();
        link(&kubectl_bin(), "kubectl");
        link(&common::plugin_bin(), "kubectl-hitl");
        link(&repo_root().join("dist/kubectl_complete-hitl"), "kubectl_complete-hitl");
        dir
    })
    .clone()
}

/// `kubectl ARGS` with PATH holding only the user's bin directory and the system's, and
/// KUBECONFIG set to `kubeconfig`.
fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Run {
    let path = format!("{}:/usr/bin:/bin", bin_dir().display());
    let out = Command::new("kubectl").args(args).env("PATH", &path).env("KUBECONFIG", kubeconfig).output().unwrap();
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kubectl hitl ARGS` as `user`.
fn hitl(user: &str, args: &[&str]) -> Run {
    kubectl_with(&kubeconfig(user), &[&["hitl"], args].concat())
}

/// A failure told in one line, `error: ...`, with none of Rust's debug formatting.
fn assert_one_line_error(run: &Run, want: &str) {
    assert!(!run.ok && run.code.is_some_and(|c| c != 0), "expected a failure: {run}");
    assert_eq!(run.stderr.lines().count(), 1, "not one line: {run}");
    assert!(run.stderr.starts_with("error: ") && run.stderr.contains(want), "{want:?} missing: {run}");
    for debug in ["Api(", "ErrorResponse", "Status {", "ApiError"] {
        assert!(!run.stderr.contains(debug), "debug output {debug:?}: {run}");
    }
}

const SHIP: &str = "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: ship}\nspec:\n  steps:\n    - name: go\n      suspend:\n        message: Ship release 1.2?\n        approvers: {users: [alice], groups: [release]}\n        timeoutSeconds: 7200\n        selfApproval: Forbid\n        inputs:\n          - {name: priority, type: integer, required: true, minimum: 1, maximum: 5, default: 3, description: How urgent}\n          - {name: channel, enum: [stable, beta]}\n          - {name: ticket, pattern: '^OPS-[0-9]+$'}\n    - name: after\n      sleep: 1s\n";

/// A namespace with the operator and the `ship` Workflow waiting at its gate `ship.go`.
fn ship() -> (common::TestNamespace, Operator) {
    let ns = test_namespace("plugin");
    let op = Operator::start(&ns.name);
    apply(&ns.name, SHIP);
    wait_pending(&ns.name, "ship.go");
    (ns, op)
}

#[test]
fn describe_shows_what_a_gate_asks_who_decides_and_the_time_left() {
    let (ns, _op) = ship();
    // alice holds only the gate's grant (get and patch on this Approval).
    let run = hitl("alice", &["describe", "ship.go", "-n", &ns.name]);
    assert!(run.ok, "{run}");
    for want in [
        "Name:           ship.go\n",
        &format!("Namespace:      {}\n", ns.name),
        "Workflow:       ship\n",
        "Step:           go\n",
        "Phase:          Pending\n",
        "Message:        Ship release 1.2?\n",
        "  priority (integer, 1..5, default 3, required): How urgent\n",
        "  channel (string, one of stable|beta)\n",
        "  ticket (string, matching ^OPS-[0-9]+$)\n",
        "  Users:              alice\n",
        "  Groups:             release\n",
        "  Required approvals: 1\n",
        "  Self-approval:      Forbid (the Workflow's creator, admin, may not decide)\n",
        "On timeout:     Reject\n",
        "Decision:       <none>\n",
        &format!("Decide with:    kubectl hitl approve ship.go -n {} --input priority=<value>\n", ns.name),
    ] {
        assert!(run.stdout.contains(want), "{want:?} missing:\n{run}");
    }
    // The deadline as the cluster recorded it, and the time left: two hours from the gate's
    // opening, less the seconds since.
    let deadline = approval(&ns.name, "ship.go")["spec"]["expiresAt"].as_str().unwrap().to_string();
    let expires = run.stdout.lines().find(|l| l.starts_with("Expires:")).unwrap_or_default();
    assert!(expires.starts_with(&format!("Expires:        {deadline} (in ")), "{run}");
    let left = expires.split("(in ").nth(1).unwrap().trim_end_matches(')');
    let (h, m) = left.trim_end_matches('m').split_once("h ").unwrap();
    let minutes: u32 = h.parse::<u32>().unwrap() * 60 + m.parse::<u32>().unwrap();
    assert!((110..=120).contains(&minutes), "{left} left of a two-hour gate just opened: {run}");

    // The same gate by WORKFLOW/STEP, found through the Workflow's status (admin may read it).
    let by_step = hitl("admin", &["describe", "ship/go", "-n", &ns.name]);
    assert!(by_step.ok && by_step.stdout.contains("Name:           ship.go\n"), "{by_step}");
}

#[test]
fn output_json_and_yaml_are_the_approval_objects() {
    let (ns, _op) = ship();
    let run = hitl("admin", &["describe", "ship/go", "-n", &ns.name, "-o", "json"]);
    assert!(run.ok, "{run}");
    let a: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run}"));
    assert_eq!((a["kind"].as_str(), a["metadata"]["name"].as_str()), (Some("Approval"), Some("ship.go")), "{run}");
    assert_eq!(a["spec"]["inputs"][0]["name"], "priority");
    assert!(a["metadata"].get("managedFields").is_none(), "{run}");

    let run = hitl("admin", &["pending", "-n", &ns.name, "-o", "yaml"]);
    let list: Value = serde_yaml::from_str(&run.stdout).unwrap_or_else(|e| panic!("not YAML ({e}): {run}"));
    assert_eq!(list["kind"], "List");
    let names: Vec<_> = list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect();
    assert_eq!(names, ["ship.go"], "{run}");

    let run = hitl("admin", &["pending", "-A", "-o", "name"]);
    assert!(run.ok && run.stdout.lines().any(|l| l == "approval.hitl.dev/ship.go"), "{run}");
}

#[test]
fn approving_by_workflow_and_step_moves_the_run() {
    let (ns, _op) = ship();
    let run = hitl("admin", &["pending", "-n", &ns.name]);
    assert!(run.ok && run.stdout.contains("ship.go") && run.stdout.contains("Ship release 1.2?"), "{run}");

    // A bad input: the admission policy's message, on one line, and the gate stays open.
    let bad = hitl("alice", &["approve", "ship/go", "-n", &ns.name, "--input", "priority=two"]);
    assert_one_line_error(&bad, "input priority: must be of type integer");
    // alice may not read the Workflow: the plugin names the gate as the controller does.
    let args = ["approve", "ship/go", "-n", &ns.name, "--input", "priority=2", "--input", "channel=beta"];
    let run = hitl("alice", &[&args[..], &["--comment", "go"]].concat());
    assert!(run.ok && run.stdout == "approval ship.go approved by alice\n", "{run}");
    let wf = wait_phase(&ns.name, "ship", "Succeeded", Duration::from_secs(60));
    assert_eq!(step(&wf, "go")["outputs"]["priority"], "2");
    assert_eq!(step(&wf, "go")["outputs"]["channel"], "beta");

    let run = hitl("alice", &["describe", "ship.go", "-n", &ns.name]);
    for want in [
        "Phase:          Approved\n",
        "Decision:       Approve\n",
        "  Decided by:         alice\n",
        "  Comment:            go\n",
        "  Input:              channel=beta priority=2\n",
    ] {
        assert!(run.stdout.contains(want), "{want:?} missing:\n{run}");
    }
    assert!(!run.stdout.contains("Decide with"), "{run}");
    let run = hitl("admin", &["pending", "-n", &ns.name]);
    assert!(run.ok && !run.stdout.contains("ship.go"), "{run}");
}

#[test]
fn errors_are_one_line_from_the_api_server() {
    let (ns, _op) = ship();
    // bob is not an approver and holds no grant: RBAC refuses, and he is told so in its words.
    let run = hitl("bob", &["approve", "ship.go", "-n", &ns.name, "--input", "priority=2"]);
    assert_one_line_error(&run, "approvals.hitl.dev \"ship.go\" is forbidden: User \"bob\" cannot patch");
    // Nothing waits for bob: said plainly, not as an error (he reads only his own inboxes).
    let run = hitl("bob", &["pending", "-n", &ns.name]);
    assert!(run.ok && run.stdout.contains("No gates are waiting for you."), "{run}");
    let run = hitl("bob", &["pending", "-A"]);
    assert_one_line_error(&run, "you may not list Approvals in all namespaces");
    let run = hitl("admin", &["describe", "nope", "-n", &ns.name]);
    assert_one_line_error(&run, &format!("approval \"nope\" not found in namespace \"{}\"", ns.name));
    let run = hitl("admin", &["reject", "nope/go", "-n", &ns.name]);
    assert_one_line_error(&run, &format!("workflow \"nope\" not found in namespace \"{}\"", ns.name));
    let run = hitl("admin", &["approve", "ship/after", "-n", &ns.name]);
    assert_one_line_error(&run, "step \"after\" of workflow \"ship\" has no approval");
    // Nothing was decided.
    assert_eq!(approval(&ns.name, "ship.go")["status"]["phase"], "Pending");
}

/// A kubeconfig whose current context points at nothing, and a context `good` (admin's, with
/// `namespace` as its namespace).
fn two_contexts(namespace: &str) -> PathBuf {
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(kubeconfig("admin")).unwrap()).unwrap();
    let current = admin["current-context"].as_str().unwrap();
    let ctx = admin["contexts"].as_array().unwrap().iter().find(|c| c["name"] == current).unwrap();
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "broken",
        "clusters": [
            admin["clusters"].as_array().unwrap().iter().find(|c| c["name"] == ctx["context"]["cluster"]).unwrap(),
            {"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}},
        ],
        "users": [admin["users"].as_array().unwrap().iter().find(|u| u["name"] == ctx["context"]["user"]).unwrap()],
        "contexts": [
            {"name": "broken", "context": {"cluster": "nowhere", "user": ctx["context"]["user"]}},
            {"name": "good", "context": {"cluster": ctx["context"]["cluster"], "user": ctx["context"]["user"], "namespace": namespace}},
        ],
    });
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique_name("contexts")));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

#[test]
fn context_selects_a_kubeconfig_context() {
    let (ns, _op) = ship();
    let config = two_contexts(&ns.name);
    let broken = kubectl_with(&config, &["hitl", "pending"]);
    assert_one_line_error(&broken, "127.0.0.1:1");
    // The context's namespace is the default one, as in kubectl; the flag goes before or after.
    for args in [["hitl", "pending", "--context", "good"], ["hitl", "--context", "good", "pending"]] {
        let run = kubectl_with(&config, &args);
        assert!(run.ok && run.stdout.contains("ship.go"), "{args:?}: {run}");
    }
    let explicit = kubectl_with(
        Path::new("/nonexistent"),
        &["hitl", "--kubeconfig", config.to_str().unwrap(), "--context", "good", "describe", "ship.go"],
    );
    assert!(explicit.ok && explicit.stdout.contains("Phase:          Pending"), "{explicit}");
    let unknown = kubectl_with(&config, &["hitl", "pending", "--context", "nope"]);
    assert_one_line_error(&unknown, "context \"nope\" does not exist in the kubeconfig");
    let _ = std::fs::remove_file(config);
}

#[test]
fn completion_scripts_and_kubectl_completion() {
    let (ns, _op) = ship();
    let bash = hitl("admin", &["completion", "bash"]);
    assert!(bash.ok && bash.stdout.contains("kubectl-hitl"), "{bash}");
    for sub in ["pending", "describe", "approve", "reject", "completion", "--context", "--output"] {
        assert!(bash.stdout.contains(sub), "{sub} missing from the bash script");
    }
    // bash parses the script, and it registers the completion function.
    let check = Command::new("bash")
        .args(["-c", "source /dev/stdin && complete -p kubectl-hitl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), bash.stdout.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(check.status.success() && String::from_utf8_lossy(&check.stdout).contains("kubectl-hitl"), "{check:?}");
    for shell in ["zsh", "fish"] {
        let run = hitl("admin", &["completion", shell]);
        assert!(run.ok && run.stdout.contains("describe"), "{shell}: {run}");
    }

    // kubectl's own completion (what `kubectl hitl <TAB>` runs) through kubectl_complete-hitl.
    let run = hitl_complete(&["hitl", ""]);
    for want in ["pending\t", "describe\t", "approve\t", "reject\t"] {
        assert!(run.stdout.contains(want), "{want:?} missing: {run}");
    }
    let run = hitl_complete(&["hitl", "approve", "-n", &ns.name, ""]);
    assert!(run.stdout.lines().any(|l| l == "ship.go\tShip release 1.2?"), "the pending gate: {run}");
    let run = hitl_complete(&["hitl", "describe", "--"]);
    assert!(run.stdout.contains("--output\t") && run.stdout.contains("--context\t"), "{run}");
}

fn hitl_complete(args: &[&str]) -> Run {
    kubectl_with(&kubeconfig("admin"), &[&["__complete"], args].concat())
}

fn read_archive(path: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
    let mut tar = tar::Archive::new(gz);
    let entries = tar.entries().unwrap().map(|e| {
        let mut e = e.unwrap();
        let mut data = vec![];
        e.read_to_end(&mut data).unwrap();
        (e.path().unwrap().display().to_string(), e.header().mode().unwrap(), data)
    });
    entries.collect()
}

#[test]
fn the_release_archive_and_its_krew_manifest() {
    let out = std::env::temp_dir().join(unique_name("plugin-archive"));
    let binary = common::plugin_bin();
    let binary = binary.to_str().unwrap();
    let run = Command::new(repo_root().join("hack/plugin-archive"))
        .args(["--binary", binary, "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("kubectl-hitl-{version}-linux-amd64.tar.gz");
    let archive = out.join(&name);

    let entries = read_archive(&archive);
    let mut names: Vec<_> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["LICENSE", "README.md", "kubectl-hitl", "kubectl_complete-hitl"]);
    let (_, mode, data) = entries.iter().find(|(n, _, _)| n == "kubectl-hitl").unwrap();
    assert_eq!((*mode & 0o777, data.as_slice()), (0o755, std::fs::read(binary).unwrap().as_slice()));
    let (_, mode, _) = entries.iter().find(|(n, _, _)| n == "kubectl_complete-hitl").unwrap();
    assert_eq!(*mode & 0o777, 0o755);
    let (_, _, license) = entries.iter().find(|(n, _, _)| n == "LICENSE").unwrap();
    assert!(String::from_utf8_lossy(license).contains("Apache License"));

    let manifest: Value = serde_yaml::from_str(&std::fs::read_to_string(out.join("hitl.yaml")).unwrap()).unwrap();
    assert_eq!(manifest["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!((manifest["kind"].as_str(), manifest["metadata"]["name"].as_str()), (Some("Plugin"), Some("hitl")));
    assert_eq!(manifest["spec"]["version"], format!("v{version}"));
    assert!(manifest["spec"]["shortDescription"].as_str().is_some_and(|d| !d.is_empty() && d.len() <= 50));
    let platforms = manifest["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1);
    let p = &platforms[0];
    assert_eq!(p["selector"]["matchLabels"], serde_json::json!({"os": "linux", "arch": "amd64"}));
    let sha = format!("{:x}", Sha256::digest(std::fs::read(&archive).unwrap()));
    assert_eq!(p["sha256"], sha, "the manifest's sha256 is the archive's");
    assert!(p["uri"].as_str().is_some_and(|u| u.starts_with("https://") && u.ends_with(&format!("/{name}"))), "{p}");
    assert_eq!(p["bin"], "kubectl-hitl");
    // Every file krew is told to install is in the archive, the bin among them.
    let files: Vec<_> = p["files"].as_array().unwrap().iter().map(|f| f["from"].as_str().unwrap()).collect();
    assert!(files.contains(&"kubectl-hitl") && files.iter().all(|f| names.contains(f)), "{files:?}");

    // Built again, the archive is the same bytes: the sha256 published is stable.
    let again = Command::new(repo_root().join("hack/plugin-archive"))
        .args(["--binary", binary, "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(format!("{:x}", Sha256::digest(std::fs::read(&archive).unwrap())), sha);
    let _ = std::fs::remove_dir_all(out);
}

/// The first ```sh block of the README's command-line section.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme.split("## Deciding from the command line").nth(1).expect("the command-line section");
    section.split("```sh\n").nth(1).expect("a sh block").split("\n```").next().unwrap().to_string()
}

#[test]
fn the_readme_command_line_section_runs_as_written() {
    let ns = test_namespace("plugin-readme");
    let _op = Operator::start(&ns.name);
    let block = readme_block();
    assert!(block.contains("-n legal"), "the block changed: update this test");
    let script = block.replace("-n legal", &format!("-n {}", ns.name));
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo_root())
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()))
        .env("KUBECONFIG", kubeconfig("admin"))
        .output()
        .unwrap();
    let run = Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // The describe output shown in the block is what the plugin prints (the deadline aside).
    let shown = block.split("kubectl hitl describe contract-review/review -n legal\n").nth(1).unwrap();
    for line in shown.lines().take_while(|l| l.starts_with("# ")).map(|l| &l[2..]) {
        let line = line.replace("Namespace:      legal", &format!("Namespace:      {}", ns.name));
        let line = line.replace("-n legal", &format!("-n {}", ns.name));
        if !line.starts_with("Expires:") {
            assert!(run.stdout.contains(&format!("{line}\n")), "the README shows {line:?}, not printed:\n{run}");
        }
    }
    for want in [
        "approval.hitl.dev/contract-review.review\n",
        "kind: Approval\n",
        "approval contract-review.review approved by alice\n",
        "workflow.hitl.dev/contract-review condition met\n",
        "  Decided by:         alice\n",
        "  Comment:            clause 7 ok\n",
        "  Input:              priority=2 verdict=sign\n",
    ] {
        assert!(run.stdout.contains(want), "{want:?} missing:\n{run}");
    }
    let errors: Vec<_> = run.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{run}");
    assert!(errors[0].contains("denied request: input priority: must be of type integer"), "{run}");
    assert_eq!(phase(&workflow(&ns.name, "contract-review")), "Succeeded");
}

/// alice may decide each item's gate of a forEach step but not read the Workflow: `approve
/// WF/STEP` cannot find the step's gates, and says how to name an item's gate instead of a bare
/// "forbidden" (issue 26, "Also").
#[test]
fn approving_a_fan_out_by_step_tells_an_approver_to_name_the_items_gate() {
    let ns = test_namespace("plugin-fan");
    let _op = Operator::start(&ns.name);
    apply(
        &ns.name,
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {name: fan}\nspec:\n  params: [{name: accounts, value: '[\"a\",\"b\"]'}]\n  steps:\n    - name: go\n      forEach: {list: params.accounts}\n      suspend: {message: \"keep {{ item }}?\", approvers: {users: [alice]}}\n",
    );
    wait_pending(&ns.name, "fan.go.0");
    let run = hitl("alice", &["approve", "fan/go", "-n", &ns.name]);
    assert_one_line_error(&run, "each item has its own gate (e.g. fan.go.0)");
    let run = hitl("alice", &["approve", "fan.go.0", "-n", &ns.name]);
    assert!(run.ok, "{run}");
}
