//! Admission-time CEL rules (`x-kubernetes-validations`) added to the generated schemas, so that
//! `kubectl apply` refuses a bad object with a message naming the step and the field.
//! What CEL cannot express (cycles, expressions that do not compile) the controller reports as
//! `InvalidSpec` before any Pod starts.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, ValidationRule,
};
use serde_json::{Value, json};

use super::workflow::{MAX_TEMPLATE_EXPRESSIONS, MAX_TEMPLATE_LENGTH};

/// A Go duration as `time.ParseDuration` accepts it, without sign (e.g. `30s`, `1h30m`, `1.5h`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

fn rule(rule: &str, message_expression: &str, field_path: Option<&str>) -> Value {
    let mut r = json!({ "rule": rule, "messageExpression": message_expression });
    if let Some(path) = field_path {
        r["fieldPath"] = json!(path);
    }
    r
}

/// Rules on one step; each message starts with `step <name>:`.
pub fn step_rules() -> Value {
    json!([
        rule(
            "(has(self.container) ? 1 : 0) + (has(self.suspend) ? 1 : 0) + (has(self.sleep) ? 1 : 0) == 1",
            "'step ' + self.name + ': set exactly one of container, suspend or sleep; it sets: ' + (has(self.container) ? 'container ' : '') + (has(self.suspend) ? 'suspend ' : '') + (has(self.sleep) ? 'sleep' : (has(self.container) || has(self.suspend) ? '' : 'none'))",
            None,
        ),
        rule(
            &format!("!has(self.sleep) || self.sleep.matches('{}')", DURATION_PATTERN.replace('\\', "\\\\")),
            "'step ' + self.name + ': sleep must be a duration such as 30s, 5m or 1h30m, not \"' + self.sleep + '\"'",
            Some(".sleep"),
        ),
        rule(
            "!has(self.retries) || has(self.container)",
            "'step ' + self.name + ': retries applies only to container steps, and this is a ' + (has(self.suspend) ? 'suspend' : 'sleep') + ' step'",
            Some(".retries"),
        ),
        rule(
            "!has(self.retryPolicy) || (has(self.container) && has(self.retries))",
            "'step ' + self.name + ': retryPolicy applies only to container steps with retries'",
            Some(".retryPolicy"),
        ),
        rule(
            "!has(self.timeoutSeconds) || has(self.container)",
            "'step ' + self.name + ': timeoutSeconds applies only to container steps, and this is a ' + (has(self.suspend) ? 'suspend' : 'sleep') + ' step (a suspend step has suspend.timeoutSeconds)'",
            Some(".timeoutSeconds"),
        ),
        rule(
            "!has(self.affinity) || has(self.container)",
            "'step ' + self.name + ': affinity applies only to container steps, and this is a ' + (has(self.suspend) ? 'suspend' : 'sleep') + ' step'",
            Some(".affinity"),
        ),
        rule(
            "!has(self.when) || !self.when.contains('{{')",
            "'step ' + self.name + ': when is a CEL expression itself; write it without {{ }}, not \"' + self.when + '\"'",
            Some(".when"),
        ),
        rule(
            &format!(
                "!has(self.container) || !has(self.container.env) || self.container.env.all(e, !has(e.value) || size(e.value) <= {MAX_TEMPLATE_LENGTH})"
            ),
            &format!(
                "'step ' + self.name + ': container.env values may be at most {MAX_TEMPLATE_LENGTH} characters long'"
            ),
            Some(".container.env"),
        ),
        message_template_rule(),
        rule(
            "!has(self.suspend) || !has(self.suspend.notify) || !has(self.suspend.notify.escalation) || !has(self.suspend.requiredApprovals) || self.suspend.requiredApprovals <= 1",
            "'step ' + self.name + ': escalation is not supported on a quorum gate (requiredApprovals > 1)'",
            Some(".suspend.notify.escalation"),
        ),
        rule(
            "!has(self.forEach) || !has(self.sleep)",
            "'step ' + self.name + ': forEach applies only to container and suspend steps, and this is a sleep step'",
            Some(".forEach"),
        ),
        rule(
            "!has(self.dependsOn) || !(self.name in self.dependsOn)",
            "'step ' + self.name + ': dependsOn must not name the step itself'",
            Some(".dependsOn"),
        ),
    ])
}

