//! Counters, gauges and histograms: handles that cache their series id.
//!
//! Registering a family or a new label set is the slow path (interning). Recording through a
//! handle is one frame appended to the thread's ring. `*Vec::with_label_values` looks the label
//! set up in a thread-local cache first, so a repeated lookup takes no lock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::Error;
use crate::layout::*;
use crate::table::{valid_label_name, valid_metric_name, with_process, FamilyDef};
use crate::writer::{append, count_drop, overflow_add, overflow_set, with_thread, DropKind};

/// prometheus_client's default histogram buckets (+Inf is implied).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// How the collector merges a gauge across processes (prometheus_client's multiprocess modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GaugeMode {
    /// One series per process, with a `pid` label (dead processes kept).
    #[default]
    All,
    /// One series per live process.
    LiveAll,
    /// Sum over processes.
    Sum,
    /// Sum over live processes.
    LiveSum,
    /// Minimum over processes.
    Min,
    /// Minimum over live processes.
    LiveMin,
    /// Maximum over processes.
    Max,
    /// Maximum over live processes.
    LiveMax,
    /// The most recently set value.
    MostRecent,
    /// The most recently set value among live processes.
    LiveMostRecent,
}

impl GaugeMode {
    /// The layout's code for this mode.
    pub fn code(self) -> u8 {
        use crate::layout::gauge_mode as m;
        match self {
            GaugeMode::All => m::ALL,
            GaugeMode::LiveAll => m::LIVEALL,
            GaugeMode::Sum => m::SUM,
            GaugeMode::LiveSum => m::LIVESUM,
            GaugeMode::Min => m::MIN,
            GaugeMode::LiveMin => m::LIVEMIN,
            GaugeMode::Max => m::MAX,
            GaugeMode::LiveMax => m::LIVEMAX,
            GaugeMode::MostRecent => m::MOSTRECENT,
            GaugeMode::LiveMostRecent => m::LIVEMOSTRECENT,
        }
    }

    /// Parse prometheus_client's spelling (`all`, `liveall`, `sum`, `livesum`, `min`, ...).
    pub fn parse(s: &str) -> Option<GaugeMode> {
        Some(match s {
            "all" => GaugeMode::All,
            "liveall" => GaugeMode::LiveAll,
            "sum" => GaugeMode::Sum,
            "livesum" => GaugeMode::LiveSum,
            "min" => GaugeMode::Min,
            "livemin" => GaugeMode::LiveMin,
            "max" => GaugeMode::Max,
            "livemax" => GaugeMode::LiveMax,
            "mostrecent" => GaugeMode::MostRecent,
            "livemostrecent" => GaugeMode::LiveMostRecent,
            _ => return None,
        })
    }
}

fn register(
    name: &str,
    help: &str,
    labels: &[&str],
    metric_type: u8,
    mode: u8,
    buckets: &[f64],
) -> Result<FamilyDef, Error> {
    register_with_unit(name, help, "", labels, metric_type, mode, buckets)
}

