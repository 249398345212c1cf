//! Typed gate input: the controller's own check of what a person supplied, made again before the
//! input is used even though the API server's admission policy already checked it.

use std::collections::BTreeMap;

use serde_json::Value;

use hitl_api::{InputSpec, InputType};

/// Checks one value against its declaration. Messages name the input.
pub fn check_value(spec: &InputSpec, value: &Value) -> Result<(), String> {
    let name = &spec.name;
    let type_ok = match spec.type_ {
        InputType::String => value.is_string(),
        InputType::Integer => value.is_i64() || value.is_u64(),
        InputType::Number => value.is_number(),
        InputType::Boolean => value.is_boolean(),
    };
    if !type_ok {
        return Err(format!("input {name}: must be of type {}, got {value}", spec.type_.as_str()));
    }
    if let Some(s) = value.as_str() {
        if !spec.enum_.is_empty() && !spec.enum_.iter().any(|e| e == s) {
            return Err(format!("input {name}: must be one of {}, got {s:?}", spec.enum_.join(", ")));
        }
        if let Some(max) = spec.max_length
            && s.chars().count() as i64 > max
        {
            return Err(format!("input {name}: must be at most {max} characters"));
        }
        if let Some(pattern) = &spec.pattern {
            let re = regex::Regex::new(pattern).map_err(|e| format!("input {name}: bad pattern: {e}"))?;
            if !re.is_match(s) {
                return Err(format!("input {name}: must match {pattern}"));
            }
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = spec.minimum
            && n < min
        {
            return Err(format!("input {name}: must be at least {min}, got {n}"));
        }
        if let Some(max) = spec.maximum
            && n > max
        {
            return Err(format!("input {name}: must be at most {max}, got {n}"));
        }
    }
    Ok(())
}

/// Checks what a person supplied with any decision, Approve or Reject, as the admission policy
/// `hitl-approval-input` does: nothing the gate does not ask for (A-INPUT-UNKNOWN), no null
/// (A-INPUT-NULL), and every value valid for its input (A-INPUT-VALUE). Whether the required
/// inputs are there matters only to an approval (`resolve`).
pub fn check_given(specs: &[InputSpec], given: &BTreeMap<String, Value>) -> Result<(), String> {
    if let Some(unknown) = given.keys().find(|k| !specs.iter().any(|s| &s.name == *k)) {
        return Err(format!("input {unknown}: not asked for by this gate"));
    }
    if let Some((name, _)) = given.iter().find(|(_, v)| v.is_null()) {
        return Err(format!("input {name}: needs a value; null is not one"));
    }
    specs.iter().filter_map(|s| Some((s, given.get(&s.name)?))).try_for_each(|(s, v)| check_value(s, v))
}

/// Checks the input of an approval and returns it with defaults filled in: `check_given`, and
/// every required input present or defaulted (A-INPUT-REQUIRED).
pub fn resolve(specs: &[InputSpec], given: &BTreeMap<String, Value>) -> Result<BTreeMap<String, Value>, String> {
    check_given(specs, given)?;
    let mut out = BTreeMap::new();
    for spec in specs {
        match given.get(&spec.name).or(spec.default.as_ref()) {
            Some(v) => {
                check_value(spec, v)?;
                out.insert(spec.name.clone(), v.clone());
            }
            None if spec.required => return Err(format!("input {}: required", spec.name)),
            None => {}
        }
    }
    Ok(out)
}

/// The values used when nobody supplied any (expiry with `onTimeout: Approve`).
pub fn defaults(specs: &[InputSpec]) -> BTreeMap<String, Value> {
    specs.iter().filter_map(|s| s.default.clone().map(|d| (s.name.clone(), d))).collect()
}

/// Checks the declarations themselves: a default must satisfy its own input's rules.
pub fn check_specs(specs: &[InputSpec]) -> Result<(), String> {
    for spec in specs {
        if let Some(d) = &spec.default {
            check_value(spec, d).map_err(|e| format!("{e} (the default)"))?;
        }
        if let Some(p) = &spec.pattern {
            regex::Regex::new(p).map_err(|e| format!("input {}: pattern does not compile: {e}", spec.name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs() -> Vec<InputSpec> {
        serde_json::from_value(json!([
            {"name": "verdict", "type": "string", "enum": ["sign", "redact", "reject"], "required": true},
            {"name": "notes", "type": "string", "maxLength": 5},
            {"name": "priority", "type": "integer", "default": 3, "minimum": 1, "maximum": 5},
            {"name": "ticket", "pattern": "^T-[0-9]+$"},
            {"name": "urgent", "type": "boolean"},
            {"name": "score", "type": "number"}
        ]))
        .unwrap()
    }

    fn given(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fills_defaults() {
        let out = resolve(&specs(), &given(json!({"verdict": "sign"}))).unwrap();
        assert_eq!(out, given(json!({"verdict": "sign", "priority": 3})));
    }

    #[test]
    fn each_bad_input_is_named() {
        let cases = [
            (json!({}), "input verdict: required"),
            (json!({"verdict": "sign", "extra": 1}), "input extra: not asked for"),
            (json!({"verdict": "maybe"}), "input verdict: must be one of"),
            (json!({"verdict": "sign", "priority": "2"}), "input priority: must be of type integer"),
            (json!({"verdict": "sign", "priority": 2.5}), "input priority: must be of type integer"),
            (json!({"verdict": "sign", "priority": 9}), "input priority: must be at most 5"),
            (json!({"verdict": "sign", "priority": 0}), "input priority: must be at least 1"),
            (json!({"verdict": "sign", "notes": "too long"}), "input notes: must be at most 5 characters"),
            (json!({"verdict": "sign", "ticket": "X-1"}), "input ticket: must match"),
            (json!({"verdict": "sign", "urgent": "yes"}), "input urgent: must be of type boolean"),
            (json!({"verdict": "sign", "score": "1"}), "input score: must be of type number"),
        ];
        for (input, want) in cases {
            let err = resolve(&specs(), &given(input.clone())).unwrap_err();
            assert!(err.starts_with(want), "{input}: got {err:?}, want {want:?}");
        }
    }

    /// The cases the API server's admission must answer alike (tests/admission.rs runs them
    /// there): input is checked on a rejection too, only "required" is for approvals alone.
    #[test]
    fn admission_cases_agree_with_the_policy() {
        let table: Value =
            serde_json::from_str(include_str!("../../../tests/cases/gate_input.json")).expect("the case table");
        let specs: Vec<InputSpec> = serde_json::from_value(table["inputs"].clone()).unwrap();
        for case in table["cases"].as_array().unwrap() {
            let given: BTreeMap<String, Value> = serde_json::from_value(case["input"].clone()).unwrap_or_default();
            let checked = match case["decision"].as_str() {
                Some("Approve") => resolve(&specs, &given).map(drop),
                _ => check_given(&specs, &given),
            };
            assert_eq!(checked.is_ok(), case["accepted"] == true, "{}: {checked:?}", case["name"]);
        }
    }

    #[test]
    fn bad_defaults_are_refused() {
        let bad: Vec<InputSpec> = serde_json::from_value(json!([
            {"name": "p", "type": "integer", "default": "3"}
        ]))
        .unwrap();
        assert!(check_specs(&bad).unwrap_err().contains("(the default)"));
        assert!(check_specs(&specs()).is_ok());
    }
}
