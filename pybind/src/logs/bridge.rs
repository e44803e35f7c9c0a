//! The stdlib `logging` bridge: the native `handle` and `emit` of `shmtel.LoggingHandler`.
//!
//! A `LogRecord` is read straight from its `__dict__`, in one walk. `LogRecord.__init__` sets
//! the standard attributes in a fixed order, so each key is first compared with the key
//! expected at its position (one pointer comparison; the names are interned, so the same
//! objects on every record). A key found elsewhere is looked up among the standard names by
//! address, then by text; a key that is not standard came from `extra=` (or from a filter or
//! adapter that set an attribute) and becomes a field. Only `name`, `msg`, `args`, `levelno`,
//! `exc_info`, `stack_info` and, for the caller, `pathname`, `lineno` and `funcName` are read.
//!
//! The message is `msg % args` (what `LogRecord.getMessage` computes; `getMessage` itself is
//! called for a record of another class, which may override it) and just `msg` without args.
//! `handle` skips `Handler.handle`'s lock: recording is thread-safe (each thread writes its own
//! ring). An error while recording goes to the handler's `handleError`, as in every handler.

use std::cell::RefCell;
use std::collections::HashMap;

use pyo3::exceptions::{PyRecursionError, PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple, PyType};
use shmtel_core::{Level, Symbol, Value};

use super::{add_fast, guarded, guarded_returning, include_caller, split, write_event};
use crate::symbols::{symbol, symbol_of_text};
use crate::values::{display, field, str_field, Field, Scratch};

/// The standard attributes the bridge reads (their index in a slot array); the others are
/// skipped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Name,
    Msg,
    Args,
    LevelNo,
    PathName,
    LineNo,
    FuncName,
    ExcInfo,
    StackInfo,
    Skip,
}

const READ: [(Slot, &str); 9] = [
    (Slot::Name, "name"),
    (Slot::Msg, "msg"),
    (Slot::Args, "args"),
    (Slot::LevelNo, "levelno"),
    (Slot::PathName, "pathname"),
    (Slot::LineNo, "lineno"),
    (Slot::FuncName, "funcName"),
    (Slot::ExcInfo, "exc_info"),
    (Slot::StackInfo, "stack_info"),
];

impl Slot {
    fn of(name: &str) -> Slot {
        READ.iter()
            .find(|(_, n)| *n == name)
            .map_or(Slot::Skip, |(s, _)| *s)
    }

    fn name(self) -> &'static str {
        READ.iter().find(|(s, _)| *s == self).map_or("", |(_, n)| n)
    }
}

/// What `_init_logging_bridge` was given, once per process.
struct Bridge {
    /// `logging.LogRecord` (a record of exactly this class formats its message here).
    record_type: Py<PyType>,
    /// The standard attribute names (interned) in the order `LogRecord.__init__` sets them,
    /// then the other standard names (`message`, `asctime`, ...).
    order: Vec<(Py<PyString>, Slot)>,
    /// The same names by text, for a key that is an equal string but another object.
    by_text: HashMap<String, Slot>,
    /// `report_error(handler, record, exc)`: calls `handler.handleError(record)` with `exc`
    /// being handled.
    report_error: Py<PyAny>,
    /// The field name of the logger's name (`logger`), interned.
    logger_key: Py<PyString>,
}

static BRIDGE: PyOnceLock<Bridge> = PyOnceLock::new();

impl Bridge {
    /// The slot of a key that is not where a standard record has it; None: not standard.
    fn lookup(&self, key: &Bound<'_, PyAny>) -> Option<Slot> {
        let addr = key.as_ptr();
        if let Some((_, slot)) = self.order.iter().find(|(k, _)| k.as_ptr() == addr) {
            return Some(*slot);
        }
        let text = key.cast::<PyString>().ok()?.to_str().ok()?;
        self.by_text.get(text).copied()
    }
}

