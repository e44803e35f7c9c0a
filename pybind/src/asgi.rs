//! The per-request work of `shmtel.asgi.ObservabilityMiddleware`, in Rust.
//!
//! A Python middleware costs a coroutine frame for its `__call__`, another for every `send` it
//! wraps, and a few hundred bytecodes of header scanning, context handling and metric lookups:
//! ~20 µs of worker CPU per request under uvicorn, more than every shmtel call it makes. Here
//! the middleware's `__call__` returns an [`AsgiRequest`], an awaitable written in Rust that
//! drives the app's coroutine itself (`await` delegates to it as to any iterator with `send`
//! and `throw`), and the app gets an [`AsgiSend`] as its `send`: a callable that adds the
//! response headers and returns the server's own `send(...)` awaitable, with no frame of its
//! own. Per request that leaves two native calls around the app and one per message sent.
//!
//! What a request does is unchanged from the Python version it replaces (the module docs of
//! `shmtel/asgi.py` describe it): correlation id and server span made current in `contextvars`
//! before the app runs (on the first step, so in the task that awaits the request), RED metrics
//! and span attributes after it returns or raises, the contextvars reset in the same task. The
//! route template comes from a cache keyed by the route object Starlette leaves in the scope;
//! a route not seen before (and apps without `scope["route"]`) are resolved by the Python
//! subclass's `_route_of`, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use pyo3::exceptions::{PyException, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use shmtel_core::{Level, SpanKind, Symbol, Value};
use smallvec::SmallVec;

use crate::context;
use crate::metrics::{CounterChild, GaugeChild, HistogramChild};
use crate::propagation;
use crate::span::Span;
use crate::symbols::{symbol, symbol_of_text};

/// The HTTP methods labelled as themselves; any other is `_OTHER` (OTel semconv).
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
/// The index of `_OTHER` in the per-method tables.
const OTHER: usize = METHODS.len();
const MAX_CORRELATION_ID: usize = 128;
/// Bound on the route objects remembered (routes are made once per app; this only guards
/// against an app that makes new route objects per request).
const MAX_ROUTES: usize = 4096;
/// Bound on (route, method, status) metric entries.
const MAX_ENTRIES: usize = 16_384;

/// The headers that may carry a caller's trace context (ASGI names are lowercase bytes).
const PROPAGATION_HEADERS: [&[u8]; 6] = [
    b"traceparent",
    b"b3",
    b"x-b3-traceid",
    b"x-b3-sampled",
    b"x-b3-flags",
    b"uber-trace-id",
];

/// The metric families (`shmtel.prometheus` objects) whose children the middleware records.
struct Families {
    requests: Py<PyAny>,
    duration: Py<PyAny>,
    in_progress: Py<PyAny>,
    errors: Py<PyAny>,
}

/// `(requests, duration, in_progress, errors)` as `_configure` takes them.
type FamilyObjects = (Py<PyAny>, Py<PyAny>, Py<PyAny>, Py<PyAny>);

/// Attribute keys of the server span, interned once.
struct Keys {
    method: Symbol,
    path: Symbol,
    user_agent: Symbol,
    route: Symbol,
    status: Symbol,
    error_type: Symbol,
    error_message: Symbol,
    route_field: Symbol,
    method_field: Symbol,
    path_field: Symbol,
}

/// What `_configure` sets, once.
struct Setup {
    app: Py<PyAny>,
    tracing: bool,
    /// The response header with the server span's ids: `TRACEPARENT` (with the caller's
    /// tracestate), `TRACERESPONSE`, or none.
    response_header: Option<usize>,
    /// The sampling ratio for a caller's context that carries no decision.
    sampling_ratio: Option<f64>,
    families: Option<Families>,
    /// `shmtel.propagation._tracestate_var`.
    tracestate_var: Py<PyAny>,
    unmatched: Py<PyString>,
    keys: Keys,
}

/// What a finished request of one (route template, method, status) records with.
struct Entry {
    route_text: String,
    /// A route matched (the template is not `<unmatched>`): the span is renamed.
    matched: bool,
    span_name: Py<PyString>,
    span_sym: Symbol,
    requests: Option<Py<CounterChild>>,
    duration: Option<Py<HistogramChild>>,
    errors: Option<Py<CounterChild>>,
}

/// A hasher for the small integer keys of the per-request lookup (SipHash costs more than the
/// rest of the lookup; the keys are addresses and small numbers, not attacker-chosen strings).
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
}

type Fast = std::hash::BuildHasherDefault<KeyHasher>;

/// (route object address, method index, status).
type RouteKey = (usize, u8, u16);

