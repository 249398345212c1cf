//! The hash chain: each record's hash covers its place, what it is of, its content and the hash of
//! the record before it in its namespace, so changing, removing or reordering a record breaks the
//! chain at that record. Retention removes the oldest records and appends a checkpoint that names
//! the last removed hash, so the shortened chain still verifies from its new first record.
//!
//! What a chain cannot show by itself: records cut from its end. The newest hash is what an
//! outside copy (an Event, a metric) would pin; see the operator's archive docs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Kind, Stored};

/// The `prevHash` of a namespace's first record.
pub const GENESIS: &str = "";

/// The hash of a record (hex SHA-256) over every part of it: its place, what it is of, when it was
/// recorded, the hash before it and its content. Each part is length-prefixed, so no two
/// different records hash the same bytes.
pub fn link(record: &Stored) -> String {
    let mut hasher = Sha256::new();
    let position = record.position.to_string();
    let parts = [
        record.namespace.as_str(),
        &position,
        record.kind.as_str(),
        &record.uid,
        &record.recorded_at,
        &record.prev_hash,
        &record.content,
    ];
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A checkpoint's content: retention removed positions `1..=deleted_through`, and the last of them
/// had this hash (the `prevHash` of the first record kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub deleted_through: i64,
    pub last_deleted_hash: String,
    /// Records removed by this checkpoint's retention run.
    pub deleted: i64,
    /// Records recorded before this time (RFC 3339) were removed.
    pub before: String,
}

/// Where one namespace's chain stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record is linked; `from` is the first position kept (1, or past a checkpoint).
    Intact { records: usize, from: i64 },
    /// The first record where the chain breaks, and why.
    Broken { position: i64, why: String },
}

/// Verifies every namespace's chain in `records` (any order; whole namespaces, as the archive
/// returns them for `--verify`).
pub fn verify(records: &[Stored]) -> BTreeMap<String, Verdict> {
    let mut by_namespace: BTreeMap<&str, Vec<&Stored>> = BTreeMap::new();
    for record in records {
        by_namespace.entry(&record.namespace).or_default().push(record);
    }
    by_namespace
        .into_iter()
        .map(|(namespace, mut chain)| {
            chain.sort_by_key(|r| r.position);
            (namespace.to_string(), verify_one(&chain))
        })
        .collect()
}

fn verify_one(chain: &[&Stored]) -> Verdict {
    let Some(first) = chain.first() else { return Verdict::Intact { records: 0, from: 1 } };
    if let Err(why) = check_start(first, chain) {
        return Verdict::Broken { position: first.position, why };
    }
    let mut previous: Option<&Stored> = None;
    for record in chain {
        if let Err(why) = check_record(record, previous) {
            return Verdict::Broken { position: record.position, why };
        }
        previous = Some(record);
    }
    Verdict::Intact { records: chain.len(), from: first.position }
}

/// The first record kept starts the chain, or a checkpoint says what retention removed before it.
fn check_start(first: &Stored, chain: &[&Stored]) -> Result<(), String> {
    if first.position == 1 {
        return if first.prev_hash == GENESIS {
            Ok(())
        } else {
            Err("record 1 names a record before it: the chain's start was replaced".into())
        };
    }
    let covered = chain.iter().filter(|r| r.kind == Kind::Checkpoint).any(|r| {
        serde_json::from_str::<Checkpoint>(&r.content)
            .is_ok_and(|c| c.deleted_through == first.position - 1 && c.last_deleted_hash == first.prev_hash)
    });
    if covered {
        Ok(())
    } else {
        Err(format!("records 1 to {} are missing and no checkpoint says retention removed them", first.position - 1))
    }
}

