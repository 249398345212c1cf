//! Sending one notification to one channel. A failure is either the channel's configuration
//! (nothing was sent; the words are recorded for the namespace owner, and no attempt is counted)
//! or the network's (recorded in one wording, so a channel's writer cannot tell a closed port
//! from an open one; the detail goes to the operator's log only).

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tracing::warn;

use super::notify_target::{self as target, Allowances, HttpClients};
use crate::api::notify::{EmailChannel, SecretKeyRef, SmtpTls, WebhookChannel, receiver_url};
use crate::api::{Approval, NotificationChannel, WorkflowPolicy};
use crate::engine::notify::{self, Due, Failure, Message};
use crate::engine::notify_target::{ClusterRanges, plaintext_credentials_refused};

/// What one send needs from the operator.
pub struct Sender<'a> {
    pub client: &'a kube::Client,
    pub http: &'a HttpClients,
    pub ranges: &'a ClusterRanges,
    pub timeout: std::time::Duration,
}

fn config(e: impl Into<String>) -> Failure {
    Failure::Configuration(e.into())
}

/// A network failure: logged in full, recorded in one wording.
fn delivery(channel: &str, detail: impl std::fmt::Display) -> Failure {
    warn!(channel, detail = %detail, "notification not delivered");
    Failure::Delivery
}

impl Sender<'_> {
    /// Renders and sends one event of gate `a` to `channel`.
    pub async fn send(&self, a: &Approval, due: &Due, channel: &NotificationChannel) -> Result<(), Failure> {
        let namespace = a.metadata.namespace.clone().unwrap_or_default();
        let page = notify::page_url(channel.spec.approval_url_template.as_deref(), a);
        let message = notify::render(a, due, page.as_deref(), Timestamp::now());
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let policies: Api<WorkflowPolicy> = Api::namespaced(self.client.clone(), &namespace);
        let allowed = target::allowances(&policies).await;
        let name = channel.metadata.name.as_deref().unwrap_or_default();
        if let Some(w) = &channel.spec.webhook {
            return self.webhook(name, &secrets, &allowed, w, &message, &due.key).await;
        }
        if let Some(s) = &channel.spec.slack {
            let url = secret_text(&secrets, &s.url_secret_ref).await?;
            let url = receiver_url(&url).map_err(|e| config(format!("slack: {e}")))?;
            let text = notify::slack_text(&message.text);
            let body = serde_json::to_vec(&serde_json::json!({ "text": text })).expect("JSON");
            let client = self.http.for_url(&url, &allowed).map_err(|r| config(r.0))?;
            let request =
                client.post(url).header("Content-Type", "application/json").header("Idempotency-Key", &due.key);
            return post(name, request.body(body)).await;
        }
        if let Some(e) = &channel.spec.email {
            return self.email(name, &secrets, &allowed, e, &message, &due.key).await;
        }
        Err(config("the channel sets none of webhook, slack, email"))
    }

    /// A CloudEvent, signed with the channel's key.
    async fn webhook(
        &self,
        channel: &str,
        secrets: &Api<Secret>,
        allowed: &Allowances,
        w: &WebhookChannel,
        message: &Message,
        key: &str,
    ) -> Result<(), Failure> {
        let url = match (&w.url, &w.url_secret_ref) {
            (_, Some(r)) => secret_text(secrets, r).await?,
            (Some(u), None) => u.clone(),
            (None, None) => return Err(config("webhook: set url or urlSecretRef")),
        };
        let url = receiver_url(&url).map_err(|e| config(format!("webhook: {e}")))?;
        let signing_key = secret_bytes(secrets, &w.signing_secret_ref).await?;
        let body = serde_json::to_vec(&message.cloud_event).expect("JSON");
        let client = self.http.for_url(&url, allowed).map_err(|r| config(r.0))?;
        let request = client
            .post(url)
            .header("Content-Type", "application/cloudevents+json; charset=utf-8")
            .header("Idempotency-Key", key)
            .header("X-Hitl-Signature", notify::signature(&signing_key, &body))
            .body(body);
        post(channel, request).await
    }

    async fn email(
        &self,
        channel: &str,
        secrets: &Api<Secret>,
        allowed: &Allowances,
        e: &EmailChannel,
        message: &Message,
        key: &str,
    ) -> Result<(), Failure> {
        use lettre::AsyncTransport;
        let tls = e.tls.unwrap_or_default();
        if let Some(refused) = plaintext_credentials_refused(
            tls == SmtpTls::None,
            e.credentials_secret.is_some(),
            allowed.plaintext_credentials,
        ) {
            return Err(config(refused));
        }
        let mail = mail(e, message, key)?;
        let port = u16::try_from(e.port.unwrap_or(587)).map_err(|_| config("email: port out of range"))?;
        let address = match target::smtp_address(&e.host, port, self.ranges, allowed).await {
            Ok(ip) => ip,
            Err(target::AddressError::Refused(why)) => return Err(config(why)),
            Err(target::AddressError::Unresolved(detail)) => return Err(delivery(channel, detail)),
        };
        let mut transport = smtp_transport(e, tls, address, port, self.timeout)?;
        if let Some(name) = &e.credentials_secret {
            let user = SecretKeyRef { name: name.clone(), key: "username".into() };
            let password = SecretKeyRef { name: name.clone(), key: "password".into() };
            let login = (secret_text(secrets, &user).await?, secret_text(secrets, &password).await?);
            transport =
                transport.credentials(lettre::transport::smtp::authentication::Credentials::new(login.0, login.1));
        }
        match tokio::time::timeout(self.timeout, transport.build().send(mail)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(delivery(channel, format!("SMTP: {err}"))),
            Err(_) => Err(delivery(channel, "the SMTP server did not answer in time")),
        }
    }
}

