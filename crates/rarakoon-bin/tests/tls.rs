//! A 3-node TLS cluster of real `rarakoon-bin` processes: mutual TLS between the nodes, TLS
//! with client certificates on the client port, admin operations for the admin name only.
//! Clients: the Rust client, the CLI, and a Python 3 `ssl` socket speaking the Arakoon
//! protocol by hand. Refused: a node certificate claiming another node, a client certificate
//! on the messaging port, a stranger who knows only the cluster id (plain TCP, or TLS without
//! a certificate), plain TCP on the client port, a client without a certificate, with an
//! expired one or one from another CA. The cluster serves its clients throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rarakoon_client::{Client, ClientConfig, ClientTls, Request};
use rarakoon_tls::testca::{Leaf, TestCa};
use rarakoon_tls::tokio_rustls::TlsConnector;
use rarakoon_tls::{Identity, TlsVersion};
use support::{ClusterSpec, TestCluster, output_bounded, runtime, set_retry, wait_for};
use tcp_messenger::{Frame, Hello, HelloReply, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ELECTION: Duration = Duration::from_secs(60);
const NODES: [&str; 3] = ["n0", "n1", "n2"];

struct TlsCluster {
    cluster: TestCluster,
    tls_dir: PathBuf,
    ca: TestCa,
    roots: Arc<rustls::RootCertStore>,
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let mut spec = ClusterSpec::new(3);
        spec.extra_cluster_lines = vec![
            "[cluster.tls]".into(),
            "ca_cert = \"tls/ca.pem\"".into(),
            "service = true".into(),
            "service_validate_peer = true".into(),
            "admin_names = [\"admin\"]".into(),
        ];
        let mut cluster = TestCluster::new(&spec);
        let tls_dir = cluster.dir.path().join("tls");
        std::fs::create_dir_all(&tls_dir).unwrap();
        let ca = TestCa::new("e2e CA").unwrap();
        ca.write_cert(&tls_dir.join("ca.pem")).unwrap();
        let mut text = std::fs::read_to_string(cluster.config_file()).unwrap();
        for n in NODES {
            ca.issue(&Leaf::node(n))
                .unwrap()
                .write(&tls_dir, n)
                .unwrap();
            text = text.replace(
                &format!("name = \"{n}\"\n"),
                &format!(
                    "name = \"{n}\"\ntls = {{ cert = \"tls/{n}.pem\", key = \"tls/{n}.key\" }}\n"
                ),
            );
        }
        std::fs::write(cluster.config_file(), text).unwrap();
        // The CLI picks up client.pem next to the CA by itself: make it the admin's.
        ca.issue(&Leaf::client("admin"))
            .unwrap()
            .write(&tls_dir, "client")
            .unwrap();
        ca.issue(&Leaf::client("app"))
            .unwrap()
            .write(&tls_dir, "app")
            .unwrap();
        let roots = rarakoon_tls::load_roots(&tls_dir.join("ca.pem")).unwrap();
        cluster.start_all();
        TlsCluster {
            cluster,
            tls_dir,
            ca,
            roots,
        }
    }

    fn identity(&self, leaf: Leaf) -> Identity {
        self.ca.issue(&leaf).unwrap().identity().unwrap()
    }

    fn client(&self, identity: Option<Identity>) -> Client {
        let mut config = ClientConfig::new(self.cluster.cluster_id.clone());
        for n in NODES {
            config = config.node(n, self.cluster.client_addr(n));
        }
        config.request_timeout = Duration::from_secs(10);
        config.max_attempts = 40;
        config.retry_delay = Duration::from_millis(100);
        config.tls = Some(ClientTls {
            roots: Arc::clone(&self.roots),
            identity,
            version: TlsVersion::Tls12,
        });
        Client::new(config).unwrap()
    }

    fn messaging_addr(&self, n: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.cluster.node(n).messaging_port))
    }

    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let config = self.cluster.config_file().to_str().unwrap().to_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--cluster-config", config.as_str()]);
        self.cluster.cli(&all)
    }
}

fn hello_as(name: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: "e2e".into(),
        node_name: name.into(),
        membership: String::new(),
    }
}

/// Says hello as `claim` on the messaging port of `at`; `None` when no reply came (the
/// TLS handshake failed or the connection was closed).
async fn messaging_hello(
    tls: &TlsCluster,
    at: &str,
    identity: Option<&Identity>,
    claim: &str,
) -> Option<HelloReply> {
    let tcp = TcpStream::connect(tls.messaging_addr(at)).await.unwrap();
    let config = rarakoon_tls::client_config(
        Arc::clone(&tls.roots),
        Some(at),
        identity,
        TlsVersion::Tls12,
    )
    .unwrap();
    let mut s = TlsConnector::from(config)
        .connect(rarakoon_tls::server_name(), tcp)
        .await
        .ok()?;
    s.write_all(Frame::encode(&hello_as(claim), 4096).unwrap().as_bytes())
        .await
        .ok()?;
    s.flush().await.ok()?;
    read_reply(&mut s).await
}

