//! The state of one pass: the Workflow, what it owns, the time, and the plan being made.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::Plan;
use super::scope::scope_vars;
use crate::expr;
use hitl_api::{Approval, StepPhase, StepStatus, Workflow};

/// When to try again to start a step whose expressions could not be evaluated yet, because too
/// many abandoned evaluations were still running (see `bounded`).
pub(super) const BUSY_RETRY: SignedDuration = SignedDuration::from_secs(5);

/// A status timestamp. The API stores whole seconds, so round up: a deadline computed from a stored
/// start (sleep, attempt timeout, run deadline) is then never earlier than the real one.
pub(super) fn t(ts: Timestamp) -> Time {
    let whole = Timestamp::from_second(ts.as_second()).expect("in range");
    Time(if whole < ts { whole + SignedDuration::from_secs(1) } else { whole })
}

/// `seconds` after `ts`, at most the end of time.
pub(super) fn after(ts: &Time, seconds: i64) -> Timestamp {
    ts.0.saturating_add(SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MAX)
}

/// One pass over a Workflow (or, in `abort` and `too_large`, what is left of one).
pub(super) struct Ctx<'a> {
    pub(super) wf: &'a Workflow,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) now: Timestamp,
    pub(super) pods: HashMap<&'a str, &'a Pod>,
    pub(super) approvals: HashMap<&'a str, &'a Approval>,
    pub(super) plan: Plan,
    /// The `forEach` item being handled (index, value): names its Pod and Approval, and is
    /// `item`/`index` to its expressions.
    pub(super) item: Option<(usize, serde_json::Value)>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(wf: &'a Workflow, pods: &'a [Pod], approvals: &'a [Approval], now: Timestamp) -> Self {
        Ctx {
            wf,
            name: wf.metadata.name.clone().unwrap_or_default(),
            uid: wf.metadata.uid.clone().unwrap_or_default(),
            now,
            pods: pods.iter().filter_map(|p| Some((p.metadata.name.as_deref()?, p))).collect(),
            approvals: approvals.iter().filter_map(|a| Some((a.metadata.name.as_deref()?, a))).collect(),
            plan: Plan {
                status: wf.status.clone().unwrap_or_default(),
                create_pods: vec![],
                delete_pods: vec![],
                release_pods: vec![],
                create_approvals: vec![],
                cancel_approvals: vec![],
                events: vec![],
                requeue_at: None,
                delete_workflow: false,
                create_workspace: None,
                spec_valid: false,
            },
            item: None,
        }
    }

    /// The variables for the step being handled: those of every step, plus `item` and `index`
    /// while a `forEach` item is.
    pub(super) fn scope(&self, steps: &[StepStatus]) -> expr::Scope {
        expr::Scope::new(self.vars(steps))
    }

    pub(super) fn vars(&self, steps: &[StepStatus]) -> serde_json::Value {
        let mut vars = scope_vars(self.wf, steps);
        if let Some((i, value)) = &self.item {
            vars["item"] = value.clone();
            vars["index"] = json!(i);
        }
        vars
    }

    pub(super) fn wake_at(&mut self, at: Timestamp) {
        if at > self.now {
            self.plan.requeue_at = Some(self.plan.requeue_at.map_or(at, |r| r.min(at)));
        }
    }

    pub(super) fn finish(&self, st: &mut StepStatus, phase: StepPhase, reason: Option<&str>, message: Option<String>) {
        st.phase = phase;
        st.reason = reason.map(str::to_string);
        st.message = message;
        st.finished_at = Some(t(self.now));
    }
}
