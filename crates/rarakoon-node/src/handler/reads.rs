//! Reads, one small function per opcode: each checks the request's consistency against this
//! node's role ([`NodeHandler::check_read`]) and answers from the shared store under its read
//! lock, never scanning or holding more than the handler's read limits.

use bytes::Bytes;
use rarakoon_client::{Consistency, ErrorCode, RangeQuery, Response};

use super::{Answer, NodeHandler, err, key_range, store_error, too_large};

impl NodeHandler {
    pub(super) fn ping(&self, cluster_id: &[u8]) -> Answer {
        if cluster_id != self.config.cluster_id {
            return Err(err(ErrorCode::WrongCluster, "Wrong cluster"));
        }
        Ok(Response::Ping(Bytes::from_static(b"Arakoon 1.9.0")))
    }

    pub(super) fn exists(&self, consistency: Consistency, key: &[u8]) -> Answer {
        self.check_read(consistency)?;
        Ok(Response::Exists(self.store().exists(key)))
    }

    pub(super) fn get(&self, consistency: Consistency, key: &[u8]) -> Answer {
        self.check_read(consistency)?;
        let store = self.store();
        let value = store.get_or_not_found(key).map_err(|e| store_error(&e))?;
        Ok(Response::Get(value.clone()))
    }

    pub(super) fn range(&self, q: &RangeQuery) -> Answer {
        self.check_read(q.consistency)?;
        let limits = self.config.read_limits;
        let keys = self.store().range_limited(&key_range(q), q.max, limits);
        Ok(Response::Range(keys.map_err(|e| too_large(&e))?))
    }

    pub(super) fn range_entries(&self, q: &RangeQuery) -> Answer {
        self.check_read(q.consistency)?;
        let limits = self.config.read_limits;
        let pairs = self
            .store()
            .range_entries_limited(&key_range(q), q.max, limits);
        Ok(Response::RangeEntries(pairs.map_err(|e| too_large(&e))?))
    }

    pub(super) fn rev_range_entries(&self, q: &RangeQuery) -> Answer {
        self.check_read(q.consistency)?;
        let limits = self.config.read_limits;
        let pairs = self
            .store()
            .rev_range_entries_limited(&key_range(q), q.max, limits);
        Ok(Response::RevRangeEntries(pairs.map_err(|e| too_large(&e))?))
    }

    pub(super) fn prefix_keys(&self, consistency: Consistency, prefix: &[u8], max: i32) -> Answer {
        self.check_read(consistency)?;
        let limits = self.config.read_limits;
        let keys = self.store().prefix_keys_limited(prefix, max, limits);
        Ok(Response::PrefixKeys(keys.map_err(|e| too_large(&e))?))
    }

    pub(super) fn multi_get(&self, consistency: Consistency, keys: &[Bytes]) -> Answer {
        self.check_read(consistency)?;
        self.check_key_count(keys.len())?;
        let values = self.store().multi_get(keys).map_err(|e| store_error(&e))?;
        self.check_bytes(values.iter().map(Bytes::len))?;
        Ok(Response::MultiGet(values))
    }

    pub(super) fn multi_get_option(&self, consistency: Consistency, keys: &[Bytes]) -> Answer {
        self.check_read(consistency)?;
        self.check_key_count(keys.len())?;
        let values = self.store().multi_get_option(keys);
        self.check_bytes(values.iter().flatten().map(Bytes::len))?;
        Ok(Response::MultiGetOption(values))
    }

    pub(super) fn assert(
        &self,
        consistency: Consistency,
        key: &[u8],
        expected: Option<&[u8]>,
    ) -> Answer {
        self.check_read(consistency)?;
        self.store()
            .assert(key, expected)
            .map_err(|e| store_error(&e))?;
        Ok(Response::Assert)
    }

    pub(super) fn assert_exists(&self, consistency: Consistency, key: &[u8]) -> Answer {
        self.check_read(consistency)?;
        self.store()
            .assert_exists(key)
            .map_err(|e| store_error(&e))?;
        Ok(Response::AssertExists)
    }

    pub(super) fn key_count(&self) -> Answer {
        self.check_read(Consistency::Consistent)?;
        let count = self.store().key_count();
        Ok(Response::GetKeyCount(
            i64::try_from(count).unwrap_or(i64::MAX),
        ))
    }

    pub(super) fn get_txid(&self) -> Answer {
        if self.config.witness {
            return Err(self.witness_refusal());
        }
        let applied = self.store().applied_index().unwrap_or(0);
        Ok(Response::GetTxid(Consistency::AtLeast(
            i64::try_from(applied).unwrap_or(i64::MAX),
        )))
    }

    /// No user hooks are registered: Arakoon's answer for an unknown hook.
    pub(super) fn user_hook(&self, consistency: Consistency, name: Bytes) -> Answer {
        self.check_read(consistency)?;
        Err(err(ErrorCode::UserHookNotFound, name))
    }

    /// No sharding: the interval is the whole key space.
    pub(super) fn get_interval(&self) -> Answer {
        self.check_read(Consistency::Consistent)?;
        Ok(Response::GetInterval(rarakoon_client::Interval::default()))
    }
}