fn register_with_unit(
    name: &str,
    help: &str,
    unit: &str,
    labels: &[&str],
    metric_type: u8,
    mode: u8,
    buckets: &[f64],
) -> Result<FamilyDef, Error> {
    if !unit.is_empty() && !unit.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::InvalidName(format!("unit {unit:?}")));
    }
    if !valid_metric_name(name) {
        return Err(Error::InvalidName(name.to_owned()));
    }
    for l in labels {
        let reserved = (metric_type == metric_type::HISTOGRAM && *l == "le")
            || (metric_type == metric_type::SUMMARY && *l == "quantile");
        if !valid_label_name(l) || reserved {
            return Err(Error::InvalidName((*l).to_owned()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if !labels.iter().all(|l| seen.insert(*l)) {
        return Err(Error::InvalidName(format!(
            "duplicate label name in {labels:?}"
        )));
    }
    let buckets = if metric_type == metric_type::HISTOGRAM {
        check_buckets(buckets)?
    } else {
        Vec::new()
    };
    with_process(|p| {
        p.family(FamilyDef {
            id: 0,
            metric_type,
            mode,
            name: name.to_owned(),
            help: help.to_owned(),
            unit: unit.to_owned(),
            labels: labels.iter().map(|s| (*s).to_owned()).collect(),
            buckets,
        })
    })
}

fn check_buckets(buckets: &[f64]) -> Result<Vec<f64>, Error> {
    let mut b: Vec<f64> = if buckets.is_empty() {
        DEFAULT_BUCKETS.to_vec()
    } else {
        buckets.to_vec()
    };
    if b.last() == Some(&f64::INFINITY) {
        b.pop();
    }
    if b.iter().any(|x| !x.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::InvalidBuckets(format!(
            "{buckets:?} must be finite and strictly increasing"
        )));
    }
    Ok(b)
}

fn series_of(family: &FamilyDef, values: &[&str]) -> Result<u32, Error> {
    with_process(|p| p.series(family, values))
}

/// Thread-local cache of (family, label values) -> series id, so repeated labelled lookups
/// take no lock.
/// (family id, label values, series id) entries sharing one hash.
type CacheBucket = Vec<(u32, Box<[Box<str>]>, u32)>;

pub(crate) struct LabelCache {
    map: Option<HashMap<u64, CacheBucket, BuildHasherDefault<IdHasher>>>,
}

#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("IdHasher only hashes u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl LabelCache {
    pub(crate) const fn new() -> Self {
        LabelCache { map: None }
    }
}

#[inline(always)]
fn hash_labels(family: u32, values: &[&str]) -> u64 {
    // FxHash-style mixing (rotate, xor, multiply) over 8-byte words; the last partial word is
    // read wyhash-style with fixed-size loads, never through a variable-length copy.
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = (family as u64).wrapping_mul(K);
    for v in values {
        let b = v.as_bytes();
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let r = chunks.remainder();
        let tail = match r.len() {
            0 => 0,
            1..=3 => (r[0] as u64) | (r[r.len() / 2] as u64) << 8 | (r[r.len() - 1] as u64) << 16,
            n => {
                let lo = u32::from_le_bytes(r[..4].try_into().expect("4 bytes")) as u64;
                let hi = u32::from_le_bytes(r[n - 4..].try_into().expect("4 bytes")) as u64;
                lo | hi << 32
            }
        };
        h = (h.rotate_left(5) ^ tail ^ ((b.len() as u64) << 56)).wrapping_mul(K);
    }
    h
}

#[inline]
fn lookup(family: &FamilyDef, values: &[&str]) -> Result<u32, Error> {
    let h = hash_labels(family.id, values);
    let hit = with_thread(|st| {
        let map = st.label_cache.map.as_ref()?;
        map.get(&h)?
            .iter()
            .find(|(f, v, _)| {
                *f == family.id
                    && v.len() == values.len()
                    && v.iter().zip(values).all(|(a, b)| &**a == *b)
            })
            .map(|e| e.2)
    })
    .flatten();
    if let Some(id) = hit {
        return Ok(id);
    }
    let id = series_of(family, values)?;
    with_thread(|st| {
        let map = st.label_cache.map.get_or_insert_with(Default::default);
        // Bounded: at most the number of series the process may intern, per thread.
        map.entry(h).or_default().push((
            family.id,
            values.iter().map(|v| Box::<str>::from(*v)).collect(),
            id,
        ));
    });
    Ok(id)
}

#[inline(always)]
fn add_counter(series: u32, value: f64) {
    let body = CounterAdd {
        series,
        reserved: 0,
        value,
    };
    with_thread(|st| {
        if !append(st, KIND_COUNTER_ADD, 0, &body) {
            overflow_add(st, series, value);
        }
    });
}

#[inline(always)]
fn gauge_update(kind: u16, series: u32, value: f64) {
    let ts = crate::clock::now_ticks();
    let body = GaugeUpdate {
        series,
        reserved: 0,
        ts,
        value,
    };
    with_thread(|st| {
        if !append(st, kind, 0, &body) {
            if kind == KIND_GAUGE_SET {
                overflow_set(st, series, ts, value);
            } else {
                overflow_add(st, series, value);
            }
        }
    });
}

/// A monotonic counter series (a handle: copy it freely).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    series: u32,
}

impl Counter {
    /// Register (or get) an unlabelled counter. `name` without the `_total` suffix is
    /// conventional; the collector exposes `<name>_total`.
    pub fn new(name: &str, help: &str) -> Result<Counter, Error> {
        let f = register(name, help, &[], metric_type::COUNTER, 0, &[])?;
        Ok(Counter {
            series: series_of(&f, &[])?,
        })
    }

    /// Add 1.
    #[inline(always)]
    pub fn inc(&self) {
        add_counter(self.series, 1.0);
    }

    /// Add `v`; negative or non-finite values are ignored (counters only go up).
    #[inline(always)]
    pub fn add(&self, v: f64) {
        if v >= 0.0 && v.is_finite() {
            add_counter(self.series, v);
        }
    }

    /// The series id.
    pub fn series_id(&self) -> u32 {
        self.series
    }
}

/// A counter family with label names.
#[derive(Clone, Debug)]
pub struct CounterVec {
    family: FamilyDef,
}

