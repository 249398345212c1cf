//! One pass: observe every step in flight, then start what is ready, then sum up. Also the pass
//! that stops a run at once (`abort`).

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use super::Plan;
use super::ctx::{Ctx, after, t};
use super::pod_gc::{collect_pods, release_recorded_pods};
use super::status::{finish_run, summarize};
use super::validate::{Valid, structure, validate};
use super::{fanout, kinds};
use crate::event::Event;
use crate::names;
use hitl_api::{Approval, StepPhase, StepStatus, Workflow, WorkflowPhase, WorkflowStatus};

/// Decides the next actions for `wf`, given the Pods and Approvals it owns and the time.
pub fn plan(wf: &Workflow, pods: &[Pod], approvals: &[Approval], now: Timestamp) -> Plan {
    plan_checked(wf, pods, approvals, now, SpecChecked::No)
}

/// Whether this very spec already passed `validate` (in an earlier pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecChecked {
    Yes,
    No,
}

/// `plan`, skipping the spec's checks when they already passed; the plan's `spec_valid` says
/// whether they pass, for the caller to remember.
pub fn plan_checked(wf: &Workflow, pods: &[Pod], approvals: &[Approval], now: Timestamp, checked: SpecChecked) -> Plan {
    let mut ctx = Ctx::new(wf, pods, approvals, now);
    let mut status = wf.status.clone().unwrap_or_default();
    status.observed_generation = wf.metadata.generation;
    if status.phase.is_some_and(WorkflowPhase::is_terminal) {
        wait_for_ttl(&mut ctx, &status);
        ctx.plan.status = status;
        return ctx.plan;
    }
    let steps = step_statuses(wf, &status);
    status.started_at.get_or_insert(t(now));
    let valid = match checked {
        SpecChecked::Yes => structure(wf),
        SpecChecked::No => validate(wf),
    };
    match valid {
        Ok(valid) => {
            ctx.plan.spec_valid = true;
            run(&mut ctx, &valid, &mut status, steps)
        }
        Err(e) => fail_invalid(&mut ctx, &mut status, steps, e),
    }
    ctx.plan.status = status;
    ctx.plan
}

/// One pass over a valid run: observe what is going, start what is ready, sum up.
fn run(ctx: &mut Ctx<'_>, valid: &Valid<'_>, status: &mut WorkflowStatus, mut steps: Vec<StepStatus>) {
    claim_workspace(ctx, status);
    // The run's deadline stops everything still going.
    let deadline =
        valid.wf.spec.active_deadline_seconds.map(|s| after(status.started_at.as_ref().expect("set above"), s));
    let deadline_passed = deadline.is_some_and(|d| d <= ctx.now);
    if let Some(d) = deadline {
        ctx.wake_at(d);
    }
    let failing = observe_steps(ctx, valid, &mut steps, deadline_passed);
    if !deadline_passed {
        start_ready_steps(ctx, valid, &mut steps, failing);
    }
    summarize(ctx, status, steps, deadline_passed);
    release_recorded_pods(ctx, status);
    collect_pods(ctx, status);
}

/// A valid run with a workspace claims it once, in its first pass: the claim is created before
/// any Pod and named in the status written after it.
fn claim_workspace(ctx: &mut Ctx<'_>, status: &mut WorkflowStatus) {
    if ctx.wf.spec.workspace.is_some() && status.workspace_claim_name.is_none() {
        let name = names::workspace_claim_name(&ctx.name, &ctx.uid);
        status.workspace_claim_name = Some(name.clone());
        ctx.plan.create_workspace = Some(name);
    }
}

/// A finished run only waits for its time to live.
fn wait_for_ttl(ctx: &mut Ctx<'_>, status: &WorkflowStatus) {
    if let (Some(ttl), Some(finished)) = (ctx.wf.spec.ttl_seconds_after_finished, &status.finished_at) {
        let at = after(finished, ttl);
        if at <= ctx.now {
            ctx.plan.delete_workflow = true;
        } else {
            ctx.wake_at(at);
        }
    }
}

/// Step statuses in spec order, keeping what earlier passes recorded.
fn step_statuses(wf: &Workflow, status: &WorkflowStatus) -> Vec<StepStatus> {
    let mut previous: HashMap<String, StepStatus> = status.steps.iter().map(|s| (s.name.clone(), s.clone())).collect();
    wf.spec
        .all_steps()
        .map(|s| previous.remove(&s.name).unwrap_or_else(|| StepStatus { name: s.name.clone(), ..Default::default() }))
        .collect()
}

/// A spec the schema let through but the engine cannot run: nothing starts, the run fails.
fn fail_invalid(ctx: &mut Ctx<'_>, status: &mut WorkflowStatus, mut steps: Vec<StepStatus>, error: String) {
    for st in steps.iter_mut().filter(|s| !s.phase.is_terminal()) {
        ctx.finish(st, StepPhase::Omitted, Some("InvalidSpec"), None);
    }
    status.steps = steps;
    ctx.plan.events.push(Event { warning: true, reason: "InvalidSpec", note: error.clone() });
    finish_run(ctx, status, WorkflowPhase::Failed, "InvalidSpec", error);
}

