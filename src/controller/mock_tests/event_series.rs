//! Events: a repeat (same object, type, reason and note) within six minutes is the next count of
//! the first one's series; another note is another Event; a series whose Event is gone starts
//! again with a new one.

use http::Method;
use k8s_openapi::api::core::v1::ObjectReference;

use super::mock_api::{ApiScript, Reply};
use crate::controller::events::{Events, Note};

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

fn workflow_ref() -> ObjectReference {
    ObjectReference {
        api_version: Some("hitl.dev/v1alpha1".into()),
        kind: Some("Workflow".into()),
        namespace: Some("ns".into()),
        name: Some("wf".into()),
        uid: Some("wf-uid".into()),
        ..Default::default()
    }
}

fn failed(note: &str) -> Note<'_> {
    Note { warning: true, reason: "KubeError", note: note.into() }
}

#[tokio::test]
async fn a_repeat_counts_in_the_first_events_series_and_another_note_is_its_own_event() {
    let (client, api) = ApiScript::default()
        .events_scripted()
        .then(Method::POST, EVENTS, Reply::Stored)
        .then(Method::PATCH, format!("{EVENTS}/wf."), Reply::Stored)
        .then(Method::POST, EVENTS, Reply::Stored)
        .then(Method::PATCH, format!("{EVENTS}/wf."), Reply::not_found())
        .then(Method::POST, EVENTS, Reply::Stored)
        .serve();
    let events = Events::new(client, "hitl-operator", None);
    let regarding = workflow_ref();
    for note in ["the API server is unreachable", "the API server is unreachable", "quota exceeded"] {
        events.publish(&failed(note), &regarding).await.expect("published");
    }
    // The first Event went meanwhile (the API server keeps Events for an hour): a new one.
    events.publish(&failed("the API server is unreachable"), &regarding).await.expect("published again");
    let seen = api.finish();

    let first = &seen[0].body;
    assert_eq!(first["metadata"]["name"].as_str().map(|n| n.starts_with("wf.")), Some(true));
    assert_eq!(
        (first["reason"].as_str(), first["note"].as_str()),
        (Some("KubeError"), Some("the API server is unreachable"))
    );
    assert_eq!(
        (first["type"].as_str(), first["reportingController"].as_str()),
        (Some("Warning"), Some("hitl-operator"))
    );
    assert_eq!(seen[1].path, format!("{EVENTS}/{}", first["metadata"]["name"].as_str().unwrap()));
    assert_eq!(seen[1].body["series"]["count"], 2, "the repeat is the second of the series");
    assert_eq!(seen[2].body["note"], "quota exceeded", "another note is not folded into the first");
    assert_eq!(seen[4].body["note"], "the API server is unreachable");
    assert!(seen[4].body.get("series").is_none_or(serde_json::Value::is_null), "a new Event starts a new series");
    assert_eq!(events.remembered(), 2);
}
