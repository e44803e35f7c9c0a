//! Metric families created through this module: create-or-get by name, the per-family cache
//! of children, and the process view (`render_process_metrics`, `reset_process_view`).

use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use shmtel_core::{CounterVec, GaugeMode, GaugeVec, HistogramVec, SummaryVec};

use crate::exposition::{go_float, write_header, write_sample};
use crate::shadow::Series;

/// Metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram.
    Histogram,
    /// Summary.
    Summary,
}

impl Kind {
    /// prometheus_client's type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// The core family behind a Python family object.
pub enum CoreVec {
    /// Counter family.
    Counter(CounterVec),
    /// Gauge family.
    Gauge(GaugeVec),
    /// Histogram family.
    Histogram(HistogramVec),
    /// Summary family.
    Summary(SummaryVec),
}

/// One metric family, shared by every Python object created with its name.
pub struct Family {
    /// Metric type.
    pub kind: Kind,
    /// Full name (counters: without `_total`).
    pub name: String,
    /// Help text.
    pub documentation: String,
    /// Label names.
    pub labelnames: Vec<String>,
    /// Label names as a Python tuple.
    pub labelnames_py: Py<PyTuple>,
    /// Unit ("" if none).
    pub unit: String,
    /// Gauge merge mode (prometheus_client spelling).
    pub mode: String,
    /// Histogram bucket bounds without +Inf.
    pub bounds: Arc<[f64]>,
    /// The core family.
    pub core: CoreVec,
    /// Label-values tuple -> child object.
    pub children: Py<PyDict>,
    /// Shadow series, in creation order.
    pub series: Mutex<Vec<Arc<Series>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent if a holder panicked (pushes and clones only).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static FAMILIES: Mutex<Vec<Arc<Family>>> = Mutex::new(Vec::new());

/// A core error as the Python exception prometheus_client users expect.
pub fn core_err(e: shmtel_core::Error) -> PyErr {
    use shmtel_core::Error as E;
    match e {
        E::InvalidName(n) => PyValueError::new_err(format!("Invalid metric or label name: {n}")),
        E::LabelCount { .. } => PyValueError::new_err("Incorrect label count"),
        E::Conflict(s) => {
            PyValueError::new_err(format!("Duplicated timeseries in CollectorRegistry: {s}"))
        }
        E::InvalidBuckets(s) => PyValueError::new_err(format!("Invalid buckets: {s}")),
        E::Io(s) => PyOSError::new_err(s),
        E::TableFull => PyRuntimeError::new_err("shmtel interning table is full"),
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// prometheus_client's `_build_full_name`.
pub fn full_name(
    kind: Kind,
    name: &str,
    namespace: &str,
    subsystem: &str,
    unit: &str,
) -> PyResult<String> {
    if name.is_empty() {
        return Err(PyValueError::new_err("Metric name should not be empty"));
    }
    let mut full = String::new();
    for part in [namespace, subsystem] {
        if !part.is_empty() {
            full.push_str(part);
            full.push('_');
        }
    }
    full.push_str(name);
    if kind == Kind::Counter && full.ends_with("_total") {
        full.truncate(full.len() - "_total".len());
    }
    if !unit.is_empty() && !full.ends_with(&format!("_{unit}")) {
        full.push('_');
        full.push_str(unit);
    }
    if !valid_metric_name(&full) {
        return Err(PyValueError::new_err(format!(
            "Invalid metric name: {full}"
        )));
    }
    Ok(full)
}

fn label_names(kind: Kind, labelnames: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(obj) = labelnames.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "labelnames must be a sequence of str, not a str",
        ));
    }
    let mut names = Vec::new();
    for item in obj.try_iter()? {
        let item = item?;
        let s = item
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("label names must be str"))?
            .to_str()?
            .to_owned();
        if !valid_label_name(&s) {
            return Err(PyValueError::new_err(format!(
                "Invalid label metric name: {s}"
            )));
        }
        let reserved =
            (kind == Kind::Histogram && s == "le") || (kind == Kind::Summary && s == "quantile");
        if s.starts_with("__") || reserved {
            return Err(PyValueError::new_err(format!(
                "Reserved label metric name: {s}"
            )));
        }
        if names.contains(&s) {
            return Err(PyValueError::new_err(format!("Duplicated label name: {s}")));
        }
        names.push(s);
    }
    Ok(names)
}

