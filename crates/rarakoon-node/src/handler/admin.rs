//! Admin requests, one small function per opcode: statistics, version, current state,
//! expect-progress-possible, collapse and copy_db_to_head, optimize/defrag (no-ops for an
//! in-memory store, refused on the master like Arakoon), drop master, and GET_DB (a
//! consistent image of the store streamed from a blocking thread in bounded pieces,
//! `crate::backup`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use paxos_core::NodeRole;
use rarakoon_client::listener::Outcome;
use rarakoon_client::{
    ErrorCode, ErrorReply, NamedValue, Response, Value as StatValue, VersionInfo,
};
use tokio::sync::{mpsc, oneshot};

use super::{Answer, NodeHandler, err, unix_now};
use crate::driver::Input;
use crate::stats::{SIZE_NAMES, Series, TIMING_NAMES};

/// VERSION: Arakoon 1.9's protocol, and this build.
pub(super) fn version() -> Response {
    Response::Version(VersionInfo {
        major: 1,
        minor: 9,
        patch: 0,
        info: Bytes::from(format!(
            "rarakoon {} (Arakoon 1.9 client protocol)\n",
            env!("CARGO_PKG_VERSION")
        )),
    })
}

impl NodeHandler {
    pub(super) async fn statistics(&self) -> NamedValue {
        let float = |name: &'static str, v: f64| NamedValue::new(name, StatValue::Float(v));
        let int = |name: &'static str| NamedValue::new(name, StatValue::Int(0));
        let series = |name: &'static str, s: &Series| {
            NamedValue::new(
                name,
                StatValue::List(vec![
                    NamedValue::new("n", StatValue::Int(i32::try_from(s.n).unwrap_or(i32::MAX))),
                    NamedValue::new("min", StatValue::Float(s.min)),
                    NamedValue::new("max", StatValue::Float(s.max)),
                    NamedValue::new("m2", StatValue::Float(s.m2)),
                    NamedValue::new("avg", StatValue::Float(s.mean)),
                    NamedValue::new("var", StatValue::Float(s.variance())),
                ]),
            )
        };
        let snapshot = self.stats.snapshot();
        let mut children = vec![float("start", self.started_unix), float("last", unix_now())];
        for (name, value) in SIZE_NAMES.iter().zip(snapshot.sizes) {
            children.push(float(name, value));
        }
        children.push(series("harvest_stats", &Series::default()));
        for (name, s) in TIMING_NAMES.iter().zip(snapshot.timings.iter()) {
            children.push(series(name, s));
        }
        children.push(series("op_info", &snapshot.all));
        let payload_kib = self.store().stats().payload_bytes as f64 / 1024.0;
        children.push(float("mem_allocated", payload_kib));
        for name in [
            "mem_maxrss",
            "mem_minor_collections",
            "mem_major_collections",
            "mem_compactions",
        ] {
            children.push(int(name));
        }
        children.push(NamedValue::new(
            "node_is",
            StatValue::List(self.node_is().await),
        ));
        NamedValue::new("arakoon_stats", StatValue::List(children))
    }

    pub(super) fn current_state(&self) -> &'static [u8] {
        match self.shared.view().role {
            NodeRole::Starting => b"Starting",
            NodeRole::Follower => b"Slave_steady_state",
            NodeRole::Candidate => b"Wait_for_promises",
            NodeRole::MasterElect => b"Wait_for_accepteds",
            NodeRole::Master => b"Stable_master",
        }
    }

    async fn collapse(&self) -> Result<crate::storage::CollapseReport, ErrorReply> {
        let (tx, rx) = oneshot::channel();
        if self
            .inputs
            .send(Input::Collapse { reply: tx })
            .await
            .is_err()
        {
            return Err(ErrorReply::going_down());
        }
        match rx.await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(e)) => Err(err(ErrorCode::UnknownFailure, e)),
            Err(_) => Err(ErrorReply::going_down()),
        }
    }

    /// Arakoon's `node_is`: this node's applied index, then the log index each other node was
    /// last seen to hold (a master hears every voter's acknowledgements, a slave its master's
    /// accepts), in node order. Nodes not heard from since start are left out, as Arakoon
    /// leaves them out; a stopping driver leaves only this node.
    async fn node_is(&self) -> Vec<NamedValue> {
        let entry = |name: Bytes, index: u64| {
            NamedValue::new(
                name,
                StatValue::Int64(i64::try_from(index).unwrap_or(i64::MAX)),
            )
        };
        let applied = self.store().applied_index().unwrap_or(0);
        let mut list = vec![entry(Bytes::from(self.config.node_name.clone()), applied)];
        let (tx, rx) = oneshot::channel();
        if self
            .inputs
            .send(Input::Witnessed { reply: tx })
            .await
            .is_ok()
            && let Ok(witnessed) = rx.await
        {
            for (node, index) in witnessed {
                list.push(entry(self.name_of(node), index));
            }
        }
        list
    }

    pub(super) fn expect_progress_possible(&self) -> Response {
        Response::ExpectProgressPossible(
            self.shared.holds_lease() && self.store().applied_index().is_some(),
        )
    }

    /// COLLAPSE_TLOGS keeping `tlogs_to_keep` completed segments (ADR 0165).
    pub(super) async fn collapse_tlogs(&self, tlogs_to_keep: i32) -> Answer {
        crate::storage::answer_collapse_tlogs(&self.inputs, tlogs_to_keep).await
    }

    /// A forced collapse, refused on the master and on a witness like Arakoon's.
    pub(super) async fn copy_db_to_head(&self, tlogs_to_keep: i32) -> Answer {
        if tlogs_to_keep < 1 {
            return Err(err(
                ErrorCode::UnknownFailure,
                format!("tlogs_to_keep={tlogs_to_keep} is not acceptable"),
            ));
        }
        self.check_not_witness()?;
        self.check_not_master()?;
        self.collapse().await?;
        Ok(Response::CopyDbToHead)
    }

    /// OPTIMIZE_DB and DEFRAG_DB: nothing to do for an in-memory store, but refused where
    /// Arakoon refuses them, so scripts see the same answers.
    pub(super) fn optimize_db(&self, response: Response) -> Answer {
        self.check_not_witness()?;
        self.check_not_master()?;
        Ok(response)
    }

    pub(super) async fn drop_master(&self) -> Answer {
        if self.config.node_names.len() == 1 {
            return Err(err(
                ErrorCode::NotSupported,
                "drop master not supported for singletons",
            ));
        }
        if self.inputs.send(Input::DropMaster).await.is_err() {
            return Err(ErrorReply::going_down());
        }
        Ok(Response::DropMaster)
    }
}

