//! The operator's /metrics as Prometheus reads it, from the running binary: gauges counted from
//! its watches follow a gate from open to decided, the decision is timed and its outcome counted,
//! failure series exist at zero, and every metric the chart's alerts and dashboard name exists.

mod common;
mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{repo_root, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// A run that waits at a gate alice may decide (expiring in an hour), then sleeps briefly.
fn gated(name: &str) -> String {
    format!(
        r#"apiVersion: hitl.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  steps:
    - name: review
      suspend:
        approvers: {{users: [alice]}}
        timeoutSeconds: 3600
    - name: cool-off
      sleep: 100ms
"#
    )
}

/// The value of one series (`name{labels}` exactly as exposed), if it is there.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok())
}

/// Scrapes until `series` has the value `want`; returns the page.
fn wait_value(op: &Operator, series: &str, want: f64) -> String {
    wait_for(&format!("{series} = {want}"), WAIT, || {
        let m = op.metrics();
        (value(&m, series) == Some(want)).then_some(m)
    })
}

/// The names of the series on a page (`hitl_x_bucket`, `process_open_fds`, ...).
fn exported(metrics: &str) -> BTreeSet<String> {
    let body = metrics.split_once("\r\n\r\n").map_or(metrics, |(_, b)| b);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect()
}