fn bucket_bounds(buckets: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<f64>> {
    let Some(obj) = buckets.filter(|o| !o.is_none()) else {
        return Ok(shmtel_core::DEFAULT_BUCKETS.to_vec());
    };
    let mut b = Vec::new();
    for item in obj.try_iter()? {
        let item = item?;
        let v: f64 = match item.extract::<f64>() {
            Ok(v) => v,
            // float(x), so strings such as "+Inf" work as in prometheus_client.
            Err(_) => item
                .py()
                .get_type::<pyo3::types::PyFloat>()
                .call1((&item,))
                .and_then(|f| f.extract::<f64>())
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "invalid bucket bound: {}",
                        crate::values::display(&item)
                    ))
                })?,
        };
        b.push(v);
    }
    if b.windows(2)
        .any(|w| w[0].partial_cmp(&w[1]).is_none_or(|o| o.is_gt()))
    {
        return Err(PyValueError::new_err("Buckets not in sorted order"));
    }
    if b.last() == Some(&f64::INFINITY) {
        b.pop();
    }
    if b.is_empty() {
        return Err(PyValueError::new_err("Must have at least two buckets"));
    }
    if b.iter().any(|x| !x.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
        return Err(PyValueError::new_err(
            "Buckets must be finite, strictly increasing numbers (a trailing +Inf is implied)",
        ));
    }
    Ok(b)
}

/// Arguments common to every family constructor.
pub struct Spec<'a, 'py> {
    /// Metric type.
    pub kind: Kind,
    /// `name`.
    pub name: &'a str,
    /// `documentation`.
    pub documentation: &'a str,
    /// `labelnames`.
    pub labelnames: Option<&'a Bound<'py, PyAny>>,
    /// `namespace`.
    pub namespace: &'a str,
    /// `subsystem`.
    pub subsystem: &'a str,
    /// `unit`.
    pub unit: &'a str,
    /// Gauge `multiprocess_mode`.
    pub mode: &'a str,
    /// Histogram `buckets`.
    pub buckets: Option<&'a Bound<'py, PyAny>>,
}

/// Create or get the family `spec` names.
pub fn family(py: Python<'_>, spec: Spec<'_, '_>) -> PyResult<Arc<Family>> {
    let name = full_name(
        spec.kind,
        spec.name,
        spec.namespace,
        spec.subsystem,
        spec.unit,
    )?;
    if !spec.unit.is_empty()
        && !spec
            .unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(PyValueError::new_err(format!(
            "Invalid unit: {}",
            spec.unit
        )));
    }
    let labelnames = label_names(spec.kind, spec.labelnames)?;
    let mode = if spec.kind == Kind::Gauge {
        GaugeMode::parse(spec.mode).ok_or_else(|| {
            PyValueError::new_err(format!("Invalid multiprocess mode: {}", spec.mode))
        })?
    } else {
        GaugeMode::All
    };
    let bounds = if spec.kind == Kind::Histogram {
        bucket_bounds(spec.buckets)?
    } else {
        Vec::new()
    };
    let mut families = lock(&FAMILIES);
    if let Some(f) = families.iter().find(|f| f.name == name) {
        let same = f.kind == spec.kind
            && f.labelnames == labelnames
            && (spec.kind != Kind::Histogram || *f.bounds == *bounds)
            && (spec.kind != Kind::Gauge || f.mode == spec.mode);
        return if same {
            Ok(f.clone())
        } else {
            Err(PyValueError::new_err(format!(
                "Duplicated timeseries in CollectorRegistry: {name} is already registered with a \
                 different type, label names, buckets or mode"
            )))
        };
    }
    let refs: Vec<&str> = labelnames.iter().map(String::as_str).collect();
    let (doc, unit) = (spec.documentation, spec.unit);
    let core = match spec.kind {
        Kind::Counter => {
            CoreVec::Counter(CounterVec::new_with_unit(&name, doc, unit, &refs).map_err(core_err)?)
        }
        Kind::Gauge => CoreVec::Gauge(
            GaugeVec::new_with_unit(&name, doc, unit, &refs, mode).map_err(core_err)?,
        ),
        Kind::Histogram => CoreVec::Histogram(
            HistogramVec::new_with_unit(&name, doc, unit, &refs, &bounds).map_err(core_err)?,
        ),
        Kind::Summary => {
            CoreVec::Summary(SummaryVec::new_with_unit(&name, doc, unit, &refs).map_err(core_err)?)
        }
    };
    let fam = Arc::new(Family {
        kind: spec.kind,
        name,
        documentation: spec.documentation.to_owned(),
        labelnames_py: PyTuple::new(py, &labelnames)?.unbind(),
        labelnames,
        unit: spec.unit.to_owned(),
        mode: if spec.kind == Kind::Gauge {
            spec.mode.to_owned()
        } else {
            String::new()
        },
        bounds: Arc::from(bounds),
        core,
        children: PyDict::new(py).unbind(),
        series: Mutex::new(Vec::new()),
    });
    families.push(fam.clone());
    Ok(fam)
}

