//! Trace-context propagation for Python: `extract` and `inject` over header mappings, built on
//! `shmtel_core::propagation` (W3C `traceparent`/`tracestate`, B3 single and multi, Jaeger
//! `uber-trace-id`), plus the small helpers the rest of the module uses.
//!
//! Headers are read from a mapping (`dict`, `httpx.Headers`, Starlette `Headers`, a WSGI
//! environ with `HTTP_*` keys) or an iterable of `(name, value)` pairs (ASGI's raw
//! `scope["headers"]`), names and values `str` or `bytes` (latin-1). Names are matched
//! case-insensitively; a header given more than once is joined with `,` as HTTP does. Entries
//! that are not strings are skipped. Invalid header values are ignored, never raised.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use shmtel_core::propagation::{self as core, Formats, Sampling, HEADER_NAMES};
use shmtel_core::{ratio_sampled, SpanContext};

use crate::context::{self, Current, RemoteContext};
use crate::span::Span;

pub use shmtel_core::propagation::{
    decode_lower_hex, format_traceparent, hex_into, parse_ids, parse_traceparent, to_hex,
    traceparent_bytes,
};

/// Parse Jaeger's `uber-trace-id` into the remote parent's context (see
/// `shmtel_core::propagation::parse_uber_trace_id`).
pub fn parse_uber_trace_id(value: &str) -> Option<SpanContext> {
    core::parse_uber_trace_id(value).map(|e| e.span_context(|_| true))
}

/// The propagation headers found in a Python headers object, by index in `HEADER_NAMES`.
#[derive(Default)]
struct Headers([Option<String>; HEADER_NAMES.len()]);

impl Headers {
    fn get(&self, name: &str) -> Option<&str> {
        let i = HEADER_NAMES.iter().position(|n| *n == name)?;
        self.0[i].as_deref()
    }

    fn add(&mut self, name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) {
        let Some(i) = header_index(name) else {
            return;
        };
        let Some(value) = text(value) else {
            return;
        };
        match &mut self.0[i] {
            Some(v) => {
                v.push(',');
                v.push_str(&value);
            }
            slot => *slot = Some(value),
        }
    }
}

/// `str` as is, `bytes` as latin-1; None for anything else.
fn text(v: &Bound<'_, PyAny>) -> Option<String> {
    if let Ok(s) = v.cast::<PyString>() {
        return s.to_str().ok().map(str::to_owned);
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return Some(b.as_bytes().iter().map(|&c| char::from(c)).collect());
    }
    None
}

/// Which propagation header `name` is: case-insensitive; `_` counts as `-` and an `HTTP_`
/// prefix is dropped (WSGI environ keys such as `HTTP_X_B3_TRACEID`).
fn header_index(name: &Bound<'_, PyAny>) -> Option<usize> {
    let mut buf = [0u8; 24];
    let raw: &[u8] = if let Ok(s) = name.cast::<PyString>() {
        let s = s.to_str().ok()?;
        if s.len() > buf.len() {
            return None;
        }
        buf[..s.len()].copy_from_slice(s.as_bytes());
        &buf[..s.len()]
    } else if let Ok(b) = name.cast::<PyBytes>() {
        let b = b.as_bytes();
        if b.len() > buf.len() {
            return None;
        }
        buf[..b.len()].copy_from_slice(b);
        &buf[..b.len()]
    } else {
        return None;
    };
    let mut norm = [0u8; 24];
    for (o, c) in norm.iter_mut().zip(raw) {
        *o = if *c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        };
    }
    let mut key = &norm[..raw.len()];
    if let Some(rest) = key.strip_prefix(b"http-") {
        key = rest;
    }
    HEADER_NAMES.iter().position(|n| n.as_bytes() == key)
}

fn collect(headers: &Bound<'_, PyAny>) -> PyResult<Headers> {
    let mut out = Headers::default();
    if let Ok(d) = headers.cast::<PyDict>() {
        for (k, v) in d.iter() {
            out.add(&k, &v);
        }
        return Ok(out);
    }
    let items = if headers.hasattr("items")? {
        headers.call_method0("items")?
    } else {
        headers.clone()
    };
    let iter = items.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "headers must be a mapping or an iterable of (name, value) pairs, not {}",
            headers
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    for item in iter {
        let item = item?;
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract().map_err(|_| {
            PyTypeError::new_err("headers must be a mapping or an iterable of (name, value) pairs")
        })?;
        out.add(&k, &v);
    }
    Ok(out)
}

/// The caller's context from headers, as a remote parent; see the stub.
#[pyfunction]
#[pyo3(signature = (headers, *, sample_ratio = None))]
pub fn extract(
    headers: &Bound<'_, PyAny>,
    sample_ratio: Option<f64>,
) -> PyResult<Option<RemoteContext>> {
    if let Some(r) = sample_ratio {
        if !(0.0..=1.0).contains(&r) {
            return Err(PyValueError::new_err(format!(
                "sample_ratio must be within [0, 1], got {r}"
            )));
        }
    }
    let h = collect(headers)?;
    let Some(e) = core::extract(|n| h.get(n)) else {
        return Ok(None);
    };
    let ratio = sample_ratio.unwrap_or_else(crate::span::process_ratio);
    Ok(Some(RemoteContext {
        ctx: e.span_context(|t| ratio_sampled(t, ratio)),
    }))
}

