//! Notifications on the local cluster, with receivers this test runs on 127.0.0.1: an HTTP
//! receiver (webhook and Slack-compatible) that can fail or hang on demand, and an SMTP sink.

mod common;
mod harness;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{kubectl_ok, test_namespace, wait_for};
use harness::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const SIGNING_KEY: &str = "s3cret-signing-key";
const SLACK_TOKEN: &str = "T0KEN-IN-THE-URL";
/// The one wording of every failure on the network (engine::notify::DELIVERY_FAILED).
const DELIVERY_FAILED: &str = "not delivered: the receiver could not be reached, did not answer in time, or did \
                               not accept it (the operator's log has the detail)";

/// What a path answers.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Ok,
    /// Answers 503 this many more times, then 200.
    FailTimes(u32),
    /// Reads the request, then never answers.
    Hang,
}

#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP/1.1 receiver: records every request it read in full, answers per path.
#[derive(Clone)]
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    modes: Arc<Mutex<HashMap<String, Mode>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let r =
            Receiver { port: listener.local_addr().unwrap().port(), requests: Arc::default(), modes: Arc::default() };
        let me = r.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.serve(stream));
            }
        });
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn set(&self, path: &str, mode: Mode) {
        self.modes.lock().unwrap().insert(path.into(), mode);
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        self.requests.lock().unwrap().push(Request { path: path.clone(), headers, body });
        let mode = {
            let mut modes = self.modes.lock().unwrap();
            let mode = modes.get(&path).copied().unwrap_or(Mode::Ok);
            if let Mode::FailTimes(n) = mode {
                modes.insert(path.clone(), if n <= 1 { Mode::Ok } else { Mode::FailTimes(n - 1) });
            }
            mode
        };
        let mut stream = stream;
        match mode {
            Mode::Hang => std::thread::sleep(Duration::from_secs(3600)),
            Mode::FailTimes(_) => {
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
            Mode::Ok => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        }
    }

    fn on(&self, path: &str) -> Vec<Request> {
        self.requests.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits for a request on `path` whose idempotency key ends with `suffix`.
    fn wait(&self, path: &str, suffix: &str) -> Request {
        wait_for(&format!("{suffix} on {path}"), WAIT, || {
            self.on(path).into_iter().find(|r| r.headers.get("idempotency-key").is_some_and(|k| k.ends_with(suffix)))
        })
    }
}

/// One received e-mail: its recipients and its data (headers and body).
type Mail = (Vec<String>, String);

/// A plain SMTP sink: records each message's envelope and data, and every AUTH line it was sent.
#[derive(Clone)]
struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    auth: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sink =
            SmtpSink { port: listener.local_addr().unwrap().port(), mails: Arc::default(), auth: Arc::default() };
        let me = sink.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let me = me.clone();
                std::thread::spawn(move || me.session(stream));
            }
        });
        sink
    }

    fn session(&self, mut stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let _ = stream.write_all(b"220 sink ESMTP\r\n");
        let (mut rcpt, mut data) = (vec![], String::new());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let cmd = line.to_ascii_uppercase();
            let reply: &[u8] = if cmd.starts_with("EHLO") {
                b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
            } else if cmd.starts_with("AUTH") {
                self.auth.lock().unwrap().push(line.trim().to_string());
                b"235 accepted\r\n"
            } else if cmd.starts_with("RCPT TO:") {
                rcpt.push(line[8..].trim().to_string());
                b"250 ok\r\n"
            } else if cmd.starts_with("DATA") {
                let _ = stream.write_all(b"354 go on\r\n");
                loop {
                    let mut l = String::new();
                    reader.read_line(&mut l).unwrap();
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(&l);
                }
                self.mails.lock().unwrap().push((std::mem::take(&mut rcpt), std::mem::take(&mut data)));
                b"250 queued\r\n"
            } else if cmd.starts_with("QUIT") {
                let _ = stream.write_all(b"221 bye\r\n");
                return;
            } else {
                b"250 ok\r\n"
            };
            let _ = stream.write_all(reply);
        }
    }
}

/// What a namespace owner does to let the operator read the Secrets its channels name.
fn allow_secrets(ns: &str) {
    kubectl_ok(
        "admin",
        &[
            "-n",
            ns,
            "create",
            "rolebinding",
            "hitl-notification-secrets",
            "--clusterrole=hitl-operator-notification-secrets",
            "--serviceaccount=hitl-system:hitl-operator",
        ],
    );
}

/// What a namespace owner does to let channels reach receivers on this host (loopback, which
/// notifications may not reach otherwise): list the host in WorkflowPolicy/default.
fn allow_local_receivers(ns: &str) {
    owner_policy(ns, "notificationHosts: [127.0.0.1]");
}

/// Writes WorkflowPolicy/default with these spec fields, as the namespace owner.
fn owner_policy(ns: &str, spec: &str) {
    apply(
        ns,
        &format!(
            "apiVersion: hitl.dev/v1alpha1\nkind: WorkflowPolicy\nmetadata: {{name: default}}\nspec: {{{spec}}}\n"
        ),
    );
}