impl CounterVec {
    /// Register (or get) a labelled counter family.
    pub fn new(name: &str, help: &str, labels: &[&str]) -> Result<CounterVec, Error> {
        Ok(CounterVec {
            family: register(name, help, labels, metric_type::COUNTER, 0, &[])?,
        })
    }

    /// Register (or get) a labelled counter family with a unit (OpenMetrics `# UNIT`; the
    /// name should already end with `_<unit>`).
    pub fn new_with_unit(
        name: &str,
        help: &str,
        unit: &str,
        labels: &[&str],
    ) -> Result<CounterVec, Error> {
        Ok(CounterVec {
            family: register_with_unit(name, help, unit, labels, metric_type::COUNTER, 0, &[])?,
        })
    }

    /// The series for these label values (in label-name order).
    pub fn get_with_label_values(&self, values: &[&str]) -> Result<Counter, Error> {
        Ok(Counter {
            series: lookup(&self.family, values)?,
        })
    }

    /// Like [`CounterVec::get_with_label_values`], panicking on a wrong label count.
    #[inline]
    pub fn with_label_values(&self, values: &[&str]) -> Counter {
        self.get_with_label_values(values)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A gauge series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gauge {
    series: u32,
}

impl Gauge {
    /// Register (or get) an unlabelled gauge with a cross-process merge mode.
    pub fn new(name: &str, help: &str, mode: GaugeMode) -> Result<Gauge, Error> {
        let f = register(name, help, &[], metric_type::GAUGE, mode.code(), &[])?;
        Ok(Gauge {
            series: series_of(&f, &[])?,
        })
    }

    /// Set the value.
    #[inline(always)]
    pub fn set(&self, v: f64) {
        gauge_update(KIND_GAUGE_SET, self.series, v);
    }

    /// Add `v` (negative subtracts).
    #[inline(always)]
    pub fn add(&self, v: f64) {
        gauge_update(KIND_GAUGE_ADD, self.series, v);
    }

    /// Add 1.
    #[inline(always)]
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtract 1.
    #[inline(always)]
    pub fn dec(&self) {
        self.add(-1.0);
    }

    /// The series id.
    pub fn series_id(&self) -> u32 {
        self.series
    }
}

/// A gauge family with label names.
#[derive(Clone, Debug)]
pub struct GaugeVec {
    family: FamilyDef,
}

impl GaugeVec {
    /// Register (or get) a labelled gauge family.
    pub fn new(
        name: &str,
        help: &str,
        labels: &[&str],
        mode: GaugeMode,
    ) -> Result<GaugeVec, Error> {
        Ok(GaugeVec {
            family: register(name, help, labels, metric_type::GAUGE, mode.code(), &[])?,
        })
    }

    /// Register (or get) a labelled gauge family with a unit (see [`CounterVec::new_with_unit`]).
    pub fn new_with_unit(
        name: &str,
        help: &str,
        unit: &str,
        labels: &[&str],
        mode: GaugeMode,
    ) -> Result<GaugeVec, Error> {
        Ok(GaugeVec {
            family: register_with_unit(
                name,
                help,
                unit,
                labels,
                metric_type::GAUGE,
                mode.code(),
                &[],
            )?,
        })
    }

    /// The series for these label values.
    pub fn get_with_label_values(&self, values: &[&str]) -> Result<Gauge, Error> {
        Ok(Gauge {
            series: lookup(&self.family, values)?,
        })
    }

    /// Like [`GaugeVec::get_with_label_values`], panicking on a wrong label count.
    #[inline]
    pub fn with_label_values(&self, values: &[&str]) -> Gauge {
        self.get_with_label_values(values)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A histogram series. Buckets live in the family definition; the collector bins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    series: u32,
}

impl Histogram {
    /// Register (or get) an unlabelled histogram; empty `buckets` means [`DEFAULT_BUCKETS`].
    pub fn new(name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, Error> {
        let f = register(name, help, &[], metric_type::HISTOGRAM, 0, buckets)?;
        Ok(Histogram {
            series: series_of(&f, &[])?,
        })
    }

    /// Record an observation. Inside a sampled span, the span's ids ride along as an exemplar.
    #[inline(always)]
    pub fn observe(&self, v: f64) {
        let series = self.series;
        with_thread(|st| {
            if st.span.has_current() {
                observe_in_span(st, series, v);
            } else {
                observe_with(st, series, v, None);
            }
        });
    }

    /// Record an observation with an explicit exemplar.
    pub fn observe_with_exemplar(&self, v: f64, trace_id: [u8; 16], span_id: [u8; 8]) {
        let ex = Exemplar {
            trace_id,
            span_id,
            ts: crate::clock::now_ticks(),
        };
        with_thread(|st| observe_with(st, self.series, v, Some(ex)));
    }

    /// The series id.
    pub fn series_id(&self) -> u32 {
        self.series
    }
}

/// The exemplar path, out of line: most observations are made outside a span.
#[cold]
#[inline(never)]
fn observe_in_span(st: &mut crate::writer::ThreadState, series: u32, v: f64) {
    let ex = st.span.current().map(|ctx| Exemplar {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        ts: crate::clock::now_ticks(),
    });
    observe_with(st, series, v, ex);
}

#[inline(always)]
fn observe_with(
    st: &mut crate::writer::ThreadState,
    series: u32,
    value: f64,
    ex: Option<Exemplar>,
) {
    let body = HistogramObserve {
        series,
        reserved: 0,
        value,
    };
    let ok = match ex {
        None => append(st, KIND_HISTOGRAM, 0, &body),
        Some(ex) => {
            #[repr(C)]
            #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
            struct WithExemplar {
                obs: HistogramObserve,
                ex: Exemplar,
            }
            append(
                st,
                KIND_HISTOGRAM,
                FLAG_EXEMPLAR,
                &WithExemplar { obs: body, ex },
            )
        }
    };
    if !ok {
        count_drop(st, DropKind::Other);
    }
}

/// A histogram family with label names.
#[derive(Clone, Debug)]
pub struct HistogramVec {
    family: FamilyDef,
}

impl HistogramVec {
    /// Register (or get) a labelled histogram family.
    pub fn new(
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, Error> {
        Ok(HistogramVec {
            family: register(name, help, labels, metric_type::HISTOGRAM, 0, buckets)?,
        })
    }

    /// Register (or get) a labelled histogram family with a unit (see
    /// [`CounterVec::new_with_unit`]).
    pub fn new_with_unit(
        name: &str,
        help: &str,
        unit: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, Error> {
        Ok(HistogramVec {
            family: register_with_unit(
                name,
                help,
                unit,
                labels,
                metric_type::HISTOGRAM,
                0,
                buckets,
            )?,
        })
    }

    /// The bucket upper bounds in force (without `+Inf`).
    pub fn buckets(&self) -> &[f64] {
        &self.family.buckets
    }

    /// The series for these label values.
    pub fn get_with_label_values(&self, values: &[&str]) -> Result<Histogram, Error> {
        Ok(Histogram {
            series: lookup(&self.family, values)?,
        })
    }

    /// Like [`HistogramVec::get_with_label_values`], panicking on a wrong label count.
    #[inline]
    pub fn with_label_values(&self, values: &[&str]) -> Histogram {
        self.get_with_label_values(values)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A summary series: count and sum of observations, with quantiles estimated by the collector
/// (hdrhistogram; default 0.5, 0.9, 0.99, configurable per metric in the collector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    series: u32,
}

impl Summary {
    /// Register (or get) an unlabelled summary.
    pub fn new(name: &str, help: &str) -> Result<Summary, Error> {
        let f = register(name, help, &[], metric_type::SUMMARY, 0, &[])?;
        Ok(Summary {
            series: series_of(&f, &[])?,
        })
    }

    /// Record an observation.
    #[inline(always)]
    pub fn observe(&self, v: f64) {
        let series = self.series;
        with_thread(|st| observe_with(st, series, v, None));
    }

    /// The series id.
    pub fn series_id(&self) -> u32 {
        self.series
    }
}

/// A summary family with label names.
#[derive(Clone, Debug)]
pub struct SummaryVec {
    family: FamilyDef,
}

impl SummaryVec {
    /// Register (or get) a labelled summary family.
    pub fn new(name: &str, help: &str, labels: &[&str]) -> Result<SummaryVec, Error> {
        Ok(SummaryVec {
            family: register(name, help, labels, metric_type::SUMMARY, 0, &[])?,
        })
    }

    /// Register (or get) a labelled summary family with a unit (see
    /// [`CounterVec::new_with_unit`]).
    pub fn new_with_unit(
        name: &str,
        help: &str,
        unit: &str,
        labels: &[&str],
    ) -> Result<SummaryVec, Error> {
        Ok(SummaryVec {
            family: register_with_unit(name, help, unit, labels, metric_type::SUMMARY, 0, &[])?,
        })
    }

    /// The series for these label values.
    pub fn get_with_label_values(&self, values: &[&str]) -> Result<Summary, Error> {
        Ok(Summary {
            series: lookup(&self.family, values)?,
        })
    }

    /// Like [`SummaryVec::get_with_label_values`], panicking on a wrong label count.
    #[inline]
    pub fn with_label_values(&self, values: &[&str]) -> Summary {
        self.get_with_label_values(values)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
