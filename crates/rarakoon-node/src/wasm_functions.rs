//! WebAssembly user functions (ADR 0170): modules named in `[[cluster.user_functions]]`,
//! loaded at start-up and run by the `wasmi` interpreter inside the transaction of their
//! update.
//!
//! A module's contract (docs/operations.md, "User functions"):
//! - it exports `call: () -> i32` (0: success; anything else: failure) and, when it imports
//!   anything, its linear memory as `memory`;
//! - it imports only functions of the module `rarakoon` listed in [`HOST_API`], with exactly
//!   those types; no WASI, no other module, no imported memory, table or global, no `start`
//!   function. Anything else is refused at load.
//!
//! Invariants:
//! - **Deterministic.** Every call runs in a fresh instance (no state survives a call, so a
//!   replica that replays the log from another snapshot computes the same thing); fuel and
//!   memory are metered identically on every node; NaNs are canonicalised (wasmi's
//!   `deterministic` feature); host calls read only the transaction and the argument.
//! - **Bounded.** A call burns at most the configured fuel (host calls are charged
//!   [`HOST_CALL_FUEL`] plus one unit per byte they copy) and its memory never exceeds the
//!   configured pages; running out of either fails the call. Every pointer and length the
//!   module passes is checked against its memory before anything is copied or allocated.
//! - **Isolated.** The module reaches the store only through the host calls, bound to the
//!   update's [`Transaction`]; a failure of any kind (trap, fuel, memory, a bad pointer, a
//!   non-zero return, `fail`) is [`UserFunctionError::Failed`], and the store rolls back
//!   whatever the call wrote.
//! - The module file's SHA-256 equals the configured one, or the node does not start
//!   ([`LoadError::HashMismatch`]); the hash and limits are the function's
//!   [`HostedFunction::identity`], which the messaging handshake compares between nodes.
//!
//! How host calls reach the transaction: wasmi's store data must be `'static`, so it cannot
//! hold the borrowed transaction. Each host import therefore only describes its request
//! ([`Request`]) and suspends the call (a resumable host trap); [`WasmFunction::call`], which
//! holds the transaction, serves the request against the transaction and the instance's
//! memory and resumes the call with the answer.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use kv_store::{HostedFunction, KeyRange, Transaction, UserFunctionError, UserFunctionRegistry};
use wasmi::{
    CompilationMode, Config, Engine, Error as WasmError, ExternType, FuncType, Linker, Memory,
    Module, ResumableCall, Store, StoreLimits, StoreLimitsBuilder, Val, ValType,
};

use crate::config::UserFunctionConfig;

/// The import module every host call lives in.
pub const HOST_MODULE: &str = "rarakoon";
/// The exported entry point: `() -> i32`.
pub const ENTRY: &str = "call";
/// The exported linear memory the host reads and writes.
pub const MEMORY: &str = "memory";
/// Largest module file accepted.
pub const MAX_MODULE_BYTES: u64 = 16 * 1024 * 1024;
/// Fuel charged for every host call, on top of one unit per byte copied.
pub const HOST_CALL_FUEL: u64 = 100;
/// Bytes in a WebAssembly page.
const PAGE_BYTES: u64 = 64 * 1024;

/// The host API: `(name, parameters, results)`, every value an `i32`. Pointers and lengths
/// are unsigned; a result of -1 means "absent".
///
/// - `argument(out, cap) -> len`: the update's argument (-1 when there is none); copied to
///   `out` only when `len <= cap`, so a module can ask again with a larger buffer.
/// - `get(key, key_len, out, cap) -> len`: the value of the key (-1 when absent), copied like
///   `argument`.
/// - `exists(key, key_len) -> 0|1`.
/// - `set(key, key_len, value, value_len)`.
/// - `delete(key, key_len) -> 0|1`: 1 when the key existed.
/// - `next_key(from, from_len, out, cap) -> len`: the smallest key `>= from` (-1 when none),
///   copied like `argument`; to iterate, ask next from the last key with a 0x00 byte appended.
/// - `set_result(ptr, len)`: the call's result (none unless set; the last one wins).
/// - `fail(ptr, len)`: fails the call at once with this message (UTF-8, lossily).
pub const HOST_API: &[(&str, usize, usize)] = &[
    ("argument", 2, 1),
    ("get", 4, 1),
    ("exists", 2, 1),
    ("set", 4, 0),
    ("delete", 2, 1),
    ("next_key", 4, 1),
    ("set_result", 2, 0),
    ("fail", 2, 0),
];

