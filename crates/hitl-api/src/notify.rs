//! Notifications: the `NotificationChannel` custom resource (where to tell people, defined once
//! per namespace by its owner, credentials in Secrets) and what a gate asks for (`notify`:
//! channels, reminders, escalation).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::shared::Approvers;

/// Where to tell people that a decision waits, and what happened to it. Exactly one of
/// `webhook`, `slack` or `email`. Credentials live in Secrets of the same namespace, never here or
/// in a Workflow; the operator reads only the keys named.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hitl.dev",
    version = "v1alpha1",
    kind = "NotificationChannel",
    namespaced,
    shortname = "nch",
    category = "hitl",
    derive = "Default",
    derive = "PartialEq",
    doc = "Where to tell people that a decision waits: a signed webhook (CloudEvents), a Slack-compatible incoming webhook, or e-mail over SMTP.",
    printcolumn(name = "Default", type_ = "boolean", json_path = ".spec.default"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.webhook) ? 1 : 0) + (has(self.slack) ? 1 : 0) + (has(self.email) ? 1 : 0) == 1",
    "message": "set exactly one of webhook, slack or email",
}]))]
pub struct NotificationChannelSpec {
    /// A generic webhook: each event is POSTed as a CloudEvents 1.0 JSON document (structured
    /// mode), its body signed with HMAC-SHA256 in the header `X-Hitl-Signature: sha256=<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookChannel>,
    /// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): a readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    /// E-mail over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
    /// The events sent here. Default: all of them. An audit channel takes `Decided` and `Expired`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 6))]
    pub events: Vec<NotificationEvent>,
    /// Used by every gate in the namespace that does not name its channels.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// A link to the approval page, shown in messages: `{namespace}` and `{name}` are replaced
    /// with the Approval's, e.g. `https://hitl.example.com/approvals/{namespace}/{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub approval_url_template: Option<String>,
}

/// One key of a Secret in the channel's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A generic webhook receiving CloudEvents.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookChannel {
    /// Where to POST (http or https). Use `urlSecretRef` instead when the URL holds a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://"))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "isURL(self) && url(self).getHostname() != ''",
        "message": "must be a URL: http:// or https://, then a host name, then an optional port and path (no spaces)",
    }]))]
    pub url: Option<String>,
    /// The URL, read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// The HMAC-SHA256 key the body is signed with (required: a receiver must be able to tell
    /// the operator's messages from anyone's).
    pub signing_secret_ref: SecretKeyRef,
}

/// The receiver's URL, checked again before anything is sent (the API server checks `url` at
/// apply; a URL from a Secret is checked only here). The error never contains the URL: it may
/// be the credential.
pub fn receiver_url(text: &str) -> Result<url::Url, String> {
    let bad = || "the URL is not an http:// or https:// URL with a host".to_string();
    let url = url::Url::parse(text.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(url)
}

/// A Slack-compatible incoming webhook; its URL is the credential, so it lives in a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackChannel {
    /// The incoming-webhook URL.
    pub url_secret_ref: SecretKeyRef,
}

/// E-mail over SMTP.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailChannel {
    /// The SMTP server's host name.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Its port. Default 587 (submission with STARTTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// `StartTLS` (default: refuse a server that does not offer it), `TLS` (implicit TLS, port
    /// 465), or `None` (plain text: only for a relay on the same host or a trusted network; with a
    /// `credentialsSecret` only where WorkflowPolicy/default sets `allowPlaintextCredentials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    /// The sender address.
    #[schemars(length(min = 3, max = 320))]
    pub from: String,
    /// The recipients.
    #[schemars(length(min = 1, max = 64), inner(length(min = 3, max = 320)))]
    pub to: Vec<String>,
    /// A Secret with keys `username` and `password` for SMTP AUTH, sent only over TLS. Unset: no
    /// authentication. Whoever writes the channel must be allowed to `get` it (admission policy
    /// `hitl-notification-channel-secrets`), as for every Secret a channel names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credentials_secret: Option<String>,
}

/// How the SMTP connection is protected.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SmtpTls {
    #[default]
    StartTLS,
    TLS,
    None,
}

/// What happened to a gate.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum NotificationEvent {
    /// The gate opened and waits for a decision.
    Requested,
    /// It still waits.
    Reminder,
    /// More approvers may now decide.
    Escalated,
    /// Someone decided (who, what, input, comment).
    Decided,
    /// Nobody decided in time.
    Expired,
    /// The run ended without it (another step failed, the deadline passed).
    Cancelled,
}

impl NotificationEvent {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Reminder => "reminder",
            Self::Escalated => "escalated",
            Self::Decided => "decided",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Whom a gate tells, and when. Copied onto its Approval.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifySpec {
    /// NotificationChannels of the namespace to send to. Unset: the namespace's `default`
    /// channels. Empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 8), inner(length(max = 253)))]
    pub channels: Option<Vec<String>>,
    /// Reminders while the gate waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminders: Option<Reminders>,
    /// After a delay, more approvers may decide (and are told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
}

/// When to remind.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reminders {
    /// Every this many seconds while the gate waits (at most 50 reminders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub every_seconds: Option<i64>,
    /// This many seconds before the deadline (needs `timeoutSeconds`), e.g. `[3600, 600]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub before_deadline_seconds: Vec<i64>,
}

/// Who else may decide, and from when.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Escalation {
    /// Seconds after the gate opened.
    #[schemars(range(min = 1))]
    pub after_seconds: i64,
    /// Who may decide from then on, besides the gate's approvers. The same admission policy
    /// enforces them, only once the operator recorded the escalation (`status.escalatedAt`).
    pub approvers: Approvers,
}

/// One notification of one event to one channel: the record that makes delivery at-least-once
/// across restarts.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// The idempotency key sent with it (`<approval uid>/<event>[/<n>]`); a receiver drops
    /// repeats of a key.
    pub key: String,
    /// The NotificationChannel.
    pub channel: String,
    /// `Delivered`, `Pending` (will be retried), `Failed` (gave up) or `Dropped` (the gate ended
    /// before a "decision needed" message went out, so it never will).
    pub state: DeliveryState,
    /// Attempts so far: times it was sent. A refusal for the channel's configuration (no consent
    /// to read its Secrets, a missing Secret, a refused target) is no attempt.
    pub attempts: i32,
    /// Times the channel's configuration was found wanting since the last attempt. The record
    /// stays `Pending` and is checked again after 1, 2, 4 ... s (at most 30 s apart) while the gate
    /// waits, so it goes out once the namespace owner fixed the cause. (Once the gate ended, such a
    /// cause counts as an attempt.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub configuration_checks: i32,
    /// When the last attempt was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<Time>,
    /// Why the last attempt failed (never a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Where one notification stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeliveryState {
    #[default]
    Pending,
    Delivered,
    Failed,
    /// Not sent, and never will be: the gate was decided, expired or cancelled first, so telling
    /// people that it waits would be wrong.
    Dropped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_urls_are_parsed_not_prefix_matched() {
        assert!(receiver_url("https://audit.example.com/hitl").is_ok());
        assert!(receiver_url("http://127.0.0.1:8080/x?y=1").is_ok());
        for bad in ["http://exa mple.com/x", "http://", "https://[::1", "ftp://example.com/", "example.com"] {
            let e = receiver_url(bad).unwrap_err();
            assert!(!e.contains("example") && !e.contains("::1"), "the error names no URL: {e}");
        }
    }
}
