//! The container image (`make image`, hack/build-image) and the version it carries. No cluster.
//!
//! The test builds the image from the debug build (`hack/build-image --profile dev`: the same
//! script and packer as `make image`, relinking the debug binary statically from the dependencies
//! the tests already built; 10-15 s on a 2-core machine, and the next `cargo build` relinks the
//! dynamic binary, about 10 s) and reads it as a registry and a runtime would: every blob matches its digest, the manifest and
//! config parse, the user is not root, the entrypoint is a static binary in the layer, no layer
//! holds a shell, and that binary, extracted, prints the version. `HITL_IMAGE=FILE` inspects an
//! archive already built instead (e.g. the release one: `make image`).
//!
//! The version is written in five places (Cargo.toml, Cargo.lock (each crate's entry), the chart's
//! appVersion, the kustomize image tag, the image's tag); `hack/bump-version` sets them all, and
//! this test fails when they disagree.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use common::repo_root;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ENTRYPOINT: &str = "/hitl-operator";
const USER: &str = "65532:65532";
/// Files that would give whoever gets into the container a shell or a toolbox.
const SHELLS: [&str; 6] = ["sh", "bash", "ash", "dash", "zsh", "busybox"];

// ---------------------------------------------------------------------------------------------
// Reading an OCI image layout archive

/// One file of a layer: its path (without a leading `/`), mode, and contents when regular.
#[derive(Clone, Debug)]
struct Entry {
    path: String,
    mode: u32,
    regular: bool,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Image {
    index: Value,
    config: Value,
    layers: Vec<Vec<Entry>>,
}

impl Image {
    /// Reads the archive, checking what a registry checks on push: the layout version, every blob
    /// against its digest and size, and the config's diff_ids against the uncompressed layers.
    fn read(archive: &Path) -> Image {
        let files = tar_files(&std::fs::read(archive).unwrap_or_else(|e| panic!("read {}: {e}", archive.display())));
        let layout: Value = json(&files, "oci-layout");
        assert_eq!(layout["imageLayoutVersion"], "1.0.0", "oci-layout: {layout}");
        let index: Value = json(&files, "index.json");
        let manifests = index["manifests"].as_array().expect("index.json has manifests");
        assert_eq!(manifests.len(), 1, "one image in the archive: {index}");
        let manifest: Value = serde_json::from_slice(blob(&files, &manifests[0])).expect("manifest is JSON");
        assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
        let config: Value = serde_json::from_slice(blob(&files, &manifest["config"])).expect("config is JSON");
        let layers: Vec<Vec<u8>> = manifest["layers"].as_array().unwrap().iter().map(|l| layer(&files, l)).collect();
        let diff_ids: Vec<String> = layers.iter().map(|raw| sha256(raw)).collect();
        assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids), "diff_ids are the layers' digests");
        Image { index, config, layers: layers.iter().map(|raw| entries(raw)).collect() }
    }

    /// The file at PATH as the container sees it: the last layer that has it wins.
    fn file(&self, path: &str) -> Option<&Entry> {
        let path = path.trim_start_matches('/');
        self.layers.iter().rev().flatten().find(|e| e.path.trim_end_matches('/') == path)
    }

    fn paths(&self) -> Vec<&str> {
        self.layers.iter().flatten().map(|e| e.path.as_str()).collect()
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Every regular file of an uncompressed tar, by path.
fn tar_files(data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    entries(data).into_iter().filter(|e| e.regular).map(|e| (e.path, e.data)).collect()
}

fn entries(tar_data: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(tar_data);
    let mut out = Vec::new();
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("a tar entry");
        let path = entry.path().expect("an entry path").to_string_lossy().trim_start_matches("./").to_string();
        let (mode, regular) = (entry.header().mode().unwrap(), entry.header().entry_type().is_file());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push(Entry { path, mode, regular, data });
    }
    out
}

fn json(files: &BTreeMap<String, Vec<u8>>, path: &str) -> Value {
    let data = files.get(path).unwrap_or_else(|| panic!("the archive has no {path}"));
    serde_json::from_slice(data).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The blob a descriptor points at, checked against the descriptor's digest and size.
fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, descriptor: &Value) -> &'a [u8] {
    let digest = descriptor["digest"].as_str().expect("a descriptor has a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let data = files.get(&format!("blobs/sha256/{hex}")).unwrap_or_else(|| panic!("no blob {digest}"));
    assert_eq!(sha256(data), digest, "blob {digest} does not match its digest");
    assert_eq!(descriptor["size"], data.len(), "blob {digest}: size differs from its descriptor");
    data
}