#[derive(Default)]
struct Caches {
    /// (route object address, method, status) -> (the route object, kept so that its address
    /// cannot be reused, and the entry): the lookup of every request Starlette routed.
    by_route: HashMap<RouteKey, (Py<PyAny>, Arc<Entry>), Fast>,
    /// (template, method, status) -> entry: the entries themselves.
    by_template: HashMap<(String, u8, u16), Arc<Entry>>,
    in_progress: [Option<Py<GaugeChild>>; OTHER + 1],
}

/// The native base of `shmtel.asgi.ObservabilityMiddleware`: its `__call__`.
#[pyclass(subclass, frozen, module = "shmtel._native", name = "_AsgiMiddleware")]
pub struct AsgiMiddleware {
    setup: OnceLock<Setup>,
    caches: Mutex<Caches>,
}

impl AsgiMiddleware {
    fn setup(&self) -> PyResult<&Setup> {
        self.setup.get().ok_or_else(|| {
            PyRuntimeError::new_err("the middleware is not configured (its __init__ did not run)")
        })
    }

    fn caches(&self) -> MutexGuard<'_, Caches> {
        // The caches hold plain maps: a panic while the lock is held leaves them usable.
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The in-progress gauge child of a method (made on first use). Never holds the lock
    /// across the Python call that makes it.
    fn in_progress(
        &self,
        py: Python<'_>,
        fam: &Families,
        idx: usize,
        method: &Bound<'_, PyString>,
    ) -> PyResult<Py<GaugeChild>> {
        if let Some(c) = &self.caches().in_progress[idx] {
            return Ok(c.clone_ref(py));
        }
        let child: Py<GaugeChild> = fam
            .in_progress
            .bind(py)
            .call_method1(intern!(py, "labels"), (method,))?
            .cast_into::<GaugeChild>()?
            .unbind();
        self.caches().in_progress[idx] = Some(child.clone_ref(py));
        Ok(child)
    }

    /// The entry of a finished request: from the route object Starlette left in the scope, else
    /// through the subclass's `_route_of`.
    fn entry_of(
        slf: &Bound<'_, Self>,
        setup: &Setup,
        scope: &Bound<'_, PyDict>,
        method_idx: usize,
        status: u16,
        path: &Bound<'_, PyAny>,
    ) -> PyResult<Arc<Entry>> {
        let py = slf.py();
        let this = slf.get();
        let route = scope
            .get_item(intern!(py, "route"))?
            .filter(|r| !r.is_none());
        let key = route
            .as_ref()
            .map(|r| (r.as_ptr() as usize, method_idx as u8, status));
        if let (Some(key), Some(r)) = (key, &route) {
            if let Some((obj, entry)) = this.caches().by_route.get(&key) {
                if obj.as_ptr() == r.as_ptr() {
                    return Ok(Arc::clone(entry));
                }
            }
        }
        let method = method_str(py, method_idx);
        let template = slf
            .call_method1(intern!(py, "_route_of"), (scope, &method, path))?
            .cast_into::<PyString>()
            .map_err(|_| PyTypeError::new_err("_route_of must return a str"))?;
        let entry = this.entry(py, setup, &template, method_idx, status)?;
        if let (Some(key), Some(r)) = (key, route) {
            let mut c = this.caches();
            if c.by_route.len() >= MAX_ROUTES {
                c.by_route.clear();
            }
            c.by_route.insert(key, (r.unbind(), Arc::clone(&entry)));
        }
        Ok(entry)
    }

    /// The entry of (template, method, status), made on first use.
    fn entry(
        &self,
        py: Python<'_>,
        setup: &Setup,
        route: &Bound<'_, PyString>,
        method_idx: usize,
        status: u16,
    ) -> PyResult<Arc<Entry>> {
        let key = (
            route.to_string_lossy().into_owned(),
            method_idx as u8,
            status,
        );
        if let Some(e) = self.caches().by_template.get(&key) {
            return Ok(Arc::clone(e));
        }
        let route_text = key.0.clone();
        let method = method_str(py, method_idx);
        let label = if method_idx == OTHER {
            "HTTP"
        } else {
            METHODS[method_idx]
        };
        let span_name = PyString::new(py, &format!("{label} {route_text}"));
        let (requests, duration, errors) = match &setup.families {
            Some(f) => {
                let labels = intern!(py, "labels");
                let status_text = status.to_string();
                let requests = f
                    .requests
                    .bind(py)
                    .call_method1(labels, (&method, route, status_text))?
                    .cast_into::<CounterChild>()?
                    .unbind();
                let duration = f
                    .duration
                    .bind(py)
                    .call_method1(labels, (&method, route))?
                    .cast_into::<HistogramChild>()?
                    .unbind();
                let errors = f
                    .errors
                    .bind(py)
                    .call_method1(labels, (&method, route))?
                    .cast_into::<CounterChild>()?
                    .unbind();
                (Some(requests), Some(duration), Some(errors))
            }
            None => (None, None, None),
        };
        let matched = setup
            .unmatched
            .bind(py)
            .to_str()
            .map_or(true, |u| u != route_text);
        let entry = Arc::new(Entry {
            route_text,
            matched,
            span_sym: symbol(&span_name),
            span_name: span_name.unbind(),
            requests,
            duration,
            errors,
        });
        let mut c = self.caches();
        if c.by_template.len() >= MAX_ENTRIES {
            c.by_template.clear();
        }
        Ok(Arc::clone(c.by_template.entry(key).or_insert(entry)))
    }
}

