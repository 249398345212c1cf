//! A kube `Client` whose API server is a script. Each request the controller sends must be the
//! next one the script expects (method and path prefix) and gets that expectation's answer, so the
//! script itself pins the order of the side effects. Events (events.k8s.io) may come anywhere:
//! they are answered as created and logged with the rest, so a test can say where they came and
//! whether any did.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the controller sent.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    /// The request's JSON body; Null when it had none.
    pub body: Value,
}

impl Seen {
    pub fn is_event(&self) -> bool {
        self.path.starts_with("/apis/events.k8s.io/")
    }
}

/// What the API server answers to one expected request.
pub enum Reply {
    /// The request's own body, as stored: a create or a replace that took.
    Stored,
    /// This object (a GET).
    Object(Value),
    /// A refusal: the HTTP code and the message of the `Status` the API server sends.
    Refused(u16, String),
}

impl Reply {
    pub fn object<T: serde::Serialize>(o: &T) -> Self {
        Reply::Object(serde_json::to_value(o).expect("serializable"))
    }

    /// What a DELETE that took answers.
    pub fn deleted() -> Self {
        Reply::Object(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
    }

    pub fn not_found() -> Self {
        Reply::Refused(404, "not found".into())
    }

    pub fn conflict() -> Self {
        Reply::Refused(409, "the object has been modified; please apply your changes to the latest version".into())
    }
}

struct Expected {
    method: Method,
    path: String,
    reply: Reply,
}

/// The requests a test expects, in order, with their answers.
#[derive(Default)]
pub struct ApiScript {
    expected: VecDeque<Expected>,
    /// Events are answered as stored without being scripted, unless this is set.
    events_scripted: bool,
}

impl ApiScript {
    /// Expects `method` on a path starting with `path` next.
    pub fn then(mut self, method: Method, path: impl Into<String>, reply: Reply) -> Self {
        self.expected.push_back(Expected { method, path: path.into(), reply });
        self
    }

    /// Events, too, must come as the script says (for the tests of Event publishing).
    pub fn events_scripted(mut self) -> Self {
        self.events_scripted = true;
        self
    }

    /// A Client whose requests this script answers, and the handle to check the script with.
    pub fn serve(self) -> (Client, Served) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State {
            expected: self.expected,
            events_scripted: self.events_scripted,
            ..Default::default()
        }));
        let answering = state.clone();
        let task = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let seen = Seen {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (code, body) = answering.lock().expect("lock").answer(seen);
                let response = Response::builder().status(code).body(Body::from(body.to_string().into_bytes()));
                respond.send_response(response.expect("a valid response"));
            }
        });
        (Client::new(service, "default"), Served { state, task })
    }
}

#[derive(Default)]
struct State {
    expected: VecDeque<Expected>,
    events_scripted: bool,
    seen: Vec<Seen>,
    /// What went against the script; each was answered 500.
    wrong: Vec<String>,
    /// The resourceVersion of the next object stored.
    version: u64,
}

impl State {
    fn answer(&mut self, seen: Seen) -> (u16, Value) {
        self.seen.push(seen.clone());
        if seen.is_event() && !self.events_scripted {
            return (201, self.store(seen.body));
        }
        let Some(next) = self.expected.pop_front() else {
            self.wrong.push(format!("unexpected {} {}", seen.method, seen.path));
            return refusal(500, "not in the script");
        };
        if next.method != seen.method || !seen.path.starts_with(&next.path) {
            self.wrong.push(format!("expected {} {}, got {} {}", next.method, next.path, seen.method, seen.path));
            return refusal(500, "not what the script expects next");
        }
        match next.reply {
            Reply::Stored => (if seen.method == Method::POST { 201 } else { 200 }, self.store(seen.body)),
            Reply::Object(o) => (200, o),
            Reply::Refused(code, message) => refusal(code, &message),
        }
    }

    /// The body as the API server would return it once stored: with a new resourceVersion.
    fn store(&mut self, mut body: Value) -> Value {
        self.version += 1;
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(format!("{}", 1000 + self.version)));
        }
        body
    }
}

fn refusal(code: u16, message: &str) -> (u16, Value) {
    let status = kube::core::Status::failure(message, "").with_code(code);
    (code, serde_json::to_value(status).expect("serializable"))
}

/// The running script.
pub struct Served {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// The requests sent so far, Events left out.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.iter().filter(|s| !s.is_event()).cloned().collect()
    }

    /// Every request the controller sent, in order. Panics when one went against the script or
    /// an expected one never came. Call it before looking at what the pass returned: a request
    /// out of order makes the pass fail too (its answer is a 500), but says less.
    pub fn finish(self) -> Vec<Seen> {
        self.task.abort();
        let state = self.state.lock().expect("lock");
        let sent: Vec<String> = state.seen.iter().map(|s| format!("{} {}", s.method, s.path)).collect();
        assert!(state.wrong.is_empty(), "{:?}\nall requests: {sent:#?}", state.wrong);
        let missing: Vec<String> = state.expected.iter().map(|e| format!("{} {}", e.method, e.path)).collect();
        assert!(missing.is_empty(), "never sent: {missing:?}\nall requests: {sent:#?}");
        state.seen.clone()
    }
}
