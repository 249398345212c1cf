//! Records the git commit the binaries are built from as `HITL_GIT_COMMIT` (for `--version` and
//! the image labels). `HITL_GIT_COMMIT` set in the environment wins: a container build copies the
//! sources without `.git` and passes the commit in. Outside a git checkout of this crate (a source
//! tarball) it is "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=HITL_GIT_COMMIT");
    let commit = match std::env::var("HITL_GIT_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => git_commit().unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo::rustc-env=HITL_GIT_COMMIT={commit}");
}

/// `git ARGS` in the crate's directory: its trimmed output, or None when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// HEAD's commit, only when this crate is the top of the work tree: a tarball unpacked inside some
/// other repository must not report that repository's commit.
fn git_commit() -> Option<String> {
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if Path::new(&top).canonicalize().ok()? != Path::new(&here).canonicalize().ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "--verify", "HEAD"])?;
    watch_head();
    Some(commit)
}

/// Rerun when HEAD moves (commit, checkout, reset, pull): HEAD itself, its reflog, the branch's
/// ref and packed-refs. `--git-path` resolves them in a linked work tree too (where `.git` is a
/// file). Only files that exist are listed: cargo reruns a script on every build while a file it
/// watches is missing.
fn watch_head() {
    let mut names = vec!["HEAD".to_string(), "logs/HEAD".into(), "packed-refs".into()];
    names.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in names {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]).filter(|p| Path::new(p).exists()) {
            println!("cargo::rerun-if-changed={path}");
        }
    }
}
