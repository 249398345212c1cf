//! The decision archive (issue 23), written: a real PostgreSQL (hack/postgres), the operator with
//! `--archive-database-url`, and people deciding through kubectl. What the archive must show: a
//! decision outlives its objects, nothing is lost while the database is away or the operator is
//! killed, each record is stored once, and nobody walks a run out of the archive by its finalizer.

mod common;
mod harness;

use std::time::Duration;

use common::postgres::Postgres;
use common::{kubectl, kubectl_err, kubectl_ok, kubectl_stdin, test_namespace, wait_for};
use harness::*;
use hitl_operator::archive::store::{Archive, Query};
use hitl_operator::engine::archive::chain::{self, Verdict};
use hitl_operator::engine::archive::{Kind, Stored};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// A run with one gate for alice, deleted a second after it finishes.
fn gated(name: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  ttlSecondsAfterFinished: 1\n  steps:\n\
         \x20   - name: review\n      suspend:\n        message: Ship release 7 to production?\n        approvers: {{users: [alice]}}\n\
         \x20       inputs: [{{name: ticket, type: string, required: true}}]\n"
    )
}

fn plain(name: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  ttlSecondsAfterFinished: 1\n  steps:\n    - {{name: wait, sleep: 1s}}\n"
    )
}

/// The operator's identity with the chart's rights for the archive on (the finalizer's patch).
fn archive_rights() {
    harness::operator_user();
    common::archive_api::grant_operator_archive_rights();
}

fn archive_flags(pg: &Postgres) -> Vec<String> {
    vec!["--leader-elect=false".into(), "--archive-database-url".into(), pg.url()]
}

