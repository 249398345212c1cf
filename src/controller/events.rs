//! Publishing Events (events.k8s.io/v1), a repeat folded into its first Event's series.
//!
//! kube's `Recorder` does the folding by keeping every Event it published, whole, for six minutes,
//! and scanning them all under one lock on each publish: with thousands of runs that was tens of
//! MiB and a cost that grows with the number kept (#24). It also folds by reason alone, so a second
//! Event of the same reason on an object showed the first one's note. Here a repeat is the same
//! object, type, reason and note; what folding needs is kept (a digest of that, the Event's name,
//! its count and time), for six minutes and at most `KEPT` of them.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as KubeEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use sha2::{Digest, Sha256};

/// How long a published Event takes repeats into its series (as kubectl's and kube's recorders).
const FOLD_FOR: SignedDuration = SignedDuration::from_mins(6);
/// Events remembered for folding; past it the expired go, and if none has, all (a repeat then
/// starts a new Event, which is harmless).
const KEPT: usize = 4096;

pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<[u8; 16], Published>>,
}

#[derive(Clone)]
struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// One Event to publish.
pub struct Note<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub note: String,
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        let instance = instance.unwrap_or_else(|| controller.to_string());
        Self { client, controller: controller.into(), instance, published: Mutex::default() }
    }

    /// Publishes `note` on `regarding`: a new Event, or the next occurrence in the series of the
    /// same one published less than six minutes ago.
    pub async fn publish(&self, note: &Note<'_>, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = key(note, regarding);
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Some(earlier) = self.repeat_of(&key, now) {
            let count = earlier.count + 1;
            let series = EventSeries { count, last_observed_time: MicroTime(now) };
            let body = serde_json::json!({ "series": series });
            match api.patch(&earlier.name, &PatchParams::default(), &Patch::Merge(&body)).await {
                Ok(_) => {
                    self.remember(key, Published { count, last: now, ..earlier });
                    return Ok(());
                }
                // Gone (the API server's Event TTL, or deleted): a new Event says it again.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(note, regarding, &namespace, now);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, Published { name, count: 1, last: now });
        Ok(())
    }

    fn repeat_of(&self, key: &[u8; 16], now: Timestamp) -> Option<Published> {
        let published = self.published.lock().expect("lock");
        published.get(key).filter(|p| p.last + FOLD_FOR > now).cloned()
    }

    fn remember(&self, key: [u8; 16], what: Published) {
        let mut published = self.published.lock().expect("lock");
        if published.len() >= KEPT && !published.contains_key(&key) {
            let now = Timestamp::now();
            published.retain(|_, p| p.last + FOLD_FOR > now);
            if published.len() >= KEPT {
                published.clear();
            }
        }
        published.insert(key, what);
    }

    fn event(&self, note: &Note<'_>, regarding: &ObjectReference, namespace: &str, now: Timestamp) -> KubeEvent {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some("Reconcile".into()),
            reason: Some(note.reason.into()),
            note: Some(note.note.clone()),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.into()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }

    /// Events remembered for folding (for tests).
    pub fn remembered(&self) -> usize {
        self.published.lock().expect("lock").len()
    }
}

/// What makes two Events the same: the object (by UID, so a new object of the same name starts
/// afresh), the type, the reason and the note.
fn key(note: &Note<'_>, regarding: &ObjectReference) -> [u8; 16] {
    let mut hash = Sha256::new();
    for part in [
        regarding.uid.as_deref(),
        regarding.kind.as_deref(),
        regarding.namespace.as_deref(),
        regarding.name.as_deref(),
        Some(if note.warning { "Warning" } else { "Normal" }),
        Some(note.reason),
        Some(note.note.as_str()),
    ] {
        let part = part.unwrap_or_default();
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize()[..16].try_into().expect("16 bytes")
}