/// Set up the bridge: `record_type` is `logging.LogRecord`, `standard` the attribute names of
/// a record as it constructs them (in order) followed by the other standard names, and
/// `report_error(handler, record, exc)` reports a failed record. Returns False if the bridge
/// was already set up.
#[pyfunction]
fn _init_logging_bridge(
    py: Python<'_>,
    record_type: Bound<'_, PyType>,
    standard: Vec<String>,
    report_error: Bound<'_, PyAny>,
) -> bool {
    if BRIDGE.get(py).is_some() {
        return false;
    }
    let order: Vec<(Py<PyString>, Slot)> = standard
        .iter()
        .map(|n| (PyString::intern(py, n).unbind(), Slot::of(n)))
        .collect();
    let by_text = standard.iter().map(|n| (n.clone(), Slot::of(n))).collect();
    BRIDGE
        .set(
            py,
            Bridge {
                record_type: record_type.unbind(),
                order,
                by_text,
                report_error: report_error.unbind(),
                logger_key: PyString::intern(py, "logger").unbind(),
            },
        )
        .is_ok()
}

fn bridge(py: Python<'_>) -> PyResult<&'static Bridge> {
    BRIDGE.get(py).ok_or_else(|| {
        PyRuntimeError::new_err("the logging bridge is not set up (import shmtel.bridges)")
    })
}

/// A `logging` level number as a shmtel level: a level between two standard ones takes the
/// lower, below DEBUG is TRACE, CRITICAL and above FATAL.
pub(crate) fn level_of(levelno: i64) -> Level {
    match levelno {
        n if n >= 50 => Level::Fatal,
        n if n >= 40 => Level::Error,
        n if n >= 30 => Level::Warn,
        n if n >= 20 => Level::Info,
        n if n >= 10 => Level::Debug,
        _ => Level::Trace,
    }
}

/// The record's message: `msg` (its `str()`), or `msg % args` when there are args.
fn message_of<'py>(
    py: Python<'py>,
    bridge: &Bridge,
    record: &Bound<'py, PyAny>,
    msg: Bound<'py, PyAny>,
    args: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyString>> {
    let has_args = !args.is_none() && args.is_truthy()?;
    if !has_args {
        return match msg.cast_into::<PyString>() {
            Ok(s) => Ok(s),
            Err(e) => e.into_inner().str(),
        };
    }
    if record.get_type().is(bridge.record_type.bind(py)) {
        if let Ok(format) = msg.cast::<PyString>() {
            // SAFETY: both are live objects; PyUnicode_Format returns a new reference (a str)
            // or NULL with an exception set.
            let out = unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyUnicode_Format(format.as_ptr(), args.as_ptr()),
                )?
            };
            // SAFETY: PyUnicode_Format returns a str.
            return Ok(unsafe { out.cast_into_unchecked::<PyString>() });
        }
    }
    let out = record.call_method0(intern!(py, "getMessage"))?;
    match out.cast_into::<PyString>() {
        Ok(s) => Ok(s),
        Err(e) => e.into_inner().str(),
    }
}

/// `module.qualname` of an exception's type (just `qualname` for a builtin), as span
/// exception events name it.
fn exception_type(ty: &Bound<'_, PyType>) -> String {
    let name = ty.qualname().map(|n| n.to_string()).unwrap_or_default();
    match ty.module().map(|m| m.to_string()) {
        Ok(m) if !m.is_empty() && m != "builtins" => format!("{m}.{name}"),
        _ => name,
    }
}

/// `exception.type`, `exception.message` and `exception.stacktrace` of an `exc_info` tuple
/// (or exception), parked in `scratch`; nothing for `None` or `(None, None, None)`.
fn exception_fields(
    py: Python<'_>,
    exc_info: &Bound<'_, PyAny>,
    scratch: &mut Scratch,
    out: &mut Vec<(Symbol, Field<'_>)>,
) -> PyResult<()> {
    let (ty, value, tb) = if let Ok(t) = exc_info.cast::<PyTuple>() {
        if t.len() != 3 {
            return Ok(());
        }
        (t.get_item(0)?, t.get_item(1)?, t.get_item(2)?)
    } else if exc_info.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        let tb = exc_info.getattr(intern!(py, "__traceback__"))?;
        (exc_info.get_type().into_any(), exc_info.clone(), tb)
    } else {
        return Ok(());
    };
    let Ok(ty) = ty.cast::<PyType>() else {
        return Ok(());
    };
    let lines = py
        .import(intern!(py, "traceback"))?
        .call_method1(intern!(py, "format_exception"), (ty, &value, tb))?;
    let stack = PyString::new(py, "").call_method1(intern!(py, "join"), (lines,))?;
    out.push((
        symbol_of_text("exception.type"),
        Field::Str(scratch.push(exception_type(ty))),
    ));
    out.push((
        symbol_of_text("exception.message"),
        Field::Str(scratch.push(display(&value))),
    ));
    out.push((
        symbol_of_text("exception.stacktrace"),
        Field::Str(scratch.push(display(&stack))),
    ));
    Ok(())
}