/// Fuel and memory bounds of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call.
    pub fuel: u64,
    /// Linear memory per call, in 64 KiB pages.
    pub memory_pages: u32,
}

impl Limits {
    /// The limits of a configured function.
    pub fn of(config: &UserFunctionConfig) -> Self {
        Limits {
            fuel: config.fuel,
            memory_pages: config.memory_pages,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: crate::config::defaults::USER_FUNCTION_FUEL,
            memory_pages: crate::config::defaults::USER_FUNCTION_MEMORY_PAGES,
        }
    }
}

/// Why a user function's module was not loaded; every variant names the function and file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("user function `{name}`: cannot read module {}: {source}", file.display())]
    Read {
        /// The function.
        name: String,
        /// The module file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_MODULE_BYTES`].
    #[error(
        "user function `{name}`: module {} has {size} bytes; at most {max} are accepted",
        file.display(),
        max = MAX_MODULE_BYTES
    )]
    TooLarge {
        /// The function.
        name: String,
        /// The module file.
        file: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file's SHA-256 is not the configured one.
    #[error(
        "user function `{name}`: module {} has SHA-256 {actual}, but the config expects \
         {expected}; deploy the same file on every node and put its hash (`sha256sum`) in the \
         config",
        file.display()
    )]
    HashMismatch {
        /// The function.
        name: String,
        /// The module file.
        file: PathBuf,
        /// The configured hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// The module is not acceptable: invalid WebAssembly, a forbidden import, a missing or
    /// mistyped export, or memory beyond the limit.
    #[error("user function `{name}`: module {} is refused: {problem}", file.display())]
    Refused {
        /// The function.
        name: String,
        /// The module file.
        file: PathBuf,
        /// What is wrong and what is accepted.
        problem: String,
    },
    /// The name is already taken (by a native function of the embedder).
    #[error("user function `{name}` (module {}) is already registered by the node's embedder", file.display())]
    Duplicate {
        /// The function.
        name: String,
        /// The module file.
        file: PathBuf,
    },
}

/// The SHA-256 of `bytes`, as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Loads every configured function into `registry`, in config order. The first problem stops
/// the start-up (a node must never serve a subset of the cluster's functions).
pub fn register_configured(
    registry: &mut UserFunctionRegistry,
    functions: &[UserFunctionConfig],
) -> Result<(), LoadError> {
    for config in functions {
        let function = WasmFunction::load(config)?;
        if registry.contains(config.name.as_bytes()) {
            return Err(LoadError::Duplicate {
                name: config.name.clone(),
                file: config.module.clone(),
            });
        }
        tracing::info!(
            name = %config.name,
            module = %config.module.display(),
            identity = %function.identity(),
            "user function loaded"
        );
        registry.register_hosted(&config.name, Arc::new(function));
    }
    Ok(())
}

/// A loaded, validated module, ready to be called.
pub struct WasmFunction {
    name: String,
    sha256: String,
    limits: Limits,
    engine: Engine,
    module: Module,
    linker: Linker<HostState>,
}

impl std::fmt::Debug for WasmFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmFunction")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The per-call store data: only the resource limiter (see the module docs for why).
#[derive(Debug)]
struct HostState {
    limits: StoreLimits,
}

