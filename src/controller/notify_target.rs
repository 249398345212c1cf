//! Reaching a notification's receiver only where it may go (`engine::notify_target` decides). The
//! name is resolved when the message is sent, every address is checked, and the connection goes
//! to exactly the addresses checked: a DNS answer that changes between a check and a connect
//! (DNS rebinding) never reaches an internal address. A host the namespace owner listed in
//! `WorkflowPolicy/default` `notificationHosts` is not checked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use kube::Api;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tracing::warn;

use crate::api::WorkflowPolicy;
use crate::engine::notify_target::{self as target, ClusterRanges};

/// What the namespace owner allows this namespace's channels, from `WorkflowPolicy/default`.
#[derive(Debug, Clone, Default)]
pub struct Allowances {
    pub hosts: Vec<String>,
    pub plaintext_credentials: bool,
}

/// Reads the namespace owner's allowances. No policy: none. A policy that cannot be read counts
/// as none too (the secure side); the refusal it causes is recorded and checked again.
pub async fn allowances(policies: &Api<WorkflowPolicy>) -> Allowances {
    match policies.get_opt(crate::api::policy::POLICY_NAME).await {
        Ok(Some(p)) => {
            Allowances { hosts: p.spec.notification_hosts, plaintext_credentials: p.spec.allow_plaintext_credentials }
        }
        Ok(None) => Allowances::default(),
        Err(e) => {
            warn!(error = %super::said(&e), "reading WorkflowPolicy/default for notifications; allowing nothing");
            Allowances::default()
        }
    }
}

/// The target refused: the check's words, recorded for the namespace owner.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The HTTP clients: `checked` resolves through `CheckedResolver`; `listed` is for hosts the
/// namespace owner allowed. Neither follows redirects (a redirect would reach an unchecked
/// address) or uses proxy variables (the check must see the real target).
#[derive(Clone)]
pub struct HttpClients {
    checked: reqwest::Client,
    listed: reqwest::Client,
    ranges: ClusterRanges,
}

impl HttpClients {
    pub fn new(timeout: std::time::Duration, ranges: ClusterRanges) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
        };
        let resolver = Arc::new(CheckedResolver { ranges: ranges.clone() });
        let checked = builder().dns_resolver(resolver).build().expect("HTTP client");
        let listed = builder().build().expect("HTTP client");
        HttpClients { checked, listed, ranges }
    }

    /// The client for `url`. An address in the URL is checked here: no resolver sees it.
    pub fn for_url(&self, url: &reqwest::Url, allowed: &Allowances) -> Result<&reqwest::Client, Refused> {
        let host = url.host_str().unwrap_or_default();
        if target::host_allowed(host, &allowed.hosts) {
            return Ok(&self.listed);
        }
        if let Ok(ip) = target::normalized_host(host).parse::<IpAddr>() {
            target::check_addresses(host, &[ip], &self.ranges).map_err(Refused)?;
        }
        Ok(&self.checked)
    }
}

/// Resolves, then refuses the whole name if any address is refused; the connector then connects
/// to the addresses returned here and no others.
struct CheckedResolver {
    ranges: ClusterRanges,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let ranges = self.ranges.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            target::check_addresses(&host, &ips, &ranges).map_err(Refused)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The refusal inside a failed request, if the check caused it.
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        source = err.source();
    }
    None
}

/// The address to connect an SMTP session to: the host's, resolved now and checked (unless
/// listed). The session then connects to this address while TLS still verifies the host name.
pub async fn smtp_address(
    host: &str,
    port: u16,
    ranges: &ClusterRanges,
    allowed: &Allowances,
) -> Result<IpAddr, AddressError> {
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((target::normalized_host(host).as_str(), port))
        .await
        .map_err(|e| AddressError::Unresolved(e.to_string()))?
        .map(|a| a.ip())
        .collect();
    if !target::host_allowed(host, &allowed.hosts) {
        target::check_addresses(host, &addrs, ranges).map_err(AddressError::Refused)?;
    }
    addrs.first().copied().ok_or_else(|| AddressError::Unresolved("no address".into()))
}

/// Why no SMTP address: refused by the check (recorded), or not resolved (a delivery failure,
/// told only in the log).
#[derive(Debug)]
pub enum AddressError {
    Refused(String),
    Unresolved(String),
}
