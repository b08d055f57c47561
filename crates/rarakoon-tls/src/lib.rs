//! TLS for Rarakoon (ADR 0145): PEM loading, the rustls configurations of the messaging port,
//! the client port and the client, the names a certificate carries, and throwaway
//! certificates for `rarakoon-bin local --tls` and tests ([`testca`]).
//!
//! The trust model is Arakoon's: one cluster CA signs every node's and every client's
//! certificate. On top of it, a certificate's *names* (its subject common names and its DNS
//! subject alternative names, see [`cert_names`]) say who holds it:
//! - a node's certificate names the node (`CN=node_0` or `SAN DNS:node_0`);
//! - the messaging listener accepts a link only when the name claimed in the messaging
//!   handshake is one of the names of the certificate the peer presented (tcp-messenger), and
//!   the connecting side accepts the listener only when its certificate names the peer it
//!   dialled ([`client_config`] with an expected name);
//! - a client's certificate names the client; names listed as admin names may run admin
//!   operations (rarakoon-client's listener).
//!
//! Invariants:
//! - only TLS 1.2 and 1.3 are ever negotiated (rustls has nothing older), with the ring
//!   provider's cipher suites;
//! - every configuration built here verifies the peer's chain to the configured CA (server
//!   side: whenever client certificates are requested; client side: always), including the
//!   validity period, so an expired or foreign certificate fails the handshake;
//! - a verifier built with an expected name refuses a certificate that does not carry that
//!   name, so a valid certificate of node_1 cannot answer for node_2;
//! - nothing here panics on file contents: unreadable files, PEM without the expected block
//!   and unparsable certificates are [`TlsError`]s naming the file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

pub use rustls;
pub use tokio_rustls;

pub mod testca;

/// Largest PEM file read (a certificate chain or key is a few KiB; a CA bundle rarely more
/// than a few hundred).
const MAX_PEM_FILE: u64 = 4 * 1024 * 1024;

/// Why TLS material could not be loaded or a configuration built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file should hold ("CA certificate", "certificate", "private key").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file was read but does not hold what it should.
    #[error("{what} {}: {problem}", path.display())]
    Content {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the material (e.g. a key that does not match its certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The oldest TLS version accepted (Arakoon's `tls_version`): 1.2 accepts 1.2 and 1.3, 1.3
/// accepts only 1.3. Older versions do not exist in rustls, and are refused when configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl FromStr for TlsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            "1.0" | "1.1" => Err(format!(
                "is {s:?}: TLS {s} is obsolete and not supported; use \"1.2\" (TLS 1.2 and \
                 1.3) or \"1.3\" (TLS 1.3 only)"
            )),
            other => Err(format!("is {other:?}; it must be \"1.2\" or \"1.3\"")),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

impl TlsVersion {
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &BOTH,
            TlsVersion::Tls13 => &ONLY_13,
        }
    }
}

/// A certificate chain and its private key: what a node or a client presents.
pub struct Identity {
    /// The end-entity certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the end-entity certificate.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("names", &self.names())
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let chain = load_certs(cert, "certificate")?;
        let key = load_key(key)?;
        Ok(Identity { chain, key })
    }

    /// The names of the end-entity certificate (see [`cert_names`]).
    pub fn names(&self) -> Vec<String> {
        self.chain.first().map(cert_names).unwrap_or_default()
    }
}

fn read_pem_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_PEM_FILE {
        return Err(TlsError::Content {
            what,
            path: path.to_path_buf(),
            problem: format!("is {len} bytes; a PEM file is expected (at most {MAX_PEM_FILE})"),
        });
    }
    std::fs::read(path).map_err(read)
}

/// Loads every certificate of a PEM file (at least one).
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem_file(path, what)?;
    let content = |problem: String| TlsError::Content {
        what,
        path: path.to_path_buf(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(content("holds no \"BEGIN CERTIFICATE\" block".to_owned()));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| content(format!("holds a certificate that does not parse: {e}")))?;
    }
    Ok(certs)
}

/// Loads the first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem_file(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Content {
        what: "private key",
        path: path.to_path_buf(),
        problem: format!("holds no usable private key: {e}"),
    })
}

/// Loads the CA certificate(s) peers are checked against.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let certs = load_certs(path, "CA certificate")?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::Content {
            what: "CA certificate",
            path: path.to_path_buf(),
            problem: format!("is not usable as a trust anchor: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// The names a certificate carries: its subject common names, then its DNS subject
/// alternative names, without duplicates. Empty for bytes that do not parse.
pub fn cert_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Vec::new();
    };
    let mut names: Vec<String> = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name
                && !names.iter().any(|n| n == dns)
            {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}

/// The names of the end-entity certificate a peer presented in `conn`'s handshake; empty
/// when it presented none.
pub fn peer_names(conn: &rustls::CommonState) -> Vec<String> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(cert_names)
        .unwrap_or_default()
}

