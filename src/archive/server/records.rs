//! `GET .../records` (every namespace) and `GET .../namespaces/{namespace}/records`: the records
//! a person may read (`access`), filtered as they ask.

use axum::http::StatusCode;
use axum::response::Response;
use hitl_engine::archive::{Stored, parse_age};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::access;
use super::front_proxy::User;
use super::response::{Failure, json};
use super::{Ctx, GROUP, VERSION};
use crate::archive::store::Query;

/// The query parameters, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub workflow: Option<String>,
    /// Only gates this user decided.
    pub approver: Option<String>,
    /// An RFC 3339 time, or an age (`30d`, `12h`).
    pub since: Option<String>,
    pub limit: Option<String>,
}

/// The parameters, checked.
#[derive(Debug, PartialEq)]
struct Filter {
    workflow: Option<String>,
    approver: Option<String>,
    since: Option<Timestamp>,
    /// 0: no limit.
    limit: i64,
}

impl Filter {
    fn of(params: Params, now: Timestamp) -> Result<Self, Failure> {
        let given = |v: Option<String>| v.filter(|v| !v.is_empty());
        let since = given(params.since).map(|s| since(&s, now)).transpose().map_err(Failure::bad_request)?;
        let limit = match given(params.limit) {
            None => 0,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| Failure::bad_request(format!("limit {text:?} is not a whole number of records")))?,
        };
        Ok(Self { workflow: given(params.workflow), approver: given(params.approver), since, limit })
    }
}

/// `since`: a time, or an age counted back from `now`.
fn since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(time) = text.parse::<Timestamp>() {
        return Ok(time);
    }
    let bad = || format!("since {text:?} is neither a time (2026-01-31T00:00:00Z) nor an age (30d, 12h)");
    let age = parse_age(text).map_err(|_| bad())?;
    let age = SignedDuration::try_from(age).map_err(|_| bad())?;
    now.checked_sub(age).map_err(|_| bad())
}

/// The answer: the records, and the namespaces it holds whole (elsewhere it holds only the
/// caller's own decisions), so that a client verifies chains only where it has all of them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordList<'a> {
    api_version: String,
    kind: &'static str,
    whole_namespaces: &'a [String],
    items: Vec<Stored>,
}

/// The records `namespace` (None: every namespace) holds for the person the request names.
pub async fn list(ctx: &Ctx, user: User, namespace: Option<String>, params: Params) -> Result<Response, Failure> {
    let filter = Filter::of(params, Timestamp::now())?;
    let whole = whole_namespaces(ctx, &user, namespace.as_deref()).await?;
    let query = Query {
        namespaces: whole.clone(),
        own: Some(user.name.clone()),
        within: namespace,
        workflow: filter.workflow,
        decided_by: filter.approver,
        since: filter.since,
        limit: filter.limit,
    };
    let items = ctx.archive.query(&query).await.map_err(|e| Failure::database(&e))?;
    tracing::debug!(user = %user.name, records = items.len(), whole = ?whole, "archive read");
    let list =
        RecordList { api_version: format!("{GROUP}/{VERSION}"), kind: "RecordList", whole_namespaces: &whole, items };
    Ok(json(StatusCode::OK, &list))
}

/// The namespaces `user` reads whole: `namespace` if they may get its Workflows, or, for every
/// namespace, each of the archive's they may.
async fn whole_namespaces(ctx: &Ctx, user: &User, namespace: Option<&str>) -> Result<Vec<String>, Failure> {
    let reviewed = match namespace {
        Some(ns) => {
            access::may_read(&ctx.client, user, Some(ns)).await.map(|ok| if ok { vec![ns.to_string()] } else { vec![] })
        }
        None => {
            let all = ctx.archive.namespaces().await.map_err(|e| Failure::database(&e))?;
            access::readable(&ctx.client, user, all).await
        }
    };
    reviewed.map_err(|e| {
        tracing::warn!(error = %e, "SubjectAccessReview");
        Failure::internal(format!("checking what you may read failed (SubjectAccessReview): {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn since_is_a_time_or_an_age_back_from_now() {
        assert_eq!(since("2026-01-31T00:00:00Z", now()).unwrap().to_string(), "2026-01-31T00:00:00Z");
        assert_eq!(since("30d", now()).unwrap().to_string(), "2026-11-07T12:00:00Z");
        assert_eq!(since("12h", now()).unwrap().to_string(), "2026-12-07T00:00:00Z");
        let err = since("yesterday", now()).unwrap_err();
        assert!(err.contains("neither a time") && err.contains("30d"), "{err}");
    }

    #[test]
    fn empty_parameters_are_absent_and_bad_ones_are_refused() {
        let params = Params { workflow: Some(String::new()), limit: Some("20".into()), ..Default::default() };
        let filter = Filter::of(params, now()).unwrap();
        assert_eq!(filter, Filter { workflow: None, approver: None, since: None, limit: 20 });
        let negative = Filter::of(Params { limit: Some("-1".into()), ..Default::default() }, now()).unwrap_err();
        assert_eq!(negative.code, StatusCode::BAD_REQUEST);
        let late = Filter::of(Params { since: Some("soon".into()), ..Default::default() }, now()).unwrap_err();
        assert!(late.message.contains("since \"soon\""), "{}", late.message);
    }
}
