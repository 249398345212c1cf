//! What the CRD schema cannot check: the graph, durations, inputs, mounts, expressions and
//! forEach lists. A spec that passes becomes a `Valid`, which the rest of the plan takes and never
//! checks again.

use super::super::{duration, expr, foreach, graph, inputs};
use hitl_api::{Step, StepContainer, Workflow, volumes::WORKSPACE_VOLUME};

/// A Workflow whose spec passed every check: its graph, and its steps then exit steps in the
/// graph's index order.
pub struct Valid<'a> {
    pub wf: &'a Workflow,
    pub graph: graph::Graph,
    pub steps: Vec<&'a Step>,
}

impl Valid<'_> {
    /// How many steps come before the exit steps.
    pub fn main(&self) -> usize {
        self.wf.spec.steps.len()
    }
}

/// What identifies the spec a pass checks: the Workflow's UID and a digest of its spec as the
/// pass sees it (a template run's spec comes from its template), so any change is checked anew.
pub fn spec_digest(wf: &Workflow) -> String {
    use sha2::Digest;
    let spec = serde_json::to_vec(&wf.spec).unwrap_or_default();
    let hex: String = sha2::Sha256::digest(&spec).iter().map(|b| format!("{b:02x}")).collect();
    format!("{}/{hex}", wf.metadata.uid.as_deref().unwrap_or_default())
}

/// The run's shape (its graph and steps in order), without the checks: for a spec that already
/// passed them (the controller remembers which, by its digest), so a pass does not compile every
/// expression again.
pub fn structure(wf: &Workflow) -> Result<Valid<'_>, String> {
    if wf.spec.steps.is_empty() {
        return Err("the Workflow has no steps".into());
    }
    let graph = graph::build_with_exit(&wf.spec.steps, &wf.spec.on_exit)?;
    Ok(Valid { wf, graph, steps: wf.spec.all_steps().collect() })
}

/// Checks what the CRD schema cannot: the graph (cycles), durations, expressions and defaults.
pub fn validate(wf: &Workflow) -> Result<Valid<'_>, String> {
    let Valid { graph: g, steps, .. } = structure(wf)?;
    for s in steps.iter().copied() {
        let at = |field: &str, e: String| format!("step {}: {field}: {e}", s.name);
        if s.kind().is_none() {
            return Err(format!("step {}: set exactly one of container, suspend or sleep", s.name));
        }
        if let Some(d) = &s.sleep {
            duration::parse(d).map_err(|e| at("sleep", e))?;
        }
        if let Some(g) = &s.suspend {
            inputs::check_specs(&g.gate.inputs).map_err(|e| at("suspend.inputs", e))?;
        }
        if let Some(c) = &s.container {
            check_mounts(wf, c).map_err(|e| at("container.volumeMounts", e))?;
        }
    }
    expr::check_all(&steps.iter().copied().flat_map(expressions).collect::<Vec<_>>())?;
    check_fan_outs(&steps, &g)?;
    crate::evidence::check(&wf.spec)?;
    Ok(Valid { wf, graph: g, steps })
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
