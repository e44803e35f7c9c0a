//! `Counter`, `Gauge`, `Histogram`, `Summary` and their children, with prometheus_client's
//! constructor arguments and errors. A child holds its core handle (a copied series id) and
//! its shadow series; `labels()` returns cached children from the family's dict.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use shmtel_core::SpanContext;

use crate::context::{self, Current};
use crate::registry::{core_err, family, CoreVec, Family, Kind, Spec};
use crate::shadow::Series;
use crate::timers::{ExceptionCounter, InprogressTracker, Timer, TimerTarget};

/// Seconds since the Unix epoch.
fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The child for a tuple of str label values (creating and caching it on first use).
fn child_for<'py>(
    py: Python<'py>,
    fam: &Arc<Family>,
    key: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let dict = fam.children.bind(py);
    if let Some(c) = dict.get_item(key)? {
        return Ok(c);
    }
    let values: Vec<String> = key
        .iter()
        .map(|v| v.extract::<String>())
        .collect::<PyResult<_>>()?;
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let series = Arc::new(Series::new(
        values.clone(),
        fam.bounds.clone(),
        fam.kind == Kind::Histogram,
    ));
    let labelvalues = key.clone().unbind();
    let obj = match &fam.core {
        CoreVec::Counter(v) => Bound::new(
            py,
            CounterChild {
                handle: v.get_with_label_values(&refs).map_err(core_err)?,
                series: series.clone(),
                labelvalues,
            },
        )?
        .into_any(),
        CoreVec::Gauge(v) => Bound::new(
            py,
            GaugeChild {
                handle: v.get_with_label_values(&refs).map_err(core_err)?,
                series: series.clone(),
                labelvalues,
            },
        )?
        .into_any(),
        CoreVec::Histogram(v) => Bound::new(
            py,
            HistogramChild {
                handle: v.get_with_label_values(&refs).map_err(core_err)?,
                series: series.clone(),
                labelvalues,
            },
        )?
        .into_any(),
        CoreVec::Summary(v) => Bound::new(
            py,
            SummaryChild {
                handle: v.get_with_label_values(&refs).map_err(core_err)?,
                series: series.clone(),
                labelvalues,
            },
        )?
        .into_any(),
    };
    // SAFETY: `dict`, `key` and `obj` are live objects; the result is a borrowed reference
    // (the dict's value) or NULL with an exception set.
    let got = unsafe {
        let p = ffi::PyDict_SetDefault(dict.as_ptr(), key.as_ptr(), obj.as_ptr());
        if p.is_null() {
            return Err(PyErr::fetch(py));
        }
        Bound::from_borrowed_ptr(py, p)
    };
    if got.is(&obj) {
        fam.add_series(series);
    }
    Ok(got)
}

/// Whether every item of `t` is exactly a str.
#[inline]
fn all_str(t: &Bound<'_, PyTuple>) -> bool {
    t.iter_borrowed()
        // SAFETY: a live item of the tuple.
        .all(|v| unsafe { ffi::PyUnicode_CheckExact(v.as_ptr()) } != 0)
}

/// `str()` every value into a new tuple.
fn str_tuple<'py>(
    py: Python<'py>,
    values: impl Iterator<Item = Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let strs: Vec<Bound<'py, PyString>> = values.map(|v| v.str()).collect::<PyResult<_>>()?;
    PyTuple::new(py, strs)
}

