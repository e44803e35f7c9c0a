//! Log functions and business events.
//!
//! `trace` .. `critical` and `log` are raw `METH_FASTCALL | METH_KEYWORDS` C functions rather
//! than `#[pyfunction]`s: pyo3 builds a dict for `**fields` on every call, which would cost
//! more than a filtered-out call is allowed to (the level check comes first, before anything
//! touches the arguments). Keyword names arrive as a tuple of str objects that are the same
//! objects on every call from a given call site, which the symbol cache keys on.

use std::ffi::CStr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use shmtel_core::{Level, LogContext, Symbol, Value};

use crate::context;
use crate::symbols::{self, symbol, symbol_of_text};
use crate::values::{display, field, str_field, Field, Scratch};

mod bridge;

static INCLUDE_CALLER: AtomicBool = AtomicBool::new(false);
static CORRELATION_FIELD: AtomicBool = AtomicBool::new(true);
static TRACE_FIELDS: AtomicBool = AtomicBool::new(true);

/// Fields converted on the stack; more spill to the heap.
const STACK_FIELDS: usize = 8;

fn level_from(code: i64) -> PyResult<Level> {
    u8::try_from(code)
        .ok()
        .and_then(Level::from_code)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "invalid log level {code}: expected 0 (TRACE) .. 5 (FATAL)"
            ))
        })
}

/// Set the lowest level recorded by this process.
#[pyfunction]
pub fn set_log_level(level: i64) -> PyResult<()> {
    shmtel_core::set_log_level(level_from(level)?);
    Ok(())
}

/// The lowest level recorded.
#[pyfunction]
pub fn get_log_level() -> i64 {
    (0u8..=5)
        .filter_map(Level::from_code)
        .find(|l| shmtel_core::log_enabled(*l))
        .map(|l| l as i64)
        .unwrap_or(6)
}

/// Whether a log at `level` would be recorded.
#[pyfunction]
pub fn log_enabled(level: i64) -> PyResult<bool> {
    Ok(shmtel_core::log_enabled(level_from(level)?))
}

/// Record the caller (`file:line function`) with each log event.
#[pyfunction]
pub fn set_include_caller(flag: bool) {
    // Ordering: Relaxed: a setting read by later calls; no data is published with it.
    INCLUDE_CALLER.store(flag, Ordering::Relaxed);
}

/// Which context fields log events carry.
#[pyfunction]
pub fn set_correlation_fields(correlation_id: bool, trace: bool) {
    // Ordering: Relaxed: settings, as above.
    CORRELATION_FIELD.store(correlation_id, Ordering::Relaxed);
    // Ordering: Relaxed: as above.
    TRACE_FIELDS.store(trace, Ordering::Relaxed);
}

