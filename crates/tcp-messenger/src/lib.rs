//! Node-to-node messaging over TCP, generic over the message type.
//!
//! A [`Messenger`] keeps one outgoing connection per configured peer, each fed by its own
//! [`leaky_buffer`] queue and reconnected through a [`connection_fsm::ConnectionFsm`]
//! (exponential backoff with jitter). It accepts incoming connections from peers, checks their
//! handshake (cluster id, node name, protocol version, membership view), validates every frame with
//! [`wire_codec`], and delivers messages on one [`Inbox`] tagged with the sender's name.
//!
//! What the consensus core can rely on:
//! - [`Messenger::send`] and [`Messenger::broadcast`] never block and never await: a slow or dead
//!   peer costs a dropped (and counted) message, never a stalled core;
//! - messages on one link arrive in the order they were sent, or not at all;
//! - a stranger's bytes never crash the node: bad handshakes and bad frames close only that
//!   connection, with a log line naming the peer.
//!
//! With [`MessengerConfig::tls`] every link is a mutual-TLS session (rustls, see rarakoon-tls):
//! both sides present a certificate signed by the cluster CA, and a peer is accepted only under
//! a name its certificate carries (CN or DNS SAN), so a valid certificate of one node cannot
//! pose as another; the handshake frames and messages are the same inside the session.
//!
//! Links are one-directional: A's messages to B travel on the connection A opened to B, and B's
//! replies on the one B opened to A.

mod config;
mod counters;
mod handshake;
mod incoming;
mod messenger;
mod outgoing;
mod socket;

pub use config::{MessengerConfig, MessengerTls, PROTOCOL_VERSION};
pub use connection_fsm::BackoffConfig;
pub use counters::{Counters, PeerCounters};
pub use handshake::{Hello, HelloReply, MAX_MEMBERSHIP_LEN, MAX_NAME_LEN, membership_mismatch};
pub use messenger::{Inbox, InboxBytes, Incoming, Messenger, SendError, StartError};
pub use wire_codec::{Frame, WireMessage};