/// Metric names an expression refers to.
fn names_in(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\b(hitl|process)_[a-z0-9_]+").unwrap();
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn a_gate_is_counted_pending_then_decided_timed_and_counted_by_outcome() {
    let ns = test_namespace("metrics");
    let op = Operator::start(&ns.name);
    let fresh = op.metrics();
    // Failure and outcome series are there before anything happened, at zero.
    for series in [
        r#"hitl_reconcile_failures_total{controller="workflow",category="Forbidden"}"#,
        r#"hitl_reconcile_failures_total{controller="watch",category="Unreadable"}"#,
        r#"hitl_gate_outcomes_total{outcome="approved"}"#,
        r#"hitl_gate_outcomes_total{outcome="expired"}"#,
        r#"hitl_step_duration_seconds_count{kind="suspend",phase="Succeeded"}"#,
        r#"hitl_notifications_total{channel_kind="webhook",event="requested",result="failed"}"#,
        "hitl_approval_decision_seconds_count",
    ] {
        assert_eq!(value(&fresh, series), Some(0.0), "{series} is not at zero from the start:\n{fresh}");
    }
    let version = format!(r#"hitl_build_info{{version="{}",commit=""#, env!("CARGO_PKG_VERSION"));
    assert!(fresh.lines().any(|l| l.starts_with(&version) && l.ends_with("} 1")), "no {version}...:\n{fresh}");
    assert_eq!(value(&fresh, "hitl_leader"), Some(1.0));
    assert!(value(&fresh, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0), "{fresh}");
    for process in ["process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"] {
        assert!(value(&fresh, process).is_some_and(|v| v > 0.0), "{process} missing:\n{fresh}");
    }

    apply(&ns.name, &gated("deal"));
    wait_phase(&ns.name, "deal", "Waiting", WAIT);
    wait_pending(&ns.name, "deal.review");
    let pending = format!(r#"hitl_approvals_pending{{namespace="{}"}}"#, ns.name);
    // Waits for the expiry, not the pending count: an Approval the operator's cache holds before
    // its status is already counted pending (no status reads as Pending), but has no expiry yet.
    let expiry = format!(r#"hitl_approval_next_expiry_timestamp_seconds{{namespace="{}"}}"#, ns.name);
    let expires_at = time(&approval(&ns.name, "deal.review")["status"]["expiresAt"]).as_second() as f64;
    let waiting = wait_value(&op, &expiry, expires_at);
    let phase = |kind: &str, p: &str| format!(r#"hitl_{kind}{{namespace="{}",phase="{p}"}}"#, ns.name);
    assert_eq!(value(&waiting, &pending), Some(1.0), "{waiting}");
    assert_eq!(value(&waiting, &phase("workflows", "Waiting")), Some(1.0), "{waiting}");
    assert_eq!(value(&waiting, &phase("approvals", "Pending")), Some(1.0), "{waiting}");
    assert_eq!(value(&waiting, "hitl_approval_decision_seconds_count"), Some(0.0));

    patch_approval("alice", &ns.name, "deal.review", r#"{"spec":{"decision":"Approve"}}"#).expect("alice approves");
    wait_phase(&ns.name, "deal", "Succeeded", WAIT);
    wait_value(&op, &phase("workflows", "Succeeded"), 1.0);
    // The run moves on as it sees the decision; the Approval's record (and its metrics) follow.
    wait_value(&op, "hitl_approval_decision_seconds_count", 1.0);
    let decided = wait_value(&op, &phase("approvals", "Approved"), 1.0);
    assert_eq!(value(&decided, "hitl_approval_decision_seconds_count"), Some(1.0), "{decided}");
    assert_eq!(value(&decided, r#"hitl_gate_outcomes_total{outcome="approved"}"#), Some(1.0), "{decided}");
    assert_eq!(value(&decided, r#"hitl_gate_outcomes_total{outcome="rejected"}"#), Some(0.0), "{decided}");
    assert_eq!(value(&decided, &pending), Some(0.0), "{decided}");
    assert_eq!(value(&decided, &phase("approvals", "Approved")), Some(1.0), "{decided}");
    assert_eq!(value(&decided, &phase("workflows", "Waiting")), Some(0.0), "{decided}");
    assert_eq!(value(&decided, &expiry), None, "no pending gate, no expiry: {decided}");
    let steps = |kind: &str| format!(r#"hitl_step_duration_seconds_count{{kind="{kind}",phase="Succeeded"}}"#);
    assert_eq!(value(&decided, &steps("suspend")), Some(1.0), "{decided}");
    assert_eq!(value(&decided, &steps("sleep")), Some(1.0), "{decided}");

    // A restarted operator counts the same objects from its fresh watch.
    let mut op = op;
    op.kill();
    op.restart();
    wait_for("the restarted operator to serve /metrics", WAIT, || {
        let log = std::fs::read_to_string(&op.log).ok()?;
        (log.matches("serving /metrics").count() == 2).then_some(())
    });
    wait_value(&op, &phase("workflows", "Succeeded"), 1.0);
}

#[test]
fn every_metric_the_alerts_and_dashboard_use_is_exported() {
    let ns = test_namespace("metrics-names");
    let op = Operator::start(&ns.name);
    // The gauges counted from the watches show only objects that exist: keep a gate open.
    apply(&ns.name, &gated("open"));
    wait_pending(&ns.name, "open.review");
    let series = format!(r#"hitl_approval_next_expiry_timestamp_seconds{{namespace="{}"}}"#, ns.name);
    let page = wait_for("the expiry gauge", WAIT, || {
        let m = op.metrics();
        value(&m, &series).map(|_| m)
    });
    let names = exported(&page);

    let chart = repo_root().join("charts/hitl-operator/monitoring");
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart.join("prometheus-rules.yaml")).unwrap()).unwrap();
    let mut exprs: Vec<(String, String)> = Vec::new();
    for rule in rules["groups"].as_sequence().unwrap().iter().flat_map(|g| g["rules"].as_sequence().unwrap()) {
        exprs.push((format!("alert {}", rule["alert"].as_str().unwrap()), rule["expr"].as_str().unwrap().into()));
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart.join("grafana-dashboard.json")).unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push((format!("panel {}", panel["title"]), target["expr"].as_str().unwrap().into()));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
        exprs.push((format!("variable {}", var["name"]), var["query"].as_str().unwrap().into()));
    }
    let missing: Vec<String> = exprs
        .iter()
        .flat_map(|(at, e)| names_in(e).into_iter().filter(|n| !names.contains(n)).map(move |n| format!("{at}: {n}")))
        .collect();
    assert!(missing.is_empty(), "not exported by the operator:\n  {}\nexported: {names:?}", missing.join("\n  "));
    let used: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| names_in(e)).collect();
    assert!(used.contains("hitl_approval_next_expiry_timestamp_seconds") && used.contains("hitl_leader"), "{used:?}");
}
