//! Who is asking. The API server authenticates the person however the cluster lets people in
//! (client certificates, OIDC tokens, ...) and, proxying the request here, names them in headers.
//! Anyone could write those headers, so they are believed only from a client whose certificate
//! chains to the request-header CA the API server publishes in ConfigMap
//! kube-system/extension-apiserver-authentication and whose common name that ConfigMap allows;
//! the same ConfigMap says which headers to read. It is watched: a rotated CA applies at once.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::HeaderMap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;

pub const CONFIG_MAP_NAMESPACE: &str = "kube-system";
pub const CONFIG_MAP_NAME: &str = "extension-apiserver-authentication";

/// A person, as the API server named them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The certificates a connection's client presented, leaf first (none: empty). Every request
/// on the connection carries them.
#[derive(Clone, Debug, Default)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

/// What the API server published: whose certificates to believe, and which headers name the user.
pub struct Trust {
    verifier: Arc<dyn ClientCertVerifier>,
    /// Common names a front proxy's certificate may have; empty: any the CA signed.
    allowed_names: Vec<String>,
    username_headers: Vec<String>,
    uid_headers: Vec<String>,
    group_headers: Vec<String>,
    extra_prefixes: Vec<String>,
}

impl Trust {
    /// From the ConfigMap's data (its lists are JSON arrays).
    pub fn from_config(data: &BTreeMap<String, String>) -> Result<Self, String> {
        let pem = data.get("requestheader-client-ca-file").filter(|p| !p.trim().is_empty()).ok_or(
            "it holds no requestheader-client-ca-file: the API server runs without \
             --requestheader-client-ca-file, so it cannot proxy to aggregated APIs",
        )?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("requestheader-client-ca-file is not PEM: {e}"))?;
            roots.add(cert).map_err(|e| format!("requestheader-client-ca-file: {e}"))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(ring::default_provider()))
            .build()
            .map_err(|e| format!("requestheader-client-ca-file: {e}"))?;
        let list = |key: &str| -> Result<Vec<String>, String> {
            let Some(text) = data.get(key).filter(|t| !t.trim().is_empty()) else { return Ok(vec![]) };
            serde_json::from_str(text).map_err(|e| format!("{key} is not a JSON list of strings: {e}"))
        };
        let lower = |names: Vec<String>| names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        Ok(Self {
            verifier,
            allowed_names: list("requestheader-allowed-names")?,
            username_headers: lower(list("requestheader-username-headers")?),
            uid_headers: lower(list("requestheader-uid-headers")?),
            group_headers: lower(list("requestheader-group-headers")?),
            extra_prefixes: lower(list("requestheader-extra-headers-prefix")?),
        })
    }

    /// The person the headers name, if the client is the API server's front proxy; else why not.
    pub fn authenticate(&self, peer: &[CertificateDer<'_>], headers: &HeaderMap) -> Result<User, String> {
        self.check_proxy(peer)?;
        let name = self
            .values(headers, &self.username_headers)
            .into_iter()
            .find(|v| !v.is_empty())
            .ok_or("the front proxy named no user")?;
        Ok(User {
            name,
            uid: self.values(headers, &self.uid_headers).into_iter().find(|v| !v.is_empty()),
            groups: self.values(headers, &self.group_headers),
            extra: self.extra(headers),
        })
    }

    fn check_proxy(&self, peer: &[CertificateDer<'_>]) -> Result<(), String> {
        let Some((leaf, intermediates)) = peer.split_first() else {
            return Err("no client certificate: this API answers the Kubernetes API server only; \
                        use kubectl (kubectl hitl history)"
                .into());
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| format!("the client certificate is not the API server's front-proxy certificate: {e}"))?;
        let name = common_name(leaf).ok_or("the front-proxy certificate has no common name")?;
        if !self.allowed_names.is_empty() && !self.allowed_names.contains(&name) {
            return Err(format!("the client certificate's common name {name:?} is not an allowed front proxy"));
        }
        Ok(())
    }

    /// Every value of these headers, in order (a header may repeat).
    fn values(&self, headers: &HeaderMap, names: &[String]) -> Vec<String> {
        let all = names.iter().flat_map(|n| headers.get_all(n.as_str()));
        all.filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    }

    /// `X-Remote-Extra-<key>: value`, the key lower-cased and then percent-decoded, as the
    /// API server reads it (keys such as `authentication.kubernetes.io/credential-id` are escaped).
    fn extra(&self, headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            let key = self.extra_prefixes.iter().find_map(|p| name.as_str().strip_prefix(p.as_str()));
            if let (Some(key), Ok(value)) = (key, value.to_str()) {
                extra.entry(percent_decoded(key)).or_default().push(value.to_string());
            }
        }
        extra
    }
}