/// Interned `path:line function` callers, by (path object, line, function object); each entry
/// holds its two objects so their addresses cannot be reused while it exists.
type CallerKey = (usize, i64, usize);
type CallerEntry = (Py<PyAny>, Py<PyAny>, Symbol);

thread_local! {
    static CALLERS: RefCell<HashMap<CallerKey, CallerEntry>> = RefCell::new(HashMap::new());
}

/// Entries kept in the caller cache before callers are interned by text on every call.
const MAX_CALLERS: usize = 8192;

/// The caller symbol (`path:line function`, as `set_include_caller` records it) of a record.
fn caller_of(path: &Bound<'_, PyAny>, line: &Bound<'_, PyAny>, func: &Bound<'_, PyAny>) -> Symbol {
    let lineno = line.extract::<i64>().unwrap_or(0);
    let key = (path.as_ptr() as usize, lineno, func.as_ptr() as usize);
    let hit = CALLERS
        .try_with(|c| c.borrow().get(&key).map(|e| e.2))
        .ok()
        .flatten();
    if let Some(sym) = hit {
        return sym;
    }
    let text = format!("{}:{lineno} {}", display(path), display(func));
    let sym = symbol_of_text(&text);
    let _ = CALLERS.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < MAX_CALLERS {
            c.insert(key, (path.clone().unbind(), func.clone().unbind(), sym));
        }
    });
    sym
}

/// Fields converted on the stack; more spill to the heap.
const STACK_FIELDS: usize = 12;

/// Record one `LogRecord` (the body of `emit`).
fn emit_record(
    py: Python<'_>,
    bridge: &Bridge,
    handler: &Bound<'_, PyAny>,
    record: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let dict = record.getattr(intern!(py, "__dict__"))?;
    let dict = dict.cast::<PyDict>()?;
    let mut slots: [Option<Bound<'_, PyAny>>; READ.len()] = Default::default();
    let mut extras: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = Vec::new();
    let mut pos: ffi::Py_ssize_t = 0;
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    let mut i = 0;
    // SAFETY: `dict` is a live dict; PyDict_Next yields borrowed references, which are made
    // owned (`from_borrowed_ptr`) before any Python code can run and change the dict.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key, &mut value) } != 0 {
        let expected = bridge.order.get(i).filter(|(k, _)| k.as_ptr() == key);
        i += 1;
        // SAFETY: `key` and `value` are live borrowed references from the walk (see above).
        let (k, v) = unsafe {
            (
                Bound::from_borrowed_ptr(py, key),
                Bound::from_borrowed_ptr(py, value),
            )
        };
        let slot = match expected {
            Some((_, slot)) => Some(*slot),
            None => bridge.lookup(&k),
        };
        match slot {
            Some(Slot::Skip) => {}
            Some(slot) => slots[slot as usize] = Some(v),
            None => extras.push((k, v)),
        }
    }
    // A standard attribute missing from the dict (a record class that computes it) is read
    // as an attribute.
    let get = |slot: Slot| -> PyResult<Bound<'_, PyAny>> {
        match &slots[slot as usize] {
            Some(v) => Ok(v.clone()),
            None => record.getattr(slot.name()),
        }
    };
    let level = level_of(get(Slot::LevelNo)?.extract::<i64>()?);
    if !shmtel_core::log_enabled(level) {
        return Ok(());
    }
    let message = message_of(py, bridge, record, get(Slot::Msg)?, get(Slot::Args)?)?;
    let name = get(Slot::Name)?;
    let exc_info = get(Slot::ExcInfo)?;
    let stack_info = get(Slot::StackInfo)?;
    let caller = if include_caller()
        || handler
            .getattr(intern!(py, "include_caller"))
            .and_then(|v| v.is_truthy())
            .unwrap_or(false)
    {
        caller_of(
            &get(Slot::PathName)?,
            &get(Slot::LineNo)?,
            &get(Slot::FuncName)?,
        )
    } else {
        Symbol::EMPTY
    };

    let mut scratch = Scratch::default();
    let msg = str_field(&message, &mut scratch);
    let mut pending: Vec<(Symbol, Field<'_>)> = Vec::with_capacity(extras.len() + 1);
    pending.push((
        symbol(bridge.logger_key.bind(py)),
        field(&name, &mut scratch),
    ));
    for (k, v) in &extras {
        let key = match k.cast::<PyString>() {
            Ok(s) => symbol(s),
            Err(_) => symbol_of_text(&display(k)),
        };
        pending.push((key, field(v, &mut scratch)));
    }
    if !exc_info.is_none() {
        exception_fields(py, &exc_info, &mut scratch, &mut pending)?;
    }
    if !stack_info.is_none() {
        pending.push((
            symbol_of_text("code.stacktrace"),
            Field::Str(scratch.push(display(&stack_info))),
        ));
    }
    let n = pending.len();
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
    let text = match scratch.value(msg) {
        Value::Str(s) => s,
        _ => "",
    };
    write_event(py, level, text, values, caller);
    Ok(())
}

