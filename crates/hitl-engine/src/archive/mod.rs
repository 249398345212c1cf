//! The decision archive's pure half: what a record of a decided gate or a finished run holds
//! (`record`), and the hash chain that makes a changed, removed or reordered record visible
//! (`chain`). The operator stores them (`hitl_operator::archive`); `kubectl hitl history` reads
//! them back and verifies the chain itself, so a reader need not trust the server for that.
pub mod chain;
pub mod record;

use serde::{Deserialize, Serialize};

/// What a record is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A gate decided, expired or cancelled (one Approval).
    Gate,
    /// A run that finished or was deleted (one Workflow).
    Run,
    /// Retention removed the records before this point; the chain goes on from here.
    Checkpoint,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gate => "gate",
            Kind::Run => "run",
            Kind::Checkpoint => "checkpoint",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Kind::Gate, Kind::Run, Kind::Checkpoint].into_iter().find(|k| k.as_str() == text)
    }
}

/// One stored record as the archive returns it: its place in its namespace's chain, what it is
/// of, its content exactly as hashed (canonical JSON), and the two hashes that link it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    pub namespace: String,
    /// 1, 2, 3... within the namespace.
    pub position: i64,
    pub kind: Kind,
    /// The archived object's UID (a checkpoint's own, made up when it is written).
    pub uid: String,
    /// RFC 3339, when the archive stored it.
    pub recorded_at: String,
    pub content: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Stored {
    /// The content, parsed; `Null` when it is not JSON (a changed record).
    pub fn content_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.content).unwrap_or(serde_json::Value::Null)
    }
}

/// An age as people write it for records: `400d`, `30d`, or a Go duration (`12h`, `90m`).
pub fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    match text.strip_suffix('d').map(str::parse::<u64>) {
        Some(Ok(days)) => Ok(std::time::Duration::from_secs(days.saturating_mul(86_400))),
        Some(Err(_)) => Err(format!("{text:?} is not an age such as 30d or 12h")),
        None => crate::duration::parse(text).map_err(|_| format!("{text:?} is not an age such as 30d or 12h")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_come_in_days_or_go_durations() {
        assert_eq!(super::parse_age("400d").unwrap().as_secs(), 400 * 86_400);
        assert_eq!(super::parse_age("1h30m").unwrap().as_secs(), 5_400);
        assert!(super::parse_age("d").is_err() && super::parse_age("3w").is_err());
    }
}