/// The label value of a method index (interned: the same str object every time).
fn method_str(py: Python<'_>, idx: usize) -> Bound<'_, PyString> {
    static NAMES: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();
    let names = NAMES.get_or_init(py, || {
        METHODS
            .iter()
            .copied()
            .chain(std::iter::once("_OTHER"))
            .map(|m| PyString::intern(py, m).unbind())
            .collect()
    });
    names[idx].bind(py).clone()
}

fn method_index(method: &str) -> usize {
    METHODS.iter().position(|m| *m == method).unwrap_or(OTHER)
}

/// Indices of [`header_name`].
const CORRELATION_ID: usize = 0;
const TRACEPARENT: usize = 1;
const TRACESTATE: usize = 2;
const TRACERESPONSE: usize = 3;

/// A header name as bytes, once per process.
fn header_name(py: Python<'_>, which: usize) -> &'static Py<PyBytes> {
    static NAMES: PyOnceLock<[Py<PyBytes>; 4]> = PyOnceLock::new();
    &NAMES.get_or_init(py, || {
        [
            PyBytes::new(py, b"x-correlation-id").unbind(),
            PyBytes::new(py, b"traceparent").unbind(),
            PyBytes::new(py, b"tracestate").unbind(),
            PyBytes::new(py, b"traceresponse").unbind(),
        ]
    })[which]
}

#[pymethods]
impl AsgiMiddleware {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        // The Python subclass's __init__ takes the arguments and calls `_configure`.
        let _ = (args, kwargs);
        AsgiMiddleware {
            setup: OnceLock::new(),
            caches: Mutex::new(Caches::default()),
        }
    }

    /// Set what the middleware records (once; the subclass's `__init__` calls it).
    #[pyo3(signature = (*, app, tracing, response_header, sampling_ratio, families, tracestate_var, unmatched))]
    #[allow(clippy::too_many_arguments)]
    fn _configure(
        &self,
        app: Py<PyAny>,
        tracing: bool,
        response_header: Option<&str>,
        sampling_ratio: Option<f64>,
        families: Option<FamilyObjects>,
        tracestate_var: Py<PyAny>,
        unmatched: Py<PyString>,
    ) -> PyResult<()> {
        let response_header = match response_header {
            None => None,
            Some("traceparent") => Some(TRACEPARENT),
            Some("traceresponse") => Some(TRACERESPONSE),
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "response_header must be None, 'traceresponse' or 'traceparent', got {other:?}"
                )))
            }
        };
        let keys = Keys {
            method: symbol_of_text("http.request.method"),
            path: symbol_of_text("url.path"),
            user_agent: symbol_of_text("user_agent.original"),
            route: symbol_of_text("http.route"),
            status: symbol_of_text("http.response.status_code"),
            error_type: symbol_of_text("error_type"),
            error_message: symbol_of_text("error_message"),
            route_field: symbol_of_text("route"),
            method_field: symbol_of_text("method"),
            path_field: symbol_of_text("path"),
        };
        let setup = Setup {
            app,
            tracing,
            response_header,
            sampling_ratio,
            families: families.map(|(requests, duration, in_progress, errors)| Families {
                requests,
                duration,
                in_progress,
                errors,
            }),
            tracestate_var,
            unmatched,
            keys,
        };
        self.setup
            .set(setup)
            .map_err(|_| PyRuntimeError::new_err("the middleware is already configured"))
    }

    /// The wrapped ASGI app.
    #[getter]
    fn app(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.setup()?.app.clone_ref(py))
    }

    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        scope: &Bound<'py, PyAny>,
        receive: &Bound<'py, PyAny>,
        send: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let setup = slf.get().setup()?;
        let app = setup.app.bind(py);
        let Ok(dict) = scope.cast::<PyDict>() else {
            return app.call1((scope, receive, send));
        };
        let kind = dict.get_item(intern!(py, "type"))?;
        let is_http = kind.as_ref().is_some_and(|k| {
            k.cast::<PyString>()
                .is_ok_and(|s| s.to_str().is_ok_and(|s| s == "http"))
        });
        if !is_http {
            return app.call1((scope, receive, send));
        }
        let path = dict
            .get_item(intern!(py, "path"))?
            .ok_or_else(|| PyTypeError::new_err("an http scope without 'path'"))?;
        let method = dict
            .get_item(intern!(py, "method"))?
            .ok_or_else(|| PyTypeError::new_err("an http scope without 'method'"))?
            .cast_into::<PyString>()
            .map_err(|_| PyTypeError::new_err("the scope's 'method' must be a str"))?;
        let method_text = method.to_str()?;
        if let Ok(p) = path.cast::<PyString>() {
            let p = p.to_str()?;
            if (p == "/_metrics" || p == "/_health")
                && (method_text == "GET" || method_text == "HEAD")
            {
                return slf.call_method1(intern!(py, "_serve_own"), (path, method, send));
            }
        }
        let request = AsgiRequest {
            middleware: slf.clone().unbind(),
            scope: dict.clone().unbind(),
            method_idx: method_index(method_text),
            raw_method: method.unbind(),
            path: path.unbind(),
            pending: Some((receive.clone().unbind(), send.clone().unbind())),
            inner: None,
            live: None,
            done: false,
        };
        Ok(Bound::new(py, request)?.into_any())
    }
}

