//! The decision archive's read path as the tests reach it: the plugin as a person types it, the
//! chart's rendered APIService, Service and certificate, and the APIService registered for a test
//! (pointing at this host) and removed after it.

use std::path::PathBuf;
use std::process::Command;

use hitl_operator::archive::server::ServerTls;
use serde_json::{Value, json};

use super::{apply_ok, kubeconfig, kubectl, kubectl_bin, repo_root};

const API_SERVICE: &str = "v1alpha1.archive.hitl.dev";
/// The chart's release for the rendered certificate and rights.
pub const RELEASE: &str = "hitl-operator";

/// What `kubectl hitl ...` printed.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "ok: {}\n--- stdout\n{}--- stderr\n{}", self.ok, self.stdout, self.stderr)
    }
}

/// `kubectl hitl ARGS` as `user`, with kubectl and the plugin on PATH, as a person types it.
pub fn hitl(user: &str, args: &[&str]) -> Run {
    let out = Command::new("kubectl")
        .arg("hitl")
        .args(args)
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()))
        .env("KUBECONFIG", kubeconfig(user))
        .output()
        .expect("run kubectl hitl");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Run { ok: out.status.success(), stdout: text(&out.stdout), stderr: text(&out.stderr) }
}

pub fn bin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(super::unique_name("hitl-archive-path"));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(kubectl_bin(), dir.join("kubectl")).unwrap();
        std::os::unix::fs::symlink(super::plugin_bin(), dir.join("kubectl-hitl")).unwrap();
        dir
    })
    .clone()
}

/// The local cluster's PKI (the front proxy's client certificate, the users' own).
pub fn pki() -> PathBuf {
    kubeconfig("admin").parent().expect("the cluster's state directory").join("pki")
}

/// Panics, saying how to fix it, unless the API server runs with the aggregation layer.
pub fn require_front_proxy() {
    let ca = kubectl(
        "admin",
        &[
            "-n",
            "kube-system",
            "get",
            "configmap",
            "extension-apiserver-authentication",
            "-o",
            "jsonpath={.data.requestheader-client-ca-file}",
        ],
    );
    assert!(
        ca.status.success() && !ca.stdout.is_empty(),
        "the local cluster's API server runs without a front proxy (--requestheader-client-ca-file): it was \
         started by an older hack/cluster; restart it (hack/cluster down && hack/cluster up)"
    );
}

/// `helm template` of the chart's archive files for `ns`, as documents.
pub fn chart_archive(ns: &str) -> Vec<Value> {
    let helm =
        String::from_utf8(Command::new(repo_root().join("hack/asset-path")).arg("helm").output().unwrap().stdout)
            .unwrap();
    let out = Command::new(helm.trim())
        .args(["template", RELEASE, "charts/hitl-operator", "--namespace", ns])
        .args(["--set", "archive.enabled=true", "--set", "archive.existingSecret=unused"])
        .args(["--show-only", "templates/archive-api.yaml"])
        .current_dir(repo_root())
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

pub fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("the chart renders no {kind}"))
}

/// The chart's serving certificate, for the server.
pub fn serving_tls(secret: &Value) -> ServerTls {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret.clone()).unwrap();
    let data = secret.data.unwrap_or_default();
    ServerTls::from_pem(&data["tls.crt"].0, &data["tls.key"].0).expect("the chart's certificate loads")
}

/// The chart's rights for the archive, bound to the operator's ServiceAccount, and a client
/// with its token: the server has no more rights than an installed operator.
pub async fn operator_client() -> kube::Client {
    grant_operator_archive_rights();
    let file = kube::config::Kubeconfig::read_from(kubeconfig("operator")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The operator's ServiceAccount (hack/operator-token) gets the chart's rights with the archive
/// on: its controller role with the finalizer's patch, and the read path's reviews. Once per test
/// binary, and after the harness's own hack/operator-token (default values, which would take the
/// patch away again): call `harness::operator_user()` first where both run.
pub fn grant_operator_archive_rights() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new(repo_root().join("hack/operator-token"))
            .args(["hitl-system", "--set", "archive.enabled=true", "--set", "archive.existingSecret=unused"])
            .args(["--show-only", "templates/archive-rbac.yaml"])
            // The readers' role under a name of its own: a chart a test installs keeps `hitl-`.
            .args(["--set", "rbac.userRoles.namePrefix=hitl-archive-read-test"])
            .output()
            .expect("run hack/operator-token");
        assert!(out.status.success(), "hack/operator-token: {}", String::from_utf8_lossy(&out.stderr));
    });
}

/// This host's address that the API server dials (an EndpointSlice refuses loopback).
pub fn host_ip() -> String {
    let out = Command::new("hostname").arg("-I").output().expect("run hostname -I");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let ip = text.split_whitespace().find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()));
    ip.unwrap_or_else(|| panic!("no IPv4 address of this host in `hostname -I`: {text:?}")).to_string()
}

/// The APIService for the test; deleted when dropped, also when the test fails: one that is not
/// Available makes discovery slow and noisy for every other test on the cluster.
pub struct Registered;

impl Registered {
    pub fn new(api_service: &Value, ns: &str, service: &str, port: u16) -> Self {
        let endpoints = json!({
            "apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": ns},
                 "spec": {"ports": [{"name": "https-archive", "port": 443, "targetPort": port}]}},
                {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": format!("{service}-host"), "namespace": ns, "labels": {
                     "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "tests.hitl.dev"}},
                 "addressType": "IPv4",
                 "ports": [{"name": "https-archive", "port": port, "protocol": "TCP"}],
                 "endpoints": [{"addresses": [host_ip()], "conditions": {"ready": true}}]},
            ],
        });
        apply_ok("admin", &endpoints.to_string());
        let registered = Registered;
        apply_ok("admin", &api_service.to_string());
        let available = ["wait", "--for=condition=Available", &format!("apiservice/{API_SERVICE}"), "--timeout=60s"];
        let out = kubectl("admin", &available);
        let status = kubectl("admin", &["get", "apiservice", API_SERVICE, "-o", "jsonpath={.status}"]);
        assert!(out.status.success(), "the APIService is not Available: {}", String::from_utf8_lossy(&status.stdout));
        registered
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = kubectl("admin", &["delete", "apiservice", API_SERVICE, "--ignore-not-found"]);
    }
}