/// `labels(*args, **kwargs)` of a family object (`bound`: the object is itself a child).
fn labels<'py>(
    py: Python<'py>,
    fam: &Arc<Family>,
    bound: Option<&Bound<'py, PyTuple>>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = kwargs.filter(|k| !k.is_empty());
    // Fast path: the args tuple itself is the key of a cached child. Only str-valued keys are
    // ever stored, so a tuple with other values misses (or fails to hash) and takes the
    // normalising path below.
    if kwargs.is_none() && bound.is_none() && args.len() == fam.labelnames.len() {
        if let Ok(Some(c)) = fam.children.bind(py).get_item(args) {
            return Ok(c);
        }
    }
    if fam.labelnames.is_empty() {
        return Err(PyValueError::new_err(format!(
            "No label names were set when constructing {}:{}",
            fam.kind.as_str(),
            fam.name
        )));
    }
    if let Some(b) = bound {
        return Err(PyValueError::new_err(format!(
            "{}:{} already has labels set ({}); can not chain calls to .labels()",
            fam.kind.as_str(),
            fam.name,
            b.repr()?
        )));
    }
    let key = match kwargs {
        Some(kw) => {
            if !args.is_empty() {
                return Err(PyValueError::new_err(
                    "Incorrect label names: can't pass both *args and **kwargs",
                ));
            }
            if kw.len() != fam.labelnames.len() {
                return Err(PyValueError::new_err("Incorrect label names"));
            }
            let mut values = Vec::with_capacity(fam.labelnames.len());
            for name in &fam.labelnames {
                values.push(
                    kw.get_item(name)?
                        .ok_or_else(|| PyValueError::new_err("Incorrect label names"))?,
                );
            }
            str_tuple(py, values.into_iter())?
        }
        None => {
            if args.len() != fam.labelnames.len() {
                return Err(PyValueError::new_err("Incorrect label count"));
            }
            if all_str(args) {
                args.clone()
            } else {
                str_tuple(py, args.iter())?
            }
        }
    };
    child_for(py, fam, &key)
}

/// The child an unlabelled (or `_labelvalues`) family object records into.
fn bound_child<'py>(
    py: Python<'py>,
    fam: &Arc<Family>,
    labelvalues: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Option<Bound<'py, PyAny>>, bool)> {
    match labelvalues.filter(|v| !v.is_none()) {
        Some(lv) => {
            let key = str_tuple(
                py,
                lv.try_iter()?.collect::<PyResult<Vec<_>>>()?.into_iter(),
            )?;
            if key.is_empty() && fam.labelnames.is_empty() {
                return Ok((Some(child_for(py, fam, &key)?), false));
            }
            if key.len() != fam.labelnames.len() {
                return Err(PyValueError::new_err("Incorrect label count"));
            }
            Ok((Some(child_for(py, fam, &key)?), true))
        }
        None if fam.labelnames.is_empty() => {
            Ok((Some(child_for(py, fam, &PyTuple::empty(py))?), false))
        }
        None => Ok((None, false)),
    }
}

fn missing_labels(fam: &Family) -> PyErr {
    PyValueError::new_err(format!(
        "{} metric is missing label values",
        fam.kind.as_str()
    ))
}

// ---------------------------------------------------------------------------------------------
// Children

/// A counter series.
#[pyclass(frozen, module = "shmtel._native")]
pub struct CounterChild {
    handle: shmtel_core::Counter,
    series: Arc<Series>,
    labelvalues: Py<PyTuple>,
}

impl CounterChild {
    #[inline(always)]
    pub(crate) fn add(&self, amount: f64) -> PyResult<()> {
        if amount < 0.0 {
            return Err(PyValueError::new_err(
                "Counters can only be incremented by non-negative amounts.",
            ));
        }
        self.handle.add(amount);
        self.series.value.add(amount);
        Ok(())
    }
}

#[pymethods]
impl CounterChild {
    #[pyo3(name = "_inc", signature = (amount = 1.0))]
    fn inc(&self, amount: f64) -> PyResult<()> {
        self.add(amount)
    }
    #[pyo3(signature = (exception = None))]
    fn count_exceptions(
        slf: &Bound<'_, Self>,
        exception: Option<Bound<'_, PyAny>>,
    ) -> PyResult<ExceptionCounter> {
        ExceptionCounter::new(slf.clone().unbind(), exception)
    }
    #[getter]
    fn labelvalues(&self, py: Python<'_>) -> Py<PyTuple> {
        self.labelvalues.clone_ref(py)
    }
    #[getter]
    fn value(&self) -> f64 {
        self.series.value.get()
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "CounterChild({}, value={})",
            self.labelvalues.bind(py).repr()?,
            self.value()
        ))
    }
}

/// A gauge series.
#[pyclass(frozen, module = "shmtel._native")]
pub struct GaugeChild {
    handle: shmtel_core::Gauge,
    series: Arc<Series>,
    labelvalues: Py<PyTuple>,
}