/// A layer's uncompressed tar.
fn layer(files: &BTreeMap<String, Vec<u8>>, descriptor: &Value) -> Vec<u8> {
    let data = blob(files, descriptor);
    match descriptor["mediaType"].as_str() {
        Some("application/vnd.oci.image.layer.v1.tar+gzip") => {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(data).read_to_end(&mut raw).expect("the layer is gzip");
            raw
        }
        Some("application/vnd.oci.image.layer.v1.tar") => data.to_vec(),
        other => panic!("unexpected layer media type {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// What a safe operator image must be

/// Everything wrong with IMAGE as a minimal, non-root image of a static binary; empty when sound.
fn problems(image: &Image) -> Vec<String> {
    let mut found = Vec::new();
    let user = image.config["config"]["User"].as_str().unwrap_or("");
    if !user.split(':').all(|id| id.parse::<u32>().is_ok_and(|id| id != 0)) {
        found.push(format!("runs as {user:?}: not a numeric non-root user and group"));
    }
    for path in image.paths() {
        if SHELLS.contains(&path.rsplit('/').next().unwrap_or(path)) {
            found.push(format!("has a shell or toolbox: /{path}"));
        }
    }
    match image.config["config"]["Entrypoint"].as_array().map(Vec::as_slice) {
        Some([Value::String(bin)]) => found.extend(entrypoint_problems(image, bin)),
        other => found.push(format!("entrypoint {other:?} is not one binary")),
    }
    found
}

fn entrypoint_problems(image: &Image, bin: &str) -> Vec<String> {
    let Some(file) = image.file(bin) else { return vec![format!("entrypoint {bin} is not in any layer")] };
    let mut found = Vec::new();
    if !file.regular || file.mode & 0o001 == 0 {
        found.push(format!("entrypoint {bin} is not a file anyone may execute (mode {:o})", file.mode));
    }
    if elf_program_headers(&file.data).contains(&PT_INTERP) {
        found.push(format!("entrypoint {bin} is dynamically linked: it cannot start on an empty base"));
    }
    found
}

const PT_INTERP: u32 = 3;

/// p_type of every program header of a 64-bit little-endian ELF file (empty for anything else).
fn elf_program_headers(elf: &[u8]) -> Vec<u32> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Vec::new();
    }
    let num = |at: usize, n: usize| elf[at..at + n].iter().rev().fold(0usize, |acc, b| acc << 8 | *b as usize);
    let (offset, size, count) = (num(32, 8), num(54, 2), num(56, 2));
    (0..count).map(|i| num(offset + i * size, 4) as u32).collect()
}

// ---------------------------------------------------------------------------------------------
// Versions

/// Runs a script in hack/ under ROOT; panics with its output when it fails.
fn hack(root: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(root.join("hack").join(script)).args(args).current_dir(root).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "hack/{script} {args:?} failed:\n{text}");
    text
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn yaml(root: &Path, path: &str) -> Value {
    serde_yaml::from_str(&read(root, path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `version = "X"` of Cargo.toml's [workspace.package], which every crate inherits (its first
/// such line).
fn cargo_version(cargo_toml: &str) -> Option<String> {
    cargo_toml.lines().find_map(quoted_version)
}

/// The version of this crate's entry in Cargo.lock (the line after its name).
fn lock_version(cargo_lock: &str) -> Option<String> {
    crate_lock_version(cargo_lock, "hitl-operator")
}

/// The version of a workspace crate's entry in Cargo.lock.
fn crate_lock_version(cargo_lock: &str, name: &str) -> Option<String> {
    let mut lines = cargo_lock.lines().skip_while(|l| *l != format!("name = \"{name}\""));
    lines.nth(1).and_then(quoted_version)
}

fn quoted_version(line: &str) -> Option<String> {
    Some(line.strip_prefix("version = \"")?.strip_suffix('"')?.to_string())
}

/// The crate's version, and every place that must say the same, as (where, what it says).
fn versions(root: &Path) -> Vec<(&'static str, String)> {
    let chart = yaml(root, "charts/hitl-operator/Chart.yaml");
    let values = yaml(root, "charts/hitl-operator/values.yaml");
    let kustomize = yaml(root, "config/manager/kustomization.yaml");
    let image = kustomize["images"].as_array().unwrap().iter().find(|i| i["name"] == "hitl-operator").unwrap();
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| format!("{v:?}"));
    let tag = text(&values["image"]["tag"]);
    let mut found = vec![
        ("Cargo.toml", cargo_version(&read(root, "Cargo.toml")).unwrap_or_default()),
        ("Cargo.lock", lock_version(&read(root, "Cargo.lock")).unwrap_or_default()),
        ("Cargo.lock hitl-api", crate_lock_version(&read(root, "Cargo.lock"), "hitl-api").unwrap_or_default()),
        ("Cargo.lock hitl-engine", crate_lock_version(&read(root, "Cargo.lock"), "hitl-engine").unwrap_or_default()),
        ("Cargo.lock hitl-client", crate_lock_version(&read(root, "Cargo.lock"), "hitl-client").unwrap_or_default()),
        ("Chart.yaml appVersion", text(&chart["appVersion"])),
        ("config/manager/kustomization.yaml newTag", text(&image["newTag"])),
    ];
    // An empty tag in values.yaml means appVersion; a set one must be the same.
    if !tag.is_empty() {
        found.push(("values.yaml image.tag", tag));
    }
    found
}

/// Where the version disagrees with Cargo.toml's, or the chart and kustomize install different
/// images; empty when all agree.
fn version_problems(root: &Path) -> Vec<String> {
    let all = versions(root);
    let cargo = &all[0].1;
    let mut found: Vec<String> =
        all.iter().filter(|(_, v)| v != cargo).map(|(w, v)| format!("{w} says {v:?}, Cargo.toml {cargo:?}")).collect();
    let kustomize = yaml(root, "config/manager/kustomization.yaml");
    let repository = yaml(root, "charts/hitl-operator/values.yaml")["image"]["repository"].clone();
    if !kustomize["images"].as_array().unwrap().iter().any(|i| i["newName"] == repository) {
        found.push(format!("kustomize's image name is not the chart's repository {repository:?}"));
    }
    found
}

/// The commit `--version` should print: HEAD of this checkout, or "unknown" without git.
fn head_commit() -> String {
    let out = Command::new("git").args(["rev-parse", "--verify", "HEAD"]).current_dir(repo_root()).output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The built image

/// The archive to inspect: `$HITL_IMAGE`, else one built now from the debug build (once per run).
fn built_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(build_image).clone()
}

fn build_image() -> PathBuf {
    if let Some(path) = std::env::var_os("HITL_IMAGE").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-test/hitl-operator.oci.tar");
    let start = Instant::now();
    hack(&repo_root(), "build-image", &["--profile", "dev", "--output", out.to_str().unwrap()]);
    eprintln!("hack/build-image --profile dev: {:.1} s", start.elapsed().as_secs_f64());
    out
}

#[test]
fn the_image_is_one_static_non_root_binary_that_prints_its_version() {
    let image = Image::read(&built_image());
    assert_eq!(problems(&image), Vec::<String>::new(), "config: {}", image.config);
    assert_eq!(image.config["config"]["User"], USER);
    assert_eq!(image.config["config"]["Entrypoint"], serde_json::json!([ENTRYPOINT]));
    assert_eq!(image.config["os"], "linux");
    // Nothing but the binary: no shell, no package manager, nothing to write to.
    assert_eq!(image.paths(), vec![ENTRYPOINT.trim_start_matches('/')], "the image's files");

    let version = env!("CARGO_PKG_VERSION");
    let commit = head_commit();
    let labels = &image.config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], version);
    assert_eq!(labels["org.opencontainers.image.revision"], commit.as_str());

    let printed = run_extracted(image.file(ENTRYPOINT).unwrap(), &["--version"]);
    assert_eq!(printed.trim(), format!("hitl-operator {version} (commit {commit})"));
}

/// Writes ENTRY to a file of its own and runs it with an empty environment, as the container would
/// (there is nothing else in the image to give it one); its stdout.
fn run_extracted(entry: &Entry, args: &[&str]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("image-rootfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("hitl-operator");
    std::fs::write(&bin, &entry.data).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(entry.mode)).unwrap();
    let out = Command::new(&bin).args(args).env_clear().current_dir(&dir).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{} {args:?}: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_chart_and_kustomize_install_the_image_make_image_builds() {
    let image = Image::read(&built_image());
    let chart = yaml(&repo_root(), "charts/hitl-operator/Chart.yaml");
    let values = yaml(&repo_root(), "charts/hitl-operator/values.yaml");
    let (repository, app_version) = (values["image"]["repository"].as_str().unwrap(), chart["appVersion"].as_str());
    let name = &image.index["manifests"][0]["annotations"];
    assert_eq!(name["io.containerd.image.name"], format!("{repository}:{}", app_version.unwrap()));
    assert_eq!(name["org.opencontainers.image.ref.name"], app_version.unwrap());
}

// ---------------------------------------------------------------------------------------------
// The checks can fail

#[test]
fn a_root_user_a_shell_or_a_dynamic_binary_is_found() {
    // This test's own executable is dynamically linked: a fine stand-in for a binary that needs libc.
    let dynamic = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let file = |path: &str, data: Vec<u8>| Entry { path: path.into(), mode: 0o755, regular: true, data };
    let bad = Image {
        index: Value::Null,
        config: serde_json::json!({"config": {"User": "0:0", "Entrypoint": [ENTRYPOINT]}}),
        layers: vec![vec![file("hitl-operator", dynamic)], vec![file("bin/sh", Vec::new())]],
    };
    let found = problems(&bad).join("\n");
    for expected in ["runs as \"0:0\"", "has a shell or toolbox: /bin/sh", "dynamically linked"] {
        assert!(found.contains(expected), "{expected:?} not reported; found:\n{found}");
    }
    let named = Image { config: serde_json::json!({"config": {"User": "nonroot", "Entrypoint": ["/sh"]}}), ..bad };
    let found = problems(&named).join("\n");
    assert!(found.contains("not a numeric non-root user") && found.contains("has a shell"), "{found}");
}

// ---------------------------------------------------------------------------------------------
// One version everywhere

#[test]
fn the_crate_the_chart_and_kustomize_carry_one_version() {
    assert_eq!(version_problems(&repo_root()), Vec::<String>::new());
    assert_eq!(versions(&repo_root())[0].1, env!("CARGO_PKG_VERSION"));
}

/// A copy of what hack/bump-version edits (and the scripts it needs), in a directory of its own.
fn scratch_checkout(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "charts/hitl-operator/Chart.yaml",
        "charts/hitl-operator/values.yaml",
        "config/manager/kustomization.yaml",
        "hack/bump-version",
        "hack/lib.sh",
        "hack/versions.env",
    ] {
        std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(path), dir.join(path)).unwrap();
    }
    dir
}