/// The app's `send`: records the status, adds the response headers, and returns the server's
/// `send(...)` awaitable.
#[pyclass(frozen, module = "shmtel._native", name = "_AsgiSend")]
pub struct AsgiSend {
    send: Py<PyAny>,
    /// `(name, value)` tuples appended to the response's headers.
    extra: Extra,
    /// The response status (0 until `http.response.start`).
    status: AtomicU16,
}

#[pymethods]
impl AsgiSend {
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let send = this.send.bind(py);
        let Ok(d) = message.cast::<PyDict>() else {
            return send.call1((message,));
        };
        let start = d.get_item(intern!(py, "type"))?.is_some_and(|t| {
            t.is(intern!(py, "http.response.start"))
                || t.cast::<PyString>()
                    .is_ok_and(|s| s.to_str().is_ok_and(|s| s == "http.response.start"))
        });
        if !start {
            return send.call1((message,));
        }
        let status = d
            .get_item(intern!(py, "status"))?
            .and_then(|s| s.extract::<u16>().ok())
            .unwrap_or(0);
        // Ordering: Relaxed: read back by the request on the same thread after the app returns.
        this.status.store(status, Ordering::Relaxed);
        // The app's headers and ours, in a list made at its final size.
        let mut all: SmallVec<[Bound<'py, PyAny>; 8]> = SmallVec::new();
        if let Some(own) = d.get_item(intern!(py, "headers"))? {
            if let Ok(list) = own.cast::<PyList>() {
                all.extend(list.iter());
            } else if own.is_truthy()? {
                for h in own.try_iter()? {
                    all.push(h?);
                }
            }
        }
        all.extend(this.extra.iter().map(|h| h.bind(py).clone().into_any()));
        let headers = PyList::new(py, all)?;
        // A new message (the app's may be reused), never the app's header list mutated.
        let out = d.copy()?;
        out.set_item(intern!(py, "headers"), headers)?;
        send.call1((out,))
    }
}

/// What a request holds between its first step and its end.
struct Live {
    start: Instant,
    send: Py<AsgiSend>,
    user_agent: Option<Py<PyBytes>>,
    span: Option<Py<Span>>,
    span_token: Option<Py<PyAny>>,
    /// Set only when the id is not carried by the server span.
    cid_token: Option<Py<PyAny>>,
    tracestate_token: Option<Py<PyAny>>,
    in_progress: Option<Py<GaugeChild>>,
}

/// One request through the middleware: an awaitable that drives the app's coroutine.
#[pyclass(module = "shmtel._native", name = "_AsgiRequest")]
pub struct AsgiRequest {
    middleware: Py<AsgiMiddleware>,
    scope: Py<PyDict>,
    method_idx: usize,
    raw_method: Py<PyString>,
    path: Py<PyAny>,
    /// `(receive, send)` until the first step.
    pending: Option<(Py<PyAny>, Py<PyAny>)>,
    /// The app's coroutine, while it runs.
    inner: Option<Py<PyAny>>,
    live: Option<Live>,
    done: bool,
}

/// How the awaiting task resumes a request.
enum Resume<'py> {
    Send(Bound<'py, PyAny>),
    Throw(PyErr),
}