/// The message, addressed. A bad address is the channel's configuration.
fn mail(e: &EmailChannel, message: &Message, key: &str) -> Result<lettre::Message, Failure> {
    use lettre::message::{Mailbox, header::ContentType};
    let from: Mailbox = e.from.parse().map_err(|err| config(format!("email: from {:?}: {err}", e.from)))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(&message.subject)
        .message_id(Some(format!("<{}@hitl.dev>", key.replace('/', "."))))
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        builder = builder.to(to.parse().map_err(|err| config(format!("email: to {to:?}: {err}")))?);
    }
    builder.body(message.text.clone()).map_err(|err| config(format!("email: {err}")))
}

/// An SMTP session to the checked `address`; TLS verifies the certificate against the host name.
fn smtp_transport(
    e: &EmailChannel,
    tls: SmtpTls,
    address: std::net::IpAddr,
    port: u16,
    timeout: std::time::Duration,
) -> Result<lettre::transport::smtp::AsyncSmtpTransportBuilder, Failure> {
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, Tokio1Executor};
    let parameters = || TlsParameters::new(e.host.clone()).map_err(|err| config(format!("email: {err}")));
    let tls = match tls {
        SmtpTls::StartTLS => Tls::Required(parameters()?),
        SmtpTls::TLS => Tls::Wrapper(parameters()?),
        SmtpTls::None => Tls::None,
    };
    Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.to_string())
        .port(port)
        .tls(tls)
        .timeout(Some(timeout)))
}

/// A POST whose failure is recorded in one wording whatever it was; a refused target (from the
/// resolver's check) is the channel's configuration and is told as such.
async fn post(channel: &str, request: reqwest::RequestBuilder) -> Result<(), Failure> {
    match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(delivery(channel, format!("the receiver answered {}", r.status()))),
        Err(e) => match target::refusal(&e) {
            Some(why) => Err(config(why)),
            None => Err(delivery(channel, e.without_url())),
        },
    }
}

async fn secret_bytes(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<Vec<u8>, Failure> {
    let secret = match secrets.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(config(no_secret_key(r))),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(config(format!(
                "the operator may not read Secret {}: a namespace owner allows it by binding the ClusterRole \
                 hitl-operator-notification-secrets to the operator's ServiceAccount in this namespace",
                r.name
            )));
        }
        Err(e) => return Err(config(format!("reading Secret {}: {}", r.name, super::said(&e)))),
    };
    match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
        Some(ByteString(bytes)) if !bytes.is_empty() => Ok(bytes.clone()),
        _ => Err(config(no_secret_key(r))),
    }
}

/// One message whether the Secret or only its key is missing: a channel's writer, who may not
/// read Secrets, must not learn from the recorded error which Secrets and keys exist.
fn no_secret_key(r: &SecretKeyRef) -> String {
    format!("Secret {} with a non-empty key {} is not there (either may be missing)", r.name, r.key)
}

async fn secret_text(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<String, Failure> {
    let bytes = secret_bytes(secrets, r).await?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_string())
        .map_err(|_| config(format!("Secret {} key {} is not text", r.name, r.key)))
}