#[test]
fn bump_version_moves_every_place_and_a_missed_one_is_caught() {
    let root = scratch_checkout("bump-version");
    hack(&root, "bump-version", &["9.8.7-rc.1"]);
    assert_eq!(version_problems(&root), Vec::<String>::new());
    assert!(versions(&root).iter().all(|(_, v)| v == "9.8.7-rc.1"), "{:?}", versions(&root));
    assert_eq!(yaml(&root, "charts/hitl-operator/Chart.yaml")["version"], "9.8.7-rc.1");

    // A version only Cargo.toml was told about is a disagreement the check reports.
    let cargo = read(&root, "Cargo.toml").replacen("version = \"9.8.7-rc.1\"", "version = \"9.9.0\"", 1);
    std::fs::write(root.join("Cargo.toml"), cargo).unwrap();
    let found = version_problems(&root).join("\n");
    assert!(found.contains("Chart.yaml appVersion says \"9.8.7-rc.1\", Cargo.toml \"9.9.0\""), "{found}");

    // Not a version Cargo and Helm both take: refused, nothing changed.
    let bump = |version: &str| Command::new(root.join("hack/bump-version")).arg(version).current_dir(&root).output();
    let out = bump("v1.2").unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a semantic version"));
    // A file it cannot edit: refused, and the files it could edit are left as they were.
    let chart = read(&root, "charts/hitl-operator/Chart.yaml").replace("appVersion:", "app-version:");
    std::fs::write(root.join("charts/hitl-operator/Chart.yaml"), chart).unwrap();
    let out = bump("10.0.0").unwrap();
    assert!(!out.status.success(), "bump-version succeeded without an appVersion to set");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"), "{out:?}");
    assert_eq!(cargo_version(&read(&root, "Cargo.toml")).as_deref(), Some("9.9.0"));
    assert_eq!(lock_version(&read(&root, "Cargo.lock")).as_deref(), Some("9.8.7-rc.1"));
    std::fs::remove_dir_all(&root).unwrap();
}
