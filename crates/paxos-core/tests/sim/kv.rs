//! The simulated clients' operations: Arakoon-like get/set/delete/test_and_set on a handful of
//! keys, their payload encoding (opaque to the core), and the store each simulated node applies
//! committed values to.

use std::collections::BTreeMap;

use paxos_core::linearizability::{KvOp, KvResult, apply};

/// Encodes `(key, op)` as an opaque payload.
pub fn encode(key: u8, op: &KvOp) -> Vec<u8> {
    let mut out = vec![key];
    let put = |out: &mut Vec<u8>, v: &Option<Vec<u8>>| match v {
        Some(v) => {
            out.push(1);
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        }
        None => out.push(0),
    };
    match op {
        KvOp::Get => out.push(0),
        KvOp::Set(v) => {
            out.push(1);
            put(&mut out, &Some(v.clone()));
        }
        KvOp::Delete => out.push(2),
        KvOp::TestAndSet { expected, new } => {
            out.push(3);
            put(&mut out, expected);
            put(&mut out, new);
        }
    }
    out
}

fn take_opt(bytes: &[u8], pos: &mut usize) -> Option<Option<Vec<u8>>> {
    let flag = *bytes.get(*pos)?;
    *pos += 1;
    if flag == 0 {
        return Some(None);
    }
    let len = usize::from(*bytes.get(*pos)?);
    *pos += 1;
    let v = bytes.get(*pos..*pos + len)?.to_vec();
    *pos += len;
    Some(Some(v))
}

/// Decodes a payload made by [`encode`].
pub fn decode(bytes: &[u8]) -> Option<(u8, KvOp)> {
    let key = *bytes.first()?;
    let mut pos = 2;
    let op = match *bytes.get(1)? {
        0 => KvOp::Get,
        1 => KvOp::Set(take_opt(bytes, &mut pos)??),
        2 => KvOp::Delete,
        3 => {
            let expected = take_opt(bytes, &mut pos)?;
            let new = take_opt(bytes, &mut pos)?;
            KvOp::TestAndSet { expected, new }
        }
        _ => return None,
    };
    Some((key, op))
}

/// A simulated node's store.
#[derive(Debug, Clone, Default)]
pub struct Store {
    pub map: BTreeMap<u8, Vec<u8>>,
}

impl Store {
    /// Applies one payload, returning the result the client sees.
    pub fn apply(&mut self, payload: &[u8]) -> KvResult {
        let Some((key, op)) = decode(payload) else {
            return KvResult::NotFound;
        };
        let state = self.map.get(&key).cloned();
        let (next, result) = apply(&state, &op);
        match next {
            Some(v) => {
                self.map.insert(key, v);
            }
            None => {
                self.map.remove(&key);
            }
        }
        result
    }

    pub fn get(&self, key: u8) -> KvResult {
        match self.map.get(&key) {
            Some(v) => KvResult::Value(Some(v.clone())),
            None => KvResult::NotFound,
        }
    }
}
