//! The handshake that opens every link: the connecting node sends [`Hello`], the listening node
//! answers [`HelloReply`]. Both travel as ordinary wire-codec frames with a small size bound.
//!
//! The listener refuses (and logs) a hello from another cluster, another protocol version, a
//! node name it does not have in its peer list, or another membership view. The membership
//! view is an opaque text the application supplies (rarakoon-node: the cluster's nodes and
//! roles in `NodeId` order); two nodes whose views differ would read each other's node numbers
//! differently, so they must not talk. A refusal names both views, and the connecting side
//! checks the view in the listener's acceptance too, so both logs say what differs. The
//! decision is a pure function, [`Hello::judge`], so it is unit-tested without sockets.

use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncReadExt};
use wire_codec::{DecodeError, LENGTH_PREFIX, WireMessage};

/// Largest handshake frame payload accepted (names and the membership view are bounded).
pub(crate) const MAX_HANDSHAKE_FRAME: u32 = 32 * 1024;
/// Longest node name or cluster id accepted in a handshake.
pub const MAX_NAME_LEN: usize = 256;
/// Longest membership view accepted in a handshake (a refusal quotes two of them).
pub const MAX_MEMBERSHIP_LEN: usize = 8 * 1024;

/// First frame on a link, from the connecting node.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the sender (checked first: a future version may change the rest).
    pub protocol_version: u32,
    /// The sender's cluster id.
    pub cluster_id: String,
    /// The sender's node name.
    pub node_name: String,
    /// The sender's membership view (must equal the listener's).
    pub membership: String,
}

/// The listener's answer.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum HelloReply {
    /// The link is open; messages may follow.
    Accepted {
        /// The listener's node name.
        node_name: String,
        /// The listener's membership view (the connecting side checks it too).
        membership: String,
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
        if self.membership.len() > MAX_MEMBERSHIP_LEN {
            return Err(format!(
                "membership view longer than {MAX_MEMBERSHIP_LEN} bytes"
            ));
        }
        Ok(())
    }
}

impl WireMessage for HelloReply {
    fn check(&self) -> Result<(), String> {
        match self {
            HelloReply::Accepted {
                node_name,
                membership,
            } if node_name.len() > MAX_NAME_LEN || membership.len() > MAX_MEMBERSHIP_LEN => {
                Err(format!(
                    "node name longer than {MAX_NAME_LEN} bytes or membership longer than \
                     {MAX_MEMBERSHIP_LEN} bytes"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The reason given when two membership views differ; it names both, so either side's log
/// says what to fix.
pub fn membership_mismatch(our_name: &str, ours: &str, their_name: &str, theirs: &str) -> String {
    format!(
        "membership views differ: {our_name:?} has [{ours}] but {their_name:?} has [{theirs}]; \
         every node must be configured with the same nodes, roles and user functions, and number them alike"
    )
}

impl Hello {
    /// Decide whether a listener `node_name` with `cluster_id`, `protocol_version`, `peers`
    /// and `membership` accepts this hello; `Err` carries the reason sent back and logged.
    pub fn judge<V>(
        &self,
        node_name: &str,
        cluster_id: &str,
        protocol_version: u32,
        peers: &BTreeMap<String, V>,
        membership: &str,
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
        if self.membership != membership {
            return Err(membership_mismatch(
                node_name,
                membership,
                &self.node_name,
                &self.membership,
            ));
        }
        Ok(())
    }
}

/// With TLS: whether the certificate a peer presented (its `names`, see
/// `rarakoon_tls::cert_names`) allows it to claim `claimed`; `Err` carries the reason.
pub fn check_identity(claimed: &str, names: &[String]) -> Result<(), String> {
    if names.iter().any(|n| n == claimed) {
        Ok(())
    } else {
        Err(format!(
            "claims to be node {claimed:?} but its certificate names {names:?}; a node's \
             certificate must carry its node name (CN or DNS SAN)"
        ))
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
    // Grown as bytes arrive, never reserved at the declared length (bounded by the check
    // above in any case).
    let mut payload = Vec::new();
    let got = (&mut *stream)
        .take(u64::from(len))
        .read_to_end(&mut payload)
        .await?;
    if got != len as usize {
        return Err(DecodeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
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
            membership: "0=a 1=b".into(),
        }
    }

    #[test]
    fn judge_accepts_known_peer_and_refuses_others() {
        let peers: BTreeMap<String, ()> = [("b".to_owned(), ())].into_iter().collect();
        let judge = |h: Hello| h.judge("a", "c", 1, &peers, "0=a 1=b");
        assert_eq!(judge(hello(1, "c", "b")), Ok(()));
        let stranger = judge(hello(1, "c", "mallory")).unwrap_err();
        assert!(stranger.contains("mallory"), "{stranger}");
        let cluster = judge(hello(1, "other", "b")).unwrap_err();
        assert!(cluster.contains("other"), "{cluster}");
        let version = judge(hello(2, "c", "b")).unwrap_err();
        assert!(version.contains("version 2"), "{version}");
        let mut other_view = hello(1, "c", "b");
        other_view.membership = "0=b 1=a".into();
        let view = judge(other_view).unwrap_err();
        assert!(
            view.contains("[0=a 1=b]") && view.contains("[0=b 1=a]"),
            "{view}"
        );
        assert!(view.contains("\"a\"") && view.contains("\"b\""), "{view}");
    }

    #[test]
    fn identity_must_be_a_certificate_name() {
        let names = vec!["node_1".to_owned(), "alias".to_owned()];
        assert_eq!(check_identity("node_1", &names), Ok(()));
        assert_eq!(check_identity("alias", &names), Ok(()));
        let e = check_identity("node_2", &names).unwrap_err();
        assert!(e.contains("node_2") && e.contains("node_1"), "{e}");
        assert!(check_identity("node_1", &[]).is_err());
        assert!(check_identity("", &names).is_err());
        // Case and prefixes do not match.
        assert!(check_identity("NODE_1", &names).is_err());
        assert!(check_identity("node_", &names).is_err());
    }

    #[test]
    fn overlong_names_fail_the_check() {
        assert!(
            hello(1, "c", &"x".repeat(MAX_NAME_LEN + 1))
                .check()
                .is_err()
        );
        assert!(hello(1, "c", "b").check().is_ok());
        let mut big = hello(1, "c", "b");
        big.membership = "x".repeat(MAX_MEMBERSHIP_LEN + 1);
        assert!(big.check().is_err());
        let reply = HelloReply::Accepted {
            node_name: "a".into(),
            membership: "x".repeat(MAX_MEMBERSHIP_LEN + 1),
        };
        assert!(reply.check().is_err());
    }

    #[test]
    fn the_largest_hello_and_refusal_fit_a_handshake_frame() {
        let name = "n".repeat(MAX_NAME_LEN);
        let view = "v".repeat(MAX_MEMBERSHIP_LEN);
        let h = Hello {
            protocol_version: 1,
            cluster_id: name.clone(),
            node_name: name.clone(),
            membership: view.clone(),
        };
        assert!(wire_codec::Frame::encode(&h, MAX_HANDSHAKE_FRAME).is_ok());
        let reply = HelloReply::Refused {
            reason: membership_mismatch(&name, &view, &name, &view),
        };
        assert!(wire_codec::Frame::encode(&reply, MAX_HANDSHAKE_FRAME).is_ok());
    }
}
