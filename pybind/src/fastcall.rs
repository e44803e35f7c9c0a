//! Raw `METH_FASTCALL | METH_KEYWORDS` entry points for the hot methods: `labels()`, `inc()`,
//! `dec()`, `set()` and `observe()`.
//!
//! Through pyo3's generated wrappers these calls pay for the generic argument machinery (a
//! varargs tuple and keyword handling for `labels(*args, **kwargs)`, optional-argument
//! extraction for `inc(amount=1.0)`) and the trampoline: ~40 ns of `labels()`'s ~110 ns, ~8 ns of
//! `inc()`'s ~32. These entry points take the arguments as the interpreter passes them (a C
//! array) and serve the common call directly: positional label values that hit the children
//! cache; no argument or one exact `float`/`int` for the numeric methods. Every other call
//! (keywords, other types, a first use, a wrong count, an error to raise) goes to the pyo3
//! method, registered under the same name with a leading underscore (`_labels`, `_inc`, ...),
//! which keeps every rule and error message in one place.
//!
//! The method descriptors are put into each class's type dict after pyo3 created the class,
//! then the type cache is invalidated with `PyType_Modified`.

use std::ffi::CStr;
use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::PyString;
use pyo3::PyClass;

use crate::metrics::{self, Counter, Gauge, Histogram, Summary};
use crate::registry::Family;

/// A family object whose `labels()` has the fast entry point.
pub(crate) trait LabelledFamily: PyClass<Frozen = True> + Sync {
    /// The family (its label names and its children cache).
    fn family(&self) -> &Arc<Family>;
    /// Whether the object is already bound to label values (its `labels()` is an error).
    fn is_bound(&self) -> bool;
}

/// A method taking one number (or none, when it has a default) with a fast entry point.
pub(crate) trait NumericMethod: 'static {
    /// The class the method belongs to.
    type Class: PyClass<Frozen = True> + Sync;
    /// Python name (`inc`).
    const NAME: &'static CStr;
    /// Name of the pyo3 method that takes every other call (`_inc`).
    const SLOW: &'static str;
    /// Value when called without an argument (None: the argument is required).
    const DEFAULT: Option<f64>;
    /// Docstring, with the `name(...)\n--\n\n` text signature `inspect` reads.
    const DOC: &'static CStr;
    /// Record `value`.
    fn call(this: &Self::Class, py: Python<'_>, value: f64) -> PyResult<()>;
}

/// A method definition (the interpreter keeps pointers to it for the process's lifetime).
struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definitions are immutable after initialisation and only read by the interpreter
// (the raw pointers inside point at 'static C strings and functions).
unsafe impl Sync for MethodDef {}

const LABELS_DOC: &CStr = c"labels(*labelvalues, **labelkwargs)\n--\n\nThe child series for these label values (cached: the same values return the same object).";

const fn labels_def<T: LabelledFamily>() -> MethodDef {
    MethodDef(ffi::PyMethodDef {
        ml_name: c"labels".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: labels_fastcall::<T>,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: LABELS_DOC.as_ptr(),
    })
}

const fn numeric_def<M: NumericMethod>() -> MethodDef {
    MethodDef(ffi::PyMethodDef {
        ml_name: M::NAME.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: numeric_fastcall::<M>,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: M::DOC.as_ptr(),
    })
}

static LABELS: [MethodDef; 4] = [
    labels_def::<Counter>(),
    labels_def::<Gauge>(),
    labels_def::<Histogram>(),
    labels_def::<Summary>(),
];

static NUMERIC: [MethodDef; 12] = [
    numeric_def::<metrics::CounterChildInc>(),
    numeric_def::<metrics::CounterInc>(),
    numeric_def::<metrics::GaugeChildInc>(),
    numeric_def::<metrics::GaugeChildDec>(),
    numeric_def::<metrics::GaugeChildSet>(),
    numeric_def::<metrics::GaugeInc>(),
    numeric_def::<metrics::GaugeDec>(),
    numeric_def::<metrics::GaugeSet>(),
    numeric_def::<metrics::HistogramChildObserve>(),
    numeric_def::<metrics::HistogramObserve>(),
    numeric_def::<metrics::SummaryChildObserve>(),
    numeric_def::<metrics::SummaryObserve>(),
];