/// The handler a record of `logger` at `levelno` would go to, if it is the only one called
/// and a `LoggingHandler` on the native path (marked `_shmtel_native`) without filters; None
/// when the standard path must run: a filter on the logger, another handler, no handler at
/// all (`logging.lastResort`), or the caller wanted (which needs `findCaller`). `Some(None)`:
/// no handler is called at this level.
fn sole_native_handler<'py>(
    py: Python<'py>,
    logger: &Bound<'py, PyAny>,
    levelno: i64,
) -> PyResult<Option<Option<Bound<'py, PyAny>>>> {
    if logger.getattr(intern!(py, "filters"))?.is_truthy()?
        || logger.getattr(intern!(py, "disabled"))?.is_truthy()?
    {
        return Ok(None);
    }
    let mut found: Option<Bound<'py, PyAny>> = None;
    let mut seen = 0usize;
    let mut current = logger.clone();
    loop {
        let handlers = current.getattr(intern!(py, "handlers"))?;
        for h in handlers.try_iter()? {
            let h = h?;
            seen += 1;
            if levelno < h.getattr(intern!(py, "level"))?.extract::<i64>()? {
                continue;
            }
            let native = h
                .getattr(intern!(py, "__dict__"))
                .ok()
                .and_then(|d| d.cast_into::<PyDict>().ok())
                .and_then(|d| d.get_item(intern!(py, "_shmtel_native")).ok().flatten())
                .is_some_and(|v| v.is_truthy().unwrap_or(false));
            if !native
                || found.is_some()
                || h.getattr(intern!(py, "filters"))?.is_truthy()?
                || h.getattr(intern!(py, "include_caller"))?.is_truthy()?
            {
                return Ok(None);
            }
            found = Some(h);
        }
        if !current.getattr(intern!(py, "propagate"))?.is_truthy()? {
            break;
        }
        let parent = current.getattr(intern!(py, "parent"))?;
        if parent.is_none() {
            break;
        }
        current = parent;
    }
    Ok(if seen == 0 { None } else { Some(found) })
}

