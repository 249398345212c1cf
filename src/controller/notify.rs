//! Notification delivery: the Approval controller says what is due (`schedule`); a bounded pool
//! of workers sends it, each request under a timeout, and records the outcome in the Approval's
//! status (`status.notifications`, condition `Notified`). A failing or hanging channel only ever
//! occupies these workers, never a reconcile. The record is what makes delivery at-least-once:
//! after a restart whatever is not recorded `Delivered` is sent again, with the same key.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Context;
use super::notify_send::Sender;
use super::notify_target::HttpClients;
use crate::api::notify::{DeliveryState, NotificationRecord};
use crate::api::{Approval, NotificationChannel};
use crate::engine::conditions;
use crate::engine::notify::{self, Due, Failure, Step};

/// Notifications waiting for a worker; beyond this the Approval controller tries again later.
const QUEUE: usize = 1024;
/// How long a written record is remembered: far longer than a watch takes to deliver the write.
const RECENT_KEPT: Duration = Duration::from_secs(300);

/// One notification to send.
#[derive(Debug, Clone)]
pub struct Job {
    namespace: String,
    approval: String,
    due: Due,
    channel: String,
    attempt: i32,
    /// The record of earlier tries, which the new one builds on.
    previous: Option<NotificationRecord>,
}

/// The Approval controller's handle on delivery.
pub struct Notifier {
    queue: mpsc::Sender<Job>,
    /// (key, channel) pairs queued or being sent, so a reconcile does not queue them twice.
    in_flight: Mutex<HashSet<(String, String)>>,
    /// The records this process wrote lately: a reconcile may still hold a copy of the Approval
    /// from before the write (its staleness check ran before the worker finished), and must not
    /// send again what was just delivered.
    recent: Mutex<HashMap<(String, String), (NotificationRecord, Instant)>>,
    channels: Store<NotificationChannel>,
}

impl Notifier {
    /// The notifier, the receiving end for `run_workers`, and the channel watch to drive.
    pub fn new(
        client: &Client,
        config: &super::Config,
    ) -> (Arc<Self>, mpsc::Receiver<Job>, impl std::future::Future<Output = ()> + use<>) {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let api: Api<NotificationChannel> = super::api_in(client, config);
        let (channels, writer) = reflector::store();
        let watch = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff().for_each(
            |event| async move {
                if let Err(e) = event {
                    warn!(error = %e, "NotificationChannel watch");
                }
            },
        );
        let notifier = Self { queue, in_flight: Mutex::default(), recent: Mutex::default(), channels };
        (Arc::new(notifier), jobs, watch)
    }

    /// Queues what `a` owes its channels now; returns when to look again (a reminder, an
    /// escalation, a retry). An ended gate's waiting "decision needed" records are queued too: the
    /// worker records them `Dropped`.
    pub fn schedule(&self, a: &Approval, now: Timestamp) -> Option<Timestamp> {
        let (due, mut next) = notify::reached(a, now);
        let namespace = a.namespace().unwrap_or_default();
        for stale in notify::stale_after_end(a) {
            let Some(event) = notify::event_of_key(&stale.key) else { continue };
            let due = Due { event, key: stale.key.clone() };
            self.enqueue(self.job(a, &namespace, &due, &stale.channel, stale.attempts + 1, Some(stale.clone())));
        }
        let records = a.status.as_ref().map(|s| s.notifications.as_slice()).unwrap_or_default();
        for channel in if due.is_empty() { vec![] } else { self.channels_of(a, &namespace) } {
            let wanted = self.wants(&namespace, &channel);
            for d in due.iter().filter(|d| wanted.as_ref().is_none_or(|w| w.is_empty() || w.contains(&d.event))) {
                let stored = records.iter().find(|r| r.key == d.key && r.channel == channel);
                let record = self.newest(stored, &d.key, &channel);
                match notify::next_step(record.as_ref(), now) {
                    Step::Done => {}
                    Step::RetryAt(at) => next = Some(next.map_or(at, |n| n.min(at))),
                    Step::Send { attempt } => self.enqueue(self.job(a, &namespace, d, &channel, attempt, record)),
                }
            }
        }
        next
    }

    fn job(
        &self,
        a: &Approval,
        namespace: &str,
        due: &Due,
        channel: &str,
        attempt: i32,
        previous: Option<NotificationRecord>,
    ) -> Job {
        Job {
            namespace: namespace.to_string(),
            approval: a.name_any(),
            due: due.clone(),
            channel: channel.to_string(),
            attempt,
            previous,
        }
    }

