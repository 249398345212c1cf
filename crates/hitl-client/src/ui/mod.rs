//! The approval pages: an inbox, a gate page with the decision form, a run page that updates
//! live. Served by `kubectl hitl ui` on 127.0.0.1 with the person's own credentials, or in the
//! cluster behind an authenticating proxy, impersonating the person (see `access`).

pub mod access;
pub mod cli;
pub mod dag;
pub mod data;
pub mod evidence;
pub mod form;
pub mod history;
pub mod html;
pub mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use self::access::{Mode, csrf_token, same};
use self::form::Typed;
use crate::inbox_reader::Identity;
use hitl_api::{Approval, Workflow};

/// The server's state: how people are authenticated, and its secret.
pub struct Ui {
    pub mode: Mode,
    /// Per-start secret: the local session token, and the key CSRF tokens are made with.
    pub secret: String,
    /// The port served, for the local Host check.
    pub port: u16,
    /// Namespaces whose pending gates watchers are shown when they may not list all namespaces.
    pub namespaces: Vec<String>,
}

/// A request that passed the guards: the person, and a client acting as them.
struct Caller {
    client: Client,
    me: Identity,
}

type Shared = Arc<Ui>;

/// The routes. `ConnectInfo<SocketAddr>` must be provided (see `serve`).
pub fn router(ui: Shared) -> Router {
    Router::new()
        .route("/", get(inbox_page))
        .route("/gates/{ns}/{name}", get(gate_page).post(decide))
        .route("/gates/{ns}/{name}/evidence/{pod}", get(evidence_log))
        .route("/history", get(history_page))
        .route("/runs/{ns}/{name}", get(run_page))
        .route("/runs/{ns}/{name}/events", get(run_events))
        .route("/healthz", get(|| async { "ok" }))
        .route(html::STYLE_PATH, get(|| async { asset("text/css; charset=utf-8", html::STYLE) }))
        .route(html::LIVE_PATH, get(|| async { asset("text/javascript; charset=utf-8", html::LIVE) }))
        .with_state(ui)
        .layer(axum::middleware::map_response(security_headers))
}

/// A file the pages load (no secret in it: served to anyone, like the 401 page).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The headers every answer carries, whatever route (or none) made it: no framing (clickjacking),
/// no inline or foreign code, no sniffing, no referrer to other sites, and nothing kept in caches: the pages
/// show gates and decisions.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(html::CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the page's
    // own form posts, which the CSRF check must refuse.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Serves until the listener fails.