fn start(ns: &str, pg: &Postgres) -> Operator {
    archive_rights();
    let flags = archive_flags(pg);
    Operator::start_with(ns, "", &flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The records of `ns`, read straight from the database (the read path has tests of its own).
fn records(pg: &Postgres, ns: &str) -> Vec<Stored> {
    let url = pg.url();
    let query = Query { namespaces: vec![ns.to_string()], ..Default::default() };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { Archive::open(&url).expect("a valid URL").query(&query).await.expect("the archive answers") })
}

fn content(record: &Stored) -> Value {
    record.content_json()
}

fn finalizers(ns: &str, name: &str) -> Vec<String> {
    get_json(ns, "workflow", name)
        .and_then(|w| serde_json::from_value(w["metadata"]["finalizers"].clone()).ok())
        .unwrap_or_default()
}

fn gone(ns: &str, name: &str) -> bool {
    get_json(ns, "workflow", name).is_none()
}

fn approve(ns: &str, name: &str, ticket: &str) {
    let patch =
        format!(r#"{{"spec":{{"decision":"Approve","input":{{"ticket":"{ticket}"}},"comment":"checked the diff"}}}}"#);
    patch_approval("alice", ns, name, &patch).unwrap();
}

#[test]
fn a_decision_outlives_its_workflow_in_an_intact_chain() {
    let pg = Postgres::shared();
    let ns = test_namespace("archive");
    let ns = ns.name();
    let _op = start(ns, &pg);
    apply(ns, &gated("release"));
    wait_pending(ns, "release.review");
    assert_eq!(finalizers(ns, "release"), ["hitl.dev/archive"], "a running Workflow is held for the archive");
    approve(ns, "release.review", "CHG-7");
    // The TTL deletes the finished run once its records are stored, and it goes for good.
    wait_for("the finished run to be archived and deleted", WAIT, || gone(ns, "release").then_some(()));

    let stored = records(&pg, ns);
    let kinds: Vec<Kind> = stored.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [Kind::Gate, Kind::Run], "{stored:#?}");
    let gate = content(&stored[0]);
    assert_eq!(gate["outcome"], "Approved");
    assert_eq!(gate["decidedBy"], "alice");
    assert_eq!(gate["input"]["ticket"], "CHG-7");
    assert_eq!(gate["comment"], "checked the diff");
    assert_eq!(gate["message"], "Ship release 7 to production?");
    assert_eq!(gate["approvers"]["users"][0], "alice");
    assert_eq!(gate["createdBy"], "admin");
    let run = content(&stored[1]);
    assert_eq!((run["workflow"].as_str(), run["phase"].as_str()), (Some("release"), Some("Succeeded")));
    assert_eq!(run["steps"][0]["decidedBy"], "alice");
    assert!(run["specDigest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{run}");
    assert_eq!(chain::verify(&stored)[ns], Verdict::Intact { records: 2, from: 1 });
}

/// The database goes away with a decision made and not yet stored; the operator is killed and
/// comes back while it is still away. Runs go on meanwhile, the finished run waits (its condition
/// and the backlog metric say so), and once the database is back every record is stored once.
#[test]
fn with_the_database_away_runs_go_on_and_nothing_is_lost() {
    let pg = Postgres::own("archive-away");
    let ns = test_namespace("archive-away");
    let ns = ns.name();
    let mut op = start(ns, &pg);
    apply(ns, &gated("held"));
    wait_pending(ns, "held.review");
    wait_for("the finalizer", WAIT, || (finalizers(ns, "held") == ["hitl.dev/archive"]).then_some(()));
    pg.stop();
    approve(ns, "held.review", "CHG-8");
    let waiting = wait_for("the finished run to say its records wait", WAIT, || {
        let wf = workflow(ns, "held");
        let conditions = wf["status"]["conditions"].as_array()?.clone();
        conditions.into_iter().find(|c| c["type"] == "Archived" && c["status"] == "False")
    });
    assert_eq!(waiting["reason"], "ArchiveUnavailable", "{waiting}");
    assert_eq!(phase(&workflow(ns, "held")), "Succeeded");
    let backlog = op.metrics().lines().find(|l| l.starts_with("hitl_archive_backlog ")).map(str::to_string);
    assert!(backlog.as_deref().is_some_and(|l| l != "hitl_archive_backlog 0"), "{backlog:?}");

    // Killed with the decision unstored; back while the database is still away: it starts, and a
    // new run goes through.
    op.kill();
    op.restart();
    apply(ns, &plain("meanwhile"));
    wait_for("a run to finish while the database is away", WAIT, || {
        (phase(&workflow(ns, "meanwhile")) == "Succeeded").then_some(())
    });
    assert!(!gone(ns, "held"), "the run was deleted before its records were stored");

    pg.start();
    wait_for("the backlog to drain and both runs to go", WAIT, || {
        (gone(ns, "held") && gone(ns, "meanwhile")).then_some(())
    });
    let stored = records(&pg, ns);
    let mut seen: Vec<(Kind, String)> =
        stored.iter().map(|r| (r.kind, content(r)["workflow"].as_str().unwrap_or_default().to_string())).collect();
    seen.sort_by_key(|(k, w)| (k.as_str(), w.clone()));
    let want = [(Kind::Gate, "held"), (Kind::Run, "held"), (Kind::Run, "meanwhile")];
    assert_eq!(seen, want.map(|(k, w)| (k, w.to_string())), "each record once: {stored:#?}");
    assert!(matches!(chain::verify(&stored)[ns], Verdict::Intact { records: 3, .. }));
}

/// bob may create, patch and delete Workflows in the namespace (as `edit` allows). He tries to
/// take a run out of the archive's hold, and to put a hold where none belongs; admin, with every
/// right, is held to the same rule. His delete is accepted, and the run still reaches the archive.
#[test]
fn only_the_operator_sets_or_releases_the_archive_hold() {
    let pg = Postgres::shared();
    let ns = test_namespace("archive-hold");
    let ns = ns.name();
    let _op = start(ns, &pg);
    common::apply_ok(
        "admin",
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: bob-edit, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: hitl-bob-edit}}\n\
             subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: hitl-bob-edit}}\n\
             rules: [{{apiGroups: [hitl.dev], resources: [workflows], verbs: [get, list, create, patch, update, delete]}}]\n"
        ),
    );
    apply(ns, &gated("guarded"));
    wait_pending(ns, "guarded.review");
    wait_for("the finalizer", WAIT, || (finalizers(ns, "guarded") == ["hitl.dev/archive"]).then_some(()));
    let release = r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#;
    for who in ["bob", "admin"] {
        let refused = wait_for(&format!("{who}'s rights to take effect"), WAIT, || {
            let out = kubectl(who, &["-n", ns, "patch", "workflow", "guarded", "--type", "json", "-p", release]);
            let said = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!out.status.success(), "{who} released the archive's hold");
            (!said.contains("cannot patch resource")).then_some(said)
        });
        assert!(refused.contains("hitl.dev/archive is set and released by the hitl-operator alone"), "{refused}");
        assert!(refused.contains(&format!("{who} may not release it")), "{refused}");
    }
    let planted = plain("planted")
        .replace("metadata: {name: planted}", "metadata: {name: planted, finalizers: [hitl.dev/archive]}");
    let out = kubectl_stdin("bob", &["-n", ns, "create", "-f", "-"], &planted);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("bob may not set it"), "{said}");

    // bob deletes the waiting run: accepted, and it stays until its record is in the archive (its
    // gate, never decided, has none).
    kubectl_ok("bob", &["-n", ns, "delete", "workflow", "guarded", "--wait=false"]);
    wait_for("the deleted run to be archived and go", WAIT, || gone(ns, "guarded").then_some(()));
    let stored = records(&pg, ns);
    let run = stored.iter().find(|r| r.kind == Kind::Run).map(content).expect("the run's record");
    assert_eq!(run["phase"], "Deleted", "{run}");
    let refused = kubectl_err("bob", &["-n", ns, "get", "workflow", "guarded"]);
    assert!(refused.contains("NotFound"), "{refused}");
}

