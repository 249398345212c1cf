//! Step outputs from a container's termination message.

use std::collections::BTreeMap;

/// Most bytes of outputs one step may have: the kubelet's limit on a termination message, so a
/// real step never hits it; it keeps a run's status far below what the API server stores.
pub const MAX_OUTPUT_BYTES: usize = 4096;

/// A JSON object becomes one output per key; anything else non-empty becomes `result`.
/// Values are kept as text: strings as they are, other JSON values in JSON form.
pub fn from_termination_message(message: &str) -> BTreeMap<String, String> {
    let trimmed = message.trim();
    if trimmed.is_empty() {
        return BTreeMap::new();
    }
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().map(|(k, v)| (k, to_text(&v))).collect(),
        _ => BTreeMap::from([("result".to_string(), trimmed.to_string())]),
    }
}

/// Text form of a JSON value: strings unquoted, everything else as JSON.
pub fn to_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_split_into_keys() {
        let out = from_termination_message(r#"{"flagged": 3, "file": "a.pdf", "ok": true, "l": [1]}"#);
        assert_eq!(out["flagged"], "3");
        assert_eq!(out["file"], "a.pdf");
        assert_eq!(out["ok"], "true");
        assert_eq!(out["l"], "[1]");
    }

    #[test]
    fn anything_else_is_result() {
        assert_eq!(from_termination_message("done\n")["result"], "done");
        assert_eq!(from_termination_message("[1,2]")["result"], "[1,2]");
        assert_eq!(from_termination_message("42")["result"], "42");
        assert!(from_termination_message("  ").is_empty());
    }
}
