//! The decision form of a gate, generated from its input specs, and the submitted form turned
//! into the merge patch a person would type. The form checks nothing itself: the API server's
//! admission policy is the one judge of a value, and its refusal is what the page shows.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::html::esc;
use hitl_api::{InputSpec, InputType};

/// What was typed into the form, by field name, so a refused form is shown again as it was.
pub type Typed = BTreeMap<String, String>;

/// The form field holding input `name`.
pub fn field_name(name: &str) -> String {
    format!("input.{name}")
}

/// The merge patch for the submitted form: `Reject` sends no inputs.
pub fn patch(decision: &str, inputs: &[InputSpec], typed: &Typed) -> Value {
    let mut spec = json!({ "decision": decision });
    if decision == "Approve" {
        let values: serde_json::Map<String, Value> = inputs
            .iter()
            .filter_map(|i| {
                let text = typed.get(&field_name(&i.name))?;
                typed_value(i.type_, text).map(|v| (i.name.clone(), v))
            })
            .collect();
        if !values.is_empty() {
            spec["input"] = Value::Object(values);
        }
    }
    if let Some(comment) = typed.get("comment").map(|c| c.trim()).filter(|c| !c.is_empty()) {
        spec["comment"] = comment.into();
    }
    // What the page showed of the evidence logs, on the record with the decision.
    if let Some(seen) = typed.get("evidence_seen").filter(|s| !s.is_empty()) {
        spec["evidenceSeen"] = seen.chars().take(2048).collect::<String>().into();
    }
    json!({ "spec": spec })
}

/// A typed value for the input's type; empty means not supplied (the default applies). Text
/// that does not read as the type is sent as text, for the API server to refuse by name.
fn typed_value(type_: InputType, text: &str) -> Option<Value> {
    let text = if type_ == InputType::String { text } else { text.trim() };
    if text.is_empty() {
        return None;
    }
    let parsed = match type_ {
        InputType::String => None,
        InputType::Integer => text.parse::<i64>().ok().map(Value::from),
        InputType::Number => text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::from),
        InputType::Boolean => text.parse::<bool>().ok().map(Value::from),
    };
    Some(parsed.unwrap_or_else(|| Value::String(text.to_string())))
}

/// The form's fields: one per input, then the comment. `typed` refills them after a refusal.
pub fn fields(inputs: &[InputSpec], typed: &Typed, refused: Option<&str>) -> String {
    let mut out = String::new();
    for (n, input) in inputs.iter().enumerate() {
        let field = field(n, input, typed.get(&field_name(&input.name)).map(String::as_str));
        out.push_str(&if refused == Some(input.name.as_str()) { marked(n, &field) } else { field });
    }
    let comment = typed.get("comment").map(|c| esc(c)).unwrap_or_default();
    out.push_str(&format!(
        "<div class=\"field\"><label for=\"comment\">Comment</label>\
         <p class=\"hint\" id=\"comment-hint\">Why you decide so; recorded on the gate.</p>\
         <textarea id=\"comment\" name=\"comment\" rows=\"3\" aria-describedby=\"comment-hint\">{comment}</textarea></div>"
    ));
    out
}

/// A field the API server's refusal names: marked invalid, pointing at the refusal.
fn marked(n: usize, field: &str) -> String {
    let id = format!("in-{n}");
    field
        .replacen("<div class=\"field\">", "<div class=\"field invalid\">", 1)
        .replace(&format!("id=\"{id}\" "), &format!("id=\"{id}\" aria-invalid=\"true\" aria-errormessage=\"refusal\" "))
}

fn field(n: usize, input: &InputSpec, typed: Option<&str>) -> String {
    let id = format!("in-{n}");
    let name = esc(&field_name(&input.name));
    let required = if input.required { " <span class=\"hint\">(required)</span>" } else { "" };
    let label = format!("<label for=\"{id}\">{}{required}</label>", esc(&input.name));
    let hint = format!("<p class=\"hint\" id=\"{id}-hint\">{}</p>", esc(&hint(input)));
    let value = typed.map(str::to_string).unwrap_or_default();
    let control = match input.type_ {
        InputType::String if !input.enum_.is_empty() => {
            choice(&id, &name, input.enum_.iter().map(|v| (v.as_str(), v.as_str())), &value)
        }
        InputType::Boolean => choice(&id, &name, [("true", "yes"), ("false", "no")].into_iter(), &value),
        InputType::Integer | InputType::Number => {
            let step = if input.type_ == InputType::Integer { "1" } else { "any" };
            let bounds = [("min", input.minimum), ("max", input.maximum)]
                .iter()
                .filter_map(|(attr, b)| b.map(|b| format!(" {attr}=\"{b}\"")))
                .collect::<String>();
            format!(
                "<input id=\"{id}\" name=\"{name}\" type=\"number\" step=\"{step}\"{bounds} value=\"{}\" aria-describedby=\"{id}-hint\">",
                esc(&value)
            )
        }
        InputType::String => format!(
            "<input id=\"{id}\" name=\"{name}\" type=\"text\" value=\"{}\" aria-describedby=\"{id}-hint\">",
            esc(&value)
        ),
    };
    format!("<div class=\"field\">{label}{hint}{control}</div>")
}