/// Write one event. `kwvalues` are the keyword values matching `kwnames`.
fn emit(
    py: Python<'_>,
    level: Level,
    message: &Bound<'_, PyAny>,
    kwnames: Option<&Bound<'_, pyo3::types::PyTuple>>,
    kwvalues: &[*mut ffi::PyObject],
) -> PyResult<()> {
    let mut scratch = Scratch::default();
    let msg = match message.cast::<PyString>() {
        Ok(s) => str_field(s, &mut scratch),
        Err(_) => Field::Str(scratch.push(display(message))),
    };
    let n = kwvalues.len();
    let mut stack_pending = [(Symbol::EMPTY, Field::Ready(Value::Null)); STACK_FIELDS];
    let mut heap_pending = Vec::new();
    let pending: &mut [(Symbol, Field<'_>)] = if n <= STACK_FIELDS {
        &mut stack_pending[..n]
    } else {
        heap_pending.resize(n, (Symbol::EMPTY, Field::Ready(Value::Null)));
        &mut heap_pending
    };
    if let Some(names) = kwnames {
        for (i, slot) in pending.iter_mut().enumerate() {
            // SAFETY: kwnames has exactly `n` items (checked by the caller); the tuple holds
            // its items alive for the call.
            let key = unsafe { names.get_borrowed_item_unchecked(i) };
            // SAFETY: keyword names are always str objects (CPython guarantees it for
            // vectorcall).
            let key = unsafe { key.cast_unchecked::<PyString>() };
            // SAFETY: `kwvalues[i]` is a live argument of this call (see the caller).
            let value = unsafe { Bound::ref_from_ptr(py, &kwvalues[i]) };
            *slot = (symbol(&key), field(value, &mut scratch));
        }
    }
    let mut stack_values = [(Symbol::EMPTY, Value::Null); STACK_FIELDS];
    let mut heap_values = Vec::new();
    let values: &mut [(Symbol, Value<'_>)] = if n <= STACK_FIELDS {
        &mut stack_values[..n]
    } else {
        heap_values.resize(n, (Symbol::EMPTY, Value::Null));
        &mut heap_values
    };
    for (v, (k, f)) in values.iter_mut().zip(pending.iter()) {
        *v = (*k, scratch.value(*f));
    }
    let message = match scratch.value(msg) {
        Value::Str(s) => s,
        _ => "",
    };
    // Ordering: Relaxed: a setting.
    let caller = if INCLUDE_CALLER.load(Ordering::Relaxed) {
        symbols::caller(py)
    } else {
        Symbol::EMPTY
    };
    write_event(py, level, message, values, caller);
    Ok(())
}

/// Whether every event carries its caller (`set_include_caller`).
pub(crate) fn include_caller() -> bool {
    // Ordering: Relaxed: a setting.
    INCLUDE_CALLER.load(Ordering::Relaxed)
}

/// Record one event with the context's trace/span ids and correlation id (as configured by
/// `set_correlation_fields`).
pub(crate) fn write_event(
    py: Python<'_>,
    level: Level,
    message: &str,
    values: &[(Symbol, Value<'_>)],
    caller: Symbol,
) {
    // Ordering: Relaxed (both): settings.
    let (trace, corr) = (
        TRACE_FIELDS.load(Ordering::Relaxed),
        CORRELATION_FIELD.load(Ordering::Relaxed),
    );
    // The current span, looked up once for its ids and its request's correlation id.
    let current = if trace || corr {
        context::current(py)
    } else {
        context::Current::None
    };
    let span = if trace { current.ids() } else { None };
    let corr_obj = if corr {
        context::correlation_under(py, &current)
    } else {
        None
    };
    let correlation_id = corr_obj
        .as_ref()
        .and_then(|s| s.to_str().ok())
        .unwrap_or("");
    shmtel_core::log_in_context(
        level,
        message,
        values,
        caller,
        LogContext {
            span,
            correlation_id,
        },
    );
}

/// Run `f` as the body of a C function: a Python error or a panic becomes a raised exception
/// (NULL); success returns None.
#[inline(always)]
fn guarded(f: impl FnOnce(Python<'_>) -> PyResult<()>) -> *mut ffi::PyObject {
    guarded_returning(|py| f(py).map(|()| none()))
}

/// [`guarded`] for a body that returns an object (a new reference).
#[inline(always)]
fn guarded_returning(
    f: impl FnOnce(Python<'_>) -> PyResult<*mut ffi::PyObject>,
) -> *mut ffi::PyObject {
    // SAFETY: only called from C functions that CPython calls with the thread attached.
    let py = unsafe { Python::assume_attached() };
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(py))) {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => {
            e.restore(py);
            std::ptr::null_mut()
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic in shmtel._native".into());
            PanicException::new_err(msg).restore(py);
            std::ptr::null_mut()
        }
    }
}

#[inline(always)]
fn none() -> *mut ffi::PyObject {
    // SAFETY: Py_None is a valid object; the returned reference is owned by the caller.
    unsafe {
        let n = ffi::Py_None();
        ffi::Py_INCREF(n);
        n
    }
}

/// Split a vectorcall's arguments. # Safety: the pointers are those CPython passed.
#[inline(always)]
unsafe fn split<'a>(
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> (&'a [*mut ffi::PyObject], &'a [*mut ffi::PyObject]) {
    // SAFETY: vectorcall convention: `args` holds nargs positional values followed by one
    // value per keyword name; `kwnames` is NULL or a tuple.
    unsafe {
        let nargs = ffi::PyVectorcall_NARGS(nargsf as usize) as usize;
        let nkw = if kwnames.is_null() {
            0
        } else {
            ffi::PyTuple_GET_SIZE(kwnames) as usize
        };
        if nargs + nkw == 0 {
            return (&[], &[]);
        }
        let all = std::slice::from_raw_parts(args, nargs + nkw);
        all.split_at(nargs)
    }
}

fn kwnames_tuple<'py>(
    py: Python<'py>,
    kwnames: *mut ffi::PyObject,
) -> Option<Bound<'py, pyo3::types::PyTuple>> {
    if kwnames.is_null() {
        return None;
    }
    // SAFETY: a non-NULL kwnames is a tuple owned by the caller for the call's duration.
    Some(unsafe { Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked() })
}

/// `trace(message, /, **fields)` .. `critical(...)`: the level is a const parameter.
unsafe extern "C" fn log_at<const L: u8>(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's vectorcall arguments, passed through unchanged.
    let (pos, kw) = unsafe { split(args, nargsf, kwnames) };
    let Some(level) = Level::from_code(L) else {
        return none();
    };
    if pos.len() == 1 && !shmtel_core::log_enabled(level) {
        return none();
    }
    guarded(|py| {
        if pos.len() != 1 {
            return Err(PyTypeError::new_err(format!(
                "{}() takes exactly one positional argument (the message), {} given",
                level.as_str().to_ascii_lowercase(),
                pos.len()
            )));
        }
        // SAFETY: a live positional argument of this call.
        let message = unsafe { Bound::ref_from_ptr(py, &pos[0]) };
        emit(py, level, message, kwnames_tuple(py, kwnames).as_ref(), kw)
    })
}

/// `log(level, message, /, **fields)`.
unsafe extern "C" fn log_dynamic(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's vectorcall arguments, passed through unchanged.
    let (pos, kw) = unsafe { split(args, nargsf, kwnames) };
    guarded(|py| {
        if pos.len() != 2 {
            return Err(PyTypeError::new_err(format!(
                "log() takes exactly two positional arguments (level, message), {} given",
                pos.len()
            )));
        }
        // SAFETY: live positional arguments of this call.
        let (lv, message) = unsafe {
            (
                Bound::ref_from_ptr(py, &pos[0]),
                Bound::ref_from_ptr(py, &pos[1]),
            )
        };
        let level = level_from(lv.extract::<i64>()?)?;
        if !shmtel_core::log_enabled(level) {
            return Ok(());
        }
        emit(py, level, message, kwnames_tuple(py, kwnames).as_ref(), kw)
    })
}

type FastFn = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

fn add_fast(
    m: &Bound<'_, PyModule>,
    name: &'static CStr,
    doc: &'static CStr,
    f: FastFn,
) -> PyResult<()> {
    // The method definition must outlive every function object made from it: leak it (one
    // per function, made once per process).
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: f,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    }));
    let py = m.py();
    let modname = m.name()?;
    // SAFETY: `def` is 'static and its flags match the function pointer's type; the module
    // and its name are live objects. The result is a new reference or NULL with an error.
    let func = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(def, m.as_ptr(), modname.as_ptr()),
        )?
    };
    m.add(name.to_str().unwrap_or("log"), func)
}

