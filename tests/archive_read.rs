//! The decision archive (issue 23), read: `kubectl hitl history` through the API server, which
//! proxies to the archive's aggregated API (archive.hitl.dev) served by the operator's code. Each
//! person sees what their own RBAC allows (a namespace whole where they may get Workflows,
//! elsewhere their own decisions), the chain is verified on their machine and a changed record is
//! named, a database away is a clear 503, and identity headers from anyone but the API server's
//! front proxy are refused.
//!
//! The server runs in this process on the host, as the chart's ServiceAccount would (hack/
//! operator-token with the chart's archive RBAC), with the chart's generated certificate; the
//! API server reaches it through a Service without selector and an EndpointSlice to this host.
//! The records are seeded straight into a PostgreSQL of this test's own (the writer has tests of
//! its own), so the test may stop it and change a row.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::archive_api::*;
use common::postgres::Postgres;
use common::{TestNamespace, apply_ok, kubectl, kubectl_ok, test_namespace, wait_for};
use hitl_operator::archive::server::{self, ServerTls};
use hitl_operator::archive::store::Archive;
use hitl_operator::engine::archive::Kind;
use serde_json::{Value, json};

/// A gate's record, as the writer stores it.
fn gate(workflow: &str, step: &str, outcome: &str, by: &str, comment: &str) -> String {
    json!({
        "approval": format!("{workflow}.{step}"), "workflow": workflow, "workflowUid": "uid", "step": step,
        "inputsAsked": [], "outcome": outcome, "decidedBy": by, "decidedByGroups": [], "comment": comment,
        "decidedAt": "2026-12-07T10:00:00Z",
    })
    .to_string()
}

/// A: two gates carol decided and the run they belonged to. B: one gate carol decided, one bob did.
async fn seed(archive: &Archive, a: &str, b: &str) {
    let records = [
        (a, Kind::Gate, gate("ship", "review", "Approved", "carol", "looks good")),
        (a, Kind::Gate, gate("ship", "deploy", "Rejected", "carol", "not on a Friday")),
        (a, Kind::Run, json!({"workflow": "ship", "workflowUid": "uid", "phase": "Failed", "steps": []}).to_string()),
        (b, Kind::Gate, gate("audit", "check", "Approved", "carol", "")),
        (b, Kind::Gate, gate("audit", "sign", "Approved", "bob", "signed, see OPS-7")),
    ];
    for (i, (ns, kind, content)) in records.into_iter().enumerate() {
        let uid = format!("{ns}-{i}");
        archive.store(ns, kind, &uid, &content).await.expect("the archive stores a record");
    }
}

