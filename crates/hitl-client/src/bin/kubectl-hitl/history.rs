//! `history`: the decision archive (who decided which gate, when, and how runs ended), read
//! through the API server as the person. The archive's server is an aggregated API
//! (`archive.hitl.dev`), so their own credentials and RBAC apply however they log in, and no
//! database credential reaches them. `--verify` checks each namespace's hash chain here.

use anyhow::{anyhow, bail};
use hitl_client::archive_reader::{self, RecordList, path};
use hitl_engine::archive::Stored;
use hitl_engine::archive::chain::{self, Verdict};
use kube::Client;

use crate::cli::{HistoryArgs, HistoryFormat};
use crate::history_output;

/// Lists (or verifies) the records of `namespace`, or of every namespace with `-A`.
pub async fn run(client: &Client, namespace: &str, args: &HistoryArgs) -> anyhow::Result<()> {
    let scope = (!args.all_namespaces).then_some(namespace);
    if args.verify {
        return verify(client, scope).await;
    }
    let list = read(client, &path(scope, &filters(args))).await?;
    if list.items.is_empty() && args.output == HistoryFormat::Table {
        // As kubectl says it: on stderr, so that a pipe reads nothing.
        eprintln!("{}", nothing_found(scope));
        return Ok(());
    }
    crate::emit(&history_output::render(args.output, &list, scope.is_none())?)
}

async fn verify(client: &Client, scope: Option<&str>) -> anyhow::Result<()> {
    let list = read(client, &path(scope, &[])).await?;
    if let Some(ns) = scope.filter(|ns| !list.whole_namespaces.iter().any(|w| w == ns)) {
        bail!(
            "you may read only your own decisions in namespace {ns}, so its chain cannot be verified \
             (that needs the right to get its Workflows)"
        );
    }
    let partial = partial_namespaces(&list);
    if !partial.is_empty() {
        eprintln!("Not verified (you may read only your own decisions there): {}", partial.join(", "));
    }
    if list.whole_namespaces.is_empty() {
        eprintln!("No namespace's records are yours to read whole: nothing to verify.");
        return Ok(());
    }
    let (report, broken) = verdicts(&list);
    crate::emit(&report)?;
    if !broken.is_empty() {
        bail!("the archive's hash chain is broken in namespace {}", broken.join(", "));
    }
    Ok(())
}

/// One line per namespace held whole (`NS: intact: ...` or `NS: BROKEN at record P: why`), and
/// the namespaces whose chain is broken.
fn verdicts(list: &RecordList) -> (String, Vec<String>) {
    let whole: Vec<Stored> =
        list.items.iter().filter(|r| list.whole_namespaces.contains(&r.namespace)).cloned().collect();
    let verdicts = chain::verify(&whole);
    let (mut report, mut broken) = (String::new(), vec![]);
    for ns in &list.whole_namespaces {
        let line = match verdicts.get(ns) {
            None => "no records".to_string(),
            Some(Verdict::Intact { records, from }) => format!("intact: {records} records from position {from}"),
            Some(Verdict::Broken { position, why }) => {
                broken.push(ns.clone());
                format!("BROKEN at record {position}: {why}")
            }
        };
        report += &format!("{ns}: {line}\n");
    }
    (report, broken)
}

/// Namespaces of which the list holds only the caller's own decisions.
fn partial_namespaces(list: &RecordList) -> Vec<String> {
    let mut partial: Vec<String> =
        list.items.iter().map(|r| r.namespace.clone()).filter(|ns| !list.whole_namespaces.contains(ns)).collect();
    partial.sort();
    partial.dedup();
    partial
}

fn filters(args: &HistoryArgs) -> Vec<(&'static str, String)> {
    let given = [
        ("workflow", args.workflow.clone()),
        ("approver", args.approver.clone()),
        ("since", args.since.clone()),
        ("limit", args.limit.map(|n| n.to_string())),
    ];
    given.into_iter().filter_map(|(key, value)| Some((key, value?))).collect()
}

async fn read(client: &Client, path: &str) -> anyhow::Result<RecordList> {
    archive_reader::read(client, path).await.map_err(explain)
}

fn explain(e: kube::Error) -> anyhow::Error {
    match archive_reader::unavailable(&e) {
        Some(why) => anyhow!(why),
        None => e.into(),
    }
}

fn nothing_found(scope: Option<&str>) -> String {
    match scope {
        Some(ns) => format!("No records found in {ns} namespace."),
        None => "No records found.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_client::archive_reader::GROUP;
    use hitl_engine::archive::Kind;
    use hitl_engine::archive::chain::{GENESIS, link};
    use kube::core::Status;

    fn chain(ns: &str, contents: &[&str]) -> Vec<Stored> {
        let mut prev = GENESIS.to_string();
        let mut records = vec![];
        for (i, content) in contents.iter().enumerate() {
            let position = i as i64 + 1;
            let mut record = Stored {
                namespace: ns.into(),
                position,
                kind: Kind::Gate,
                uid: format!("{ns}-{position}"),
                recorded_at: "2026-12-07T10:00:00Z".into(),
                content: content.to_string(),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            record.hash = link(&record);
            prev = record.hash.clone();
            records.push(record);
        }
        records
    }

    #[test]
    fn only_namespaces_held_whole_are_verified_and_a_broken_one_is_named() {
        let mut items = chain("legal", &["{}", "{}"]);
        let mut ops = chain("ops", &["{\"by\":\"alice\"}", "{}"]);
        ops[0].content = "{\"by\":\"mallory\"}".into();
        items.extend(ops);
        items.extend(chain("sales", &["{}"]).into_iter().map(|r| Stored { position: 7, ..r }));
        let list = RecordList { whole_namespaces: vec!["legal".into(), "ops".into()], items, ..Default::default() };
        let (report, broken) = verdicts(&list);
        assert_eq!(broken, ["ops"]);
        assert!(report.starts_with("legal: intact: 2 records from position 1\n"), "{report}");
        assert!(report.contains("ops: BROKEN at record 1: record 1 was changed"), "{report}");
        assert!(!report.contains("sales"), "{report}");
        assert_eq!(partial_namespaces(&list), ["sales"]);
    }

    #[test]
    fn filters_go_in_the_query_escaped() {
        let args = HistoryArgs { workflow: Some("a b".into()), since: Some("30d".into()), ..Default::default() };
        assert_eq!(
            path(Some("legal"), &filters(&args)),
            "/apis/archive.hitl.dev/v1alpha1/namespaces/legal/records?workflow=a+b&since=30d"
        );
        assert_eq!(path(None, &[]), "/apis/archive.hitl.dev/v1alpha1/records");
    }

    #[test]
    fn the_api_servers_own_answers_are_explained_and_the_archives_pass() {
        // As the archive and the API server send it.
        let api = |code: u16, group: &str| {
            let status =
                serde_json::json!({"kind": "Status", "code": code, "message": "m", "details": {"group": group}});
            kube::Error::Api(Box::new(serde_json::from_value::<Status>(status).unwrap()))
        };
        assert!(explain(api(404, "")).to_string().contains("not enabled in this cluster"));
        assert!(explain(api(503, "")).to_string().contains("not answering"));
        let ours = explain(api(503, GROUP));
        assert!(matches!(ours.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.message == "m"));
    }
}
