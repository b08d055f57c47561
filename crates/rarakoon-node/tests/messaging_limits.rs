//! The node's messaging layer against a peer that floods it: catch-up and snapshot requests
//! beyond the per-peer token bucket are dropped and counted while a legitimate peer keeps being
//! served; peer bytes waiting in the driver's queue stay within the inbox byte budget; a
//! snapshot request from an offset seeks instead of re-reading the file from byte 0; the
//! `[cluster.messaging]` knobs parse and are range-checked. Time is Tokio's paused clock; no
//! assertion depends on real time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use paxos_core::{Message, NodeId};
use rarakoon_node::config::{ClusterConfig, ConfigError};
use rarakoon_node::driver::Input;
use rarakoon_node::messaging::{MessagingCounters, RequestLimits, pump_inbox};
use rarakoon_node::storage::open_snapshot_at;
use rarakoon_node::wire::PeerMessage;
use tcp_messenger::{Inbox, Messenger, MessengerConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use write_ahead_log::{
    FileSystem, PairSink, ReadableFile, SnapshotConfig, SnapshotSource, StdFs, WritableFile,
};

const NAMES: [&str; 3] = ["n0", "n1", "n2"];
const GUARD: Duration = Duration::from_secs(3600);

/// Messengers for n0 (the node under test), n1 and n2, all linked.
async fn messengers(
    tweak_n0: impl FnOnce(&mut MessengerConfig),
) -> Vec<(Messenger<PeerMessage>, Inbox<PeerMessage>)> {
    let mut listeners = Vec::new();
    let mut addrs: BTreeMap<String, SocketAddr> = BTreeMap::new();
    for name in NAMES {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(name.to_owned(), l.local_addr().unwrap());
        listeners.push(l);
    }
    let mut tweak = Some(tweak_n0);
    let mut out = Vec::new();
    for (name, l) in NAMES.iter().zip(listeners) {
        let peers = addrs
            .iter()
            .filter(|(n, _)| n.as_str() != *name)
            .map(|(n, a)| (n.clone(), vec![*a]))
            .collect();
        let mut cfg = MessengerConfig::new(*name, "c", addrs[*name], peers);
        cfg.queue_capacity = 100_000;
        cfg.queue_bytes = 256 * 1024 * 1024;
        if *name == "n0"
            && let Some(t) = tweak.take()
        {
            t(&mut cfg);
        }
        out.push(Messenger::start_with_listener(cfg, l).unwrap());
    }
    for (m, _) in &out {
        for peer in m.peers().map(str::to_owned).collect::<Vec<_>>() {
            m.wait_established(&peer, 1).await.unwrap();
        }
    }
    out
}

fn names() -> Vec<String> {
    NAMES.iter().map(|n| (*n).to_owned()).collect()
}

fn catch_up(from: u64) -> PeerMessage {
    PeerMessage::Paxos(Message::CatchUpRequest { from })
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_catch_up_and_snapshot_requests_is_cut_and_a_real_peer_still_served() {
    let mut nodes = messengers(|_| {}).await;
    let (n2, _) = nodes.pop().unwrap();
    let (n1, _) = nodes.pop().unwrap();
    let (n0, inbox) = nodes.pop().unwrap();
    let (tx, mut rx) = mpsc::channel(16 * 1024);
    let counters = Arc::new(MessagingCounters::default());
    let limits = RequestLimits::default();
    let pump = tokio::spawn(pump_inbox(
        inbox,
        names(),
        tx,
        limits,
        Arc::clone(&counters),
    ));
    let t0 = tokio::time::Instant::now();

    // n1 floods: 20 rounds of 1000 catch-up and 1000 snapshot requests, a millisecond apart.
    const ROUNDS: u64 = 20;
    const PER_ROUND: u64 = 1000;
    let flood = tokio::spawn(async move {
        for r in 0..ROUNDS {
            for i in 0..PER_ROUND {
                n1.send("n0", &catch_up(r * PER_ROUND + i)).unwrap();
                n1.send("n0", &PeerMessage::SnapshotRequest { offset: 0, len: 1 })
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        n1
    });

    // n2 catches up the way a real node does: the next request once the previous arrived,
    // here at 500 requests a second, half the sustained limit.
    const LEGIT: u64 = 300;
    let mut from_n1 = [0u64; 2];
    let mut legit = 0u64;
    while legit < LEGIT {
        n2.send("n0", &catch_up(legit)).unwrap();
        loop {
            let input = tokio::time::timeout(GUARD, rx.recv())
                .await
                .expect("the pump stalled")
                .unwrap();
            let Input::Peer { from, msg, .. } = input else {
                panic!("unexpected input");
            };
            match (from, &msg) {
                (NodeId(2), PeerMessage::Paxos(Message::CatchUpRequest { from })) => {
                    assert_eq!(*from, legit, "n2's requests arrive in order, none lost");
                    legit += 1;
                    break;
                }
                (NodeId(1), PeerMessage::Paxos(Message::CatchUpRequest { .. })) => {
                    from_n1[0] += 1;
                }
                (NodeId(1), PeerMessage::SnapshotRequest { .. }) => from_n1[1] += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let n1 = flood.await.unwrap();
    // Let the rest of the flood through the pump.
    let sent = ROUNDS * PER_ROUND;
    let wait = async {
        loop {
            let dropped = [
                counters.dropped_catch_up_requests.load(Ordering::Relaxed),
                counters.dropped_snapshot_requests.load(Ordering::Relaxed),
            ];
            while let Ok(input) = rx.try_recv() {
                if let Input::Peer {
                    from: NodeId(1),
                    msg,
                    ..
                } = input
                {
                    match msg {
                        PeerMessage::SnapshotRequest { .. } => from_n1[1] += 1,
                        _ => from_n1[0] += 1,
                    }
                }
            }
            if from_n1[0] + dropped[0] == sent && from_n1[1] + dropped[1] == sent {
                return dropped;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let dropped = tokio::time::timeout(GUARD, wait)
        .await
        .expect("flood never drained");
    let elapsed = t0.elapsed().as_secs_f64();
    for kind in 0..2 {
        assert!(
            dropped[kind] > 0,
            "nothing of kind {kind} dropped: {dropped:?}"
        );
        // The bucket: the burst plus the sustained rate over the (virtual) time that passed.
        let allowed = limits.burst + limits.per_sec * elapsed + 1.0;
        assert!(
            (from_n1[kind] as f64) <= allowed,
            "{} requests of kind {kind} from the flooder reached the driver in {elapsed} s \
             (allowed {allowed})",
            from_n1[kind]
        );
    }
    assert_eq!(counters.dropped_requests(), dropped[0] + dropped[1]);
    assert_eq!(legit, LEGIT);
    drop(rx);
    n0.shutdown().await;
    n1.shutdown().await;
    n2.shutdown().await;
    let _ = pump.await;
}

#[tokio::test]
async fn peer_bytes_waiting_in_the_driver_queue_count_against_the_inbox_budget() {
    const BUDGET: usize = 4 * 1024 * 1024;
    const CHUNK: usize = 512 * 1024;
    const MESSAGES: u64 = 40;
    let mut nodes = messengers(|c| c.inbox_bytes = BUDGET).await;
    let (n2, _) = nodes.pop().unwrap();
    let (n1, _) = nodes.pop().unwrap();
    let (n0, inbox) = nodes.pop().unwrap();
    // The driver's queue has room for every message: only the byte budget can hold them back.
    let (tx, mut rx) = mpsc::channel(16 * 1024);
    let counters = Arc::new(MessagingCounters::default());
    let pump = tokio::spawn(pump_inbox(
        inbox,
        names(),
        tx.clone(),
        RequestLimits::default(),
        Arc::clone(&counters),
    ));
    let chunk = |i: u64| PeerMessage::SnapshotChunk {
        index: 7,
        total: MESSAGES * CHUNK as u64,
        offset: i * CHUNK as u64,
        data: vec![u8::try_from(i).unwrap(); CHUNK],
    };
    for i in 0..MESSAGES {
        n1.send("n0", &chunk(i)).unwrap();
    }
    // The driver takes nothing yet: the budget fills and the reader waits (or, were the
    // budget not held through the driver queue, every chunk lands in that queue).
    let fill = async {
        while (n0.counters().inbox_bytes as usize) < BUDGET - CHUNK - 4096
            && ((tx.max_capacity() - tx.capacity()) as u64) < MESSAGES
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), fill)
        .await
        .expect("the budget never filled");
    for _ in 0..2000 {
        tokio::task::yield_now().await;
        let held = n0.counters().inbox_bytes as usize;
        assert!(held <= BUDGET, "{held} bytes held, budget {BUDGET}");
        let queued = tx.max_capacity() - tx.capacity();
        assert!(
            (queued as u64) < MESSAGES,
            "all {MESSAGES} chunks ({} MiB) sit in the driver queue",
            (MESSAGES * CHUNK as u64) >> 20
        );
    }
    // The driver handles them (dropping each input releases its bytes): all arrive in order.
    for i in 0..MESSAGES {
        match rx.recv().await.unwrap() {
            Input::Peer { from, msg, held } => {
                assert_eq!(from, NodeId(1));
                assert!(held.bytes() > CHUNK as u64);
                assert_eq!(msg, chunk(i));
            }
            _ => panic!("unexpected input"),
        }
    }
    assert_eq!(n0.counters().inbox_bytes, 0);
    drop(rx);
    for m in [n0, n1, n2] {
        m.shutdown().await;
    }
    let _ = pump.await;
}

/// `StdFs` counting the bytes read through the files it opens.
#[derive(Debug, Default)]
struct CountingFs {
    read: Arc<AtomicU64>,
}

struct CountingFile {
    inner: Box<dyn ReadableFile>,
    read: Arc<AtomicU64>,
}

impl Read for CountingFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for CountingFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl FileSystem for CountingFs {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        StdFs.list_dir(dir)
    }
    fn create(&self, path: &Path) -> std::io::Result<Box<dyn WritableFile>> {
        StdFs.create(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn WritableFile>> {
        StdFs.open_append(path)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn ReadableFile>> {
        Ok(Box::new(CountingFile {
            inner: StdFs.open_read(path)?,
            read: Arc::clone(&self.read),
        }))
    }
    fn file_len(&self, path: &Path) -> std::io::Result<u64> {
        StdFs.file_len(path)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        StdFs.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

/// 64 pairs of 64 KiB pseudo-random values (incompressible): a snapshot of about 4 MiB.
struct Pairs;

impl SnapshotSource for Pairs {
    fn applied_index(&self) -> u64 {
        42
    }
    fn for_each_pair(&self, sink: &mut PairSink<'_>) -> std::io::Result<()> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for k in 0..64u32 {
            let value: Vec<u8> = (0..64 * 1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            sink(format!("key{k:04}").as_bytes(), &value)?;
        }
        Ok(())
    }
}

#[test]
fn a_snapshot_request_from_an_offset_seeks_instead_of_reading_from_byte_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    StdFs.create_dir_all(&dir).unwrap();
    write_ahead_log::write_snapshot(&StdFs, &dir, &Pairs, &SnapshotConfig::default()).unwrap();
    let file = std::fs::read(write_ahead_log::head_snapshot_path(&dir)).unwrap();
    let total = file.len() as u64;
    assert!(total > 4_000_000, "snapshot of {total} bytes");

    for offset in [1, total / 2, total - 10, total] {
        let fs = CountingFs::default();
        let mut stream = open_snapshot_at(&fs, &dir, offset).unwrap().unwrap();
        let opened = fs.read.load(Ordering::Relaxed);
        assert!(
            opened < 64 * 1024,
            "{opened} bytes read to open the snapshot at offset {offset} of {total}"
        );
        assert_eq!(stream.total_len(), total);
        assert_eq!(stream.index(), 42);
        let chunk = stream.next_chunk(1024).unwrap().unwrap_or_default();
        let end = (offset + 1024).min(total);
        assert_eq!(
            chunk,
            file[offset as usize..end as usize],
            "offset {offset}"
        );
    }
    // Offset 0 starts at the beginning; past the end is refused, not served.
    let fs = CountingFs::default();
    let mut stream = open_snapshot_at(&fs, &dir, 0).unwrap().unwrap();
    assert_eq!(stream.next_chunk(16).unwrap().unwrap(), file[..16]);
    assert!(open_snapshot_at(&fs, &dir, total + 1).is_err());
    assert!(
        open_snapshot_at(&fs, &tmp.path().join("none"), 5)
            .unwrap()
            .is_none()
    );
}

fn parse(extra: &str) -> Result<ClusterConfig, ConfigError> {
    let text = format!(
        "[cluster]\nid = \"c\"\n{extra}\n[[nodes]]\nname = \"n0\"\naddresses = [\"127.0.0.1:4000\"]\n\
         client_port = 4001\nhome_dir = \"/tmp/x\"\n"
    );
    ClusterConfig::from_toml_str(&text, Path::new("t.toml"), Path::new("/"))
}

#[test]
fn messaging_limits_parse_with_defaults_and_are_range_checked() {
    let c = parse("").unwrap();
    let m = &c.cluster.messaging;
    assert_eq!(m.idle_timeout(), Duration::from_secs(30));
    assert_eq!(m.keepalive_interval(), Duration::from_secs(5));
    assert!(m.idle_timeout() >= m.keepalive_interval() * 2);
    let c = parse(
        "[cluster.messaging]\nidle_timeout_secs = 12.0\ninbox_bytes = 8388608\n\
         requests_per_sec = 50.0\nrequest_burst = 4\n",
    )
    .unwrap();
    assert_eq!(
        c.cluster.messaging.keepalive_interval(),
        Duration::from_secs(2)
    );
    assert_eq!(c.cluster.messaging.inbox_bytes, 8 << 20);
    for (bad, field) in [
        ("idle_timeout_secs = 0.5", "idle_timeout_secs"),
        ("inbox_bytes = 1000", "inbox_bytes"),
        ("requests_per_sec = 0.0", "requests_per_sec"),
        ("request_burst = 0", "request_burst"),
    ] {
        let err = parse(&format!("[cluster.messaging]\n{bad}\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("cluster.messaging.{field}")),
            "{err}"
        );
    }
    assert!(parse("[cluster.messaging]\nbogus = 1\n").is_err());
}
