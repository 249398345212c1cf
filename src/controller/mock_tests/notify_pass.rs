//! One notification delivery: the gate is read fresh before anything goes out, and the record is
//! written on the freshest copy of the Approval.

use http::Method;
use kube::api::ObjectMeta;

use super::mock_api::{ApiScript, Reply};
use super::{APPROVALS, context};
use crate::api::notify::{DeliveryState, NotificationRecord};
use crate::api::{Approval, ApprovalPhase, ApprovalSpec, ApprovalStatus, Gate, NotifySpec};
use crate::controller::notify::deliver;
use crate::controller::notify_target::HttpClients;

/// A gate waiting for a decision, announced on channel `ops`.
fn pending() -> Approval {
    let notify = NotifySpec { channels: Some(vec!["ops".into()]), ..Default::default() };
    let spec = ApprovalSpec {
        step: "review".into(),
        gate: Gate { notify: Some(notify), ..Default::default() },
        ..Default::default()
    };
    Approval {
        metadata: ObjectMeta {
            name: Some("wf.review".into()),
            namespace: Some("ns".into()),
            uid: Some("a-uid".into()),
            resource_version: Some("10".into()),
            ..Default::default()
        },
        spec,
        status: Some(ApprovalStatus { phase: Some(ApprovalPhase::Pending), ..Default::default() }),
    }
}

fn record(channel: &str, state: DeliveryState, attempts: i32) -> NotificationRecord {
    NotificationRecord { key: "a-uid/requested".into(), channel: channel.into(), state, attempts, ..Default::default() }
}

#[tokio::test]
async fn a_request_for_a_gate_decided_meanwhile_is_recorded_dropped_on_the_freshest_copy() {
    let waiting = pending();
    let mut decided = waiting.clone();
    decided.status.as_mut().unwrap().phase = Some(ApprovalPhase::Approved);
    // What the API server holds after the conflict: the controller wrote meanwhile (an earlier
    // try's record for ops, another channel's delivery).
    let mut newer = decided.clone();
    newer.metadata.resource_version = Some("12".into());
    newer.status.as_mut().unwrap().notifications =
        vec![record("ops", DeliveryState::Pending, 1), record("mail", DeliveryState::Delivered, 1)];
    let path = format!("{APPROVALS}/wf.review");
    let (client, api) = ApiScript::default()
        .then(Method::GET, path.clone(), Reply::object(&decided))
        .then(Method::GET, path.clone(), Reply::object(&decided))
        .then(Method::PUT, format!("{path}/status"), Reply::conflict())
        .then(Method::GET, path.clone(), Reply::object(&newer))
        .then(Method::PUT, format!("{path}/status"), Reply::Stored)
        .serve();
    let (ctx, mut jobs) = context(client);
    assert_eq!(ctx.notifier.schedule(&waiting, jiff::Timestamp::now()), None);
    let job = jobs.try_recv().expect("the request to ops is queued");
    let http = HttpClients::new(ctx.config.notify_timeout, ctx.config.notify_ranges.clone());

    deliver(&ctx, &http, &job).await;

    let seen = api.finish();
    let written: Approval = serde_json::from_value(seen.last().unwrap().body.clone()).expect("an Approval");
    let status = written.status.unwrap();
    assert_eq!(written.metadata.resource_version.as_deref(), Some("12"), "written on the copy read after the conflict");
    assert_eq!(status.phase, Some(ApprovalPhase::Approved));
    let records: Vec<_> = status.notifications.iter().map(|r| (r.channel.as_str(), r.state)).collect();
    assert_eq!(
        records,
        [("mail", DeliveryState::Delivered), ("ops", DeliveryState::Dropped)],
        "one record per channel"
    );
    let notified = status.conditions.iter().find(|c| c.type_ == "Notified").expect("condition Notified");
    assert_eq!(notified.status, "True");
}

/// A record that could not be written (every try met another writer) is not taken for done:
/// the next look at the gate queues the notification again.
#[tokio::test]
async fn a_record_that_was_never_written_is_tried_again() {
    let waiting = pending();
    let mut decided = waiting.clone();
    decided.status.as_mut().unwrap().phase = Some(ApprovalPhase::Approved);
    let path = format!("{APPROVALS}/wf.review");
    let mut script = ApiScript::default().then(Method::GET, path.clone(), Reply::object(&decided));
    for _ in 0..5 {
        script = script.then(Method::GET, path.clone(), Reply::object(&decided)).then(
            Method::PUT,
            format!("{path}/status"),
            Reply::conflict(),
        );
    }
    let (client, api) = script.serve();
    let (ctx, mut jobs) = context(client);
    assert_eq!(ctx.notifier.schedule(&waiting, jiff::Timestamp::now()), None);
    let job = jobs.try_recv().expect("the request to ops is queued");
    let http = HttpClients::new(ctx.config.notify_timeout, ctx.config.notify_ranges.clone());

    deliver(&ctx, &http, &job).await;
    ctx.notifier.done(&job);
    api.finish();

    let _ = ctx.notifier.schedule(&waiting, jiff::Timestamp::now());
    // The stored gate still waits with no record: its one notification (requested, on ops) is owed.
    assert!(jobs.try_recv().is_ok(), "the unrecorded notification is queued again");
}