/// Install the fast entry points (after the classes were added to the module).
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let labels = [
        py.get_type::<Counter>(),
        py.get_type::<Gauge>(),
        py.get_type::<Histogram>(),
        py.get_type::<Summary>(),
    ];
    for (tp, def) in labels.iter().zip(&LABELS) {
        install_on(py, tp, def)?;
    }
    let numeric = [
        py.get_type::<metrics::CounterChild>(),
        py.get_type::<Counter>(),
        py.get_type::<metrics::GaugeChild>(),
        py.get_type::<metrics::GaugeChild>(),
        py.get_type::<metrics::GaugeChild>(),
        py.get_type::<Gauge>(),
        py.get_type::<Gauge>(),
        py.get_type::<Gauge>(),
        py.get_type::<metrics::HistogramChild>(),
        py.get_type::<Histogram>(),
        py.get_type::<metrics::SummaryChild>(),
        py.get_type::<Summary>(),
    ];
    for (tp, def) in numeric.iter().zip(&NUMERIC) {
        install_on(py, tp, def)?;
    }
    Ok(())
}

fn install_on(
    py: Python<'_>,
    tp: &Bound<'_, pyo3::types::PyType>,
    def: &'static MethodDef,
) -> PyResult<()> {
    let tp_ptr = tp.as_type_ptr();
    // SAFETY: `tp_ptr` is a live, ready heap type (pyo3 created it; `tp` holds a reference).
    // The interpreter only reads the 'static definition; the C signature wants *mut.
    let descr = unsafe { ffi::PyDescr_NewMethod(tp_ptr, std::ptr::from_ref(&def.0).cast_mut()) };
    if descr.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `descr` is a new reference we own and release after the dict took its own;
    // `tp_dict` is the ready type's dict and `ml_name` a 'static C string.
    let rc = unsafe {
        let rc = ffi::PyDict_SetItemString((*tp_ptr).tp_dict, def.0.ml_name, descr);
        ffi::Py_DECREF(descr);
        rc
    };
    if rc != 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: the type's dict changed behind the method cache's back: tell the interpreter.
    unsafe { ffi::PyType_Modified(tp_ptr) };
    Ok(())
}

/// `labels()`: the cached child for positional values, else the pyo3 method `_labels`.
unsafe extern "C" fn labels_fastcall<T: LabelledFamily>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls methods with the thread attached (GIL held).
    let py = unsafe { Python::assume_attached() };
    // SAFETY: masks the offset flag out of the count; no memory is touched.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) };
    if kwnames.is_null() {
        // SAFETY: METH_FASTCALL: `slf` and the `nargs` entries of `args` are valid borrowed
        // references for the duration of the call.
        if let Some(hit) = unsafe { cached_child::<T>(py, slf, args, nargs) } {
            return hit;
        }
    }
    // SAFETY: the same arguments, forwarded unchanged.
    unsafe { slow_path(py, slf, args, nargs, kwnames, pyo3::intern!(py, "_labels")) }
}