/// A host call, described by its import and served by [`WasmFunction::call`].
#[derive(Debug, Clone, Copy)]
enum Request {
    Argument { out: u32, cap: u32 },
    Get { key: Span, out: u32, cap: u32 },
    Exists { key: Span },
    Set { key: Span, value: Span },
    Delete { key: Span },
    NextKey { from: Span, out: u32, cap: u32 },
    SetResult { value: Span },
    Fail { message: Span },
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call {self:?}")
    }
}

impl wasmi::errors::HostError for Request {}

/// A `(pointer, length)` pair into the module's memory.
#[derive(Debug, Clone, Copy)]
struct Span {
    ptr: u32,
    len: u32,
}

/// Wasm's `i32` pointers and lengths are unsigned.
fn unsigned(value: i32) -> u32 {
    u32::from_ne_bytes(value.to_ne_bytes())
}

fn span(ptr: i32, len: i32) -> Span {
    Span {
        ptr: unsigned(ptr),
        len: unsigned(len),
    }
}

fn failed(message: impl Into<String>) -> UserFunctionError {
    UserFunctionError::Failed(message.into())
}

impl WasmFunction {
    /// Reads the configured module, checks its size and hash, and validates it.
    ///
    /// # Errors
    /// As [`LoadError`] describes.
    pub fn load(config: &UserFunctionConfig) -> Result<Self, LoadError> {
        let name = config.name.clone();
        let file = config.module.clone();
        let read_error = |source| LoadError::Read {
            name: name.clone(),
            file: file.clone(),
            source,
        };
        let size = std::fs::metadata(&file).map_err(read_error)?.len();
        if size > MAX_MODULE_BYTES {
            return Err(LoadError::TooLarge { name, file, size });
        }
        let bytes = std::fs::read(&file).map_err(read_error)?;
        // The file may have grown between the two calls.
        if bytes.len() as u64 > MAX_MODULE_BYTES {
            return Err(LoadError::TooLarge {
                size: bytes.len() as u64,
                name,
                file,
            });
        }
        let actual = sha256_hex(&bytes);
        let expected = config.sha256.to_ascii_lowercase();
        if actual != expected {
            return Err(LoadError::HashMismatch {
                name,
                file,
                expected,
                actual,
            });
        }
        Self::from_bytes(&name, &bytes, Limits::of(config)).map_err(|problem| LoadError::Refused {
            name: name.clone(),
            file: file.clone(),
            problem,
        })
    }