/// The subject's common name (CN) of a DER certificate.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// `text` with its `%XX` escapes decoded; as it was when one is malformed (Go's PathUnescape
/// fails then, and the API server keeps the key as sent).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => out.push(byte),
            None => return text.to_string(),
        }
        i += 3;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// The current Trust, kept up to date from the ConfigMap; none until it has been read.
#[derive(Clone, Default)]
pub struct Trusted(Arc<RwLock<Option<Arc<Trust>>>>);

impl Trusted {
    /// Starts watching the ConfigMap (only it: the operator may read no other in kube-system).
    pub fn follow(client: Client) -> Self {
        let trusted = Self::default();
        let cell = trusted.clone();
        tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, CONFIG_MAP_NAMESPACE);
            let only = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP_NAME}"));
            let mut changes = watcher(api, only).default_backoff().applied_objects().boxed();
            while let Some(change) = changes.next().await {
                match change {
                    Ok(config_map) => cell.update(&config_map),
                    Err(e) => tracing::warn!(error = %e, "watching ConfigMap {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME}"),
                }
            }
        });
        trusted
    }

    fn update(&self, config_map: &ConfigMap) {
        let data = config_map.data.clone().unwrap_or_default();
        match Trust::from_config(&data) {
            Ok(trust) => {
                tracing::info!("the archive's API trusts the API server's front proxy as {CONFIG_MAP_NAME} says");
                *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(trust));
            }
            // The last good one stays.
            Err(why) => tracing::error!("ConfigMap {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME}: {why}"),
        }
    }

    pub fn current(&self) -> Option<Arc<Trust>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { pem, issuer: Issuer::new(params, key) }
    }

    fn client_cert(ca: &Ca, cn: &str) -> Vec<CertificateDer<'static>> {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&KeyPair::generate().unwrap(), &ca.issuer).unwrap();
        vec![cert.der().clone()]
    }

    fn trust(ca: &Ca) -> Trust {
        let data = [
            ("requestheader-client-ca-file", ca.pem.as_str()),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            ("requestheader-extra-headers-prefix", r#"["X-Remote-Extra-"]"#),
        ];
        Trust::from_config(&data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    const ALICE: &[(&str, &str)] = &[
        ("x-remote-user", "alice"),
        ("x-remote-group", "legal"),
        ("x-remote-group", "system:authenticated"),
        ("x-remote-extra-authentication.kubernetes.io%2fcredential-id", "X509SHA256=ab"),
    ];

    #[test]
    fn the_front_proxy_names_the_user_their_groups_and_extras() {
        let front_proxy = ca("front-proxy-ca");
        let user = trust(&front_proxy).authenticate(&client_cert(&front_proxy, "front-proxy-client"), &headers(ALICE));
        let user = user.unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["legal", "system:authenticated"]);
        assert_eq!(user.extra["authentication.kubernetes.io/credential-id"], ["X509SHA256=ab"]);
    }

    #[test]
    fn headers_from_anyone_else_are_not_believed() {
        let front_proxy = ca("front-proxy-ca");
        let trust = trust(&front_proxy);
        let forged = headers(&[("x-remote-user", "admin"), ("x-remote-group", "system:masters")]);
        let no_cert = trust.authenticate(&[], &forged).unwrap_err();
        assert!(no_cert.contains("no client certificate"), "{no_cert}");
        // A user's own client certificate, signed by another CA (the cluster's client CA).
        let other = trust.authenticate(&client_cert(&ca("client-ca"), "front-proxy-client"), &forged).unwrap_err();
        assert!(other.contains("not the API server's front-proxy certificate"), "{other}");
        // Signed by the right CA, but not a name the API server allows.
        let named = trust.authenticate(&client_cert(&front_proxy, "someone"), &forged).unwrap_err();
        assert!(named.contains("\"someone\" is not an allowed front proxy"), "{named}");
        let nobody = trust.authenticate(&client_cert(&front_proxy, "front-proxy-client"), &HeaderMap::new());
        assert!(nobody.unwrap_err().contains("named no user"));
    }

    #[test]
    fn an_api_server_without_a_request_header_ca_is_named() {
        let err = Trust::from_config(&BTreeMap::new()).err().unwrap();
        assert!(err.contains("--requestheader-client-ca-file"), "{err}");
    }

    #[test]
    fn extra_keys_are_percent_decoded_unless_malformed() {
        assert_eq!(percent_decoded("a%2fb%2Fc"), "a/b/c");
        assert_eq!(percent_decoded("plain"), "plain");
        assert_eq!(percent_decoded("bad%zz"), "bad%zz");
        assert_eq!(percent_decoded("cut%2"), "cut%2");
    }
}