impl GaugeChild {
    #[inline(always)]
    pub(crate) fn add(&self, v: f64) {
        self.handle.add(v);
        self.series.value.add(v);
    }
    #[inline(always)]
    pub(crate) fn set_value(&self, v: f64) {
        self.handle.set(v);
        self.series.value.set(v);
    }
}

#[pymethods]
impl GaugeChild {
    #[pyo3(name = "_inc", signature = (amount = 1.0))]
    fn inc(&self, amount: f64) {
        self.add(amount);
    }
    #[pyo3(name = "_dec", signature = (amount = 1.0))]
    fn dec(&self, amount: f64) {
        self.add(-amount);
    }
    #[pyo3(name = "_set")]
    fn set(&self, value: f64) {
        self.set_value(value);
    }
    fn set_to_current_time(&self) {
        self.set_value(unix_time());
    }
    fn track_inprogress(slf: &Bound<'_, Self>) -> InprogressTracker {
        InprogressTracker::new(slf.clone().unbind())
    }
    fn time(slf: &Bound<'_, Self>) -> Timer {
        Timer::new(TimerTarget::Gauge(slf.clone().unbind()))
    }
    #[getter]
    fn labelvalues(&self, py: Python<'_>) -> Py<PyTuple> {
        self.labelvalues.clone_ref(py)
    }
    #[getter]
    fn value(&self) -> f64 {
        self.series.value.get()
    }
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "GaugeChild({}, value={})",
            self.labelvalues.bind(py).repr()?,
            self.value()
        ))
    }
}

/// A histogram series.
#[pyclass(frozen, module = "shmtel._native")]
pub struct HistogramChild {
    handle: shmtel_core::Histogram,
    series: Arc<Series>,
    labelvalues: Py<PyTuple>,
}

impl HistogramChild {
    /// Observe, with the current sampled span (if any) as the exemplar.
    #[inline(always)]
    pub(crate) fn record(&self, py: Python<'_>, v: f64) {
        match context::current(py) {
            Current::Local(s) if s.get().context().sampled => {
                let ctx = s.get().context();
                self.handle
                    .observe_with_exemplar(v, ctx.trace_id, ctx.span_id);
            }
            _ => self.handle.observe(v),
        }
        self.series.observe(v);
    }

    /// Observe with an explicit exemplar (a sampled span's ids), or none.
    #[inline(always)]
    pub(crate) fn record_with(&self, v: f64, exemplar: Option<SpanContext>) {
        match exemplar {
            Some(ctx) if ctx.sampled => {
                self.handle
                    .observe_with_exemplar(v, ctx.trace_id, ctx.span_id);
            }
            _ => self.handle.observe(v),
        }
        self.series.observe(v);
    }
}

#[pymethods]
impl HistogramChild {
    /// `exemplar` is accepted for prometheus_client compatibility and ignored: the current
    /// span is the exemplar.
    #[pyo3(name = "_observe", signature = (amount, exemplar = None))]
    fn observe(&self, py: Python<'_>, amount: f64, exemplar: Option<&Bound<'_, PyAny>>) {
        let _ = exemplar;
        self.record(py, amount);
    }
    fn time(slf: &Bound<'_, Self>) -> Timer {
        Timer::new(TimerTarget::Histogram(slf.clone().unbind()))
    }
    #[getter]
    fn labelvalues(&self, py: Python<'_>) -> Py<PyTuple> {
        self.labelvalues.clone_ref(py)
    }
    /// Observations recorded in this process.
    #[getter]
    fn count(&self) -> u64 {
        self.series.cumulative().last().copied().unwrap_or(0)
    }
    /// Sum of observations recorded in this process.
    #[getter]
    fn sum(&self) -> f64 {
        self.series.sum.get()
    }
}

/// A summary series.
#[pyclass(frozen, module = "shmtel._native")]
pub struct SummaryChild {
    handle: shmtel_core::Summary,
    series: Arc<Series>,
    labelvalues: Py<PyTuple>,
}

impl SummaryChild {
    #[inline(always)]
    pub(crate) fn record(&self, v: f64) {
        self.handle.observe(v);
        self.series.observe(v);
    }
}

