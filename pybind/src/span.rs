//! `Span`: a core span owned by a Python object, made current through a `contextvars` token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use shmtel_core::{SpanContext, SpanKind, SpanStatus, Symbol};
use smallvec::SmallVec;

use crate::context::{self, Current};
use crate::propagation::{format_traceparent, parse_traceparent, to_hex};
use crate::symbols::{symbol, symbol_of_text};
use crate::values::{field, Scratch};

/// The process's root sampling ratio (f64 bits), from `set_sample_ratio`.
static SAMPLE_RATIO: AtomicU64 = AtomicU64::new(0x3ff0_0000_0000_0000); // 1.0

/// Set the ratio used for new root spans.
#[pyfunction]
pub fn set_sample_ratio(r: f64) -> PyResult<()> {
    if !(0.0..=1.0).contains(&r) {
        return Err(PyValueError::new_err(format!(
            "sample ratio must be within [0, 1], got {r}"
        )));
    }
    // Ordering: Relaxed: a setting; spans started concurrently may use the old ratio.
    SAMPLE_RATIO.store(r.to_bits(), Ordering::Relaxed);
    Ok(())
}

pub(crate) fn process_ratio() -> f64 {
    // Ordering: Relaxed: see `set_sample_ratio`.
    f64::from_bits(SAMPLE_RATIO.load(Ordering::Relaxed))
}

struct State {
    core: Option<shmtel_core::Span>,
    name: Py<PyString>,
    status_set: bool,
    /// contextvars tokens of `__enter__`s not yet exited (nesting the same span is allowed).
    tokens: SmallVec<[Py<PyAny>; 1]>,
}

/// A span in progress.
#[pyclass(frozen, module = "shmtel._native")]
pub struct Span {
    ctx: SpanContext,
    parent: Option<[u8; 8]>,
    /// The correlation id of the request the span belongs to: given to the ASGI middleware's
    /// server span, inherited by the spans started while one that has it is current. Read by
    /// `context::correlation` when no id is set in the context itself.
    request_cid: Option<Py<PyString>>,
    state: Mutex<State>,
}

impl Span {
    /// The span's ids.
    #[inline]
    pub fn context(&self) -> SpanContext {
        self.ctx
    }

