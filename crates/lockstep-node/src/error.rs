//! The one error the binding throws.
//!
//! Every failure becomes a JS `Error` whose `code` property is a stable `E_...` code and whose
//! `message` is the error's text, nothing prepended: napi's `napi_create_error(code, message)`
//! sets both, so no code ever travels inside a message (where a module- or agent-controlled
//! string could imitate one). [`to_napi`] is the only place such an error is made; index.js
//! turns it into a `LockstepError` by reading `err.code`.
//!
//! Two errors do not come from here: a Rust panic, which `#[napi(catch_unwind)]` turns into
//! napi's `GenericFailure` (index.js: `E_INTERNAL`), and napi's own argument conversions
//! (`InvalidArg`, `NumberExpected`...; index.js: `E_INVALID_ARGUMENT`).

use std::fmt::Display;

use lockstep_core::inference::InferenceError;
use lockstep_core::ring::RingError;
use lockstep_core::security::SecurityError;
use lockstep_core::LockstepError;
use napi::bindgen_prelude::{Env, JsError, Unknown};

/// A stable error code (`E_...`): the JS error's `code`. Only this module makes one.
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// What every binding function returns: napi throws the error with its `code`.
pub type Result<T> = std::result::Result<T, napi::Error<Code>>;

/// An error with a stable code: every error type of the core.
pub trait Coded: Display {
    fn code(&self) -> &'static str;
}

impl Coded for LockstepError {
    fn code(&self) -> &'static str {
        LockstepError::code(self)
    }
}

impl Coded for InferenceError {
    fn code(&self) -> &'static str {
        InferenceError::code(self)
    }
}

impl Coded for SecurityError {
    fn code(&self) -> &'static str {
        SecurityError::code(self)
    }
}

impl Coded for RingError {
    fn code(&self) -> &'static str {
        "E_RING"
    }
}

/// An error the binding itself detects, with the code it reports.
pub struct BindError {
    pub code: &'static str,
    pub message: String,
}

impl Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Coded for BindError {
    fn code(&self) -> &'static str {
        self.code
    }
}

/// The JS error for `e`: `code` = `e.code()`, `message` = `e.to_string()`.
pub fn to_napi(e: impl Coded) -> napi::Error<Code> {
    napi::Error::new(Code(e.code()), e.to_string())
}

/// `e`'s code, its message prefixed with what it is about (`trustedKeys[2]: ...`).
pub fn in_context(what: &str, e: impl Coded) -> napi::Error<Code> {
    to_napi(BindError { code: e.code(), message: format!("{what}: {e}") })
}

/// `E_INVALID_CONFIG`: a bad runtime option.
pub fn invalid_config(reason: String) -> napi::Error<Code> {
    to_napi(LockstepError::InvalidConfig { reason })
}

/// `E_INVALID_ARGUMENT` naming the argument.
pub fn invalid_arg(name: &str, reason: String) -> napi::Error<Code> {
    to_napi(LockstepError::InvalidArgument { name: name.into(), reason })
}

/// `E_INTERNAL`: a panic caught off the JS thread (where `#[napi(catch_unwind)]` does not
/// reach), with the panic's message.
pub fn internal(panic: Box<dyn std::any::Any + Send>) -> napi::Error<Code> {
    let message =
        panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "unknown panic".into());
    to_napi(BindError { code: "E_INTERNAL", message: format!("internal error (a lockstep bug; please report it): {message}") })
}

/// `e` with `more` appended to its message (same code).
pub fn extended(e: napi::Error<Code>, more: &str) -> napi::Error<Code> {
    napi::Error::new(e.status, format!("{}{more}", e.reason))
}

/// `E_BUSY`: a `tickAsync` holds the runtime.
pub fn busy() -> napi::Error<Code> {
    to_napi(BindError { code: "E_BUSY", message: "a tickAsync is running on this runtime; await it first".into() })
}

/// The same error as a napi `Error<Status>` holding the JS error object, for the places napi
/// types as `Error<Status>` (an `AsyncTask`'s rejection): the promise rejects with that
/// object, `code` included.
pub fn to_status_error(env: &Env, e: napi::Error<Code>) -> napi::Error {
    let value: Unknown<'_> = JsError::from(e).into_unknown(*env);
    napi::Error::from(value)
}