/// `_logger_log(logger, level, msg, args, extra, /) -> bool`: `Logger._log` without a
/// `LogRecord`, when the record would only reach one `LoggingHandler` (see
/// [`sole_native_handler`]); False (nothing done) when the standard path must run instead.
fn logger_log_body(py: Python<'_>, a: &[Bound<'_, PyAny>]) -> PyResult<bool> {
    let bridge = bridge(py)?;
    let [logger, levelno, msg, args, extra] = a else {
        return Err(PyTypeError::new_err(
            "_logger_log() takes five positional arguments (logger, level, msg, args, extra)",
        ));
    };
    let levelno = levelno.extract::<i64>()?;
    if include_caller() {
        return Ok(false);
    }
    let Some(handler) = sole_native_handler(py, logger, levelno)? else {
        return Ok(false);
    };
    let level = level_of(levelno);
    if handler.is_none() || !shmtel_core::log_enabled(level) {
        return Ok(true);
    }
    let Ok(format) = msg.cast::<PyString>() else {
        return Ok(false);
    };
    // LogRecord's rule: a single non-empty mapping argument is the mapping of `%(name)s`.
    let mut args = args.clone();
    if let Ok(t) = args.cast::<PyTuple>() {
        if t.len() == 1 {
            let only = t.get_item(0)?;
            let p = only.as_ptr();
            // SAFETY: type checks of a live object.
            let plain = unsafe {
                ffi::PyUnicode_Check(p) != 0
                    || ffi::PyLong_Check(p) != 0
                    || ffi::PyFloat_Check(p) != 0
                    || p == ffi::Py_None()
            };
            if only.cast::<PyDict>().is_ok_and(|d| !d.is_empty()) {
                args = only;
            } else if !plain && only.hasattr(intern!(py, "keys"))? {
                return Ok(false); // another Mapping: the standard path decides
            }
        }
    } else if !args.is_none() {
        return Ok(false);
    }
    let message = if args.is_truthy()? {
        // SAFETY: both are live objects; PyUnicode_Format returns a new reference (a str) or
        // NULL with an exception set.
        let out = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_Format(format.as_ptr(), args.as_ptr()))?
        };
        // SAFETY: PyUnicode_Format returns a str.
        unsafe { out.cast_into_unchecked::<PyString>() }
    } else {
        format.clone()
    };
    let mut extras: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = Vec::new();
    if !extra.is_none() {
        let Ok(extra) = extra.cast::<PyDict>() else {
            return Ok(false);
        };
        for (k, v) in extra.iter() {
            // makeRecord refuses to overwrite a record attribute: let it raise.
            if !k.is_instance_of::<PyString>() || bridge.lookup(&k).is_some() {
                return Ok(false);
            }
            extras.push((k, v));
        }
    }
    let name = logger.getattr(intern!(py, "name"))?;
    let mut scratch = Scratch::default();
    let msg_field = str_field(&message, &mut scratch);
    let mut pending: Vec<(Symbol, Field<'_>)> = Vec::with_capacity(extras.len() + 1);
    pending.push((
        symbol(bridge.logger_key.bind(py)),
        field(&name, &mut scratch),
    ));
    for (k, v) in &extras {
        // SAFETY: checked to be a str above.
        let key = unsafe { k.cast_unchecked::<PyString>() };
        pending.push((symbol(key), field(v, &mut scratch)));
    }
    let n = pending.len();
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
    let text = match scratch.value(msg_field) {
        Value::Str(s) => s,
        _ => "",
    };
    write_event(py, level, text, values, Symbol::EMPTY);
    Ok(true)
}

/// `_logger_log(logger, level, msg, args, extra, /)`: see [`logger_log_body`].
unsafe extern "C" fn logger_log(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded_returning(|py| {
        // SAFETY: CPython's vectorcall arguments, passed through unchanged.
        let (pos, kw) = unsafe { split(args, nargsf, kwnames) };
        if !kw.is_empty() {
            return Err(PyTypeError::new_err(
                "_logger_log() takes no keyword arguments",
            ));
        }
        // SAFETY: live positional arguments of this call; borrowed, made owned here.
        let a: Vec<Bound<'_, PyAny>> = pos
            .iter()
            .map(|p| unsafe { Bound::from_borrowed_ptr(py, *p) })
            .collect();
        // Any error (a message that does not format, an odd attribute) happens before the
        // event is written: the standard path then runs and reports it as logging does
        // (`handleError`), instead of raising into the application.
        let done = logger_log_body(py, &a).unwrap_or(false);
        Ok(PyBool::new(py, done).to_owned().into_any().into_ptr())
    })
}

