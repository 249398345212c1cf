//! The step graph: who waits for whom, checked for unknown names and cycles.

use std::collections::HashMap;

use hitl_api::Step;

/// Steps as indices, with each step's dependencies resolved and a topological order.
#[derive(Debug, Clone)]
pub struct Graph {
    /// `deps[i]`: the steps step `i` waits for.
    pub deps: Vec<Vec<usize>>,
    /// Every step after all of its dependencies.
    pub order: Vec<usize>,
}

/// The graph of the steps followed by the exit steps: exit steps depend only on exit steps
/// (their start after the steps is the plan's business), by the same rules.
pub fn build_with_exit(steps: &[Step], on_exit: &[Step]) -> Result<Graph, String> {
    let main = build(steps)?;
    let exit = build(on_exit).map_err(|e| format!("onExit: {e}"))?;
    if let Some(dup) = on_exit.iter().find(|e| steps.iter().any(|s| s.name == e.name)) {
        return Err(format!("step {}: the name is used in steps and in onExit", dup.name));
    }
    let offset = steps.len();
    let mut deps = main.deps;
    deps.extend(exit.deps.into_iter().map(|d| d.into_iter().map(|j| j + offset).collect()));
    let mut order = main.order;
    order.extend(exit.order.into_iter().map(|j| j + offset));
    Ok(Graph { deps, order })
}

/// Resolves dependencies: a step without `dependsOn` waits for the step listed before it;
/// `dependsOn: []` waits for nothing.
pub fn build(steps: &[Step]) -> Result<Graph, String> {
    let mut index = HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        if index.insert(s.name.as_str(), i).is_some() {
            return Err(format!("step {}: the name is used twice", s.name));
        }
    }
    let mut deps = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let d = match &s.depends_on {
            None if i == 0 => vec![],
            None => vec![i - 1],
            Some(names) => names
                .iter()
                .map(|n| {
                    index
                        .get(n.as_str())
                        .copied()
                        .ok_or_else(|| format!("step {}: dependsOn names unknown step {n}", s.name))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        deps.push(d);
    }
    let order = topological_order(&deps).map_err(|cycle| {
        let names: Vec<_> = cycle.iter().map(|&i| steps[i].name.as_str()).collect();
        format!("steps {} depend on each other in a cycle", names.join(" -> "))
    })?;
    Ok(Graph { deps, order })
}

/// Kahn's algorithm, taking ready steps in spec order so the order is stable. On a cycle returns
/// the steps of one cycle.
fn topological_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut done = vec![false; n];
    while let Some(next) = (0..n).find(|&i| !done[i] && remaining[i] == 0) {
        done[next] = true;
        order.push(next);
        for &k in &dependents[next] {
            remaining[k] -= 1;
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk dependencies among the unfinished steps until one repeats: that is a cycle.
    let mut path = vec![(0..n).find(|&i| !done[i]).expect("an unfinished step")];
    loop {
        let last = *path.last().expect("non-empty");
        let next = *deps[last].iter().find(|&&j| !done[j]).expect("an unfinished step waits for another");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            return Err(cycle);
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, deps: Option<&[&str]>) -> Step {
        Step {
            name: name.into(),
            depends_on: deps.map(|d| d.iter().map(|s| s.to_string()).collect()),
            sleep: Some("1s".into()),
            ..Default::default()
        }
    }

    #[test]
    fn plain_list_is_a_sequence() {
        let g = build(&[step("a", None), step("b", None), step("c", None)]).unwrap();
        assert_eq!(g.deps, vec![vec![], vec![0], vec![1]]);
        assert_eq!(g.order, vec![0, 1, 2]);
    }

    #[test]
    fn depends_on_makes_a_dag() {
        let g = build(&[step("join", Some(&["left", "right"])), step("left", Some(&[])), step("right", Some(&[]))])
            .unwrap();
        assert_eq!(g.deps[0], vec![1, 2]);
        assert_eq!(g.order, vec![1, 2, 0]);
    }

    #[test]
    fn unknown_and_cycles_are_named() {
        let err = build(&[step("a", Some(&["nope"]))]).unwrap_err();
        assert_eq!(err, "step a: dependsOn names unknown step nope");
        let err = build(&[step("a", Some(&["c"])), step("b", None), step("c", None)]).unwrap_err();
        assert_eq!(err, "steps a -> c -> b -> a depend on each other in a cycle");
    }
}