fn secret(ns: &str, name: &str, pairs: &[(&str, &str)]) {
    let mut args = vec!["-n", ns, "create", "secret", "generic", name];
    let literals: Vec<String> = pairs.iter().map(|(k, v)| format!("--from-literal={k}={v}")).collect();
    args.extend(literals.iter().map(String::as_str));
    kubectl_ok("admin", &args);
}

/// A webhook channel signed with the Secret `key` (created by the test), plus `extra` spec lines.
fn signed_webhook(ns: &str, name: &str, url: &str, extra: &str) {
    channel(ns, name, &format!("  webhook:\n    url: {url}\n    signingSecretRef: {{name: key, key: key}}\n{extra}"));
}

fn channel(ns: &str, name: &str, spec: &str) {
    apply(
        ns,
        &format!("apiVersion: hitl.dev/v1alpha1\nkind: NotificationChannel\nmetadata: {{name: {name}}}\nspec:\n{spec}"),
    );
}

/// The webhook, Slack and e-mail channels, named `hook`, `chat` and `mail`.
fn three_channels(ns: &str, rx: &Receiver, smtp: &SmtpSink) {
    secret(ns, "hook-key", &[("key", SIGNING_KEY)]);
    secret(ns, "chat-url", &[("url", &rx.url(&format!("/slack/{SLACK_TOKEN}")))]);
    channel(
        ns,
        "hook",
        &format!(
            "  webhook:\n    url: {}\n    signingSecretRef: {{name: hook-key, key: key}}\n  approvalUrlTemplate: 'https://hitl.example/{{namespace}}/{{name}}'\n",
            rx.url("/hook")
        ),
    );
    channel(ns, "chat", "  slack:\n    urlSecretRef: {name: chat-url, key: url}\n");
    channel(
        ns,
        "mail",
        &format!(
            "  email:\n    host: 127.0.0.1\n    port: {}\n    tls: None\n    from: hitl@example.com\n    to: [legal@example.com]\n",
            smtp.port
        ),
    );
}

