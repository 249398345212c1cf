//! The Pods a pass lets go: finalizers released once the status records their outcome, and
//! finished Pods deleted as `spec.podGC` says.

use std::collections::HashSet;

use super::ctx::Ctx;
use super::fanout;
use crate::{evidence, names};
use hitl_api::{StepPhase, StepStatus, WorkflowPhase, WorkflowStatus, workflow::PodGcStrategy};

/// The Pods read this pass whose outcome the new status records (or that no step waits on any
/// more): their finalizer can go once the status is written.
pub(super) fn release_recorded_pods(ctx: &mut Ctx<'_>, status: &WorkflowStatus) {
    let items: HashSet<String> =
        status.steps.iter().flat_map(|s| fanout::pods_in_flight(&ctx.name, &ctx.uid, s)).collect();
    let waited_on = |pod: &str| {
        items.contains(pod)
            || status.steps.iter().any(|s| s.phase == StepPhase::Running && s.pod_name.as_deref() == Some(pod))
    };
    let mut release: Vec<String> = ctx
        .pods
        .iter()
        .filter(|(name, pod)| {
            !waited_on(name) && pod.metadata.finalizers.iter().flatten().any(|f| f == names::FINALIZER_OUTCOME)
        })
        .map(|(name, _)| name.to_string())
        .collect();
    release.sort();
    ctx.plan.release_pods = release;
}

/// Deletes finished step Pods as `spec.podGC` says, in the pass that finishes them (the Pod's
/// outcome is in the status written with the deletion).
pub(super) fn collect_pods(ctx: &mut Ctx<'_>, status: &WorkflowStatus) {
    let strategy = ctx.wf.spec.pod_gc.as_ref().map(|g| g.strategy).unwrap_or_default();
    let before = ctx.plan.status.clone();
    let was = |name: &str| before.steps.iter().find(|s| s.name == name).map(|s| s.phase).unwrap_or_default();
    let run_ended =
        status.phase.is_some_and(WorkflowPhase::is_terminal) && !before.phase.is_some_and(WorkflowPhase::is_terminal);
    let run_succeeded = run_ended && status.phase == Some(WorkflowPhase::Succeeded);
    let mut doomed = vec![];
    for st in &status.steps {
        if !st.items.is_empty() {
            let old = before.steps.iter().find(|s| s.name == st.name);
            doomed.extend(fanout::collectable(&ctx.name, &ctx.uid, st, old, strategy, run_ended, run_succeeded));
            continue;
        }
        let attempts = st.attempts.unwrap_or(0);
        let finished_now = st.phase.is_terminal() && !was(&st.name).is_terminal();
        let upto = match strategy {
            PodGcStrategy::Never => 0,
            PodGcStrategy::OnPodSuccess if finished_now && st.phase == StepPhase::Succeeded => attempts,
            PodGcStrategy::OnPodSuccess => 0,
            PodGcStrategy::OnPodCompletion if finished_now => attempts,
            // A retry started: the failed attempts before it are complete.
            PodGcStrategy::OnPodCompletion => attempts.saturating_sub(1),
            PodGcStrategy::OnWorkflowSuccess if run_succeeded => attempts,
            PodGcStrategy::OnWorkflowCompletion if run_ended => attempts,
            PodGcStrategy::OnWorkflowSuccess | PodGcStrategy::OnWorkflowCompletion => 0,
        };
        doomed.extend((1..=upto).map(|a| names::pod_name(&ctx.name, &ctx.uid, &st.name, a)));
    }
    // Evidence Pods stay while a gate that shows their logs waits, and go once it is decided.
    let held = evidence::held_pods(ctx.wf, &status.steps);
    doomed.extend(released_evidence(ctx, status, &before.steps, strategy));
    for pod in doomed.into_iter().filter(|p| !held.contains(p)) {
        if !ctx.plan.delete_pods.contains(&pod) {
            ctx.plan.delete_pods.push(pod);
        }
    }
}

/// The evidence Pods `podGC` wanted gone while a gate held them: once no waiting gate shows
/// them (this pass decided the last), they go as the strategy says of their finished steps.
/// (`OnWorkflow*` strategies collect them with the rest when the run ends.)
fn released_evidence(
    ctx: &Ctx<'_>,
    status: &WorkflowStatus,
    before: &[StepStatus],
    strategy: PodGcStrategy,
) -> Vec<String> {
    let collectable = |st: &&StepStatus| match strategy {
        PodGcStrategy::OnPodSuccess => st.phase == StepPhase::Succeeded,
        PodGcStrategy::OnPodCompletion => st.phase.is_terminal(),
        _ => false,
    };
    let held_before = evidence::held_pods(ctx.wf, before);
    if held_before.is_empty() {
        return vec![];
    }
    let held_now = evidence::held_pods(ctx.wf, &status.steps);
    let mut released: Vec<String> = status
        .steps
        .iter()
        .filter(collectable)
        .flat_map(|st| evidence::pods_of_step(ctx.wf, st))
        .filter(|p| held_before.contains(p) && !held_now.contains(p))
        .collect();
    released.sort();
    released
}