/// Retention (`--archive-retention`) removes what is older than it keeps and leaves a checkpoint:
/// the chain still verifies from the first record kept, and a record removed by hand beside it
/// is still found.
#[test]
fn retention_removes_old_records_and_the_chain_still_verifies() {
    let pg = Postgres::own("archive-retention");
    let ns = common::unique_name("retained");
    let url = pg.url();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let archive = Archive::open(&url).unwrap();
        for n in 1..=4 {
            let content = format!(r#"{{"workflow":"run-{n}"}}"#);
            archive.store(&ns, Kind::Run, &format!("{ns}-{n}"), &content).await.unwrap();
        }
    });
    pg.psql(&format!(
        "UPDATE archive_records SET recorded_at = now() - interval '500 days' WHERE namespace = '{ns}' AND position <= 2"
    ));
    let watched = test_namespace("archive-retention");
    archive_rights();
    let flags = [&archive_flags(&pg)[..], &["--archive-retention".into(), "400d".into()]].concat();
    let _op = Operator::start_with(watched.name(), "", &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let kept = wait_for("retention to remove the two old records", WAIT, || {
        let kept = records(&pg, &ns);
        (kept.len() == 3).then_some(kept)
    });
    let places: Vec<(i64, Kind)> = kept.iter().map(|r| (r.position, r.kind)).collect();
    assert_eq!(places, [(3, Kind::Run), (4, Kind::Run), (5, Kind::Checkpoint)]);
    assert_eq!(kept[2].content_json()["deletedThrough"], 2);
    assert_eq!(chain::verify(&kept)[&ns], Verdict::Intact { records: 3, from: 3 });

    pg.psql(&format!("DELETE FROM archive_records WHERE namespace = '{ns}' AND position = 3"));
    let after = records(&pg, &ns);
    let Verdict::Broken { position, why } = &chain::verify(&after)[&ns] else { panic!("a removed record went unseen") };
    assert_eq!(*position, 4, "{why}");
}