async fn read_reply(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<HelloReply> {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.ok()?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len > 64 * 1024 {
        return None;
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    wire_codec::decode_payload::<HelloReply>(&payload, &mut rkyv::util::AlignedVec::new()).ok()
}

/// Runs `script` with python3; returns its stdout (the test fails if it fails).
fn python(dir: &Path, script: &str, args: &[&str]) -> String {
    let file = dir.join("client.py");
    std::fs::write(&file, script).unwrap();
    let out = output_bounded(
        Command::new("python3").arg(&file).args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "python3 client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A standard TLS client (Python 3's `ssl`) speaking Arakoon's protocol by hand: prologue,
/// WHO_MASTER, SET, GET (docs/protocol.md).
const PYTHON_CLIENT: &str = r#"
import socket, ssl, struct, sys
host, port, ca, cert, key, name, cluster = sys.argv[1:8]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
def s(b): return struct.pack('<I', len(b)) + b
def cmd(op): return struct.pack('<I', 0xB1FF0000 | op)
raw = socket.create_connection((host, int(port)), timeout=20)
# The node's certificate names the node (SAN DNS:<name>); check it like any TLS client.
conn = ctx.wrap_socket(raw, server_hostname=name)
def read(n):
    out = b''
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk: raise SystemExit('closed after %r' % out)
        out += chunk
    return out
def rc():
    code = struct.unpack('<i', read(4))[0]
    if code != 0:
        msg = read(struct.unpack('<I', read(4))[0])
        raise SystemExit('error %d %r' % (code, msg))
def string(): return read(struct.unpack('<I', read(4))[0])
conn.sendall(struct.pack('<II', 0xB1FF0000, 1) + s(cluster.encode()))
conn.sendall(cmd(0x02))
rc()
master = string().decode() if read(1) == b'\x01' else None
print('master', master, conn.version())
if master == name:
    conn.sendall(cmd(0x09) + s(b'py-key') + s(b'py-value'))
    rc()
    conn.sendall(cmd(0x08) + b'\x00' + s(b'py-key'))
    rc()
    print('get', string().decode())
"#;

#[test]
fn a_tls_cluster_serves_authenticated_clients_and_refuses_impostors() {
    let tls = TlsCluster::start();
    let master = wait_for("a master over TLS", ELECTION, || {
        runtime()
            .block_on(async {
                let client = tls.client(Some(tls.identity(Leaf::client("app"))));
                client.who_master().await.ok().flatten()
            })
            .map(|m| String::from_utf8_lossy(&m).into_owned())
    });
    let rt = runtime();
    let app = tls.client(Some(tls.identity(Leaf::client("app"))));
    rt.block_on(set_retry(&app, "k", "v"));
    assert_eq!(rt.block_on(app.get("k")).unwrap(), "v");

    // The CLI: CA from the config, the admin certificate next to it.
    let (code, out, err) = tls.cli(&["client", "get", "k"]);
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    let (code, out, err) = tls.cli(&["admin", "--node", &master, "current-state"]);
    assert_eq!(code, 0, "{out}{err}");
    // Admin operations need the admin name: app's certificate is refused.
    let app_pem = tls.tls_dir.join("app.pem");
    let app_key = tls.tls_dir.join("app.key");
    let ca_pem = tls.tls_dir.join("ca.pem");
    let (code, out, err) = tls.cli(&[
        "admin",
        "--node",
        &master,
        "--tls-ca",
        ca_pem.to_str().unwrap(),
        "--tls-cert",
        app_pem.to_str().unwrap(),
        "--tls-key",
        app_key.to_str().unwrap(),
        "collapse",
    ]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("refused") && err.contains("app"), "{out}{err}");
    // Without any client certificate the client port refuses the TLS session.
    let (code, _, err) = tls.cli(&["client", "--tls-ca", ca_pem.to_str().unwrap(), "get", "k"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("CertificateRequired") || err.contains("certificate"),
        "{err}"
    );

    // Python 3's ssl module, speaking the protocol by hand, to the master.
    let port = tls.cluster.node(&master).client_port.to_string();
    let out = python(
        tls.cluster.dir.path(),
        PYTHON_CLIENT,
        &[
            "127.0.0.1",
            &port,
            ca_pem.to_str().unwrap(),
            app_pem.to_str().unwrap(),
            app_key.to_str().unwrap(),
            &master,
            "e2e",
        ],
    );
    assert!(out.contains(&format!("master {master} TLSv1.3")), "{out}");
    assert!(out.contains("get py-value"), "{out}");
    assert_eq!(rt.block_on(app.get("py-key")).unwrap(), "py-value");

    // Impersonation on the messaging port of n0.
    let n1 = tls.identity(Leaf::node("n1"));
    match rt.block_on(messaging_hello(&tls, "n0", Some(&n1), "n2")) {
        Some(HelloReply::Refused { reason }) => {
            assert!(
                reason.contains("\"n2\"") && reason.contains("n1"),
                "{reason}"
            )
        }
        other => panic!("n1's certificate posed as n2: {other:?}"),
    }
    let client_cert = tls.identity(Leaf::client("app"));
    match rt.block_on(messaging_hello(&tls, "n0", Some(&client_cert), "n1")) {
        Some(HelloReply::Refused { reason }) => assert!(reason.contains("app"), "{reason}"),
        other => panic!("a client certificate was taken on the messaging port: {other:?}"),
    }
    // A stranger who knows the cluster id: over TLS without a certificate, and over plain TCP.
    assert_eq!(rt.block_on(messaging_hello(&tls, "n0", None, "n1")), None);
    let plain = rt.block_on(async {
        let mut s = TcpStream::connect(tls.messaging_addr("n0")).await.unwrap();
        s.write_all(Frame::encode(&hello_as("n1"), 4096).unwrap().as_bytes())
            .await
            .unwrap();
        read_reply(&mut s).await
    });
    assert_eq!(plain, None);
    wait_for("n0 to log the refusals", ELECTION, || {
        let log = tls.cluster.log("n0");
        (log.contains("claims to be node \\\"n2\\\"") || log.contains("claims to be node \"n2\""))
            .then_some(())
            .filter(|()| log.contains("TLS handshake failed"))
    });

    // The client port: plain TCP, an expired certificate, another CA's.
    assert_eq!(tls.cluster.ask(&master, &Request::WhoMaster), None);
    let expired = tls.identity(Leaf {
        expired: true,
        ..Leaf::client("app")
    });
    let one_try = |identity| {
        let client = tls.client(Some(identity));
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), client.ping()).await })
    };
    assert!(matches!(one_try(expired), Ok(Err(_))));
    let foreign = TestCa::new("other")
        .unwrap()
        .issue(&Leaf::client("app"))
        .unwrap()
        .identity()
        .unwrap();
    assert!(matches!(one_try(foreign), Ok(Err(_))));

    // Everyone legitimate was served throughout, and still is.
    rt.block_on(set_retry(&app, "k", "v2"));
    assert_eq!(rt.block_on(app.get("k")).unwrap(), "v2");
    let (code, out, err) = tls.cli(&["client", "get", "k"]);
    assert_eq!((code, out.trim()), (0, "v2"), "{err}");
    for n in NODES {
        assert!(
            tls.cluster.is_running(n),
            "{n} died: {}",
            tls.cluster.log(n)
        );
        assert!(
            !tls.cluster.log(n).contains("panicked"),
            "{}",
            tls.cluster.log(n)
        );
    }
    // check-config reads every node's files and says what TLS does.
    let text = output_bounded(
        Command::new(support::binary())
            .arg("check-config")
            .arg(tls.cluster.config_file()),
        Duration::from_secs(60),
    );
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{out}");
    assert!(
        out.contains("mutual TLS between nodes") && out.contains("admin"),
        "{out}"
    );
}

#[test]
fn check_config_warns_about_reachable_ports_without_tls_and_refuses_a_wrong_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[cluster]\nid = \"c\"\n\n[[nodes]]\nname = \"n0\"\naddresses = [\"10.1.2.3:4010\"]\n\
         client_port = 4000\nhome_dir = \"n0\"\n",
    )
    .unwrap();
    let out = output_bounded(
        Command::new(support::binary())
            .arg("check-config")
            .arg(&file),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning") && text.contains("without TLS"),
        "{text}"
    );

    // With TLS, a node whose certificate names another node is refused by check-config.
    let ca = TestCa::new("ca").unwrap();
    ca.write_cert(&dir.path().join("ca.pem")).unwrap();
    ca.issue(&Leaf::node("n1"))
        .unwrap()
        .write(dir.path(), "n0")
        .unwrap();
    std::fs::write(
        &file,
        "[cluster]\nid = \"c\"\n[cluster.tls]\nca_cert = \"ca.pem\"\n\n[[nodes]]\nname = \"n0\"\n\
         addresses = [\"127.0.0.1:4010\"]\nclient_port = 4000\nhome_dir = \"n0\"\n\
         tls = { cert = \"n0.pem\", key = \"n0.key\" }\n",
    )
    .unwrap();
    let out = output_bounded(
        Command::new(support::binary())
            .arg("check-config")
            .arg(&file),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nodes[0].tls.cert") && err.contains("n1"),
        "{err}"
    );
}
