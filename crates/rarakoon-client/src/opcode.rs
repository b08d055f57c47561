//! The one table of Arakoon opcodes (docs/protocol.md §8): value, name and class of each command.
//!
//! A command word on the wire is `0xB1FF0000 | opcode` as `u32` LE. The table is the only place
//! that knows opcode numbers; requests and responses ask it.

/// Magic bits of every command word and of the prologue.
pub const MAGIC: u32 = 0xB1FF_0000;
/// Mask applied to a command word to check the magic bits (the reference's test).
pub const MAGIC_MASK: u32 = 0xB1FF_0000;
/// Protocol version sent in the prologue.
pub const VERSION: i32 = 1;

/// Who uses an opcode (docs/protocol.md §8 "Cls").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// Client operation.
    Client,
    /// Admin / maintenance.
    Admin,
    /// Nursery (sharding, legacy).
    Nursery,
    /// Node-internal catch-up.
    Internal,
}

macro_rules! opcodes {
    ($($variant:ident = $code:literal, $name:literal, $class:ident;)*) => {
        /// Every opcode Arakoon 1.9 defines (48 of them).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Opcode {
            $(
                #[doc = concat!("`", $name, "` (", stringify!($code), ")")]
                $variant,
            )*
        }

        impl Opcode {
            /// All opcodes, in table order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$variant),*];

            /// The opcode number (the low 16 bits of the command word).
            pub const fn code(self) -> u16 {
                match self { $(Opcode::$variant => $code),* }
            }

            /// Looks an opcode number up in the table.
            pub const fn from_code(code: u16) -> Option<Opcode> {
                match code { $($code => Some(Opcode::$variant),)* _ => None }
            }

            /// The reference's name for the command.
            pub const fn name(self) -> &'static str {
                match self { $(Opcode::$variant => $name),* }
            }

            /// Who uses the command.
            pub const fn class(self) -> OpClass {
                match self { $(Opcode::$variant => OpClass::$class),* }
            }
        }
    };
}

opcodes! {
    Ping = 0x01, "ping", Client;
    WhoMaster = 0x02, "who_master", Client;
    Exists = 0x07, "exists", Client;
    Get = 0x08, "get", Client;
    Set = 0x09, "set", Client;
    Delete = 0x0A, "delete", Client;
    Range = 0x0B, "range", Client;
    PrefixKeys = 0x0C, "prefix_keys", Client;
    TestAndSet = 0x0D, "test_and_set", Client;
    LastEntries = 0x0E, "last_entries", Internal;
    RangeEntries = 0x0F, "range_entries", Client;
    Sequence = 0x10, "sequence", Client;
    MultiGet = 0x11, "multi_get", Client;
    ExpectProgressPossible = 0x12, "expect_progress_possible", Client;
    Statistics = 0x13, "statistics", Client;
    CollapseTlogs = 0x14, "collapse_tlogs", Admin;
    UserFunction = 0x15, "user_function", Client;
    Assert = 0x16, "assert", Client;
    SetInterval = 0x17, "set_interval", Nursery;
    GetRouting = 0x18, "get_routing", Nursery;
    SetRouting = 0x19, "set_routing", Nursery;
    GetKeyCount = 0x1A, "get_key_count", Client;
    GetDb = 0x1B, "get_db", Admin;
    Confirm = 0x1C, "confirm", Client;
    GetFringe = 0x1D, "get_fringe", Nursery;
    GetInterval = 0x1E, "get_interval", Nursery;
    SetNurseryCfg = 0x1F, "set_nursery_cfg", Nursery;
    GetNurseryCfg = 0x20, "get_nursery_cfg", Nursery;
    SetRoutingDelta = 0x21, "set_routing_delta", Nursery;
    MigrateRange = 0x22, "migrate_range", Nursery;
    RevRangeEntries = 0x23, "rev_range_entries", Client;
    SyncedSequence = 0x24, "synced_sequence", Client;
    OptimizeDb = 0x25, "optimize_db", Admin;
    DefragDb = 0x26, "defrag_db", Admin;
    DeletePrefix = 0x27, "delete_prefix", Client;
    Version = 0x28, "version", Client;
    AssertExists = 0x29, "assert_exists", Client;
    DropMaster = 0x30, "drop_master", Admin;
    MultiGetOption = 0x31, "multi_get_option", Client;
    CurrentState = 0x32, "current_state", Client;
    Replace = 0x33, "replace", Client;
    LastEntries2 = 0x40, "last_entries2", Internal;
    Nop = 0x41, "nop", Client;
    FlushStore = 0x42, "flush_store", Admin;
    GetTxid = 0x43, "get_txid", Client;
    CopyDbToHead = 0x44, "copy_db_to_head", Admin;
    UserHook = 0x45, "user_hook", Client;
    LastEntries3 = 0x46, "last_entries3", Internal;
}

impl Opcode {
    /// The full command word (`0xB1FF0000 | opcode`).
    pub const fn command_word(self) -> u32 {
        MAGIC | self.code() as u32
    }

    /// Whether the command changes the store (goes through Paxos). Such a command is never
    /// retried by the client once sent, because its outcome may be unknown.
    pub const fn is_write(self) -> bool {
        matches!(
            self,
            Opcode::Set
                | Opcode::Delete
                | Opcode::TestAndSet
                | Opcode::Sequence
                | Opcode::SyncedSequence
                | Opcode::UserFunction
                | Opcode::Confirm
                | Opcode::DeletePrefix
                | Opcode::Replace
                | Opcode::Nop
                | Opcode::SetInterval
                | Opcode::SetRouting
                | Opcode::SetRoutingDelta
                | Opcode::SetNurseryCfg
                | Opcode::MigrateRange
                | Opcode::CollapseTlogs
                | Opcode::DropMaster
                | Opcode::CopyDbToHead
                | Opcode::OptimizeDb
                | Opcode::DefragDb
                | Opcode::FlushStore
                | Opcode::UserHook
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_48_distinct_opcodes() {
        assert_eq!(Opcode::ALL.len(), 48);
        for (i, a) in Opcode::ALL.iter().enumerate() {
            assert_eq!(Opcode::from_code(a.code()), Some(*a));
            for b in &Opcode::ALL[i + 1..] {
                assert_ne!(a.code(), b.code());
            }
        }
    }

    #[test]
    fn gaps_are_unknown() {
        for code in [
            0x00u16, 0x03, 0x04, 0x05, 0x06, 0x2A, 0x2F, 0x34, 0x3F, 0x47, 0x99,
        ] {
            assert_eq!(Opcode::from_code(code), None, "{code:#x}");
        }
    }

    #[test]
    fn command_word_bytes() {
        assert_eq!(
            Opcode::Get.command_word().to_le_bytes(),
            [0x08, 0x00, 0xFF, 0xB1]
        );
        assert_eq!(Opcode::DropMaster.code(), 0x30);
        assert_eq!(Opcode::AssertExists.code(), 0x29);
    }
}
