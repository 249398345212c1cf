//! The server's TLS: its certificate (the chart's, or a self-signed one for development), and a
//! client-certificate policy that asks every client for one but judges it only per request
//! (`front_proxy`), against the CA the API server publishes at that moment.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail, ensure};
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{self, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, Error, ServerConfig, SignatureScheme};

/// The certificate chain the server presents, and its key.
pub struct ServerTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ServerTls {
    /// From PEM files (the chart mounts its Secret's), or, with neither given, self-signed for
    /// `localhost`: no API server can check that one, so its APIService must skip verification
    /// (`insecureSkipTLSVerify`), which is for a development cluster only.
    pub fn load(cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Self> {
        match (cert, key) {
            (Some(cert), Some(key)) => Self::from_pem(&read(cert)?, &read(key)?),
            (None, None) => Self::self_signed(&["localhost".to_string()]),
            _ => bail!("--archive-tls-cert and --archive-tls-key are given together or not at all"),
        }
    }

    /// A certificate chain (leaf first) and its private key, PEM-encoded.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .context("the archive's TLS certificate is not PEM")?;
        ensure!(!chain.is_empty(), "the archive's TLS certificate file holds no certificate");
        let key = PrivateKeyDer::from_pem_slice(key).context("the archive's TLS key is not a PEM private key")?;
        Ok(Self { chain, key })
    }

    /// A fresh self-signed certificate for `names`.
    pub fn self_signed(names: &[String]) -> anyhow::Result<Self> {
        let made = rcgen::generate_simple_self_signed(names.to_vec())?;
        let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        Ok(Self { chain: vec![made.cert.der().clone()], key })
    }

    /// The rustls configuration: HTTP/1.1, and a client certificate asked of every client.
    pub(super) fn config(self) -> anyhow::Result<ServerConfig> {
        let provider = Arc::new(crypto::ring::default_provider());
        let verifier = Arc::new(OfferedClientCert { algorithms: provider.signature_verification_algorithms });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain, self.key)
            .context("the archive's TLS certificate and key do not belong together")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Asks every client for a certificate and lets a client without one in (discovery and health
/// are open). A certificate presented is taken here once the client has proved it holds its key
/// (the handshake's signature is checked); whether it chains to the front proxy's CA is judged
/// per request by `front_proxy`, which alone may believe the identity headers. A rotated CA
/// then takes effect without new connections or a restart.
#[derive(Debug)]
struct OfferedClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for OfferedClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hint: a client sends whatever certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_pair_loads_and_a_mismatched_one_is_named() {
        let one = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        let cert = one.cert.pem();
        assert!(
            ServerTls::from_pem(cert.as_bytes(), one.signing_key.serialize_pem().as_bytes()).unwrap().config().is_ok()
        );
        let mismatched = ServerTls::from_pem(cert.as_bytes(), other.signing_key.serialize_pem().as_bytes()).unwrap();
        let err = mismatched.config().unwrap_err().to_string();
        assert!(err.contains("do not belong together"), "{err}");
        assert!(ServerTls::from_pem(b"", b"").is_err());
    }

    #[test]
    fn a_certificate_file_needs_its_key() {
        let err = ServerTls::load(Some(Path::new("/nonexistent")), None).err().unwrap().to_string();
        assert!(err.contains("together"), "{err}");
        assert!(ServerTls::load(None, None).is_ok(), "self-signed when neither is given");
    }
}
