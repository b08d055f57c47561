//! User functions: named server-side functions that run inside the transaction of their
//! update (Arakoon's plugin `Registry`). The node builds a [`UserFunctionRegistry`] once and
//! hands it to the store. A function is either
//! - native: a plain Rust `fn` ([`UserFunction`]) registered in code by whoever embeds the node
//!   ([`UserFunctionRegistry::register`]), or
//! - hosted: anything implementing [`HostedFunction`], e.g. a WebAssembly module the node
//!   loads from its config ([`UserFunctionRegistry::register_hosted`]). kv-store knows nothing
//!   of how a hosted function runs; the node's `wasm_functions` module is one implementation.
//!
//! A function runs inside the transaction of its update: what it writes is rolled back when
//! it fails, or when the sequence it runs in fails later. Functions must be deterministic
//! (no clock, no randomness, no I/O): every node applies the same update and must end with the
//! same store. [`UserFunctionRegistry::fingerprint`] names every function and its code's
//! identity, so nodes can refuse to work with a node whose functions differ.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::{StoreError, Transaction};

/// A native user function: gets the transaction and the update's argument, returns its result.
pub type UserFunction =
    fn(&mut Transaction<'_>, Option<&[u8]>) -> Result<Option<Bytes>, UserFunctionError>;

/// A user function whose code the node loaded at start-up (e.g. a WebAssembly module).
///
/// Contract: [`HostedFunction::call`] is deterministic (the same transaction contents and
/// argument give the same writes and result on every node), touches the store only through
/// `tx`, and returns in bounded time.
pub trait HostedFunction: Send + Sync + fmt::Debug {
    /// Runs the function on `tx` with the update's argument.
    ///
    /// # Errors
    /// How the function failed; the caller rolls back whatever it wrote.
    fn call(
        &self,
        tx: &mut Transaction<'_>,
        argument: Option<&[u8]>,
    ) -> Result<Option<Bytes>, UserFunctionError>;

    /// What identifies the function's code, e.g. `wasm-sha256:<hex>`: two nodes whose
    /// identities agree compute the same results.
    fn identity(&self) -> String;
}

/// A registered function: native or hosted.
#[derive(Debug, Clone)]
pub enum RegisteredFunction {
    /// A Rust `fn` compiled into the binary.
    Native(UserFunction),
    /// Code loaded at start-up.
    Hosted(Arc<dyn HostedFunction>),
}

impl RegisteredFunction {
    /// Runs the function.
    ///
    /// # Errors
    /// How the function failed.
    pub fn call(
        &self,
        tx: &mut Transaction<'_>,
        argument: Option<&[u8]>,
    ) -> Result<Option<Bytes>, UserFunctionError> {
        match self {
            Self::Native(function) => function(tx, argument),
            Self::Hosted(function) => function.call(tx, argument),
        }
    }

    /// The code's identity: `native` for a native function (the binary is the code), the
    /// hosted function's own identity otherwise.
    #[must_use]
    pub fn identity(&self) -> String {
        match self {
            Self::Native(_) => "native".to_owned(),
            Self::Hosted(function) => function.identity(),
        }
    }
}

/// How a user function fails (Arakoon maps the exception a plugin raises the same way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserFunctionError {
    /// Arakoon's `Not_found`: the client gets 0x05 `Not_found`.
    #[error("Not_found")]
    NotFound,
    /// Any other failure: the client gets 0x81 with this message.
    #[error("{0}")]
    Failed(String),
    /// A store error (e.g. [`Transaction::delete`] of a missing key) passed on unchanged: the
    /// client gets its code and message.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UserFunctionError {
    /// The client-facing error for a failure of the function `name`.
    pub(crate) fn into_store_error(self, name: &Bytes) -> StoreError {
        match self {
            Self::NotFound => StoreError::NotFound,
            Self::Failed(message) => StoreError::UserFunctionFailed {
                name: name.clone(),
                message,
            },
            Self::Store(error) => error,
        }
    }
}

/// The user functions a node knows, by name.
#[derive(Debug, Clone, Default)]
pub struct UserFunctionRegistry {
    functions: BTreeMap<Box<[u8]>, RegisteredFunction>,
}

