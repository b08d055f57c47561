//! Writes, one small function per opcode: each checks what it can before proposing (value
//! size, role, update size), then proposes one update through the driver and answers once it
//! is committed and applied. A write whose outcome is unknown is answered
//! `E_NO_LONGER_MASTER`, one refused before it was proposed `E_GOING_DOWN`.

use bytes::{Bytes, BytesMut};
use kv_store::UpdateResult;
use rarakoon_client::{ErrorCode, ErrorReply, Response, Update};
use tokio::sync::oneshot;

use super::{Answer, NodeHandler, err, indeterminate, store_error};
use crate::driver::{Input, WriteOutcome};
use crate::payload;

/// Converts a client update into the store's model; internal tags are refused (§7.2).
pub fn to_store_update(update: Update) -> Result<kv_store::Update, ErrorReply> {
    use kv_store::Update as S;
    Ok(match update {
        Update::Set { key, value } => S::Set { key, value },
        Update::Delete { key } => S::Delete { key },
        Update::TestAndSet {
            key,
            expected,
            wanted,
        } => S::TestAndSet {
            key,
            expected,
            wanted,
        },
        Update::Sequence(members) => S::Sequence(
            members
                .into_iter()
                .map(to_store_update)
                .collect::<Result<_, _>>()?,
        ),
        Update::Nop => S::Nop,
        Update::UserFunction { name, arg } => S::UserFunction {
            name,
            argument: arg,
        },
        Update::Assert { key, expected } => S::Assert { key, expected },
        Update::DeletePrefix { prefix } => S::DeletePrefix { prefix },
        Update::AssertExists { key } => S::AssertExists { key },
        Update::Replace { key, wanted } => S::Replace { key, wanted },
        Update::AssertRange { prefix, assertion } => {
            let rarakoon_client::RangeAssertion::ContainsExactly(keys) = assertion;
            S::AssertRange {
                prefix,
                assertion: kv_store::RangeAssertion::ContainsExactly(keys),
            }
        }
        other => {
            return Err(err(
                ErrorCode::BadInput,
                format!(
                    "update tag {} is internal to the node and not accepted from clients",
                    other.tag()
                ),
            ));
        }
    })
}

impl NodeHandler {
    /// Proposes one update and waits until it is committed and applied.
    async fn write(&self, update: kv_store::Update) -> Result<UpdateResult, ErrorReply> {
        self.check_writable()?;
        let mut buf = BytesMut::new();
        payload::encode_into(&update, &mut buf);
        if buf.len() as u64 > self.config.max_request_size {
            return Err(err(
                ErrorCode::BadInput,
                format!(
                    "update has size {} > {}",
                    buf.len(),
                    self.config.max_request_size
                ),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let input = Input::Propose {
            // The buffer's own allocation, not a copy.
            payload: Vec::from(buf),
            reply: tx,
        };
        if self.inputs.send(input).await.is_err() {
            return Err(ErrorReply::going_down());
        }
        match rx.await {
            Ok(WriteOutcome::Applied(Ok(result))) => Ok(result),
            Ok(WriteOutcome::Applied(Err(e))) => Err(store_error(&e)),
            Ok(WriteOutcome::NotMaster(_)) => Err(self.not_master()),
            Ok(WriteOutcome::ReadOnly) => Err(err(
                ErrorCode::ReadOnly,
                Bytes::from(self.config.node_name.clone()),
            )),
            Ok(WriteOutcome::Overloaded) => Err(err(
                ErrorCode::UnknownFailure,
                "the node is overloaded (too many writes queued, or the update is larger than a \
                 Paxos value may be); retry later",
            )),
            Ok(WriteOutcome::Indeterminate) => Err(indeterminate(
                "lost master role during wait_for_accepteds while handling client request",
            )),
            Ok(WriteOutcome::Unfinished) => Err(indeterminate(
                "the node stopped while the write was in flight: it may or may not have been \
                 applied",
            )),
            Ok(WriteOutcome::GoingDown) => Err(ErrorReply::going_down()),
            // The driver took the write and ended without answering it.
            Err(_) => Err(indeterminate(
                "the node failed while the write was in flight: it may or may not have been \
                 applied",
            )),
        }
    }

    pub(super) async fn unit_write(&self, update: kv_store::Update, response: Response) -> Answer {
        self.write(update).await.map(|_| response)
    }

    fn old_value(result: UpdateResult) -> Option<Bytes> {
        match result {
            UpdateResult::OldValue(v) | UpdateResult::UserFunction(v) => v,
            _ => None,
        }
    }

    pub(super) async fn set(&self, key: Bytes, value: Bytes) -> Answer {
        self.check_value(&value)?;
        self.unit_write(kv_store::Update::Set { key, value }, Response::Set)
            .await
    }

    /// A set that is skipped when the master already holds the value.
    pub(super) async fn confirm(&self, key: Bytes, value: Bytes) -> Answer {
        self.check_value(&value)?;
        if self.shared.holds_lease() && self.store().get(&key).is_some_and(|v| *v == value) {
            return Ok(Response::Confirm);
        }
        self.unit_write(kv_store::Update::Set { key, value }, Response::Confirm)
            .await
    }

    pub(super) async fn delete(&self, key: Bytes) -> Answer {
        self.unit_write(kv_store::Update::Delete { key }, Response::Delete)
            .await
    }

    pub(super) async fn test_and_set(
        &self,
        key: Bytes,
        expected: Option<Bytes>,
        wanted: Option<Bytes>,
    ) -> Answer {
        if let Some(w) = &wanted {
            self.check_value(w)?;
        }
        let result = self
            .write(kv_store::Update::TestAndSet {
                key,
                expected,
                wanted,
            })
            .await?;
        Ok(Response::TestAndSet(Self::old_value(result)))
    }

    pub(super) async fn replace(&self, key: Bytes, wanted: Option<Bytes>) -> Answer {
        if let Some(w) = &wanted {
            self.check_value(w)?;
        }
        let result = self
            .write(kv_store::Update::Replace { key, wanted })
            .await?;
        Ok(Response::Replace(Self::old_value(result)))
    }

    /// SEQUENCE and SYNCED_SEQUENCE (every write is synced before it is answered, so the two
    /// differ only in their answer's opcode).
    pub(super) async fn sequence(&self, updates: Vec<Update>, response: Response) -> Answer {
        let update = to_store_update(Update::Sequence(updates))?;
        self.unit_write(update, response).await
    }

    pub(super) async fn delete_prefix(&self, prefix: Bytes) -> Answer {
        let result = self
            .write(kv_store::Update::DeletePrefix { prefix })
            .await?;
        let count = match result {
            UpdateResult::Count(n) => i32::try_from(n).unwrap_or(i32::MAX),
            _ => 0,
        };
        Ok(Response::DeletePrefix(count))
    }

    pub(super) async fn user_function(&self, name: Bytes, arg: Option<Bytes>) -> Answer {
        let result = self
            .write(kv_store::Update::UserFunction {
                name,
                argument: arg,
            })
            .await?;
        Ok(Response::UserFunction(Self::old_value(result)))
    }
}