/// Rules on the Workflow's spec as a whole. (That every `volumeMounts` name is declared, and that
/// `container.workspace` has a `spec.workspace`, is checked by the `hitl-workflow-spec` admission
/// policy, which can name the step and the missing volume within the API server's cost budget,
/// and by the controller.)
pub fn spec_rules() -> Value {
    json!([
        rule(
            "!has(self.workspace) || !has(self.volumes) || !self.volumes.exists(v, v.name == 'workspace')",
            "'spec.volumes: the name workspace is taken by spec.workspace; rename the volume'",
            Some(".volumes"),
        ),
        rule(
            "has(self.workflowTemplateRef) || (has(self.steps) && size(self.steps) > 0)",
            "'spec.steps: Required value: set steps, or workflowTemplateRef to run a WorkflowTemplate'",
            Some(".steps"),
        ),
        rule(
            &format!(
                "!has(self.workflowTemplateRef) || ({})",
                TEMPLATE_OWNED.iter().map(|f| format!("!has(self.{f})")).collect::<Vec<_>>().join(" && ")
            ),
            &format!(
                "'spec.workflowTemplateRef: with a template reference the template alone says what the Pods get; leave out {}'",
                TEMPLATE_OWNED.join(", ")
            ),
            Some(".workflowTemplateRef"),
        ),
    ])
}

/// Rules on a WorkflowTemplate's spec: a Workflow spec's rules, and it neither fills its own
/// parameters nor runs another template.
pub fn template_spec_rules() -> Value {
    let mut rules = spec_rules();
    let own = [
        rule(
            "!has(self.workflowTemplateRef)",
            "'spec.workflowTemplateRef: a WorkflowTemplate cannot run another template'",
            Some(".workflowTemplateRef"),
        ),
        rule(
            "!has(self.params)",
            "'spec.params: a WorkflowTemplate declares spec.parameters (name, required, default); runs fill them with their spec.params'",
            Some(".params"),
        ),
    ];
    rules.as_array_mut().expect("a list").extend(own);
    rules
}

/// The fields a Workflow that references a template may not set: they come from the template.
pub const TEMPLATE_OWNED: [&str; 7] =
    ["steps", "onExit", "serviceAccountName", "podTemplate", "podGC", "volumes", "workspace"];

/// At most `MAX_TEMPLATE_EXPRESSIONS` `{{ }}` in a gate's message. The same rule on container
/// `command`/`args` (up to 64 and 256 strings of 16 KiB) is over the API server's cost budget
/// (measured on 1.37: 5.4x and 21.5x over the per-rule limit), so the controller checks those,
/// and every expression's size and shape, before any Pod starts.
fn message_template_rule() -> Value {
    let most = MAX_TEMPLATE_EXPRESSIONS;
    rule(
        &format!(
            "!has(self.suspend) || !has(self.suspend.message) || self.suspend.message.split('{{{{').size() <= {}",
            most + 1
        ),
        &format!("'step ' + self.name + ': suspend.message may hold at most {most} {{{{ }}}} expressions'"),
        Some(".suspend.message"),
    )
}

/// Rules on a typed input declaration.
pub fn input_spec_rules() -> Value {
    json!([
        rule(
            "!has(self.enum) || size(self.enum) == 0 || !has(self.type) || self.type == 'string'",
            "'input ' + self.name + ': enum is allowed only for string inputs, not type ' + self.type",
            Some(".enum"),
        ),
        rule(
            "(!has(self.minimum) && !has(self.maximum)) || (has(self.type) && (self.type == 'integer' || self.type == 'number'))",
            "'input ' + self.name + ': minimum and maximum apply only to integer and number inputs, not type ' + (has(self.type) ? self.type : 'string')",
            None,
        ),
        rule(
            "!has(self.minimum) || !has(self.maximum) || self.minimum <= self.maximum",
            "'input ' + self.name + ': minimum must not exceed maximum'",
            Some(".minimum"),
        ),
        rule(
            "(!has(self.maxLength) && !has(self.pattern)) || !has(self.type) || self.type == 'string'",
            "'input ' + self.name + ': maxLength and pattern apply only to string inputs, not type ' + self.type",
            None,
        ),
    ])
}

/// Rules on an Approval's spec: what the controller set is immutable, and a decision is made in
/// one request and is final. `input` is checked by the ValidatingAdmissionPolicy: CRD rules
/// cannot see inside it.
pub fn approval_spec_rules() -> Value {
    let set_by_controller = super::approval::GateField::ALL.map(|f| f.name());
    let immutable = set_by_controller
        .iter()
        .map(|f| format!("has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})"))
        .collect::<Vec<_>>()
        .join(" && ");
    let mut rules = vec![json!({
        "rule": immutable,
        "message": format!("{} are set by the controller and cannot change", set_by_controller.join(", ")),
    })];
    for f in ["decision", "comment", "decidedBy", "decidedByGroups", "evidenceSeen"] {
        rules.push(json!({
            "rule": format!("!has(oldSelf.{f}) || (has(self.{f}) && self.{f} == oldSelf.{f})"),
            "message": format!("{f} is final once set: a decision cannot be changed or withdrawn"),
            "fieldPath": format!(".{f}"),
        }));
    }
    // A vote, once cast, stays as it was.
    rules.push(json!({
        "rule": "!has(oldSelf.votes) || oldSelf.votes.all(k, has(self.votes) && k in self.votes && self.votes[k] == oldSelf.votes[k])",
        "message": "a vote is final: nobody changes or removes a vote once cast",
        "fieldPath": ".votes",
    }));
    // No pre-claiming: who decides, and why, come with the decision, never before it.
    rules.push(json!({
        "rule": "!(has(self.decidedBy) || has(self.comment) || has(self.decidedByGroups) || has(self.evidenceSeen)) || has(self.decision) || has(self.input)",
        "message": "decidedBy, decidedByGroups, comment and evidenceSeen can only be set together with a decision (or input), in the same request",
    }));
    // ... and nothing is added to a decision afterwards.
    let unchanged = ["decision", "input", "comment", "decidedBy", "decidedByGroups", "evidenceSeen"]
        .iter()
        .map(|f| format!("has(self.{f}) == has(oldSelf.{f})"))
        .collect::<Vec<_>>()
        .join(" && ");
    rules.push(json!({
        "rule": format!("!(has(oldSelf.decision) || has(oldSelf.input)) || ({unchanged})"),
        "message": "a decision is made in one request: decision, input, comment, decidedBy, decidedByGroups and evidenceSeen cannot be added to it afterwards",
    }));
    Value::Array(rules)
}

