//! TLS for the CLI: which CA and client certificate `client`, `admin` and `bench` use, and the
//! throwaway certificates of `local --tls` / `bench --local --tls`.
//!
//! Where the settings come from, first match wins:
//! 1. `--tls-ca FILE` (with `--tls-cert FILE --tls-key FILE` for a client certificate);
//! 2. the cluster config's `[cluster.tls]` when its `service` is on: its `ca_cert`, and the
//!    client certificate from `--tls-cert/--tls-key`, or else `client.pem`/`client.key` next
//!    to the CA certificate when both exist (the layout `local --tls` writes);
//! 3. none: plain TCP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rarakoon_client::ClientTls;
use rarakoon_node::ClusterConfig;
use rarakoon_node::config::{NodeTls, TlsSection};
use rarakoon_tls::testca::{Leaf, TestCa};
use rarakoon_tls::{Identity, TlsVersion};

use crate::cli::Target;

/// The directory (under a cluster's directory) `local --tls` writes its certificates to.
pub const TLS_DIR: &str = "tls";
/// The admin name of the throwaway certificates: `client.pem` carries it, `app.pem` does not.
pub const LOCAL_ADMIN_NAME: &str = "admin";

/// The TLS settings of the CLI's connections, `None` for plain TCP.
pub fn client_settings(
    target: &Target,
    config: &ClusterConfig,
) -> anyhow::Result<Option<ClientTls>> {
    settings_from(
        target.tls_ca.as_deref(),
        target.tls_cert.as_deref(),
        target.tls_key.as_deref(),
        config,
    )
}

/// The TLS settings a cluster config implies for a client without flags (`local`'s own
/// readiness checks, `bench --local`).
pub fn config_settings(config: &ClusterConfig) -> anyhow::Result<Option<ClientTls>> {
    settings_from(None, None, None, config)
}

fn settings_from(
    tls_ca: Option<&Path>,
    tls_cert: Option<&Path>,
    tls_key: Option<&Path>,
    config: &ClusterConfig,
) -> anyhow::Result<Option<ClientTls>> {
    let from_config = config.cluster.tls.as_ref().filter(|t| t.service);
    let (ca, version): (PathBuf, Result<TlsVersion, String>) = match (tls_ca, from_config) {
        (Some(ca), _) => (
            ca.to_path_buf(),
            from_config.map_or(Ok(TlsVersion::Tls12), |t| t.version.parse()),
        ),
        (None, Some(tls)) => (tls.ca_cert.clone(), tls.version.parse()),
        (None, None) => {
            if tls_cert.is_some() {
                bail!(
                    "--tls-cert needs --tls-ca (the cluster config does not turn TLS on for \
                     clients)"
                );
            }
            return Ok(None);
        }
    };
    let version = version.map_err(|p| anyhow::anyhow!("cluster.tls.version {p}"))?;
    let roots = rarakoon_tls::load_roots(&ca)?;
    let identity = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(Identity::load(cert, key)?),
        (None, None) => {
            let dir = ca.parent().unwrap_or_else(|| Path::new("."));
            let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
            if tls_ca.is_none() && cert.exists() && key.exists() {
                Some(Identity::load(&cert, &key)?)
            } else {
                None
            }
        }
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    Ok(Some(ClientTls {
        roots,
        identity,
        version,
    }))
}

/// A client configuration for node `name` (its certificate must name it).
pub fn config_for(
    tls: &ClientTls,
    name: &str,
) -> anyhow::Result<Arc<rarakoon_tls::rustls::ClientConfig>> {
    Ok(rarakoon_tls::client_config(
        Arc::clone(&tls.roots),
        Some(name),
        tls.identity.as_ref(),
        tls.version,
    )?)
}

/// Generates a throwaway CA, a certificate for every node of `config`, `client.pem` (name
/// `admin`, an admin name) and `app.pem` (no admin name) under `<dir>/tls`, and turns TLS on
/// in `config` (mutual TLS between nodes, TLS with client certificates on the client port,
/// admin operations for `admin` only). Paths in `config` are relative to `dir`.
pub fn generate_local(config: &mut ClusterConfig, dir: &Path) -> anyhow::Result<()> {
    let tls_dir = dir.join(TLS_DIR);
    std::fs::create_dir_all(&tls_dir)
        .with_context(|| format!("cannot create {}", tls_dir.display()))?;
    let ca = TestCa::new(&format!("{} throwaway CA", config.cluster.id))?;
    ca.write_cert(&tls_dir.join("ca.pem"))?;
    let rel = |file: &str| PathBuf::from(TLS_DIR).join(file);
    for node in &mut config.nodes {
        ca.issue(&Leaf::node(&node.name))?
            .write(&tls_dir, &node.name)?;
        node.tls = Some(NodeTls {
            cert: rel(&format!("{}.pem", node.name)),
            key: rel(&format!("{}.key", node.name)),
        });
    }
    ca.issue(&Leaf::client(LOCAL_ADMIN_NAME))?
        .write(&tls_dir, "client")?;
    ca.issue(&Leaf::client("app"))?.write(&tls_dir, "app")?;
    config.cluster.tls = Some(TlsSection {
        ca_cert: rel("ca.pem"),
        service: true,
        service_validate_peer: true,
        version: "1.2".to_owned(),
        admin_names: vec![LOCAL_ADMIN_NAME.to_owned()],
    });
    Ok(())
}