/// The crypto provider every configuration uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `identity`. With `client_roots`, every client must
/// present a certificate that chains to them (mutual TLS); without, none is asked for.
pub fn server_config(
    identity: &Identity,
    client_roots: Option<Arc<RootCertStore>>,
    version: TlsVersion,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(version.versions())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?;
    Ok(Arc::new(config))
}

/// A client configuration that accepts a server whose certificate chains to `roots` and,
/// given `expected_name`, carries that name (CN or DNS SAN). With `identity` it presents a
/// client certificate.
pub fn client_config(
    roots: Arc<RootCertStore>,
    expected_name: Option<&str>,
    identity: Option<&Identity>,
    version: TlsVersion,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(NamedServerVerifier {
        roots,
        expected_name: expected_name.map(str::to_owned),
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(version.versions())
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    // Node names need not be DNS names, and the name is checked by the verifier.
    config.enable_sni = false;
    Ok(Arc::new(config))
}

/// The server name to pass to `TlsConnector::connect` with a [`client_config`] configuration.
/// SNI is off and the verifier checks the node name it was built with, so this placeholder
/// (an IP address, never sent) does not matter.
pub fn server_name() -> ServerName<'static> {
    ServerName::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST).into())
}

/// Checks a server's chain against the cluster CA and, when set, that the certificate names
/// the node we meant to reach (webpki's own name check knows only DNS SANs, not CNs, and
/// Arakoon's certificates name nodes in the CN).
#[derive(Debug)]
struct NamedServerVerifier {
    roots: Arc<RootCertStore>,
    expected_name: Option<String>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NamedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if let Some(expected) = &self.expected_name {
            let names = cert_names(end_entity);
            if !names.iter().any(|n| n == expected) {
                return Err(rustls::Error::General(format!(
                    "the certificate names {names:?}, not the node {expected:?} we connected to"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Whether the first bytes a listener read look like a TLS ClientHello (a handshake record,
/// major version 3): used to explain a refusal on a plain-TCP port.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x16, 0x03, ..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn versions_parse_and_old_ones_are_refused_with_a_reason() {
        assert_eq!("1.2".parse::<TlsVersion>(), Ok(TlsVersion::Tls12));
        assert_eq!("1.3".parse::<TlsVersion>(), Ok(TlsVersion::Tls13));
        let old = "1.0".parse::<TlsVersion>().unwrap_err();
        assert!(old.contains("obsolete"), "{old}");
        assert!("1.1".parse::<TlsVersion>().is_err());
        assert!("".parse::<TlsVersion>().is_err());
        assert!("tls1.2".parse::<TlsVersion>().is_err());
    }

    #[test]
    fn tls_sniffing() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(!looks_like_tls(&[0x16]));
        assert!(!looks_like_tls(&[0, 0, 0, 0]));
        assert!(!looks_like_tls(b"GET /"));
    }

    #[test]
    fn names_come_from_cn_and_san_without_duplicates() {
        let ca = testca::TestCa::new("names-ca").unwrap();
        let both = ca.issue(&testca::Leaf::node("node_0")).unwrap();
        assert_eq!(cert_names(&both.identity().unwrap().chain[0]), ["node_0"]);
        let cn_only = ca
            .issue(&testca::Leaf {
                san: false,
                ..testca::Leaf::node("node_1")
            })
            .unwrap();
        assert_eq!(
            cert_names(&cn_only.identity().unwrap().chain[0]),
            ["node_1"]
        );
        assert!(cert_names(&CertificateDer::from(vec![1, 2, 3])).is_empty());
    }

    #[test]
    fn loading_reports_the_file_and_the_problem() {
        let dir = std::env::temp_dir().join(format!("rarakoon-tls-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = load_roots(&missing).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let e = load_certs(&garbage, "certificate").unwrap_err();
        assert!(e.to_string().contains("BEGIN CERTIFICATE"), "{e}");
        let e = load_key(&garbage).unwrap_err();
        assert!(e.to_string().contains("private key"), "{e}");
        let ca = testca::TestCa::new("load-ca").unwrap();
        let leaf = ca.issue(&testca::Leaf::node("node_0")).unwrap();
        let files = leaf.write(&dir, "node_0").unwrap();
        let identity = Identity::load(&files.cert, &files.key).unwrap();
        assert_eq!(identity.names(), ["node_0"]);
        // The key is never printed.
        assert!(!format!("{identity:?}").contains("PRIVATE"));
        // A key that does not fit the certificate is refused by rustls.
        let other = ca.issue(&testca::Leaf::node("node_1")).unwrap();
        let other_files = other.write(&dir, "node_1").unwrap();
        let mismatched = Identity::load(&files.cert, &other_files.key).unwrap();
        assert!(server_config(&mismatched, None, TlsVersion::Tls12).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
