//! The README's walkthrough ("What the demo shows, by hand"), run as a user pastes it into a shell.
//! Two changes only, both printed by the test: the namespace `legal` becomes a fresh one (so the
//! test never meets a namespace left by `make demo`), and `cargo run --bin hitl-operator --` becomes
//! the binary cargo built (cargo is busy running this very test and holds its build lock).

mod common;

use std::process::Command;

use common::{kubectl, repo_root, unique_name};

/// The first ```sh block after the walkthrough's heading.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme.split("## What the demo shows, by hand").nth(1).expect("the walkthrough section");
    let block = section.split("```sh\n").nth(1).expect("a sh block").split("\n```").next().unwrap();
    block.to_string()
}

/// Deletes the run while the operator still releases its Pods, then the namespace.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl("admin", &["delete", "namespace", &self.0, "--wait=false", "--ignore-not-found"]);
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let ns = unique_name("readme");
    let _cleanup = Cleanup(ns.clone());
    let block = walkthrough();
    for expected in ["kubectl -n legal", "--namespace legal", "cargo run --bin hitl-operator --"] {
        assert!(block.contains(expected), "the walkthrough changed: {expected:?} is gone; update this test");
    }
    let script = block
        .replace("namespace legal", &format!("namespace {ns}"))
        .replace("-n legal", &format!("-n {ns}"))
        .replace("cargo run --bin hitl-operator --", "target/debug/hitl-operator");
    eprintln!("running:\n{script}");
    // Interactive shells expand aliases; a script needs it asked for. At the end, the run is
    // deleted while the operator still runs (it releases its Pods' finalizers), then it stops.
    let full = format!(
        "shopt -s expand_aliases\n{script}\necho \"PHASE=$(kubectl -n {ns} get workflow contract-review -o jsonpath='{{.status.phase}}')\"\n\
         kubectl -n {ns} delete workflow contract-review --wait=true >/dev/null\nkill $(jobs -p) 2>/dev/null\nwait\n"
    );
    let out = Command::new("bash").arg("-c").arg(&full).current_dir(repo_root()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let both = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("workflow.hitl.dev/contract-review condition met"), "the waits were met:\n{both}");
    assert!(stdout.contains("Scan flagged 3 clauses in s3://contracts/acme.pdf."), "{both}");
    assert!(
        stdout.contains("contract-review.review   contract-review   review   Pending   alice, group:legal"),
        "the pending approval is listed as shown:\n{both}"
    );
    assert!(
        stderr.contains("denied request: input priority: must be of type integer, such as 2, without quotes"),
        "the bad input is refused as shown:\n{both}"
    );
    assert!(stdout.contains("approval.hitl.dev/contract-review.review patched"), "alice's decision went in:\n{both}");
    assert!(stdout.contains("\"decidedBy\":\"alice\""), "the steps show who decided:\n{both}");
    assert!(stdout.contains("PHASE=Succeeded"), "{both}");
}
