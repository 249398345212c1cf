//! Typed builders for the Workflows the behaviour tests send, over the real API types
//! (`hitl_operator::api`), so a misspelt or misplaced field does not compile. `.yaml()` is the
//! manifest a test applies with kubectl as its user, as before. Manifests whose text is the point
//! (admission refusals, README examples) stay YAML in the tests.
//!
//! ```ignore
//! fixtures::workflow("w")
//!     .step(fixtures::container("a", "busybox:1.36").command(["sh", "-c", "echo hi"]))
//!     .step(fixtures::suspend("gate").approvers_users(["alice"]).timeout_seconds(60))
//!     .yaml()
//! ```

use hitl_operator::api::workflow::{Param, PodMetadata, RetryPolicy};
use hitl_operator::api::{
    Approvers, Gate, InputSpec, InputType, OnTimeout, Step, StepContainer, SuspendStep, Volume, VolumeMount, Workflow,
    WorkflowSpec, Workspace,
};
use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    items.into_iter().map(String::from).collect()
}

/// A Workflow named `name` (no namespace: tests apply it with `-n`).
pub fn workflow(name: &str) -> WorkflowBuilder {
    WorkflowBuilder(Workflow::new(name, WorkflowSpec::default()))
}

pub struct WorkflowBuilder(pub Workflow);

impl WorkflowBuilder {
    /// The manifest, for `kubectl apply -f -`.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.0).expect("a Workflow serializes")
    }

    pub fn step(mut self, step: StepBuilder) -> Self {
        self.0.spec.steps.push(step.0);
        self
    }

    pub fn steps(mut self, steps: impl IntoIterator<Item = StepBuilder>) -> Self {
        self.0.spec.steps.extend(steps.into_iter().map(|s| s.0));
        self
    }

    /// An exit step (`spec.onExit`).
    pub fn on_exit(mut self, step: StepBuilder) -> Self {
        self.0.spec.on_exit.push(step.0);
        self
    }

    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.0.spec.params.push(Param { name: name.into(), value: value.into() });
        self
    }

    /// `spec.suspend: true`: paused before it starts.
    pub fn suspended(mut self) -> Self {
        self.0.spec.suspend = true;
        self
    }

    pub fn ttl_seconds_after_finished(mut self, seconds: i64) -> Self {
        self.0.spec.ttl_seconds_after_finished = Some(seconds);
        self
    }

    pub fn active_deadline_seconds(mut self, seconds: i64) -> Self {
        self.0.spec.active_deadline_seconds = Some(seconds);
        self
    }

    /// A `spec.volumes` entry `name` of ConfigMap `config_map`.
    pub fn config_map_volume(mut self, name: &str, config_map: &str) -> Self {
        let source = ConfigMapVolumeSource { name: config_map.into(), ..Default::default() };
        self.0.spec.volumes.push(Volume { name: name.into(), config_map: Some(source), ..Default::default() });
        self
    }

    /// `spec.workspace`: a claim of `storage` in `storage_class` with these access modes.
    pub fn workspace<'a>(
        mut self,
        access_modes: impl IntoIterator<Item = &'a str>,
        storage: &str,
        storage_class: &str,
    ) -> Self {
        let mut ws = Workspace::default();
        ws.volume_claim_template.access_modes = strings(access_modes);
        ws.volume_claim_template.resources.requests.storage = Quantity(storage.into());
        ws.volume_claim_template.storage_class_name = Some(storage_class.into());
        self.0.spec.workspace = Some(ws);
        self
    }
}

/// A container step.
pub fn container(name: &str, image: &str) -> StepBuilder {
    let container = StepContainer { image: image.into(), ..Default::default() };
    StepBuilder(Step { name: name.into(), container: Some(container), ..Default::default() })
}

/// A suspend step (a gate) that anyone RBAC lets decide, until `.approvers_*` says who.
pub fn suspend(name: &str) -> StepBuilder {
    StepBuilder(Step { name: name.into(), suspend: Some(SuspendStep::default()), ..Default::default() })
}

/// A sleep step, e.g. `sleep("nap", "1s")`.
pub fn sleep(name: &str, duration: &str) -> StepBuilder {
    StepBuilder(Step { name: name.into(), sleep: Some(duration.into()), ..Default::default() })
}

pub struct StepBuilder(pub Step);

impl StepBuilder {
    fn container(&mut self) -> &mut StepContainer {
        self.0.container.as_mut().expect("only a container step has this")
    }

    fn suspend(&mut self) -> &mut SuspendStep {
        self.0.suspend.as_mut().expect("only a suspend step has this")
    }

    fn gate(&mut self) -> &mut Gate {
        &mut self.suspend().gate
    }