    /// Validates `wasm` (binary WebAssembly) as the function `name`; `Err` says what is wrong.
    ///
    /// # Errors
    /// Invalid WebAssembly, a forbidden import, a missing or mistyped export, a `start`
    /// function, or an initial memory beyond `limits`.
    pub fn from_bytes(name: &str, wasm: &[u8], limits: Limits) -> Result<Self, String> {
        let mut config = Config::default();
        config
            .consume_fuel(true)
            .allow_start_fn(false)
            .compilation_mode(CompilationMode::Eager);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm).map_err(|e| format!("not valid: {e}"))?;
        check_imports(&module)?;
        check_exports(&module)?;
        let mut linker = Linker::new(&engine);
        define_host_api(&mut linker).map_err(|e| format!("host API: {e}"))?;
        let function = WasmFunction {
            name: name.to_owned(),
            sha256: sha256_hex(wasm),
            limits,
            engine,
            module,
            linker,
        };
        // A trial instance: the initial memory and tables must fit the limits.
        function
            .instantiate()
            .map_err(|e| format!("cannot be instantiated within the limits ({limits:?}): {e}"))?;
        Ok(function)
    }

    /// The module's SHA-256 (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    fn instantiate(&self) -> Result<(Store<HostState>, wasmi::Instance), WasmError> {
        let memory_bytes = u64::from(self.limits.memory_pages) * PAGE_BYTES;
        let state = HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(memory_bytes).unwrap_or(usize::MAX))
                .memories(1)
                .tables(1)
                .table_elements(10_000)
                .instances(1)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_fuel(self.limits.fuel)?;
        let instance = self
            .linker
            .instantiate_and_start(&mut store, &self.module)?;
        Ok((store, instance))
    }

    /// Charges `bytes` copied plus [`HOST_CALL_FUEL`]; fails when the fuel does not cover it.
    fn charge(&self, store: &mut Store<HostState>, bytes: u64) -> Result<(), UserFunctionError> {
        let cost = HOST_CALL_FUEL.saturating_add(bytes);
        let left = store.get_fuel().map_err(|e| failed(format!("fuel: {e}")))?;
        if left < cost {
            return Err(self.out_of_fuel());
        }
        store
            .set_fuel(left - cost)
            .map_err(|e| failed(format!("fuel: {e}")))
    }

    fn out_of_fuel(&self) -> UserFunctionError {
        failed(format!(
            "user function `{}` ran out of fuel (limit {} per call)",
            self.name, self.limits.fuel
        ))
    }

    /// Serves one host call; `Ok(Some(v))` resumes the module with `v`, `Ok(None)` with
    /// nothing.
    fn serve(
        &self,
        request: Request,
        store: &mut Store<HostState>,
        memory: Option<Memory>,
        tx: &mut Transaction<'_>,
        argument: Option<&[u8]>,
        result: &mut Option<Bytes>,
    ) -> Result<Option<i32>, UserFunctionError> {
        let memory = memory.ok_or_else(|| {
            failed(format!(
                "user function `{}` made a host call but exports no `{MEMORY}`",
                self.name
            ))
        })?;
        match request {
            Request::Argument { out, cap } => self.answer_value(store, memory, argument, out, cap),
            Request::Get { key, out, cap } => {
                let key = self.read(store, memory, key)?;
                let value = tx.get(&key);
                self.answer_value(store, memory, value.as_deref(), out, cap)
            }
            Request::Exists { key } => {
                let key = self.read(store, memory, key)?;
                Ok(Some(i32::from(tx.exists(&key))))
            }
            Request::Set { key, value } => {
                let key = self.read(store, memory, key)?;
                let value = self.read(store, memory, value)?;
                tx.set(&key, &value);
                Ok(None)
            }
            Request::Delete { key } => {
                let key = self.read(store, memory, key)?;
                Ok(Some(i32::from(tx.put(&key, None).is_some())))
            }
            Request::NextKey { from, out, cap } => {
                let from = self.read(store, memory, from)?;
                let range = KeyRange {
                    first: Some(&from),
                    first_inclusive: true,
                    last: None,
                    last_inclusive: true,
                };
                let next = tx.range_entries(&range, 1).into_iter().next();
                let key = next.map(|(key, _)| key);
                self.answer_value(store, memory, key.as_deref(), out, cap)
            }
            Request::SetResult { value } => {
                *result = Some(Bytes::from(self.read(store, memory, value)?));
                Ok(None)
            }
            Request::Fail { message } => {
                let message = self.read(store, memory, message)?;
                Err(failed(String::from_utf8_lossy(&message).into_owned()))
            }
        }
    }

    /// Answers `len` (or -1 for `None`), copying the bytes to `out` when they fit `cap`.
    fn answer_value(
        &self,
        store: &mut Store<HostState>,
        memory: Memory,
        value: Option<&[u8]>,
        out: u32,
        cap: u32,
    ) -> Result<Option<i32>, UserFunctionError> {
        let Some(value) = value else {
            self.charge(store, 0)?;
            return Ok(Some(-1));
        };
        let len = i32::try_from(value.len()).map_err(|_| {
            failed(format!(
                "user function `{}`: a value of {} bytes does not fit an i32 length",
                self.name,
                value.len()
            ))
        })?;
        if value.len() as u64 <= u64::from(cap) {
            let range = self.checked_range(store, memory, out, value.len() as u64)?;
            self.charge(store, value.len() as u64)?;
            memory.data_mut(&mut *store)[range].copy_from_slice(value);
        } else {
            self.charge(store, 0)?;
        }
        Ok(Some(len))
    }

    /// Copies `span` out of the module's memory (a bad span fails before it is charged).
    fn read(
        &self,
        store: &mut Store<HostState>,
        memory: Memory,
        span: Span,
    ) -> Result<Vec<u8>, UserFunctionError> {
        let range = self.checked_range(store, memory, span.ptr, u64::from(span.len))?;
        self.charge(store, u64::from(span.len))?;
        Ok(memory.data(&*store)[range].to_vec())
    }

    /// `ptr..ptr + len` when it lies inside the module's memory.
    fn checked_range(
        &self,
        store: &Store<HostState>,
        memory: Memory,
        ptr: u32,
        len: u64,
    ) -> Result<std::ops::Range<usize>, UserFunctionError> {
        let size = memory.data(store).len() as u64;
        let start = u64::from(ptr);
        let end = start.saturating_add(len);
        if end > size {
            return Err(failed(format!(
                "user function `{}` passed memory {start}..{end} outside its {size} bytes",
                self.name
            )));
        }
        // Both fit in usize: they are at most the memory's size, which is a usize.
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(to_usize(start)..to_usize(end))
    }

    /// Turns an error from running the module into the call's failure.
    fn trap(&self, error: &WasmError) -> UserFunctionError {
        if error.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel) {
            return self.out_of_fuel();
        }
        failed(format!("user function `{}` trapped: {error}", self.name))
    }
}