/// The cached child for positional values, as a new reference; None to take the slow path.
///
/// # Safety
/// `slf` and the `nargs` entries of `args` must be valid borrowed references; GIL held.
#[inline(always)]
unsafe fn cached_child<T: LabelledFamily>(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> Option<*mut ffi::PyObject> {
    // SAFETY: `slf` is a valid borrowed reference (caller's contract).
    let obj = unsafe { Bound::from_borrowed_ptr(py, slf) };
    let obj = obj.cast::<T>().ok()?;
    let this = obj.get();
    let fam = this.family();
    if this.is_bound() || nargs == 0 || nargs as usize != fam.labelnames.len() {
        return None;
    }
    // SAFETY: PyTuple_New returns a new reference, or null with an exception set.
    let key = unsafe { ffi::PyTuple_New(nargs) };
    if key.is_null() {
        // SAFETY: drop the MemoryError; the slow path raises its own if it persists.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    for i in 0..nargs {
        // SAFETY: i < nargs, so args[i] is a valid borrowed reference; PyTuple_SET_ITEM steals
        // a reference, hence the incref.
        unsafe {
            let a = *args.offset(i);
            ffi::Py_INCREF(a);
            ffi::PyTuple_SET_ITEM(key, i, a);
        }
    }
    let children = fam.children.bind(py).as_ptr();
    // SAFETY: `children` is a dict the family keeps alive; the result is borrowed (null:
    // missing, or an error such as an unhashable value).
    let found = unsafe { ffi::PyDict_GetItemWithError(children, key) };
    // SAFETY: we own `key`; a found child is kept alive by the dict until we take our reference.
    unsafe {
        if !found.is_null() {
            ffi::Py_INCREF(found);
        }
        ffi::Py_DECREF(key);
    }
    if found.is_null() {
        // SAFETY: a pending error (unhashable value) is the slow path's to report properly.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    Some(found)
}

/// A numeric method: record one exact float/int (or the default) directly, else `M::SLOW`.
unsafe extern "C" fn numeric_fastcall<M: NumericMethod>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls methods with the thread attached (GIL held).
    let py = unsafe { Python::assume_attached() };
    // SAFETY: masks the offset flag out of the count; no memory is touched.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) };
    if kwnames.is_null() {
        let value = match nargs {
            0 => M::DEFAULT,
            // SAFETY: one positional argument: args[0] is a valid borrowed reference.
            1 => unsafe { exact_number(*args) },
            _ => None,
        };
        if let Some(value) = value {
            // SAFETY: `slf` is a valid borrowed reference to the object called on.
            let obj = unsafe { Bound::from_borrowed_ptr(py, slf) };
            if let Ok(this) = obj.cast::<M::Class>() {
                return match M::call(this.get(), py, value) {
                    // SAFETY: a new reference to None is the method's result.
                    Ok(()) => unsafe { ffi::Py_NewRef(ffi::Py_None()) },
                    Err(e) => {
                        e.restore(py);
                        std::ptr::null_mut()
                    }
                };
            }
        }
    }
    let slow = PyString::intern(py, M::SLOW);
    // SAFETY: the same arguments, forwarded unchanged.
    unsafe { slow_path(py, slf, args, nargs, kwnames, &slow) }
}

/// An exact `float` or `int` (not a subclass such as `bool`) as f64; None otherwise.
///
/// # Safety
/// `a` must be a valid borrowed reference; GIL held.
#[inline(always)]
unsafe fn exact_number(a: *mut ffi::PyObject) -> Option<f64> {
    // SAFETY: `a` is valid (caller's contract); the checks read only its type.
    unsafe {
        if ffi::PyFloat_CheckExact(a) != 0 {
            Some(ffi::PyFloat_AS_DOUBLE(a))
        } else if ffi::PyLong_CheckExact(a) != 0 {
            let v = ffi::PyLong_AsDouble(a);
            if v == -1.0 && !ffi::PyErr_Occurred().is_null() {
                // Too large for a float: the slow path raises pyo3's OverflowError.
                ffi::PyErr_Clear();
                None
            } else {
                Some(v)
            }
        } else {
            None
        }
    }
}

/// Call the pyo3 method `name` on `slf` with the same arguments.
///
/// # Safety
/// The METH_FASTCALL | METH_KEYWORDS calling convention's guarantees for `slf`, `args`,
/// `nargs` and `kwnames`; GIL held.
unsafe fn slow_path(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    name: &Bound<'_, PyString>,
) -> *mut ffi::PyObject {
    let _ = py;
    let nkw = if kwnames.is_null() {
        0
    } else {
        // SAFETY: `kwnames` is a tuple of str when not null.
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) }
    };
    let mut all: Vec<*mut ffi::PyObject> = Vec::with_capacity(1 + (nargs + nkw) as usize);
    all.push(slf);
    for i in 0..nargs + nkw {
        // SAFETY: positional values then one value per keyword name: all valid borrowed
        // references for the duration of the call.
        all.push(unsafe { *args.offset(i) });
    }
    // SAFETY: `all` holds self then the arguments, borrowed and alive during the call; `name`
    // is a str; the result is a new reference, or null with an exception set.
    unsafe {
        ffi::PyObject_VectorcallMethod(
            name.as_ptr(),
            all.as_ptr(),
            // Positional arguments include self.
            (1 + nargs) as usize,
            kwnames,
        )
    }
}