    /// `dependsOn`; `[]` starts the step at once.
    pub fn depends_on<'a>(mut self, steps: impl IntoIterator<Item = &'a str>) -> Self {
        self.0.depends_on = Some(strings(steps));
        self
    }

    pub fn when(mut self, cel: &str) -> Self {
        self.0.when = Some(cel.into());
        self
    }

    /// The Pod annotation `sim.hitl.dev/<key>` that tells the simulated node how the step goes.
    pub fn sim(mut self, key: &str, value: &str) -> Self {
        let meta = self.0.metadata.get_or_insert_with(PodMetadata::default);
        meta.annotations.insert(format!("sim.hitl.dev/{key}"), value.into());
        self
    }

    pub fn retries(mut self, retries: i32) -> Self {
        self.0.retries = Some(retries);
        self
    }

    /// `retryPolicy: {delaySeconds, factor}`.
    pub fn retry_backoff(mut self, delay_seconds: i64, factor: f64) -> Self {
        let policy = self.0.retry_policy.get_or_insert_with(RetryPolicy::default);
        policy.delay_seconds = Some(delay_seconds);
        policy.factor = Some(factor);
        self
    }

    /// `retryPolicy.when`.
    pub fn retry_when(mut self, cel: &str) -> Self {
        self.0.retry_policy.get_or_insert_with(RetryPolicy::default).when = Some(cel.into());
        self
    }

    /// A container step: the limit on each attempt (`timeoutSeconds`). A suspend step: when the
    /// gate expires (`suspend.timeoutSeconds`).
    pub fn timeout_seconds(mut self, seconds: i64) -> Self {
        match &mut self.0.suspend {
            Some(s) => s.gate.timeout_seconds = Some(seconds),
            None => self.0.timeout_seconds = Some(seconds),
        }
        self
    }

    pub fn command<'a>(mut self, command: impl IntoIterator<Item = &'a str>) -> Self {
        self.container().command = strings(command);
        self
    }

    pub fn args<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> Self {
        self.container().args = strings(args);
        self
    }

    /// An environment variable with a plain value.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        let var = EnvVar { name: name.into(), value: Some(value.into()), value_from: None };
        self.container().env.push(var);
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.container().working_dir = Some(dir.into());
        self
    }

    /// `container.workspace: true`: mount the run's workspace.
    pub fn workspace(mut self) -> Self {
        self.container().workspace = true;
        self
    }

    /// Mount `spec.volumes` entry `name` at `path`, read-only.
    pub fn mount_read_only(mut self, name: &str, path: &str) -> Self {
        let mount = VolumeMount { name: name.into(), mount_path: path.into(), read_only: Some(true), sub_path: None };
        self.container().volume_mounts.push(mount);
        self
    }

    /// `resources.limits.cpu`, taken as written (the API server judges it).
    pub fn cpu_limit(mut self, cpu: &str) -> Self {
        let resources = self.container().resources.get_or_insert_with(ResourceRequirements::default);
        resources.limits.get_or_insert_with(Default::default).insert("cpu".into(), Quantity(cpu.into()));
        self
    }

    /// `suspend.message`.
    pub fn message(mut self, message: &str) -> Self {
        self.suspend().message = Some(message.into());
        self
    }

    pub fn approvers_users<'a>(mut self, users: impl IntoIterator<Item = &'a str>) -> Self {
        self.gate().approvers.get_or_insert_with(Approvers::default).users = strings(users);
        self
    }

    pub fn approvers_groups<'a>(mut self, groups: impl IntoIterator<Item = &'a str>) -> Self {
        self.gate().approvers.get_or_insert_with(Approvers::default).groups = strings(groups);
        self
    }

    pub fn input(mut self, input: InputBuilder) -> Self {
        self.gate().inputs.push(input.0);
        self
    }

    pub fn required_approvals(mut self, n: i32) -> Self {
        self.gate().required_approvals = Some(n);
        self
    }

    pub fn on_timeout(mut self, on_timeout: OnTimeout) -> Self {
        self.gate().on_timeout = Some(on_timeout);
        self
    }
}

/// A gate's typed input.
pub fn input(name: &str, type_: InputType) -> InputBuilder {
    InputBuilder(InputSpec { name: name.into(), type_, ..Default::default() })
}

pub struct InputBuilder(pub InputSpec);

impl InputBuilder {
    pub fn required(mut self) -> Self {
        self.0.required = true;
        self
    }

    /// `enum`: the allowed values.
    pub fn one_of<'a>(mut self, values: impl IntoIterator<Item = &'a str>) -> Self {
        self.0.enum_ = strings(values);
        self
    }

    pub fn default(mut self, value: serde_json::Value) -> Self {
        self.0.default = Some(value);
        self
    }

    pub fn minimum(mut self, min: f64) -> Self {
        self.0.minimum = Some(min);
        self
    }

    pub fn maximum(mut self, max: f64) -> Self {
        self.0.maximum = Some(max);
        self
    }

    pub fn max_length(mut self, n: i64) -> Self {
        self.0.max_length = Some(n);
        self
    }

    pub fn pattern(mut self, re: &str) -> Self {
        self.0.pattern = Some(re.into());
        self
    }
}