#[pymethods]
impl SummaryChild {
    #[pyo3(name = "_observe")]
    fn observe(&self, amount: f64) {
        self.record(amount);
    }
    fn time(slf: &Bound<'_, Self>) -> Timer {
        Timer::new(TimerTarget::Summary(slf.clone().unbind()))
    }
    #[getter]
    fn labelvalues(&self, py: Python<'_>) -> Py<PyTuple> {
        self.labelvalues.clone_ref(py)
    }
    #[getter]
    fn count(&self) -> u64 {
        self.series.count()
    }
    #[getter]
    fn sum(&self) -> f64 {
        self.series.sum.get()
    }
}

// ---------------------------------------------------------------------------------------------
// Families

fn getters_name(fam: &Family) -> String {
    fam.name.clone()
}

/// One `#[pymethods]` block (pyo3 takes one per class) for a family class: its own methods, plus
/// what every family class has: the slow path of `labels()`, the metadata getters and
/// `__repr__`.
macro_rules! family_class {
    ($class:ident, $kind:literal, { $($own:tt)* }) => {
        #[pymethods]
        impl $class {
            $($own)*

            /// The slow path of `labels()` (the fast entry point in `fastcall` falls back here).
            #[pyo3(name = "_labels", signature = (*args, **kwargs))]
            fn labels<'py>(
                &self,
                py: Python<'py>,
                args: &Bound<'py, PyTuple>,
                kwargs: Option<&Bound<'py, PyDict>>,
            ) -> PyResult<Bound<'py, PyAny>> {
                let bound = if self.is_child {
                    self.child
                        .as_ref()
                        .map(|c| c.get().labelvalues.bind(py).clone())
                } else {
                    None
                };
                labels(py, &self.fam, bound.as_ref(), args, kwargs)
            }
            #[getter]
            fn name(&self) -> String {
                getters_name(&self.fam)
            }
            #[getter]
            fn documentation(&self) -> String {
                self.fam.documentation.clone()
            }
            #[getter]
            fn labelnames(&self, py: Python<'_>) -> Py<PyTuple> {
                self.fam.labelnames_py.clone_ref(py)
            }
            #[getter]
            fn unit(&self) -> String {
                self.fam.unit.clone()
            }
            #[getter(r#type)]
            fn metric_type(&self) -> &'static str {
                $kind
            }
            fn __repr__(&self) -> String {
                format!(concat!("shmtel._native.", stringify!($class), "({})"), self.fam.name)
            }
        }
    };
}

/// A counter family (or an unlabelled counter).
#[pyclass(subclass, frozen, module = "shmtel._native")]
pub struct Counter {
    fam: Arc<Family>,
    child: Option<Py<CounterChild>>,
    is_child: bool,
}

impl Counter {
    #[inline(always)]
    fn child(&self) -> PyResult<&CounterChild> {
        self.child
            .as_ref()
            .map(|c| c.get())
            .ok_or_else(|| missing_labels(&self.fam))
    }
}

family_class!(Counter, "counter", {
    #[new]
    #[pyo3(signature = (name, documentation = "", labelnames = None, namespace = "", subsystem = "", unit = "", registry = None, _labelvalues = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        documentation: &str,
        labelnames: Option<&Bound<'_, PyAny>>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        registry: Option<&Bound<'_, PyAny>>,
        _labelvalues: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let _ = registry;
        let fam = family(
            py,
            Spec {
                kind: Kind::Counter,
                name,
                documentation,
                labelnames,
                namespace,
                subsystem,
                unit,
                mode: "",
                buckets: None,
            },
        )?;
        let (child, is_child) = bound_child(py, &fam, _labelvalues)?;
        let child = child
            .map(|c| c.cast_into::<CounterChild>().map(Bound::unbind))
            .transpose()?;
        Ok(Counter {
            fam,
            child,
            is_child,
        })
    }

    #[pyo3(name = "_inc", signature = (amount = 1.0))]
    fn inc(&self, amount: f64) -> PyResult<()> {
        self.child()?.add(amount)
    }

    #[pyo3(signature = (exception = None))]
    fn count_exceptions(
        &self,
        py: Python<'_>,
        exception: Option<Bound<'_, PyAny>>,
    ) -> PyResult<ExceptionCounter> {
        let c = self
            .child
            .as_ref()
            .ok_or_else(|| missing_labels(&self.fam))?;
        ExceptionCounter::new(c.clone_ref(py), exception)
    }

    #[getter]
    fn value(&self) -> PyResult<f64> {
        Ok(self.child()?.series.value.get())
    }
});

