//! The handshake that opens every link: the connecting node sends [`Hello`], the listening node
//! answers [`HelloReply`]. Both travel as ordinary wire-codec frames with a small size bound.
//!
//! The listener refuses (and logs) a hello from another cluster, another protocol version, or a
//! node name it does not have in its peer list. The decision is a pure function,
//! [`Hello::judge`], so it is unit-tested without sockets.

use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncReadExt};
use wire_codec::{DecodeError, LENGTH_PREFIX, WireMessage};

/// Largest handshake frame payload accepted (names are short).
pub(crate) const MAX_HANDSHAKE_FRAME: u32 = 4096;
/// Longest node name or cluster id accepted in a handshake.
pub const MAX_NAME_LEN: usize = 256;

/// First frame on a link, from the connecting node.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the sender (checked first: a future version may change the rest).
    pub protocol_version: u32,
    /// The sender's cluster id.
    pub cluster_id: String,
    /// The sender's node name.
    pub node_name: String,
}

/// The listener's answer.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum HelloReply {
    /// The link is open; messages may follow.
    Accepted {
        /// The listener's node name.
        node_name: String,
    },
    /// The link is refused and will be closed.
    Refused {
        /// Why, for the connecting node's log.
        reason: String,
    },
}

impl WireMessage for Hello {
    fn check(&self) -> Result<(), String> {
        if self.cluster_id.len() > MAX_NAME_LEN || self.node_name.len() > MAX_NAME_LEN {
            return Err(format!(
                "cluster id or node name longer than {MAX_NAME_LEN} bytes"
            ));
        }
        Ok(())
    }
}

impl WireMessage for HelloReply {}

impl Hello {
    /// Decide whether a listener with `cluster_id`, `protocol_version` and `peers` accepts this
    /// hello; `Err` carries the reason sent back and logged.
    pub fn judge<V>(
        &self,
        cluster_id: &str,
        protocol_version: u32,
        peers: &BTreeMap<String, V>,
    ) -> Result<(), String> {
        if self.protocol_version != protocol_version {
            return Err(format!(
                "protocol version {} is not ours ({protocol_version})",
                self.protocol_version
            ));
        }
        if self.cluster_id != cluster_id {
            return Err(format!(
                "cluster id {:?} is not ours ({cluster_id:?})",
                self.cluster_id
            ));
        }
        if !peers.contains_key(&self.node_name) {
            return Err(format!(
                "node name {:?} is not a peer of this node",
                self.node_name
            ));
        }
        Ok(())
    }
}

/// Read exactly one frame of type `T` (payload at most `max_frame` bytes) from `stream`,
/// without reading past it: the bytes that follow belong to whoever reads next.
pub(crate) async fn read_frame<T: WireMessage>(
    stream: &mut (impl AsyncRead + Unpin),
    max_frame: u32,
) -> Result<T, DecodeError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    stream.read_exact(&mut prefix).await?;
    let len = u32::from_le_bytes(prefix);
    if len > max_frame {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    // Bounded by the check above (a handshake frame is at most a few KiB).
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).await?;
    wire_codec::decode_payload(&payload, &mut AlignedVec::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn hello(version: u32, cluster: &str, name: &str) -> Hello {
        Hello {
            protocol_version: version,
            cluster_id: cluster.into(),
            node_name: name.into(),
        }
    }

    #[test]
    fn judge_accepts_known_peer_and_refuses_others() {
        let peers: BTreeMap<String, ()> = [("b".to_owned(), ())].into_iter().collect();
        assert_eq!(hello(1, "c", "b").judge("c", 1, &peers), Ok(()));
        let stranger = hello(1, "c", "mallory").judge("c", 1, &peers).unwrap_err();
        assert!(stranger.contains("mallory"), "{stranger}");
        let cluster = hello(1, "other", "b").judge("c", 1, &peers).unwrap_err();
        assert!(cluster.contains("other"), "{cluster}");
        let version = hello(2, "c", "b").judge("c", 1, &peers).unwrap_err();
        assert!(version.contains("version 2"), "{version}");
    }

    #[test]
    fn overlong_names_fail_the_check() {
        assert!(
            hello(1, "c", &"x".repeat(MAX_NAME_LEN + 1))
                .check()
                .is_err()
        );
        assert!(hello(1, "c", "b").check().is_ok());
    }
}
