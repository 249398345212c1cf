//! `plan`: what a Workflow should do next, as a pure function of the Workflow, the Pods and
//! Approvals it owns, and the time. The controller carries the plan out.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::expr::EvalError;

mod fanout;

use super::{conditions, duration, expr, foreach, gate, graph, inputs, names, outputs};
use crate::api::{
    ANNOTATION_CREATED_BY, Approval, ApprovalSpec, Approvers, InputSpec, NotifySpec, OnTimeout, RejectWhen,
    SelfApproval, Step, StepContainer, StepKind, StepPhase, StepStatus, Workflow, WorkflowPhase, WorkflowRef,
    WorkflowStatus, volumes::WORKSPACE_VOLUME, workflow::PodGcStrategy,
};
pub use fanout::{approvals_waiting, item_approval_request, pods_in_flight};

/// When to try again to start a step whose expressions could not be evaluated yet, because too
/// many abandoned evaluations were still running (see `bounded`).
const BUSY_RETRY: SignedDuration = SignedDuration::from_secs(5);

/// What to do. Creates happen before the status write, so a status that names a Pod or Approval
/// is never written before the object exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: WorkflowStatus,
    pub create_pods: Vec<PodRequest>,
    pub delete_pods: Vec<String>,
    /// Pods whose outcome this status records: their finalizer goes once it is written.
    pub release_pods: Vec<String>,
    pub create_approvals: Vec<ApprovalRequest>,
    /// Approvals of gates that will never be decided now (the run failed or ran out of time).
    pub cancel_approvals: Vec<String>,
    pub events: Vec<Event>,
    /// Reconcile again at this time even if nothing changes (timers).
    pub requeue_at: Option<Timestamp>,
    /// `ttlSecondsAfterFinished` has passed.
    pub delete_workflow: bool,
    /// The workspace claim to create (`spec.workspace`), before any Pod: the run starts now.
    pub create_workspace: Option<String>,
}

impl Plan {
    /// A child that cannot be created (refused by admission or validation, or its name taken by
    /// another owner) fails its step; the next pass carries the failure through the run.
    pub fn fail_step(&mut self, step: &str, item: Option<i32>, reason: &'static str, message: String, now: Timestamp) {
        let found = self.status.steps.iter_mut().find(|s| s.name == step);
        // An item's child: the item fails, and so the step once its other items in flight end.
        if let Some(it) = found.and_then(|st| st.items.get_mut(item? as usize)) {
            it.phase = StepPhase::Failed;
            it.reason = Some(reason.into());
            it.message = Some(foreach::short(&message));
            it.started_at = None;
            self.events.push(Event {
                warning: true,
                reason,
                note: format!("step {step} item {}: {message}", item.unwrap_or(0)),
            });
            return;
        }
        if let Some(st) = self.status.steps.iter_mut().find(|s| s.name == step) {
            st.phase = StepPhase::Failed;
            st.reason = Some(reason.into());
            st.message = Some(message.clone());
            st.finished_at = Some(t(now));
        }
        self.events.push(Event { warning: true, reason, note: format!("step {step}: {message}") });
    }
}

/// A step attempt's Pod, with templates already expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRequest {
    pub name: String,
    pub step: String,
    pub attempt: i32,
    /// The item's index, for a `forEach` step.
    pub item: Option<i32>,
    pub container: StepContainer,
}

/// A gate to open: everything its Approval must carry, all of it taken from the Workflow and the
/// step's status, never from an existing Approval.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    pub name: String,
    pub workflow: WorkflowRef,
    pub step: String,
    /// The item's index, for a `forEach` step.
    pub item: Option<i32>,
    pub message: Option<String>,
    pub approvers: Option<Approvers>,
    pub inputs: Vec<InputSpec>,
    pub timeout_seconds: Option<i64>,
    pub on_timeout: Option<OnTimeout>,
    /// The step's start plus the gate's timeout.
    pub expires_at: Option<Time>,
    pub self_approval: Option<SelfApproval>,
    pub required_approvals: Option<i32>,
    pub notify: Option<NotifySpec>,
    /// The step's start plus the escalation delay: no escalation counts before.
    pub escalates_at: Option<Time>,
    pub reject_when: Option<RejectWhen>,
}

impl ApprovalRequest {
    /// The Approval spec the controller creates: the controller's fields only, no decision.
    pub fn spec(&self) -> ApprovalSpec {
        ApprovalSpec {
            workflow_ref: self.workflow.clone(),
            step: self.step.clone(),
            item: self.item,
            message: self.message.clone(),
            approvers: self.approvers.clone(),
            inputs: self.inputs.clone(),
            timeout_seconds: self.timeout_seconds,
            on_timeout: self.on_timeout,
            expires_at: self.expires_at.clone(),
            self_approval: self.self_approval,
            required_approvals: self.required_approvals,
            reject_when: self.reject_when,
            notify: self.notify.clone(),
            escalates_at: self.escalates_at.clone(),
            ..Default::default()
        }
    }
}

/// A Kubernetes Event to record on the Workflow. Reasons are static so they can be metric labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Checks what the CRD schema cannot: the graph (cycles), durations, expressions and defaults.
pub fn validate(wf: &Workflow) -> Result<graph::Graph, String> {
    if wf.spec.steps.is_empty() {
        return Err("the Workflow has no steps".into());
    }
    let g = graph::build_with_exit(&wf.spec.steps, &wf.spec.on_exit)?;
    let steps: Vec<&Step> = wf.spec.all_steps().collect();
    for s in steps.iter().copied() {
        let at = |field: &str, e: String| format!("step {}: {field}: {e}", s.name);
        if s.kind().is_none() {
            return Err(format!("step {}: set exactly one of container, suspend or sleep", s.name));
        }
        if let Some(d) = &s.sleep {
            duration::parse(d).map_err(|e| at("sleep", e))?;
        }
        if let Some(g) = &s.suspend {
            inputs::check_specs(&g.inputs).map_err(|e| at("suspend.inputs", e))?;
        }
        if let Some(c) = &s.container {
            check_mounts(wf, c).map_err(|e| at("container.volumeMounts", e))?;
        }
    }
    expr::check_all(&steps.iter().copied().flat_map(expressions).collect::<Vec<_>>())?;
    check_fan_outs(&steps, &g)?;
    Ok(g)
}

