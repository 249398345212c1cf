//! Where a run's time goes on the decision path: the mean of each part, over one run, from the
//! API server's and the operator's own duration histograms (their `_sum` and `_count` before and
//! after the run). Means, not percentiles: enough to see which part moved when the path's
//! latency does.

use std::collections::BTreeMap;

use super::parse_labels;

/// A histogram's sum (seconds) and count.
#[derive(Clone, Copy, Default)]
pub struct Totals {
    sum: f64,
    count: f64,
}

/// Each part's totals, by the part's name.
pub type Parts = BTreeMap<&'static str, Totals>;

/// A part's mean over one run, and how many times it happened.
pub struct Part {
    pub name: &'static str,
    pub mean_ms: f64,
    pub count: f64,
}

/// The API server's requests on the path: (part, verb, resource, subresource).
const REQUESTS: [(&str, &str, &str, &str); 4] = [
    ("1 approving PATCH of the Approval, admission included", "PATCH", "approvals", ""),
    ("3 Approval status PUT (the Approval pass)", "PUT", "approvals", "status"),
    ("5 Pod POST (the Workflow pass)", "POST", "pods", ""),
    ("6 Workflow status PUT (the Workflow pass)", "PUT", "workflows", "status"),
];

/// Admission of UPDATE requests (the approving PATCH is one; status PUTs are others), all
/// resources: the cluster-wide step histogram.
const ADMISSION: [(&str, &str); 2] = [
    ("1a  of which validating admission, per UPDATE request", "validate"),
    ("1b  of which mutating admission, per UPDATE request", "admit"),
];

/// The operator's passes, by its `controller` label.
const PASSES: [(&str, &str); 2] =
    [("2 Approval pass (whole reconcile)", "approval"), ("4 Workflow pass (whole reconcile)", "workflow")];

/// The API server's parts, from its /metrics text.
pub fn api_server(text: &str) -> Parts {
    let mut parts = Parts::new();
    for line in text.lines() {
        let Some((series, labels, value)) = sample(line) else { continue };
        let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
        let name = match series {
            "apiserver_request_duration_seconds" => REQUESTS
                .iter()
                .find(|(_, v, r, s)| get("verb") == *v && get("resource") == *r && get("subresource") == *s)
                .map(|p| p.0),
            "apiserver_admission_step_admission_duration_seconds" if get("operation") == "UPDATE" => {
                ADMISSION.iter().find(|(_, kind)| get("type") == *kind).map(|p| p.0)
            }
            _ => None,
        };
        if let Some(name) = name {
            add(&mut parts, name, line, value);
        }
    }
    parts
}

/// The operator's passes, from its /metrics text.
pub fn operator(text: &str) -> Parts {
    let mut parts = Parts::new();
    for line in text.lines() {
        let Some(("hitl_reconcile_duration_seconds", labels, value)) = sample(line) else { continue };
        let controller = labels.get("controller").map(String::as_str).unwrap_or_default();
        if let Some((name, _)) = PASSES.iter().find(|(_, c)| *c == controller) {
            add(&mut parts, name, line, value);
        }
    }
    parts
}

/// Each part's mean over the run (between `before` and `after`), in the parts' order.
pub fn over_run(before: &Parts, after: &Parts) -> Vec<Part> {
    after
        .iter()
        .filter_map(|(&name, a)| {
            let b = before.get(name).copied().unwrap_or_default();
            let count = a.count - b.count;
            (count > 0.0).then(|| Part { name, mean_ms: (a.sum - b.sum) / count * 1000.0, count })
        })
        .collect()
}

/// `series_sum{labels} value` or `series_count{labels} value`: the series, labels and value.
fn sample(line: &str) -> Option<(&str, std::collections::HashMap<String, String>, f64)> {
    let (head, value) = line.rsplit_once("} ")?;
    let (name, labels) = head.split_once('{')?;
    let series = name.strip_suffix("_sum").or_else(|| name.strip_suffix("_count"))?;
    Some((series, parse_labels(labels), value.trim().parse().ok()?))
}

fn add(parts: &mut Parts, name: &'static str, line: &str, value: f64) {
    let totals = parts.entry(name).or_default();
    if line.split_once('{').is_some_and(|(n, _)| n.ends_with("_sum")) {
        totals.sum += value;
    } else {
        totals.count += value;
    }
}
