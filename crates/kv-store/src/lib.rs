//! kv-store (work in progress).
