//! WorkflowTemplates on the local cluster: a run records the template as resolved when it
//! started and follows only that record; a missing template or parameter fails the run with its
//! reason; and templates open no way around the admission policies (attacks as ordinary users).

mod common;
mod harness;

use std::time::Duration;

use common::{TestNamespace, kubectl, kubectl_ok, kubectl_stdin, repo_root, test_namespace, wait_for};
use harness::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A namespace where alice and bob may write Workflows, WorkflowTemplates and CronWorkflows (a
/// Role, nothing else: not Secrets), only alice may `use` templates (the chart's
/// hitl-template-user), and carol is a namespace editor (the built-in `edit` role, with the
/// chart's aggregated rules).
fn namespace(prefix: &str) -> TestNamespace {
    ensure_crds();
    let roles = repo_root().join("config/rbac/user_roles.yaml");
    kubectl_ok("admin", &["apply", "--server-side", "--force-conflicts", "-f", roles.to_str().unwrap()]);
    let ns = test_namespace(prefix);
    let n = ns.name();
    let kinds = "--resource=workflows.hitl.dev,workflowtemplates.hitl.dev,cronworkflows.hitl.dev";
    kubectl_ok("admin", &["-n", n, "create", "role", "author", "--verb=create,get,list,update,patch", kinds]);
    for user in ["alice", "bob"] {
        kubectl_ok(
            "admin",
            &["-n", n, "create", "rolebinding", &format!("{user}-writes"), "--role=author", "--user", user],
        );
    }
    kubectl_ok(
        "admin",
        &["-n", n, "create", "rolebinding", "alice-runs", "--clusterrole=hitl-template-user", "--user=alice"],
    );
    kubectl_ok("admin", &["-n", n, "create", "rolebinding", "carol-edits", "--clusterrole=edit", "--user=carol"]);
    let can = |user, verb, what| kubectl(user, &["-n", n, "auth", "can-i", verb, what]).status.success();
    wait_for("the aggregated rights", WAIT, || {
        (can("carol", "create", "workflowtemplates.hitl.dev")
            && can("carol", "create", "cronworkflows.hitl.dev")
            && can("alice", "use", "workflowtemplates.hitl.dev/review"))
        .then_some(())
    });
    assert!(!can("carol", "use", "workflowtemplates.hitl.dev/review"), "edit must not include use");
    assert!(!can("bob", "get", "secrets"), "bob must not read Secrets here");
    ns
}

fn apply_as(user: &str, ns: &str, yaml: &str) -> Result<(), String> {
    let out = kubectl_stdin(user, &["-n", ns, "apply", "-f", "-"], yaml);
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// The review template: a gate whose message reads the parameters, then a report step.
fn template(report_arg: &str) -> String {
    format!(
        r#"apiVersion: hitl.dev/v1alpha1
kind: WorkflowTemplate
metadata: {{name: review}}
spec:
  parameters:
    - {{name: who, required: true, description: the account to review}}
    - {{name: greeting, default: hello}}
  steps:
    - name: gate
      suspend: {{message: "{{{{ params.greeting }}}} {{{{ params.who }}}}"}}
    - name: report
      container: {{image: busybox:1.36, args: [echo, "{report_arg}"]}}
"#
    )
}

fn run(name: &str, template: &str, params: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  workflowTemplateRef: {{name: {template}}}\n  params: [{params}]\n"
    )
}

fn pod_args(ns: &str, workflow: &str, step: &str) -> Value {
    let pod = pods(ns, workflow)
        .into_iter()
        .find(|p| p["metadata"]["labels"]["hitl.dev/step"] == step)
        .unwrap_or_else(|| panic!("no Pod for step {step} of {workflow}"));
    pod["spec"]["containers"][0]["args"].clone()
}

fn approve(ns: &str, workflow: &str) {
    let name = wait_for("the gate's Approval", WAIT, || {
        workflow_opt(ns, workflow).and_then(|w| step(&w, "gate")["approvalName"].as_str().map(String::from))
    });
    wait_pending(ns, &name);
    patch_approval("admin", ns, &name, r#"{"spec":{"decision":"Approve"}}"#).unwrap();
}

fn workflow_opt(ns: &str, name: &str) -> Option<Value> {
    get_json(ns, "workflow", name)
}

#[test]
fn a_template_edited_mid_run_changes_no_run_in_flight() {
    let ns = namespace("tmpl-edit");
    let n = ns.name();
    let _op = Operator::start(n);
    apply_as("admin", n, &template("v1")).unwrap();
    let v1 = kubectl_ok("admin", &["-n", n, "get", "wftmpl", "review", "-o", "jsonpath={.metadata.resourceVersion}"]);
    apply_as("alice", n, &run("first", "review", "{name: who, value: carol}")).unwrap();
    let wf = wait_phase(n, "first", "Waiting", WAIT);
    let record = &wf["status"]["template"];
    assert_eq!(record["name"], "review");
    assert_eq!(record["resourceVersion"].as_str(), Some(v1.as_str()), "{record}");
    assert!(record["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{record}");
    // The default filled in, the given value kept; both recorded as the run's params.
    assert_eq!(
        record["spec"]["params"],
        serde_json::json!([{"name": "who", "value": "carol"}, {"name": "greeting", "value": "hello"}])
    );
    let gate = approval(n, step(&wf, "gate")["approvalName"].as_str().unwrap());
    assert_eq!(gate["spec"]["message"], "hello carol");

    apply_as("admin", n, &template("v2")).unwrap();
    approve(n, "first");
    let done = wait_phase(n, "first", "Succeeded", WAIT);
    assert_eq!(
        pod_args(n, "first", "report"),
        serde_json::json!(["echo", "v1"]),
        "the run kept the step it started with"
    );
    assert_eq!(done["status"]["template"], wf["status"]["template"], "the record never changes");

    apply_as("alice", n, &run("second", "review", "{name: who, value: dave}, {name: greeting, value: hi}")).unwrap();
    let second = wait_phase(n, "second", "Waiting", WAIT);
    assert_ne!(second["status"]["template"]["resourceVersion"].as_str(), Some(v1.as_str()));
    assert_ne!(second["status"]["template"]["digest"], wf["status"]["template"]["digest"]);
    approve(n, "second");
    wait_phase(n, "second", "Succeeded", WAIT);
    assert_eq!(pod_args(n, "second", "report"), serde_json::json!(["echo", "v2"]), "a new run uses the new step");
}

#[test]
fn a_missing_template_or_parameter_fails_the_run_with_the_reason() {
    let ns = namespace("tmpl-missing");
    let n = ns.name();
    let _op = Operator::start(n);
    apply_as("admin", n, &template("v1")).unwrap();
    // alice may `use` any template here (no resourceNames), so the API server lets the run in.
    apply_as("alice", n, &run("nowhere", "absent", "")).unwrap();
    apply_as("alice", n, &run("nobody", "review", "{name: greeting, value: hi}")).unwrap();
    apply_as("alice", n, &run("typo", "review", "{name: who, value: \"x\"}, {name: whom, value: \"y\"}")).unwrap();
    for (name, reason, says) in [
        ("nowhere", "TemplateNotFound", "WorkflowTemplate absent does not exist"),
        ("nobody", "MissingParameter", "requires who"),
        ("typo", "UnknownParameter", "whom is not a parameter"),
    ] {
        let wf = wait_phase(n, name, "Failed", WAIT);
        assert_eq!(wf["status"]["reason"], reason, "{wf}");
        let failed =
            wf["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Failed").unwrap().clone();
        assert_eq!((failed["status"].as_str(), failed["reason"].as_str()), (Some("True"), Some(reason)), "{failed}");
        assert!(failed["message"].as_str().unwrap().contains(says), "{failed}");
        assert!(pods(n, name).is_empty(), "no Pod starts");
    }
}

#[test]
fn templates_open_no_way_around_the_admission_policies() {
    let ns = namespace("tmpl-attack");
    let n = ns.name();
    kubectl_ok("admin", &["-n", n, "create", "secret", "generic", "db", "--from-literal=password=x"]);
    apply_as("admin", n, &template("v1")).unwrap();

    // bob may write Workflows but not `use` templates.
    let refused = apply_as("bob", n, &run("mine", "review", "{name: who, value: x}")).unwrap_err();
    assert!(
        refused.contains("spec.workflowTemplateRef: you may not use WorkflowTemplate review")
            && refused.contains("kubectl auth can-i use workflowtemplates.hitl.dev/review"),
        "{refused}"
    );
    // A run that brings its own Pod settings beside the reference is refused by the schema.
    let own = run("own", "review", "{name: who, value: x}") + "  serviceAccountName: admin-sa\n";
    let refused = apply_as("alice", n, &own).unwrap_err();
    assert!(refused.contains("spec.workflowTemplateRef") && refused.contains("leave out"), "{refused}");

    // A template is checked as a Workflow is, against whoever writes it.
    let privileged =
        template("v1").replace("args: [echo, \"v1\"]}", "args: [echo], securityContext: {privileged: true}}");
    let refused = apply_as("bob", n, &privileged.replace("name: review", "name: root")).unwrap_err();
    assert!(
        refused.contains("step report: container.securityContext.privileged: true is not allowed here"),
        "{refused}"
    );
    // ... and so is every edit: bob may update templates, not make one privileged.
    let refused = apply_as("bob", n, &privileged).unwrap_err();
    assert!(refused.contains("privileged: true is not allowed here"), "{refused}");
    let secret = template("v1").replace(
        "args: [echo, \"v1\"]}",
        "args: [echo], env: [{name: P, valueFrom: {secretKeyRef: {name: db, key: password}}}]}",
    );
    let refused = apply_as("bob", n, &secret.replace("name: review", "name: leak")).unwrap_err();
    assert!(refused.contains("step report: container.env P reads Secret db, which is not allowed here"), "{refused}");
    // The namespace owner may read the Secret, and so write the template; alice may run it
    // (`use`) without reading the Secret herself: that is what granting `use` means.
    apply_as("admin", n, &secret.replace("name: review", "name: leak")).unwrap();
    apply_as("alice", n, &run("ok", "leak", "{name: who, value: x}")).unwrap();
    assert_eq!(
        kubectl_ok("admin", &["-n", n, "get", "wftmpl", "review", "-o", "jsonpath={.spec.steps[1].container.args}"]),
        r#"["echo","v1"]"#,
        "the refused edit changed nothing"
    );
}

#[test]
fn kubectl_shows_and_explains_templates() {
    let ns = namespace("tmpl-ux");
    let n = ns.name();
    apply_as("admin", n, &template("v1")).unwrap();
    let table = kubectl_ok("admin", &["-n", n, "get", "wftmpl"]);
    assert!(table.contains("PARAMETERS") && table.contains("who"), "{table}");
    let explain = kubectl_ok("admin", &["explain", "workflowtemplate.spec.parameters"]);
    assert!(explain.contains("required") && explain.contains("MissingParameter"), "{explain}");
    let explain = kubectl_ok("admin", &["explain", "workflow.spec.workflowTemplateRef"]);
    assert!(explain.contains("use"), "{explain}");
    let sample = repo_root().join("config/samples/monthly-access-review.yaml");
    let out = kubectl("admin", &["-n", n, "apply", "--dry-run=server", "-f", sample.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Whoever wrote a template wrote what its runs run: carol (an editor) redirects the review gate
/// and may then not approve the run alice sends where self-approval is forbidden; bob, who wrote
/// the template, may not either. A run pinned to the version alice read refuses the changed
/// template instead of running it (issue 26.4).
#[test]
fn a_template_editor_may_not_approve_what_they_changed() {
    let ns = namespace("tmpl-editor");
    let n = ns.name();
    common::add_user("dave");
    let _op = Operator::start(n);
    let gated = |approvers: &str| {
        format!(
            "apiVersion: hitl.dev/v1alpha1\nkind: WorkflowTemplate\nmetadata: {{name: review}}\nspec:\n  steps:\n    - name: gate\n      suspend: {{message: check, selfApproval: Forbid, approvers: {{users: [{approvers}]}}}}\n"
        )
    };
    apply_as("bob", n, &gated("alice, bob, dave")).unwrap();
    let read = kubectl_ok("admin", &["-n", n, "get", "wftmpl", "review", "-o", "jsonpath={.metadata.resourceVersion}"]);
    apply_as("carol", n, &gated("alice, bob, carol, dave")).unwrap();
    let authors = kubectl_ok(
        "admin",
        &["-n", n, "get", "wftmpl", "review", "-o", r"jsonpath={.metadata.annotations.hitl\.dev/authors}"],
    );
    assert_eq!(authors, "bob\ncarol");

    let pinned = format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: pinned}}\nspec:\n  workflowTemplateRef: {{name: review, resourceVersion: \"{read}\"}}\n"
    );
    apply_as("alice", n, &pinned).unwrap();
    let failed = wait_phase(n, "pinned", "Failed", WAIT);
    assert_eq!(failed["status"]["reason"], "TemplateChanged", "{failed}");
    assert!(
        failed["status"]["message"].as_str().unwrap().contains(&format!("was changed since resourceVersion {read}"))
    );

    apply_as("alice", n, &run("plain", "review", "")).unwrap();
    let name = wait_for("the gate's Approval", WAIT, || {
        workflow_opt(n, "plain").and_then(|w| w["status"]["steps"][0]["approvalName"].as_str().map(String::from))
    });
    let gate = wait_pending(n, &name);
    assert_eq!(gate["spec"]["workflowRef"]["authors"], serde_json::json!(["bob", "carol"]), "{gate}");
    for author in ["carol", "bob"] {
        let refused = patch_approval(author, n, &name, r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
        assert!(refused.contains(&format!("you ({author}) wrote what Workflow plain runs")), "{refused}");
    }
    let refused = patch_approval("alice", n, &name, r#"{"spec":{"decision":"Approve"}}"#).unwrap_err();
    assert!(refused.contains("you created Workflow plain"), "{refused}");
    patch_approval("dave", n, &name, r#"{"spec":{"decision":"Approve"}}"#).unwrap();
    wait_phase(n, "plain", "Succeeded", WAIT);
}
