//! Exposition: [`FamilySnapshot`]s rendered as Prometheus text 0.0.4 or OpenMetrics 1.0.0.
//!
//! Pure formatting functions in the manner of metrics-rs's exporter: they append to a
//! caller-owned `String` and do no I/O and no logging. They never allocate per sample: scratch
//! buffers and the table of claimed names are set up once per call and grow with the largest
//! series and the number of families.
//!
//! Both renderers check their input, since a snapshot may carry names and values that came
//! from another process: a family whose name is not a valid metric name, or whose exposed
//! sample names would clash with an earlier family's, is skipped whole; a series with an
//! invalid or reserved label name, a duplicated label name, a label set an earlier series of
//! the family already had, a value of the wrong kind or a value the OpenMetrics data model
//! forbids (a NaN or negative counter, unsorted histogram buckets, a quantile outside
//! `[0, 1]`, ...) is skipped alone. What was skipped is counted in the returned
//! [`RenderStats`]; nothing invalid is ever written.
//!
//! The two formats share their label rendering: label pairs sorted by name (as
//! prometheus_client does), values escaped, histogram `le` and summary `quantile` label values
//! written as canonical numbers ([`format::write_go_float`]).

pub mod format;
mod openmetrics;
mod prometheus_text;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hasher;

use crate::model::{ExemplarSnapshot, FamilySnapshot, MetricKind, SeriesSnapshot, SeriesValue};

pub use openmetrics::render_openmetrics;
pub use prometheus_text::render_prometheus;

/// `Content-Type` of [`render_prometheus`]'s output.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `Content-Type` of [`render_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One of the two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpositionFormat {
    /// Prometheus text format 0.0.4 ([`render_prometheus`]).
    PrometheusText,
    /// OpenMetrics 1.0.0 text format ([`render_openmetrics`]).
    OpenMetrics,
}

impl ExpositionFormat {
    /// Picks the format for an HTTP `Accept` header: OpenMetrics when any entry is
    /// `application/openmetrics-text` (whatever its parameters, unless `q=0`), else the
    /// Prometheus text format, which is also the answer for a missing header.
    pub fn from_accept(accept: Option<&str>) -> ExpositionFormat {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|entry| {
                let mut parts = entry.split(';');
                let media_type = parts.next().unwrap_or("").trim();
                media_type.eq_ignore_ascii_case("application/openmetrics-text")
                    && !parts.any(is_zero_quality)
            })
        });
        if wants_openmetrics {
            ExpositionFormat::OpenMetrics
        } else {
            ExpositionFormat::PrometheusText
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
            ExpositionFormat::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// Appends `families` rendered in this format to `out`.
    pub fn render(self, families: &[FamilySnapshot], out: &mut String) -> RenderStats {
        match self {
            ExpositionFormat::PrometheusText => render_prometheus(families, out),
            ExpositionFormat::OpenMetrics => render_openmetrics(families, out),
        }
    }
}

