//! Python objects to typed [`Value`]s (log fields, span attributes, business tags).
//!
//! str, int (fitting i64), float, bool and None become typed values without copying; dict,
//! list and tuple become JSON text written here; anything else (and ints beyond i64) become
//! their `str()`. Conversions that need a new string park it in a [`Scratch`] first, so the
//! values can borrow from it once every field is converted.

use std::fmt::Write as _;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use shmtel_core::Value;

/// Nesting deeper than this is written as the nested object's `str()`.
const MAX_JSON_DEPTH: usize = 32;

/// A converted value, or the index of an owned string in a [`Scratch`].
#[derive(Clone, Copy)]
pub enum Field<'a> {
    /// Borrows from the Python object or is inline.
    Ready(Value<'a>),
    /// `Value::Str` of the scratch string at this index.
    Str(usize),
    /// `Value::Json` of the scratch string at this index.
    Json(usize),
}

/// Owned strings produced while converting (empty, and not allocated, in the common case).
#[derive(Default)]
pub struct Scratch {
    owned: Vec<String>,
}

impl Scratch {
    /// Park an owned string; returns its index.
    pub fn push(&mut self, s: String) -> usize {
        self.owned.push(s);
        self.owned.len() - 1
    }

    /// The final value of a field.
    #[inline]
    pub fn value<'a>(&'a self, f: Field<'a>) -> Value<'a> {
        match f {
            Field::Ready(v) => v,
            Field::Str(i) => Value::Str(&self.owned[i]),
            Field::Json(i) => Value::Json(&self.owned[i]),
        }
    }
}

/// Borrow a str object's UTF-8 (cached inside the object by CPython); strings that cannot be
/// encoded (lone surrogates) are copied lossily into the scratch space.
#[inline]
pub fn str_field<'a>(s: &'a Bound<'_, PyString>, scratch: &mut Scratch) -> Field<'a> {
    match s.to_str() {
        Ok(t) => Field::Ready(Value::Str(t)),
        Err(_) => Field::Str(scratch.push(s.to_string_lossy().into_owned())),
    }
}

/// Convert one Python value.
#[inline]
pub fn field<'a>(v: &'a Bound<'_, PyAny>, scratch: &mut Scratch) -> Field<'a> {
    let p = v.as_ptr();
    // SAFETY: (all type checks and accessors below) `p` is a live object we hold a reference
    // to for `'a`, and the thread is attached to the interpreter.
    unsafe {
        if ffi::PyUnicode_Check(p) != 0 {
            return str_field(v.cast_unchecked::<PyString>(), scratch);
        }
        if p == ffi::Py_True() {
            return Field::Ready(Value::Bool(true));
        }
        if p == ffi::Py_False() {
            return Field::Ready(Value::Bool(false));
        }
        if p == ffi::Py_None() {
            return Field::Ready(Value::Null);
        }
        if ffi::PyLong_Check(p) != 0 {
            let mut overflow = 0;
            let i = ffi::PyLong_AsLongLongAndOverflow(p, &mut overflow);
            if overflow == 0 && (i != -1 || ffi::PyErr_Occurred().is_null()) {
                return Field::Ready(Value::I64(i));
            }
            ffi::PyErr_Clear();
            return Field::Str(scratch.push(display(v)));
        }
        if ffi::PyFloat_Check(p) != 0 {
            return Field::Ready(Value::F64(ffi::PyFloat_AS_DOUBLE(p)));
        }
        if ffi::PyDict_Check(p) != 0 || ffi::PyList_Check(p) != 0 || ffi::PyTuple_Check(p) != 0 {
            let mut out = String::new();
            write_json(v, &mut out, 0);
            return Field::Json(scratch.push(out));
        }
    }
    Field::Str(scratch.push(display(v)))
}

/// `str(v)`, or a placeholder if `__str__` raises (a log call must not fail on its fields).
pub fn display(v: &Bound<'_, PyAny>) -> String {
    match v.str() {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => format!(
            "<unprintable {}>",
            v.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ),
    }
}

/// Write `v` as JSON. Non-finite floats become strings ("nan", "inf", "-inf"), dict keys
/// their `str()`, unknown leaves their `str()` as a JSON string.
pub fn write_json(v: &Bound<'_, PyAny>, out: &mut String, depth: usize) {
    let p = v.as_ptr();
    // SAFETY: `p` is a live object (borrowed from `v`); exact-type checks have no
    // preconditions beyond that.
    let (is_str, is_bool, is_none, is_int, is_float) = unsafe {
        (
            ffi::PyUnicode_Check(p) != 0,
            ffi::PyBool_Check(p) != 0,
            p == ffi::Py_None(),
            ffi::PyLong_Check(p) != 0,
            ffi::PyFloat_Check(p) != 0,
        )
    };
    if is_str {
        // SAFETY: checked to be a str just above.
        let s = unsafe { v.cast_unchecked::<PyString>() };
        write_json_str(&s.to_string_lossy(), out);
    } else if is_bool {
        out.push_str(if v.is_truthy().unwrap_or(false) {
            "true"
        } else {
            "false"
        });
    } else if is_none {
        out.push_str("null");
    } else if is_int {
        match v.extract::<i64>() {
            Ok(i) => out.push_str(itoa::Buffer::new().format(i)),
            Err(_) => out.push_str(&display(v)),
        }
    } else if is_float {
        let f: f64 = v.extract().unwrap_or(f64::NAN);
        if f.is_finite() {
            out.push_str(ryu::Buffer::new().format_finite(f));
        } else {
            let s = if f.is_nan() {
                "nan"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            write_json_str(s, out);
        }
    } else if depth >= MAX_JSON_DEPTH {
        write_json_str(&display(v), out);
    } else if let Ok(d) = v.cast::<PyDict>() {
        out.push('{');
        for (i, (k, val)) in d.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match k.cast::<PyString>() {
                Ok(ks) => write_json_str(&ks.to_string_lossy(), out),
                Err(_) => write_json_str(&display(&k), out),
            }
            out.push(':');
            write_json(&val, out, depth + 1);
        }
        out.push('}');
    } else if let Ok(l) = v.cast::<PyList>() {
        out.push('[');
        for (i, item) in l.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json(&item, out, depth + 1);
        }
        out.push(']');
    } else if let Ok(t) = v.cast::<PyTuple>() {
        out.push('[');
        for (i, item) in t.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json(&item, out, depth + 1);
        }
        out.push(']');
    } else {
        write_json_str(&display(v), out);
    }
}

/// A JSON string literal.
pub fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings() {
        let mut s = String::new();
        write_json_str("a\"b\\c\n\u{1}é", &mut s);
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