    /// The correlation id of the request the span belongs to (see the field).
    #[inline]
    pub(crate) fn request_cid<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        self.request_cid.as_ref().map(|c| c.bind(py).clone())
    }

    /// A Python object owning `core`.
    fn wrap<'py>(
        py: Python<'py>,
        core: shmtel_core::Span,
        name: &Bound<'py, PyString>,
        parent_ctx: Option<(SpanContext, bool)>,
        request_cid: Option<Py<PyString>>,
    ) -> PyResult<Bound<'py, Span>> {
        Bound::new(
            py,
            Span {
                ctx: core.context(),
                parent: parent_ctx.map(|(c, _)| c.span_id),
                request_cid,
                state: Mutex::new(State {
                    core: Some(core),
                    name: name.clone().unbind(),
                    status_set: false,
                    tokens: SmallVec::new(),
                }),
            },
        )
    }

    /// Start a span of `kind` from Rust, not entered (the ASGI middleware's server span, with
    /// its request's correlation id); the parent rules of `start_span` with an explicit parent.
    pub(crate) fn begin<'py>(
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        parent_ctx: Option<(SpanContext, bool)>,
        kind: SpanKind,
        sample_ratio: Option<f64>,
        request_cid: Option<Py<PyString>>,
    ) -> PyResult<Bound<'py, Span>> {
        let mut core = core_span(symbol(name), parent_ctx, sample_ratio)?;
        core.set_kind(kind);
        Span::wrap(py, core, name, parent_ctx, request_cid)
    }

    /// Run `f` on the core span when it is sampled and not ended (attributes written in one
    /// go by Rust callers).
    pub(crate) fn with_recording(&self, f: impl FnOnce(&mut shmtel_core::Span)) {
        if !self.ctx.sampled {
            return;
        }
        if let Some(core) = self.lock().core.as_mut() {
            f(core);
        }
    }

    /// Rename (the `update_name` of Rust callers; `sym` is `name`'s symbol).
    pub(crate) fn rename(&self, name: &Bound<'_, PyString>, sym: Symbol) {
        let mut st = self.lock();
        st.name = name.clone().unbind();
        if let Some(core) = st.core.as_mut() {
            core.set_name(sym);
        }
    }

    /// Set an error status unless one was set, with `description`.
    pub(crate) fn fail(&self, description: &str) {
        if !self.lock().status_set {
            self.status(SpanStatus::Error, description);
        }
    }

    /// End the span as `__exit__` does (an exception event and an error status for `error`,
    /// else an OK status, unless a status was set), without touching the context.
    pub(crate) fn close(&self, py: Python<'_>, error: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(e) = error else {
            // The common end, under one lock: an OK status unless one was set, and the core
            // span taken out to be written.
            let core = {
                let mut st = self.lock();
                if !st.status_set {
                    st.status_set = true;
                    if let Some(core) = st.core.as_mut() {
                        core.set_status(SpanStatus::Ok);
                    }
                }
                st.core.take()
            };
            if let Some(core) = core {
                core.end();
            }
            return Ok(());
        };
        let status_set = self.lock().status_set;
        self.exception(py, e)?;
        if !status_set {
            self.status(SpanStatus::Error, &crate::values::display(e));
        }
        self.end_now();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` inconsistent (plain fields).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attribute(&self, key: &Bound<'_, PyString>, value: &Bound<'_, PyAny>) {
        let mut st = self.lock();
        let Some(core) = st.core.as_mut() else {
            return;
        };
        if !self.ctx.sampled {
            return;
        }
        let mut scratch = Scratch::default();
        let f = field(value, &mut scratch);
        core.set_attribute(symbol(key), scratch.value(f));
    }

    fn status(&self, status: SpanStatus, description: &str) {
        let mut st = self.lock();
        st.status_set = true;
        if let Some(core) = st.core.as_mut() {
            core.set_status(status);
            if !description.is_empty() {
                core.set_attribute(
                    symbol_of_text("otel.status_description"),
                    shmtel_core::Value::Str(description),
                );
            }
        }
    }

    fn end_now(&self) {
        let core = self.lock().core.take();
        if let Some(core) = core {
            core.end();
        }
    }

    fn exception(&self, py: Python<'_>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        let ty = exc.get_type();
        let type_name = ty.qualname().map(|n| n.to_string()).unwrap_or_default();
        let module = ty.module().map(|m| m.to_string()).unwrap_or_default();
        let type_name = if module.is_empty() || module == "builtins" {
            type_name
        } else {
            format!("{module}.{type_name}")
        };
        let message = crate::values::display(exc);
        let stack = py
            .import("traceback")
            .and_then(|tb| tb.call_method1("format_exception", (exc,)))
            .and_then(|lines| PyString::new(py, "").call_method1("join", (lines,)))
            .map(|s| crate::values::display(&s))
            .unwrap_or_default();
        let mut st = self.lock();
        if let Some(core) = st.core.as_mut() {
            core.add_event(
                symbol_of_text("exception"),
                &[
                    (
                        symbol_of_text("exception.type"),
                        shmtel_core::Value::Str(&type_name),
                    ),
                    (
                        symbol_of_text("exception.message"),
                        shmtel_core::Value::Str(&message),
                    ),
                    (
                        symbol_of_text("exception.stacktrace"),
                        shmtel_core::Value::Str(&stack),
                    ),
                ],
            );
        }
        Ok(())
    }
}

fn parse_kind(kind: &str) -> PyResult<SpanKind> {
    const KINDS: [(&str, SpanKind); 5] = [
        ("internal", SpanKind::Internal),
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
    ];
    KINDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(kind))
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "invalid span kind {kind:?}: expected internal, server, client, producer or consumer"
            ))
        })
}

fn parse_status(status: &str) -> PyResult<SpanStatus> {
    Ok(match status.to_ascii_lowercase().as_str() {
        "ok" => SpanStatus::Ok,
        "error" => SpanStatus::Error,
        "unset" => SpanStatus::Unset,
        _ => {
            return Err(PyValueError::new_err(format!(
                "invalid span status {status:?}: expected ok, error or unset"
            )))
        }
    })
}

/// Start a span; see the stub for the parent rules.
#[pyfunction]
#[pyo3(signature = (name, parent = None, *, kind = "internal", attributes = None, links = None, sample_ratio = None))]
pub fn start_span<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyString>,
    parent: Option<&Bound<'py, PyAny>>,
    kind: &str,
    attributes: Option<&Bound<'py, PyDict>>,
    links: Option<&Bound<'py, PyAny>>,
    sample_ratio: Option<f64>,
) -> PyResult<Bound<'py, Span>> {
    let kind = parse_kind(kind)?;
    let sym = symbol(name);
    let current = context::current(py);
    let parent_ctx: Option<(SpanContext, bool)> = match parent {
        // An invalid traceparent starts a new trace, as propagators do.
        Some(p) => context_of(p, "parent")?,
        None => match &current {
            Current::Local(s) => Some((s.get().ctx, false)),
            Current::Remote(c) => Some((*c, true)),
            Current::None => None,
        },
    };
    // Started inside a request (whatever its parent): it belongs to that request.
    let request_cid = match &current {
        Current::Local(s) => s.get().request_cid.as_ref().map(|c| c.clone_ref(py)),
        _ => None,
    };
    let mut core = core_span(sym, parent_ctx, sample_ratio)?;
    core.set_kind(kind);
    let ctx = core.context();
    if ctx.sampled {
        with_attrs(attributes, |values| {
            for (k, v) in values {
                core.set_attribute(*k, *v);
            }
        });
        if let Some(links) = links {
            for item in links.try_iter()? {
                let item = item?;
                // A link is a context, or a (context, attributes) pair.
                let (target, attrs) = match item.cast::<pyo3::types::PyTuple>() {
                    Ok(t) if t.len() == 2 => (t.get_item(0)?, Some(t.get_item(1)?)),
                    _ => (item, None),
                };
                let attrs = attrs
                    .map(|a| a.cast_into::<PyDict>())
                    .transpose()
                    .map_err(|_| {
                        pyo3::exceptions::PyTypeError::new_err("a link's attributes must be a dict")
                    })?;
                if let Some((linked, remote)) = context_of(&target, "link")? {
                    with_attrs(attrs.as_ref(), |values| {
                        core.add_link(linked, remote, values)
                    });
                }
            }
        }
    }
    Span::wrap(py, core, name, parent_ctx, request_cid)
}

/// A new core span: a child of `parent_ctx` (a local or remote parent), else a root sampled at
/// `sample_ratio` (the process's ratio when None).
fn core_span(
    sym: Symbol,
    parent_ctx: Option<(SpanContext, bool)>,
    sample_ratio: Option<f64>,
) -> PyResult<shmtel_core::Span> {
    Ok(match parent_ctx {
        Some((ctx, remote)) => shmtel_core::Span::start_with_parent(sym, Some(ctx), remote),
        None => {
            let ratio = match sample_ratio {
                Some(r) if r.is_nan() => {
                    return Err(PyValueError::new_err(
                        "sample_ratio must be a number in [0, 1]",
                    ))
                }
                Some(r) => r,
                None => process_ratio(),
            };
            shmtel_core::Span::start_root(sym, ratio)
        }
    })
}

#[pymethods]
impl Span {
    /// The span name.
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyString> {
        self.lock().name.clone_ref(py)
    }

    /// Rename the span (e.g. a server span once the route template is known).
    fn update_name<'py>(slf: &Bound<'py, Self>, name: &Bound<'py, PyString>) -> Bound<'py, Self> {
        let sym = symbol(name);
        let mut st = slf.get().lock();
        st.name = name.clone().unbind();
        if let Some(core) = st.core.as_mut() {
            core.set_name(sym);
        }
        drop(st);
        slf.clone()
    }
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
    /// The parent's span id, or None for a root span.
    #[getter]
    fn parent_span_id(&self) -> Option<String> {
        self.parent.map(|p| to_hex(&p))
    }
    /// Whether the span is sampled.
    #[getter]
    fn sampled(&self) -> bool {
        self.ctx.sampled
    }
    /// Sampled and not ended.
    #[getter]
    fn is_recording(&self) -> bool {
        self.ctx.sampled && self.lock().core.is_some()
    }

    fn set_attribute<'py>(
        slf: &Bound<'py, Self>,
        key: &Bound<'py, PyString>,
        value: &Bound<'py, PyAny>,
    ) -> Bound<'py, Self> {
        slf.get().attribute(key, value);
        slf.clone()
    }

    fn set_attributes<'py>(
        slf: &Bound<'py, Self>,
        attributes: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, Self>> {
        for (k, v) in attributes.iter() {
            let k = k.cast_into::<PyString>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err("attribute keys must be str")
            })?;
            slf.get().attribute(&k, &v);
        }
        Ok(slf.clone())
    }

    #[pyo3(signature = (name, attributes = None))]
    fn add_event<'py>(
        slf: &Bound<'py, Self>,
        name: &Bound<'py, PyString>,
        attributes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        if !this.ctx.sampled {
            return Ok(slf.clone());
        }
        with_attrs(attributes, |values| {
            if let Some(core) = this.lock().core.as_mut() {
                core.add_event(symbol(name), values);
            }
        });
        Ok(slf.clone())
    }

    /// Link another span: a Span, a RemoteContext (from `extract`) or a traceparent str.
    #[pyo3(signature = (context, attributes = None))]
    fn add_link<'py>(
        slf: &Bound<'py, Self>,
        context: &Bound<'py, PyAny>,
        attributes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        let Some((linked, remote)) = context_of(context, "link")? else {
            return Ok(slf.clone());
        };
        if !this.ctx.sampled {
            return Ok(slf.clone());
        }
        with_attrs(attributes, |values| {
            if let Some(core) = this.lock().core.as_mut() {
                core.add_link(linked, remote, values);
            }
        });
        Ok(slf.clone())
    }

    #[pyo3(signature = (status, description = ""))]
    fn set_status<'py>(
        slf: &Bound<'py, Self>,
        status: &str,
        description: &str,
    ) -> PyResult<Bound<'py, Self>> {
        let s = parse_status(status)?;
        slf.get().status(s, description);
        Ok(slf.clone())
    }

    fn record_exception<'py>(
        slf: &Bound<'py, Self>,
        exc: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, Self>> {
        slf.get().exception(slf.py(), exc)?;
        Ok(slf.clone())
    }

    fn end(&self) {
        self.end_now();
    }

    fn finish(&self) {
        self.end_now();
    }

    fn traceparent(&self) -> String {
        format_traceparent(&self.ctx)
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let token = context::set_var(slf.py(), context::span_var(), slf.as_any())?;
        slf.get().lock().tokens.push(token.unbind());
        Ok(slf.clone())
    }

    #[pyo3(signature = (exc_type = None, exc = None, tb = None))]
    fn __exit__(
        slf: &Bound<'_, Self>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = tb;
        let py = slf.py();
        let this = slf.get();
        let token = this.lock().tokens.pop();
        match (exc_type, exc.filter(|e| !e.is_none())) {
            (Some(t), Some(e)) if !t.is_none() => this.close(py, Some(e))?,
            (Some(t), None) if !t.is_none() => {
                // An exception type without an instance: an error, nothing to describe.
                this.fail("");
                this.end_now();
            }
            _ => this.close(py, None)?,
        }
        if let Some(token) = token {
            context::reset_var(py, context::span_var(), token.bind(py))?;
        }
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Span(name={:?}, trace_id={:?}, span_id={:?}, sampled={})",
            self.lock().name.bind(py).to_string_lossy(),
            self.trace_id(),
            self.span_id(),
            if self.ctx.sampled { "True" } else { "False" }
        )
    }
}

/// The Span entered last in this context (None for a remote context or nothing).
#[pyfunction]
pub fn current_span(py: Python<'_>) -> Option<Bound<'_, Span>> {
    match context::current(py) {
        Current::Local(s) => Some(s),
        _ => None,
    }
}

/// Parse a W3C traceparent header.
#[pyfunction]
#[pyo3(name = "parse_traceparent")]
pub fn parse_traceparent_py(value: &str) -> Option<(String, String, bool)> {
    parse_traceparent(value).map(|c| (to_hex(&c.trace_id), to_hex(&c.span_id), c.sampled))
}

/// Parse a Jaeger uber-trace-id header.
#[pyfunction]
pub fn parse_uber_trace_id(value: &str) -> Option<(String, String, bool)> {
    crate::propagation::parse_uber_trace_id(value)
        .map(|c| (to_hex(&c.trace_id), to_hex(&c.span_id), c.sampled))
}

/// Format a W3C traceparent header.
#[pyfunction]
#[pyo3(name = "format_traceparent")]
pub fn format_traceparent_py(trace_id: &str, span_id: &str, sampled: bool) -> PyResult<String> {
    let (trace_id, span_id) =
        crate::propagation::parse_ids(trace_id, span_id).map_err(PyValueError::new_err)?;
    Ok(format_traceparent(&SpanContext {
        trace_id,
        span_id,
        sampled,
    }))
}

/// The span context `obj` names (a Span, a RemoteContext or a traceparent str) and whether it
/// is remote; None for an invalid traceparent (ignored, as propagators do). `what` names the
/// argument in the TypeError for other types.
fn context_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<(SpanContext, bool)>> {
    if let Ok(s) = obj.cast::<Span>() {
        Ok(Some((s.get().ctx, false)))
    } else if let Ok(s) = obj.cast::<PyString>() {
        Ok(parse_traceparent(&s.to_string_lossy()).map(|c| (c, true)))
    } else if let Ok(r) = obj.cast::<context::RemoteContext>() {
        Ok(Some((r.get().ctx, true)))
    } else {
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{what} must be a Span, a RemoteContext or a traceparent str, not {}",
            obj.get_type().name()?
        )))
    }
}

/// Run `f` with `attributes` as typed values (keys interned; other key types str()'d). Up to
/// eight attributes are converted on the stack.
fn with_attrs<R>(
    attributes: Option<&Bound<'_, PyDict>>,
    f: impl FnOnce(&[(Symbol, shmtel_core::Value<'_>)]) -> R,
) -> R {
    let mut scratch = Scratch::default();
    let items: SmallVec<[(Bound<'_, PyAny>, Bound<'_, PyAny>); 8]> =
        attributes.map(|a| a.iter().collect()).unwrap_or_default();
    let mut pending: SmallVec<[(Symbol, crate::values::Field<'_>); 8]> = SmallVec::new();
    for (k, v) in &items {
        let key = match k.cast::<PyString>() {
            Ok(k) => symbol(k),
            Err(_) => symbol_of_text(&crate::values::display(k)),
        };
        pending.push((key, field(v, &mut scratch)));
    }
    let values: SmallVec<[(Symbol, shmtel_core::Value<'_>); 8]> = pending
        .iter()
        .map(|(k, f)| (*k, scratch.value(*f)))
        .collect();
    f(&values)
}
