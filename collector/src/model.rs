//! The snapshot data model: what the aggregator hands to the exposition renderers.
//!
//! A snapshot is plain owned data, built once per scrape (or cached between scrapes) by the
//! aggregator and read by [`crate::exposition`]. It carries no behaviour and makes no promise
//! that its contents are valid: the renderers check names, label sets and value shapes, skip
//! what would produce an invalid exposition and count what they skipped.

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A monotonically non-decreasing total, exposed as `<name>_total`.
    Counter,
    /// A value that can go up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
    /// Precomputed quantiles, a sum and a count.
    Summary,
}

impl MetricKind {
    /// The type name used on `# TYPE` lines (the same in both text formats).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// Something besides the aggregator that contributes families to `/metrics` (span-derived RED
/// metrics, exporter self-metrics). Called on every scrape, from the HTTP server's blocking pool.
pub trait FamilyProvider: Send + Sync {
    /// A snapshot of this provider's families.
    fn families(&self) -> Vec<FamilySnapshot>;
}

/// One metric family: a name, its metadata and all its series.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    /// The registered name. For a counter a trailing `_total` is optional: `requests` and
    /// `requests_total` both expose the sample `requests_total`.
    pub name: String,
    /// Help text; any UTF-8, escaped on output.
    pub help: String,
    /// The unit (`seconds`, `bytes`, ...) or empty. Exposed as `# UNIT` in OpenMetrics only
    /// when the name ends with `_<unit>`, as the specification requires.
    pub unit: String,
    /// The type of every series in [`series`](Self::series).
    pub kind: MetricKind,
    /// The series, in exposition order. Each must have a distinct label set (a repeated one is
    /// skipped) and a [`SeriesValue`] matching [`kind`](Self::kind).
    pub series: Vec<SeriesSnapshot>,
}

/// One series of a family: a label set and its current value.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSnapshot {
    /// Label names and values, in any order (the renderers sort them by name, as
    /// prometheus_client does). Names must be valid label names, unique in the set, and not
    /// the reserved `le` (histograms) or `quantile` (summaries).
    pub labels: Vec<(String, String)>,
    /// The value; its variant must match the family's [`MetricKind`].
    pub value: SeriesValue,
    /// When the series was created or last reset, in Unix seconds: exposed as `<name>_created`
    /// for counters, histograms and summaries; ignored for gauges.
    pub created_unix_secs: Option<f64>,
}

/// The value of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesValue {
    /// A counter's running total (non-negative, not NaN) and optionally the exemplar of its
    /// latest increment.
    Counter {
        /// The total.
        total: f64,
        /// An exemplar for the total (OpenMetrics only).
        exemplar: Option<ExemplarSnapshot>,
    },
    /// A gauge's value (any float, including NaN and infinities).
    Gauge(f64),
    /// A histogram with cumulative buckets.
    Histogram {
        /// Buckets in strictly increasing order of `upper`; the last one has
        /// `upper == f64::INFINITY` and `cumulative == count`.
        buckets: Vec<BucketSnapshot>,
        /// The sum of all observations (not NaN).
        sum: f64,
        /// The number of observations.
        count: u64,
    },
    /// A summary with precomputed quantiles.
    Summary {
        /// `(quantile, value)` pairs; quantiles are in `[0, 1]` and distinct, values are not
        /// negative (NaN means no observation in the window).
        quantiles: Vec<(f64, f64)>,
        /// The sum of all observations.
        sum: f64,
        /// The number of observations.
        count: u64,
    },
}

impl SeriesValue {
    /// The [`MetricKind`] this value belongs to.
    pub fn kind(&self) -> MetricKind {
        match self {
            SeriesValue::Counter { .. } => MetricKind::Counter,
            SeriesValue::Gauge(_) => MetricKind::Gauge,
            SeriesValue::Histogram { .. } => MetricKind::Histogram,
            SeriesValue::Summary { .. } => MetricKind::Summary,
        }
    }
}

/// One cumulative histogram bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSnapshot {
    /// Inclusive upper bound (`le`); `f64::INFINITY` for the last bucket.
    pub upper: f64,
    /// Observations `<= upper` (cumulative over all lower buckets).
    pub cumulative: u64,
    /// An observation that fell into this bucket (OpenMetrics only).
    pub exemplar: Option<ExemplarSnapshot>,
}

/// A reference from a sample to a trace: exposed in OpenMetrics as
/// `# {trace_id="…",span_id="…"} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarSnapshot {
    /// The W3C trace id as 32 lowercase hex digits.
    pub trace_id: String,
    /// The span id as 16 lowercase hex digits.
    pub span_id: String,
    /// The observed value (for a histogram bucket it lies inside that bucket's range).
    pub value: f64,
    /// When the value was observed, in Unix seconds.
    pub unix_secs: Option<f64>,
}