/// A gauge family (or an unlabelled gauge).
#[pyclass(subclass, frozen, module = "shmtel._native")]
pub struct Gauge {
    fam: Arc<Family>,
    child: Option<Py<GaugeChild>>,
    is_child: bool,
}

impl Gauge {
    #[inline(always)]
    fn child(&self) -> PyResult<&GaugeChild> {
        self.child
            .as_ref()
            .map(|c| c.get())
            .ok_or_else(|| missing_labels(&self.fam))
    }
}

family_class!(Gauge, "gauge", {
    #[new]
    #[pyo3(signature = (name, documentation = "", labelnames = None, namespace = "", subsystem = "", unit = "", registry = None, _labelvalues = None, multiprocess_mode = "all"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        documentation: &str,
        labelnames: Option<&Bound<'_, PyAny>>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        registry: Option<&Bound<'_, PyAny>>,
        _labelvalues: Option<&Bound<'_, PyAny>>,
        multiprocess_mode: &str,
    ) -> PyResult<Self> {
        let _ = registry;
        let fam = family(
            py,
            Spec {
                kind: Kind::Gauge,
                name,
                documentation,
                labelnames,
                namespace,
                subsystem,
                unit,
                mode: multiprocess_mode,
                buckets: None,
            },
        )?;
        let (child, is_child) = bound_child(py, &fam, _labelvalues)?;
        let child = child
            .map(|c| c.cast_into::<GaugeChild>().map(Bound::unbind))
            .transpose()?;
        Ok(Gauge {
            fam,
            child,
            is_child,
        })
    }

    #[pyo3(name = "_inc", signature = (amount = 1.0))]
    fn inc(&self, amount: f64) -> PyResult<()> {
        self.child()?.add(amount);
        Ok(())
    }
    #[pyo3(name = "_dec", signature = (amount = 1.0))]
    fn dec(&self, amount: f64) -> PyResult<()> {
        self.child()?.add(-amount);
        Ok(())
    }
    #[pyo3(name = "_set")]
    fn set(&self, value: f64) -> PyResult<()> {
        self.child()?.set_value(value);
        Ok(())
    }
    fn set_to_current_time(&self) -> PyResult<()> {
        self.child()?.set_value(unix_time());
        Ok(())
    }
    fn track_inprogress(&self, py: Python<'_>) -> PyResult<InprogressTracker> {
        let c = self
            .child
            .as_ref()
            .ok_or_else(|| missing_labels(&self.fam))?;
        Ok(InprogressTracker::new(c.clone_ref(py)))
    }
    fn time(&self, py: Python<'_>) -> PyResult<Timer> {
        let c = self
            .child
            .as_ref()
            .ok_or_else(|| missing_labels(&self.fam))?;
        Ok(Timer::new(TimerTarget::Gauge(c.clone_ref(py))))
    }
    #[getter]
    fn value(&self) -> PyResult<f64> {
        Ok(self.child()?.series.value.get())
    }
    #[getter]
    fn multiprocess_mode(&self) -> String {
        self.fam.mode.clone()
    }
});

/// A histogram family (or an unlabelled histogram).
#[pyclass(subclass, frozen, module = "shmtel._native")]
pub struct Histogram {
    fam: Arc<Family>,
    child: Option<Py<HistogramChild>>,
    is_child: bool,
}