impl AsgiRequest {
    /// Set up the request's context and start the app's coroutine (not yet stepped).
    fn begin(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some((receive, send)) = self.pending.take() else {
            return Ok(());
        };
        let mw = self.middleware.bind(py).get();
        let setup = mw.setup()?;
        let scope = self.scope.bind(py);

        let headers = scope.get_item(intern!(py, "headers"))?;
        let mut cid_raw: Option<Bound<'_, PyBytes>> = None;
        let mut user_agent: Option<Bound<'_, PyBytes>> = None;
        let mut propagated = false;
        let mut has_tracestate = false;
        if let Some(h) = &headers {
            scan_headers(h, |name, value| match name {
                b"x-correlation-id" => cid_raw = Some(value.clone()),
                b"user-agent" => user_agent = Some(value.clone()),
                b"tracestate" => has_tracestate = true,
                n if PROPAGATION_HEADERS.contains(&n) => propagated = true,
                _ => {}
            })?;
        }
        let cid_raw = match cid_raw.filter(|c| valid_correlation_id(c.as_bytes())) {
            Some(c) => c,
            None => PyBytes::new(py, &context::new_correlation_id_bytes()),
        };
        // SAFETY: `valid_correlation_id` or `new_correlation_id` made it printable ASCII.
        let cid = PyString::new(py, unsafe {
            std::str::from_utf8_unchecked(cid_raw.as_bytes())
        });
        // Everything that can fail comes before the context is touched, so that a failure
        // leaves nothing set in the caller's context.
        let mut extra: Extra = SmallVec::new();
        extra.push(
            PyTuple::new(
                py,
                [
                    header_name(py, CORRELATION_ID).bind(py).as_any(),
                    cid_raw.as_any(),
                ],
            )?
            .unbind(),
        );
        // The request's id rides on its server span (one context variable set per request, not
        // two), unless the context has an id of its own (`set_correlation_id` before the
        // request), which the request's must override in the context; so it must without a span.
        let cid_in_context = !setup.tracing || context::correlation_is_set(py);
        let mut span = None;
        let mut tracestate_value = None;
        let mut tracestate_raw = None;
        if setup.tracing {
            let mut parent = None;
            let mut root_ratio = None;
            if propagated {
                let h = headers.as_ref().expect("propagation headers were seen");
                match propagation::extract(h, setup.sampling_ratio)? {
                    None => {
                        if let Some(decision) = propagation::extract_sampling(h)? {
                            root_ratio = Some(if decision { 1.0 } else { 0.0 });
                        }
                    }
                    Some(remote) => {
                        let ctx = remote.ctx;
                        parent = Some((ctx, true));
                        if has_tracestate {
                            if let Some(ts) = propagation::extract_tracestate(h)? {
                                let value = (propagation::to_hex(&ctx.trace_id), ts.as_str());
                                tracestate_value = Some(value.into_pyobject(py)?.into_any());
                                tracestate_raw = Some(ts);
                            }
                        }
                    }
                }
            }
            // Named by the method until the route is known: the interned label (the server's
            // str is a new object per request, which the symbol cache would miss every time),
            // or "HTTP" for a method outside the standard ones (OTel semconv).
            let name = if self.method_idx == OTHER {
                intern!(py, "HTTP").clone()
            } else {
                method_str(py, self.method_idx)
            };
            let request_cid = (!cid_in_context).then(|| cid.clone().unbind());
            let s = Span::begin(py, &name, parent, SpanKind::Server, root_ratio, request_cid)?;
            if let Some(which) = setup.response_header {
                let tp = propagation::traceparent_bytes(&s.get().context());
                extra.push(
                    PyTuple::new(
                        py,
                        [
                            header_name(py, which).bind(py).as_any(),
                            PyBytes::new(py, &tp).as_any(),
                        ],
                    )?
                    .unbind(),
                );
                // A traceparent takes the caller's tracestate along (W3C Level 1 propagation);
                // Level 2's traceresponse has no tracestate.
                if let Some(ts) = tracestate_raw.filter(|_| which == TRACEPARENT) {
                    extra.push(
                        PyTuple::new(
                            py,
                            [
                                header_name(py, TRACESTATE).bind(py).as_any(),
                                PyBytes::new(py, ts.as_bytes()).as_any(),
                            ],
                        )?
                        .unbind(),
                    );
                }
            }
            span = Some(s);
        }
        let in_progress = match &setup.families {
            Some(f) => {
                let m = method_str(py, self.method_idx);
                Some(mw.in_progress(py, f, self.method_idx, &m)?)
            }
            None => None,
        };
        let send = Bound::new(
            py,
            AsgiSend {
                send,
                extra,
                status: AtomicU16::new(0),
            },
        )?;

        let cid_token = if cid_in_context {
            Some(context::set_var(
                py,
                context::correlation_var(),
                cid.as_any(),
            )?)
        } else {
            None
        };
        let undo_cid = |py: Python<'_>| {
            if let Some(t) = &cid_token {
                let _ = context::reset_var(py, context::correlation_var(), t);
            }
        };
        let tracestate_token = match &tracestate_value {
            Some(v) => match set_python_var(setup.tracestate_var.bind(py), v) {
                Ok(t) => Some(t.unbind()),
                Err(e) => {
                    undo_cid(py);
                    return Err(e);
                }
            },
            None => None,
        };
        let span_token = match &span {
            Some(s) => match context::set_var(py, context::span_var(), s.as_any()) {
                Ok(t) => Some(t.unbind()),
                Err(e) => {
                    if let Some(t) = &tracestate_token {
                        let _ = reset_python_var(setup.tracestate_var.bind(py), t.bind(py));
                    }
                    undo_cid(py);
                    return Err(e);
                }
            },
            None => None,
        };
        if let Some(g) = &in_progress {
            g.get().add(1.0);
        }
        self.live = Some(Live {
            start: Instant::now(),
            send: send.clone().unbind(),
            user_agent: user_agent.map(Bound::unbind),
            span: span.map(Bound::unbind),
            span_token,
            cid_token: cid_token.map(Bound::unbind),
            tracestate_token,
            in_progress,
        });
        let inner = setup.app.bind(py).call1((scope, receive, send));
        match inner {
            Ok(c) => {
                self.inner = Some(c.unbind());
                Ok(())
            }
            Err(e) => {
                let _ = self.finish(py, Some(&e));
                Err(e)
            }
        }
    }

    /// Step the app's coroutine; its return or error ends the request. `Ok(None)`: it returned
    /// None.
    fn step(&mut self, py: Python<'_>, resume: Resume<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.done {
            return match resume {
                Resume::Throw(e) => Err(e),
                Resume::Send(_) => Err(PyRuntimeError::new_err(
                    "cannot reuse already awaited request",
                )),
            };
        }
        if self.pending.is_some() {
            if let Resume::Throw(e) = resume {
                // Thrown into before it started: it never runs.
                self.done = true;
                self.pending = None;
                return Err(e);
            }
            if let Err(e) = self.begin(py) {
                self.done = true;
                return Err(e);
            }
        }
        let Some(inner) = self.inner.as_ref().map(|c| c.clone_ref(py)) else {
            self.done = true;
            return Err(PyRuntimeError::new_err("the request has no coroutine"));
        };
        let inner = inner.bind(py);
        let outcome = match resume {
            Resume::Send(value) => send_into(inner, &value),
            Resume::Throw(e) => match inner.call_method1(intern!(py, "throw"), (e.value(py),)) {
                Ok(v) => Ok(Step::Yield(v)),
                Err(err) => stop_value(py, err),
            },
        };
        match outcome {
            Ok(Step::Yield(v)) => Ok(Some(v.unbind())),
            Ok(Step::Return(v)) => {
                self.finish(py, None)?;
                if v.is_none() {
                    // Exhausted with None: `tp_iternext` returns NULL with no exception set,
                    // which spares creating a StopIteration (ASGI apps return None).
                    Ok(None)
                } else {
                    Err(PyStopIteration::new_err((v.unbind(),)))
                }
            }
            Err(e) => {
                // The app's error wins over one of ours.
                let _ = self.finish(py, Some(&e));
                Err(e)
            }
        }
    }

    /// Record the request: metrics, span, error log; reset the context. Runs once.
    fn finish(&mut self, py: Python<'_>, error: Option<&PyErr>) -> PyResult<()> {
        self.done = true;
        self.inner = None;
        let Some(live) = self.live.take() else {
            return Ok(());
        };
        let duration = live.start.elapsed().as_secs_f64();
        let mw_obj = self.middleware.bind(py);
        let mw = mw_obj.get();
        let setup = mw.setup()?;
        // Ordering: Relaxed: written by `AsgiSend` on this thread.
        let mut status = live.send.get().status.load(Ordering::Relaxed);
        if error.is_some() || status == 0 {
            status = 500;
        }
        let scope = self.scope.bind(py);
        let path = self.path.bind(py);
        let raw_method = self.raw_method.bind(py);
        let mut result = Ok(());
        let entry =
            match AsgiMiddleware::entry_of(mw_obj, setup, scope, self.method_idx, status, path) {
                Ok(e) => Some(e),
                Err(e) => {
                    result = Err(e);
                    // The request is still counted, under `<unmatched>`.
                    mw.entry(py, setup, setup.unmatched.bind(py), self.method_idx, status)
                        .ok()
                }
            };
        let route_text = entry.as_ref().map_or("", |e| e.route_text.as_str());
        let error_value = error.map(|e| e.value(py).clone().into_any());

        if let Some(e) = error_value
            .as_ref()
            .filter(|e| e.is_instance_of::<PyException>())
        {
            let type_name = e
                .get_type()
                .name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let message = crate::values::display(e);
            let path_text = crate::values::display(path);
            let k = &setup.keys;
            let caller = if crate::logs::include_caller() {
                crate::symbols::caller(py)
            } else {
                Symbol::EMPTY
            };
            crate::logs::write_event(
                py,
                Level::Error,
                "Request failed",
                &[
                    (k.error_type, Value::Str(&type_name)),
                    (k.error_message, Value::Str(&message)),
                    (
                        k.method_field,
                        Value::Str(raw_method.to_str().unwrap_or("")),
                    ),
                    (k.route_field, Value::Str(route_text)),
                    (k.path_field, Value::Str(&path_text)),
                ],
                caller,
            );
        }

        let span = live.span.as_ref().map(|s| s.bind(py).get());
        if let Some(g) = &live.in_progress {
            g.get().add(-1.0);
        }
        if let Some(entry) = &entry {
            if let Some(c) = &entry.requests {
                c.get().add(1.0)?;
            }
            if let Some(h) = &entry.duration {
                h.get().record_with(duration, span.map(Span::context));
            }
            if status >= 500 || error.is_some() {
                if let Some(c) = &entry.errors {
                    c.get().add(1.0)?;
                }
            }
        }
        if let Some(span) = span {
            let k = &setup.keys;
            let path_value = path.cast::<PyString>().ok();
            span.with_recording(|core| {
                core.set_attribute(k.method, Value::Str(raw_method.to_str().unwrap_or("")));
                if let Some(p) = &path_value {
                    core.set_attribute(k.path, Value::Str(p.to_str().unwrap_or("")));
                }
                if let Some(ua) = &live.user_agent {
                    // Latin-1, as ASGI header values are; ASCII (the usual) as is, no copy.
                    let raw = ua.bind(py).as_bytes();
                    let text: std::borrow::Cow<'_, str> = if raw.is_ascii() {
                        // SAFETY: ASCII is valid UTF-8.
                        std::borrow::Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(raw) })
                    } else {
                        std::borrow::Cow::Owned(raw.iter().map(|&c| char::from(c)).collect())
                    };
                    core.set_attribute(k.user_agent, Value::Str(&text));
                }
                core.set_attribute(k.route, Value::Str(route_text));
                core.set_attribute(k.status, Value::I64(i64::from(status)));
            });
            if span.context().sampled {
                if let Some(entry) = entry.as_ref().filter(|e| e.matched) {
                    span.rename(entry.span_name.bind(py), entry.span_sym);
                }
                if status >= 500 && error.is_none() {
                    span.fail(&format!("HTTP {status}"));
                }
            }
            if let Err(e) = span.close(py, error_value.as_ref()) {
                result = result.and(Err(e));
            }
        }
        if let Some(t) = &live.span_token {
            result = result.and(context::reset_var(py, context::span_var(), t.bind(py)));
        }
        if let Some(t) = &live.tracestate_token {
            result = result.and(reset_python_var(setup.tracestate_var.bind(py), t.bind(py)));
        }
        if let Some(t) = &live.cid_token {
            result = result.and(context::reset_var(
                py,
                context::correlation_var(),
                t.bind(py),
            ));
        }
        result
    }
}

