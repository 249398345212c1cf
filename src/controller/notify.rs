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
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Context;
use crate::api::notify::{DeliveryState, NotificationRecord, SecretKeyRef, SmtpTls};
use crate::api::{Approval, NotificationChannel};
use crate::engine::conditions;
use crate::engine::notify::{self, Due, Step};

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
    /// escalation, a retry).
    pub fn schedule(&self, a: &Approval, now: Timestamp) -> Option<Timestamp> {
        let (due, mut next) = notify::reached(a, now);
        if due.is_empty() {
            return next;
        }
        let namespace = a.namespace().unwrap_or_default();
        let records = a.status.as_ref().map(|s| s.notifications.as_slice()).unwrap_or_default();
        for channel in self.channels_of(a, &namespace) {
            let wanted = self.wants(&namespace, &channel);
            for d in due.iter().filter(|d| wanted.as_ref().is_none_or(|w| w.is_empty() || w.contains(&d.event))) {
                let stored = records.iter().find(|r| r.key == d.key && r.channel == channel);
                let record = self.newest(stored, &d.key, &channel);
                match notify::next_step(record.as_ref(), now) {
                    Step::Done => {}
                    Step::RetryAt(at) => next = Some(next.map_or(at, |n| n.min(at))),
                    Step::Send { attempt } => self.enqueue(Job {
                        namespace: namespace.clone(),
                        approval: a.name_any(),
                        due: d.clone(),
                        channel: channel.clone(),
                        attempt,
                    }),
                }
            }
        }
        next
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
        // Further along: more attempts, or the same attempts with an end (delivered, given up).
        let progress = |r: &NotificationRecord| (r.attempts, r.state != DeliveryState::Pending);
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

    fn done(&self, job: &Job) {
        self.in_flight.lock().expect("lock").remove(&(job.due.key.clone(), job.channel.clone()));
    }
}

/// Sends queued notifications, `workers` at a time, until the queue closes.
pub async fn run_workers(ctx: Arc<Context>, jobs: mpsc::Receiver<Job>) {
    let http = reqwest::Client::builder()
        .timeout(ctx.config.notify_timeout)
        .connect_timeout(ctx.config.notify_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");
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

/// One attempt, and its record.
async fn deliver(ctx: &Context, http: &reqwest::Client, job: &Job) {
    let approvals: Api<Approval> = Api::namespaced(ctx.client.clone(), &job.namespace);
    let Ok(Some(a)) = approvals.get_opt(&job.approval).await else { return };
    let channel = ctx.notifier.channel(&job.namespace, &job.channel);
    let result = match &channel {
        Some(c) => send(ctx, http, &a, job, c).await,
        None => Err(format!("NotificationChannel {} not found", job.channel)),
    };
    ctx.metrics.notified(channel_kind(channel.as_deref()), job.due.event.as_str(), result.is_ok());
    match &result {
        Ok(()) => info!(approval = %job.approval, channel = %job.channel, key = %job.due.key, "notified"),
        Err(e) => {
            warn!(approval = %job.approval, channel = %job.channel, attempt = job.attempt, error = %e, "notification failed")
        }
    }
    let record = notify::record_attempt(&job.due.key, &job.channel, job.attempt, result, Timestamp::now());
    ctx.notifier.remember(&record);
    if let Err(e) = persist(ctx, &approvals, &job.approval, record).await {
        // Not recorded: the next look at the Approval sends it again, with the same key.
        warn!(approval = %job.approval, error = %e, "recording a notification");
    }
}

fn channel_kind(channel: Option<&NotificationChannel>) -> &'static str {
    match channel {
        Some(c) if c.spec.webhook.is_some() => "webhook",
        Some(c) if c.spec.slack.is_some() => "slack",
        Some(c) if c.spec.email.is_some() => "email",
        _ => "unknown",
    }
}

/// Renders and sends; the error says what went wrong without any credential in it.
async fn send(
    ctx: &Context,
    http: &reqwest::Client,
    a: &Approval,
    job: &Job,
    channel: &NotificationChannel,
) -> Result<(), String> {
    let page = notify::page_url(channel.spec.approval_url_template.as_deref(), a);
    let message = notify::render(a, &job.due, page.as_deref(), Timestamp::now());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &job.namespace);
    if let Some(w) = &channel.spec.webhook {
        let url = match (&w.url, &w.url_secret_ref) {
            (_, Some(r)) => secret_text(&secrets, r).await?,
            (Some(u), None) => u.clone(),
            (None, None) => return Err("webhook: set url or urlSecretRef".into()),
        };
        let url = crate::api::notify::receiver_url(&url).map_err(|e| format!("webhook: {e}"))?;
        let key = secret_bytes(&secrets, &w.signing_secret_ref).await?;
        let body = serde_json::to_vec(&message.cloud_event).expect("JSON");
        let request = http
            .post(url)
            .header("Content-Type", "application/cloudevents+json; charset=utf-8")
            .header("Idempotency-Key", &job.due.key)
            .header("X-Hitl-Signature", notify::signature(&key, &body))
            .body(body);
        return post(request).await;
    }
    if let Some(s) = &channel.spec.slack {
        let url = secret_text(&secrets, &s.url_secret_ref).await?;
        let url = crate::api::notify::receiver_url(&url).map_err(|e| format!("slack: {e}"))?;
        let body = serde_json::to_vec(&serde_json::json!({"text": notify::slack_text(&message.text)})).expect("JSON");
        let request = http.post(url).header("Content-Type", "application/json").header("Idempotency-Key", &job.due.key);
        return post(request.body(body)).await;
    }
    if let Some(e) = &channel.spec.email {
        return email(ctx, &secrets, e, &message, &job.due.key).await;
    }
    Err("the channel sets none of webhook, slack, email".into())
}

