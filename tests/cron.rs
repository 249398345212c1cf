//! CronWorkflows on the local cluster, on a seconds-scale schedule (six fields, seconds first):
//! Forbid and Replace, an operator restart that neither skips nor doubles a run, history limits,
//! suspend, status times; and the attacks a schedule must not open.

mod common;
mod harness;

use std::time::Duration;

use common::{TestNamespace, kubectl, kubectl_ok, kubectl_stdin, test_namespace, wait_for};
use harness::*;
use jiff::Timestamp;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A namespace where bob may write Workflows, WorkflowTemplates and CronWorkflows (a Role,
/// nothing else): not read Secrets, nor `use` templates.
fn namespace(prefix: &str) -> TestNamespace {
    ensure_crds();
    let ns = test_namespace(prefix);
    let n = ns.name();
    let kinds = "--resource=workflows.hitl.dev,workflowtemplates.hitl.dev,cronworkflows.hitl.dev";
    kubectl_ok("admin", &["-n", n, "create", "role", "author", "--verb=create,get,list,update,patch", kinds]);
    kubectl_ok("admin", &["-n", n, "create", "rolebinding", "bob-writes", "--role=author", "--user=bob"]);
    wait_for("bob's rights", WAIT, || {
        kubectl("bob", &["-n", n, "auth", "can-i", "create", "cronworkflows.hitl.dev"]).status.success().then_some(())
    });
    ns
}

fn apply_as(user: &str, ns: &str, yaml: &str) -> Result<(), String> {
    let out = kubectl_stdin(user, &["-n", ns, "apply", "-f", "-"], yaml);
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// A CronWorkflow `name` on `schedule`, with `extra` spec lines and `steps` as its runs' steps.
fn cron(name: &str, schedule: &str, extra: &str, steps: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: CronWorkflow\nmetadata: {{name: {name}}}\nspec:\n  schedule: \"{schedule}\"\n{extra}  workflowSpec:\n    steps:\n{steps}"
    )
}

const GATE: &str = "      - {name: gate, suspend: {message: hold}}\n";
const QUICK: &str = "      - {name: tick, sleep: 100ms}\n";

/// The Workflows the CronWorkflow owns (by its UID), with their scheduled times.
fn runs(ns: &str, cron: &str) -> Vec<(String, Timestamp, String)> {
    let uid = kubectl_ok("admin", &["-n", ns, "get", "cwf", cron, "-o", "jsonpath={.metadata.uid}"]);
    let out = kubectl_ok(
        "admin",
        &["-n", ns, "get", "workflows", "-l", &format!("hitl.dev/cron-workflow={cron}"), "-o", "json"],
    );
    let list: Value = serde_json::from_str(&out).unwrap();
    let mut found: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| {
            w["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|o| o["uid"] == uid.as_str()))
        })
        .filter(|w| w["metadata"]["deletionTimestamp"].is_null())
        .map(|w| {
            let at = time(&w["metadata"]["annotations"]["hitl.dev/scheduled-time"]);
            (w["metadata"]["name"].as_str().unwrap().to_string(), at, phase(w).to_string())
        })
        .collect();
    found.sort_by_key(|r| r.1);
    found
}

fn wait_runs(
    ns: &str,
    cron: &str,
    what: &str,
    f: impl Fn(&[(String, Timestamp, String)]) -> bool,
) -> Vec<(String, Timestamp, String)> {
    wait_for(what, WAIT, || Some(runs(ns, cron)).filter(|r| f(r)))
}

fn approve_gate(ns: &str, workflow: &str) {
    let name = wait_for("the gate's Approval", WAIT, || {
        get_json(ns, "workflow", workflow)
            .and_then(|w| w["status"]["steps"][0]["approvalName"].as_str().map(String::from))
    });
    wait_pending(ns, &name);
    patch_approval("admin", ns, &name, r#"{"spec":{"decision":"Approve"}}"#).unwrap();
}

#[test]
fn forbid_holds_the_next_run_until_the_active_one_ends() {
    let ns = namespace("cron-forbid");
    let n = ns.name();
    let _op = Operator::start(n);
    apply_as("admin", n, &cron("hold", "*/2 * * * * *", "  concurrencyPolicy: Forbid\n", GATE)).unwrap();
    let first = wait_runs(n, "hold", "the first run", |r| !r.is_empty());
    // A later time comes due while the gate holds the first run open: it is skipped, not run.
    wait_for("a due time skipped as Forbidden", WAIT, || {
        events(n, "hold").iter().any(|e| e.starts_with("Skipped:") && e.contains("Forbidden")).then_some(())
    });
    assert_eq!(runs(n, "hold").len(), 1, "no second run while one is active");
    let status = get_json(n, "cwf", "hold").unwrap()["status"].clone();
    assert_eq!(status["active"][0]["name"], first[0].0.as_str(), "{status}");
    assert_eq!(status["activeCount"], 1);
    approve_gate(n, &first[0].0);
    let both = wait_runs(n, "hold", "the next run once the first ended", |r| r.len() == 2);
    assert_eq!(both[0].2, "Succeeded");
    assert!(both[1].1 > both[0].1);
}

#[test]
fn replace_stops_the_active_run_and_starts_a_new_one() {
    let ns = namespace("cron-replace");
    let n = ns.name();
    let _op = Operator::start(n);
    apply_as("admin", n, &cron("swap", "*/3 * * * * *", "  concurrencyPolicy: Replace\n", GATE)).unwrap();
    let first = wait_runs(n, "swap", "the first run", |r| !r.is_empty())[0].clone();
    let later = wait_runs(n, "swap", "a run that replaced the first", |r| r.iter().any(|x| x.1 > first.1));
    assert!(!later.iter().any(|r| r.0 == first.0), "the replaced run is deleted: {later:?}");
    wait_for("the replaced run to be gone", WAIT, || get_json(n, "workflow", &first.0).is_none().then_some(()));
    let status = get_json(n, "cwf", "swap").unwrap()["status"].clone();
    assert!(status["active"].as_array().unwrap().iter().all(|a| a["name"] != first.0.as_str()), "{status}");
}

#[test]
fn a_restart_neither_skips_nor_doubles_a_run() {
    let ns = namespace("cron-restart");
    let n = ns.name();
    let mut op = Operator::start(n);
    let extra = "  successfulJobsHistoryLimit: 100\n  startingDeadlineSeconds: 30\n";
    apply_as("admin", n, &cron("tick", "*/4 * * * * *", extra, QUICK)).unwrap();
    wait_runs(n, "tick", "two runs", |r| r.len() >= 2);
    op.kill();
    let down = Timestamp::now();
    // Stay down across at least two scheduled times (every 4 s, on the unix second), and come
    // back just after one, so the restarted operator's first pass sees exactly that one as the
    // most recent missed time.
    let missed_last = (down.as_second() / 4 + 3) * 4;
    let up = Timestamp::from_millisecond(missed_last * 1000 + 200).unwrap();
    std::thread::sleep(Duration::try_from(up.duration_since(Timestamp::now())).unwrap_or_default());
    op.restart();
    let after = wait_runs(n, "tick", "a run after the restart", |r| r.iter().any(|x| x.1 > down));
    let missed: Vec<i64> = after.iter().filter(|r| r.1 > down && r.1 <= up).map(|r| r.1.as_second()).collect();
    assert_eq!(missed, vec![missed_last], "the most recent missed time runs, once, and no older one: {after:?}");
    let mut times: Vec<_> = after.iter().map(|r| r.1).collect();
    times.dedup();
    assert_eq!(times.len(), after.len(), "one Workflow per scheduled time");
}

#[test]
fn history_limits_suspend_and_status_times() {
    let ns = namespace("cron-history");
    let n = ns.name();
    let _op = Operator::start(n);
    let extra = "  successfulJobsHistoryLimit: 1\n  failedJobsHistoryLimit: 0\n  timeZone: Europe/Berlin\n";
    apply_as("admin", n, &cron("prune", "*/2 * * * * *", extra, QUICK)).unwrap();
    // Three runs have been created once the scheduled-time of the newest is 4 s past the first.
    let first = wait_runs(n, "prune", "a run", |r| !r.is_empty())[0].1;
    wait_for("three scheduled times to pass", WAIT, || {
        let s = get_json(n, "cwf", "prune")?["status"].clone();
        (time(&s["lastScheduleTime"]).as_second() - first.as_second() >= 4).then_some(())
    });
    wait_runs(n, "prune", "history pruned to one succeeded run", |r| {
        r.iter().filter(|x| x.2 == "Succeeded").count() <= 1 && r.iter().all(|x| x.1 > first)
    });
    let status = get_json(n, "cwf", "prune").unwrap()["status"].clone();
    let (last, next) = (time(&status["lastScheduleTime"]), time(&status["nextScheduleTime"]));
    assert!(next > last && (next.as_second() - last.as_second()) % 2 == 0, "{status}");
    let table = kubectl_ok("admin", &["-n", n, "get", "cwf", "prune"]);
    assert!(
        table.contains("*/2 * * * * *") && table.contains("Europe/Berlin") && table.contains("NEXT-SCHEDULE"),
        "{table}"
    );

    kubectl_ok("admin", &["-n", n, "patch", "cwf", "prune", "--type=merge", "-p", r#"{"spec":{"suspend":true}}"#]);
    let suspended = wait_for("suspend to be seen", WAIT, || {
        let s = get_json(n, "cwf", "prune")?["status"].clone();
        s["nextScheduleTime"].is_null().then_some(s)
    });
    let ready = suspended["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["reason"], "Suspended");
    let before = runs(n, "prune").last().map(|r| r.1);
    // A clock on the same schedule, served by the same operator: once it has started two runs
    // after the suspension was seen, two due times have passed for both (no sleep, no guess).
    let seen = Timestamp::now();
    apply_as("admin", n, &cron("clock", "*/2 * * * * *", "", QUICK)).unwrap();
    wait_runs(n, "clock", "two due times after the suspension", |r| r.iter().filter(|x| x.1 > seen).count() >= 2);
    assert_eq!(runs(n, "prune").last().map(|r| r.1), before, "no run starts while suspended");
}

#[test]
fn a_bad_schedule_is_refused_or_reported() {
    let ns = namespace("cron-bad");
    let n = ns.name();
    let refused = apply_as("admin", n, &cron("bad", "every minute", "", QUICK)).unwrap_err();
    assert!(refused.contains("spec.schedule"), "{refused}");
    let explain = kubectl_ok("admin", &["explain", "cronworkflow.spec.schedule"]);
    assert!(explain.contains("six with seconds first") && explain.contains("croner"), "{explain}");
    let _op = Operator::start(n);
    // Well-formed fields, a value out of range: the controller says so.
    apply_as("admin", n, &cron("late", "0 25 * * *", "", QUICK)).unwrap();
    let cond = wait_for("the Ready condition", WAIT, || {
        let s = get_json(n, "cwf", "late")?["status"].clone();
        s["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready").cloned()
    });
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("False"), Some("InvalidSchedule")), "{cond}");
}

#[test]
fn schedules_open_no_way_around_the_admission_policies() {
    let ns = namespace("cron-attack");
    let n = ns.name();
    kubectl_ok("admin", &["-n", n, "create", "secret", "generic", "db", "--from-literal=password=x"]);
    let container = |extra: &str| format!("      - {{name: s, container: {{image: busybox:1.36{extra}}}}}\n");

    let privileged = cron("root", "0 9 1 * *", "", &container(", securityContext: {privileged: true}"));
    let refused = apply_as("bob", n, &privileged).unwrap_err();
    assert!(refused.contains("step s: container.securityContext.privileged: true is not allowed here"), "{refused}");

    let secret = container(", env: [{name: P, valueFrom: {secretKeyRef: {name: db, key: password}}}]");
    let refused = apply_as("bob", n, &cron("leak", "0 9 1 * *", "", &secret)).unwrap_err();
    assert!(refused.contains("container.env P reads Secret db, which is not allowed here"), "{refused}");

    let by_ref = "apiVersion: hitl.dev/v1alpha1\nkind: CronWorkflow\nmetadata: {name: viaref}\nspec:\n  schedule: \"0 9 1 * *\"\n  workflowSpec:\n    workflowTemplateRef: {name: review}\n";
    let refused = apply_as("bob", n, by_ref).unwrap_err();
    assert!(
        refused.contains("spec.workflowSpec.workflowTemplateRef: you may not use WorkflowTemplate review"),
        "{refused}"
    );

    // The exemption for the operator's runs is the operator's alone: bob claiming to be a
    // CronWorkflow's run (its ownerReference) is checked as anyone else.
    apply_as("admin", n, &cron("owner", "0 9 1 * *", "  suspend: true\n", QUICK)).unwrap();
    let uid = kubectl_ok("admin", &["-n", n, "get", "cwf", "owner", "-o", "jsonpath={.metadata.uid}"]);
    let forged = format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: owner-1\n  ownerReferences: [{{apiVersion: hitl.dev/v1alpha1, kind: CronWorkflow, name: owner, uid: {uid}, controller: true}}]\nspec:\n  steps:\n{}",
        secret.replace("      - ", "    - ")
    );
    let refused = apply_as("bob", n, &forged).unwrap_err();
    assert!(
        refused.contains("reads Secret db, which is not allowed here")
            || refused.contains("only the operator creates a CronWorkflow's runs"),
        "{refused}"
    );
}

/// The run a schedule starts is created by the operator, yet bob wrote what it runs and alice
/// changed it: where the gate forbids self-approval neither may decide it (issue 26.1). Nobody
/// may rewrite the record of who wrote the CronWorkflow.
#[test]
fn a_schedule_does_not_launder_who_wrote_it() {
    let ns = namespace("cron-authors");
    let n = ns.name();
    common::add_user("dave");
    kubectl_ok("admin", &["-n", n, "create", "rolebinding", "alice-writes", "--role=author", "--user=alice"]);
    wait_for("alice's rights", WAIT, || {
        kubectl("alice", &["-n", n, "auth", "can-i", "update", "cronworkflows.hitl.dev"]).status.success().then_some(())
    });
    let gate = |message: &str| {
        format!(
            "      - {{name: gate, suspend: {{message: {message}, selfApproval: Forbid, approvers: {{users: [alice, bob, dave]}}}}}}\n"
        )
    };
    let extra = "  suspend: true\n  concurrencyPolicy: Forbid\n";
    apply_as("bob", n, &cron("weekly", "*/2 * * * * *", extra, &gate("ship"))).unwrap();
    let authors = || {
        kubectl_ok(
            "admin",
            &["-n", n, "get", "cwf", "weekly", "-o", r"jsonpath={.metadata.annotations.hitl\.dev/authors}"],
        )
    };
    assert_eq!(authors(), "bob");
    // Only the schedule changes: alice did not write what runs.
    kubectl_ok(
        "alice",
        &["-n", n, "patch", "cwf", "weekly", "--type", "merge", "-p", r#"{"spec":{"schedule":"*/3 * * * * *"}}"#],
    );
    assert_eq!(authors(), "bob");
    apply_as("alice", n, &cron("weekly", "*/2 * * * * *", extra, &gate("ship-it"))).unwrap();
    assert_eq!(authors(), "bob\nalice");

    // Writing or removing the record changes nothing: the API server keeps what it recorded.
    kubectl_ok("alice", &["-n", n, "annotate", "--overwrite", "cwf", "weekly", "hitl.dev/authors=admin"]);
    assert_eq!(authors(), "bob\nalice");
    kubectl_ok("alice", &["-n", n, "annotate", "cwf", "weekly", "hitl.dev/authors-"]);
    assert_eq!(authors(), "bob\nalice");

    let _op = Operator::start(n);
    kubectl_ok("bob", &["-n", n, "patch", "cwf", "weekly", "--type", "merge", "-p", r#"{"spec":{"suspend":false}}"#]);
    let run = wait_runs(n, "weekly", "a run", |r| !r.is_empty())[0].0.clone();
    let name = wait_for("the gate's Approval", WAIT, || {
        get_json(n, "workflow", &run).and_then(|w| w["status"]["steps"][0]["approvalName"].as_str().map(String::from))
    });
    let gate = wait_pending(n, &name);
    assert_eq!(gate["spec"]["workflowRef"]["authors"], serde_json::json!(["alice", "bob"]), "{gate}");
    for author in ["bob", "alice"] {
        let refused = patch_approval(author, n, &name, r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
        assert!(refused.contains(&format!("you ({author}) wrote what Workflow {run} runs")), "{refused}");
    }
    patch_approval("dave", n, &name, r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_phase(n, &run, "Succeeded", WAIT);
}

/// A Workflow that only looks like a CronWorkflow's run (its label, its name pattern, an owner
/// reference to it) is refused or ignored: it cannot stop the schedule, move its clock to the
/// year 2286, or push the real runs out of its history (issue 26.2).
#[test]
fn a_look_alike_run_does_not_capture_the_schedule() {
    let ns = namespace("cron-lookalike");
    let n = ns.name();
    let _op = Operator::start(n);
    let extra = "  successfulJobsHistoryLimit: 1\n  concurrencyPolicy: Forbid\n";
    apply_as("admin", n, &cron("review", "*/2 * * * * *", extra, QUICK)).unwrap();
    let uid = kubectl_ok("admin", &["-n", n, "get", "cwf", "review", "-o", "jsonpath={.metadata.uid}"]);
    let look_alike = |owner: &str| {
        format!(
            "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: review-9999999999\n  labels: {{hitl.dev/cron-workflow: review}}\n{owner}spec:\n  steps: [{{name: gate, suspend: {{message: hold}}}}]\n"
        )
    };
    let owned = format!(
        "  ownerReferences: [{{apiVersion: hitl.dev/v1alpha1, kind: CronWorkflow, name: review, uid: {uid}, controller: true}}]\n"
    );
    let refused = apply_as("bob", n, &look_alike(&owned)).unwrap_err();
    assert!(refused.contains("only the operator creates a CronWorkflow's runs"), "{refused}");
    // Without the owner reference it is bob's own Workflow, not a run.
    apply_as("bob", n, &look_alike("")).unwrap();
    let first = wait_runs(n, "review", "a finished run", |r| r.iter().any(|(_, _, p)| p == "Succeeded"))[0].0.clone();
    wait_for("a later run, and the first gone by the history limit", WAIT, || {
        let runs = runs(n, "review");
        (runs.iter().all(|(name, _, _)| *name != first) && !runs.is_empty()).then_some(())
    });
    assert!(get_json(n, "workflow", "review-9999999999").is_some(), "bob's Workflow is not the schedule's to delete");
    let last = get_json(n, "cwf", "review").unwrap()["status"]["lastScheduleTime"].as_str().unwrap().to_string();
    assert!(last.starts_with("20") && !last.starts_with("2286"), "{last}");
}

#[test]
fn the_operator_runs_what_the_author_was_allowed() {
    // The namespace owner may read the Secret; the operator may not (its ClusterRole has no
    // Secrets). Its run of the owner's CronWorkflow is neither refused for that nor changed.
    let ns = namespace("cron-author");
    let n = ns.name();
    kubectl_ok("admin", &["-n", n, "create", "secret", "generic", "db", "--from-literal=password=x"]);
    let _op = Operator::start(n);
    let steps = "      - {name: s, container: {image: busybox:1.36, env: [{name: P, valueFrom: {secretKeyRef: {name: db, key: password}}}]}}\n";
    apply_as("admin", n, &cron("nightly", "*/2 * * * * *", "", steps)).unwrap();
    let run = wait_runs(n, "nightly", "a run", |r| !r.is_empty())[0].0.clone();
    let wf = workflow(n, &run);
    let spec = get_json(n, "cwf", "nightly").unwrap()["spec"]["workflowSpec"].clone();
    assert_eq!(wf["spec"], spec, "the run is the CronWorkflow's workflowSpec, unchanged");
    assert!(
        wf["metadata"]["annotations"]["hitl.dev/created-by"].as_str().unwrap().starts_with("system:serviceaccount:")
    );
    wait_phase(n, &run, "Succeeded", WAIT);
}
