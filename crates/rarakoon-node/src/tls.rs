//! A node's TLS material, read from the files `[cluster.tls]` and its `[nodes.tls]` name,
//! turned into the messenger's and the client listener's settings (ADR 0145).
//!
//! Invariants: with `[cluster.tls]`, the messenger always gets mutual TLS (there is no
//! TLS-optional mode between nodes) and the node's own certificate must name the node (the
//! messenger refuses to start otherwise); the client listener gets TLS only with `service`,
//! requires client certificates only with `service_validate_peer`, and restricts admin
//! operations only with `admin_names`. Errors name the config file and the field whose file
//! is unusable.

use std::path::Path;
use std::sync::Arc;

use rarakoon_client::listener::ListenerTls;
use rarakoon_tls::{Identity, TlsVersion};
use tcp_messenger::MessengerTls;

use crate::config::{ClusterConfig, ConfigError};

/// What a node runs with: `None`s without `[cluster.tls]`.
#[derive(Debug, Clone, Default)]
pub struct NodeTlsSetup {
    /// For the messenger (mutual TLS between nodes).
    pub messenger: Option<MessengerTls>,
    /// For the client listener (`service`).
    pub listener: Option<ListenerTls>,
}

/// Reads node `name`'s TLS files. `config_file` is only used in error messages.
pub fn load(
    config: &ClusterConfig,
    name: &str,
    config_file: &Path,
) -> Result<NodeTlsSetup, ConfigError> {
    let Some(tls) = &config.cluster.tls else {
        return Ok(NodeTlsSetup::default());
    };
    let invalid = |field: String, problem: String| ConfigError::Invalid {
        file: config_file.to_path_buf(),
        field,
        problem,
    };
    let version: TlsVersion = tls
        .version
        .parse()
        .map_err(|p| invalid("cluster.tls.version".into(), p))?;
    let roots = rarakoon_tls::load_roots(&tls.ca_cert)
        .map_err(|e| invalid("cluster.tls.ca_cert".into(), format!("is unusable: {e}")))?;
    let (i, node) = config
        .nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.name == name)
        .ok_or_else(|| ConfigError::UnknownNode {
            file: config_file.to_path_buf(),
            name: name.to_owned(),
            known: config.node_names().collect::<Vec<_>>().join(", "),
        })?;
    let Some(files) = &node.tls else {
        return Err(invalid(
            format!("nodes[{i}].tls"),
            "is missing (every node needs a certificate with [cluster.tls])".into(),
        ));
    };
    let identity = Identity::load(&files.cert, &files.key)
        .map_err(|e| invalid(format!("nodes[{i}].tls"), format!("is unusable: {e}")))?;
    let names = identity.names();
    if !names.iter().any(|n| n == name) {
        return Err(invalid(
            format!("nodes[{i}].tls.cert"),
            format!(
                "names {names:?}, not the node `{name}`; a node's certificate must carry its \
                 node name as subject CN or DNS subject alternative name, or its peers refuse it"
            ),
        ));
    }
    let listener = if tls.service {
        let client_roots = tls.service_validate_peer.then(|| Arc::clone(&roots));
        let server = rarakoon_tls::server_config(&identity, client_roots, version)
            .map_err(|e| invalid(format!("nodes[{i}].tls"), format!("is unusable: {e}")))?;
        Some(ListenerTls {
            config: server,
            admin_names: (!tls.admin_names.is_empty())
                .then(|| tls.admin_names.iter().cloned().collect()),
        })
    } else {
        None
    };
    // Built once here too, so a key that does not fit its certificate is reported as a config
    // error naming the field, not as a messenger start failure.
    rarakoon_tls::server_config(&identity, Some(Arc::clone(&roots)), version)
        .map_err(|e| invalid(format!("nodes[{i}].tls"), format!("is unusable: {e}")))?;
    Ok(NodeTlsSetup {
        messenger: Some(MessengerTls {
            roots,
            identity,
            version,
        }),
        listener,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rarakoon_tls::testca::{Leaf, TestCa};

    fn config(dir: &Path, extra: &str, n0_cert: &str) -> ClusterConfig {
        let text = format!(
            r#"
[cluster]
id = "c"
[cluster.tls]
ca_cert = "ca.pem"
{extra}

[[nodes]]
name = "n0"
addresses = ["127.0.0.1:4010"]
client_port = 4000
home_dir = "n0"
tls = {{ cert = "{n0_cert}.pem", key = "{n0_cert}.key" }}
"#
        );
        ClusterConfig::from_toml_str(&text, &dir.join("c.toml"), dir).unwrap()
    }

    #[test]
    fn loads_the_files_and_refuses_a_certificate_of_another_node() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("ca").unwrap();
        ca.write_cert(&dir.path().join("ca.pem")).unwrap();
        ca.issue(&Leaf::node("n0"))
            .unwrap()
            .write(dir.path(), "n0")
            .unwrap();
        ca.issue(&Leaf::node("n1"))
            .unwrap()
            .write(dir.path(), "n1")
            .unwrap();
        let file = dir.path().join("c.toml");

        let plain_clients = load(&config(dir.path(), "", "n0"), "n0", &file).unwrap();
        assert!(plain_clients.messenger.is_some() && plain_clients.listener.is_none());
        let admins = "service = true\nservice_validate_peer = true\nadmin_names = [\"ops\"]";
        let full = load(&config(dir.path(), admins, "n0"), "n0", &file).unwrap();
        let listener = full.listener.unwrap();
        assert_eq!(
            listener
                .admin_names
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["ops"]
        );

        match load(&config(dir.path(), "", "n1"), "n0", &file) {
            Err(ConfigError::Invalid { field, problem, .. }) => {
                assert_eq!(field, "nodes[0].tls.cert");
                assert!(
                    problem.contains("n1") && problem.contains("n0"),
                    "{problem}"
                );
            }
            other => panic!("another node's certificate was accepted: {other:?}"),
        }
        match load(&config(dir.path(), "", "missing"), "n0", &file) {
            Err(ConfigError::Invalid { field, problem, .. }) => {
                assert_eq!(field, "nodes[0].tls");
                assert!(problem.contains("missing.pem"), "{problem}");
            }
            other => panic!("a missing certificate was accepted: {other:?}"),
        }
        std::fs::write(dir.path().join("ca.pem"), "garbage").unwrap();
        match load(&config(dir.path(), "", "n0"), "n0", &file) {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "cluster.tls.ca_cert"),
            other => panic!("a garbage CA was accepted: {other:?}"),
        }
    }
}