family_class!(Histogram, "histogram", {
    #[new]
    #[pyo3(signature = (name, documentation = "", labelnames = None, namespace = "", subsystem = "", unit = "", registry = None, _labelvalues = None, buckets = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        documentation: &str,
        labelnames: Option<&Bound<'_, PyAny>>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        registry: Option<&Bound<'_, PyAny>>,
        _labelvalues: Option<&Bound<'_, PyAny>>,
        buckets: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let _ = registry;
        let fam = family(
            py,
            Spec {
                kind: Kind::Histogram,
                name,
                documentation,
                labelnames,
                namespace,
                subsystem,
                unit,
                mode: "",
                buckets,
            },
        )?;
        let (child, is_child) = bound_child(py, &fam, _labelvalues)?;
        let child = child
            .map(|c| c.cast_into::<HistogramChild>().map(Bound::unbind))
            .transpose()?;
        Ok(Histogram {
            fam,
            child,
            is_child,
        })
    }

    #[pyo3(name = "_observe", signature = (amount, exemplar = None))]
    fn observe(
        &self,
        py: Python<'_>,
        amount: f64,
        exemplar: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = exemplar;
        let c = self
            .child
            .as_ref()
            .ok_or_else(|| missing_labels(&self.fam))?;
        c.get().record(py, amount);
        Ok(())
    }
    fn time(&self, py: Python<'_>) -> PyResult<Timer> {
        let c = self
            .child
            .as_ref()
            .ok_or_else(|| missing_labels(&self.fam))?;
        Ok(Timer::new(TimerTarget::Histogram(c.clone_ref(py))))
    }
    /// Bucket upper bounds, ending with +Inf.
    #[getter]
    fn buckets(&self, py: Python<'_>) -> PyResult<Py<PyTuple>> {
        let mut b: Vec<f64> = self.fam.bounds.to_vec();
        b.push(f64::INFINITY);
        Ok(PyTuple::new(py, b)?.unbind())
    }
});

/// A summary family (or an unlabelled summary).
#[pyclass(subclass, frozen, module = "shmtel._native")]
pub struct Summary {
    fam: Arc<Family>,
    child: Option<Py<SummaryChild>>,
    is_child: bool,
}

family_class!(Summary, "summary", {
    #[new]
    #[pyo3(signature = (name, documentation = "", labelnames = None, namespace = "", subsystem = "", unit = "", registry = None, _labelvalues = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        documentation: &str,
        labelnames: Option<&Bound<'_, PyAny>>,
        namespace: &str,
        subsystem: &str,
        unit: &str,
        registry: Option<&Bound<'_, PyAny>>,
        _labelvalues: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let _ = registry;
        let fam = family(
            py,
            Spec {
                kind: Kind::Summary,
                name,
                documentation,
                labelnames,
                namespace,
                subsystem,
                unit,
                mode: "",
                buckets: None,
            },
        )?;
        let (child, is_child) = bound_child(py, &fam, _labelvalues)?;
        let child = child
            .map(|c| c.cast_into::<SummaryChild>().map(Bound::unbind))
            .transpose()?;
        Ok(Summary {
            fam,
            child,
            is_child,
        })
    }

    #[pyo3(name = "_observe")]
    fn observe(&self, amount: f64) -> PyResult<()> {
        let c = self
            .child
            .as_ref()
            .ok_or_else(|| missing_labels(&self.fam))?;
        c.get().record(amount);
        Ok(())
    }
    fn time(&self, py: Python<'_>) -> PyResult<Timer> {
        let c = self
            .child
            .as_ref()
            .ok_or_else(|| missing_labels(&self.fam))?;
        Ok(Timer::new(TimerTarget::Summary(c.clone_ref(py))))
    }
});

macro_rules! labelled_family {
    ($($t:ty),*) => {$(
        impl crate::fastcall::LabelledFamily for $t {
            #[inline(always)]
            fn family(&self) -> &Arc<Family> {
                &self.fam
            }
            #[inline(always)]
            fn is_bound(&self) -> bool {
                self.is_child
            }
        }
    )*};
}
labelled_family!(Counter, Gauge, Histogram, Summary);

// ---------------------------------------------------------------------------------------------
// Fast entry points (see `fastcall`): which method records what.

