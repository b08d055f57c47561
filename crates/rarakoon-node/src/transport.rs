//! The seam between the driver and node-to-node messaging.
//!
//! The driver only needs "send this to that peer" and "send this to every peer"; sends never
//! block and may drop (Paxos retransmits what matters). The TCP implementation lives in
//! [`crate::messaging`]; tests can plug in anything else.

use paxos_core::NodeId;

use crate::wire::PeerMessage;

/// Outgoing peer messages.
pub trait Transport: Send + Sync + 'static {
    /// Sends to one peer; never blocks.
    fn send(&self, to: NodeId, msg: PeerMessage);
    /// Sends to every other node; never blocks.
    fn broadcast(&self, msg: PeerMessage);
}