/// The validated W3C `tracestate` that came with a valid `traceparent`, else None.
#[pyfunction]
pub fn extract_tracestate(headers: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let h = collect(headers)?;
    Ok(h.get(core::TRACEPARENT)
        .and_then(core::parse_traceparent)
        .and(h.get(core::TRACESTATE))
        .and_then(core::parse_tracestate)
        .map(|t| t.as_str().to_owned()))
}

/// A B3 sampling decision sent without ids (`b3: 0`, `X-B3-Sampled: 1`, ...): True/False,
/// or None when there is none (or there are ids: use `extract`).
#[pyfunction]
pub fn extract_sampling(headers: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
    let h = collect(headers)?;
    if core::extract(|n| h.get(n)).is_some() {
        return Ok(None);
    }
    Ok(core::extract_sampling_only(|n| h.get(n)).and_then(Sampling::decision))
}

fn formats_of(formats: &Bound<'_, PyAny>) -> PyResult<Formats> {
    let mut out = Formats::NONE;
    let mut add = |name: &str| -> PyResult<()> {
        for part in name.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            out |= Formats::from_name(part).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "unknown propagation format {part:?}: expected w3c (tracecontext), b3, \
                     b3multi or jaeger"
                ))
            })?;
        }
        Ok(())
    };
    if let Ok(s) = formats.cast::<PyString>() {
        add(s.to_str()?)?;
    } else {
        for f in formats.try_iter()? {
            let f = f?;
            let s = f
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("formats must be str names"))?;
            add(s.to_str()?)?;
        }
    }
    Ok(out)
}

/// Write the headers of `formats` for `span` (default: the current span or remote context)
/// into `headers`; True if something was written.
#[pyfunction]
#[pyo3(signature = (headers, span = None, formats = None, tracestate = None))]
pub fn inject(
    py: Python<'_>,
    headers: &Bound<'_, PyAny>,
    span: Option<&Bound<'_, PyAny>>,
    formats: Option<&Bound<'_, PyAny>>,
    tracestate: Option<&str>,
) -> PyResult<bool> {
    let formats = match formats {
        Some(f) => formats_of(f)?,
        None => Formats::W3C,
    };
    let ctx = match span.filter(|s| !s.is_none()) {
        Some(s) => {
            if let Ok(s) = s.cast::<Span>() {
                s.get().context()
            } else if let Ok(r) = s.cast::<RemoteContext>() {
                r.get().ctx
            } else {
                return Err(PyTypeError::new_err(format!(
                    "span must be a Span, a RemoteContext or None, not {}",
                    s.get_type().name()?
                )));
            }
        }
        None => match context::current(py) {
            Current::Local(s) => s.get().context(),
            Current::Remote(c) => c,
            Current::None => return Ok(false),
        },
    };
    let tracestate = tracestate.and_then(core::parse_tracestate);
    let mut out: Vec<(&'static str, String)> = Vec::with_capacity(4);
    core::inject(&ctx, tracestate.as_ref(), formats, |k, v| out.push((k, v)));
    if out.is_empty() {
        return Ok(false);
    }
    // A plain dict is case-sensitive: drop other spellings of the names we set.
    if let Ok(d) = headers.cast::<PyDict>() {
        let stale: Vec<Bound<'_, PyAny>> = d
            .keys()
            .iter()
            .filter(|k| {
                k.cast::<PyString>().ok().is_some_and(|s| {
                    s.to_str().is_ok_and(|s| {
                        out.iter()
                            .any(|(n, _)| s != *n && s.eq_ignore_ascii_case(n))
                    })
                })
            })
            .collect();
        for k in stale {
            d.del_item(k)?;
        }
    }
    for (k, v) in out {
        headers.set_item(k, v)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uber_trace_id_to_span_context() {
        let c = parse_uber_trace_id("abc:def:0:3").expect("valid");
        assert_eq!(to_hex(&c.trace_id), "00000000000000000000000000000abc");
        assert!(c.sampled);
        assert!(!parse_uber_trace_id("abc:def:0:0").expect("valid").sampled);
        assert_eq!(parse_uber_trace_id("0:1:0:1"), None);
    }

    #[test]
    fn ids() {
        assert!(parse_ids("4BF92F3577B34DA6A3CE929D0E0E4736", "00F067AA0BA902B7").is_ok());
        assert!(parse_ids("4bf9", "00f067aa0ba902b7").is_err());
        assert!(parse_ids("00000000000000000000000000000000", "00f067aa0ba902b7").is_err());
        assert!(parse_ids("4bf92f3577b34da6a3ce929d0e0e4736", "0000000000000000").is_err());
    }
}