/// A forEach runs a container or a gate, over a list from steps it depends on (their outputs are
/// final only then).
fn check_fan_outs(steps: &[&Step], g: &graph::Graph) -> Result<(), String> {
    for (i, s) in steps.iter().enumerate() {
        let Some(f) = &s.for_each else { continue };
        if s.sleep.is_some() {
            return Err(format!("step {}: forEach applies only to container and suspend steps", s.name));
        }
        for read in foreach::referenced_steps(&f.list, steps.iter().map(|s| s.name.as_str())) {
            let j = steps.iter().position(|s| s.name == read).expect("a step's name");
            if !depends_on(g, i, j) {
                return Err(format!(
                    "step {}: forEach.list reads steps.{read}, which the step does not depend on; list it in dependsOn",
                    s.name
                ));
            }
        }
    }
    Ok(())
}

/// Whether step `i` depends on step `j`, directly or through others.
fn depends_on(g: &graph::Graph, i: usize, j: usize) -> bool {
    let mut seen = vec![false; g.deps.len()];
    let mut todo = g.deps[i].clone();
    while let Some(d) = todo.pop() {
        if d == j {
            return true;
        }
        if !std::mem::replace(&mut seen[d], true) {
            todo.extend(&g.deps[d]);
        }
    }
    false
}

/// A step mounts only volumes the Workflow declares (the admission policy `hitl-workflow-spec`
/// refuses the rest at apply; this holds where it is not installed).
fn check_mounts(wf: &Workflow, c: &StepContainer) -> Result<(), String> {
    let declared = |name: &str| {
        wf.spec.volumes.iter().any(|v| v.name == name) || (name == WORKSPACE_VOLUME && wf.spec.workspace.is_some())
    };
    if let Some(m) = c.volume_mounts.iter().find(|m| !declared(&m.name)) {
        return Err(format!("volume {} is not declared in spec.volumes", m.name));
    }
    if let Some(m) = c.volume_mounts.iter().find(|m| m.sub_path.as_deref().is_some_and(|p| p.contains(".."))) {
        return Err(format!("volume {}: subPath must not contain \"..\"", m.name));
    }
    if c.workspace && wf.spec.workspace.is_none() {
        return Err("container.workspace: true needs spec.workspace, which is not set".into());
    }
    Ok(())
}

/// A step's expressions: its `when`, and the templates in its container and gate message.
fn expressions(s: &Step) -> Vec<expr::Source<'_>> {
    let at = |field: String| format!("step {}: {field}", s.name);
    let template = |field: String, text| expr::Source { at: at(field), text, template: true };
    let mut out = Vec::new();
    if let Some(w) = &s.when {
        out.push(expr::Source { at: at("when".into()), text: w, template: false });
    }
    if let Some(f) = &s.for_each {
        out.push(expr::Source { at: at("forEach.list".into()), text: &f.list, template: false });
    }
    if let Some(w) = s.retry_policy.as_ref().and_then(|r| r.when.as_deref()) {
        out.push(expr::Source { at: at("retryPolicy.when".into()), text: w, template: false });
    }
    if let Some(c) = &s.container {
        out.extend(c.command.iter().enumerate().map(|(i, t)| template(format!("container.command[{i}]"), t)));
        out.extend(c.args.iter().enumerate().map(|(i, t)| template(format!("container.args[{i}]"), t)));
        let env = c.env.iter().filter_map(|e| Some((format!("container.env[{}]", e.name), e.value.as_deref()?)));
        out.extend(env.map(|(field, v)| template(field, v)));
    }
    if let Some(m) = s.suspend.as_ref().and_then(|g| g.message.as_deref()) {
        out.push(template("suspend.message".into(), m));
    }
    out
}

/// A status timestamp. The API stores whole seconds, so round up: a deadline computed from a stored
/// start (sleep, attempt timeout, run deadline) is then never earlier than the real one.
fn t(ts: Timestamp) -> Time {
    let whole = Timestamp::from_second(ts.as_second()).expect("in range");
    Time(if whole < ts { whole + SignedDuration::from_secs(1) } else { whole })
}

/// A sleep step's length (validated before any step starts).
fn sleep_length(step: &Step) -> std::time::Duration {
    step.sleep.as_deref().and_then(|d| duration::parse(d).ok()).unwrap_or_default()
}

fn after(ts: &Time, seconds: i64) -> Timestamp {
    ts.0.saturating_add(SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MAX)
}

/// A failed attempt, as the retry decision sees it.
struct Failed<'a> {
    reason: &'a str,
    message: String,
    exit_code: Option<i32>,
    steps: &'a [StepStatus],
}

/// Whether the retry policy's condition (if any) holds for this failed attempt.
fn retry_wanted(
    mut vars: serde_json::Value,
    step: &Step,
    number: i32,
    reason: &str,
    message: &str,
    exit_code: Option<i32>,
) -> Result<bool, EvalError> {
    let Some(when) = step.retry_policy.as_ref().and_then(|r| r.when.as_deref()) else { return Ok(true) };
    vars["attempt"] =
        json!({"number": number, "exitCode": exit_code.unwrap_or(-1), "reason": reason, "message": message});
    expr::Scope::new(vars).eval_bool(when)
}

/// The wait before the retry after `failed` failed attempts: the delay, times the factor for
/// each earlier retry, at most the maximum.
fn backoff(step: &Step, failed: i32) -> std::time::Duration {
    let Some(p) = &step.retry_policy else { return std::time::Duration::ZERO };
    let delay = p.delay_seconds.unwrap_or(0).max(0) as f64;
    let factor = p.factor.unwrap_or(2.0).clamp(1.0, 10.0);
    let max = p.max_delay_seconds.unwrap_or(3600).max(0) as f64;
    let secs = (delay * factor.powi(failed.saturating_sub(1).min(64))).min(max);
    std::time::Duration::from_secs_f64(secs)
}

/// What happened to a step attempt's Pod.
#[derive(Hash)]
enum PodOutcome {
    /// Not finished (or not yet seen by the API server's list).
    Active,
    Succeeded {
        message: String,
    },
    Failed {
        reason: String,
        message: String,
        exit_code: Option<i32>,
    },
    /// Gone, or being deleted, before it finished.
    Vanished,
    /// Not started, and waiting cannot start it: its image is not on the node and may not be
    /// pulled, cannot be named, or failed to pull (the kubelet backs off and tries again forever).
    Stuck {
        reason: String,
        message: String,
    },
}