pub async fn serve(ui: Ui, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = router(Arc::new(ui)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}

fn refused(status: StatusCode, title: &str, said: &str) -> Response {
    (status, Html(view::problem(title, "", said))).into_response()
}

fn refused_boxed(status: StatusCode, title: &str, said: &str) -> Box<Response> {
    Box::new(refused(status, title, said))
}

impl Ui {
    /// The guards, then who the request acts as; or the response that refuses it.
    fn caller(&self, peer: SocketAddr, headers: &HeaderMap, uri: &Uri) -> Result<Caller, Box<Response>> {
        match &self.mode {
            Mode::Local { client, me } => {
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
                if !access::host_allowed(host, self.port) {
                    return Err(refused_boxed(
                        StatusCode::MISDIRECTED_REQUEST,
                        "Wrong address",
                        "This server answers only to 127.0.0.1 and localhost.",
                    ));
                }
                if let Some(token) = uri.query().and_then(|q| q.strip_prefix("token=")) {
                    return Err(Box::new(self.start_session(token, uri.path())));
                }
                match access::session_cookie(headers, &access::cookie_name(self.port)) {
                    Some(s) if same(&s, &self.secret) => Ok(Caller { client: client.clone(), me: me.clone() }),
                    _ => Err(refused_boxed(
                        StatusCode::UNAUTHORIZED,
                        "Not signed in",
                        "Open the address that `kubectl hitl ui` printed; it carries this session's secret.",
                    )),
                }
            }
            Mode::Proxy(proxy) => {
                let Some(me) = proxy.identity(peer.ip(), headers) else {
                    return Err(refused_boxed(
                        StatusCode::UNAUTHORIZED,
                        "Not signed in",
                        "No authenticated user: this server takes identities only from its authenticating proxy.",
                    ));
                };
                if access::reserved_user(&me.user) {
                    return Err(refused_boxed(
                        StatusCode::FORBIDDEN,
                        "Refused",
                        &format!(
                            "The proxy named the user \"{}\": names beginning with \"system:\" are reserved for \
                             Kubernetes itself (its components, nodes and service accounts) and are never impersonated.",
                            me.user
                        ),
                    ));
                }
                let client = proxy
                    .client_for(&me)
                    .map_err(|e| refused_boxed(StatusCode::INTERNAL_SERVER_ERROR, "No client", &e.to_string()))?;
                Ok(Caller { client, me })
            }
        }
    }

    /// The secret came in the URL: keep it in a cookie and take it out of the address bar.
    fn start_session(&self, token: &str, path: &str) -> Response {
        if !same(token, &self.secret) {
            return refused(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "This address's secret is not this session's; open the one `kubectl hitl ui` printed.",
            );
        }
        let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", access::cookie_name(self.port), self.secret);
        let mut response = Redirect::to(path).into_response();
        response
            .headers_mut()
            .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex is a valid header"));
        response
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// A kube error as the page shows it: the API server's words when it answered.
fn said(e: &kube::Error) -> (StatusCode, String) {
    match e {
        kube::Error::Api(s) => (StatusCode::from_u16(s.code).unwrap_or(StatusCode::BAD_GATEWAY), s.message.clone()),
        other => (StatusCode::BAD_GATEWAY, other.to_string()),
    }
}

async fn inbox_page(
    State(ui): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let c = match ui.caller(peer, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match data::inbox(&c.client, &c.me, &ui.namespaces).await {
        Ok(view) => Html(with_csrf(view::inbox(&view, now()), &csrf_token(&ui.secret, &c.me))).into_response(),
        // The API server would not act as this person at all (in proxy mode: a group this server
        // may not impersonate): say who was asked for, then the server's words.
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("impersonate") => {
            let text = format!(
                "The API server would not act as {} in the groups [{}]: {}",
                c.me.user,
                c.me.groups.join(", "),
                s.message
            );
            let page = with_csrf(view::problem("Inbox", &c.me.user, &text), &csrf_token(&ui.secret, &c.me));
            (StatusCode::FORBIDDEN, Html(page)).into_response()
        }
        Err(e) => problem_page(&ui, &c, "Inbox", &e),
    }
}

/// What the History page reads (`?namespace=&since=`).
#[derive(serde::Deserialize)]
struct HistoryQuery {
    namespace: Option<String>,
    since: Option<String>,
}

/// The decision archive as the person may read it.
async fn history_page(
    State(ui): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let c = match ui.caller(peer, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let scope = q.namespace.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let since = q.since.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(history::DEFAULT_SINCE);
    let path = crate::archive_reader::path(scope, &[("since", since.to_string())]);
    match crate::archive_reader::read(&c.client, &path).await {
        Ok(list) => Html(with_csrf(history::page_for(&list, scope, since, &c.me.user), &csrf_token(&ui.secret, &c.me)))
            .into_response(),
        Err(e) => match crate::archive_reader::unavailable(&e) {
            Some(why) => {
                let page = with_csrf(view::problem("History", &c.me.user, &why), &csrf_token(&ui.secret, &c.me));
                (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response()
            }
            None => problem_page(&ui, &c, "History", &e),
        },
    }
}

/// The page that says what the API server answered instead of what was asked for.
fn problem_page(ui: &Ui, c: &Caller, title: &str, e: &kube::Error) -> Response {
    let (code, text) = said(e);
    let page = with_csrf(view::problem(title, &c.me.user, &text), &csrf_token(&ui.secret, &c.me));
    (code, Html(page)).into_response()
}

/// Every page carries the person's CSRF token (also outside forms, for scripts of their own).
fn with_csrf(page: String, token: &str) -> String {
    page.replacen("<head>", &format!("<head><meta name=\"csrf-token\" content=\"{token}\">"), 1)
}

async fn gate_page(
    State(ui): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path((ns, name)): Path<(String, String)>,
    Query(shown): Query<Shown>,
) -> Response {
    let c = match ui.caller(peer, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let lines = shown.lines.unwrap_or(evidence::TAIL_LINES).clamp(1, evidence::MAX_TAIL_LINES);
    render_gate_with(&ui, &c, (&ns, &name), &Typed::new(), None, lines).await
}

/// How much of the evidence logs the gate page shows (`?lines=N`).
#[derive(serde::Deserialize)]
struct Shown {
    lines: Option<i64>,
}

/// The whole log of one of the gate's evidence Pods, as the person.
async fn evidence_log(
    State(ui): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path((ns, name, pod)): Path<(String, String, String)>,
) -> Response {
    let c = match ui.caller(peer, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match Api::<Approval>::namespaced(c.client.clone(), &ns).get(&name).await {
        Ok(a) => evidence::stream(&c.client, &a, &pod).await,
        Err(e) => problem_page(&ui, &c, "Gate", &e),
    }
}

async fn render_gate(
    ui: &Ui,
    c: &Caller,
    ns: &str,
    name: &str,
    typed: &Typed,
    refusal: Option<(StatusCode, String)>,
) -> Response {
    render_gate_with(ui, c, (ns, name), typed, refusal, evidence::TAIL_LINES).await
}

async fn render_gate_with(
    ui: &Ui,
    c: &Caller,
    (ns, name): (&str, &str),
    typed: &Typed,
    refusal: Option<(StatusCode, String)>,
    lines: i64,
) -> Response {
    let api: Api<Approval> = Api::namespaced(c.client.clone(), ns);
    let csrf = csrf_token(&ui.secret, &c.me);
    let a = match api.get(name).await {
        Ok(a) => a,
        Err(e) => return problem_page(ui, c, "Gate", &e),
    };
    let (may_decide, may_read_run, shown) = futures::join!(
        data::may_decide(&c.client, &a, &c.me),
        data::may_read_run(&c.client, &a),
        evidence::read(&c.client, &a, lines)
    );
    let code = refusal.as_ref().map(|(code, _)| *code).unwrap_or(StatusCode::OK);
    let refusal = refusal.as_ref().map(|(_, t)| t.as_str());
    let evidence = evidence::section(&shown, &view::gate_href(ns, name), a.spec.evidence_digest.as_deref(), lines);
    let evidence_seen = evidence::seen(&shown);
    let form = view::GateForm { may_decide, may_read_run, csrf: &csrf, typed, refusal, evidence, evidence_seen };
    (code, Html(with_csrf(view::gate(&a, &c.me.user, &form, now()), &csrf))).into_response()
}

async fn decide(
    State(ui): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path((ns, name)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let c = match ui.caller(peer, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let typed: Typed = fields.into_iter().collect();
    let token_ok = typed.get("csrf").is_some_and(|t| same(t, &csrf_token(&ui.secret, &c.me)));
    if !token_ok || access::foreign_origin(&headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form did not come from this page (CSRF check); reload the page and try again.",
        );
    }
    let decision = match typed.get("decision").map(String::as_str) {
        Some(d @ ("Approve" | "Reject")) => d.to_string(),
        _ => return refused(StatusCode::BAD_REQUEST, "Refused", "Choose Approve or Reject."),
    };
    let api: Api<Approval> = Api::namespaced(c.client.clone(), &ns);
    let inputs = match api.get(&name).await {
        Ok(a) => a.spec.gate.inputs,
        Err(e) => return render_gate(&ui, &c, &ns, &name, &typed, Some(said(&e))).await,
    };
    let patch = form::patch(&decision, &inputs, &typed);
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Redirect::to(&view::gate_href(&ns, &name)).into_response(),
        Err(e) => render_gate(&ui, &c, &ns, &name, &typed, Some(said(&e))).await,
    }
}

async fn run_page(
    State(ui): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let c = match ui.caller(peer, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match Api::<Workflow>::namespaced(c.client.clone(), &ns).get(&name).await {
        Ok(wf) => Html(with_csrf(view::run(&wf, &c.me.user), &csrf_token(&ui.secret, &c.me))).into_response(),
        Err(e) => problem_page(&ui, &c, "Run", &e),
    }
}

/// The run's fragment again whenever the Workflow changes, from a watch made as the person.
async fn run_events(
    State(ui): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let c = match ui.caller(peer, &headers, &uri) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    Sse::new(fragments(c.client, &ns, &name)).keep_alive(KeepAlive::default()).into_response()
}

fn fragments(client: Client, ns: &str, name: &str) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    let api: Api<Workflow> = Api::namespaced(client, ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config).default_backoff().applied_objects().filter_map(|wf| async move { wf.ok() }).map(|wf| {
        let fragment = serde_json::to_string(&view::run_fragment(&wf)).unwrap_or_default();
        Ok(Event::default().data(fragment))
    })
}