/// Workflow names are DNS labels: every name derived from them (Pods, Approvals, Events, label
/// values) then stays valid and within its length limit.
fn workflow_name_rule() -> ValidationRule {
    ValidationRule {
        rule: "size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')".into(),
        message_expression: Some(
            "'metadata.name: a Workflow name must be a DNS label (at most 63 lower-case letters, digits and \\'-\\', no dots), not \\'' + self.metadata.name + '\\''".into(),
        ),
        ..Default::default()
    }
}

/// Fields of a Workflow's spec that may not change once the run has started: every field but
/// those of [`SPEC_FIELDS_MUTABLE_WHILE_RUNNING`]. A test fails when the spec gains a field that is
/// in neither list, so a new field cannot slip past the freeze.
pub const SPEC_FIELDS_FROZEN_WHILE_RUNNING: [&str; 11] = [
    "params",
    "serviceAccountName",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "podTemplate",
    "podGC",
    "volumes",
    "workspace",
    "steps",
    "workflowTemplateRef",
    "onExit",
];
/// What a person may still change in a started run: pausing it.
pub const SPEC_FIELDS_MUTABLE_WHILE_RUNNING: [&str; 1] = ["suspend"];

/// The Workflow's spec may not change once the run has started, except `suspend`. This needs the
/// status, which only a rule on the root of the schema can see.
pub fn with_root_rules(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let frozen = SPEC_FIELDS_FROZEN_WHILE_RUNNING
        .iter()
        .map(|f| {
            format!(
                "has(self.spec.{f}) == has(oldSelf.spec.{f}) && (!has(self.spec.{f}) || self.spec.{f} == oldSelf.spec.{f})"
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let root_rule = ValidationRule {
        rule: format!("!has(oldSelf.status) || !has(oldSelf.status.startedAt) || ({frozen})"),
        message: Some(format!(
            "spec cannot change once the run has started; only spec.{} may (create a new Workflow instead)",
            SPEC_FIELDS_MUTABLE_WHILE_RUNNING.join(", spec.")
        )),
        ..Default::default()
    };
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            let rules: &mut JSONSchemaProps = schema;
            let rules = rules.x_kubernetes_validations.get_or_insert_with(Vec::new);
            rules.push(root_rule.clone());
            rules.push(workflow_name_rule());
        }
    }
    crd
}

/// A CronWorkflow's name leaves room for `-<unix seconds>` (10 digits) in the DNS label of the
/// Workflows it creates.
pub fn with_cron_rules(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let rule = ValidationRule {
        rule: "size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')".into(),
        message_expression: Some(
            "'metadata.name: a CronWorkflow name must be a DNS label of at most 52 characters (its Workflows add -<unix seconds>), not \\'' + self.metadata.name + '\\''".into(),
        ),
        ..Default::default()
    };
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.x_kubernetes_validations.get_or_insert_with(Vec::new).push(rule.clone());
        }
    }
    crd
}

#[cfg(test)]
mod frozen_spec_tests {
    use super::*;

    /// Every field of the Workflow's spec, as the CRD publishes it, is either frozen once the run
    /// starts or named as changeable: a field added without that decision fails here.
    #[test]
    fn every_spec_field_is_frozen_or_named_changeable() {
        let crd = crate::crds().into_iter().find(|c| c.spec.names.kind == "Workflow").expect("Workflow CRD");
        let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
        let spec = &schema.properties.as_ref().unwrap()["spec"];
        let mut fields: Vec<&str> = spec.properties.as_ref().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        let mut decided: Vec<&str> =
            SPEC_FIELDS_FROZEN_WHILE_RUNNING.iter().chain(&SPEC_FIELDS_MUTABLE_WHILE_RUNNING).copied().collect();
        decided.sort();
        assert_eq!(fields, decided, "decide for each spec field whether it may change while the run goes on");
    }
}
