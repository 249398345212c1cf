//! The approval pages from the command line: `kubectl hitl ui` (a person, locally) and
//! `hitl-operator ui --auth-proxy` (in the cluster, as the chart runs it). One server, two ways
//! of knowing who the person is.

use std::io::Write as _;

use anyhow::Context as _;
use kube::{Client, Config};

use super::access::{self, Mode, Proxy};
use super::{Ui, serve};
use crate::inbox_reader::whoami;

/// The flags of `kubectl hitl ui` and `hitl-operator ui`.
#[derive(clap::Args, Debug, Clone)]
pub struct UiArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Print the address without opening a browser.
    #[arg(long)]
    pub no_open: bool,
    /// Namespaces whose pending gates are shown to watchers who may not list all namespaces
    /// (default: -n, else the context's namespace).
    #[arg(long, value_delimiter = ',', value_name = "NS,...")]
    pub namespaces: Vec<String>,
    /// Take the person from an authenticating proxy's headers and impersonate them.
    #[arg(long)]
    pub auth_proxy: bool,
    /// With --auth-proxy: the address to serve on (keep it on loopback, next to the proxy).
    #[arg(long, default_value = "127.0.0.1:8080", requires = "auth_proxy")]
    pub listen: std::net::SocketAddr,
    /// With --auth-proxy: the proxy's address; identity headers from any other peer are ignored.
    #[arg(long = "trusted-proxy", default_value = "127.0.0.1", value_delimiter = ',', requires = "auth_proxy")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// With --auth-proxy: the header naming the user.
    #[arg(long, default_value = "X-Forwarded-User", requires = "auth_proxy")]
    pub user_header: String,
    /// With --auth-proxy: the header listing the groups (comma-separated, or repeated).
    #[arg(long, default_value = "X-Forwarded-Groups", requires = "auth_proxy")]
    pub groups_header: String,
}

/// Serves until stopped. `namespace`: the default for `--namespaces`.
pub async fn run(config: Config, namespace: String, args: UiArgs) -> anyhow::Result<()> {
    let namespaces = if args.namespaces.is_empty() { vec![namespace] } else { args.namespaces.clone() };
    let secret = access::secret();
    if args.auth_proxy {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let proxy = Proxy::new(
            config,
            args.trusted_proxies,
            args.user_header.to_lowercase(),
            args.groups_header.to_lowercase(),
        );
        let addr = listener.local_addr()?;
        say(&format!("Serving the approval pages on {addr} behind an authenticating proxy"));
        let ui = Ui { mode: Mode::Proxy(Box::new(proxy)), secret, port: addr.port(), namespaces };
        return Ok(serve(ui, listener).await?);
    }
    let client = Client::try_from(config).context("cannot build a client from the kubeconfig")?;
    let me = whoami(&client).await.context("cannot ask the API server who you are")?;
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await.context("cannot listen on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}/?token={secret}");
    say(&format!("Serving the approval pages as {} at {url}", me.user));
    say("The address carries this session's secret; do not share it. Ctrl-C stops.");
    if !args.no_open {
        open_browser(&url);
    }
    Ok(serve(Ui { mode: Mode::Local { client, me }, secret, port, namespaces }, listener).await?)
}

/// A line for the person; a closed stdout (the reader went away) must not stop the server.
fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Opens the page in the desktop's browser, if there is one; the printed address always works.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
