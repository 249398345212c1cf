//! Fan-out (`forEach`): the pure parts. Which list a step runs over, how many of its items may
//! start now, and how the items' outputs come together. `plan` does the rest with these.

use std::collections::BTreeMap;

use serde_json::Value;

use hitl_api::workflow::{DEFAULT_PARALLELISM, MAX_ITEMS, MAX_PARALLELISM};
use hitl_api::{ItemStatus, Step, StepPhase};

/// The items of a list expression's value: a list, or text holding a JSON list (parameters and
/// outputs are text). At most `MAX_ITEMS`.
pub fn items(value: Value) -> Result<Vec<Value>, String> {
    let list = match value {
        Value::Array(list) => list,
        Value::String(text) => match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Array(list)) => list,
            Ok(_) | Err(_) => return Err(format!("gives the text {}, which is not a JSON list", abbreviated(&text))),
        },
        other => return Err(format!("gives {}, which is not a list", abbreviated(&other.to_string()))),
    };
    if list.len() > MAX_ITEMS {
        return Err(format!("gives {} items; a forEach may have at most {MAX_ITEMS}", list.len()));
    }
    Ok(list)
}

fn abbreviated(s: &str) -> String {
    let short: String = s.chars().take(60).collect();
    if short.len() < s.len() { format!("{short:?}...") } else { format!("{short:?}") }
}

/// How many items of a step may be in flight at once.
pub fn parallelism(step: &Step) -> usize {
    let p = step.for_each.as_ref().and_then(|f| f.parallelism).unwrap_or(DEFAULT_PARALLELISM);
    p.clamp(1, MAX_PARALLELISM) as usize
}

/// Items in flight: a Pod running (or a retry waiting), or a gate waiting.
pub fn in_flight(items: &[ItemStatus]) -> usize {
    items.iter().filter(|i| !i.phase.is_terminal()).count()
}

/// How many more items may start now: none once an item failed or the run is failing (the step
/// will fail; the items in flight finish), else up to the parallelism, and never past the list.
pub fn may_start(items: &[ItemStatus], total: usize, parallelism: usize, failing: bool) -> usize {
    if failing || items.iter().any(|i| i.phase == StepPhase::Failed) {
        return 0;
    }
    parallelism.saturating_sub(in_flight(items)).min(total.saturating_sub(items.len()))
}

/// Tallies of a step's items by phase; items not started count as pending.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub omitted: usize,
    pub running: usize,
    pub waiting: usize,
}

impl Counts {
    pub fn of(items: &[ItemStatus], total: usize) -> Self {
        let n = |p: StepPhase| items.iter().filter(|i| i.phase == p).count();
        Counts {
            total,
            succeeded: n(StepPhase::Succeeded),
            failed: n(StepPhase::Failed),
            skipped: n(StepPhase::Skipped),
            omitted: n(StepPhase::Omitted),
            running: n(StepPhase::Running),
            waiting: n(StepPhase::Waiting),
        }
    }

    pub fn finished(&self) -> usize {
        self.succeeded + self.failed + self.skipped + self.omitted
    }

    /// `12/20 items` and what the rest are doing, for the step's message and `kubectl hitl`.
    pub fn summary(&self) -> String {
        let mut s = format!("{}/{} items", self.finished(), self.total);
        for (n, what) in [
            (self.running, "running"),
            (self.waiting, "waiting"),
            (self.failed, "failed"),
            (self.skipped, "skipped"),
            (self.omitted, "omitted"),
        ] {
            if n > 0 {
                s.push_str(&format!(", {n} {what}"));
            }
        }
        s
    }
}

/// The step's outputs once it ended: `items`, a JSON list with each item's outputs (an object of
/// text values, as a step's outputs are) in item order; `null` for an item that produced none
/// (skipped, omitted, failed).
pub fn collect_outputs(items: &[ItemStatus], total: usize) -> BTreeMap<String, String> {
    let list: Vec<Value> = (0..total)
        .map(|i| match items.get(i) {
            Some(item) if item.phase == StepPhase::Succeeded => serde_json::to_value(&item.outputs).expect("strings"),
            _ => Value::Null,
        })
        .collect();
    BTreeMap::from([("items".to_string(), Value::Array(list).to_string())])
}