impl HostedFunction for WasmFunction {
    fn call(
        &self,
        tx: &mut Transaction<'_>,
        argument: Option<&[u8]>,
    ) -> Result<Option<Bytes>, UserFunctionError> {
        let (mut store, instance) = self.instantiate().map_err(|e| self.trap(&e))?;
        let memory = instance.get_memory(&store, MEMORY);
        let entry = instance
            .get_func(&store, ENTRY)
            .ok_or_else(|| failed(format!("user function `{}` has no `{ENTRY}`", self.name)))?;
        let mut result = None;
        let mut outputs = [Val::I32(0)];
        let mut call = entry
            .call_resumable(&mut store, &[], &mut outputs)
            .map_err(|e| self.trap(&e))?;
        loop {
            match call {
                ResumableCall::Finished => break,
                ResumableCall::OutOfFuel(_) => return Err(self.out_of_fuel()),
                ResumableCall::HostTrap(pending) => {
                    let request = pending
                        .host_error()
                        .downcast_ref::<Request>()
                        .copied()
                        .ok_or_else(|| self.trap(pending.host_error()))?;
                    let answer =
                        self.serve(request, &mut store, memory, tx, argument, &mut result)?;
                    let inputs: Vec<Val> = answer.map(Val::I32).into_iter().collect();
                    call = pending
                        .resume(&mut store, &inputs, &mut outputs)
                        .map_err(|e| self.trap(&e))?;
                }
            }
        }
        match outputs[0] {
            Val::I32(0) => Ok(result),
            Val::I32(code) => Err(failed(format!(
                "user function `{}` returned error code {code}",
                self.name
            ))),
            ref other => Err(failed(format!(
                "user function `{}` returned {other:?}, not an i32",
                self.name
            ))),
        }
    }

    fn identity(&self) -> String {
        format!(
            "wasm:sha256:{}:fuel:{}:pages:{}",
            self.sha256, self.limits.fuel, self.limits.memory_pages
        )
    }
}