/// Why a container waits that waiting will not end (kubelet reasons). A pull failure counts once
/// the kubelet backs off from it: a registry hiccup is what `retries` are for.
pub const STUCK_WAITING_REASONS: [&str; 3] = ["ErrImageNeverPull", "InvalidImageName", "ImagePullBackOff"];

/// The first container that waits for good, as (reason, message).
fn stuck_container(status: Option<&k8s_openapi::api::core::v1::PodStatus>) -> Option<(String, String)> {
    let mut containers = status?.init_container_statuses.iter().chain(&status?.container_statuses).flatten();
    containers.find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref().filter(|r| STUCK_WAITING_REASONS.contains(r))?;
        let detail = waiting.message.as_deref().unwrap_or("the kubelet gave no message");
        Some((reason.to_string(), format!("container {}: {reason}: {detail}", c.name)))
    })
}

/// A fingerprint of all a pass reads of a step Pod (its outcome, and whether it is going). A
/// change of the Pod that keeps it cannot change the plan (bound to a node, container started,
/// finalizer released), so it need not wake the Workflow.
pub fn pod_outcome_digest(pod: &Pod) -> u64 {
    digest(&pod_outcome(Some(pod)))
}

/// The fingerprint of a Pod that has not finished and is not being deleted: what a Pod just
/// created looks like.
pub fn active_pod_digest() -> u64 {
    digest(&PodOutcome::Active)
}

fn digest(outcome: &PodOutcome) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    outcome.hash(&mut hasher);
    hasher.finish()
}

fn pod_outcome(pod: Option<&Pod>) -> PodOutcome {
    let Some(pod) = pod else {
        return PodOutcome::Vanished;
    };
    let status = pod.status.as_ref();
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let message = terminated.and_then(|t| t.message.clone()).unwrap_or_default();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => PodOutcome::Succeeded { message },
        Some("Failed") => {
            let exit = terminated.map(|t| t.exit_code);
            let reason = terminated
                .and_then(|t| t.reason.clone())
                .or_else(|| status.and_then(|s| s.reason.clone()))
                .unwrap_or_else(|| "Error".into());
            let detail = match (exit, message.trim()) {
                (Some(code), "") => format!("exit code {code}"),
                (Some(code), m) => format!("exit code {code}: {m}"),
                (None, m) => m.to_string(),
            };
            PodOutcome::Failed { reason, message: detail, exit_code: exit }
        }
        _ if pod.metadata.deletion_timestamp.is_some() => PodOutcome::Vanished,
        _ => match stuck_container(status) {
            Some((reason, message)) => PodOutcome::Stuck { reason, message },
            None => PodOutcome::Active,
        },
    }
}

/// The variables expressions see, from the steps' current state.
fn scope(wf: &Workflow, steps: &[StepStatus]) -> expr::Scope {
    expr::Scope::new(scope_vars(wf, steps))
}

fn scope_vars(wf: &Workflow, steps: &[StepStatus]) -> serde_json::Value {
    let params: BTreeMap<_, _> = wf.spec.params.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
    let (outcome, failed) = (main_outcome(wf, steps), failed_main_steps(wf, steps));
    let steps: serde_json::Map<_, _> = steps
        .iter()
        .map(|s| {
            let mut vars = json!({
                "phase": s.phase.as_str(),
                "outputs": s.outputs,
                "decidedBy": s.decided_by.clone().unwrap_or_default(),
            });
            // A finished forEach: its items' outputs as a list CEL can index
            // (`steps.review.items[index].keep`), besides the text in `outputs.items`.
            if let Some(items) = s.item_count.and(s.outputs.get("items")) {
                vars["items"] = serde_json::from_str(items).unwrap_or_default();
            }
            (s.name.clone(), vars)
        })
        .collect();
    json!({
        "params": params,
        "steps": steps,
        "workflow": {
            "name": wf.metadata.name.clone().unwrap_or_default(),
            "namespace": wf.metadata.namespace.clone().unwrap_or_default(),
            "phase": outcome,
            "failedSteps": failed,
        },
    })
}

/// How the steps (not the exit steps) stand: `Running` until all ended, then `Succeeded` or
/// `Failed`.
fn main_outcome(wf: &Workflow, steps: &[StepStatus]) -> WorkflowPhase {
    let main = &steps[..wf.spec.steps.len().min(steps.len())];
    if !main.iter().all(|s| s.phase.is_terminal()) {
        WorkflowPhase::Running
    } else if main.iter().any(|s| s.phase == StepPhase::Failed) {
        WorkflowPhase::Failed
    } else {
        WorkflowPhase::Succeeded
    }
}

fn failed_main_steps(wf: &Workflow, steps: &[StepStatus]) -> Vec<String> {
    let main = &steps[..wf.spec.steps.len().min(steps.len())];
    main.iter().filter(|s| s.phase == StepPhase::Failed).map(|s| s.name.clone()).collect()
}

/// The container with its templates expanded, all within one time limit.
fn render_container(c: &StepContainer, scope: &expr::Scope) -> Result<StepContainer, EvalError> {
    let mut out = c.clone();
    let mut fields: Vec<(String, &mut String)> = Vec::new();
    fields.extend(out.command.iter_mut().enumerate().map(|(i, s)| (format!("container.command[{i}]"), s)));
    fields.extend(out.args.iter_mut().enumerate().map(|(i, s)| (format!("container.args[{i}]"), s)));
    let env = out.env.iter_mut().filter_map(|e| Some((format!("container.env[{}]", e.name), e.value.as_mut()?)));
    fields.extend(env);
    let texts = fields.iter().map(|(_, s)| s.to_string()).collect();
    let rendered = scope.render_all(texts).map_err(|(i, e)| e.at(&fields[i].0))?;
    for ((_, s), r) in fields.into_iter().zip(rendered) {
        *s = r;
    }
    Ok(out)
}

struct Ctx<'a> {
    wf: &'a Workflow,
    name: String,
    uid: String,
    now: Timestamp,
    pods: HashMap<&'a str, &'a Pod>,
    approvals: HashMap<&'a str, &'a Approval>,
    plan: Plan,
    /// The `forEach` item being handled (index, value): names its Pod and Approval, and is
    /// `item`/`index` to its expressions.
    item: Option<(usize, serde_json::Value)>,
}

