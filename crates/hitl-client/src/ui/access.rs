//! Who a request acts as, and the guards around that. Two modes, one rule: every API call is
//! made as the person, so the API server's RBAC and admission policies decide; the page adds no
//! authority of its own.
//!
//! - `Local` (`kubectl hitl ui`): the person's own kubeconfig credentials, on 127.0.0.1. Any
//!   local process or web page could talk to that port, so: the Host header must name the
//!   loopback address (DNS rebinding), a secret made at start must come with every request (in
//!   the URL once, then a SameSite=Strict cookie), and every form carries a CSRF token.
//! - `Proxy` (in the cluster): an authenticating proxy in front (OIDC) passes the user and groups
//!   in headers; the server impersonates them. Headers count only from the proxy's address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::http;
use hmac::{Hmac, Mac};
use kube::{Client, Config};
use sha2::Sha256;

use crate::inbox_reader::Identity;

/// Name of the session cookie in local mode. Browsers keep cookies per host, not per port, so
/// two servers on 127.0.0.1 (two people, two contexts) need names of their own.
pub fn cookie_name(port: u16) -> String {
    format!("hitl_ui_{port}")
}

/// How requests are authenticated and whose credentials they use.
pub enum Mode {
    Local { client: Client, me: Identity },
    Proxy(Box<Proxy>),
}

/// Impersonation behind an authenticating proxy.
pub struct Proxy {
    /// The server's own credentials (a ServiceAccount allowed to impersonate).
    pub config: Config,
    /// Peers whose identity headers are believed (the proxy sidecar: 127.0.0.1).
    pub trusted: Vec<IpAddr>,
    pub user_header: String,
    pub groups_header: String,
    clients: Mutex<HashMap<(String, Vec<String>), Client>>,
}

/// Clients kept for impersonated people; past this the cache starts over.
const MAX_CLIENTS: usize = 256;

impl Proxy {
    pub fn new(config: Config, trusted: Vec<IpAddr>, user_header: String, groups_header: String) -> Self {
        Self { config, trusted, user_header, groups_header, clients: Mutex::default() }
    }

    /// The person the proxy vouches for, or None when the peer is not the proxy or sent no user.
    pub fn identity(&self, peer: IpAddr, headers: &http::HeaderMap) -> Option<Identity> {
        if !self.trusted.contains(&peer) {
            return None;
        }
        let user = headers.get(&self.user_header)?.to_str().ok()?.trim().to_string();
        if user.is_empty() {
            return None;
        }
        let groups = headers
            .get_all(&self.groups_header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|g| !g.is_empty() && !g.starts_with("system:"))
            .map(str::to_string)
            .collect();
        Some(Identity { user, groups })
    }

    /// A client that impersonates `me` (system: groups are never passed on: the proxy's identity
    /// provider must not be able to name system:masters).
    pub fn client_for(&self, me: &Identity) -> Result<Client, kube::Error> {
        let key = (me.user.clone(), me.groups.clone());
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(me.user.clone());
        config.auth_info.impersonate_groups = (!me.groups.is_empty()).then(|| me.groups.clone());
        let client = Client::try_from(config)?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// A user name the API server reserves for itself (`system:` components, nodes, service
/// accounts, `system:anonymous`): a proxy's identity provider must never be able to name one.
pub fn reserved_user(user: &str) -> bool {
    user.starts_with("system:")
}

/// A random secret, hex, from the operating system.
pub fn secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The CSRF token of a person: bound to the server's secret and to who they are.
pub fn csrf_token(secret: &str, me: &Identity) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"csrf\n");
    mac.update(me.user.as_bytes());
    for g in &me.groups {
        mac.update(b"\n");
        mac.update(g.as_bytes());
    }
    hex(&mac.finalize().into_bytes())
}

/// Equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The local server answers only to its own loopback name (DNS rebinding sends another Host).
pub fn host_allowed(host: Option<&str>, port: u16) -> bool {
    host.is_some_and(|h| {
        [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")].contains(&h.to_string())
    })
}

/// The session secret from the request's cookies.
pub fn session_cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A POST from another site: an Origin header that is not this server's own.
pub fn foreign_origin(headers: &http::HeaderMap) -> bool {
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok());
    match (headers.get(http::header::ORIGIN).and_then(|o| o.to_str().ok()), host) {
        (None, _) => false,
        (Some(origin), Some(host)) => origin != format!("http://{host}") && origin != format!("https://{host}"),
        (Some(_), None) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn proxy() -> Proxy {
        let config = Config::new("https://127.0.0.1:6443".parse().unwrap());
        Proxy::new(config, vec!["127.0.0.1".parse().unwrap()], "x-forwarded-user".into(), "x-forwarded-groups".into())
    }

    #[test]
    fn identity_headers_count_only_from_the_proxy() {
        let h = headers(&[("x-forwarded-user", "carol"), ("x-forwarded-groups", "legal, system:masters,ops")]);
        let me = proxy().identity("127.0.0.1".parse().unwrap(), &h).unwrap();
        assert_eq!(me, Identity { user: "carol".into(), groups: vec!["legal".into(), "ops".into()] });
        assert_eq!(proxy().identity("10.0.0.7".parse().unwrap(), &h), None);
        assert_eq!(proxy().identity("127.0.0.1".parse().unwrap(), &headers(&[("x-forwarded-groups", "legal")])), None);
    }

    #[test]
    fn user_names_the_api_server_reserves_are_refused() {
        assert!(reserved_user("system:kube-controller-manager"));
        assert!(reserved_user("system:serviceaccount:kube-system:default"));
        assert!(reserved_user("system:anonymous"));
        assert!(!reserved_user("carol"));
        assert!(!reserved_user("carol@system.example"));
    }

    #[test]
    fn the_csrf_token_is_bound_to_the_secret_and_the_person() {
        let alice = Identity { user: "alice".into(), groups: vec!["legal".into()] };
        let bob = Identity { user: "bob".into(), groups: vec![] };
        let t = csrf_token("s1", &alice);
        assert_eq!(t.len(), 64);
        assert_ne!(t, csrf_token("s2", &alice));
        assert_ne!(t, csrf_token("s1", &bob));
        assert!(same(&t, &csrf_token("s1", &alice)));
        assert!(!same(&t, &csrf_token("s1", &bob)));
    }

    #[test]
    fn only_the_loopback_names_of_this_port_are_answered() {
        assert!(host_allowed(Some("127.0.0.1:8000"), 8000));
        assert!(host_allowed(Some("localhost:8000"), 8000));
        assert!(!host_allowed(Some("evil.example:8000"), 8000));
        assert!(!host_allowed(Some("127.0.0.1:8001"), 8000));
        assert!(!host_allowed(None, 8000));
    }

    #[test]
    fn cookies_and_origins_are_read_as_browsers_send_them() {
        let h = headers(&[
            ("cookie", "a=1; hitl_ui_9=abc; b=2"),
            ("host", "127.0.0.1:9"),
            ("origin", "http://127.0.0.1:9"),
        ]);
        assert_eq!(session_cookie(&h, &cookie_name(9)).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&h, &cookie_name(10)), None);
        assert!(!foreign_origin(&h));
        assert!(foreign_origin(&headers(&[("host", "127.0.0.1:9"), ("origin", "http://evil.example")])));
        assert!(!foreign_origin(&headers(&[("host", "127.0.0.1:9")])));
    }
}
