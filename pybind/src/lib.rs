//! # shmtel-pybind
//!
//! The `shmtel._native` extension module: Python's face of `shmtel-core`. Metric classes with
//! prometheus_client's API record through core handles (one ring append per update) and keep
//! shadow values for the process's own `/metrics` view; spans and the correlation id live in
//! `contextvars`; log calls are raw vectorcall functions whose level check comes first.
//!
//! The Python-visible API is specified in `python/shmtel/_native.pyi`.
//!
//! ## Background work
//! None: like the core, this module starts no thread. The collector drains the rings.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod asgi;
pub mod context;
pub mod exposition;
pub mod fastcall;
pub mod logs;
pub mod metrics;
pub mod propagation;
pub mod registry;
pub mod shadow;
pub mod span;
pub mod symbols;
pub mod timers;
pub mod values;

use std::path::PathBuf;
use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// The configuration this module put in force through `init` (None: the environment's).
static INIT_CONFIG: OnceLock<shmtel_core::Config> = OnceLock::new();

fn config_in_force() -> shmtel_core::Config {
    INIT_CONFIG.get().cloned().unwrap_or_default()
}

/// Set the writer configuration before first use; False if one is already in force.
#[pyfunction]
#[pyo3(signature = (*, service = None, dir = None, ring_bytes = None, max_series = None, max_span_attributes = None, max_span_events = None, max_span_links = None, max_message_bytes = None))]
#[allow(clippy::too_many_arguments)]
fn init(
    service: Option<String>,
    dir: Option<PathBuf>,
    ring_bytes: Option<i64>,
    max_series: Option<i64>,
    max_span_attributes: Option<i64>,
    max_span_events: Option<i64>,
    max_span_links: Option<i64>,
    max_message_bytes: Option<i64>,
) -> PyResult<bool> {
    let span_limit = |what: &str, v: i64| -> PyResult<u16> {
        u16::try_from(v)
            .map_err(|_| PyValueError::new_err(format!("{what} must be within 0..=65535, got {v}")))
    };
    let positive = |what: &str, v: i64, max: i64| -> PyResult<usize> {
        if v <= 0 || v > max {
            return Err(PyValueError::new_err(format!(
                "{what} must be within 1..={max}, got {v}"
            )));
        }
        Ok(v as usize)
    };
    let mut c = shmtel_core::Config::default();
    if let Some(s) = service {
        if s.is_empty() || s.contains(['/', '\0']) || s == "." || s == ".." {
            return Err(PyValueError::new_err(format!(
                "invalid service name {s:?}: it names a directory, so no '/' or NUL"
            )));
        }
        c.service = s;
    }
    if let Some(d) = dir {
        if d.as_os_str().is_empty() {
            return Err(PyValueError::new_err("dir must not be empty"));
        }
        c.dir = Some(d);
    }
    if let Some(v) = ring_bytes {
        c.ring_bytes = positive("ring_bytes", v, 1 << 40)?;
    }
    if let Some(v) = max_series {
        c.max_series = positive("max_series", v, u32::MAX as i64)?;
    }
    if let Some(v) = max_span_attributes {
        c.max_span_attributes = span_limit("max_span_attributes", v)?;
    }
    if let Some(v) = max_span_events {
        c.max_span_events = span_limit("max_span_events", v)?;
    }
    if let Some(v) = max_span_links {
        c.max_span_links = span_limit("max_span_links", v)?;
    }
    if let Some(v) = max_message_bytes {
        c.max_message_bytes = positive("max_message_bytes", v, 1 << 30)?;
    }
    if INIT_CONFIG.get().is_some() {
        return Ok(false);
    }
    match shmtel_core::init(c.clone()) {
        Ok(()) => {
            let _ = INIT_CONFIG.set(c);
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// The region directory of the configuration in force.
#[pyfunction]
fn region_dir() -> String {
    config_in_force()
        .region_dir()
        .to_string_lossy()
        .into_owned()
}

/// The service name of the configuration in force.
#[pyfunction]
fn service_name() -> String {
    config_in_force().service
}

/// This thread's ring statistics (committing anything pending first).
#[pyfunction]
fn writer_stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let s = shmtel_core::flush_stats();
    let d = PyDict::new(py);
    d.set_item("head", s.head)?;
    d.set_item("dropped_spans", s.dropped_spans)?;
    d.set_item("dropped_logs", s.dropped_logs)?;
    d.set_item("dropped_other", s.dropped_other)?;
    d.set_item("coalesced", s.coalesced)?;
    d.set_item("dropped_metric", s.dropped_metric)?;
    d.set_item("ring_failures", s.ring_failures)?;
    Ok(d)
}

/// Version, build profile, pyo3, rustc and git revision.
#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", env!("CARGO_PKG_VERSION"))?;
    d.set_item("profile", env!("SHMTEL_BUILD_PROFILE"))?;
    d.set_item("pyo3", env!("SHMTEL_PYO3_VERSION"))?;
    d.set_item("rustc", env!("SHMTEL_RUSTC_VERSION"))?;
    d.set_item("git_sha", env!("SHMTEL_GIT_SHA"))?;
    d.set_item(
        "panic",
        if cfg!(panic = "abort") {
            "abort"
        } else {
            "unwind"
        },
    )?;
    Ok(d)
}

/// Prometheus text 0.0.4 of the metrics created in this process (its own view).
#[pyfunction]
fn render_process_metrics() -> String {
    registry::render()
}

/// Zero the process view (registered by the package to run in a fork child).
#[pyfunction]
fn reset_process_view() {
    registry::reset();
    context::reseed_after_fork();
}

/// The `shmtel._native` module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "DEFAULT_BUCKETS",
        PyTuple::new(
            py,
            shmtel_core::DEFAULT_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .collect::<Vec<f64>>(),
        )?,
    )?;
    context::init(m)?;
    // A GIL serialises shadow updates (see `shadow`); `sys._is_gil_enabled` exists from 3.13.
    let sys = py.import("sys")?;
    let gil = match sys.getattr("_is_gil_enabled") {
        Ok(f) => f.call0()?.is_truthy()?,
        Err(_) => true,
    };
    shadow::set_serialized(gil);
    m.add_function(wrap_pyfunction!(init, m)?)?;
    m.add_function(wrap_pyfunction!(region_dir, m)?)?;
    m.add_function(wrap_pyfunction!(service_name, m)?)?;
    m.add_function(wrap_pyfunction!(writer_stats, m)?)?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(render_process_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(reset_process_view, m)?)?;
    m.add_function(wrap_pyfunction!(logs::set_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(logs::get_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(logs::log_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(logs::set_include_caller, m)?)?;
    m.add_function(wrap_pyfunction!(logs::set_correlation_fields, m)?)?;
    m.add_function(wrap_pyfunction!(logs::business_metric, m)?)?;
    logs::register(m)?;
    m.add_function(wrap_pyfunction!(context::set_correlation_id, m)?)?;
    m.add_function(wrap_pyfunction!(context::get_correlation_id, m)?)?;
    m.add_function(wrap_pyfunction!(context::new_correlation_id, m)?)?;
    m.add_function(wrap_pyfunction!(context::set_trace_context, m)?)?;
    m.add_function(wrap_pyfunction!(context::get_trace_context, m)?)?;
    m.add_function(wrap_pyfunction!(span::current_span, m)?)?;
    m.add_function(wrap_pyfunction!(span::start_span, m)?)?;
    m.add_function(wrap_pyfunction!(span::set_sample_ratio, m)?)?;
    m.add_function(wrap_pyfunction!(span::parse_traceparent_py, m)?)?;
    m.add_function(wrap_pyfunction!(span::parse_uber_trace_id, m)?)?;
    m.add_function(wrap_pyfunction!(span::format_traceparent_py, m)?)?;
    m.add_function(wrap_pyfunction!(propagation::extract, m)?)?;
    m.add_function(wrap_pyfunction!(propagation::extract_tracestate, m)?)?;
    m.add_function(wrap_pyfunction!(propagation::extract_sampling, m)?)?;
    m.add_function(wrap_pyfunction!(propagation::inject, m)?)?;
    m.add_class::<span::Span>()?;
    m.add_class::<asgi::AsgiMiddleware>()?;
    m.add_class::<asgi::AsgiRequest>()?;
    m.add_class::<asgi::AsgiSend>()?;
    m.add_class::<context::RemoteContext>()?;
    m.add_class::<metrics::Counter>()?;
    m.add_class::<metrics::Gauge>()?;
    m.add_class::<metrics::Histogram>()?;
    m.add_class::<metrics::Summary>()?;
    m.add_class::<metrics::CounterChild>()?;
    m.add_class::<metrics::GaugeChild>()?;
    m.add_class::<metrics::HistogramChild>()?;
    m.add_class::<metrics::SummaryChild>()?;
    m.add_class::<timers::Timer>()?;
    m.add_class::<timers::InprogressTracker>()?;
    m.add_class::<timers::ExceptionCounter>()?;
    fastcall::install(m.py())?;
    Ok(())
}