enum Step<'py> {
    Yield(Bound<'py, PyAny>),
    Return(Bound<'py, PyAny>),
}

/// `inner.send(value)` through `PyIter_Send` (no method lookup for coroutines).
fn send_into<'py>(inner: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>) -> PyResult<Step<'py>> {
    let py = inner.py();
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: `inner` and `value` are live objects; `out` receives a new reference on
    // PYGEN_NEXT and PYGEN_RETURN, and stays NULL with an exception set on PYGEN_ERROR.
    let r = unsafe { ffi::PyIter_Send(inner.as_ptr(), value.as_ptr(), &mut out) };
    match r {
        ffi::PySendResult::PYGEN_NEXT => {
            // SAFETY: a new, non-NULL reference (see above).
            Ok(Step::Yield(unsafe { Bound::from_owned_ptr(py, out) }))
        }
        ffi::PySendResult::PYGEN_RETURN => {
            // SAFETY: a new, non-NULL reference (see above).
            Ok(Step::Return(unsafe { Bound::from_owned_ptr(py, out) }))
        }
        ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
    }
}

/// The outcome of a `throw()` that raised: StopIteration carries the coroutine's return value.
fn stop_value(py: Python<'_>, err: PyErr) -> PyResult<Step<'_>> {
    if err.is_instance_of::<PyStopIteration>(py) {
        let v = err.value(py).getattr(intern!(py, "value"))?;
        return Ok(Step::Return(v));
    }
    Err(err)
}

#[pymethods]
impl AsgiRequest {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.step(py, Resume::Send(py.None().into_bound(py)))
    }

    fn send(&mut self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        match self.step(py, Resume::Send(value))? {
            Some(v) => Ok(v),
            None => Err(PyStopIteration::new_err(())),
        }
    }

    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let err = thrown(py, typ, val, tb)?;
        match self.step(py, Resume::Throw(err))? {
            Some(v) => Ok(v),
            None => Err(PyStopIteration::new_err(())),
        }
    }

    /// Close the app's coroutine; the request ends as if it raised GeneratorExit.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.done {
            return Ok(());
        }
        if self.pending.take().is_some() {
            self.done = true;
            return Ok(());
        }
        let closed = match self.inner.as_ref() {
            Some(c) => c.bind(py).call_method0(intern!(py, "close")).map(|_| ()),
            None => Ok(()),
        };
        let exit = pyo3::exceptions::PyGeneratorExit::new_err(());
        let fin = self.finish(py, Some(&exit));
        closed.and(fin)
    }
}