impl<'a> Ctx<'a> {
    fn new(wf: &'a Workflow, pods: &'a [Pod], approvals: &'a [Approval], now: Timestamp) -> Self {
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
            },
            item: None,
        }
    }

    /// The variables for the step being handled: those of every step, plus `item` and `index`
    /// while a `forEach` item is.
    fn scope(&self, steps: &[StepStatus]) -> expr::Scope {
        expr::Scope::new(self.vars(steps))
    }

    fn vars(&self, steps: &[StepStatus]) -> serde_json::Value {
        let mut vars = scope_vars(self.wf, steps);
        if let Some((i, value)) = &self.item {
            vars["item"] = value.clone();
            vars["index"] = json!(i);
        }
        vars
    }

    fn wake_at(&mut self, at: Timestamp) {
        if at > self.now {
            self.plan.requeue_at = Some(self.plan.requeue_at.map_or(at, |r| r.min(at)));
        }
    }

    fn finish(&self, st: &mut StepStatus, phase: StepPhase, reason: Option<&str>, message: Option<String>) {
        st.phase = phase;
        st.reason = reason.map(str::to_string);
        st.message = message;
        st.finished_at = Some(t(self.now));
    }

    fn start_attempt(&mut self, step: &Step, st: &mut StepStatus, container: StepContainer) {
        let attempt = st.attempts.unwrap_or(0) + 1;
        let name = match &self.item {
            Some((i, _)) => names::item_pod_name(&self.name, &self.uid, &step.name, *i, attempt),
            None => names::pod_name(&self.name, &self.uid, &step.name, attempt),
        };
        let item = self.item.as_ref().map(|(i, _)| *i as i32);
        st.phase = StepPhase::Running;
        st.attempts = Some(attempt);
        st.pod_name = Some(name.clone());
        st.attempt_started_at = Some(t(self.now));
        st.started_at.get_or_insert(t(self.now));
        self.plan.create_pods.push(PodRequest { name, step: step.name.clone(), attempt, item, container });
        if let Some(timeout) = step.timeout_seconds {
            self.wake_at(after(&t(self.now), timeout));
        }
    }

    /// An attempt failed: returns true when a retry should start now (attempts remain, the run is
    /// not failing, the retry policy's condition holds and it asks for no wait); a retry that waits
    /// out its backoff is recorded in `retryAt`; otherwise the step fails.
    fn attempt_failed(&mut self, step: &Step, st: &mut StepStatus, failing: bool, failed: Failed<'_>) -> bool {
        let Failed { reason, message, exit_code, steps } = failed;
        let attempts = st.attempts.unwrap_or(1);
        let retry = if attempts <= step.retries.unwrap_or(0) && !failing {
            retry_wanted(self.vars(steps), step, attempts, reason, &message, exit_code)
        } else {
            Ok(false)
        };
        let retry = match retry {
            Ok(r) => r,
            Err(EvalError::Busy(_)) => {
                // Decided on a later pass: the failed Pod stays as it is.
                self.wake_at(self.now + BUSY_RETRY);
                return false;
            }
            Err(EvalError::Failed(e)) => {
                let msg = format!("{message}; retryPolicy.when: {e}");
                self.finish(st, StepPhase::Failed, Some("ExpressionError"), Some(msg.clone()));
                self.plan.events.push(Event { warning: true, reason: "StepFailed", note: msg });
                return false;
            }
        };
        st.attempt_failed_at = Some(t(self.now));
        if retry {
            let wait = backoff(step, attempts);
            st.reason = Some(reason.into());
            st.message = Some(format!("attempt {attempts} failed: {message}"));
            let when = if wait.is_zero() {
                "now".to_string()
            } else {
                let at = self.now.saturating_add(wait).unwrap_or(Timestamp::MAX);
                st.retry_at = Some(t(at));
                self.wake_at(t(at).0);
                format!("in {}s", wait.as_secs())
            };
            self.plan.events.push(Event {
                warning: true,
                reason: "StepRetrying",
                note: format!("step {} attempt {attempts} failed ({reason}): {message}; retrying {when}", step.name),
            });
            return wait.is_zero();
        }
        self.finish(st, StepPhase::Failed, Some(reason), Some(message.clone()));
        self.plan.events.push(Event {
            warning: true,
            reason: "StepFailed",
            note: format!("step {} failed ({reason}): {message}", step.name),
        });
        false
    }

    /// Starts a container step's next attempt, expanding its templates with the current scope.
    fn start_container(&mut self, step: &Step, st: &mut StepStatus, steps: &[StepStatus]) {
        let scope = self.scope(steps);
        match render_container(step.container.as_ref().expect("container step"), &scope) {
            Ok(c) => self.start_attempt(step, st, c),
            Err(EvalError::Busy(_)) => self.wake_at(self.now + BUSY_RETRY),
            Err(EvalError::Failed(e)) => {
                self.finish(st, StepPhase::Failed, Some("ExpressionError"), Some(e.clone()));
                self.plan.events.push(Event {
                    warning: true,
                    reason: "StepFailed",
                    note: format!("step {}: {e}", step.name),
                });
            }
        }
    }
}