/// Every import must be a function of [`HOST_API`] with its exact type.
fn check_imports(module: &Module) -> Result<(), String> {
    let api: Vec<&str> = HOST_API.iter().map(|(name, ..)| *name).collect();
    for import in module.imports() {
        let what = format!("`{}`.`{}`", import.module(), import.name());
        let refuse = |why: &str| {
            Err(format!(
                "it imports {what}, {why}; a module may import only functions of \
                 `{HOST_MODULE}`: {} (no WASI, no other imports)",
                api.join(", ")
            ))
        };
        if import.module() != HOST_MODULE {
            return refuse("which is not the host API");
        }
        let Some((_, params, results)) = HOST_API.iter().find(|(n, ..)| *n == import.name()) else {
            return refuse("which the host API does not have");
        };
        let ExternType::Func(ty) = import.ty() else {
            return refuse("which is not a function");
        };
        if *ty != i32_func(*params, *results) {
            return refuse(&format!(
                "with type {ty:?}, but it takes {params} i32 and returns {results} i32"
            ));
        }
    }
    Ok(())
}

/// `call: () -> i32` must be exported; `memory`, when exported, must be a memory.
fn check_exports(module: &Module) -> Result<(), String> {
    match module.get_export(ENTRY) {
        Some(ExternType::Func(ty)) if ty == i32_func(0, 1) => {}
        Some(other) => {
            return Err(format!(
                "its export `{ENTRY}` is {other:?}; it must be a function () -> i32"
            ));
        }
        None => {
            return Err(format!(
                "it does not export `{ENTRY}`, the function () -> i32 the node calls"
            ));
        }
    }
    match module.get_export(MEMORY) {
        Some(ExternType::Memory(_)) => Ok(()),
        Some(other) => Err(format!("its export `{MEMORY}` is {other:?}, not a memory")),
        None if module.imports().len() > 0 => Err(format!(
            "it imports host calls but does not export its `{MEMORY}`"
        )),
        None => Ok(()),
    }
}

fn i32_func(params: usize, results: usize) -> FuncType {
    FuncType::new(vec![ValType::I32; params], vec![ValType::I32; results])
}

/// Defines every import of [`HOST_API`]: each describes its request and suspends the call.
fn define_host_api(linker: &mut Linker<HostState>) -> Result<(), WasmError> {
    let m = HOST_MODULE;
    linker.func_wrap(
        m,
        "argument",
        |out: i32, cap: i32| -> Result<i32, WasmError> {
            Err(WasmError::host(Request::Argument {
                out: unsigned(out),
                cap: unsigned(cap),
            }))
        },
    )?;
    linker.func_wrap(
        m,
        "get",
        |key: i32, key_len: i32, out: i32, cap: i32| -> Result<i32, WasmError> {
            Err(WasmError::host(Request::Get {
                key: span(key, key_len),
                out: unsigned(out),
                cap: unsigned(cap),
            }))
        },
    )?;
    linker.func_wrap(
        m,
        "exists",
        |key: i32, len: i32| -> Result<i32, WasmError> {
            Err(WasmError::host(Request::Exists {
                key: span(key, len),
            }))
        },
    )?;
    linker.func_wrap(
        m,
        "set",
        |key: i32, key_len: i32, value: i32, value_len: i32| -> Result<(), WasmError> {
            Err(WasmError::host(Request::Set {
                key: span(key, key_len),
                value: span(value, value_len),
            }))
        },
    )?;
    linker.func_wrap(
        m,
        "delete",
        |key: i32, len: i32| -> Result<i32, WasmError> {
            Err(WasmError::host(Request::Delete {
                key: span(key, len),
            }))
        },
    )?;
    linker.func_wrap(
        m,
        "next_key",
        |from: i32, from_len: i32, out: i32, cap: i32| -> Result<i32, WasmError> {
            Err(WasmError::host(Request::NextKey {
                from: span(from, from_len),
                out: unsigned(out),
                cap: unsigned(cap),
            }))
        },
    )?;
    linker.func_wrap(
        m,
        "set_result",
        |ptr: i32, len: i32| -> Result<(), WasmError> {
            Err(WasmError::host(Request::SetResult {
                value: span(ptr, len),
            }))
        },
    )?;
    linker.func_wrap(m, "fail", |ptr: i32, len: i32| -> Result<(), WasmError> {
        Err(WasmError::host(Request::Fail {
            message: span(ptr, len),
        }))
    })?;
    Ok(())
}