impl Drop for AsgiRequest {
    fn drop(&mut self) {
        if self.live.is_some() {
            // Dropped while the app was suspended (its task was destroyed): still count it.
            Python::attach(|py| {
                let exit = pyo3::exceptions::PyGeneratorExit::new_err(());
                if let Some(c) = self.inner.take() {
                    let _ = c.bind(py).call_method0(intern!(py, "close"));
                }
                if let Err(e) = self.finish(py, Some(&exit)) {
                    // The context may be another task's now: the reset fails; nothing to raise to.
                    drop(e);
                }
            });
        }
    }
}

/// The exception `throw(typ, val, tb)` means (an instance, or a type and its argument).
fn thrown<'py>(
    py: Python<'py>,
    typ: Bound<'py, PyAny>,
    val: Option<Bound<'py, PyAny>>,
    tb: Option<Bound<'py, PyAny>>,
) -> PyResult<PyErr> {
    let val = val.filter(|v| !v.is_none());
    let exc = if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        typ
    } else {
        match val {
            Some(v) if v.is_instance(&typ).unwrap_or(false) => v,
            Some(v) => typ.call1((v,))?,
            None => typ.call0()?,
        }
    };
    if let Some(tb) = tb.filter(|t| !t.is_none()) {
        exc.call_method1(intern!(py, "with_traceback"), (tb,))?;
    }
    Ok(PyErr::from_value(exc))
}

