//! The History page: the decision archive as far as the person may read it (read through the API
//! server as them, like `kubectl hitl history`), newest first, every cell escaped.

use super::html::{esc, page};
use crate::archive_reader::{RecordList, row};

/// How far back the page reads unless asked (`?since=`); the plugin reads further.
pub const DEFAULT_SINCE: &str = "30d";

/// The page for `list`, read for `scope` (None: every namespace) and `since`.
pub fn page_for(list: &RecordList, scope: Option<&str>, since: &str, me: &str) -> String {
    let mut rows: Vec<_> = list.items.iter().map(row).collect();
    rows.sort_by(|a, b| b.when.cmp(&a.when));
    let body_rows: String = rows
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"phase {o}\">{o}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.when),
                esc(&r.namespace),
                esc(&r.workflow),
                esc(&r.step),
                esc(&r.decided_by),
                esc(&r.comment),
                o = esc(&r.outcome),
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p id=\"history-empty\">No records that you may read.</p>".to_string()
    } else {
        format!(
            "<div class=\"scroll\"><table id=\"history\"><caption class=\"skip\">Decisions and runs</caption>\
             <thead><tr><th scope=\"col\">When</th><th scope=\"col\">Namespace</th><th scope=\"col\">Workflow</th>\
             <th scope=\"col\">Step</th><th scope=\"col\">Outcome</th><th scope=\"col\">Decided by</th>\
             <th scope=\"col\">Comment</th></tr></thead><tbody>{body_rows}</tbody></table></div>"
        )
    };
    let body = format!(
        "<h1>History</h1><form method=\"get\" action=\"/history\"><label>Namespace \
         <input name=\"namespace\" value=\"{ns}\" placeholder=\"all you may read\"></label> \
         <label>Since <input name=\"since\" value=\"{since}\"></label> <button>Show</button></form>\
         <p class=\"meta\">{scope}. Where you may not read a namespace's Workflows, you see only the gates you \
         decided or voted on. <code>kubectl hitl history --verify</code> checks the records against their hash chain.</p>{table}",
        ns = esc(scope.unwrap_or_default()),
        since = esc(since),
        scope = esc(&what_is_shown(list, scope)),
    );
    page("History", me, &body)
}

fn what_is_shown(list: &RecordList, scope: Option<&str>) -> String {
    let whole = if list.whole_namespaces.is_empty() { "none".to_string() } else { list.whole_namespaces.join(", ") };
    match scope {
        Some(ns) => format!("Namespace {ns}; read whole: {whole}"),
        None => format!("Every namespace; read whole: {whole}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_engine::archive::{Kind, Stored};

    fn record(position: i64, content: &str) -> Stored {
        Stored {
            namespace: "legal".into(),
            position,
            kind: Kind::Gate,
            uid: format!("u{position}"),
            recorded_at: "2026-12-07T10:00:00Z".into(),
            content: content.into(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn newest_first_and_markup_shown_not_run() {
        let items = vec![
            record(
                1,
                r#"{"workflow":"old","step":"s","outcome":"Approved","decidedBy":"alice","decidedAt":"2026-01-01T00:00:00Z"}"#,
            ),
            record(
                2,
                r#"{"workflow":"new","step":"s","outcome":"Rejected","decidedBy":"<b>bob</b>","comment":"<script>x</script>","decidedAt":"2026-02-01T00:00:00Z"}"#,
            ),
        ];
        let list = RecordList { whole_namespaces: vec!["legal".into()], items, ..Default::default() };
        let html = page_for(&list, None, "30d", "alice");
        assert!(html.find(">new<").unwrap() < html.find(">old<").unwrap(), "{html}");
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;") && !html.contains("<script>x"), "{html}");
        assert!(html.contains("&lt;b&gt;bob&lt;/b&gt;"), "{html}");
        assert!(html.contains("read whole: legal"), "{html}");
    }
}