fn choice<'a>(id: &str, name: &str, options: impl Iterator<Item = (&'a str, &'a str)>, chosen: &str) -> String {
    let mut out = format!(
        "<select id=\"{id}\" name=\"{name}\" aria-describedby=\"{id}-hint\"><option value=\"\">(not chosen)</option>"
    );
    for (value, shown) in options {
        let selected = if value == chosen { " selected" } else { "" };
        out.push_str(&format!("<option value=\"{}\"{selected}>{}</option>", esc(value), esc(shown)));
    }
    out.push_str("</select>");
    out
}

/// What the person is told about an input: its description, type and limits, and its default.
pub fn hint(input: &InputSpec) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &input.description {
        parts.push(d.clone());
    }
    let mut kind = input.type_.as_str().to_string();
    match (input.minimum, input.maximum) {
        (Some(lo), Some(hi)) => kind.push_str(&format!(" from {lo} to {hi}")),
        (Some(lo), None) => kind.push_str(&format!(" of at least {lo}")),
        (None, Some(hi)) => kind.push_str(&format!(" of at most {hi}")),
        (None, None) => {}
    }
    if let Some(max) = input.max_length {
        kind.push_str(&format!(", at most {max} characters"));
    }
    if let Some(p) = &input.pattern {
        kind.push_str(&format!(", matching {p}"));
    }
    parts.push(kind);
    if let Some(d) = &input.default {
        parts.push(format!("default: {d}"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, type_: InputType) -> InputSpec {
        InputSpec { name: name.into(), type_, ..Default::default() }
    }

    fn typed(pairs: &[(&str, &str)]) -> Typed {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_are_sent_with_the_inputs_types() {
        let inputs = [
            input("priority", InputType::Integer),
            input("ratio", InputType::Number),
            input("urgent", InputType::Boolean),
            input("verdict", InputType::String),
            input("unset", InputType::Integer),
        ];
        let form = typed(&[
            ("input.priority", " 3 "),
            ("input.ratio", "0.5"),
            ("input.urgent", "false"),
            ("input.verdict", "007"),
            ("input.unset", ""),
            ("comment", " looks fine "),
            ("input.unknown", "x"),
            ("evidence_seen", "tf-plan-1-a: 302 lines, 20412 bytes"),
        ]);
        assert_eq!(
            patch("Approve", &inputs, &form),
            json!({"spec": {"decision": "Approve", "comment": "looks fine",
                "evidenceSeen": "tf-plan-1-a: 302 lines, 20412 bytes",
                "input": {"priority": 3, "ratio": 0.5, "urgent": false, "verdict": "007"}}})
        );
    }

    #[test]
    fn text_that_is_not_the_type_goes_to_the_server_as_text() {
        let inputs = [input("priority", InputType::Integer), input("ratio", InputType::Number)];
        let form = typed(&[("input.priority", "2.5"), ("input.ratio", "NaN")]);
        assert_eq!(patch("Approve", &inputs, &form)["spec"]["input"], json!({"priority": "2.5", "ratio": "NaN"}));
    }

    #[test]
    fn a_rejection_carries_no_inputs() {
        let inputs = [input("priority", InputType::Integer)];
        let form = typed(&[("input.priority", "3"), ("comment", "no")]);
        assert_eq!(patch("Reject", &inputs, &form), json!({"spec": {"decision": "Reject", "comment": "no"}}));
    }

    #[test]
    fn fields_follow_the_input_specs_and_keep_what_was_typed() {
        let mut channel = input("channel", InputType::String);
        channel.enum_ = vec!["stable".into(), "beta".into()];
        let mut priority = input("priority", InputType::Integer);
        priority.minimum = Some(1.0);
        priority.maximum = Some(5.0);
        priority.required = true;
        priority.default = Some(json!(2));
        let typed = typed(&[("input.channel", "beta"), ("input.priority", "9\"><b>")]);
        let html = fields(&[channel, priority], &typed, Some("priority"));
        assert!(html.contains("<select id=\"in-0\" name=\"input.channel\""), "{html}");
        assert!(html.contains("<option value=\"beta\" selected>beta</option>"), "{html}");
        assert!(
            html.contains("type=\"number\" step=\"1\" min=\"1\" max=\"5\" value=\"9&quot;&gt;&lt;b&gt;\""),
            "{html}"
        );
        assert!(html.contains("priority <span class=\"hint\">(required)</span>"), "{html}");
        assert!(html.contains("integer from 1 to 5 · default: 2"), "{html}");
        assert!(html.contains("<label for=\"comment\">"), "{html}");
        assert!(
            html.contains("<input id=\"in-1\" aria-invalid=\"true\" aria-errormessage=\"refusal\" name="),
            "{html}"
        );
        assert!(!html.contains("<select id=\"in-0\" aria-invalid"), "only the refused input is marked: {html}");
    }
}