impl NodeHandler {
    /// GET_DB is refused on a witness (no data) and on the master (as Arakoon does: the copy's
    /// work belongs on a slave, away from the node serving writes).
    pub(super) fn check_get_db(&self) -> Result<(), ErrorReply> {
        self.check_not_witness()?;
        self.check_not_master()
    }

    /// GET_DB: a consistent image of the store, streamed (see [`crate::backup`]): Arakoon's
    /// `i64` length, then the image, a head snapshot. The connection closes after it.
    pub(super) fn get_db(&self) -> Outcome {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        if let Err(e) = self.check_get_db() {
            self.shared
                .metrics
                .request("get_db", false, started.elapsed().as_secs_f64());
            return Outcome::new(Err(e));
        }
        let mut header = BytesMut::new();
        rarakoon_client::encode_reply(&Ok(Response::GetDb(Bytes::new())), &mut header);
        let config = crate::backup::snapshot_config(self.config.max_request_size, u64::MAX);
        let (tx, rx) = mpsc::channel(crate::backup::QUEUE_CHUNKS);
        let shared = Arc::clone(&self.shared);
        let node = self.config.node_name.clone();
        tokio::task::spawn_blocking(move || {
            let result = crate::backup::stream_image(&shared.store, header, &config, &tx);
            match &result {
                Ok(info) => tracing::info!(
                    node,
                    index = info.index,
                    pairs = info.pairs,
                    bytes = info.bytes,
                    "get_db: streamed a copy of the store"
                ),
                Err(e) => tracing::warn!(node, "get_db: stopped: {e}"),
            }
            shared
                .metrics
                .request("get_db", result.is_ok(), started.elapsed().as_secs_f64());
        });
        Outcome::streamed(
            Ok(Response::GetDb(Bytes::new())),
            rarakoon_client::listener::ReplyStream::new(rx),
        )
    }
}
