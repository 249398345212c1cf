//! The container image `make image` builds, inspected as a registry and a kubelet would see it:
//! an OCI layout whose config runs the operator as a non-root user, with nothing but the operator
//! in it (no shell), a binary that starts from the image alone, and a name and tag the chart and
//! kustomize install by default. Built from the debug binary (hack/build-image --profile dev):
//! the same steps as the release image, in seconds instead of minutes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo_root;
use serde_json::Value;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.strip_prefix("sha256:").expect("a sha256 digest"))
}

/// `key: value` of the first line of `file` that starts with `key:` (indentation kept in `key`).
fn yaml_value(file: &str, key: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("{file}: no {key}"));
    line[key.len() + 1..].trim().trim_matches('"').to_string()
}

#[test]
fn the_image_runs_the_operator_as_non_root_and_holds_nothing_else() {
    let work = tempdir("image");
    let archive = work.join("operator.oci.tar");
    run(Command::new(repo_root().join("hack/build-image")).args(["--profile", "dev", "--output"]).arg(&archive));
    let layout = work.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));
    assert_eq!(json(&layout.join("oci-layout"))["imageLayoutVersion"], "1.0.0");

    let index = json(&layout.join("index.json"));
    let entry = &index["manifests"][0];
    let version = env!("CARGO_PKG_VERSION");
    let repository = yaml_value("charts/hitl-operator/values.yaml", "  repository");
    assert_eq!(entry["annotations"]["io.containerd.image.name"], format!("{repository}:{version}"));
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], version);
    let manifest = json(&blob(&layout, entry["digest"].as_str().unwrap()));
    let config = json(&blob(&layout, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["User"], "65532:65532", "non-root");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/hitl-operator"]));
    assert_eq!(config["os"], "linux");

    // Every file of every layer: the operator alone, no shell.
    let mut files = vec![];
    for layer in manifest["layers"].as_array().unwrap() {
        let path = blob(&layout, layer["digest"].as_str().unwrap());
        files.extend(run(Command::new("tar").arg("-tzf").arg(&path)).lines().map(str::to_string));
        run(Command::new("tar").arg("-xzf").arg(&path).arg("-C").arg(&work));
    }
    assert!(!files.iter().any(|f| f.ends_with("sh") || f.contains("bin/")), "a shell or bin/ in the image: {files:?}");
    assert_eq!(files.iter().filter(|f| !f.ends_with('/')).collect::<Vec<_>>(), ["hitl-operator"], "{files:?}");

    // Taken out of the image, the binary starts on its own (static: no loader, no libc needed).
    let said = run(Command::new(work.join("hitl-operator")).arg("--version"));
    assert!(said.starts_with(&format!("hitl-operator {version} (commit ")), "{said}");
    assert!(!has_interpreter(&std::fs::read(work.join("hitl-operator")).unwrap()), "dynamically linked");
    assert!(has_interpreter(&std::fs::read("/bin/sh").unwrap()), "the check itself sees a dynamic binary");
}

/// Whether a 64-bit little-endian ELF file names a dynamic loader (a PT_INTERP program header),
/// which an empty base image does not have.
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF");
    let u = |at: usize, n: usize| elf[at..at + n].iter().rev().fold(0usize, |v, b| v << 8 | *b as usize);
    let (offset, size, count) = (u(32, 8), u(54, 2), u(56, 2));
    (0..count).any(|i| u(offset + i * size, 4) == 3)
}

#[test]
fn the_crate_the_chart_and_kustomize_name_one_version() {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(yaml_value("charts/hitl-operator/Chart.yaml", "appVersion"), version, "run hack/bump-version");
    assert_eq!(yaml_value("config/manager/kustomization.yaml", "    newTag"), version, "run hack/bump-version");
    assert_eq!(yaml_value("charts/hitl-operator/values.yaml", "  tag"), "", "the chart's tag defaults to appVersion");
}

fn tempdir(prefix: &str) -> PathBuf {
    let dir = repo_root().join("target/test-image").join(common::unique_name(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