/// Add the log functions (and the `logging` bridge's) to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    bridge::register(m)?;
    add_fast(
        m,
        c"trace",
        c"trace(message, /, **fields)\n--\n\nLog at TRACE.",
        log_at::<0>,
    )?;
    add_fast(
        m,
        c"debug",
        c"debug(message, /, **fields)\n--\n\nLog at DEBUG.",
        log_at::<1>,
    )?;
    add_fast(
        m,
        c"info",
        c"info(message, /, **fields)\n--\n\nLog at INFO.",
        log_at::<2>,
    )?;
    add_fast(
        m,
        c"warn",
        c"warn(message, /, **fields)\n--\n\nLog at WARN.",
        log_at::<3>,
    )?;
    add_fast(
        m,
        c"warning",
        c"warning(message, /, **fields)\n--\n\nLog at WARN.",
        log_at::<3>,
    )?;
    add_fast(
        m,
        c"error",
        c"error(message, /, **fields)\n--\n\nLog at ERROR.",
        log_at::<4>,
    )?;
    add_fast(
        m,
        c"fatal",
        c"fatal(message, /, **fields)\n--\n\nLog at FATAL.",
        log_at::<5>,
    )?;
    add_fast(
        m,
        c"critical",
        c"critical(message, /, **fields)\n--\n\nLog at FATAL.",
        log_at::<5>,
    )?;
    add_fast(
        m,
        c"log",
        c"log(level, message, /, **fields)\n--\n\nLog at `level` (0 TRACE .. 5 FATAL).",
        log_dynamic,
    )?;
    Ok(())
}

/// Record a business metric event.
#[pyfunction]
#[pyo3(signature = (name, value, unit = "count", tags = None))]
pub fn business_metric(
    name: &Bound<'_, PyString>,
    value: f64,
    unit: &str,
    tags: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    let unit = symbol_of_text(unit);
    let items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> =
        tags.map(|t| t.iter().collect()).unwrap_or_default();
    let mut scratch = Scratch::default();
    let mut pending = Vec::with_capacity(items.len());
    for (k, v) in &items {
        let key = match k.cast::<PyString>() {
            Ok(k) => symbol(k),
            Err(_) => symbol_of_text(&display(k)),
        };
        pending.push((key, field(v, &mut scratch)));
    }
    let values: Vec<(Symbol, Value<'_>)> = pending
        .iter()
        .map(|(k, f)| (*k, scratch.value(*f)))
        .collect();
    shmtel_core::business_event(symbol(name), value, unit, &values);
    Ok(())
}
