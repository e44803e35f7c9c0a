//! Merging series across threads and processes.
//!
//! Every series is identified across processes by its family name and label values. Families
//! and series live in slabs indexed by small integers, so applying a drained record is an index
//! and an add; each process keeps a map from its own series ids to slab indices.
//!
//! Merge rules: counters and histograms are summed over every thread and process, dead ones
//! included, so totals never go backwards when a worker exits. Gauges keep one cell per process
//! and are merged at render time by the family's mode (prometheus_client's multiprocess modes:
//! `all`/`liveall` keep a series per process labelled `pid`; `sum`, `min`, `max`, `mostrecent`
//! and their `live` variants combine them).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shmtel_core::layout::{gauge_mode, metric_type};
use shmtel_core::reader::{FamilyInfo, SeriesInfo};

use crate::model::{
    BucketSnapshot, ExemplarSnapshot, FamilySnapshot, MetricKind, SeriesSnapshot, SeriesValue,
};

/// Per-metric overrides from the configuration file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Histogram buckets by metric name (replace the writer's).
    pub buckets: HashMap<String, Vec<f64>>,
    /// Quantiles by metric name: summaries always get quantiles (default 0.5, 0.9, 0.99);
    /// histograms listed here get a companion summary family `<name>_quantiles`.
    pub quantiles: HashMap<String, Vec<f64>>,
    /// Gauge merge mode by metric name (replaces the writer's).
    pub gauge_modes: HashMap<String, u8>,
}

/// Quantiles of a summary when the configuration names none.
pub const DEFAULT_QUANTILES: &[f64] = &[0.5, 0.9, 0.99];

/// An exemplar as stored: ids and the observation's wall-clock time.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredExemplar {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Observed value.
    pub value: f64,
    /// Wall-clock ns.
    pub wall_ns: u64,
}

/// One process's view of a gauge series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaugeCell {
    /// Writer pid.
    pub pid: u32,
    /// Writer start time.
    pub start: u64,
    /// Current value.
    pub value: f64,
    /// Wall-clock ns of the last set (0: never set, only added to).
    pub set_ns: u64,
    /// Whether the process is alive.
    pub alive: bool,
}

/// The aggregated data of a series.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SeriesData {
    /// Sum of all increments.
    Counter {
        /// Total.
        total: f64,
    },
    /// One cell per process.
    Gauge {
        /// Cells.
        cells: Vec<GaugeCell>,
    },
    /// Bucket counts (non-cumulative; the last is +Inf), sum and count.
    Histogram {
        /// Per-bucket counts.
        counts: Vec<u64>,
        /// Sum of observations.
        sum: f64,
        /// Number of observations.
        count: u64,
        /// Latest exemplar per bucket.
        #[serde(skip)]
        exemplars: Vec<Option<StoredExemplar>>,
        /// Quantile estimator (summaries, or histograms with configured quantiles).
        #[serde(skip)]
        hdr: Option<Box<hdrhistogram::Histogram<u64>>>,
    },
}

/// A series.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesAgg {
    /// Index of its family.
    pub family: u32,
    /// Label values, in the family's label-name order.
    pub labels: Vec<String>,
    /// Creation time (Unix seconds).
    pub created: f64,
    /// The data.
    pub data: SeriesData,
}

/// A family.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FamilyAgg {
    /// Name as registered.
    pub name: String,
    /// Help text.
    pub help: String,
    /// Unit.
    pub unit: String,
    /// Metric type code.
    pub metric_type: u8,
    /// Gauge mode code.
    pub mode: u8,
    /// Label names.
    pub labels: Vec<String>,
    /// Bucket bounds in force (no +Inf).
    pub buckets: Vec<f64>,
    /// Quantiles in force (summaries, or histograms with configured quantiles).
    pub quantiles: Vec<f64>,
    /// Series by label values.
    #[serde(skip)]
    by_labels: HashMap<Vec<String>, u32>,
}

/// All aggregated metrics.
#[derive(Default, Serialize, Deserialize)]
pub struct Aggregator {
    families: Vec<FamilyAgg>,
    series: Vec<SeriesAgg>,
    #[serde(skip)]
    by_name: HashMap<String, u32>,
    #[serde(skip)]
    overrides: Overrides,
    #[serde(skip)]
    max_series: usize,
    /// Series refused because `max_series` was reached.
    pub series_refused: u64,
    /// Series whose family conflicts with an earlier registration of the same name.
    pub conflicts: u64,
}

