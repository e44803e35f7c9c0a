//! Context managers and decorators: `Timer` (`time()`), `InprogressTracker`
//! (`track_inprogress()`) and `ExceptionCounter` (`count_exceptions()`). As decorators they
//! delegate to `shmtel._decorate.wrap(func, factory)`, which handles `async def` functions;
//! `factory` makes a fresh manager per call, so concurrent calls do not share a start time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use pyo3::exceptions::PyBaseException;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::metrics::{CounterChild, GaugeChild, HistogramChild, SummaryChild};

/// What a timer records its duration into.
pub enum TimerTarget {
    /// Observe the seconds.
    Histogram(Py<HistogramChild>),
    /// Observe the seconds.
    Summary(Py<SummaryChild>),
    /// Set the gauge to the seconds.
    Gauge(Py<GaugeChild>),
}

impl TimerTarget {
    fn clone_ref(&self, py: Python<'_>) -> TimerTarget {
        match self {
            TimerTarget::Histogram(c) => TimerTarget::Histogram(c.clone_ref(py)),
            TimerTarget::Summary(c) => TimerTarget::Summary(c.clone_ref(py)),
            TimerTarget::Gauge(c) => TimerTarget::Gauge(c.clone_ref(py)),
        }
    }
}

fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn wrap<'py>(
    py: Python<'py>,
    func: &Bound<'py, PyAny>,
    factory: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    py.import("shmtel._decorate")?
        .getattr("wrap")?
        .call1((func, factory))
}

/// Times a block or a function.
#[pyclass(frozen, module = "shmtel._native")]
pub struct Timer {
    target: TimerTarget,
    /// Start time in ns since a process-wide base (0: not started).
    start: AtomicU64,
}

impl Timer {
    /// A timer for `target`.
    pub fn new(target: TimerTarget) -> Timer {
        Timer {
            target,
            start: AtomicU64::new(0),
        }
    }
}

#[pymethods]
impl Timer {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        // Ordering: Relaxed: the timer is used by the thread that entered it.
        slf.get().start.store(now_ns().max(1), Ordering::Relaxed);
        slf.clone()
    }

    #[pyo3(signature = (exc_type = None, exc = None, tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let _ = (exc_type, exc, tb);
        // Ordering: Relaxed: see `__enter__`.
        let start = self.start.load(Ordering::Relaxed);
        let secs = now_ns().saturating_sub(start) as f64 / 1e9;
        match &self.target {
            TimerTarget::Histogram(c) => c.get().record(py, secs),
            TimerTarget::Summary(c) => c.get().record(secs),
            TimerTarget::Gauge(c) => c.get().set_value(secs),
        }
        false
    }

    /// A fresh timer on the same target (the decorator's factory).
    fn _fresh(&self, py: Python<'_>) -> Timer {
        Timer::new(self.target.clone_ref(py))
    }

    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(slf.py(), func, slf.getattr("_fresh")?)
    }
}

/// Adds 1 to a gauge on entry and subtracts it on exit.
#[pyclass(frozen, module = "shmtel._native")]
pub struct InprogressTracker {
    gauge: Py<GaugeChild>,
}

impl InprogressTracker {
    /// A tracker on `gauge`.
    pub fn new(gauge: Py<GaugeChild>) -> InprogressTracker {
        InprogressTracker { gauge }
    }
}

#[pymethods]
impl InprogressTracker {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.get().gauge.get().add(1.0);
        slf.clone()
    }

    #[pyo3(signature = (exc_type = None, exc = None, tb = None))]
    fn __exit__(
        &self,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let _ = (exc_type, exc, tb);
        self.gauge.get().add(-1.0);
        false
    }

    fn _fresh(&self, py: Python<'_>) -> InprogressTracker {
        InprogressTracker::new(self.gauge.clone_ref(py))
    }

    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(slf.py(), func, slf.getattr("_fresh")?)
    }
}

/// Counts exceptions of a type (and its subclasses) leaving a block or a function.
#[pyclass(frozen, module = "shmtel._native")]
pub struct ExceptionCounter {
    counter: Py<CounterChild>,
    exception: Py<PyAny>,
}

impl ExceptionCounter {
    /// A counter of `exception` (default `Exception`; a type or a tuple of types).
    pub fn new(
        counter: Py<CounterChild>,
        exception: Option<Bound<'_, PyAny>>,
    ) -> PyResult<ExceptionCounter> {
        Python::attach(|py| {
            let exception = match exception.filter(|e| !e.is_none()) {
                Some(e) => e.unbind(),
                None => py
                    .get_type::<pyo3::exceptions::PyException>()
                    .into_any()
                    .unbind(),
            };
            let ok = exception.bind(py).cast::<PyType>().is_ok()
                || exception.bind(py).cast::<pyo3::types::PyTuple>().is_ok();
            if !ok {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "exception must be an exception type or a tuple of them",
                ));
            }
            Ok(ExceptionCounter { counter, exception })
        })
    }
}

#[pymethods]
impl ExceptionCounter {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }

    #[pyo3(signature = (exc_type = None, exc = None, tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc, tb);
        if let Some(t) = exc_type.filter(|t| !t.is_none()) {
            let t = t.cast::<PyType>()?;
            let matches = match self.exception.bind(py).cast::<pyo3::types::PyTuple>() {
                Ok(types) => {
                    let mut any = false;
                    for ty in types.iter() {
                        any |= t.is_subclass(&ty)?;
                    }
                    any
                }
                Err(_) => t.is_subclass(self.exception.bind(py))?,
            };
            if matches && t.is_subclass_of::<PyBaseException>()? {
                self.counter.get().add(1.0)?;
            }
        }
        Ok(false)
    }

    fn _fresh(&self, py: Python<'_>) -> ExceptionCounter {
        ExceptionCounter {
            counter: self.counter.clone_ref(py),
            exception: self.exception.clone_ref(py),
        }
    }

    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(slf.py(), func, slf.getattr("_fresh")?)
    }
}