impl Family {
    /// Remember a new child's shadow series for rendering.
    pub fn add_series(&self, s: Arc<Series>) {
        lock(&self.series).push(s);
    }
}

/// Prometheus text 0.0.4 of every family created in this process.
pub fn render() -> String {
    let families: Vec<Arc<Family>> = lock(&FAMILIES).clone();
    let mut out = String::with_capacity(256 * families.len().max(1));
    for fam in families {
        let exposed = match fam.kind {
            Kind::Counter => format!("{}_total", fam.name),
            _ => fam.name.clone(),
        };
        write_header(&mut out, &exposed, &fam.documentation, fam.kind.as_str());
        let series: Vec<Arc<Series>> = lock(&fam.series).clone();
        for s in series {
            let mut labels: Vec<(&str, &str)> = fam
                .labelnames
                .iter()
                .map(String::as_str)
                .zip(s.labelvalues.iter().map(String::as_str))
                .collect();
            match fam.kind {
                Kind::Counter | Kind::Gauge => {
                    labels.sort_unstable();
                    write_sample(&mut out, &exposed, &labels, s.value.get());
                }
                Kind::Histogram => {
                    let cumulative = s.cumulative();
                    let bucket_name = format!("{}_bucket", fam.name);
                    for (i, n) in cumulative.iter().enumerate() {
                        let le = go_float(fam.bounds.get(i).copied().unwrap_or(f64::INFINITY));
                        let mut l = labels.clone();
                        l.push(("le", &le));
                        l.sort_unstable();
                        write_sample(&mut out, &bucket_name, &l, *n as f64);
                    }
                    labels.sort_unstable();
                    let count = cumulative.last().copied().unwrap_or(0);
                    write_sample(
                        &mut out,
                        &format!("{}_count", fam.name),
                        &labels,
                        count as f64,
                    );
                    write_sample(&mut out, &format!("{}_sum", fam.name), &labels, s.sum.get());
                }
                Kind::Summary => {
                    labels.sort_unstable();
                    write_sample(
                        &mut out,
                        &format!("{}_count", fam.name),
                        &labels,
                        s.count() as f64,
                    );
                    write_sample(&mut out, &format!("{}_sum", fam.name), &labels, s.sum.get());
                }
            }
        }
    }
    out
}

/// Zero every shadow value (a fork child starts its own view from zero).
pub fn reset() {
    let families: Vec<Arc<Family>> = lock(&FAMILIES).clone();
    for fam in families {
        for s in lock(&fam.series).iter() {
            s.reset();
        }
    }
}