/// First pass: what became of every step already going (Pods, timers, gates). Returns whether
/// the run is failing.
fn observe_steps(ctx: &mut Ctx<'_>, valid: &Valid<'_>, steps: &mut [StepStatus], deadline_passed: bool) -> [bool; 2] {
    let main = valid.main();
    // The steps and the exit steps fail apart: a failed step never stops the exit steps.
    let mut failing = [&steps[..main], &steps[main..]].map(|part| part.iter().any(|s| s.phase == StepPhase::Failed));
    for &i in &valid.graph.order {
        let step = valid.steps[i];
        let part = usize::from(i >= main);
        let mut st = steps[i].clone();
        if st.phase.is_terminal() {
            continue;
        }
        match (deadline_passed, step.for_each.is_some()) {
            (true, true) => fanout::stop_for_deadline(ctx, step, &mut st),
            (true, false) => stop_for_deadline(ctx, &mut st),
            (false, true) if st.phase != StepPhase::Pending => {
                fanout::advance(ctx, step, &mut st, steps, failing[part])
            }
            (false, true) => {}
            (false, false) => kinds::observe(ctx, step, &mut st, steps, failing[part]),
        }
        failing[part] |= st.phase == StepPhase::Failed;
        steps[i] = st;
    }
    failing
}

/// The run's deadline passed: stop what runs, cancel what waits, omit what has not started.
pub(super) fn stop_for_deadline(ctx: &mut Ctx<'_>, st: &mut StepStatus) {
    if let Some(pod) = st.pod_name.clone().filter(|_| st.phase == StepPhase::Running) {
        ctx.plan.delete_pods.push(pod);
    }
    if let Some(a) = st.approval_name.clone().filter(|_| st.phase == StepPhase::Waiting) {
        ctx.plan.cancel_approvals.push(a);
    }
    let phase = if st.phase == StepPhase::Pending { StepPhase::Omitted } else { StepPhase::Failed };
    ctx.finish(st, phase, Some("DeadlineExceeded"), Some("the Workflow's activeDeadlineSeconds passed".into()));
}

/// Second pass, once every running step's outcome is known: start what is ready, and omit what
/// can no longer run. Topological order lets a step that finishes at once (skipped, zero sleep)
/// unblock its dependents in the same pass.
fn start_ready_steps(ctx: &mut Ctx<'_>, valid: &Valid<'_>, steps: &mut [StepStatus], mut failing: [bool; 2]) {
    let main = valid.main();
    for &i in &valid.graph.order {
        if steps[i].phase != StepPhase::Pending {
            continue;
        }
        let part = usize::from(i >= main);
        // Exit steps wait until every step has ended.
        if part == 1 && !steps[..main].iter().all(|s| s.phase.is_terminal()) {
            continue;
        }
        let mut st = steps[i].clone();
        let deps = &valid.graph.deps[i];
        let blocked = deps.iter().any(|&d| matches!(steps[d].phase, StepPhase::Failed | StepPhase::Omitted));
        let ready = deps.iter().all(|&d| steps[d].phase.satisfies_dependency());
        if failing[part] || blocked {
            ctx.finish(&mut st, StepPhase::Omitted, None, None);
        } else if ready && !valid.wf.spec.suspend {
            kinds::start(ctx, valid.steps[i], &mut st, steps);
            failing[part] |= st.phase == StepPhase::Failed;
        }
        steps[i] = st;
    }
}

/// The plan when planning itself failed (the controller caught a panic): the run fails with
/// `reason` and stops what still runs, so one Workflow that trips a bug fails alone instead of
/// crashing the controller for everyone. A finished run is left as it is.
pub fn abort(wf: &Workflow, reason: &'static str, message: String, now: Timestamp) -> Plan {
    let old = wf.status.clone().unwrap_or_default();
    let mut ctx = Ctx::new(wf, &[], &[], now);
    if old.phase.is_some_and(WorkflowPhase::is_terminal) {
        return ctx.plan;
    }
    let mut status = old.clone();
    status.observed_generation = wf.metadata.generation;
    status.started_at.get_or_insert(t(now));
    let mut previous: HashMap<String, StepStatus> = old.steps.into_iter().map(|s| (s.name.clone(), s)).collect();
    status.steps = Vec::new();
    for step in wf.spec.all_steps() {
        let mut st =
            previous.remove(&step.name).unwrap_or_else(|| StepStatus { name: step.name.clone(), ..Default::default() });
        match st.phase {
            StepPhase::Running => ctx.plan.delete_pods.extend(st.pod_name.clone()),
            StepPhase::Waiting => ctx.plan.cancel_approvals.extend(st.approval_name.clone()),
            _ => {}
        }
        ctx.plan.delete_pods.extend(fanout::pods_in_flight(&ctx.name, &ctx.uid, &st));
        ctx.plan.cancel_approvals.extend(fanout::approvals_waiting(&ctx.name, &st));
        if !st.phase.is_terminal() {
            let phase = if st.phase == StepPhase::Pending { StepPhase::Omitted } else { StepPhase::Failed };
            ctx.finish(&mut st, phase, Some(reason), None);
        }
        status.steps.push(st);
    }
    finish_run(&mut ctx, &mut status, WorkflowPhase::Failed, reason, message);
    ctx.plan.status = status;
    ctx.plan
}