impl UserFunctionRegistry {
    /// A registry with no functions: every user-function update fails with 0x26.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the native `function` under `name`, replacing any function of that name.
    pub fn register(&mut self, name: &str, function: UserFunction) -> &mut Self {
        self.functions
            .insert(name.as_bytes().into(), RegisteredFunction::Native(function));
        self
    }

    /// Registers the hosted `function` under `name`, replacing any function of that name.
    pub fn register_hosted(&mut self, name: &str, function: Arc<dyn HostedFunction>) -> &mut Self {
        self.functions
            .insert(name.as_bytes().into(), RegisteredFunction::Hosted(function));
        self
    }

    /// The function registered under `name`.
    #[must_use]
    pub fn lookup(&self, name: &[u8]) -> Option<&RegisteredFunction> {
        self.functions.get(name)
    }

    /// Whether a function is registered under `name`.
    #[must_use]
    pub fn contains(&self, name: &[u8]) -> bool {
        self.functions.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.functions.keys().map(AsRef::as_ref)
    }

    /// Whether no function is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Every function as `name=identity`, sorted by name and separated by spaces (empty for an
    /// empty registry). Names are shown with non-printable bytes escaped. Two registries with
    /// the same fingerprint run the same code under the same names.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        self.functions
            .iter()
            .map(|(name, function)| {
                format!("{}={}", crate::error::escaped(name), function.identity())
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Sample user functions, for tests and as examples. They are available to clients only when
/// the binary registers them ([`samples::register_all`]).
pub mod samples {
    use bytes::Bytes;

    use super::{UserFunctionError, UserFunctionRegistry};
    use crate::Transaction;

    /// Name of [`increment`].
    pub const INCREMENT: &str = "rarakoon.increment";
    /// Name of [`rename`].
    pub const RENAME: &str = "rarakoon.rename";

    /// Registers every sample under its name.
    pub fn register_all(registry: &mut UserFunctionRegistry) {
        registry
            .register(INCREMENT, increment)
            .register(RENAME, rename);
    }

    /// Argument: a key. Its value, a decimal `u64` (absent counts as 0), is incremented and
    /// stored; the result is the new value. Fails (0x81) on a missing argument, a value that
    /// is not a decimal `u64`, or an overflow, leaving the key unchanged.
    ///
    /// # Errors
    /// [`UserFunctionError::Failed`] as described.
    pub fn increment(
        tx: &mut Transaction<'_>,
        argument: Option<&[u8]>,
    ) -> Result<Option<Bytes>, UserFunctionError> {
        let key = argument.ok_or_else(|| {
            UserFunctionError::Failed("increment needs the counter's key as argument".to_owned())
        })?;
        let current = match tx.get(key) {
            None => 0,
            Some(value) => std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| {
                    UserFunctionError::Failed(format!(
                        "increment: the value of key {} is not a decimal u64",
                        crate::error::escaped(key)
                    ))
                })?,
        };
        let next = current.checked_add(1).ok_or_else(|| {
            UserFunctionError::Failed(format!(
                "increment: the counter at key {} would overflow",
                crate::error::escaped(key)
            ))
        })?;
        let next = Bytes::from(next.to_string());
        tx.set(key, &next);
        Ok(Some(next))
    }

    /// Argument: `from`, a 0x00 byte, `to`. Moves the value of `from` to `to` (overwriting
    /// `to`) and returns it. Fails with 0x05 `Not_found` when `from` is absent and 0x81 on a
    /// malformed argument.
    ///
    /// # Errors
    /// As described; nothing is changed then.
    pub fn rename(
        tx: &mut Transaction<'_>,
        argument: Option<&[u8]>,
    ) -> Result<Option<Bytes>, UserFunctionError> {
        let malformed =
            || UserFunctionError::Failed("rename needs the argument <from> 0x00 <to>".to_owned());
        let argument = argument.ok_or_else(malformed)?;
        let split = argument
            .iter()
            .position(|&byte| byte == 0)
            .ok_or_else(malformed)?;
        let (from, to) = (&argument[..split], &argument[split + 1..]);
        let value = tx.get(from).ok_or(UserFunctionError::NotFound)?;
        tx.delete(from)?;
        tx.set(to, &value);
        Ok(Some(value))
    }
}
