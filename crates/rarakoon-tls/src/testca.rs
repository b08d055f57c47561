//! Throwaway certificates: a CA and the node and client certificates it signs, generated with
//! rcgen. For `rarakoon-bin local --tls` (a cluster to try TLS with, in one command) and for
//! tests (expired certificates, foreign CAs, certificates without a SAN). Not for production:
//! make a real cluster's CA and certificates as the README's Security section says.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{Identity, TlsError};

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A node: server and client authentication (it listens and dials).
    Node,
    /// A client: client authentication only.
    Client,
}

/// A leaf certificate to issue.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The name, as the subject CN (and the DNS SAN when `san`).
    pub name: String,
    /// Also put the name in a DNS subject alternative name.
    pub san: bool,
    /// Make it valid only in 2000 (so it is expired now).
    pub expired: bool,
    /// What it is for.
    pub usage: Usage,
}

impl Leaf {
    /// A node certificate for `name` (CN and SAN), valid now.
    pub fn node(name: &str) -> Leaf {
        Leaf {
            name: name.to_owned(),
            san: true,
            expired: false,
            usage: Usage::Node,
        }
    }

    /// A client certificate for `name` (CN and SAN), valid now.
    pub fn client(name: &str) -> Leaf {
        Leaf {
            usage: Usage::Client,
            ..Leaf::node(name)
        }
    }
}

/// A generated certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// Where [`Issued::write`] put the files.
#[derive(Debug, Clone)]
pub struct Files {
    /// `<stem>.pem`.
    pub cert: PathBuf,
    /// `<stem>.key`.
    pub key: PathBuf,
}

fn gen_error(e: rcgen::Error) -> TlsError {
    TlsError::Config(format!("cannot generate a certificate: {e}"))
}

impl Issued {
    /// The certificate and key as an [`Identity`].
    pub fn identity(&self) -> Result<Identity, TlsError> {
        use rustls_pki_types::pem::PemObject;
        let bad = |e: rustls_pki_types::pem::Error| TlsError::Config(e.to_string());
        Ok(Identity {
            chain: vec![
                rustls_pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
                    .map_err(bad)?,
            ],
            key: rustls_pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
                .map_err(bad)?,
        })
    }

    /// Writes `<dir>/<stem>.pem` and `<dir>/<stem>.key` (the key readable by the owner only).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<Files, TlsError> {
        let files = Files {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        write_file(&files.cert, &self.cert_pem, 0o644)?;
        write_file(&files.key, &self.key_pem, 0o600)?;
        Ok(files)
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let failed = |source| TlsError::Read {
        what: "generated file",
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, text).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(failed)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(())
}

/// A throwaway certificate authority.
#[derive(Debug)]
pub struct TestCa {
    cert_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA whose certificate's CN is `name`.
    pub fn new(name: &str) -> Result<TestCa, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(gen_error)?;
        let cert = params.self_signed(&key).map_err(gen_error)?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A root store that trusts exactly this CA (what `load_roots` makes of its file).
    pub fn roots(&self) -> Result<std::sync::Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| TlsError::Config(format!("cannot trust the test CA: {e}")))?;
        Ok(std::sync::Arc::new(roots))
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<(), TlsError> {
        write_file(path, &self.cert_pem, 0o644)
    }

    /// Issues a leaf certificate signed by this CA.
    pub fn issue(&self, leaf: &Leaf) -> Result<Issued, TlsError> {
        let sans = if leaf.san {
            vec![leaf.name.clone()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(sans).map_err(gen_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.name.as_str());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match leaf.usage {
            Usage::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        if leaf.expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        } else {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        }
        let key = KeyPair::generate().map_err(gen_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_error)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
