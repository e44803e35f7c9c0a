//! The current span and correlation id, kept in `contextvars` (Python tasks share threads, so
//! the core's per-thread current span cannot be used), and the functions that set them.
//!
//! The correlation id is, innermost first: the value `set_correlation_id` put in the context
//! (`False` when it cleared it: then there is none), else the request id carried by the current
//! span (the ASGI middleware gives its server span the request's id, and spans started under it
//! inherit it). So a request needs one context variable set, the span, not two.

use std::cell::Cell;
use std::ptr;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use shmtel_core::SpanContext;

use crate::propagation::{hex_into, parse_ids, to_hex};
use crate::span::Span;

static SPAN_VAR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CORRELATION_VAR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Create the two context variables (module init) and expose them as private attributes.
pub fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let cv = py.import("contextvars")?.getattr("ContextVar")?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("default", py.None())?;
    let span = SPAN_VAR.get_or_try_init(py, || {
        cv.call(("shmtel_current_span",), Some(&kwargs))
            .map(Bound::unbind)
    })?;
    let corr = CORRELATION_VAR.get_or_try_init(py, || {
        cv.call(("shmtel_correlation_id",), Some(&kwargs))
            .map(Bound::unbind)
    })?;
    m.add("_current_span_var", span.bind(py))?;
    m.add("_correlation_id_var", corr.bind(py))?;
    Ok(())
}

fn var<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get(py).map(|v| v.bind(py)).ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("shmtel._native is not initialised")
    })
}

/// `var.get()` (the default, None, when unset in this context).
#[inline]
fn get_var<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
) -> Option<Bound<'py, PyAny>> {
    let v = cell.get(py)?;
    let mut out: *mut ffi::PyObject = ptr::null_mut();
    // SAFETY: `v` is a ContextVar; `out` receives a new reference (or stays NULL).
    let rc = unsafe { ffi::PyContextVar_Get(v.as_ptr(), ptr::null_mut(), &mut out) };
    if rc != 0 || out.is_null() {
        // SAFETY: attached thread; clearing a possibly set error is always allowed.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    // SAFETY: `out` is a new, non-NULL reference.
    Some(unsafe { Bound::from_owned_ptr(py, out) })
}

/// `var.set(value)`, returning the token.
pub fn set_var<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let v = var(py, cell)?;
    // SAFETY: `v` is a ContextVar and `value` a live object; the result is a new reference
    // or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContextVar_Set(v.as_ptr(), value.as_ptr())) }
}

/// `var.reset(token)`.
pub fn reset_var(
    py: Python<'_>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    token: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let v = var(py, cell)?;
    // SAFETY: `v` is a ContextVar; a wrong token is reported as an exception, not UB.
    if unsafe { ffi::PyContextVar_Reset(v.as_ptr(), token.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// The correlation-id variable.
pub fn correlation_var() -> &'static PyOnceLock<Py<PyAny>> {
    &CORRELATION_VAR
}

/// The span-context variable.
pub fn span_var() -> &'static PyOnceLock<Py<PyAny>> {
    &SPAN_VAR
}

/// What the current-span variable holds.
pub enum Current<'py> {
    /// Nothing is current.
    None,
    /// A span entered in this context.
    Local(Bound<'py, Span>),
    /// A remote parent from `set_trace_context`.
    Remote(SpanContext),
}

/// The current span or remote context.
#[inline]
pub fn current(py: Python<'_>) -> Current<'_> {
    let Some(v) = get_var(py, &SPAN_VAR) else {
        return Current::None;
    };
    if v.is_none() {
        return Current::None;
    }
    if let Ok(s) = v.cast::<Span>() {
        return Current::Local(s.clone());
    }
    if let Ok(r) = v.cast::<RemoteContext>() {
        return Current::Remote(r.get().ctx);
    }
    Current::None
}

impl<'py> Current<'py> {
    /// The ids of whatever is current (for logs).
    #[inline]
    pub fn ids(&self) -> Option<SpanContext> {
        match self {
            Current::None => None,
            Current::Local(s) => Some(s.get().context()),
            Current::Remote(c) => Some(*c),
        }
    }

    /// The request id the current span carries (see the module docs).
    #[inline]
    fn request_cid(&self) -> Option<Bound<'py, PyString>> {
        match self {
            Current::Local(s) => s.get().request_cid(s.py()),
            _ => None,
        }
    }
}

/// The correlation id `set_correlation_id` put in this context: `Some(None)` when it cleared
/// it (False), None when it set nothing.
#[inline]
fn own_correlation(py: Python<'_>) -> Option<Option<Bound<'_, PyString>>> {
    let v = get_var(py, &CORRELATION_VAR).filter(|v| !v.is_none())?;
    Some(v.cast_into::<PyString>().ok())
}

/// The current correlation id, if any (a str): the context's own (see the module docs), else
/// the current span's request id.
#[inline]
pub fn correlation(py: Python<'_>) -> Option<Bound<'_, PyString>> {
    own_correlation(py).unwrap_or_else(|| current(py).request_cid())
}

/// [`correlation`] with the current span already looked up.
#[inline]
pub fn correlation_under<'py>(
    py: Python<'py>,
    current: &Current<'py>,
) -> Option<Bound<'py, PyString>> {
    own_correlation(py).unwrap_or_else(|| current.request_cid())
}

/// Whether `set_correlation_id` set (or cleared) the correlation id in this context: then a
/// request's own id must be set in the context too, to take precedence.
#[inline]
pub fn correlation_is_set(py: Python<'_>) -> bool {
    own_correlation(py).is_some()
}

/// A propagated parent made current by `set_trace_context`: not a span of this process.
#[pyclass(frozen, module = "shmtel._native")]
pub struct RemoteContext {
    pub(crate) ctx: SpanContext,
}

#[pymethods]
impl RemoteContext {
    /// 32 lowercase hex digits.
    #[getter]
    fn trace_id(&self) -> String {
        to_hex(&self.ctx.trace_id)
    }
    /// 16 lowercase hex digits.
    #[getter]
    fn span_id(&self) -> String {
        to_hex(&self.ctx.span_id)
    }
    /// Whether the remote trace is sampled.
    #[getter]
    fn sampled(&self) -> bool {
        self.ctx.sampled
    }
    fn __repr__(&self) -> String {
        format!(
            "RemoteContext(trace_id={:?}, span_id={:?}, sampled={})",
            self.trace_id(),
            self.span_id(),
            if self.ctx.sampled { "True" } else { "False" }
        )
    }
}

/// Make a remote parent current; returns the contextvars token.
#[pyfunction]
#[pyo3(signature = (trace_id, span_id, sampled = true))]
pub fn set_trace_context<'py>(
    py: Python<'py>,
    trace_id: &str,
    span_id: &str,
    sampled: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (trace_id, span_id) = parse_ids(trace_id, span_id).map_err(PyValueError::new_err)?;
    let remote = Bound::new(
        py,
        RemoteContext {
            ctx: SpanContext {
                trace_id,
                span_id,
                sampled,
            },
        },
    )?;
    set_var(py, &SPAN_VAR, remote.as_any())
}