/// Issue 23 end to end, as people use it: the operator with the archive on and its API
/// registered; a gate approved, one rejected, one expired and a quorum gate; the runs deleted by
/// their TTL; then every record read back with `kubectl hitl history`, as admin (everything) and
/// as alice (who may not read the namespace: her own decisions only), and the chain verified.
#[test]
fn every_outcome_reads_back_with_kubectl_hitl_history() {
    common::archive_api::require_front_proxy();
    let pg = Postgres::own("archive-e2e");
    let (work, api) = (test_namespace("archive-e2e"), test_namespace("archive-e2e-api"));
    let ns = work.name();
    let chart = common::archive_api::chart_archive(api.name());
    let secret = common::archive_api::kind(&chart, "Secret");
    let tls_dir = common::repo_root().join("target/test-logs").join(common::unique_name("archive-tls"));
    std::fs::create_dir_all(&tls_dir).unwrap();
    for key in ["tls.crt", "tls.key"] {
        let pem = base64_decode(secret["data"][key].as_str().unwrap());
        std::fs::write(tls_dir.join(key), pem).unwrap();
    }
    archive_rights();
    let port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let mut flags = archive_flags(&pg);
    flags.extend(["--archive-serve-addr".into(), format!("0.0.0.0:{port}")]);
    flags.extend(["--archive-tls-cert".into(), tls_dir.join("tls.crt").display().to_string()]);
    flags.extend(["--archive-tls-key".into(), tls_dir.join("tls.key").display().to_string()]);
    let _op = Operator::start_with(ns, "", &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let service = common::archive_api::kind(&chart, "Service")["metadata"]["name"].as_str().unwrap().to_string();
    let apiservice = common::archive_api::kind(&chart, "APIService");
    let _registered = common::archive_api::Registered::new(apiservice, api.name(), &service, port);

    let gate = |name: &str, extra: &str| {
        format!(
            "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  ttlSecondsAfterFinished: 1\n  steps:\n\
             \x20   - name: gate\n      suspend:\n        message: {name}?\n{extra}"
        )
    };
    apply(ns, &gate("approved", "        approvers: {users: [alice]}\n"));
    apply(ns, &gate("rejected", "        approvers: {users: [alice]}\n"));
    apply(ns, &gate("expired", "        approvers: {users: [alice]}\n        timeoutSeconds: 2\n"));
    apply(ns, &gate("quorum", "        approvers: {users: [alice, carol]}\n        requiredApprovals: 2\n"));
    for name in ["approved.gate", "rejected.gate", "quorum.gate"] {
        wait_pending(ns, name);
    }
    patch_approval("alice", ns, "approved.gate", r#"{"spec":{"decision":"Approve","comment":"ok"}}"#).unwrap();
    patch_approval("alice", ns, "rejected.gate", r#"{"spec":{"decision":"Reject","comment":"not <b>now</b>"}}"#)
        .unwrap();
    patch_approval("alice", ns, "quorum.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    patch_approval("carol", ns, "quorum.gate", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_for("the four runs to be archived and deleted", WAIT, || {
        ["approved", "rejected", "expired", "quorum"].iter().all(|w| gone(ns, w)).then_some(())
    });

    let run = common::archive_api::hitl("admin", &["history", "-n", ns, "-o", "json"]);
    assert!(run.ok, "{run}");
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    let outcome_of = |records: &Value, workflow: &str| {
        records["items"].as_array().unwrap().iter().map(content_of).find_map(|c| {
            (c["workflow"] == workflow && c.get("outcome").is_some())
                .then(|| c["outcome"].as_str().unwrap().to_string())
        })
    };
    assert_eq!(list["items"].as_array().unwrap().len(), 8, "four gates and four runs: {run}");
    for (workflow, outcome) in
        [("approved", "Approved"), ("rejected", "Rejected"), ("expired", "Expired"), ("quorum", "Approved")]
    {
        assert_eq!(outcome_of(&list, workflow).as_deref(), Some(outcome), "{workflow}: {run}");
    }
    let quorum = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(content_of)
        .find(|c| c["workflow"] == "quorum" && c.get("votes").is_some());
    let votes = quorum.expect("the quorum gate's record")["votes"].clone();
    assert!(votes.get("alice").is_some() && votes.get("carol").is_some(), "{votes}");

    // alice may not read the namespace: her three decisions (the quorum by her vote), nothing else.
    let hers = common::archive_api::hitl("alice", &["history", "-n", ns, "-o", "json"]);
    assert!(hers.ok, "{hers}");
    let hers: Value = serde_json::from_str(&hers.stdout).unwrap();
    let mut workflows: Vec<String> = hers["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| content_of(r)["workflow"].as_str().unwrap().to_string())
        .collect();
    workflows.sort();
    assert_eq!(workflows, ["approved", "quorum", "rejected"]);
    let verified = common::archive_api::hitl("admin", &["history", "-n", ns, "--verify"]);
    assert!(verified.ok, "{verified}");
    assert_eq!(verified.stdout, format!("{ns}: intact: 8 records from position 1\n"), "{verified}");

    // The approval pages' History, as alice: the same three gates, markup in a comment as text.
    let page = history_page_as("alice", ns);
    for workflow in ["approved", "rejected", "quorum"] {
        assert!(page.contains(&format!("<td>{workflow}</td>")), "{workflow} missing:\n{page}");
    }
    assert!(!page.contains("<td>expired</td>"), "alice sees a gate she did not decide:\n{page}");
    assert!(page.contains("not &lt;b&gt;now&lt;/b&gt;") && !page.contains("<b>now</b>"), "{page}");
}

/// `kubectl hitl ui` as `user` on 127.0.0.1 (its own session secret), and its History page of
/// `ns` as HTML.
fn history_page_as(user: &str, ns: &str) -> String {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(common::plugin_bin())
        .arg("--kubeconfig")
        .arg(common::kubeconfig(user))
        .args(["ui", "--no-open", "-n", ns])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start kubectl hitl ui");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{first}"));
    let (host, token_path) = url.trim_start_matches("http://").split_once('/').unwrap();
    let started = common::http_get(host, &format!("/{token_path}"), &[]);
    let cookie = started
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie:").then(|| l[11..].trim().to_string()))
        .and_then(|c| c.split(';').next().map(str::to_string))
        .unwrap_or_else(|| panic!("no session cookie: {started}"));
    let page = common::http_get(host, &format!("/history?namespace={ns}"), &[&format!("Cookie: {cookie}")]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    page
}

fn content_of(record: &Value) -> Value {
    serde_json::from_str(record["content"].as_str().unwrap_or_default()).unwrap_or_default()
}

fn base64_decode(text: &str) -> Vec<u8> {
    let secret: k8s_openapi::ByteString = serde_json::from_value(Value::String(text.into())).unwrap();
    secret.0
}
