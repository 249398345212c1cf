//! `approve` and `reject`: the same merge patch a person would type. The API server checks the
//! input and who decides, and records the decider.

use std::collections::BTreeMap;

use anyhow::bail;
use hitl_api::Approval;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::errors::is_not_found;

/// `k=v` to a key and a JSON value: JSON when it parses as a scalar, a string otherwise.
pub fn parse_input(kv: &str) -> anyhow::Result<(String, Value)> {
    let Some((k, v)) = kv.split_once('=') else {
        bail!("--input {kv}: expected KEY=VALUE");
    };
    let value = match serde_json::from_str::<Value>(v) {
        Ok(j) if !j.is_object() && !j.is_array() => j,
        _ => Value::String(v.to_string()),
    };
    Ok((k.to_string(), value))
}

/// A value as `--input` takes it back: strings bare unless they would read as another type.
pub fn input_arg(v: &Value) -> String {
    match v {
        Value::String(s) if parse_input(&format!("k={s}")).is_ok_and(|(_, back)| back == *v) => s.clone(),
        other => other.to_string(),
    }
}

/// The merge patch for a decision.
pub fn patch(decision: &str, inputs: &[String], comment: Option<&str>) -> anyhow::Result<Value> {
    let mut spec = json!({ "decision": decision });
    if !inputs.is_empty() {
        let input: BTreeMap<_, _> = inputs.iter().map(|kv| parse_input(kv)).collect::<anyhow::Result<_>>()?;
        spec["input"] = serde_json::to_value(input)?;
    }
    if let Some(c) = comment {
        spec["comment"] = c.into();
    }
    Ok(json!({ "spec": spec }))
}

/// Sends the decision; the Approval as the API server stored it.
pub async fn send(client: &Client, ns: &str, name: &str, patch: &Value) -> anyhow::Result<Approval> {
    let api: Api<Approval> = Api::namespaced(client.clone(), ns);
    match api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Err(e) if is_not_found(&e) => bail!("approval \"{name}\" not found in namespace \"{ns}\""),
        other => Ok(other?),
    }
}

/// The sentence for a person: who decided, or on a quorum gate that the vote counts.
pub fn sentence(a: &Approval, name: &str, decision: &str) -> String {
    match a.spec.gate.required_approvals {
        // A quorum gate: the API server recorded the decision as this person's vote.
        Some(needed) if needed > 1 => {
            format!("approval {name}: your vote is recorded ({} cast, {needed} approvals needed)", a.spec.votes.len())
        }
        _ => {
            let verb = if decision == "Reject" { "rejected" } else { "approved" };
            format!("approval {name} {verb} by {}", a.spec.decided_by.clone().unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_keep_their_json_types() {
        assert_eq!(parse_input("priority=2").unwrap(), ("priority".into(), json!(2)));
        assert_eq!(parse_input("urgent=true").unwrap().1, json!(true));
        assert_eq!(parse_input("verdict=sign").unwrap().1, json!("sign"));
        assert_eq!(parse_input("code=\"007\"").unwrap().1, json!("007"));
        assert_eq!(parse_input("notes=a=b").unwrap().1, json!("a=b"));
        assert!(parse_input("novalue").is_err());
    }

    #[test]
    fn shown_values_read_back_as_the_same_values() {
        for v in [
            json!(2),
            json!(2.5),
            json!(true),
            json!("sign"),
            json!("007"),
            json!("42"),
            json!("true"),
            json!("\"q\""),
            json!(""),
        ] {
            let shown = input_arg(&v);
            assert_eq!(parse_input(&format!("k={shown}")).unwrap().1, v, "{v} shown as {shown}");
        }
        assert_eq!(input_arg(&json!("sign")), "sign");
        assert_eq!(input_arg(&json!("42")), "\"42\"");
    }

    #[test]
    fn a_patch_carries_decision_typed_input_and_comment() {
        let p = patch("Approve", &["priority=2".into(), "channel=beta".into()], Some("go")).unwrap();
        assert_eq!(
            p,
            json!({"spec": {"decision": "Approve", "input": {"priority": 2, "channel": "beta"}, "comment": "go"}})
        );
        assert_eq!(patch("Reject", &[], None).unwrap(), json!({"spec": {"decision": "Reject"}}));
    }
}
