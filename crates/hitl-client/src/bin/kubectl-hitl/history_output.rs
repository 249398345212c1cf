//! How `history` prints records: a table for people, CSV for spreadsheets, and the RecordList
//! itself as JSON or YAML for scripts (each record's content exactly as it was hashed).

use hitl_client::archive_reader::{RecordList, row};
use hitl_engine::archive::Stored;

use crate::cli::HistoryFormat;

/// Longest comment the table shows; CSV and JSON show it whole.
const COMMENT_WIDTH: usize = 48;
const HEADER: [&str; 7] = ["WHEN", "NAMESPACE", "WORKFLOW", "STEP", "OUTCOME", "DECIDED BY", "COMMENT"];

pub fn render(format: HistoryFormat, list: &RecordList, all_namespaces: bool) -> anyhow::Result<String> {
    Ok(match format {
        HistoryFormat::Table => table(&list.items, all_namespaces),
        HistoryFormat::Csv => csv(&list.items),
        HistoryFormat::Json => serde_json::to_string_pretty(list)? + "\n",
        HistoryFormat::Yaml => serde_yaml::to_string(list)?,
    })
}

/// Columns as wide as their widest cell, as kubectl prints them; NAMESPACE only with `-A`.
fn table(records: &[Stored], all_namespaces: bool) -> String {
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(row)
        .map(|r| [r.when, r.namespace, r.workflow, r.step, r.outcome, r.decided_by, short(&r.comment)])
        .map(|cells| cells.map(|c| if c.is_empty() { "-".to_string() } else { c }))
        .collect();
    let shown: Vec<usize> = (0..HEADER.len()).filter(|&i| i != 1 || all_namespaces).collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([HEADER[i].len()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..HEADER.len()).map(width).collect();
    let line = |cells: &[&str]| {
        let padded: Vec<String> = shown.iter().map(|&i| format!("{:<w$}", cells[i], w = widths[i])).collect();
        padded.join("   ").trim_end().to_string() + "\n"
    };
    let mut out = line(&HEADER);
    for r in &rows {
        out += &line(&r.each_ref().map(String::as_str));
    }
    out
}

/// The comment's first line, cut to the table's width.
fn short(comment: &str) -> String {
    let first = comment.lines().next().unwrap_or_default();
    if first.chars().count() <= COMMENT_WIDTH && !comment.contains('\n') {
        return first.to_string();
    }
    first.chars().take(COMMENT_WIDTH - 1).collect::<String>() + "…"
}

fn csv(records: &[Stored]) -> String {
    let mut out = "when,namespace,position,kind,workflow,step,outcome,decidedBy,comment,hash\n".to_string();
    for record in records {
        let r = row(record);
        let position = record.position.to_string();
        let cells = [
            &r.when,
            &r.namespace,
            &position,
            record.kind.as_str(),
            &r.workflow,
            &r.step,
            &r.outcome,
            &r.decided_by,
            &r.comment,
            &record.hash,
        ];
        out += &(cells.map(csv_field).join(",") + "\n");
    }
    out
}

/// A field quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_engine::archive::Kind;

    fn record(kind: Kind, content: &str) -> Stored {
        Stored {
            namespace: "legal".into(),
            position: 3,
            kind,
            uid: "u".into(),
            recorded_at: "2026-12-07T10:00:05Z".into(),
            content: content.into(),
            prev_hash: "p".into(),
            hash: "h".into(),
        }
    }

    const GATE: &str = r#"{"workflow":"contract","step":"review","item":2,"outcome":"Approved","decidedBy":"alice","decidedAt":"2026-12-07T10:00:00Z","comment":"clause 7, fine"}"#;

    #[test]
    fn a_gate_shows_who_decided_what_and_a_run_how_it_ended() {
        let gate = row(&record(Kind::Gate, GATE));
        assert_eq!((gate.when.as_str(), gate.step.as_str()), ("2026-12-07T10:00:00Z", "review/2"));
        assert_eq!((gate.outcome.as_str(), gate.decided_by.as_str()), ("Approved", "alice"));
        let run = row(&record(Kind::Run, r#"{"workflow":"contract","phase":"Succeeded"}"#));
        assert_eq!((run.when.as_str(), run.outcome.as_str()), ("2026-12-07T10:00:05Z", "Succeeded"));
        let changed = row(&record(Kind::Gate, "not json"));
        assert_eq!(changed.outcome, "", "a record changed into garbage still prints");
    }

    #[test]
    fn the_table_aligns_its_columns_and_shows_namespaces_with_all_of_them() {
        let records = [record(Kind::Gate, GATE), record(Kind::Run, r#"{"workflow":"c","phase":"Failed"}"#)];
        let text = table(&records, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("WHEN                   WORKFLOW   STEP       OUTCOME"), "{text}");
        assert!(lines[1].contains("contract   review/2   Approved   alice        clause 7, fine"), "{text}");
        assert!(lines[2].contains("c          -          Failed     -            -"), "{text}");
        assert!(table(&records, true).starts_with("WHEN                   NAMESPACE   WORKFLOW"));
    }

    #[test]
    fn a_long_comment_is_cut_and_csv_quotes_what_it_must() {
        assert_eq!(short(&"x".repeat(60)).chars().count(), COMMENT_WIDTH);
        assert_eq!(short("two\nlines"), "two…");
        let text = csv(&[record(Kind::Gate, GATE)]);
        assert!(text.lines().nth(1).unwrap().ends_with(",alice,\"clause 7, fine\",h"), "{text}");
    }
}