fn check_record(record: &Stored, previous: Option<&Stored>) -> Result<(), String> {
    let position = record.position;
    if let Some(previous) = previous {
        if position == previous.position {
            return Err(format!("record {position} appears twice"));
        }
        if position != previous.position + 1 {
            return Err(format!("records {} to {} are missing", previous.position + 1, position - 1));
        }
        if record.prev_hash != previous.hash {
            return Err(format!(
                "record {position} does not follow record {}: {} was changed and hashed again, or {position} was inserted out of order",
                previous.position, previous.position
            ));
        }
    }
    if record.hash != link(record) {
        return Err(format!("record {position} was changed: its content does not match its hash"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(namespace: &str, contents: &[&str]) -> Vec<Stored> {
        let mut prev = GENESIS.to_string();
        contents
            .iter()
            .enumerate()
            .map(|(i, content)| {
                let position = i as i64 + 1;
                let mut record = Stored {
                    namespace: namespace.into(),
                    position,
                    kind: Kind::Gate,
                    uid: format!("uid-{position}"),
                    recorded_at: "2026-12-07T00:00:00Z".into(),
                    content: content.to_string(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                record.hash = link(&record);
                prev = record.hash.clone();
                record
            })
            .collect()
    }

    fn broken_at(records: &[Stored]) -> Option<(i64, String)> {
        verify(records).into_values().find_map(|v| match v {
            Verdict::Broken { position, why } => Some((position, why)),
            Verdict::Intact { .. } => None,
        })
    }

    #[test]
    fn an_untouched_chain_verifies_in_any_order() {
        let mut records = chain("a", &["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        records.extend(chain("b", &["{}"]));
        records.reverse();
        let verdicts = verify(&records);
        assert_eq!(verdicts["a"], Verdict::Intact { records: 3, from: 1 });
        assert_eq!(verdicts["b"], Verdict::Intact { records: 1, from: 1 });
    }

    #[test]
    fn a_changed_content_is_named() {
        let mut records = chain("a", &["{\"decision\":\"Reject\"}", "{}", "{}"]);
        records[0].content = "{\"decision\":\"Approve\"}".into();
        let (position, why) = broken_at(&records).unwrap();
        assert_eq!(position, 1);
        assert!(why.contains("was changed"), "{why}");
    }

    #[test]
    fn a_change_hashed_again_breaks_the_next_link() {
        let mut records = chain("a", &["{}", "{\"by\":\"alice\"}", "{}"]);
        records[1].content = "{\"by\":\"mallory\"}".into();
        records[1].hash = link(&records[1]);
        let (position, why) = broken_at(&records).unwrap();
        assert_eq!(position, 3);
        assert!(why.contains("2 was changed and hashed again"), "{why}");
    }

    #[test]
    fn a_record_dated_again_is_named() {
        let mut records = chain("a", &["{}", "{}"]);
        records[1].recorded_at = "2026-03-03T00:00:00Z".into();
        assert_eq!(broken_at(&records).unwrap().0, 2);
    }

    #[test]
    fn a_removed_record_is_named_and_so_is_a_removed_start() {
        let mut records = chain("a", &["{}", "{}", "{}", "{}"]);
        records.remove(2);
        assert_eq!(broken_at(&records).unwrap(), (4, "records 3 to 3 are missing".into()));
        records.remove(0);
        let (position, why) = broken_at(&records).unwrap();
        assert_eq!(position, 2);
        assert!(why.contains("no checkpoint"), "{why}");
    }

    #[test]
    fn a_record_moved_to_another_place_is_named() {
        let mut records = chain("a", &["{}", "{\"x\":1}", "{\"y\":2}"]);
        // Swapping two records' places, each with its own hashes, breaks where the order breaks.
        records[1].position = 3;
        records[2].position = 2;
        assert_eq!(broken_at(&records).unwrap().0, 2);
    }

    #[test]
    fn a_checkpoint_lets_the_chain_start_later_and_only_where_it_says() {
        let mut records = chain("a", &["{}", "{}", "{}"]);
        let removed = records.remove(0);
        let content = serde_json::to_string(&Checkpoint {
            deleted_through: 1,
            last_deleted_hash: removed.hash.clone(),
            deleted: 1,
            before: "2026-01-01T00:00:00Z".into(),
        })
        .unwrap();
        let last = records.last().unwrap().clone();
        let mut checkpoint = Stored {
            position: 4,
            kind: Kind::Checkpoint,
            uid: "cp-1".into(),
            content,
            prev_hash: last.hash.clone(),
            ..last
        };
        checkpoint.hash = link(&checkpoint);
        records.push(checkpoint);
        assert_eq!(verify(&records)["a"], Verdict::Intact { records: 3, from: 2 });
        // Removing one more than the checkpoint says is still found.
        records.remove(0);
        assert_eq!(broken_at(&records).unwrap().0, 3);
    }
}