/// `(trace_id, span_id, sampled)` of the current span or remote context.
#[pyfunction]
pub fn get_trace_context(py: Python<'_>) -> Option<(String, String, bool)> {
    current(py)
        .ids()
        .map(|c| (to_hex(&c.trace_id), to_hex(&c.span_id), c.sampled))
}

/// Set (or clear, with None) the correlation id; returns the contextvars token.
#[pyfunction]
pub fn set_correlation_id<'py>(
    py: Python<'py>,
    cid: Option<Bound<'py, PyString>>,
) -> PyResult<Bound<'py, PyAny>> {
    match cid {
        Some(s) => set_var(py, &CORRELATION_VAR, s.as_any()),
        // False, not None: cleared here, so a current span's request id does not show through.
        None => set_var(
            py,
            &CORRELATION_VAR,
            pyo3::types::PyBool::new(py, false).as_any(),
        ),
    }
}

/// The current correlation id.
#[pyfunction]
pub fn get_correlation_id(py: Python<'_>) -> Option<Bound<'_, PyString>> {
    correlation(py)
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// wyrand, seeded per thread from the kernel (reseeded after fork by the pid check).
fn next_u64() -> u64 {
    RNG.with(|r| {
        let mut s = r.get();
        if s == 0 {
            s = seed();
        }
        s = s.wrapping_add(0xa076_1d64_78bd_642f);
        r.set(s);
        let t = u128::from(s).wrapping_mul(u128::from(s ^ 0xe703_7ed1_a0b4_28db));
        ((t >> 64) as u64) ^ (t as u64)
    })
}

#[cold]
fn seed() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is a valid writable buffer of 8 bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), 8, 0) };
    let mut s = u64::from_le_bytes(buf);
    if n != 8 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        s ^= t ^ u64::from(std::process::id()) << 32;
    }
    s | 1
}

/// Forget the generator's state in a fork child (so parent and child do not repeat ids).
pub fn reseed_after_fork() {
    RNG.with(|r| r.set(0));
}

/// A new correlation id: 32 lowercase hex digits.
#[pyfunction]
pub fn new_correlation_id() -> String {
    // Hex digits only.
    String::from_utf8_lossy(&new_correlation_id_bytes()).into_owned()
}

/// [`new_correlation_id`] on the stack (ASCII).
pub fn new_correlation_id_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    hex_into(&mut out[..16], &next_u64().to_be_bytes());
    hex_into(&mut out[16..], &next_u64().to_be_bytes());
    out
}
