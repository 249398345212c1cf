//! The samples in config/samples, used as a new user would: `kubectl apply -f`, `kubectl get hwf`,
//! `kubectl wait`.

mod common;
mod harness;

use common::{kubectl_ok, repo_root, test_namespace};
use harness::*;

#[test]
fn every_sample_completes_on_the_local_cluster() {
    let ns = test_namespace("samples");
    let _op = Operator::start(&ns.name);
    let dir = repo_root().join("config/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut names = vec![];
    for f in &files {
        let out = kubectl_ok("admin", &["-n", &ns.name, "apply", "-f", f.to_str().unwrap()]);
        // Samples that hold other kinds (a WorkflowTemplate, a CronWorkflow) start no run here.
        let runs = out.lines().filter_map(|l| l.split_whitespace().next()?.strip_prefix("workflow.hitl.dev/"));
        names.extend(runs.map(String::from));
    }
    // The one with a gate waits for a person.
    wait_pending(&ns.name, "contract-review.review");
    let table = kubectl_ok("admin", &["-n", &ns.name, "get", "hwf"]);
    assert!(table.contains("contract-review") && table.contains("Waiting"), "{table}");
    patch_approval(
        "alice",
        &ns.name,
        "contract-review.review",
        r#"{"spec":{"decision":"Approve","input":{"verdict":"redact"}}}"#,
    )
    .unwrap();
    // The access review: one gate per account, decided on its own.
    for (i, keep) in [(2, true), (0, true), (1, false)] {
        wait_pending(&ns.name, &format!("access-review.review.{i}"));
        let patch = format!(r#"{{"spec":{{"input":{{"keep":{keep}}}}}}}"#);
        patch_approval("alice", &ns.name, &format!("access-review.review.{i}"), &patch).unwrap();
    }
    // The four-eyes gate needs two people.
    wait_pending(&ns.name, "release.approve");
    for who in ["alice", "carol"] {
        patch_approval(who, &ns.name, "release.approve", r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    }
    for name in &names {
        let out = kubectl_ok(
            "admin",
            &[
                "-n",
                &ns.name,
                "wait",
                "--for=jsonpath={.status.phase}=Succeeded",
                "--timeout=60s",
                &format!("workflow/{name}"),
            ],
        );
        assert!(out.contains("condition met"), "{name}: {out}");
    }
    let wf = workflow(&ns.name, "contract-review");
    assert_eq!(step(&wf, "redact")["phase"], "Succeeded");
    assert_eq!(step(&wf, "sign")["phase"], "Skipped");
    // Only erik's access was not kept: one revoke Pod, for him.
    let wf = workflow(&ns.name, "access-review");
    let revoke: Vec<&str> =
        step(&wf, "revoke")["items"].as_array().unwrap().iter().map(|i| i["phase"].as_str().unwrap()).collect();
    assert_eq!(revoke, ["Skipped", "Succeeded", "Skipped"]);
    let revoked = pods(&ns.name, "access-review");
    let args: Vec<&str> = revoked.iter().filter_map(|p| p["spec"]["containers"][0]["args"][1].as_str()).collect();
    assert_eq!(args, ["revoking editor from erik"]);
    let table = kubectl_ok("admin", &["-n", &ns.name, "get", "hwf"]);
    assert_eq!(table.matches("Succeeded").count(), names.len(), "{table}");
    // The schedule sample is accepted as written: the API server recorded its author, and the
    // operator schedules it (next 1st of the month, 09:00 Berlin).
    let cron = wait_for_json(&ns.name, "cwf", "monthly-access-review", |c| {
        let ready = c["status"]["conditions"].as_array()?.iter().find(|x| x["type"] == "Ready")?.clone();
        (ready["reason"] == "Scheduling").then_some(c.clone())
    });
    assert_eq!(cron["metadata"]["annotations"]["hitl.dev/authors"], "admin", "{cron}");
    let next: jiff::Timestamp = cron["status"]["nextScheduleTime"].as_str().unwrap().parse().unwrap();
    let berlin = next.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!((berlin.day(), berlin.hour(), berlin.minute()), (1, 9, 0), "{cron}");
}

/// Waits until `f` accepts the object (as admin reads it).
fn wait_for_json<T>(ns: &str, kind: &str, name: &str, f: impl Fn(&serde_json::Value) -> Option<T>) -> T {
    common::wait_for(&format!("{kind}/{name}"), std::time::Duration::from_secs(60), || {
        get_json(ns, kind, name).and_then(|v| f(&v))
    })
}