/// Whether a media-type parameter is `q=0` (with any number of zero decimals): "not acceptable".
pub(crate) fn is_zero_quality(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("q") && value.trim().parse::<f64>() == Ok(0.0)
}

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`
/// (reserved for internal use).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    !name.starts_with("__") && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What one render call wrote and what it left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenderStats {
    /// Families written (their metadata lines, and their valid series).
    pub families: usize,
    /// Series written.
    pub series: usize,
    /// Families left out whole (invalid name, or a sample name clash with an earlier family).
    pub skipped_families: usize,
    /// Series left out (counted only inside families that were written).
    pub skipped_series: usize,
    /// Exemplars left out of an otherwise written sample (OpenMetrics only): ids missing or too
    /// long, value outside the bucket, or a non-finite timestamp.
    pub dropped_exemplars: usize,
    /// The first thing skipped, for a log line.
    pub first_skip: Option<Skip>,
}

impl RenderStats {
    /// Whether anything at all was skipped or dropped.
    pub fn is_clean(&self) -> bool {
        self.skipped_families == 0 && self.skipped_series == 0 && self.dropped_exemplars == 0
    }

    fn skip_family(&mut self, family: usize, reason: SkipReason) {
        self.skipped_families += 1;
        self.first_skip.get_or_insert(Skip {
            family,
            series: None,
            reason,
        });
    }

    fn skip_series(&mut self, family: usize, series: usize, reason: SkipReason) {
        self.skipped_series += 1;
        self.first_skip.get_or_insert(Skip {
            family,
            series: Some(series),
            reason,
        });
    }
}

/// Where something was skipped: indexes into the rendered slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    /// Index of the family in the input slice.
    pub family: usize,
    /// Index of the series in the family, or `None` when the whole family was skipped.
    pub series: Option<usize>,
    /// Why.
    pub reason: SkipReason,
}

/// Why a family or a series was left out of an exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The family name is not a valid metric name (or a counter's name is just `_total`).
    InvalidMetricName,
    /// The family's name, or one of its sample names, equals an earlier family's.
    NameClash,
    /// A label name is invalid or starts with `__`.
    InvalidLabelName,
    /// A histogram series has an `le` label, or a summary series a `quantile` label.
    ReservedLabelName,
    /// A label name appears twice in one series.
    DuplicateLabelName,
    /// An earlier series of the family has the same label set.
    DuplicateSeries,
    /// The series value's variant does not match the family's kind.
    KindMismatch,
    /// A counter total is NaN or negative.
    InvalidCounterTotal,
    /// Histogram buckets are empty, not strictly increasing, NaN, missing the final `+Inf`
    /// bucket, or their cumulative counts decrease.
    InvalidBuckets,
    /// A histogram's count differs from its `+Inf` bucket.
    CountMismatch,
    /// A histogram or summary sum is NaN.
    NanSum,
    /// A summary quantile is NaN, outside `[0, 1]`, or repeated; or its value is negative.
    InvalidQuantile,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::InvalidMetricName => "invalid metric name",
            SkipReason::NameClash => "metric name clashes with an earlier family",
            SkipReason::InvalidLabelName => "invalid label name",
            SkipReason::ReservedLabelName => "reserved label name (le or quantile)",
            SkipReason::DuplicateLabelName => "duplicate label name",
            SkipReason::DuplicateSeries => "an earlier series has the same label set",
            SkipReason::KindMismatch => "series value does not match the family type",
            SkipReason::InvalidCounterTotal => "counter total is NaN or negative",
            SkipReason::InvalidBuckets => "invalid histogram buckets",
            SkipReason::CountMismatch => "histogram count differs from its +Inf bucket",
            SkipReason::NanSum => "sum is NaN",
            SkipReason::InvalidQuantile => "invalid summary quantile",
        })
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.series {
            Some(series) => write!(
                f,
                "family #{} series #{}: {}",
                self.family, series, self.reason
            ),
            None => write!(f, "family #{}: {}", self.family, self.reason),
        }
    }
}

/// Sample-name suffixes each kind exposes besides its bare family name.
fn suffixes(kind: MetricKind) -> &'static [&'static str] {
    match kind {
        MetricKind::Counter => &["_total", "_created"],
        MetricKind::Gauge => &[],
        MetricKind::Histogram => &["_bucket", "_count", "_sum", "_created"],
        MetricKind::Summary => &["_count", "_sum", "_created"],
    }
}

const ALL_SUFFIXES: [&str; 5] = ["_total", "_created", "_bucket", "_count", "_sum"];

/// The family name proper: a counter's registered name without a trailing `_total`.
fn base_name(family: &FamilySnapshot) -> Option<&str> {
    let name = match family.kind {
        MetricKind::Counter => family.name.strip_suffix("_total").unwrap_or(&family.name),
        _ => &family.name,
    };
    is_valid_metric_name(name).then_some(name)
}

/// The names claimed so far in one exposition, to keep every exposed name unique.
///
/// Two families clash when `base1 + s1 == base2 + s2` for suffixes each exposes (the empty
/// suffix included). Every suffix is `_` followed by letters, so that happens only if the bases
/// are equal, or one base is the other plus one of the other's suffixes: three kinds of lookup
/// by base name, no string built per sample.
struct FamilyNames<'a> {
    bases: HashMap<&'a str, MetricKind>,
    buf: String,
}

impl<'a> FamilyNames<'a> {
    fn new() -> Self {
        FamilyNames {
            bases: HashMap::new(),
            buf: String::new(),
        }
    }

    /// Claims `base` and its suffixed names for a family of `kind`; false if any is taken.
    fn claim(&mut self, base: &'a str, kind: MetricKind) -> bool {
        if self.bases.contains_key(base) {
            return false;
        }
        for suffix in ALL_SUFFIXES {
            if let Some(stem) = base.strip_suffix(suffix) {
                if let Some(&other) = self.bases.get(stem) {
                    if suffixes(other).contains(&suffix) {
                        return false;
                    }
                }
            }
        }
        for suffix in suffixes(kind) {
            self.buf.clear();
            self.buf.push_str(base);
            self.buf.push_str(suffix);
            if self.bases.contains_key(self.buf.as_str()) {
                return false;
            }
        }
        self.bases.insert(base, kind);
        true
    }
}

/// Per-render scratch space, reused for every series so that rendering does not allocate.
struct Scratch {
    order: Vec<usize>,
    /// The series' own labels that sort before the reserved label (all of them when there is
    /// none), rendered as `a="x",b="y"`.
    before: String,
    /// The series' own labels that sort after the reserved label.
    after: String,
    /// Reserved-label values (`le`, `quantile`) by position in the series, with the bits of
    /// the float each was formatted from: series of a family mostly share their bounds, so
    /// most are formatted once per render rather than once per sample.
    numbers: Vec<(Option<u64>, String)>,
    /// Hashes of the current family's label sets written so far, each with the index of the
    /// first series that had it.
    label_sets: HashMap<u64, usize>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            order: Vec::new(),
            before: String::new(),
            after: String::new(),
            numbers: Vec::new(),
            label_sets: HashMap::new(),
        }
    }

    /// Checks a series' label names and renders its labels sorted by name, split around
    /// `reserved` (the name of the label the family type adds to some samples).
    fn prepare_labels(
        &mut self,
        labels: &[(String, String)],
        reserved: Option<&str>,
    ) -> Result<(), SkipReason> {
        self.order.clear();
        self.before.clear();
        self.after.clear();
        for (i, (name, _)) in labels.iter().enumerate() {
            if !is_valid_label_name(name) {
                return Err(SkipReason::InvalidLabelName);
            }
            if reserved == Some(name.as_str()) {
                return Err(SkipReason::ReservedLabelName);
            }
            self.order.push(i);
        }
        if labels.len() > 1 {
            self.order
                .sort_unstable_by(|&a, &b| labels[a].0.cmp(&labels[b].0));
            if self
                .order
                .windows(2)
                .any(|w| labels[w[0]].0 == labels[w[1]].0)
            {
                return Err(SkipReason::DuplicateLabelName);
            }
        }
        for &i in &self.order {
            let (name, value) = &labels[i];
            let target = match reserved {
                Some(r) if name.as_str() > r => &mut self.after,
                _ => &mut self.before,
            };
            if !target.is_empty() {
                target.push(',');
            }
            target.push_str(name);
            target.push_str("=\"");
            format::write_escaped_label_value(target, value);
            target.push('"');
        }
        Ok(())
    }

    /// Starts a new family: forgets the previous family's label sets.
    fn start_family(&mut self) {
        self.label_sets.clear();
    }

    /// Checks that series `index` (whose labels [`prepare_labels`](Self::prepare_labels) just
    /// rendered) has a label set no earlier written series of the family had. The rendered
    /// labels are sorted and escaped, so equal sets render equal: hashing them finds the
    /// candidate, and comparing the sets themselves rules out a hash collision.
    fn check_unique(&mut self, series: &[SeriesSnapshot], index: usize) -> Result<(), SkipReason> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        hasher.write(self.before.as_bytes());
        // 0xff never occurs in UTF-8: `before` and `after` cannot run into each other.
        hasher.write_u8(0xff);
        hasher.write(self.after.as_bytes());
        match self.label_sets.entry(hasher.finish()) {
            Entry::Vacant(slot) => {
                slot.insert(index);
                Ok(())
            }
            Entry::Occupied(first) => {
                if same_label_set(&series[*first.get()].labels, &series[index].labels) {
                    Err(SkipReason::DuplicateSeries)
                } else {
                    // A genuine 64-bit collision: both are distinct, write both.
                    Ok(())
                }
            }
        }
    }

    /// Formats `v` (a bucket bound or a quantile) as the canonical label value for position
    /// `index` of the series, reusing the text when the previous series had the same value
    /// there, and returns its index for [`number`](Self::number).
    fn format_number(&mut self, index: usize, v: f64) -> usize {
        if self.numbers.len() <= index {
            self.numbers
                .resize_with(index + 1, || (None, String::new()));
        }
        let (bits, text) = &mut self.numbers[index];
        if *bits != Some(v.to_bits()) {
            text.clear();
            format::write_go_float(text, v);
            *bits = Some(v.to_bits());
        }
        index
    }

    /// The text [`format_number`](Self::format_number) produced for `index`.
    fn number(&self, index: usize) -> &str {
        &self.numbers[index].1
    }

    /// Writes `name suffix {labels}` (braces only when there are labels), with the reserved
    /// label `extra = (name, value)` in its sorted place when given.
    fn write_series_name(
        &self,
        out: &mut String,
        name: &str,
        suffix: &str,
        extra: Option<(&str, &str)>,
    ) {
        out.push_str(name);
        out.push_str(suffix);
        if self.before.is_empty() && self.after.is_empty() && extra.is_none() {
            return;
        }
        out.push('{');
        out.push_str(&self.before);
        let mut written = !self.before.is_empty();
        if let Some((label, value)) = extra {
            if written {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            out.push_str(value);
            out.push('"');
            written = true;
        }
        if !self.after.is_empty() {
            if written {
                out.push(',');
            }
            out.push_str(&self.after);
        }
        out.push('}');
    }
}

/// The label a family type adds to some of its samples, reserved in its series' own labels.
fn reserved_label(kind: MetricKind) -> Option<&'static str> {
    match kind {
        MetricKind::Histogram => Some("le"),
        MetricKind::Summary => Some("quantile"),
        MetricKind::Counter | MetricKind::Gauge => None,
    }
}

/// Checks series `index` of `family` against the data model and against the family's earlier
/// series, and renders its labels into `scratch`.
fn prepare_series(
    family: &FamilySnapshot,
    index: usize,
    scratch: &mut Scratch,
) -> Result<(), SkipReason> {
    let series = &family.series[index];
    check_value(family.kind, &series.value)?;
    scratch.prepare_labels(&series.labels, reserved_label(family.kind))?;
    scratch.check_unique(&family.series, index)
}

/// Whether two label sets (each with unique names) are equal, whatever their order.
fn same_label_set(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.len() == b.len() && a.iter().all(|pair| b.contains(pair))
}

fn check_value(kind: MetricKind, value: &SeriesValue) -> Result<(), SkipReason> {
    if value.kind() != kind {
        return Err(SkipReason::KindMismatch);
    }
    match value {
        SeriesValue::Counter { total, .. } => {
            if total.is_nan() || *total < 0.0 {
                return Err(SkipReason::InvalidCounterTotal);
            }
        }
        SeriesValue::Gauge(_) => {}
        SeriesValue::Histogram {
            buckets,
            sum,
            count,
        } => {
            let last = buckets.last().ok_or(SkipReason::InvalidBuckets)?;
            if last.upper != f64::INFINITY {
                return Err(SkipReason::InvalidBuckets);
            }
            let mut previous: Option<(f64, u64)> = None;
            for bucket in buckets {
                if bucket.upper.is_nan() {
                    return Err(SkipReason::InvalidBuckets);
                }
                if let Some((upper, cumulative)) = previous {
                    if bucket.upper <= upper || bucket.cumulative < cumulative {
                        return Err(SkipReason::InvalidBuckets);
                    }
                }
                previous = Some((bucket.upper, bucket.cumulative));
            }
            if last.cumulative != *count {
                return Err(SkipReason::CountMismatch);
            }
            if sum.is_nan() {
                return Err(SkipReason::NanSum);
            }
        }
        SeriesValue::Summary { quantiles, sum, .. } => {
            for (i, &(q, v)) in quantiles.iter().enumerate() {
                if !(0.0..=1.0).contains(&q) || v < 0.0 || quantiles[..i].iter().any(|p| p.0 == q) {
                    return Err(SkipReason::InvalidQuantile);
                }
            }
            if sum.is_nan() {
                return Err(SkipReason::NanSum);
            }
        }
    }
    Ok(())
}

/// Whether an exemplar can be written: ids present and within the 128-character label budget,
/// a value that is not NaN and lies in `(lower, upper]` when a bucket range is given, and a
/// finite timestamp if any.
fn exemplar_is_valid(exemplar: &ExemplarSnapshot, bucket: Option<(f64, f64)>) -> bool {
    const LABEL_CHARS: usize = "trace_id".len() + "span_id".len();
    let id_chars = exemplar.trace_id.chars().count() + exemplar.span_id.chars().count();
    let in_range = match bucket {
        Some((lower, upper)) => exemplar.value > lower && exemplar.value <= upper,
        None => !exemplar.value.is_nan(),
    };
    !exemplar.trace_id.is_empty()
        && !exemplar.span_id.is_empty()
        && LABEL_CHARS + id_chars <= 128
        && in_range
        && exemplar.unix_secs.is_none_or(f64::is_finite)
}

/// Writes ` # {trace_id="…",span_id="…"} value[ timestamp]`.
fn write_exemplar(out: &mut String, exemplar: &ExemplarSnapshot) {
    out.push_str(" # {trace_id=\"");
    format::write_escaped_label_value(out, &exemplar.trace_id);
    out.push_str("\",span_id=\"");
    format::write_escaped_label_value(out, &exemplar.span_id);
    out.push_str("\"} ");
    format::write_go_float(out, exemplar.value);
    if let Some(ts) = exemplar.unix_secs {
        out.push(' ');
        // Positional rather than Go's exponent form: the spec asks timestamps not to use it.
        format::write_python_repr(out, ts);
    }
}