fn gate_workflow(name: &str, notify: &str, suspend_extra: &str) -> String {
    format!(
        r#"apiVersion: hitl.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  steps:
    - name: review
      suspend:
        message: "Please review contract 7"
        approvers: {{users: [alice], groups: [legal]}}
        inputs:
          - {{name: verdict, type: string, enum: [sign, redact], required: true}}
{suspend_extra}        notify:
{notify}
    - name: after
      container: {{image: busybox:1.36}}
"#
    )
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The gate's notification records; none while the operator has not created it yet.
fn records(ns: &str, approval_name: &str) -> Vec<Value> {
    let a = get_json(ns, "approval", approval_name).unwrap_or_default();
    a["status"]["notifications"].as_array().cloned().unwrap_or_default()
}

fn notified(ns: &str, approval_name: &str) -> Option<Value> {
    approval(ns, approval_name)["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Notified").cloned()
}

#[test]
fn a_gate_tells_each_channel_what_waits_and_then_who_decided() {
    let ns = test_namespace("notify");
    allow_secrets(&ns.name);
    allow_local_receivers(&ns.name);
    let (rx, smtp) = (Receiver::start(), SmtpSink::start());
    three_channels(&ns.name, &rx, &smtp);
    let op = Operator::start(&ns.name);
    // The Workflow's author tries Slack markup in the gate message: a mention of everyone and a
    // link dressed up as the approval page.
    let markup = "Please review contract 7 <!channel> <http://evil.example|open the approval page> & sign";
    let deal = gate_workflow("deal", "          channels: [hook, chat, mail]", "        timeoutSeconds: 3600\n");
    apply(&ns.name, &deal.replace("Please review contract 7", markup));
    let a = wait_pending(&ns.name, "deal.review");
    let uid = a["metadata"]["uid"].as_str().unwrap().to_string();

    // The webhook: a CloudEvent, signed, with a stable idempotency key.
    let hook = rx.wait("/hook", "/requested");
    assert_eq!(hook.headers["idempotency-key"], format!("{uid}/requested"));
    let signature = hook.headers["x-hitl-signature"].clone();
    assert_eq!(signature, format!("sha256={}", hmac_hex(SIGNING_KEY.as_bytes(), &hook.body)), "HMAC verifies");
    assert_ne!(signature, format!("sha256={}", hmac_hex(b"another key", &hook.body)));
    let event = hook.json();
    assert_eq!(
        (event["specversion"].as_str(), event["type"].as_str()),
        (Some("1.0"), Some("dev.hitl.approval.requested"))
    );
    assert_eq!(event["id"], format!("{uid}/requested"));
    assert_eq!(event["subject"], format!("{}/deal.review", ns.name));
    let data = &event["data"];
    assert_eq!(data["message"], markup, "the webhook's JSON carries it as written");
    assert_eq!(data["approvers"]["users"][0], "alice");
    assert_eq!(data["inputs"][0]["enum"][1], "redact");
    assert_eq!(data["expiresAt"], a["spec"]["expiresAt"]);
    assert_eq!(data["approvalUrl"], format!("https://hitl.example/{}/deal.review", ns.name));
    assert_eq!(
        data["decideCommand"],
        format!("kubectl hitl approve deal.review -n {} --input verdict=<sign|redact>", ns.name)
    );

    // Slack: a readable message with the exact command, its markup characters escaped, so the
    // author's mention and link (and our own `<sign|redact>`) show as text.
    let chat_path = format!("/slack/{SLACK_TOKEN}");
    let text = rx.wait(&chat_path, "/requested").json()["text"].as_str().unwrap().to_string();
    for want in [
        format!("Decision needed: approval deal.review in {}", ns.name),
        "> Please review contract 7 &lt;!channel&gt; &lt;http://evil.example|open the approval page&gt; &amp; sign"
            .into(),
        "verdict (string, one of sign|redact, required)".into(),
        "Who may decide: alice, group:legal".into(),
        "Deadline: ".into(),
        format!("Decide: kubectl hitl approve deal.review -n {} --input verdict=&lt;sign|redact&gt;", ns.name),
    ] {
        assert!(text.contains(&want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains("<!channel>") && !text.contains("<http"), "Slack markup got through:\n{text}");

    // E-mail.
    let mail = wait_for("the request by e-mail", WAIT, || smtp.mails.lock().unwrap().first().cloned());
    assert_eq!(mail.0, ["<legal@example.com>"]);
    assert!(mail.1.contains("Subject: Decision needed: approval deal.review"), "{}", mail.1);
    assert!(mail.1.contains("Who may decide: alice, group:legal"), "{}", mail.1);

    let pending = format!("hitl_approvals_pending{{namespace=\"{}\"}} 1", ns.name);
    assert!(op.metrics().contains(&pending), "{pending} in:\n{}", op.metrics());
    patch_approval(
        "alice",
        &ns.name,
        "deal.review",
        r#"{"spec":{"decision":"Approve","input":{"verdict":"sign"},"comment":"clause 7 fine"}}"#,
    )
    .unwrap();
    let decided = rx.wait("/hook", "/decided").json();
    assert_eq!(decided["type"], "dev.hitl.approval.decided");
    assert_eq!(
        (decided["data"]["decidedBy"].as_str(), decided["data"]["comment"].as_str()),
        (Some("alice"), Some("clause 7 fine"))
    );
    assert_eq!(decided["data"]["input"]["verdict"], "sign");
    let text = rx.wait(&chat_path, "/decided").json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("Approved by alice") && text.contains("Comment: clause 7 fine"), "{text}");

    wait_for("six deliveries recorded", WAIT, || {
        let r = records(&ns.name, "deal.review");
        (r.len() == 6 && r.iter().all(|r| r["state"] == "Delivered")).then_some(())
    });
    assert_eq!(notified(&ns.name, "deal.review").unwrap()["status"], "True");
    assert_eq!(rx.on("/hook").len(), 2, "each event once");
    let metrics = op.metrics();
    assert!(
        metrics.contains(r#"hitl_notifications_total{channel_kind="webhook",event="requested",result="sent"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"hitl_notifications_total{channel_kind="slack",event="decided",result="failed"} 0"#));
    assert!(!metrics.contains(&pending), "no longer pending:\n{metrics}");
    assert!(metrics.contains("hitl_approval_decision_seconds_count 1"), "one decision timed:\n{metrics}");
    // No credential anywhere the operator writes.
    let seen = format!(
        "{}{}{}",
        approval(&ns.name, "deal.review"),
        events(&ns.name, "deal.review").join("\n"),
        std::fs::read_to_string(&op.log).unwrap()
    );
    assert!(!seen.contains(SLACK_TOKEN) && !seen.contains(SIGNING_KEY), "a credential leaked");
}

#[test]
fn a_failing_receiver_is_retried_a_hanging_one_times_out_and_neither_holds_up_the_other() {
    let ns = test_namespace("notify-retry");
    allow_secrets(&ns.name);
    allow_local_receivers(&ns.name);
    let rx = Receiver::start();
    secret(&ns.name, "key", &[("key", SIGNING_KEY)]);
    for (name, path) in [("flaky", "/flaky"), ("stuck", "/stuck"), ("fine", "/fine")] {
        signed_webhook(&ns.name, name, &rx.url(path), "");
    }
    rx.set("/flaky", Mode::FailTimes(2));
    rx.set("/stuck", Mode::Hang);
    let _op = Operator::start_with(&ns.name, "", &["--leader-elect=false", "--notification-timeout=1"]);
    apply(&ns.name, &gate_workflow("w", "          channels: [flaky, stuck, fine]", ""));
    rx.wait("/fine", "/requested");
    let flaky = wait_for("the flaky channel's third attempt to be recorded", WAIT, || {
        records(&ns.name, "w.review").into_iter().find(|r| r["channel"] == "flaky" && r["state"] == "Delivered")
    });
    assert_eq!(flaky["attempts"], 3, "{flaky}");
    assert_eq!(rx.on("/flaky").len(), 3);
    let keys: Vec<_> = rx.on("/flaky").iter().map(|r| r.headers["idempotency-key"].clone()).collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "one key for every attempt: {keys:?}");
    let stuck = wait_for("the hanging channel's timeout to be recorded", WAIT, || {
        records(&ns.name, "w.review").into_iter().find(|r| r["channel"] == "stuck" && r["lastError"].is_string())
    });
    assert_eq!(stuck["state"], "Pending", "{stuck}");
    assert_eq!(stuck["lastError"], DELIVERY_FAILED);
    let condition = notified(&ns.name, "w.review").unwrap();
    assert_eq!((condition["status"].as_str(), condition["reason"].as_str()), (Some("False"), Some("Retrying")));
    assert!(condition["message"].as_str().unwrap().contains(&format!("requested to stuck: {DELIVERY_FAILED}")));
}

#[test]
fn an_operator_killed_mid_delivery_sends_again_with_the_same_key() {
    let ns = test_namespace("notify-kill");
    allow_secrets(&ns.name);
    allow_local_receivers(&ns.name);
    let rx = Receiver::start();
    secret(&ns.name, "key", &[("key", SIGNING_KEY)]);
    signed_webhook(&ns.name, "hook", &rx.url("/hook"), "");
    rx.set("/hook", Mode::Hang);
    let mut op = Operator::start_with(&ns.name, "", &["--leader-elect=false", "--notification-timeout=30"]);
    apply(&ns.name, &gate_workflow("w", "          channels: [hook]", ""));
    let first = rx.wait("/hook", "/requested");
    op.kill();
    assert!(records(&ns.name, "w.review").is_empty(), "nothing was recorded as delivered");
    rx.set("/hook", Mode::Ok);
    op.restart();
    wait_for("the delivery to be recorded", WAIT, || {
        records(&ns.name, "w.review").into_iter().find(|r| r["state"] == "Delivered")
    });
    let sent = rx.on("/hook");
    assert!(sent.len() >= 2, "sent again after the restart: {}", sent.len());
    assert!(
        sent.iter().all(|r| r.headers["idempotency-key"] == first.headers["idempotency-key"]),
        "a duplicate carries the same key"
    );
}

#[test]
fn reminders_and_escalation_follow_the_clock_and_admission_enforces_the_escalation() {
    let ns = test_namespace("notify-escalate");
    allow_secrets(&ns.name);
    allow_local_receivers(&ns.name);
    let rx = Receiver::start();
    secret(&ns.name, "key", &[("key", SIGNING_KEY)]);
    signed_webhook(&ns.name, "hook", &rx.url("/hook"), "  default: true\n");
    signed_webhook(&ns.name, "audit", &rx.url("/audit"), "  events: [Decided, Expired]\n");
    // bob may patch approvals here (the approver role), yet he is on no gate's list.
    kubectl_ok(
        "admin",
        &["-n", &ns.name, "create", "role", "approve-all", "--verb=get,list,patch", "--resource=approvals.hitl.dev"],
    );
    kubectl_ok("admin", &["-n", &ns.name, "create", "rolebinding", "bob-approves", "--role=approve-all", "--user=bob"]);
    let _op = Operator::start(&ns.name);
    let notify = "          channels: [hook, audit]\n          reminders: {everySeconds: 2}\n          escalation:\n            afterSeconds: 6\n            approvers: {users: [bob]}";
    apply(&ns.name, &gate_workflow("w", notify, "        timeoutSeconds: 120\n"));
    wait_pending(&ns.name, "w.review");
    let refused =
        patch_approval("bob", &ns.name, "w.review", r#"{"spec":{"decision":"Approve","input":{"verdict":"sign"}}}"#)
            .expect_err("bob is not an approver before the escalation");
    assert!(refused.contains("user bob is not an approver of this gate"), "{refused}");
    let reminder = rx.wait("/hook", "/reminder/1");
    assert_eq!(reminder.json()["type"], "dev.hitl.approval.reminder");
    let escalated = rx.wait("/hook", "/escalated").json();
    assert_eq!(escalated["data"]["escalationApprovers"]["users"][0], "bob");
    let a = approval(&ns.name, "w.review");
    assert!(a["status"]["escalatedAt"].is_string(), "{a}");
    patch_approval("bob", &ns.name, "w.review", r#"{"spec":{"decision":"Approve","input":{"verdict":"sign"}}}"#)
        .expect("bob decides once the gate escalated");
    let wf = wait_phase(&ns.name, "w", "Succeeded", WAIT);
    assert_eq!(step(&wf, "review")["decidedBy"], "bob");
    let audit = rx.wait("/audit", "/decided");
    assert_eq!(audit.json()["data"]["decidedBy"], "bob");
    assert_eq!(rx.on("/audit").len(), 1, "the audit channel takes only Decided and Expired");
    let requested = rx.on("/hook").iter().filter(|r| r.headers["idempotency-key"].ends_with("/requested")).count();
    assert_eq!(requested, 1, "told once that it waits");
    let reminders = rx.on("/hook").iter().filter(|r| r.headers["idempotency-key"].contains("/reminder/")).count();
    assert!(reminders >= 2, "a reminder every 2 s over 6 s: {reminders}");
    // Inboxes are cluster-wide: wait until this operator has taken the decided gate out of them,
    // or bob's inbox would still list it in the other tests once this operator stops.
    wait_for("the decided gate to leave every inbox", WAIT, || {
        let inboxes =
            kubectl_ok("admin", &["get", "approvalinboxes", "-o", "jsonpath={.items[*].status.items[*].namespace}"]);
        (!inboxes.split_whitespace().any(|n| n == ns.name)).then_some(())
    });
}

#[test]
fn a_missing_secret_or_channel_is_told_in_status_and_the_rest_still_goes_out() {
    let ns = test_namespace("notify-missing");
    allow_secrets(&ns.name);
    allow_local_receivers(&ns.name);
    let rx = Receiver::start();
    secret(&ns.name, "key", &[("key", SIGNING_KEY)]);
    signed_webhook(&ns.name, "ok", &rx.url("/ok"), "");
    channel(
        &ns.name,
        "nokey",
        &format!("  webhook:\n    url: {}\n    signingSecretRef: {{name: absent, key: key}}\n", rx.url("/nokey")),
    );
    channel(
        &ns.name,
        "wrongkey",
        &format!("  webhook:\n    url: {}\n    signingSecretRef: {{name: key, key: other}}\n", rx.url("/wrongkey")),
    );
    let mut op = Operator::start(&ns.name);
    apply(
        &ns.name,
        &gate_workflow(
            "w",
            "          channels: [ok, nokey, wrongkey, ghost]",
            "        timeoutSeconds: 3\n        onTimeout: Reject\n",
        ),
    );
    rx.wait("/ok", "/requested");
    let errors = wait_for("the three failures recorded", WAIT, || {
        let r = records(&ns.name, "w.review");
        let errors: HashMap<String, String> = r
            .iter()
            .filter(|r| r["lastError"].is_string())
            .map(|r| (r["channel"].as_str().unwrap().to_string(), r["lastError"].as_str().unwrap().to_string()))
            .collect();
        (errors.len() == 3).then_some(errors)
    });
    // The same words whether the Secret or only its key is missing: a channel's writer learns
    // nothing of which Secrets and keys exist.
    assert_eq!(errors["nokey"], "Secret absent with a non-empty key key is not there (either may be missing)");
    assert_eq!(errors["wrongkey"], "Secret key with a non-empty key other is not there (either may be missing)");
    assert_eq!(errors["ghost"], "NotificationChannel ghost not found");
    assert!(rx.on("/nokey").is_empty() && rx.on("/wrongkey").is_empty(), "nothing sent unsigned");
    // The gate goes on: it expires, the expiry is told, and the operator never fell over.
    rx.wait("/ok", "/expired");
    wait_phase(&ns.name, "w", "Failed", WAIT);
    assert!(op.is_running(), "the operator is still up");
}

#[test]
fn without_the_namespace_owners_consent_nothing_is_read_and_the_message_waits_for_it() {
    let ns = test_namespace("notify-consent");
    allow_local_receivers(&ns.name);
    let rx = Receiver::start();
    kubectl_ok(
        "admin",
        &["-n", &ns.name, "create", "secret", "generic", "key", &format!("--from-literal=key={SIGNING_KEY}")],
    );
    signed_webhook(&ns.name, "hook", &rx.url("/hook"), "");
    // The second channel's Secret does not exist yet.
    channel(
        &ns.name,
        "later",
        &format!("  webhook:\n    url: {}\n    signingSecretRef: {{name: later-key, key: key}}\n", rx.url("/later")),
    );
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gate_workflow("w", "          channels: [hook, later]", "        timeoutSeconds: 600\n"));
    let refused = wait_for("the refusal to be recorded", WAIT, || {
        records(&ns.name, "w.review").into_iter().find(|r| r["channel"] == "hook" && r["lastError"].is_string())
    });
    let error = refused["lastError"].as_str().unwrap();
    assert!(error.starts_with("the operator may not read Secret key: a namespace owner allows it"), "{error}");
    // A configuration cause is no attempt: checked again and again (1, 2, 4 s apart), the record
    // stays Pending with no attempt counted, where 8 attempts would have given it up for good.
    let held = wait_for("the refusal checked again four times", WAIT, || {
        records(&ns.name, "w.review")
            .into_iter()
            .find(|r| r["channel"] == "hook" && r["configurationChecks"].as_i64().unwrap_or(0) >= 4)
    });
    assert_eq!((held["state"].as_str(), held["attempts"].as_i64()), (Some("Pending"), Some(0)), "{held}");
    let condition = notified(&ns.name, "w.review").unwrap();
    assert_eq!(condition["reason"], "WaitingForConfiguration", "{condition}");
    assert!(rx.on("/hook").is_empty(), "nothing sent unsigned");
    // The owner consents, and creates the missing Secret, while the gate waits: both go out.
    allow_secrets(&ns.name);
    rx.wait("/hook", "/requested");
    secret(&ns.name, "later-key", &[("key", SIGNING_KEY)]);
    rx.wait("/later", "/requested");
    let delivered = wait_for("both delivered", WAIT, || {
        let r = records(&ns.name, "w.review");
        (r.len() == 2 && r.iter().all(|r| r["state"] == "Delivered")).then_some(r)
    });
    assert!(delivered.iter().all(|r| r["attempts"] == 1), "the one attempt that went out: {delivered:?}");
}

#[test]
fn malformed_receiver_urls_are_refused_at_apply_and_checked_again_before_sending() {
    let ns = test_namespace("notify-urls");
    let hook = |url: &str| {
        format!(
            "apiVersion: hitl.dev/v1alpha1\nkind: NotificationChannel\nmetadata: {{name: bad}}\nspec:\n  webhook:\n    \
             url: \"{url}\"\n    signingSecretRef: {{name: key, key: key}}\n"
        )
    };
    // The schema's pattern saw only the prefix; the URL is parsed now, by the API server.
    for url in ["http://exa mple.com/x", "http://", "https://[::1", "https://:8080/x"] {
        let refused = apply_refused(&ns.name, &hook(url));
        assert!(
            refused.contains("spec.webhook.url")
                && refused.contains("must be a URL: http:// or https://, then a host name"),
            "{url}: {refused}"
        );
    }
    for url in ["https://audit.example.com/hitl?x=1", "http://127.0.0.1:8080/", "https://[::1]:8443/hook"] {
        apply(&ns.name, &hook(url));
    }

    // A URL from a Secret is seen only by the operator: it parses it before sending anything.
    allow_secrets(&ns.name);
    secret(&ns.name, "chat", &[("url", "http://exa mple.com/hook")]);
    channel(&ns.name, "chat", "  slack:\n    urlSecretRef: {name: chat, key: url}\n");
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &gate_workflow("w", "          channels: [chat]", "        timeoutSeconds: 600\n"));
    let error = wait_for("the refusal recorded", WAIT, || {
        records(&ns.name, "w.review").iter().find_map(|r| r["lastError"].as_str().map(str::to_string))
    });
    assert_eq!(error, "slack: the URL is not an http:// or https:// URL with a host");
    assert!(!error.contains("exa mple"), "the URL (a credential) is never told");
}

/// bob may write NotificationChannels here, and read only the Secrets named in `readable`.
fn channel_writer_bob(ns: &str, readable: &[&str]) {
    let verbs = "--verb=get,list,create,update,patch";
    kubectl_ok("admin", &["-n", ns, "create", "role", "channels", verbs, "--resource=notificationchannels.hitl.dev"]);
    kubectl_ok("admin", &["-n", ns, "create", "rolebinding", "bob-channels", "--role=channels", "--user=bob"]);
    if !readable.is_empty() {
        let names: Vec<String> = readable.iter().map(|n| format!("--resource-name={n}")).collect();
        let mut args = vec!["-n", ns, "create", "role", "some-secrets", "--verb=get", "--resource=secrets"];
        args.extend(names.iter().map(String::as_str));
        kubectl_ok("admin", &args);
        kubectl_ok("admin", &["-n", ns, "create", "rolebinding", "bob-secrets", "--role=some-secrets", "--user=bob"]);
    }
}

fn apply_as(user: &str, ns: &str, yaml: &str) -> Result<String, String> {
    let out = common::kubectl_stdin(user, &["-n", ns, "apply", "-f", "-"], yaml);
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
}

fn channel_yaml(name: &str, spec: &str) -> String {
    format!("apiVersion: hitl.dev/v1alpha1\nkind: NotificationChannel\nmetadata: {{name: {name}}}\nspec:\n{spec}")
}

#[test]
fn a_channel_writer_may_name_only_secrets_they_may_read_themselves() {
    let ns = test_namespace("notify-theft");
    let n = ns.name.as_str();
    secret(n, "db-creds", &[("username", "app"), ("password", "db-password")]);
    secret(n, "hook-key", &[("key", SIGNING_KEY)]);
    channel_writer_bob(n, &["hook-key"]);
    // The attack: bob, who may not read db-creds, sends it as SMTP credentials to his own sink.
    let theft = channel_yaml(
        "mail",
        "  email:\n    host: 127.0.0.1\n    port: 2525\n    tls: None\n    from: a@example.com\n    to: [b@example.com]\n    credentialsSecret: db-creds\n",
    );
    // A policy is enforced a moment after it is installed: wait for it with dry runs first.
    wait_for("the channel policy to take effect", WAIT, || {
        let dry = common::kubectl_stdin("bob", &["-n", n, "apply", "--dry-run=server", "-f", "-"], &theft);
        (!dry.status.success()).then_some(())
    });
    let refused = apply_as("bob", n, &theft).expect_err("bob may not name db-creds");
    assert!(
        refused.contains("spec.email.credentialsSecret: you may not get Secret db-creds")
            && refused.contains(&format!("(kubectl auth can-i get secret/db-creds -n {n})")),
        "{refused}"
    );
    for (field, spec) in [
        (
            "spec.webhook.signingSecretRef",
            "  webhook:\n    url: https://x.example/\n    signingSecretRef: {name: db-creds, key: password}\n",
        ),
        (
            "spec.webhook.urlSecretRef",
            "  webhook:\n    urlSecretRef: {name: db-creds, key: password}\n    signingSecretRef: {name: hook-key, key: key}\n",
        ),
        ("spec.slack.urlSecretRef", "  slack:\n    urlSecretRef: {name: db-creds, key: password}\n"),
    ] {
        let refused = apply_as("bob", n, &channel_yaml("c", spec)).expect_err(field);
        assert!(refused.contains(&format!("{field}: you may not get Secret db-creds")), "{field}: {refused}");
    }
    // A Secret bob may read himself is his to name.
    let own = "  webhook:\n    url: https://x.example/\n    signingSecretRef: {name: hook-key, key: key}\n";
    apply_as("bob", n, &channel_yaml("own", own)).expect("bob may name hook-key");
    // The owner's channel names db-creds; bob may not point it elsewhere, though he may label it.
    apply(n, &theft.replace("name: mail", "name: owners"));
    let redirect = theft.replace("name: mail", "name: owners").replace("port: 2525", "port: 2526");
    let refused = apply_as("bob", n, &redirect).expect_err("a redirect of the owner's channel");
    assert!(refused.contains("spec.email.credentialsSecret: you may not get Secret db-creds"), "{refused}");
    kubectl_ok("bob", &["-n", n, "label", "notificationchannel", "owners", "team=legal"]);
}

#[test]
fn smtp_credentials_go_only_over_tls_unless_the_owner_allows_plain_text() {
    let ns = test_namespace("notify-plain");
    let n = ns.name.as_str();
    allow_secrets(n);
    allow_local_receivers(n);
    let smtp = SmtpSink::start();
    secret(n, "smtp-login", &[("username", "hitl"), ("password", "smtp-password")]);
    let mail = format!(
        "  email:\n    host: 127.0.0.1\n    port: {}\n    tls: None\n    from: hitl@example.com\n    to: [legal@example.com]\n    credentialsSecret: smtp-login\n",
        smtp.port
    );
    channel(n, "mail", &mail);
    let _op = Operator::start(n);
    apply(n, &gate_workflow("w", "          channels: [mail]", "        timeoutSeconds: 600\n"));
    let held = wait_for("the refusal recorded", WAIT, || {
        records(n, "w.review").into_iter().find(|r| r["lastError"].is_string())
    });
    assert_eq!(
        held["lastError"],
        "email: credentialsSecret is set and tls is None: credentials are sent only over TLS, unless the namespace \
         owner sets WorkflowPolicy/default spec.allowPlaintextCredentials: true"
    );
    assert_eq!((held["state"].as_str(), held["attempts"].as_i64()), (Some("Pending"), Some(0)));
    assert!(smtp.auth.lock().unwrap().is_empty() && smtp.mails.lock().unwrap().is_empty(), "nothing sent");
    // The namespace owner accepts plain text for this relay: the held message goes out.
    owner_policy(n, "notificationHosts: [127.0.0.1], allowPlaintextCredentials: true");
    wait_for("the mail", WAIT, || smtp.mails.lock().unwrap().first().cloned());
    assert_eq!(smtp.auth.lock().unwrap().len(), 1, "authenticated once");
}

#[test]
fn targets_inside_the_cluster_are_refused_unless_the_owner_lists_the_host() {
    let ns = test_namespace("notify-ssrf");
    let n = ns.name.as_str();
    allow_secrets(n);
    let rx = Receiver::start();
    secret(n, "key", &[("key", SIGNING_KEY)]);
    secret(n, "chat-url", &[("url", &rx.url("/chat"))]);
    let by_name = format!("http://localhost:{}/by-name", rx.port);
    for (name, url) in [
        ("loop", rx.url("/loop")),
        ("byname", by_name),
        ("metadata", "http://169.254.169.254/latest/meta-data/".into()),
        ("service", "https://10.0.0.1/api".into()),
        ("pod", "http://10.88.1.2:8080/".into()),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{}/mapped", rx.port)),
    ] {
        signed_webhook(n, name, &url, "");
    }
    channel(n, "chat", "  slack:\n    urlSecretRef: {name: chat-url, key: url}\n");
    let smtp = SmtpSink::start();
    let mail = format!(
        "  email:\n    host: localhost\n    port: {}\n    tls: None\n    from: a@example.com\n    to: [b@example.com]\n",
        smtp.port
    );
    channel(n, "mail", &mail);
    let flags = ["--leader-elect=false", "--service-cluster-ip-range=10.0.0.0/24", "--cluster-cidr=10.88.0.0/16"];
    let _op = Operator::start_with(n, "", &flags);
    let channels = "          channels: [loop, byname, metadata, service, pod, mapped, chat, mail]";
    apply(n, &gate_workflow("w", channels, "        timeoutSeconds: 600\n"));
    let errors = wait_for("eight refusals recorded", WAIT, || {
        let r = records(n, "w.review");
        let errors: HashMap<String, String> = r
            .iter()
            .filter_map(|r| Some((r["channel"].as_str()?.to_string(), r["lastError"].as_str()?.to_string())))
            .collect();
        (errors.len() == 8).then_some(errors)
    });
    let tail = "which notifications may not reach; the namespace owner may allow the host in \
                WorkflowPolicy/default spec.notificationHosts";
    for (channel, start) in [
        ("loop", "the target 127.0.0.1 (127.0.0.1) is loopback, ".to_string()),
        ("byname", "the target localhost (".into()),
        ("metadata", "the target 169.254.169.254 (169.254.169.254) is link-local (cloud metadata), ".into()),
        ("service", "the target 10.0.0.1 (10.0.0.1) is in the cluster's Service range, ".into()),
        ("pod", "the target 10.88.1.2 (10.88.1.2) is in the cluster's Pod range, ".into()),
        ("mapped", "the target [::ffff:7f00:1] (::ffff:127.0.0.1) is loopback, ".into()),
        ("chat", "the target 127.0.0.1 (127.0.0.1) is loopback, ".into()),
        ("mail", "the target localhost (".into()),
    ] {
        let e = &errors[channel];
        assert!(e.starts_with(&start) && e.ends_with(tail), "{channel}: {e}");
    }
    assert!(rx.requests.lock().unwrap().is_empty(), "nothing reached the receiver");
    assert!(smtp.mails.lock().unwrap().is_empty(), "nothing reached the mail sink");
    // The namespace owner lists the host, while the gate waits: those channels deliver, with
    // their attempts intact. A name is matched exactly: localhost is still refused.
    owner_policy(n, "notificationHosts: [127.0.0.1]");
    rx.wait("/loop", "/requested");
    rx.wait("/chat", "/requested");
    let r = wait_for("loop delivered", WAIT, || {
        records(n, "w.review").into_iter().find(|r| r["channel"] == "loop" && r["state"] == "Delivered")
    });
    assert_eq!(r["attempts"], 1);
    std::thread::sleep(Duration::from_secs(3));
    assert!(rx.on("/by-name").is_empty() && rx.on("/mapped").is_empty(), "unlisted names stay refused");
}

#[test]
fn delivery_errors_do_not_tell_ports_apart() {
    let ns = test_namespace("notify-ports");
    let n = ns.name.as_str();
    allow_secrets(n);
    allow_local_receivers(n);
    let rx = Receiver::start();
    rx.set("/status", Mode::FailTimes(100));
    rx.set("/hang", Mode::Hang);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    secret(n, "key", &[("key", SIGNING_KEY)]);
    signed_webhook(n, "closed", &format!("http://127.0.0.1:{closed}/x"), "");
    signed_webhook(n, "status", &rx.url("/status"), "");
    signed_webhook(n, "hang", &rx.url("/hang"), "");
    let op = Operator::start_with(n, "", &["--leader-elect=false", "--notification-timeout=1"]);
    apply(n, &gate_workflow("w", "          channels: [closed, status, hang]", "        timeoutSeconds: 600\n"));
    let errors = wait_for("three failures recorded", WAIT, || {
        let r = records(n, "w.review");
        let errors: Vec<String> = r.iter().filter_map(|r| r["lastError"].as_str().map(String::from)).collect();
        (errors.len() == 3).then_some(errors)
    });
    assert!(errors.iter().all(|e| e == DELIVERY_FAILED), "one wording for a closed port, a status, a hang: {errors:?}");
    // The operator's log keeps the detail for whoever runs it.
    let log = std::fs::read_to_string(&op.log).unwrap();
    assert!(log.contains("503 Service Unavailable"), "the detail is logged");
}

#[test]
fn a_decided_gate_drops_its_waiting_requests_instead_of_retrying_them() {
    let ns = test_namespace("notify-stale");
    let n = ns.name.as_str();
    allow_secrets(n);
    allow_local_receivers(n);
    let rx = Receiver::start();
    rx.set("/hook", Mode::FailTimes(1000));
    secret(n, "key", &[("key", SIGNING_KEY)]);
    signed_webhook(n, "hook", &rx.url("/hook"), "");
    let _op = Operator::start(n);
    apply(n, &gate_workflow("w", "          channels: [hook]", "        timeoutSeconds: 600\n"));
    wait_for("the request failing", WAIT, || {
        records(n, "w.review").into_iter().find(|r| r["attempts"].as_i64().unwrap_or(0) >= 2)
    });
    patch_approval("alice", n, "w.review", r#"{"spec":{"decision":"Approve","input":{"verdict":"sign"}}}"#).unwrap();
    let dropped = wait_for("the request dropped", WAIT, || {
        records(n, "w.review")
            .into_iter()
            .find(|r| r["key"].as_str().unwrap().ends_with("/requested") && r["state"] == "Dropped")
    });
    assert_eq!(dropped["lastError"], "not sent: the gate was decided before it went out");
    // The channel recovers: it hears of the decision, and never again that a decision is needed.
    let asked = rx.on("/hook").len();
    rx.set("/hook", Mode::Ok);
    rx.wait("/hook", "/decided");
    std::thread::sleep(Duration::from_secs(3));
    let since: Vec<String> = rx.on("/hook")[asked..].iter().map(|r| r.headers["idempotency-key"].clone()).collect();
    assert!(since.iter().all(|k| k.ends_with("/decided")), "only the decision after it: {since:?}");
    let condition = notified(n, "w.review").unwrap();
    assert_eq!(condition["status"], "True", "{condition}");
    assert!(condition["message"].as_str().unwrap().contains("1 dropped as the gate ended first"), "{condition}");
}