/// `curl` to the server on this host, skipping the API server; the HTTP code and the body.
fn curl(port: u16, cert: Option<&str>, headers: &[&str]) -> (String, Value) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sk",
        "-w",
        "\n%{http_code}",
        &format!("https://127.0.0.1:{port}/apis/archive.hitl.dev/v1alpha1/records"),
    ]);
    if let Some(name) = cert {
        let at = |ext: &str| pki().join(format!("{name}.{ext}"));
        cmd.arg("--cert").arg(at("crt")).arg("--key").arg(at("key"));
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = String::from_utf8_lossy(&cmd.output().expect("run curl").stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.to_string(), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The namespaces of the records a RecordList holds.
fn namespaces_of(list: &Value) -> Vec<String> {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items.iter().map(|r| r["namespace"].as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn people_read_the_archive_through_the_api_server_as_themselves() {
    require_front_proxy();
    let pg = Postgres::own("archive-read");
    let (a, b, api) = (test_namespace("archive-a"), test_namespace("archive-b"), test_namespace("archive-api"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter(); // the database pool starts its upkeep on this runtime
    let archive = Archive::open(&pg.url()).expect("a valid URL");
    runtime.block_on(seed(&archive, &a.name, &b.name));

    let chart = chart_archive(&api.name);
    let tls = serving_tls(kind(&chart, "Secret"));
    let client = runtime.block_on(operator_client());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("0.0.0.0:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(server::serve(listener, tls, archive, client.clone()));
    let service = kind(&chart, "Service")["metadata"]["name"].as_str().unwrap().to_string();
    let registered = Registered::new(kind(&chart, "APIService"), &api.name, &service, port);

    // alice may get Workflows in A only; bob nowhere.
    grant_get_workflows("alice", &a);
    each_sees_what_their_rights_allow(&a.name, &b.name);
    the_chain_verifies_where_it_is_read_whole(&a.name, &b.name);
    measure_a_read();
    a_database_away_is_a_clear_503(&pg, &a.name);
    a_changed_record_is_named_and_fails_verify(&pg, &a.name);
    headers_are_believed_from_the_front_proxy_only(port, &a.name, &b.name);
    a_database_away_is_unavailable_directly_too(&runtime, client);

    drop(registered);
    wait_for("the API server to drop archive.hitl.dev", Duration::from_secs(30), || {
        (!kubectl("admin", &["get", "--raw", "/apis/archive.hitl.dev/v1alpha1"]).status.success()).then_some(())
    });
    let gone = hitl("alice", &["history", "-n", &a.name]);
    assert!(!gone.ok && gone.stderr.contains("the decision archive is not enabled in this cluster"), "{gone}");
}

fn grant_get_workflows(user: &str, ns: &TestNamespace) {
    let grant = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "workflow-reader", "namespace": ns.name},
         "rules": [{"apiGroups": ["hitl.dev"], "resources": ["workflows"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": format!("workflow-reader-{user}"), "namespace": ns.name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "workflow-reader"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ]});
    apply_ok("admin", &grant.to_string());
    let can = || kubectl_ok(user, &["auth", "can-i", "get", "workflows.hitl.dev", "-n", &ns.name]).trim() == "yes";
    wait_for("the grant to apply", Duration::from_secs(10), || can().then_some(()));
}

fn each_sees_what_their_rights_allow(a: &str, b: &str) {
    // alice reads A whole, as a table.
    let table = hitl("alice", &["history", "-n", a]);
    assert!(table.ok, "{table}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three records:\n{table}");
    assert!(
        lines[0].starts_with("WHEN") && lines[0].contains("DECIDED BY") && !lines[0].contains("NAMESPACE"),
        "{table}"
    );
    assert!(lines[1].contains("ship") && lines[1].contains("review") && lines[1].contains("carol"), "{table}");
    assert!(lines[2].contains("Rejected") && lines[2].contains("not on a Friday"), "{table}");
    assert!(lines[3].contains("Failed"), "{table}");
    // Nothing of B: she may not read it, and decided nothing there. An empty list, not an error.
    let none = hitl("alice", &["history", "-n", b]);
    assert!(none.ok && none.stdout.is_empty(), "{none}");
    assert_eq!(none.stderr.trim(), format!("No records found in {b} namespace."), "{none}");
    let all = hitl("alice", &["history", "-A", "-o", "json"]);
    let list: Value = serde_json::from_str(&all.stdout).unwrap_or_else(|e| panic!("{e}: {all}"));
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("RecordList"), Some("archive.hitl.dev/v1alpha1"))
    );
    assert_eq!(namespaces_of(&list), [a, a, a], "{all}");
    assert_eq!(list["wholeNamespaces"], json!([a]), "{all}");

    // bob may read nothing whole: he sees only the gate he decided, in B.
    let nothing = hitl("bob", &["history", "-n", a]);
    assert!(nothing.ok && nothing.stdout.is_empty(), "{nothing}");
    let own = hitl("bob", &["history", "-A", "-o", "json"]);
    let list: Value = serde_json::from_str(&own.stdout).unwrap_or_else(|e| panic!("{e}: {own}"));
    assert_eq!(namespaces_of(&list), [b], "{own}");
    let content: Value = serde_json::from_str(list["items"][0]["content"].as_str().unwrap()).unwrap();
    assert_eq!((content["decidedBy"].as_str(), content["step"].as_str()), (Some("bob"), Some("sign")));
    // Filters apply on top of what one may read.
    let csv = hitl(
        "alice",
        &["history", "-n", a, "--workflow", "ship", "--approver", "carol", "--since", "3650d", "-o", "csv"],
    );
    assert!(csv.ok, "{csv}");
    assert_eq!(csv.stdout.lines().count(), 3, "a header and carol's two gates:\n{csv}");
    let bad = hitl("alice", &["history", "-n", a, "--since", "last week"]);
    assert!(!bad.ok && bad.stderr.contains("neither a time"), "{bad}");
}

fn the_chain_verifies_where_it_is_read_whole(a: &str, b: &str) {
    let intact = hitl("alice", &["history", "-n", a, "--verify"]);
    assert!(intact.ok, "{intact}");
    assert_eq!(intact.stdout, format!("{a}: intact: 3 records from position 1\n"), "{intact}");
    // bob holds only his own record of B: no chain to verify there.
    let partial = hitl("bob", &["history", "-n", b, "--verify"]);
    assert!(!partial.ok && partial.stderr.contains("you may read only your own decisions"), "{partial}");
}

/// How long a person waits for a history read, end to end (kubectl's process, the API server,
/// the proxy to this server, one SubjectAccessReview, the query).
fn measure_a_read() {
    const RUNS: u32 = 5;
    let start = Instant::now();
    for _ in 0..RUNS {
        assert!(hitl("alice", &["history", "-A"]).ok);
    }
    eprintln!("kubectl hitl history -A as alice: {:?} per read, over {RUNS}", start.elapsed() / RUNS);
}

fn a_database_away_is_a_clear_503(pg: &Postgres, a: &str) {
    pg.stop();
    let asked = Instant::now();
    let away = hitl("alice", &["history", "-n", a]);
    eprintln!("kubectl hitl history with the database away: answered in {:?}", asked.elapsed());
    pg.start();
    assert!(!away.ok, "{away}");
    assert_eq!(
        away.stderr.trim(),
        "error: the decision archive's database cannot be reached; try again later",
        "{away}"
    );
    let back = wait_for("the archive to read again", Duration::from_secs(30), || {
        let run = hitl("alice", &["history", "-n", a]);
        run.ok.then_some(run)
    });
    assert_eq!(back.stdout.lines().count(), 4, "{back}");
}

fn a_changed_record_is_named_and_fails_verify(pg: &Postgres, a: &str) {
    // Someone with the database's password turns carol's rejection into an approval.
    pg.psql(&format!(
        "UPDATE archive_records SET content = replace(content, 'Rejected', 'Approved') WHERE namespace = '{a}' AND position = 2"
    ));
    let broken = hitl("alice", &["history", "-n", a, "--verify"]);
    assert!(!broken.ok, "{broken}");
    assert_eq!(
        broken.stdout,
        format!("{a}: BROKEN at record 2: record 2 was changed: its content does not match its hash\n"),
        "{broken}"
    );
    assert_eq!(broken.stderr.trim(), format!("error: the archive's hash chain is broken in namespace {a}"), "{broken}");
}

fn headers_are_believed_from_the_front_proxy_only(port: u16, a: &str, b: &str) {
    let forged = ["X-Remote-User: admin", "X-Remote-Group: system:masters"];
    let (code, body) = curl(port, None, &forged);
    assert_eq!(code, "401", "{body}");
    assert_eq!((body["kind"].as_str(), body["reason"].as_str()), (Some("Status"), Some("Unauthorized")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("no client certificate"), "{body}");
    // A person's own client certificate is signed by the cluster's CA, not the front proxy's.
    let (code, body) = curl(port, Some("user-alice"), &forged);
    assert_eq!(code, "401", "{body}");
    assert!(body["message"].as_str().unwrap().contains("not the API server's front-proxy certificate"), "{body}");
    // The front proxy's certificate is what makes the headers believed.
    let (code, body) = curl(port, Some("front-proxy-client"), &["X-Remote-User: bob"]);
    assert_eq!(code, "200", "{body}");
    assert_eq!(namespaces_of(&body), [b], "bob's own record only: {body}");
    assert!(!namespaces_of(&body).contains(&a.to_string()));
}

/// The same 503, asked of a second server whose database is not there at all.
fn a_database_away_is_unavailable_directly_too(runtime: &tokio::runtime::Runtime, client: kube::Client) {
    let nowhere = Archive::open("postgres://hitl@127.0.0.1:1/hitl").unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = ServerTls::self_signed(&["localhost".into()]).unwrap();
    runtime.spawn(server::serve(listener, tls, nowhere, client));
    let (code, body) = wait_for("the second server to read the front proxy's CA", Duration::from_secs(10), || {
        let (code, body) = curl(port, Some("front-proxy-client"), &["X-Remote-User: alice"]);
        (code != "503" || !body["message"].as_str().unwrap_or("").contains("front-proxy CA")).then_some((code, body))
    });
    assert_eq!(code, "503", "{body}");
    assert_eq!(body["message"], "the decision archive's database cannot be reached; try again later", "{body}");
}