    /// The gate's channels: those it names, or the namespace's defaults.
    fn channels_of(&self, a: &Approval, namespace: &str) -> Vec<String> {
        match a.spec.gate.notify.as_ref().and_then(|n| n.channels.clone()) {
            Some(named) => named,
            None => self
                .channels
                .state()
                .iter()
                .filter(|c| c.namespace().as_deref() == Some(namespace) && c.spec.default)
                .map(|c| c.name_any())
                .collect(),
        }
    }

    /// The events a channel takes (empty: all); None when the channel is unknown (the attempt
    /// then records that it is missing).
    fn wants(&self, namespace: &str, channel: &str) -> Option<Vec<crate::api::NotificationEvent>> {
        self.channel(namespace, channel).map(|c| c.spec.events.clone())
    }

    /// A channel as the watch has it: read there, never fetched per notification.
    fn channel(&self, namespace: &str, name: &str) -> Option<Arc<NotificationChannel>> {
        self.channels.get(&reflector::ObjectRef::new(name).within(namespace))
    }

    /// The Approval's record, or the one this process wrote since, whichever is further along.
    fn newest(&self, stored: Option<&NotificationRecord>, key: &str, channel: &str) -> Option<NotificationRecord> {
        let mut recent = self.recent.lock().expect("lock");
        recent.retain(|_, (_, at)| at.elapsed() < RECENT_KEPT);
        let mine = recent.get(&(key.to_string(), channel.to_string())).map(|(r, _)| r.clone());
        // Further along: more attempts, or the same attempts with an end (delivered, given up,
        // dropped), or more checks of a configuration that held it up.
        let progress = |r: &NotificationRecord| (r.attempts, r.state != DeliveryState::Pending, r.configuration_checks);
        stored.cloned().into_iter().chain(mine).max_by_key(progress)
    }

    fn remember(&self, record: &NotificationRecord) {
        let id = (record.key.clone(), record.channel.clone());
        self.recent.lock().expect("lock").insert(id, (record.clone(), Instant::now()));
    }

    fn enqueue(&self, job: Job) {
        let id = (job.due.key.clone(), job.channel.clone());
        if !self.in_flight.lock().expect("lock").insert(id.clone()) {
            return;
        }
        if let Err(e) = self.queue.try_send(job) {
            // Full: the next reconcile of this Approval queues it again.
            warn!(error = %e, "notification queue full");
            self.in_flight.lock().expect("lock").remove(&id);
        }
    }

    pub(super) fn done(&self, job: &Job) {
        self.in_flight.lock().expect("lock").remove(&(job.due.key.clone(), job.channel.clone()));
    }
}

/// Sends queued notifications, `workers` at a time, until the queue closes.
pub async fn run_workers(ctx: Arc<Context>, jobs: mpsc::Receiver<Job>) {
    let http = HttpClients::new(ctx.config.notify_timeout, ctx.config.notify_ranges.clone());
    let workers = usize::from(ctx.config.notify_workers.max(1));
    tokio_stream_of(jobs)
        .for_each_concurrent(workers, |job| {
            let (ctx, http) = (ctx.clone(), http.clone());
            async move {
                deliver(&ctx, &http, &job).await;
                ctx.notifier.done(&job);
            }
        })
        .await;
}

fn tokio_stream_of(mut rx: mpsc::Receiver<Job>) -> impl futures::Stream<Item = Job> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// One try, and its record. The gate is read fresh first: one that ended meanwhile is no longer
/// announced as waiting (its record says so instead).
pub(super) async fn deliver(ctx: &Context, http: &HttpClients, job: &Job) {
    let approvals: Api<Approval> = Api::namespaced(ctx.client.clone(), &job.namespace);
    let Ok(Some(a)) = approvals.get_opt(&job.approval).await else { return };
    let record = match notify::drop_reason(&a, job.due.event) {
        Some(reason) => dropped(job, reason),
        None => attempt(ctx, http, &a, job).await,
    };
    match persist(ctx, &approvals, &job.approval, record.clone()).await {
        // Remembered only once recorded: what this process remembers is what the watch will
        // bring, so a record that was never written is not taken for done.
        Ok(()) => ctx.notifier.remember(&record),
        // Not recorded: the next look at the Approval sends it again, with the same key.
        Err(e) => warn!(approval = %job.approval, error = %e, "recording a notification"),
    }
}

fn dropped(job: &Job, reason: String) -> NotificationRecord {
    info!(approval = %job.approval, channel = %job.channel, key = %job.due.key, "dropped: the gate ended");
    let base = job.previous.clone().unwrap_or_else(|| NotificationRecord {
        key: job.due.key.clone(),
        channel: job.channel.clone(),
        ..Default::default()
    });
    notify::dropped(&base, reason)
}

