//! Workflows on the local cluster: Pods run in order, outputs flow, failures, retries, timeouts,
//! restarts. Step outcomes are chosen with the kwok `sim.hitl.dev/*` annotations.

mod common;
mod harness;

use std::time::Duration;

use common::fixtures::{self, StepBuilder, container, sleep, suspend};
use common::{kubectl_ok, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// A busybox container step; `.sim(..)` annotates it for the simulated node.
fn c(name: &str) -> StepBuilder {
    container(name, "busybox:1.36")
}

fn workflow_yaml(name: &str, steps: impl IntoIterator<Item = StepBuilder>) -> String {
    fixtures::workflow(name).steps(steps).yaml()
}

#[test]
fn a_sequence_runs_step_after_step() {
    let ns = test_namespace("seq");
    let op = Operator::start(&ns.name);
    apply(&ns.name, &workflow_yaml("seq", [c("one"), c("two"), c("three")]));
    let out =
        kubectl_ok("admin", &["-n", &ns.name, "wait", "--for=condition=Completed", "--timeout=60s", "workflow/seq"]);
    assert!(out.contains("condition met"), "{out}");
    let wf = workflow(&ns.name, "seq");
    assert_eq!(phase(&wf), "Succeeded");
    assert_eq!(wf["status"]["progress"], "3/3");
    for (a, b) in [("one", "two"), ("two", "three")] {
        assert!(
            time(&step(&wf, a)["finishedAt"]) <= time(&step(&wf, b)["startedAt"]),
            "{b} started before {a} finished"
        );
    }
    assert_eq!(pods(&ns.name, "seq").len(), 3, "one Pod per step");
    let metrics = op.metrics();
    assert!(metrics.contains(r#"hitl_api_writes_total{kind="create_pod"} 3"#), "{metrics}");
    let table = kubectl_ok("admin", &["-n", &ns.name, "get", "hwf"]);
    assert!(table.contains("PHASE") && table.contains("PROGRESS") && table.contains("WAITING-FOR"), "{table}");
    assert!(table.contains("Succeeded") && table.contains("3/3"), "{table}");
}

#[test]
fn fan_out_and_fan_in() {
    let ns = test_namespace("dag");
    let _op = Operator::start(&ns.name);
    let steps = [
        c("start"),
        c("left").depends_on(["start"]),
        c("right").depends_on(["start"]).sim("duration", "1s"),
        c("join").depends_on(["left", "right"]),
    ];
    apply(&ns.name, &workflow_yaml("dag", steps));
    let wf = wait_phase(&ns.name, "dag", "Succeeded", WAIT);
    let join = time(&step(&wf, "join")["startedAt"]);
    for s in ["left", "right"] {
        assert!(time(&step(&wf, s)["startedAt"]) >= time(&step(&wf, "start")["finishedAt"]));
        assert!(time(&step(&wf, s)["finishedAt"]) <= join, "join started before {s} finished");
    }
}

#[test]
fn an_output_feeds_a_later_steps_args_and_when_skips() {
    let ns = test_namespace("outputs");
    let _op = Operator::start(&ns.name);
    let yaml = fixtures::workflow("flow")
        .param("document", "s3://contracts/acme.pdf")
        .step(c("scan").sim("message", r#"{"flagged": 3, "verdict": "ok"}"#))
        .step(c("escalate").when("int(steps.scan.outputs.flagged) > 10"))
        .step(c("sign").depends_on(["escalate"]).args([
            "echo",
            "{{ params.document }}: {{ steps.scan.outputs.flagged }} flagged, escalate {{ steps.escalate.phase }}",
        ]))
        .yaml();
    apply(&ns.name, &yaml);
    let wf = wait_phase(&ns.name, "flow", "Succeeded", WAIT);
    assert_eq!(step(&wf, "scan")["outputs"]["flagged"], "3");
    assert_eq!(step(&wf, "escalate")["phase"], "Skipped");
    let pod_name = step(&wf, "sign")["podName"].as_str().unwrap().to_string();
    let args =
        kubectl_ok("admin", &["-n", &ns.name, "get", "pod", &pod_name, "-o", "jsonpath={.spec.containers[0].args}"]);
    assert_eq!(args, r#"["echo","s3://contracts/acme.pdf: 3 flagged, escalate Skipped"]"#);
}

#[test]
fn a_failed_attempt_is_retried_until_it_succeeds() {
    let ns = test_namespace("retry");
    let _op = Operator::start(&ns.name);
    let flaky = c("flaky").retries(3).sim("fail-attempts", "1,2").sim("exit-code", "7");
    apply(&ns.name, &workflow_yaml("retry", [flaky]));
    let wf = wait_phase(&ns.name, "retry", "Succeeded", WAIT);
    assert_eq!(step(&wf, "flaky")["attempts"], 3);
    let pods = pods(&ns.name, "retry");
    assert_eq!(pods.len(), 3, "a new Pod per attempt");
    let events = events(&ns.name, "retry");
    assert_eq!(events.iter().filter(|e| e.starts_with("StepRetrying")).count(), 2, "{events:?}");
}

/// Backoff read from the status timestamps: each retry waits (2 s, then 4 s) after the failure
/// was seen, and the next attempt starts no earlier than its `retryAt`.
#[test]
fn retries_wait_out_their_backoff() {
    let ns = test_namespace("backoff");
    let _op = Operator::start(&ns.name);
    let flaky = c("flaky").retries(2).retry_backoff(2, 2.0).sim("fail-attempts", "1,2").sim("exit-code", "75");
    apply(&ns.name, &workflow_yaml("backoff", [flaky]));
    // (attempt, failed at, retry at) for each retry, and each attempt's start, as they go by.
    let mut retries = std::collections::BTreeMap::new();
    let mut starts = std::collections::BTreeMap::new();
    wait_for("the run to succeed, watching its retries", WAIT, || {
        let wf = workflow(&ns.name, "backoff");
        wf["status"]["steps"].as_array()?;
        let st = step(&wf, "flaky");
        let attempt = st["attempts"].as_i64().unwrap_or(0);
        if st["attemptStartedAt"].is_string() {
            starts.insert(attempt, time(&st["attemptStartedAt"]));
        }
        if st["retryAt"].is_string() {
            retries.insert(attempt, (time(&st["attemptFailedAt"]), time(&st["retryAt"])));
        }
        (phase(&wf) == "Succeeded").then_some(())
    });
    let waits: Vec<i64> = retries.values().map(|(failed, at)| at.duration_since(*failed).as_secs()).collect();
    assert_eq!(waits, [2, 4], "delay 2 s, factor 2: {retries:?}");
    for (attempt, (_, at)) in &retries {
        assert!(starts[&(attempt + 1)] >= *at, "attempt {} started before its retryAt", attempt + 1);
    }
}

/// A retry policy's condition decides which failures are retried.
#[test]
fn a_failure_the_retry_condition_does_not_accept_is_final() {
    let ns = test_namespace("retrywhen");
    let _op = Operator::start(&ns.name);
    let flaky =
        c("flaky").retries(3).retry_when("attempt.exitCode == 75").sim("outcome", "Failed").sim("exit-code", "3");
    apply(&ns.name, &workflow_yaml("retrywhen", [flaky]));
    let wf = wait_phase(&ns.name, "retrywhen", "Failed", WAIT);
    assert_eq!(step(&wf, "flaky")["attempts"], 1, "exit code 3 is not retried");
    assert_eq!(pods(&ns.name, "retrywhen").len(), 1);
}

#[test]
fn exhausted_retries_fail_the_run_and_omit_what_follows() {
    let ns = test_namespace("fail");
    let _op = Operator::start(&ns.name);
    let steps = [
        c("bad").retries(1).sim("outcome", "Failed").sim("exit-code", "3").sim("message", "clause 7 unreadable"),
        c("after"),
        c("later").depends_on(["after"]),
    ];
    apply(&ns.name, &workflow_yaml("fail", steps));
    let wf = wait_phase(&ns.name, "fail", "Failed", WAIT);
    let bad = step(&wf, "bad");
    assert_eq!(bad["phase"], "Failed");
    assert_eq!(bad["attempts"], 2);
    assert_eq!(bad["message"], "exit code 3: clause 7 unreadable");
    assert_eq!(step(&wf, "after")["phase"], "Omitted");
    assert_eq!(step(&wf, "later")["phase"], "Omitted");
    assert_eq!(pods(&ns.name, "fail").len(), 2);
    let completed = wf["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Completed").unwrap();
    assert_eq!((completed["status"].as_str(), completed["reason"].as_str()), (Some("True"), Some("Failed")));
    assert!(events(&ns.name, "fail").iter().any(|e| e.starts_with("WorkflowFailed")));
}

#[test]
fn an_attempt_past_its_timeout_is_stopped() {
    let ns = test_namespace("timeout");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &workflow_yaml("timeout", [c("slow").timeout_seconds(2).sim("duration", "5m")]));
    let wf = wait_phase(&ns.name, "timeout", "Failed", WAIT);
    assert_eq!(step(&wf, "slow")["reason"], "Timeout");
    let pod = step(&wf, "slow")["podName"].as_str().unwrap().to_string();
    wait_for("the timed-out Pod to be deleted", WAIT, || get_json(&ns.name, "pod", &pod).is_none().then_some(()));
}

#[test]
fn a_pod_deleted_mid_run_is_a_failed_attempt() {
    let ns = test_namespace("poddel");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &workflow_yaml("poddel", [c("long").retries(1).sim("duration", "3s")]));
    let first = wait_for("the first attempt's Pod", WAIT, || {
        let wf = workflow(&ns.name, "poddel");
        wf["status"]["steps"][0]["podName"].as_str().map(str::to_string)
    });
    kubectl_ok("admin", &["-n", &ns.name, "delete", "pod", &first, "--wait=false"]);
    let wf = wait_phase(&ns.name, "poddel", "Succeeded", WAIT);
    assert_eq!(step(&wf, "long")["attempts"], 2);
    let events = events(&ns.name, "poddel");
    assert!(events.iter().any(|e| e.starts_with("StepRetrying") && e.contains("PodDeleted")), "{events:?}");
}

#[test]
fn deleting_a_workflow_collects_its_pods() {
    let ns = test_namespace("gc");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &workflow_yaml("gc", [c("long").sim("duration", "5m")]));
    wait_for("the step Pod", WAIT, || (!pods(&ns.name, "gc").is_empty()).then_some(()));
    kubectl_ok("admin", &["-n", &ns.name, "delete", "workflow", "gc", "--wait=false"]);
    wait_for("garbage collection of the Pod", Duration::from_secs(90), || {
        pods(&ns.name, "gc").is_empty().then_some(())
    });
}

#[test]
fn a_killed_controller_resumes_without_duplicates() {
    let ns = test_namespace("restart");
    let mut op = Operator::start(&ns.name);
    let slow = |name| c(name).sim("duration", "2s");
    apply(&ns.name, &workflow_yaml("restart", [slow("a"), slow("b"), slow("c")]));
    wait_for("step a to run", WAIT, || {
        let wf = workflow(&ns.name, "restart");
        (wf["status"]["steps"][0]["phase"] == "Running").then_some(())
    });
    op.kill();
    // Step a's Pod finishes while nobody watches: the restarted controller must pick it up from
    // where the dead one left it, without starting a again or b twice.
    wait_for("step a's Pod to finish while the controller is down", WAIT, || {
        let a = pods(&ns.name, "restart").into_iter().find(|p| p["metadata"]["labels"]["hitl.dev/step"] == "a")?;
        (a["status"]["phase"] == "Succeeded").then_some(())
    });
    assert_eq!(step(&workflow(&ns.name, "restart"), "a")["phase"], "Running", "nobody acted while down");
    op.restart();
    let wf = wait_phase(&ns.name, "restart", "Succeeded", WAIT);
    let pods = pods(&ns.name, "restart");
    let mut names: Vec<_> = pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "exactly one Pod per step: {names:?}");
    for s in ["a", "b", "c"] {
        assert_eq!(step(&wf, s)["attempts"], 1);
    }
}

#[test]
fn a_malformed_workflow_does_not_stop_others() {
    let ns = test_namespace("malformed");
    let _op = Operator::start(&ns.name);
    // Admission lets these through; the operator's own checks must fail them.
    let cycle = workflow_yaml("cycle", [container("a", "x").depends_on(["b"]), container("b", "x").depends_on(["a"])]);
    let badcel = workflow_yaml("badcel", [container("a", "x").when("steps.x.phase ==")]);
    let badtemplate = workflow_yaml("badtemplate", [container("a", "x").args(["{{ params. }}"])]);
    apply(&ns.name, &cycle);
    apply(&ns.name, &badcel);
    apply(&ns.name, &badtemplate);
    apply(&ns.name, &workflow_yaml("good", [c("one"), c("two")]));
    for (name, want) in [
        ("cycle", "steps a -> b -> a depend on each other in a cycle"),
        ("badcel", "step a: when: \"steps.x.phase ==\" does not compile"),
        ("badtemplate", "step a: container.args[0]: \"params.\" does not compile"),
    ] {
        let wf = wait_phase(&ns.name, name, "Failed", WAIT);
        assert_eq!(wf["status"]["reason"], "InvalidSpec");
        let msg = wf["status"]["message"].as_str().unwrap();
        assert!(msg.starts_with(want), "{name}: {msg}");
        assert!(pods(&ns.name, name).is_empty(), "{name} started a Pod");
    }
    wait_phase(&ns.name, "good", "Succeeded", WAIT);
}

#[test]
fn sleep_and_spec_suspend() {
    let ns = test_namespace("pause");
    let _op = Operator::start(&ns.name);
    let yaml = fixtures::workflow("pause").suspended().step(sleep("nap", "1s")).step(container("after", "x")).yaml();
    apply(&ns.name, &yaml);
    let wf = wait_for("the paused run to report", WAIT, || {
        let wf = workflow(&ns.name, "pause");
        (phase(&wf) == "Pending").then_some(wf)
    });
    assert_eq!(wf["status"]["reason"], "Suspended");
    kubectl_ok(
        "admin",
        &["-n", &ns.name, "patch", "workflow", "pause", "--type=merge", "-p", r#"{"spec":{"suspend":false}}"#],
    );
    let wf = wait_phase(&ns.name, "pause", "Succeeded", WAIT);
    let nap = step(&wf, "nap");
    let slept = time(&nap["finishedAt"]).duration_since(time(&nap["startedAt"]));
    assert!(slept.as_secs() >= 1, "slept {slept:?}");
}

#[test]
fn a_finished_run_is_deleted_after_its_ttl_and_a_deadline_stops_a_run() {
    let ns = test_namespace("ttl");
    let _op = Operator::start(&ns.name);
    let ttl = fixtures::workflow("brief").ttl_seconds_after_finished(2).step(container("a", "x"));
    let deadline = fixtures::workflow("late")
        .active_deadline_seconds(2)
        .step(container("slow", "x").sim("duration", "5m"))
        .step(container("never", "x"));
    apply(&ns.name, &ttl.yaml());
    apply(&ns.name, &deadline.yaml());
    wait_phase(&ns.name, "brief", "Succeeded", WAIT);
    wait_for("the finished Workflow to be deleted", WAIT, || {
        get_json(&ns.name, "workflow", "brief").is_none().then_some(())
    });
    let wf = wait_phase(&ns.name, "late", "Failed", WAIT);
    assert_eq!(wf["status"]["reason"], "DeadlineExceeded");
    assert_eq!(step(&wf, "slow")["reason"], "DeadlineExceeded");
    assert_eq!(step(&wf, "never")["phase"], "Omitted");
}

#[test]
fn a_pod_the_api_server_refuses_fails_its_step_with_the_reason() {
    let ns = test_namespace("refused");
    let _op = Operator::start(&ns.name);
    let yaml = workflow_yaml("refused", [container("big", "x").cpu_limit("lots"), container("after", "x")]);
    apply(&ns.name, &yaml);
    let wf = wait_phase(&ns.name, "refused", "Failed", WAIT);
    let big = step(&wf, "big");
    assert_eq!(big["reason"], "PodCreateFailed");
    assert!(big["message"].as_str().unwrap().contains("quantities must match the regular expression"), "{big}");
    assert_eq!(step(&wf, "after")["phase"], "Omitted");
}

/// Exit steps run after the steps ended, whatever the outcome, and see it: after success, after
/// a failed step, and after a rejected gate.
#[test]
fn exit_steps_run_after_success_failure_and_rejection() {
    let ns = test_namespace("onexit");
    let _op = Operator::start(&ns.name);
    let report = || c("report").args(["{{ workflow.phase }}:{{ workflow.failedSteps.join(',') }}"]);
    let failing = c("a").sim("outcome", "Failed").sim("exit-code", "2");
    let gate = suspend("review").approvers_users(["alice"]);
    for (name, step) in [("ok", c("a")), ("bad", failing), ("rejected", gate)] {
        apply(&ns.name, &fixtures::workflow(name).step(step).on_exit(report()).yaml());
    }
    wait_pending(&ns.name, "rejected.review");
    patch_approval("alice", &ns.name, "rejected.review", r#"{"spec":{"decision":"Reject"}}"#).unwrap();
    for (name, ended, args) in
        [("ok", "Succeeded", "Succeeded:"), ("bad", "Failed", "Failed:a"), ("rejected", "Failed", "Failed:review")]
    {
        let wf = wait_phase(&ns.name, name, ended, WAIT);
        let report = step(&wf, "report");
        assert_eq!(report["phase"], "Succeeded", "{name}: the exit step ran");
        let pod = report["podName"].as_str().unwrap();
        let shown =
            kubectl_ok("admin", &["-n", &ns.name, "get", "pod", pod, "-o", "jsonpath={.spec.containers[0].args[0]}"]);
        assert_eq!(shown, args, "{name}");
    }
}
