//! The `WorkflowTemplate` custom resource: a Workflow spec written once, with declared
//! parameters, run many times by reference (`Workflow.spec.workflowTemplateRef`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workflow::WorkflowSpec;

/// A reusable Workflow spec. Its `spec` holds every field of a Workflow's spec (steps, onExit,
/// volumes, podTemplate, ...) plus `parameters`, and passes the same admission policies as a
/// Workflow, checked against whoever writes the template. Running it takes the verb `use` on it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hitl.dev",
    version = "v1alpha1",
    kind = "WorkflowTemplate",
    namespaced,
    shortname = "wftmpl",
    category = "hitl",
    derive = "Default",
    derive = "PartialEq",
    doc = "A reusable Workflow spec with declared parameters; a Workflow runs it with spec.workflowTemplateRef.",
    printcolumn(name = "Parameters", type_ = "string", json_path = ".spec.parameters[*].name"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = super::validation::template_spec_rules()))]
pub struct WorkflowTemplateSpec {
    /// The parameters a run supplies in its `spec.params`; steps read them as `params.<name>`,
    /// exactly as a Workflow's own params (in `command`, `args`, `env` values, `suspend.message`
    /// and `when`), and nowhere else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 64))]
    pub parameters: Vec<ParameterSpec>,

    /// The Workflow spec: every field a Workflow's spec has, except `params` (declare
    /// `parameters` instead) and `workflowTemplateRef` (a template does not run another).
    #[serde(flatten)]
    pub workflow: WorkflowSpec,
}

/// A declared parameter of a WorkflowTemplate.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.required) && self.required && has(self.default))",
    "messageExpression": "'parameter ' + self.name + ': a required parameter has no default; drop one of them'",
}]))]
pub struct ParameterSpec {
    /// The name; steps read it as `params.<name>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// A run that does not supply it fails with reason `MissingParameter` before any Pod starts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The value when a run does not supply one (unset and not required: the empty string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub default: Option<String>,
    /// What the parameter means, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

/// Names a WorkflowTemplate in the Workflow's own namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTemplateRef {
    /// The WorkflowTemplate's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Run the template only as it was at this resourceVersion (`kubectl get wftmpl NAME -o
    /// jsonpath='{.metadata.resourceVersion}'`): if anyone changed it since, the run fails with
    /// reason `TemplateChanged` before any step starts, instead of running what you did not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub resource_version: Option<String>,
}

/// The template a run follows, as resolved when it started.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedTemplate {
    /// The WorkflowTemplate's name.
    pub name: String,
    /// Its UID when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Its resourceVersion when resolved: the version that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// `sha256:<hex>` of the resolved spec (as JSON), to compare runs at a glance.
    pub digest: String,
    /// Who wrote the template (its creator and every editor of its spec, from its
    /// `hitl.dev/authors` annotation): where a gate forbids self-approval, none of them may decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    /// When it was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// The Workflow spec that runs: the template's, with `params` holding every declared
    /// parameter's value.
    #[schemars(schema_with = "super::shared::any_object")]
    pub spec: Box<WorkflowSpec>,
}