/// Sends, counts and logs one try; returns its record.
async fn attempt(ctx: &Context, http: &HttpClients, a: &Approval, job: &Job) -> NotificationRecord {
    let channel = ctx.notifier.channel(&job.namespace, &job.channel);
    let sender =
        Sender { client: &ctx.client, http, ranges: &ctx.config.notify_ranges, timeout: ctx.config.notify_timeout };
    let result = match &channel {
        Some(c) => sender.send(a, &job.due, c).await,
        None => Err(Failure::Configuration(format!("NotificationChannel {} not found", job.channel))),
    };
    ctx.metrics.notified(channel_kind(channel.as_deref()), job.due.event.as_str(), result.is_ok());
    match &result {
        Ok(()) => info!(approval = %job.approval, channel = %job.channel, key = %job.due.key, "notified"),
        Err(Failure::Configuration(e)) => {
            warn!(approval = %job.approval, channel = %job.channel, error = %e, "notification held by its configuration")
        }
        Err(Failure::Delivery) => {
            warn!(approval = %job.approval, channel = %job.channel, attempt = job.attempt, "notification failed")
        }
    }
    let previous = job.previous.as_ref();
    notify::record_attempt(
        previous,
        &job.due.key,
        &job.channel,
        job.attempt,
        result,
        notify::waits(a),
        Timestamp::now(),
    )
}

fn channel_kind(channel: Option<&NotificationChannel>) -> &'static str {
    match channel {
        Some(c) if c.spec.webhook.is_some() => "webhook",
        Some(c) if c.spec.slack.is_some() => "slack",
        Some(c) if c.spec.email.is_some() => "email",
        _ => "unknown",
    }
}

/// Writes one record into the Approval's status (and the `Notified` condition), on the freshest
/// copy, retrying on conflicts with the controller's own writes.
async fn persist(
    ctx: &Context,
    approvals: &Api<Approval>,
    name: &str,
    record: NotificationRecord,
) -> Result<(), String> {
    for tried in 0..5u32 {
        if tried > 0 {
            // Every channel's worker writes this status: let the others' writes through.
            tokio::time::sleep(std::time::Duration::from_millis(25 * u64::from(tried))).await;
        }
        let Some(mut a) = approvals.get_opt(name).await.map_err(|e| super::said(&e))? else { return Ok(()) };
        let status = a.status.get_or_insert_with(Default::default);
        status.notifications.retain(|r| !(r.key == record.key && r.channel == record.channel));
        status.notifications.push(record.clone());
        let old = status.conditions.clone();
        let notified = notified_condition(&status.notifications);
        let mut merged: Vec<_> = old.iter().filter(|c| c.type_ != "Notified").cloned().collect();
        merged.extend(conditions::merge(
            &old,
            vec![notified],
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
            a.metadata.generation,
        ));
        status.conditions = merged;
        match super::write_status(ctx, &a, "approval_notification").await {
            Ok(super::Written::Done) => return Ok(()),
            Ok(super::Written::Stale) => debug!(approval = name, "status changed meanwhile; retrying"),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("status kept changing".into())
}

/// `Notified`: True once everything owed was delivered (or dropped because the gate ended);
/// False with the failures otherwise, reason `WaitingForConfiguration` while a channel's
/// configuration holds one up (the namespace owner can fix that).
fn notified_condition(records: &[NotificationRecord]) -> conditions::Wanted<'static> {
    let open = |r: &&NotificationRecord| !matches!(r.state, DeliveryState::Delivered | DeliveryState::Dropped);
    let failing: Vec<String> = records
        .iter()
        .filter(open)
        .map(|r| {
            format!(
                "{} to {}: {}",
                r.key.split_once('/').map_or(r.key.as_str(), |(_, e)| e),
                r.channel,
                r.last_error.clone().unwrap_or_default()
            )
        })
        .collect();
    let given_up = records.iter().any(|r| r.state == DeliveryState::Failed);
    let held = records.iter().filter(open).any(|r| r.configuration_checks > 0);
    let delivered = records.iter().filter(|r| r.state == DeliveryState::Delivered).count();
    let dropped = records.len() - delivered - failing.len();
    match (failing.is_empty(), given_up, held) {
        (true, _, _) if dropped > 0 => (
            "Notified",
            "True",
            "Delivered",
            format!("{delivered} notification(s) delivered, {dropped} dropped as the gate ended first"),
        ),
        (true, _, _) => ("Notified", "True", "Delivered", format!("{delivered} notification(s) delivered")),
        (false, true, _) => ("Notified", "False", "DeliveryFailed", failing.join("; ")),
        (false, false, true) => ("Notified", "False", "WaitingForConfiguration", failing.join("; ")),
        (false, false, false) => ("Notified", "False", "Retrying", failing.join("; ")),
    }
}
