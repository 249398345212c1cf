//! `hack/cluster up` on a loaded machine: 20 cold starts and stops in a row of a second local
//! cluster (its own state dir and ports), with a busy loop per core competing for the CPU. Once, a
//! component was judged dead while it was still being exec'd and the cluster was torn down; every
//! one of these starts must come up, and every stop must leave no component behind.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{repo_root, unique_name};

const CYCLES: usize = 20;

/// Busy loops, one per core, killed when dropped.
struct Load(Vec<Child>);

impl Load {
    fn start() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Load(
            (0..cores)
                .map(|_| Command::new("sh").args(["-c", "while :; do :; done"]).stdout(Stdio::null()).spawn().unwrap())
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Stops the test's cluster however the test ends.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = cluster(self.0, "down");
        let _ = std::fs::remove_dir_all(self.0);
    }
}

fn cluster(state: &Path, cmd: &str) -> std::process::Output {
    Command::new(repo_root().join("hack/cluster"))
        .arg(cmd)
        .env("HITL_CLUSTER_DIR", state)
        // The control plane's start and stop are under test; the real node is the main cluster's.
        .env("HITL_REAL_NODE", "0")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The pids `hack/cluster` recorded for its components.
fn recorded_pids(state: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(state.join("pids")) else { return vec![] };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn twenty_cold_starts_under_load_all_come_up_and_all_stop() {
    let state = repo_root().join("target/tmp").join(unique_name("cluster-up"));
    let _down = Down(&state);
    let _load = Load::start();
    let mut times = vec![];
    for cycle in 1..=CYCLES {
        let started = Instant::now();
        let up = cluster(&state, "up");
        assert!(up.status.success(), "start {cycle} of {CYCLES} failed:\n{}", text(&up));
        times.push(started.elapsed().as_secs_f64());
        let status = text(&cluster(&state, "status"));
        for component in ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"] {
            let line = status.lines().find(|l| l.starts_with(component)).unwrap_or("");
            assert!(line.contains("running (pid"), "start {cycle}: {component} is not running:\n{status}");
        }
        assert!(status.contains("ready at https://127.0.0.1:"), "start {cycle}: API server not ready:\n{status}");
        let pids = recorded_pids(&state);
        assert_eq!(pids.len(), 5, "start {cycle}: recorded pids {pids:?}");
        let down = cluster(&state, "down");
        assert!(down.status.success(), "stop {cycle} failed:\n{}", text(&down));
        let left: Vec<_> = pids.into_iter().filter(|p| alive(*p)).collect();
        assert!(left.is_empty(), "stop {cycle} left components running: {left:?}");
    }
    times.sort_by(f64::total_cmp);
    eprintln!(
        "hack/cluster up under load, {CYCLES} cold starts: median {:.1} s, slowest {:.1} s",
        times[CYCLES / 2],
        times[CYCLES - 1]
    );
}
