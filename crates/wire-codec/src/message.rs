//! The trait a type implements to travel in frames: rkyv serialization plus validated access,
//! and an optional semantic check run after validation.
//!
//! Only plain structs, enums, integers, byte vectors, `Option` and `String` belong on the wire:
//! no hash maps (their archived layout depends on hashing) and no `Rc`/`Arc` (shared pointers
//! make validation track sharing and let a small frame expand into a large object graph).

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// A message type that can be framed. Derive rkyv's `Archive, Serialize, Deserialize` and write
/// `impl WireMessage for MyMessage {}` (overriding [`check`](Self::check) to add semantic rules).
pub trait WireMessage:
    Sized
    + Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
    /// Semantic validation after structural validation and deserialization (for example "the
    /// node index is below the cluster size"). The error text is logged with the sender's name,
    /// so make it say what is wrong.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}
