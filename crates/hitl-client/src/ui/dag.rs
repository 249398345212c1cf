//! The run drawn as its step graph: an SVG the server renders, one column per depth (a step sits
//! right of everything it waits for), boxes coloured by phase, each box named for screen readers.

use std::collections::HashMap;

use super::html::esc;
use hitl_api::{Step, StepStatus};
use hitl_engine::graph;

const BOX_W: usize = 150;
const BOX_H: usize = 44;
const GAP_X: usize = 40;
const GAP_Y: usize = 16;

fn phase_colour(phase: &str) -> &'static str {
    // Classes of the stylesheet, not style attributes: the CSP allows no inline style.
    match phase {
        "Succeeded" => "c-ok",
        "Failed" => "c-bad",
        "Running" | "Waiting" | "Retrying" => "c-wait",
        _ => "c-idle",
    }
}

/// The SVG for `steps` then `on_exit`, phases from `statuses` (by step name). An invalid graph
/// (the API server refuses those) draws nothing.
pub fn svg(steps: &[Step], on_exit: &[Step], statuses: &[StepStatus]) -> String {
    let Ok(graph) = graph::build_with_exit(steps, on_exit) else {
        return String::new();
    };
    let all: Vec<&Step> = steps.iter().chain(on_exit).collect();
    // Exit steps start after every main step: draw them one column further right.
    let main_depth = |depth: &Vec<usize>| depth[..steps.len()].iter().max().map_or(0, |d| d + 1);
    let mut depth = vec![0usize; all.len()];
    for &i in &graph.order {
        depth[i] = graph.deps[i].iter().map(|&d| depth[d] + 1).max().unwrap_or(0);
        if i >= steps.len() && graph.deps[i].is_empty() {
            depth[i] = main_depth(&depth);
        }
    }
    let mut row_in_column: HashMap<usize, usize> = HashMap::new();
    let mut at = vec![(0usize, 0usize); all.len()];
    for (i, d) in depth.iter().enumerate() {
        let row = row_in_column.entry(*d).or_default();
        at[i] = (d * (BOX_W + GAP_X), *row * (BOX_H + GAP_Y));
        *row += 1;
    }
    let width = depth.iter().max().map_or(0, |d| (d + 1) * (BOX_W + GAP_X));
    let height = row_in_column.values().max().map_or(0, |r| r * (BOX_H + GAP_Y));
    let phase: HashMap<&str, &str> = statuses.iter().map(|s| (s.name.as_str(), s.phase.as_str())).collect();
    let mut out = format!(
        "<svg class=\"dag\" role=\"img\" aria-labelledby=\"dag-title\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\"><title id=\"dag-title\">Step graph</title>"
    );
    for (i, deps) in graph.deps.iter().enumerate() {
        for &d in deps {
            let (x1, y1) = (at[d].0 + BOX_W, at[d].1 + BOX_H / 2);
            let (x2, y2) = (at[i].0, at[i].1 + BOX_H / 2);
            out.push_str(&format!(
                "<path class=\"edge\" d=\"M{x1} {y1} C{} {y1} {} {y2} {x2} {y2}\"/>",
                x1 + GAP_X / 2,
                x2 - GAP_X / 2
            ));
        }
    }
    for (i, step) in all.iter().enumerate() {
        let p = phase.get(step.name.as_str()).copied().unwrap_or("Pending");
        let (x, y) = at[i];
        out.push_str(&format!(
            "<g><title>{name}: {p}</title><rect x=\"{x1}\" y=\"{y1}\" width=\"{w}\" height=\"{h}\" rx=\"6\" class=\"{c}\"/>\
             <text x=\"{tx}\" y=\"{ty1}\">{name}</text><text x=\"{tx}\" y=\"{ty2}\" class=\"{c}\">{p}</text></g>",
            name = esc(&step.name),
            x1 = x + 1,
            y1 = y + 1,
            w = BOX_W - 2,
            h = BOX_H - 2,
            c = phase_colour(p),
            tx = x + 10,
            ty1 = y + 19,
            ty2 = y + 36,
        ));
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::StepPhase;

    fn step(name: &str, deps: Option<&[&str]>) -> Step {
        Step {
            name: name.into(),
            depends_on: deps.map(|d| d.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn x_of(svg: &str, name: &str) -> usize {
        let title = format!("<title>{name}: ");
        let at = svg.find(&title).unwrap_or_else(|| panic!("{name} missing: {svg}"));
        let rest = &svg[at..];
        let x = rest.split("x=\"").nth(1).unwrap().split('"').next().unwrap();
        x.parse().unwrap()
    }

    #[test]
    fn a_step_is_drawn_right_of_what_it_waits_for() {
        let steps = [step("a", None), step("b", Some(&[])), step("c", Some(&["a", "b"])), step("d", None)];
        let exit = [step("notify", None)];
        let statuses = [StepStatus { name: "a".into(), phase: StepPhase::Succeeded, ..Default::default() }];
        let svg = svg(&steps, &exit, &statuses);
        assert_eq!(x_of(&svg, "a"), x_of(&svg, "b"));
        assert!(x_of(&svg, "c") > x_of(&svg, "a"));
        assert!(x_of(&svg, "d") > x_of(&svg, "c"));
        assert!(x_of(&svg, "notify") > x_of(&svg, "d"));
        assert!(svg.contains("<title>a: Succeeded</title>"));
        assert!(svg.contains("<title>c: Pending</title>"));
        assert_eq!(svg.matches("class=\"edge\"").count(), 3, "a->c, b->c, c->d: {svg}");
    }

    #[test]
    fn a_cycle_draws_nothing() {
        assert_eq!(svg(&[step("a", Some(&["b"])), step("b", Some(&["a"]))], &[], &[]), "");
    }
}