/// Names of the steps among `names` that an expression reads (`steps.x`, `steps['x-y']`).
pub fn referenced_steps<'a>(expr: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    names
        .into_iter()
        .filter(|n| {
            let dotted = format!("steps.{n}");
            let dotted_hit = expr.match_indices(&dotted).any(|(at, m)| {
                let next = expr[at + m.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            dotted_hit || expr.contains(&format!("steps['{n}']")) || expr.contains(&format!("steps[\"{n}\"]"))
        })
        .collect()
}

/// A message as kept for an item: one line of at most 256 characters.
pub fn short(message: &str) -> String {
    message.chars().take(256).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(phase: StepPhase) -> ItemStatus {
        ItemStatus { phase, ..Default::default() }
    }

    #[test]
    fn a_list_comes_as_a_list_or_as_json_text() {
        assert_eq!(items(json!(["a", 2])).unwrap(), vec![json!("a"), json!(2)]);
        assert_eq!(items(json!(r#" [{"id": "a"}, {"id": "b"}] "#)).unwrap()[1], json!({"id": "b"}));
        assert_eq!(items(json!("[]")).unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn anything_else_is_refused_with_what_it_was() {
        let e = items(json!("a,b")).unwrap_err();
        assert!(e.contains("\"a,b\"") && e.contains("not a JSON list"), "{e}");
        let e = items(json!({"a": 1})).unwrap_err();
        assert!(e.contains("not a list"), "{e}");
        let e = items(json!(r#"{"a": 1}"#)).unwrap_err();
        assert!(e.contains("not a JSON list"), "{e}");
    }

    #[test]
    fn more_than_the_bound_is_refused() {
        assert_eq!(items(Value::Array(vec![json!(1); MAX_ITEMS])).unwrap().len(), MAX_ITEMS);
        let text = serde_json::to_string(&vec![1; MAX_ITEMS + 1]).unwrap();
        let e = items(Value::String(text)).unwrap_err();
        assert!(e.contains("1001 items") && e.contains("at most 1000"), "{e}");
    }

    #[test]
    fn parallelism_defaults_to_ten() {
        let mut step: Step = serde_json::from_value(json!({"name": "s", "forEach": {"list": "[1]"}})).unwrap();
        assert_eq!(parallelism(&step), 10);
        step.for_each.as_mut().unwrap().parallelism = Some(3);
        assert_eq!(parallelism(&step), 3);
    }

    #[test]
    fn items_start_up_to_the_parallelism_and_the_list_end() {
        use StepPhase::*;
        // Nothing started: up to the parallelism.
        assert_eq!(may_start(&[], 200, 10, false), 10);
        // Eight in flight (running or waiting; a retry waiting out its backoff is Running): two more.
        let mut started: Vec<ItemStatus> = [Succeeded, Running, Waiting, Skipped, Running, Running].map(item).into();
        started.extend([Running, Running, Running, Running, Omitted].map(item));
        assert_eq!(in_flight(&started), 8);
        assert_eq!(may_start(&started, 200, 10, false), 2);
        // Near the end of the list (11 started): only what is left.
        assert_eq!(may_start(&started, 12, 10, false), 1);
        assert_eq!(may_start(&started, 11, 10, false), 0);
        // Failing: nothing new starts, in the step or in the run.
        assert_eq!(may_start(&started, 200, 10, true), 0);
        started.push(item(Failed));
        assert_eq!(may_start(&started, 200, 10, false), 0);
    }

    #[test]
    fn outputs_are_collected_in_item_order() {
        let ok = |n: &str| ItemStatus {
            phase: StepPhase::Succeeded,
            outputs: BTreeMap::from([("n".to_string(), n.to_string())]),
            ..Default::default()
        };
        let items = vec![ok("0"), item(StepPhase::Skipped), ok("2")];
        let out = collect_outputs(&items, 4);
        let list: Value = serde_json::from_str(&out["items"]).unwrap();
        assert_eq!(list, json!([{"n": "0"}, null, {"n": "2"}, null]));
    }

    #[test]
    fn counts_and_summary() {
        use StepPhase::*;
        let items: Vec<ItemStatus> = [Succeeded, Succeeded, Running, Waiting, Failed, Skipped].map(item).into();
        let c = Counts::of(&items, 20);
        assert_eq!((c.finished(), c.running, c.waiting), (4, 1, 1));
        assert_eq!(c.summary(), "4/20 items, 1 running, 1 waiting, 1 failed, 1 skipped");
    }

    #[test]
    fn referenced_steps_are_found_in_both_spellings_and_not_by_prefix() {
        let names = ["list", "list-2", "other"];
        assert_eq!(referenced_steps("steps.list.outputs.result", names), vec!["list"]);
        assert_eq!(referenced_steps("steps['list-2'].outputs.items", names), vec!["list-2"]);
        assert_eq!(referenced_steps("steps.listing.outputs.x", ["list"]), Vec::<&str>::new());
        assert_eq!(referenced_steps("params.accounts", names), Vec::<&str>::new());
    }
}