/// The response headers a request adds: `x-correlation-id`, the trace response header when
/// configured, and the caller's `tracestate` with a `traceparent`.
type Extra = SmallVec<[Py<PyTuple>; 3]>;

/// Call `f(name, value)` for every `(bytes, bytes)` pair of an ASGI header list (others are
/// skipped: a header the server did not give as bytes is not one we read).
fn scan_headers<'py>(
    headers: &Bound<'py, PyAny>,
    mut f: impl FnMut(&[u8], &Bound<'py, PyBytes>),
) -> PyResult<()> {
    let mut visit = |item: &Bound<'py, PyAny>| {
        let Ok(t) = item.cast::<PyTuple>() else {
            return;
        };
        if t.len() != 2 {
            return;
        }
        let (Ok(name), Ok(value)) = (t.get_borrowed_item(0), t.get_borrowed_item(1)) else {
            return;
        };
        if let (Ok(n), Ok(v)) = (name.cast::<PyBytes>(), value.cast::<PyBytes>()) {
            f(n.as_bytes(), &v.to_owned());
        }
    };
    if let Ok(list) = headers.cast::<PyList>() {
        for item in list.iter() {
            visit(&item);
        }
    } else {
        for item in headers.try_iter()? {
            visit(&item?);
        }
    }
    Ok(())
}

/// A caller's correlation id is kept when it is 1-128 printable ASCII characters.
fn valid_correlation_id(raw: &[u8]) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_CORRELATION_ID
        && raw.iter().all(|c| (0x20..0x7f).contains(c))
}

/// `var.set(value)` of any ContextVar, returning the token.
fn set_python_var<'py>(
    var: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `var` must be a ContextVar, which PyContextVar_Set checks (raising TypeError);
    // the result is a new reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            var.py(),
            ffi::PyContextVar_Set(var.as_ptr(), value.as_ptr()),
        )
    }
}

/// `var.reset(token)` of any ContextVar.
fn reset_python_var(var: &Bound<'_, PyAny>, token: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: a wrong variable or token type is reported as an exception, not UB.
    if unsafe { ffi::PyContextVar_Reset(var.as_ptr(), token.as_ptr()) } != 0 {
        return Err(PyErr::fetch(var.py()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_correlation_id;
    use crate::context::new_correlation_id_bytes;

    #[test]
    fn generated_correlation_ids_are_valid_and_differ() {
        let (a, b) = (new_correlation_id_bytes(), new_correlation_id_bytes());
        assert_ne!(a, b);
        for id in [a, b] {
            assert!(valid_correlation_id(&id));
            assert!(id
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }

    #[test]
    fn correlation_ids_from_callers() {
        assert!(valid_correlation_id(b"req-42 abc"));
        assert!(!valid_correlation_id(b""));
        assert!(!valid_correlation_id(b"tab\there"));
        assert!(!valid_correlation_id(&[b'a'; 129]));
        assert!(valid_correlation_id(&[b'a'; 128]));
        assert!(!valid_correlation_id("é".as_bytes()));
    }
}
