//! Typed values of span attributes, log fields and business tags.

/// A value attached to a key. Strings are borrowed: they are copied into the ring.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// No value (JSON null).
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// A float.
    F64(f64),
    /// A UTF-8 string.
    Str(&'a str),
    /// A JSON document (nested values, arrays), stored as text.
    Json(&'a str),
}

impl Value<'_> {
    /// (value type, inline value, trailing bytes).
    #[inline(always)]
    pub(crate) fn encode(&self) -> (u8, u64, &[u8]) {
        use crate::layout::value_type as vt;
        match *self {
            Value::Null => (vt::NULL, 0, &[]),
            Value::Bool(b) => (vt::BOOL, b as u64, &[]),
            Value::I64(i) => (vt::I64, i as u64, &[]),
            Value::F64(f) => (vt::F64, f.to_bits(), &[]),
            Value::Str(s) => (vt::STR, s.len() as u64, s.as_bytes()),
            Value::Json(s) => (vt::JSON, s.len() as u64, s.as_bytes()),
        }
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Str(v)
    }
}
