//! The archive's read path, served the Kubernetes way: an aggregated API (`archive.hitl.dev/
//! v1alpha1`, resource `records`) that the API server proxies to through an APIService. People
//! read the archive through `kubectl` with the credentials and rights they already have, however
//! the cluster authenticates them, and never hold the database's.
//!
//! The API server names the person in headers (`front_proxy`, believed only from its own client
//! certificate); the cluster's authorizer decides what they read (`access`); `records` answers.
//! Every replica serves it: reads need no leader.

mod access;
mod discovery;
mod front_proxy;
mod records;
mod response;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub use tls::ServerTls;

use super::store::Archive;
use front_proxy::{PeerCerts, Trusted, User};
use response::Failure;

pub const GROUP: &str = "archive.hitl.dev";
pub const VERSION: &str = "v1alpha1";

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The operator's flags for the archive's API (served only when the archive is on).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Where to serve the decision archive's API (archive.hitl.dev), which the API server proxies
    /// to through the APIService v1alpha1.archive.hitl.dev.
    #[arg(long, env = "HITL_ARCHIVE_SERVE_ADDR", default_value = "0.0.0.0:8443")]
    pub archive_serve_addr: SocketAddr,
    /// PEM certificate (chain) of the archive's API. Without it and --archive-tls-key, a
    /// self-signed one, which the APIService cannot verify (development only).
    #[arg(long, env = "HITL_ARCHIVE_TLS_CERT", value_name = "FILE", requires = "archive_tls_key")]
    pub archive_tls_cert: Option<PathBuf>,
    /// PEM private key of --archive-tls-cert.
    #[arg(long, env = "HITL_ARCHIVE_TLS_KEY", value_name = "FILE", requires = "archive_tls_cert")]
    pub archive_tls_key: Option<PathBuf>,
}

/// Binds the archive's API where `args` say and serves it in the background. Fails at once on a
/// bad certificate or an address in use, so a wrong setup stops the operator at start.
pub async fn start(args: &ServeArgs, archive: Archive, client: kube::Client) -> anyhow::Result<()> {
    let tls = ServerTls::load(args.archive_tls_cert.as_deref(), args.archive_tls_key.as_deref())?;
    let listener = TcpListener::bind(args.archive_serve_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving the decision archive's API ({GROUP})");
    tokio::spawn(async move {
        if let Err(e) = serve(listener, tls, archive, client).await {
            tracing::error!(error = %e, "the decision archive's API stopped");
        }
    });
    Ok(())
}

/// Serves the archive's API on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: ServerTls,
    archive: Archive,
    client: kube::Client,
) -> anyhow::Result<()> {
    let trusted = Trusted::follow(client.clone());
    serve_with(listener, tls, Ctx { archive, client, trusted }).await
}

/// What every request needs.
#[derive(Clone)]
struct Ctx {
    archive: Archive,
    client: kube::Client,
    trusted: Trusted,
}

impl Ctx {
    /// The person the API server named, if the request came from it.
    fn authenticate(&self, peer: &PeerCerts, headers: &HeaderMap) -> Result<User, Failure> {
        let trust = self.trusted.current().ok_or_else(|| {
            Failure::unavailable(format!(
                "the archive has not read the API server's front-proxy CA yet (ConfigMap {}/{})",
                front_proxy::CONFIG_MAP_NAMESPACE,
                front_proxy::CONFIG_MAP_NAME
            ))
        })?;
        trust.authenticate(&peer.0, headers).map_err(Failure::unauthorized)
    }
}

async fn serve_with(listener: TcpListener, tls: ServerTls, ctx: Ctx) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls.config()?));
    let app = router(ctx);
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(connection(acceptor.clone(), tcp, app.clone()));
            }
            // Out of file descriptors and the like: wait a little rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection to the archive's API");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One client: the TLS handshake, then HTTP/1.1 with the certificates it presented attached to
/// each of its requests.
async fn connection(acceptor: TlsAcceptor, tcp: TcpStream, app: Router) {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake with an archive client"),
        Err(_) => return tracing::debug!("TLS handshake with an archive client timed out"),
    };
    let presented = stream.get_ref().1.peer_certificates().unwrap_or_default();
    let peer = PeerCerts(Arc::new(presented.iter().map(|c| c.clone().into_owned()).collect()));
    let service = TowerToHyperService::new(app.layer(Extension(peer)));
    // With a timer, hyper drops a client that sends no request head within 30 s.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new());
    if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(error = %e, "serving an archive client");
    }
}

fn router(ctx: Ctx) -> Router {
    let version = format!("/apis/{GROUP}/{VERSION}");
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(&format!("/apis/{GROUP}"), get(|| async { response::json(StatusCode::OK, &discovery::group()) }))
        .route(&version, get(|| async { response::json(StatusCode::OK, &discovery::resources()) }))
        .route(&format!("{version}/records"), get(all_records))
        .route(&format!("{version}/namespaces/{{namespace}}/records"), get(namespace_records))
        .method_not_allowed_fallback(|| async { Failure::method_not_allowed("records can only be listed (GET)") })
        .fallback(|| async { Failure::not_found("the server could not find the requested resource") })
        .with_state(ctx)
}

async fn all_records(
    State(ctx): State<Ctx>,
    Extension(peer): Extension<PeerCerts>,
    headers: HeaderMap,
    Query(params): Query<records::Params>,
) -> Response {
    answer(&ctx, &peer, &headers, None, params).await
}

async fn namespace_records(
    State(ctx): State<Ctx>,
    Extension(peer): Extension<PeerCerts>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    Query(params): Query<records::Params>,
) -> Response {
    answer(&ctx, &peer, &headers, Some(namespace), params).await
}

async fn answer(
    ctx: &Ctx,
    peer: &PeerCerts,
    headers: &HeaderMap,
    ns: Option<String>,
    params: records::Params,
) -> Response {
    let listed = match ctx.authenticate(peer, headers) {
        Ok(user) => records::list(ctx, user, ns, params).await,
        Err(refused) => Err(refused),
    };
    listed.unwrap_or_else(IntoResponse::into_response)
}