macro_rules! numeric_method {
    ($(#[$doc:meta])* $marker:ident, $class:ty, $name:literal, $slow:literal, $default:expr,
     $pydoc:literal, |$this:ident, $py:ident, $v:ident| $body:expr) => {
        $(#[$doc])*
        pub(crate) struct $marker;
        impl crate::fastcall::NumericMethod for $marker {
            type Class = $class;
            const NAME: &'static std::ffi::CStr = $name;
            const SLOW: &'static str = $slow;
            const DEFAULT: Option<f64> = $default;
            const DOC: &'static std::ffi::CStr = $pydoc;
            #[inline(always)]
            fn call($this: &$class, $py: Python<'_>, $v: f64) -> PyResult<()> {
                let _ = $py;
                $body
            }
        }
    };
}

numeric_method!(
    /// `CounterChild.inc`.
    CounterChildInc, CounterChild, c"inc", "_inc", Some(1.0),
    c"inc($self, amount=1.0)\n--\n\nAdd amount (>= 0) to the counter.",
    |this, py, v| this.add(v)
);
numeric_method!(
    /// `Counter.inc` (unlabelled).
    CounterInc, Counter, c"inc", "_inc", Some(1.0),
    c"inc($self, amount=1.0)\n--\n\nAdd amount (>= 0) to the unlabelled counter.",
    |this, py, v| this.child()?.add(v)
);
numeric_method!(
    /// `GaugeChild.inc`.
    GaugeChildInc, GaugeChild, c"inc", "_inc", Some(1.0),
    c"inc($self, amount=1.0)\n--\n\nAdd amount to the gauge.",
    |this, py, v| {
        this.add(v);
        Ok(())
    }
);
numeric_method!(
    /// `GaugeChild.dec`.
    GaugeChildDec, GaugeChild, c"dec", "_dec", Some(1.0),
    c"dec($self, amount=1.0)\n--\n\nSubtract amount from the gauge.",
    |this, py, v| {
        this.add(-v);
        Ok(())
    }
);
numeric_method!(
    /// `GaugeChild.set`.
    GaugeChildSet, GaugeChild, c"set", "_set", None,
    c"set($self, value)\n--\n\nSet the gauge.",
    |this, py, v| {
        this.set_value(v);
        Ok(())
    }
);
numeric_method!(
    /// `Gauge.inc` (unlabelled).
    GaugeInc, Gauge, c"inc", "_inc", Some(1.0),
    c"inc($self, amount=1.0)\n--\n\nAdd amount to the unlabelled gauge.",
    |this, py, v| {
        this.child()?.add(v);
        Ok(())
    }
);
numeric_method!(
    /// `Gauge.dec` (unlabelled).
    GaugeDec, Gauge, c"dec", "_dec", Some(1.0),
    c"dec($self, amount=1.0)\n--\n\nSubtract amount from the unlabelled gauge.",
    |this, py, v| {
        this.child()?.add(-v);
        Ok(())
    }
);
numeric_method!(
    /// `Gauge.set` (unlabelled).
    GaugeSet, Gauge, c"set", "_set", None,
    c"set($self, value)\n--\n\nSet the unlabelled gauge.",
    |this, py, v| {
        this.child()?.set_value(v);
        Ok(())
    }
);
numeric_method!(
    /// `HistogramChild.observe`.
    HistogramChildObserve, HistogramChild, c"observe", "_observe", None,
    c"observe($self, amount, exemplar=None)\n--\n\nRecord an observation.",
    |this, py, v| {
        this.record(py, v);
        Ok(())
    }
);
numeric_method!(
    /// `Histogram.observe` (unlabelled).
    HistogramObserve, Histogram, c"observe", "_observe", None,
    c"observe($self, amount, exemplar=None)\n--\n\nRecord an observation (unlabelled histogram).",
    |this, py, v| {
        let c = this.child.as_ref().ok_or_else(|| missing_labels(&this.fam))?;
        c.get().record(py, v);
        Ok(())
    }
);
numeric_method!(
    /// `SummaryChild.observe`.
    SummaryChildObserve, SummaryChild, c"observe", "_observe", None,
    c"observe($self, amount)\n--\n\nRecord an observation.",
    |this, py, v| {
        this.record(v);
        Ok(())
    }
);
numeric_method!(
    /// `Summary.observe` (unlabelled).
    SummaryObserve, Summary, c"observe", "_observe", None,
    c"observe($self, amount)\n--\n\nRecord an observation (unlabelled summary).",
    |this, py, v| {
        let c = this.child.as_ref().ok_or_else(|| missing_labels(&this.fam))?;
        c.get().record(v);
        Ok(())
    }
);