/// The two positional arguments `(handler, record)` of a bridge function.
///
/// # Safety
/// The pointers are those CPython passed to a vectorcall function.
unsafe fn handler_and_record<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    what: &str,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    // SAFETY: the caller passes CPython's vectorcall arguments through unchanged.
    let (pos, kw) = unsafe { split(args, nargsf, kwnames) };
    if pos.len() != 2 || !kw.is_empty() {
        return Err(PyTypeError::new_err(format!(
            "{what}() takes exactly two positional arguments (handler, record)"
        )));
    }
    // SAFETY: live positional arguments of this call; borrowed, made owned here.
    unsafe {
        Ok((
            Bound::from_borrowed_ptr(py, pos[0]),
            Bound::from_borrowed_ptr(py, pos[1]),
        ))
    }
}

/// `_logging_handle(handler, record, /)`: `Handler.handle` without the lock: the handler's
/// filters (if it has any), then the record; an error goes to `handleError`.
unsafe extern "C" fn logging_handle(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded_returning(|py| {
        // SAFETY: CPython's vectorcall arguments, passed through unchanged.
        let (handler, mut record) =
            unsafe { handler_and_record(py, args, nargsf, kwnames, "_logging_handle")? };
        let bridge = bridge(py)?;
        let mut rv = PyBool::new(py, true).to_owned().into_any();
        if handler.getattr(intern!(py, "filters"))?.is_truthy()? {
            rv = handler.call_method1(intern!(py, "filter"), (&record,))?;
            if !rv.is_truthy()? {
                return Ok(rv.into_ptr());
            }
            // Python 3.12: a filter may return a replacement record.
            if rv.is_instance(bridge.record_type.bind(py))? {
                record = rv.clone();
            }
        }
        match emit_record(py, bridge, &handler, &record) {
            Ok(()) => {}
            Err(e) if e.is_instance_of::<PyRecursionError>(py) => return Err(e),
            Err(e) => {
                bridge
                    .report_error
                    .bind(py)
                    .call1((&handler, &record, e.value(py)))?;
            }
        }
        Ok(rv.into_ptr())
    })
}

/// `_logging_emit(handler, record, /)`: record a `LogRecord` (errors are raised; the Python
/// `emit` hands them to `handleError`).
unsafe extern "C" fn logging_emit(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded(|py| {
        // SAFETY: CPython's vectorcall arguments, passed through unchanged.
        let (handler, record) =
            unsafe { handler_and_record(py, args, nargsf, kwnames, "_logging_emit")? };
        emit_record(py, bridge(py)?, &handler, &record)
    })
}

/// Add the bridge's functions to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_init_logging_bridge, m)?)?;
    add_fast(
        m,
        c"_logging_handle",
        c"_logging_handle(handler, record, /)\n--\n\nLoggingHandler.handle, natively.",
        logging_handle,
    )?;
    add_fast(
        m,
        c"_logging_emit",
        c"_logging_emit(handler, record, /)\n--\n\nLoggingHandler.emit, natively.",
        logging_emit,
    )?;
    add_fast(
        m,
        c"_logger_log",
        c"_logger_log(logger, level, msg, args, extra, /)\n--\n\nshmtel.Logger._log's fast path.",
        logger_log,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_between_the_standard_ones_take_the_lower() {
        let cases = [
            (0, Level::Trace),
            (5, Level::Trace),
            (9, Level::Trace),
            (10, Level::Debug),
            (15, Level::Debug),
            (20, Level::Info),
            (25, Level::Info),
            (30, Level::Warn),
            (40, Level::Error),
            (45, Level::Error),
            (50, Level::Fatal),
            (100, Level::Fatal),
            (-1, Level::Trace),
        ];
        for (n, level) in cases {
            assert_eq!(level_of(n), level, "levelno {n}");
        }
    }

    #[test]
    fn slots_by_name() {
        assert_eq!(Slot::of("msg"), Slot::Msg);
        assert_eq!(Slot::of("threadName"), Slot::Skip);
        assert_eq!(Slot::LevelNo.name(), "levelno");
    }
}
