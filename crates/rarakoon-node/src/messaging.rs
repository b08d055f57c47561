//! Node-to-node messaging over `tcp-messenger`: the [`Transport`] the driver sends through, and
//! the task that feeds received messages to the driver.
//!
//! The messenger names peers; paxos-core numbers them. This module maps between the two with
//! the membership's `NodeId` order (`crate::membership`), drops (with a log line) anything from
//! a name it does not know, and drops any message naming a node number outside the membership
//! ([`crate::wire::check_nodes`]) before the driver sees it.

use std::collections::BTreeMap;
use std::sync::Arc;

use paxos_core::NodeId;
use tcp_messenger::{Inbox, Messenger};
use tokio::sync::mpsc;

use crate::driver::Input;
use crate::transport::Transport;
use crate::wire::PeerMessage;

/// Sends through a running messenger.
#[derive(Debug)]
pub struct TcpTransport {
    messenger: Messenger<PeerMessage>,
    names: Vec<String>,
}

impl TcpTransport {
    /// A transport over `messenger`; `names[i]` is the node with id `i`.
    pub fn new(messenger: Messenger<PeerMessage>, names: Vec<String>) -> Self {
        TcpTransport { messenger, names }
    }
}

impl Transport for TcpTransport {
    fn send(&self, to: NodeId, msg: PeerMessage) {
        let Some(name) = self.names.get(to.index()) else {
            tracing::warn!(%to, "no such peer; message dropped");
            return;
        };
        if let Err(e) = self.messenger.send(name, &msg) {
            tracing::debug!(peer = %name, "message not sent: {e}");
        }
    }

    fn broadcast(&self, msg: PeerMessage) {
        if let Err(e) = self.messenger.broadcast(&msg) {
            tracing::debug!("broadcast not sent: {e}");
        }
    }
}

/// Moves messages from the messenger's inbox to the driver until either side closes.
pub async fn pump_inbox(
    mut inbox: Inbox<PeerMessage>,
    names: Vec<String>,
    driver: mpsc::Sender<Input>,
) {
    let ids: BTreeMap<Arc<str>, NodeId> = names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            u8::try_from(i)
                .ok()
                .map(|i| (Arc::from(n.as_str()), NodeId(i)))
        })
        .collect();
    let mut batch = Vec::with_capacity(64);
    loop {
        batch.clear();
        if inbox.recv_many(&mut batch, 64).await == 0 {
            return;
        }
        for incoming in batch.drain(..) {
            let Some(&from) = ids.get(&incoming.from) else {
                tracing::warn!(peer = %incoming.from, "message from an unknown node dropped");
                continue;
            };
            if let Err(problem) = crate::wire::check_nodes(&incoming.msg, names.len()) {
                tracing::warn!(peer = %incoming.from, "invalid message dropped: {problem}");
                continue;
            }
            if driver
                .send(Input::Peer {
                    from,
                    msg: incoming.msg,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