/// Why a series could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// Same name, different type or label names.
    Conflict,
    /// The collector's series limit is reached.
    Limit,
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn new_hdr() -> Box<hdrhistogram::Histogram<u64>> {
    // Values are recorded in micro-units, 1 to 10^15, three significant digits.
    Box::new(
        hdrhistogram::Histogram::new_with_bounds(1, 1_000_000_000_000_000, 3)
            .expect("valid hdr bounds"),
    )
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new(overrides: Overrides, max_series: usize) -> Aggregator {
        Aggregator {
            overrides,
            max_series,
            ..Default::default()
        }
    }

    /// Rebuild the indices after deserialisation and apply the configuration.
    pub fn restore(mut self, overrides: Overrides, max_series: usize) -> Aggregator {
        self.overrides = overrides;
        self.max_series = max_series;
        self.by_name = self
            .families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i as u32))
            .collect();
        for f in &mut self.families {
            f.by_labels.clear();
        }
        for (i, s) in self.series.iter_mut().enumerate() {
            if let Some(f) = self.families.get_mut(s.family as usize) {
                f.by_labels.insert(s.labels.clone(), i as u32);
            }
            if let SeriesData::Histogram {
                counts,
                exemplars,
                hdr,
                ..
            } = &mut s.data
            {
                exemplars.resize(counts.len(), None);
                let wants_hdr = self
                    .families
                    .get(s.family as usize)
                    .is_some_and(|f| !f.quantiles.is_empty());
                if wants_hdr {
                    *hdr = Some(new_hdr());
                }
            }
        }
        self
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The slab index of a writer's series, creating family and series on first sight.
    pub fn resolve(
        &mut self,
        family: &FamilyInfo,
        series: &SeriesInfo,
    ) -> Result<u32, ResolveError> {
        let fidx = match self.by_name.get(&family.name) {
            Some(&i) => {
                let f = &self.families[i as usize];
                if f.metric_type != family.metric_type || f.labels != family.labels {
                    self.conflicts += 1;
                    return Err(ResolveError::Conflict);
                }
                i
            }
            None => {
                let buckets = self
                    .overrides
                    .buckets
                    .get(&family.name)
                    .cloned()
                    .unwrap_or_else(|| family.buckets.clone());
                let quantiles = match (
                    family.metric_type,
                    self.overrides.quantiles.get(&family.name),
                ) {
                    (_, Some(q)) => q.clone(),
                    (metric_type::SUMMARY, None) => DEFAULT_QUANTILES.to_vec(),
                    _ => Vec::new(),
                };
                let mode = self
                    .overrides
                    .gauge_modes
                    .get(&family.name)
                    .copied()
                    .unwrap_or(family.mode);
                let i = self.families.len() as u32;
                self.families.push(FamilyAgg {
                    name: family.name.clone(),
                    help: family.help.clone(),
                    unit: family.unit.clone(),
                    metric_type: family.metric_type,
                    mode,
                    labels: family.labels.clone(),
                    buckets,
                    quantiles,
                    by_labels: HashMap::new(),
                });
                self.by_name.insert(family.name.clone(), i);
                i
            }
        };
        let f = &self.families[fidx as usize];
        if let Some(&s) = f.by_labels.get(&series.values) {
            return Ok(s);
        }
        if self.series.len() >= self.max_series {
            self.series_refused += 1;
            return Err(ResolveError::Limit);
        }
        let data = match f.metric_type {
            metric_type::COUNTER => SeriesData::Counter { total: 0.0 },
            metric_type::GAUGE => SeriesData::Gauge { cells: Vec::new() },
            _ => {
                let n = f.buckets.len() + 1;
                SeriesData::Histogram {
                    counts: vec![0; n],
                    sum: 0.0,
                    count: 0,
                    exemplars: vec![None; n],
                    hdr: (!f.quantiles.is_empty()).then(new_hdr),
                }
            }
        };
        let idx = self.series.len() as u32;
        self.series.push(SeriesAgg {
            family: fidx,
            labels: series.values.clone(),
            created: now_unix(),
            data,
        });
        self.families[fidx as usize]
            .by_labels
            .insert(series.values.clone(), idx);
        Ok(idx)
    }

    /// Add to a counter (or, for a gauge, to the process's cell).
    #[inline]
    pub fn add(&mut self, idx: u32, pid: u32, start: u64, v: f64) {
        match &mut self.series[idx as usize].data {
            SeriesData::Counter { total } => *total += v,
            SeriesData::Gauge { cells } => cell(cells, pid, start).value += v,
            SeriesData::Histogram { .. } => {}
        }
    }

    /// Make a process's gauge cell exist (at 0), as prometheus_client's multiprocess mode shows
    /// a gauge from its creation; other kinds need nothing: their series starts at 0.
    pub fn touch(&mut self, idx: u32, pid: u32, start: u64) {
        if let SeriesData::Gauge { cells } = &mut self.series[idx as usize].data {
            cell(cells, pid, start);
        }
    }

    /// Set a gauge cell, unless a later set (by wall-clock time) was already applied.
    #[inline]
    pub fn set(&mut self, idx: u32, pid: u32, start: u64, wall_ns: u64, v: f64) {
        if let SeriesData::Gauge { cells } = &mut self.series[idx as usize].data {
            let c = cell(cells, pid, start);
            if wall_ns >= c.set_ns {
                c.value = v;
                c.set_ns = wall_ns.max(1);
            }
        }
    }

    /// Record a histogram or summary observation.
    #[inline]
    pub fn observe(&mut self, idx: u32, v: f64, exemplar: Option<StoredExemplar>) {
        let s = &mut self.series[idx as usize];
        if let SeriesData::Histogram {
            counts,
            sum,
            count,
            exemplars,
            hdr,
        } = &mut s.data
        {
            let buckets = &self.families[s.family as usize].buckets;
            let b = buckets.partition_point(|&ub| ub < v);
            counts[b] += 1;
            *sum += v;
            *count += 1;
            if let Some(e) = exemplar {
                exemplars[b] = Some(e);
            }
            if let Some(h) = hdr {
                let micros = (v * 1e6).clamp(1.0, 1e15) as u64;
                let _ = h.record(micros);
            }
        }
    }

    /// Mark a process's gauge cells dead (the `live*` modes drop them).
    pub fn mark_dead(&mut self, pid: u32, start: u64) {
        for s in &mut self.series {
            if let SeriesData::Gauge { cells } = &mut s.data {
                for c in cells
                    .iter_mut()
                    .filter(|c| c.pid == pid && c.start == start)
                {
                    c.alive = false;
                }
                let live_only = self.families[s.family as usize].mode % 2 == 1;
                if live_only {
                    cells.retain(|c| c.alive);
                }
            }
        }
    }

    /// The current value of a counter series by family name and labels (tests, state checks).
    pub fn counter_total(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let f = &self.families[*self.by_name.get(name)? as usize];
        let key: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        match &self.series[*f.by_labels.get(&key)? as usize].data {
            SeriesData::Counter { total } => Some(*total),
            _ => None,
        }
    }

    /// A snapshot of every family for rendering.
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        let mut out: Vec<FamilySnapshot> = self
            .families
            .iter()
            .map(|f| FamilySnapshot {
                name: f.name.clone(),
                help: f.help.clone(),
                unit: f.unit.clone(),
                kind: match f.metric_type {
                    metric_type::COUNTER => MetricKind::Counter,
                    metric_type::GAUGE => MetricKind::Gauge,
                    metric_type::HISTOGRAM => MetricKind::Histogram,
                    _ => MetricKind::Summary,
                },
                series: Vec::new(),
            })
            .collect();
        let mut quantile_families: HashMap<u32, FamilySnapshot> = HashMap::new();
        for s in &self.series {
            let f = &self.families[s.family as usize];
            let labels: Vec<(String, String)> = f
                .labels
                .iter()
                .cloned()
                .zip(s.labels.iter().cloned())
                .collect();
            let created = Some(s.created);
            let target = &mut out[s.family as usize].series;
            match &s.data {
                SeriesData::Counter { total } => target.push(SeriesSnapshot {
                    labels,
                    value: SeriesValue::Counter {
                        total: *total,
                        exemplar: None,
                    },
                    created_unix_secs: created,
                }),
                SeriesData::Gauge { cells } => gauge_series(f, labels, cells, target),
                SeriesData::Histogram {
                    counts,
                    sum,
                    count,
                    exemplars,
                    hdr,
                } => {
                    let quantiles =
                        |h: &Option<Box<hdrhistogram::Histogram<u64>>>| -> Vec<(f64, f64)> {
                            f.quantiles
                                .iter()
                                .map(|&q| match h {
                                    Some(h) if !h.is_empty() => {
                                        (q, h.value_at_quantile(q) as f64 / 1e6)
                                    }
                                    _ => (q, f64::NAN),
                                })
                                .collect()
                        };
                    if f.metric_type == metric_type::SUMMARY {
                        target.push(SeriesSnapshot {
                            labels,
                            value: SeriesValue::Summary {
                                quantiles: quantiles(hdr),
                                sum: *sum,
                                count: *count,
                            },
                            created_unix_secs: created,
                        });
                        continue;
                    }
                    let mut cumulative = 0;
                    let buckets = counts
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            cumulative += c;
                            BucketSnapshot {
                                upper: f.buckets.get(i).copied().unwrap_or(f64::INFINITY),
                                cumulative,
                                exemplar: exemplars
                                    .get(i)
                                    .cloned()
                                    .flatten()
                                    .map(exemplar_snapshot),
                            }
                        })
                        .collect();
                    if !f.quantiles.is_empty() {
                        quantile_families
                            .entry(s.family)
                            .or_insert_with(|| FamilySnapshot {
                                name: format!("{}_quantiles", f.name),
                                help: format!("{} (quantiles estimated by the collector)", f.help),
                                unit: String::new(),
                                kind: MetricKind::Summary,
                                series: Vec::new(),
                            })
                            .series
                            .push(SeriesSnapshot {
                                labels: labels.clone(),
                                value: SeriesValue::Summary {
                                    quantiles: quantiles(hdr),
                                    sum: *sum,
                                    count: *count,
                                },
                                created_unix_secs: created,
                            });
                    }
                    target.push(SeriesSnapshot {
                        labels,
                        value: SeriesValue::Histogram {
                            buckets,
                            sum: *sum,
                            count: *count,
                        },
                        created_unix_secs: created,
                    });
                }
            }
        }
        let mut extra: Vec<_> = quantile_families.into_iter().collect();
        extra.sort_by_key(|(k, _)| *k);
        out.extend(extra.into_iter().map(|(_, f)| f));
        out
    }
}