/// Decides the next actions for `wf`, given the Pods and Approvals it owns and the time.
pub fn plan(wf: &Workflow, pods: &[Pod], approvals: &[Approval], now: Timestamp) -> Plan {
    let mut ctx = Ctx::new(wf, pods, approvals, now);
    let mut status = wf.status.clone().unwrap_or_default();
    status.observed_generation = wf.metadata.generation;
    if status.phase.is_some_and(WorkflowPhase::is_terminal) {
        wait_for_ttl(&mut ctx, &status);
        ctx.plan.status = status;
        return ctx.plan;
    }
    let mut steps = step_statuses(wf, &status);
    status.started_at.get_or_insert(t(now));
    let graph = match validate(wf) {
        Ok(g) => g,
        Err(e) => {
            fail_invalid(&mut ctx, &mut status, steps, e);
            ctx.plan.status = status;
            return ctx.plan;
        }
    };
    claim_workspace(&mut ctx, &mut status);
    // The run's deadline stops everything still going.
    let deadline = wf.spec.active_deadline_seconds.map(|s| after(status.started_at.as_ref().expect("set above"), s));
    let deadline_passed = deadline.is_some_and(|d| d <= now);
    if let Some(d) = deadline {
        ctx.wake_at(d);
    }
    let failing = observe_steps(&mut ctx, &graph, &mut steps, deadline_passed);
    if !deadline_passed {
        start_ready_steps(&mut ctx, &graph, &mut steps, failing);
    }
    summarize(&mut ctx, &mut status, steps, deadline_passed);
    release_recorded_pods(&mut ctx, &status);
    collect_pods(&mut ctx, &status);
    ctx.plan.status = status;
    ctx.plan
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

/// The Pods read this pass whose outcome the new status records (or that no step waits on any
/// more): their finalizer can go once the status is written.
fn release_recorded_pods(ctx: &mut Ctx<'_>, status: &WorkflowStatus) {
    let items: std::collections::HashSet<String> =
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
fn collect_pods(ctx: &mut Ctx<'_>, status: &WorkflowStatus) {
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
    for pod in doomed {
        if !ctx.plan.delete_pods.contains(&pod) {
            ctx.plan.delete_pods.push(pod);
        }
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
fn observe_steps(
    ctx: &mut Ctx<'_>,
    graph: &graph::Graph,
    steps: &mut [StepStatus],
    deadline_passed: bool,
) -> [bool; 2] {
    let wf = ctx.wf;
    let all: Vec<&Step> = wf.spec.all_steps().collect();
    let main = wf.spec.steps.len();
    // The steps and the exit steps fail apart: a failed step never stops the exit steps.
    let mut failing = [&steps[..main], &steps[main..]].map(|part| part.iter().any(|s| s.phase == StepPhase::Failed));
    for &i in &graph.order {
        let step = all[i];
        let part = usize::from(i >= main);
        let mut st = steps[i].clone();
        if st.phase.is_terminal() {
            continue;
        }
        if deadline_passed && step.for_each.is_some() {
            fanout::stop_for_deadline(ctx, step, &mut st);
        } else if deadline_passed {
            stop_for_deadline(ctx, &mut st);
        } else if step.for_each.is_some() && st.phase != StepPhase::Pending {
            fanout::advance(ctx, step, &mut st, steps, failing[part]);
        }
        if deadline_passed || step.for_each.is_some() {
            failing[part] |= st.phase == StepPhase::Failed;
            steps[i] = st;
            continue;
        }
        match (st.phase, step.kind()) {
            (StepPhase::Running, Some(StepKind::Container)) => {
                observe_container(ctx, step, &mut st, steps, failing[part])
            }
            (StepPhase::Running, Some(StepKind::Sleep)) if failing[part] => {
                ctx.finish(&mut st, StepPhase::Omitted, Some("WorkflowFailed"), None);
            }
            (StepPhase::Running, Some(StepKind::Sleep)) => observe_sleep(ctx, step, &mut st),
            (StepPhase::Waiting, _) if failing[part] => {
                ctx.plan.cancel_approvals.extend(st.approval_name.clone());
                ctx.finish(&mut st, StepPhase::Omitted, Some("WorkflowFailed"), None);
            }
            (StepPhase::Waiting, _) => wait_on_gate(ctx, step, &mut st),
            _ => {}
        }
        failing[part] |= st.phase == StepPhase::Failed;
        steps[i] = st;
    }
    failing
}

/// The run's deadline passed: stop what runs, cancel what waits, omit what has not started.
fn stop_for_deadline(ctx: &mut Ctx<'_>, st: &mut StepStatus) {
    if let Some(pod) = st.pod_name.clone().filter(|_| st.phase == StepPhase::Running) {
        ctx.plan.delete_pods.push(pod);
    }
    if let Some(a) = st.approval_name.clone().filter(|_| st.phase == StepPhase::Waiting) {
        ctx.plan.cancel_approvals.push(a);
    }
    let phase = if st.phase == StepPhase::Pending { StepPhase::Omitted } else { StepPhase::Failed };
    ctx.finish(st, phase, Some("DeadlineExceeded"), Some("the Workflow's activeDeadlineSeconds passed".into()));
}

/// A running container step: its Pod's outcome, a timeout, or a retry.
fn observe_container(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, steps: &[StepStatus], failing: bool) {
    if let Some(at) = st.retry_at.clone() {
        // A retry waiting out its backoff: the failed attempt was already counted.
        if failing {
            st.retry_at = None;
            ctx.finish(st, StepPhase::Failed, st.reason.clone().as_deref(), st.message.clone());
        } else if at.0 <= ctx.now {
            st.retry_at = None;
            ctx.start_container(step, st, steps);
        } else {
            ctx.wake_at(at.0);
        }
        return;
    }
    let pod_name = st.pod_name.clone().unwrap_or_default();
    let failed = |reason: &'static str, message: String| Failed { reason, message, exit_code: None, steps };
    let retry = match pod_outcome(ctx.pods.get(pod_name.as_str()).copied()) {
        PodOutcome::Succeeded { message } if message.len() > outputs::MAX_OUTPUT_BYTES => {
            let msg = format!(
                "the termination message is {} bytes; outputs may be at most {} bytes",
                message.len(),
                outputs::MAX_OUTPUT_BYTES
            );
            ctx.attempt_failed(step, st, failing, failed("OutputsTooLarge", msg))
        }
        PodOutcome::Succeeded { message } => {
            st.outputs = outputs::from_termination_message(&message);
            ctx.finish(st, StepPhase::Succeeded, None, None);
            false
        }
        PodOutcome::Failed { reason, message, exit_code } => {
            ctx.attempt_failed(step, st, failing, Failed { reason: &reason, message, exit_code, steps })
        }
        PodOutcome::Stuck { reason, message } => {
            ctx.plan.delete_pods.push(pod_name);
            ctx.attempt_failed(step, st, failing, Failed { reason: &reason, message, exit_code: None, steps })
        }
        PodOutcome::Vanished => {
            let msg = format!("Pod {pod_name} disappeared before it finished");
            ctx.attempt_failed(step, st, failing, failed("PodDeleted", msg))
        }
        PodOutcome::Active => match (step.timeout_seconds, &st.attempt_started_at) {
            (Some(timeout), Some(started)) if after(started, timeout) <= ctx.now => {
                ctx.plan.delete_pods.push(pod_name);
                let msg = format!("the attempt ran longer than timeoutSeconds ({timeout}s)");
                ctx.attempt_failed(step, st, failing, failed("Timeout", msg))
            }
            (Some(timeout), Some(started)) => {
                ctx.wake_at(after(started, timeout));
                false
            }
            _ => false,
        },
    };
    if retry {
        ctx.start_container(step, st, steps);
    }
}

fn observe_sleep(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus) {
    let started = st.started_at.clone().unwrap_or(t(ctx.now));
    let at = started.0.checked_add(sleep_length(step)).unwrap_or(Timestamp::MAX);
    if at <= ctx.now {
        ctx.finish(st, StepPhase::Succeeded, None, None);
    } else {
        ctx.wake_at(at);
    }
}

/// Second pass, once every running step's outcome is known: start what is ready, and omit what
/// can no longer run. Topological order lets a step that finishes at once (skipped, zero sleep)
/// unblock its dependents in the same pass.
fn start_ready_steps(ctx: &mut Ctx<'_>, graph: &graph::Graph, steps: &mut [StepStatus], mut failing: [bool; 2]) {
    let wf = ctx.wf;
    let all: Vec<&Step> = wf.spec.all_steps().collect();
    let main = wf.spec.steps.len();
    for &i in &graph.order {
        if steps[i].phase != StepPhase::Pending {
            continue;
        }
        let part = usize::from(i >= main);
        // Exit steps wait until every step has ended.
        if part == 1 && !steps[..main].iter().all(|s| s.phase.is_terminal()) {
            continue;
        }
        let mut st = steps[i].clone();
        let deps = &graph.deps[i];
        let blocked = deps.iter().any(|&d| matches!(steps[d].phase, StepPhase::Failed | StepPhase::Omitted));
        let ready = deps.iter().all(|&d| steps[d].phase.satisfies_dependency());
        if failing[part] || blocked {
            ctx.finish(&mut st, StepPhase::Omitted, None, None);
        } else if ready && !wf.spec.suspend {
            start_step(ctx, all[i], &mut st, steps);
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

/// The gate a waiting step expects, from the Workflow and the step's status alone.
pub fn approval_request(wf: &Workflow, step: &Step, st: &StepStatus) -> ApprovalRequest {
    let gate = step.suspend.as_ref().expect("suspend step");
    let workflow_name = wf.metadata.name.clone().unwrap_or_default();
    // A run started by an earlier version keeps the name it recorded.
    let name = st.approval_name.clone().unwrap_or_else(|| names::approval_name(&workflow_name, &step.name));
    let created_by = wf.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_CREATED_BY)).cloned();
    ApprovalRequest {
        name,
        workflow: WorkflowRef { name: workflow_name, uid: wf.metadata.uid.clone().unwrap_or_default(), created_by },
        step: step.name.clone(),
        item: None,
        message: st.message.clone(),
        approvers: gate.approvers.clone().filter(|a| !a.is_empty()),
        inputs: gate.inputs.clone(),
        timeout_seconds: gate.timeout_seconds,
        on_timeout: gate.on_timeout,
        expires_at: gate.timeout_seconds.zip(st.started_at.as_ref()).map(|(s, started)| Time(after(started, s))),
        self_approval: gate.self_approval,
        required_approvals: gate.required_approvals.filter(|&n| n > 1),
        reject_when: gate.reject_when.filter(|_| gate.required_approvals.is_some_and(|n| n > 1)),
        notify: gate.notify.clone(),
        escalates_at: gate
            .notify
            .as_ref()
            .and_then(|n| n.escalation.as_ref())
            .zip(st.started_at.as_ref())
            .map(|(e, started)| Time(after(started, e.after_seconds))),
    }
}

/// A gate's outputs: every declared input (empty when neither given nor defaulted, so templates
/// can use it without `has()`), plus the decision.
fn gate_outputs(
    specs: &[InputSpec],
    values: &BTreeMap<String, serde_json::Value>,
    decision: &str,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        specs.iter().map(|s| (s.name.clone(), values.get(&s.name).map(outputs::to_text).unwrap_or_default())).collect();
    out.insert("decision".into(), decision.into());
    out
}

/// A waiting step: open its gate if the Approval is missing, else act on a decision the Approval
/// records, once it has been checked against the gate this step expects.
fn wait_on_gate(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus) {
    let mut expected = approval_request(ctx.wf, step, st);
    expected.item = ctx.item.as_ref().map(|(i, _)| *i as i32);
    let Some(a) = ctx.approvals.get(expected.name.as_str()).copied() else {
        ctx.plan.create_approvals.push(expected);
        return;
    };
    match gate::outcome(&expected, a, ctx.now) {
        gate::Outcome::Waiting => {}
        gate::Outcome::NotAccepted(why) => {
            // Told once; the step keeps waiting for a decision that can be acted on.
            if st.reason.as_deref() != Some("DecisionNotAccepted") {
                st.reason = Some("DecisionNotAccepted".into());
                let note = format!("step {}: Approval {} not acted on: {why}", step.name, expected.name);
                ctx.plan.events.push(Event { warning: true, reason: "DecisionNotAccepted", note });
            }
        }
        gate::Outcome::Approved { values, decided_by } => {
            st.outputs = gate_outputs(&expected.inputs, &values, "Approve");
            st.decided_by = Some(decided_by);
            ctx.finish(st, StepPhase::Succeeded, Some("Approved"), a.spec.comment.clone());
        }
        gate::Outcome::Rejected { decided_by } => {
            st.outputs = BTreeMap::from([("decision".to_string(), "Reject".to_string())]);
            let msg = match &a.spec.comment {
                Some(c) => format!("rejected by {decided_by}: {c}"),
                None => format!("rejected by {decided_by}"),
            };
            st.decided_by = Some(decided_by);
            ctx.finish(st, StepPhase::Failed, Some("Rejected"), Some(msg));
        }
        gate::Outcome::Expired if expected.on_timeout == Some(OnTimeout::Approve) => {
            st.outputs = gate_outputs(&expected.inputs, &inputs::defaults(&expected.inputs), "Expired");
            ctx.finish(st, StepPhase::Succeeded, Some("ApprovalExpired"), Some("expired; onTimeout: Approve".into()));
        }
        gate::Outcome::Expired => {
            st.outputs = BTreeMap::from([("decision".to_string(), "Expired".to_string())]);
            let msg = "nobody decided before the gate expired".to_string();
            ctx.finish(st, StepPhase::Failed, Some("ApprovalExpired"), Some(msg));
        }
    }
    if st.phase.is_terminal() {
        st.votes = a.spec.votes.iter().map(|(user, v)| format!("{user}: {:?}", v.decision)).collect();
        let outcome = st.outputs.get("decision").cloned().unwrap_or_default();
        let by = st.decided_by.clone().map(|b| format!(" by {b}")).unwrap_or_default();
        ctx.plan.events.push(Event {
            warning: st.phase == StepPhase::Failed,
            reason: if outcome == "Expired" { "ApprovalExpired" } else { "ApprovalDecided" },
            note: format!("step {}: {} {outcome}{by}", step.name, expected.name),
        });
    }
}

fn start_step(ctx: &mut Ctx<'_>, step: &Step, st: &mut StepStatus, steps: &[StepStatus]) {
    if step.for_each.is_some() && ctx.item.is_none() {
        return fanout::advance(ctx, step, st, steps, false);
    }
    let scope = ctx.scope(steps);
    if let Some(w) = &step.when {
        match scope.eval_bool(w) {
            Ok(true) => {}
            Ok(false) => {
                st.started_at.get_or_insert(t(ctx.now));
                ctx.finish(st, StepPhase::Skipped, Some("ConditionFalse"), Some(format!("when: {w}")));
                return;
            }
            Err(EvalError::Busy(_)) => return ctx.wake_at(ctx.now + BUSY_RETRY),
            Err(EvalError::Failed(e)) => {
                ctx.finish(st, StepPhase::Failed, Some("ExpressionError"), Some(format!("when: {e}")));
                ctx.plan.events.push(Event {
                    warning: true,
                    reason: "StepFailed",
                    note: format!("step {}: when: {e}", step.name),
                });
                return;
            }
        }
    }
    match step.kind() {
        Some(StepKind::Container) => ctx.start_container(step, st, steps),
        Some(StepKind::Sleep) => {
            st.phase = StepPhase::Running;
            st.started_at = Some(t(ctx.now));
            let length = sleep_length(step);
            if length.is_zero() {
                ctx.finish(st, StepPhase::Succeeded, None, None);
            } else {
                ctx.wake_at(t(ctx.now).0.checked_add(length).unwrap_or(Timestamp::MAX));
            }
        }
        Some(StepKind::Suspend) => {
            let gate = step.suspend.as_ref().expect("suspend");
            let message = match gate.message.as_deref().map(|m| scope.render(m)).transpose() {
                Ok(m) => m,
                Err(EvalError::Busy(_)) => return ctx.wake_at(ctx.now + BUSY_RETRY),
                Err(EvalError::Failed(e)) => {
                    ctx.finish(st, StepPhase::Failed, Some("ExpressionError"), Some(format!("suspend.message: {e}")));
                    return;
                }
            };
            let index = ctx.item.as_ref().map(|(i, _)| *i);
            let name = match index {
                Some(i) => names::item_approval_name(&ctx.name, &step.name, i),
                None => names::approval_name(&ctx.name, &step.name),
            };
            st.phase = StepPhase::Waiting;
            st.started_at = Some(t(ctx.now));
            st.approval_name = Some(name.clone());
            st.message = message;
            let mut request = approval_request(ctx.wf, step, st);
            request.item = index.map(|i| i as i32);
            ctx.plan.create_approvals.push(request);
            ctx.plan.events.push(Event {
                warning: false,
                reason: "ApprovalRequested",
                note: format!("step {} waits for a decision on Approval {name}", step.name),
            });
        }
        None => unreachable!("validated"),
    }
}

fn finish_run(ctx: &mut Ctx<'_>, status: &mut WorkflowStatus, phase: WorkflowPhase, reason: &str, message: String) {
    status.phase = Some(phase);
    status.reason = Some(reason.into());
    status.message = Some(message.clone());
    status.finished_at = Some(t(ctx.now));
    status.waiting_for = None;
    status.progress = Some(progress(&status.steps, Some(phase)));
    set_conditions(ctx, status);
    if let Some(ttl) = ctx.wf.spec.ttl_seconds_after_finished {
        ctx.wake_at(after(&t(ctx.now), ttl));
    }
    let (warning, event) = match phase {
        WorkflowPhase::Succeeded => (false, "WorkflowSucceeded"),
        _ => (true, "WorkflowFailed"),
    };
    ctx.plan.events.push(Event { warning, reason: event, note: message });
}

/// The status to write instead of one the API server refused as too large: the run fails, and
/// what made it large (outputs, long messages) is dropped. Returns it and the Approvals of the
/// gates that were still waiting, to cancel.
pub fn too_large(wf: &Workflow, planned: &WorkflowStatus, now: Timestamp) -> (WorkflowStatus, Vec<String>) {
    let mut status = planned.clone();
    let mut waiting = vec![];
    let name = wf.metadata.name.clone().unwrap_or_default();
    for st in status.steps.iter_mut() {
        st.outputs.clear();
        st.message = st.message.take().map(|m| m.chars().take(256).collect());
        if st.phase == StepPhase::Waiting {
            waiting.extend(st.approval_name.clone());
        }
        waiting.extend(fanout::approvals_waiting(&name, st));
        // Item entries go too (`itemCount` stays): `items[i]` is item i, so none can be kept alone.
        st.items.clear();
        if !st.phase.is_terminal() {
            st.phase = if st.phase == StepPhase::Pending { StepPhase::Omitted } else { StepPhase::Failed };
            st.reason = Some("StatusTooLarge".into());
            st.finished_at = Some(t(now));
        }
    }
    let mut ctx = Ctx::new(wf, &[], &[], now);
    let message = "the Workflow's status grew larger than the API server stores; outputs were dropped \
                   (keep step outputs and the spec small: outputs are for values, not documents)"
        .to_string();
    finish_run(&mut ctx, &mut status, WorkflowPhase::Failed, "StatusTooLarge", message);
    (status, waiting)
}

/// Workflow phase, message, progress and conditions from the steps.
fn summarize(ctx: &mut Ctx<'_>, status: &mut WorkflowStatus, steps: Vec<StepStatus>, deadline_passed: bool) {
    status.steps = steps;
    let steps = &status.steps;
    let total = steps.len();
    let done = steps.iter().filter(|s| s.phase.is_terminal()).count();
    status.progress = Some(progress(steps, None));
    let failed: Vec<&StepStatus> = steps.iter().filter(|s| s.phase == StepPhase::Failed).collect();

    if done == total {
        let (phase, reason, message) = if deadline_passed {
            (WorkflowPhase::Failed, "DeadlineExceeded", "the Workflow's activeDeadlineSeconds passed".to_string())
        } else if let Some(f) = failed.first() {
            let detail = f.message.clone().unwrap_or_default();
            let why = f.reason.clone().unwrap_or_else(|| "Failed".into());
            (WorkflowPhase::Failed, "StepFailed", format!("step {} failed ({why}): {detail}", f.name))
        } else {
            (WorkflowPhase::Succeeded, "Succeeded", format!("all {total} steps finished"))
        };
        finish_run(ctx, status, phase, reason, message);
        return;
    }

    let waiting: Vec<&StepStatus> = steps.iter().filter(|s| s.phase == StepPhase::Waiting).collect();
    let running: Vec<&str> = steps.iter().filter(|s| s.phase == StepPhase::Running).map(|s| s.name.as_str()).collect();
    status.waiting_for = (!waiting.is_empty()).then(|| waiting_for(&ctx.name, &waiting));
    let (phase, reason, message) = if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|s| s.name.as_str()).collect();
        (
            WorkflowPhase::Running,
            "Failing",
            format!("step {} failed; waiting for {} to finish", names.join(", "), running.join(", ")),
        )
    } else if running.is_empty() && !waiting.is_empty() {
        let names = waiting_for(&ctx.name, &waiting);
        (WorkflowPhase::Waiting, "ApprovalPending", format!("waiting for approval {names}"))
    } else if running.is_empty() && ctx.wf.spec.suspend {
        (WorkflowPhase::Pending, "Suspended", "suspended: set spec.suspend to false to continue".to_string())
    } else {
        (WorkflowPhase::Running, "Running", format!("running {}", running.join(", ")))
    };
    status.phase = Some(phase);
    status.reason = Some(reason.into());
    status.message = Some(message);
    set_conditions(ctx, status);
}

/// Most Approvals `waitingFor` names; the rest are counted (a forEach gate may wait on many).
const WAITING_FOR_NAMES: usize = 5;

/// The Approvals waiting steps wait on, comma-separated: at most `WAITING_FOR_NAMES`, then
/// `+N more`.
fn waiting_for(workflow: &str, waiting: &[&StepStatus]) -> String {
    let names: Vec<String> = waiting
        .iter()
        .flat_map(|s| {
            if s.items.is_empty() {
                s.approval_name.clone().into_iter().collect()
            } else {
                fanout::approvals_waiting(workflow, s)
            }
        })
        .collect();
    let mut shown = names[..names.len().min(WAITING_FOR_NAMES)].join(",");
    if names.len() > WAITING_FOR_NAMES {
        shown.push_str(&format!(",+{} more", names.len() - WAITING_FOR_NAMES));
    }
    shown
}

/// The PROGRESS column: steps that ran (Succeeded or Failed) of all steps, so skipped and omitted
/// steps never look like work done; once the run ended, why the rest did not run.
pub fn progress(steps: &[StepStatus], ended: Option<WorkflowPhase>) -> String {
    let total = steps.len();
    let ran = steps.iter().filter(|s| matches!(s.phase, StepPhase::Succeeded | StepPhase::Failed)).count();
    let skipped = steps.iter().filter(|s| s.phase == StepPhase::Skipped).count();
    let stopped_at = steps.iter().find(|s| s.phase == StepPhase::Failed).map(|s| s.name.as_str());
    match (ended, stopped_at) {
        (Some(WorkflowPhase::Failed), Some(step)) => format!("{ran}/{total}, failed at {step}"),
        (Some(WorkflowPhase::Failed), None) => format!("{ran}/{total}, stopped"),
        (Some(_), _) if skipped > 0 => format!("{ran}/{total}, {skipped} skipped"),
        _ => format!("{ran}/{total}"),
    }
}

/// `Succeeded` and `Failed` (as on a Job: at most one is True, and only once the run ended),
/// `Completed` (the run ended, either way), `Waiting`, and the `Reconciling`/`Stalled` pair
/// kstatus reads.
fn set_conditions(ctx: &Ctx<'_>, status: &mut WorkflowStatus) {
    let phase = status.phase.unwrap_or(WorkflowPhase::Pending);
    let completed = match phase {
        WorkflowPhase::Succeeded => ("True", "Succeeded"),
        WorkflowPhase::Failed => ("True", "Failed"),
        WorkflowPhase::Waiting => ("False", "Waiting"),
        WorkflowPhase::Pending => ("False", "Pending"),
        WorkflowPhase::Running => ("False", "Running"),
    };
    let outcome = |wanted: WorkflowPhase| if phase == wanted { "True" } else { "False" };
    // Reason of a False outcome condition: what the run is instead (Running, Waiting, Failed...).
    let failed_reason = status.reason.clone().filter(|_| phase == WorkflowPhase::Failed);
    let waiting = if phase.is_terminal() || status.waiting_for.is_none() {
        ("False", "NoApprovalPending")
    } else {
        ("True", "ApprovalPending")
    };
    let message = status.message.clone().unwrap_or_default();
    let failed_reason = failed_reason.as_deref().unwrap_or(completed.1);
    let wanted = vec![
        ("Succeeded", outcome(WorkflowPhase::Succeeded), completed.1, message.clone()),
        ("Failed", outcome(WorkflowPhase::Failed), failed_reason, message.clone()),
        ("Completed", completed.0, completed.1, message.clone()),
        (
            "Waiting",
            waiting.0,
            waiting.1,
            status.waiting_for.clone().map(|w| format!("waiting for approval {w}")).unwrap_or_default(),
        ),
        // kstatus (Flux, kpt, cli-utils) reads these two: in progress while the run goes on,
        // failed when it failed.
        ("Reconciling", if phase.is_terminal() { "False" } else { "True" }, completed.1, message.clone()),
        (
            "Stalled",
            if phase == WorkflowPhase::Failed { "True" } else { "False" },
            completed.1,
            if phase == WorkflowPhase::Failed { message.clone() } else { String::new() },
        ),
    ];
    status.conditions = conditions::merge(&status.conditions, wanted, t(ctx.now), ctx.wf.metadata.generation);
}