/// A POST whose failure is told without its URL (the URL may be the credential).
async fn post(request: reqwest::RequestBuilder) -> Result<(), String> {
    match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the receiver answered {}", r.status())),
        Err(e) if e.is_timeout() => Err("the receiver did not answer in time".into()),
        Err(e) if e.is_connect() => Err("could not connect to the receiver".into()),
        Err(e) => Err(format!("sending failed: {}", e.without_url())),
    }
}

async fn email(
    ctx: &Context,
    secrets: &Api<Secret>,
    e: &crate::api::notify::EmailChannel,
    message: &notify::Message,
    key: &str,
) -> Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let from: Mailbox = e.from.parse().map_err(|err| format!("email: from {:?}: {err}", e.from))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(&message.subject)
        .message_id(Some(format!("<{}@hitl.dev>", key.replace('/', "."))))
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        builder = builder.to(to.parse().map_err(|err| format!("email: to {to:?}: {err}"))?);
    }
    let mail = builder.body(message.text.clone()).map_err(|err| format!("email: {err}"))?;
    let port = u16::try_from(e.port.unwrap_or(587)).map_err(|_| "email: port out of range".to_string())?;
    let transport = match e.tls.unwrap_or_default() {
        SmtpTls::StartTLS => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&e.host),
        SmtpTls::TLS => AsyncSmtpTransport::<Tokio1Executor>::relay(&e.host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&e.host)),
    }
    .map_err(|err| format!("email: {err}"))?;
    let mut transport = transport.port(port).timeout(Some(ctx.config.notify_timeout));
    if let Some(name) = &e.credentials_secret {
        let user = SecretKeyRef { name: name.clone(), key: "username".into() };
        let password = SecretKeyRef { name: name.clone(), key: "password".into() };
        transport = transport
            .credentials(Credentials::new(secret_text(secrets, &user).await?, secret_text(secrets, &password).await?));
    }
    let sent = tokio::time::timeout(ctx.config.notify_timeout, transport.build().send(mail)).await;
    match sent {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(format!("SMTP: {err}")),
        Err(_) => Err("the SMTP server did not answer in time".into()),
    }
}

async fn secret_bytes(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<Vec<u8>, String> {
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(no_secret_key(r)),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(format!(
                "the operator may not read Secret {}: a namespace owner allows it by binding the ClusterRole \
                 hitl-operator-notification-secrets to the operator's ServiceAccount in this namespace",
                r.name
            ));
        }
        Err(e) => return Err(format!("reading Secret {}: {}", r.name, super::said(&e))),
    };
    match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
        Some(ByteString(bytes)) if !bytes.is_empty() => Ok(bytes.clone()),
        _ => Err(no_secret_key(r)),
    }
}

/// One message whether the Secret or only its key is missing: a channel's writer, who may not
/// read Secrets, must not learn from the recorded error which Secrets and keys exist.
fn no_secret_key(r: &SecretKeyRef) -> String {
    format!("Secret {} with a non-empty key {} is not there (either may be missing)", r.name, r.key)
}

async fn secret_text(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<String, String> {
    let bytes = secret_bytes(secrets, r).await?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_string())
        .map_err(|_| format!("Secret {} key {} is not text", r.name, r.key))
}

/// Writes one record into the Approval's status (and the `Notified` condition), on the freshest
/// copy, retrying on conflicts with the controller's own writes.
async fn persist(
    ctx: &Context,
    approvals: &Api<Approval>,
    name: &str,
    record: NotificationRecord,
) -> Result<(), String> {
    for _ in 0..5 {
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

/// `Notified`: True once everything sent was delivered; False with the failures otherwise.
fn notified_condition(records: &[NotificationRecord]) -> conditions::Wanted<'static> {
    let failing: Vec<String> = records
        .iter()
        .filter(|r| r.state != DeliveryState::Delivered)
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
    match (failing.is_empty(), given_up) {
        (true, _) => ("Notified", "True", "Delivered", format!("{} notification(s) delivered", records.len())),
        (false, true) => ("Notified", "False", "DeliveryFailed", failing.join("; ")),
        (false, false) => ("Notified", "False", "Retrying", failing.join("; ")),
    }
}