fn cell(cells: &mut Vec<GaugeCell>, pid: u32, start: u64) -> &mut GaugeCell {
    let i = match cells.iter().position(|c| c.pid == pid && c.start == start) {
        Some(i) => i,
        None => {
            cells.push(GaugeCell {
                pid,
                start,
                value: 0.0,
                set_ns: 0,
                alive: true,
            });
            cells.len() - 1
        }
    };
    &mut cells[i]
}

fn exemplar_snapshot(e: StoredExemplar) -> ExemplarSnapshot {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    ExemplarSnapshot {
        trace_id: hex(&e.trace_id),
        span_id: hex(&e.span_id),
        value: e.value,
        unix_secs: Some(e.wall_ns as f64 / 1e9),
    }
}

fn gauge_series(
    f: &FamilyAgg,
    labels: Vec<(String, String)>,
    cells: &[GaugeCell],
    out: &mut Vec<SeriesSnapshot>,
) {
    let live_only = f.mode % 2 == 1;
    let cells: Vec<&GaugeCell> = cells.iter().filter(|c| c.alive || !live_only).collect();
    let one = |v: f64| SeriesSnapshot {
        labels: labels.clone(),
        value: SeriesValue::Gauge(v),
        created_unix_secs: None,
    };
    match f.mode {
        gauge_mode::ALL | gauge_mode::LIVEALL => {
            let mut cells = cells;
            cells.sort_by_key(|c| (c.pid, c.start));
            for c in cells {
                let mut l = labels.clone();
                l.push(("pid".into(), c.pid.to_string()));
                out.push(SeriesSnapshot {
                    labels: l,
                    value: SeriesValue::Gauge(c.value),
                    created_unix_secs: None,
                });
            }
        }
        _ if cells.is_empty() => {}
        gauge_mode::SUM | gauge_mode::LIVESUM => out.push(one(cells.iter().map(|c| c.value).sum())),
        gauge_mode::MIN | gauge_mode::LIVEMIN => out.push(one(cells
            .iter()
            .map(|c| c.value)
            .fold(f64::INFINITY, f64::min))),
        gauge_mode::MAX | gauge_mode::LIVEMAX => out.push(one(cells
            .iter()
            .map(|c| c.value)
            .fold(f64::NEG_INFINITY, f64::max))),
        _ => {
            let latest = cells.iter().max_by_key(|c| c.set_ns).expect("non-empty");
            out.push(one(latest.value));
        }
    }
}
