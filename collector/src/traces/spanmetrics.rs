//! RED metrics from spans, like the OpenTelemetry Collector's `spanmetrics` connector.
//!
//! Every span the collector sees (sampled or not, kept by tail sampling or not) counts in two
//! families, labelled `service_name`, `span_name`, `span_kind` (`SPAN_KIND_SERVER`, ...) and
//! `status_code` (`STATUS_CODE_UNSET|OK|ERROR`):
//! - `traces_span_metrics_calls_total`: spans; errors are the `status_code="STATUS_CODE_ERROR"`
//!   series (rate) and the exemplar is the latest span's trace and span ids;
//! - `traces_span_metrics_duration_seconds`: a histogram of `end - start`, each bucket with the
//!   latest span that fell into it as its exemplar (OpenMetrics only).
//!
//! Cardinality stays bounded two ways: a series not updated for `expiry_ms` is removed (it
//! restarts from zero, with a new `_created`, if the label set comes back), and beyond
//! `max_series` new label sets record into one overflow series labelled
//! `otel_metric_overflow="true"` (the OpenTelemetry SDKs' cardinality-limit convention),
//! counted in `shmtel_spanmetrics_overflow_spans_total`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Deserialize;

use super::hash::FoldState;
use super::hex;
use crate::model::{
    BucketSnapshot, ExemplarSnapshot, FamilyProvider, FamilySnapshot, MetricKind, SeriesSnapshot,
    SeriesValue,
};
use crate::sinks::SpanData;

/// The connector's default duration buckets, in seconds (2 ms .. 15 s).
pub const DEFAULT_BUCKETS: [f64; 16] = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];

/// Name of the calls counter family (exposed as `..._total`).
pub const CALLS: &str = "traces_span_metrics_calls";
/// Name of the duration histogram family.
pub const DURATION: &str = "traces_span_metrics_duration_seconds";

/// The `[traces.spanmetrics]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// Whether to derive metrics from spans (default true).
    pub enabled: bool,
    /// Duration bucket upper bounds in seconds, strictly increasing (`+Inf` implied).
    pub buckets: Vec<f64>,
    /// A series not updated for this long is removed (default 5 minutes).
    pub expiry_ms: u64,
    /// Most series held; beyond, new label sets go to the overflow series (default 10000).
    pub max_series: usize,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            enabled: true,
            buckets: DEFAULT_BUCKETS.to_vec(),
            expiry_ms: 300_000,
            max_series: 10_000,
        }
    }
}

impl SpanMetricsConfig {
    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_owned(), m.to_owned()));
        if self.buckets.len() > 1000 {
            return err("buckets", "at most 1000 bucket bounds");
        }
        if self.buckets.iter().any(|b| !b.is_finite()) {
            return err("buckets", "bounds must be finite (+Inf is implied)");
        }
        if self.buckets.windows(2).any(|w| w[0] >= w[1]) {
            return err("buckets", "bounds must be strictly increasing");
        }
        if self.expiry_ms == 0 {
            return err("expiry_ms", "must be at least 1");
        }
        if self.max_series == 0 {
            return err("max_series", "must be at least 1");
        }
        Ok(())
    }
}

/// The `span_kind` label value of an OpenTelemetry kind code.
pub fn kind_label(kind: u8) -> &'static str {
    use shmtel_core::layout::span_kind as k;
    match kind {
        k::INTERNAL => "SPAN_KIND_INTERNAL",
        k::SERVER => "SPAN_KIND_SERVER",
        k::CLIENT => "SPAN_KIND_CLIENT",
        k::PRODUCER => "SPAN_KIND_PRODUCER",
        k::CONSUMER => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

/// The `status_code` label value of an OpenTelemetry status code.
pub fn status_label(status: u8) -> &'static str {
    use shmtel_core::layout::span_status as s;
    match status {
        s::OK => "STATUS_CODE_OK",
        s::ERROR => "STATUS_CODE_ERROR",
        _ => "STATUS_CODE_UNSET",
    }
}

#[derive(Clone, Copy, Debug)]
struct Exemplar {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    value: f64,
    unix_ns: u64,
}

impl Exemplar {
    fn snapshot(&self) -> ExemplarSnapshot {
        ExemplarSnapshot {
            trace_id: hex(&self.trace_id),
            span_id: hex(&self.span_id),
            value: self.value,
            unix_secs: (self.unix_ns > 0).then(|| self.unix_ns as f64 / 1e9),
        }
    }
}

/// One label set's counts. `service` and `name` are shared with the snapshots taken from it.
#[derive(Clone)]
struct Series {
    service: Arc<str>,
    name: Arc<str>,
    kind: u8,
    status: u8,
    calls: u64,
    sum: f64,
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    counts: Box<[u64]>,
    exemplars: Box<[Option<Exemplar>]>,
    latest: Option<Exemplar>,
    created_unix_secs: f64,
    last_update: Instant,
}

impl Series {
    fn new(span: &SpanData, buckets: usize, now: Instant, wall_secs: f64) -> Series {
        Series {
            service: span.origin.service.clone(),
            name: span.name.clone(),
            kind: span.kind,
            status: span.status,
            calls: 0,
            sum: 0.0,
            counts: vec![0; buckets + 1].into(),
            exemplars: vec![None; buckets + 1].into(),
            latest: None,
            created_unix_secs: wall_secs,
            last_update: now,
        }
    }

    fn matches(&self, span: &SpanData) -> bool {
        self.kind == span.kind
            && self.status == span.status
            && *self.name == *span.name
            && *self.service == *span.origin.service
    }

    fn observe(&mut self, bucket: usize, ex: Exemplar, now: Instant) {
        self.calls += 1;
        self.sum += ex.value;
        self.counts[bucket] += 1;
        self.exemplars[bucket] = Some(ex);
        self.latest = Some(ex);
        self.last_update = now;
    }
}

/// Everything the sink and the provider share.
struct Table {
    bounds: Box<[f64]>,
    max_series: usize,
    expiry: Duration,
    hasher: FoldState,
    /// Series by a hash of their label values; collisions share a vector. The map hashes that
    /// hash again with the same seeded hasher (one multiply, where SipHash cost more than the
    /// label hash itself).
    index: HashMap<u64, Vec<Series>, FoldState>,
    len: usize,
    overflow: Option<Series>,
    overflow_spans: u64,
    expired: u64,
    /// Refreshed by `tick`: recording does not read the clocks per span.
    now: Instant,
    wall_secs: f64,
}

impl Table {
    fn record(&mut self, span: &SpanData) {
        let secs = span.end_ns.saturating_sub(span.start_ns) as f64 / 1e9;
        // The first bound >= secs: buckets are `(lower, upper]`.
        let bucket = self.bounds.partition_point(|&b| b < secs);
        let ex = Exemplar {
            trace_id: span.trace_id,
            span_id: span.span_id,
            value: secs,
            unix_ns: span.end_ns,
        };
        let (now, wall, nb) = (self.now, self.wall_secs, self.bounds.len());
        let h = self
            .hasher
            .hash_one((&*span.origin.service, &*span.name, span.kind, span.status));
        if let Some(list) = self.index.get_mut(&h) {
            if let Some(s) = list.iter_mut().find(|s| s.matches(span)) {
                s.observe(bucket, ex, now);
                return;
            }
        }
        if self.len >= self.max_series {
            self.overflow_spans += 1;
            self.overflow
                .get_or_insert_with(|| Series::new(span, nb, now, wall))
                .observe(bucket, ex, now);
            return;
        }
        let mut s = Series::new(span, nb, now, wall);
        s.observe(bucket, ex, now);
        self.index.entry(h).or_default().push(s);
        self.len += 1;
    }

    fn expire(&mut self, now: Instant) {
        let expiry = self.expiry;
        let mut removed = 0usize;
        self.index.retain(|_, list| {
            let before = list.len();
            list.retain(|s| now.saturating_duration_since(s.last_update) < expiry);
            removed += before - list.len();
            !list.is_empty()
        });
        self.len -= removed;
        self.expired += removed as u64;
        if self
            .overflow
            .as_ref()
            .is_some_and(|s| now.saturating_duration_since(s.last_update) >= expiry)
        {
            self.overflow = None;
            self.expired += 1;
        }
    }
}

/// The sink side: records spans into the shared table. Built by [`SpanMetrics::new`]; its
/// [`provider`](SpanMetrics::provider) serves the families.
pub struct SpanMetrics {
    table: Arc<Mutex<Table>>,
    last_expiry: Instant,
    expiry_every: Duration,
}

impl SpanMetrics {
    /// Span metrics with `cfg`'s buckets, expiry and cap (`cfg` is assumed valid).
    pub fn new(cfg: &SpanMetricsConfig) -> SpanMetrics {
        let now = Instant::now();
        let expiry = Duration::from_millis(cfg.expiry_ms.max(1));
        let hasher = FoldState::new();
        SpanMetrics {
            table: Arc::new(Mutex::new(Table {
                bounds: cfg.buckets.clone().into(),
                max_series: cfg.max_series,
                expiry,
                hasher,
                index: HashMap::with_hasher(hasher),
                len: 0,
                overflow: None,
                overflow_spans: 0,
                expired: 0,
                now,
                wall_secs: wall_secs(),
            })),
            last_expiry: now,
            // Sweep often enough that a series outlives its expiry by at most a quarter of
            // it, but never more than once a second (a sweep visits every series).
            expiry_every: (expiry / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
        }
    }

    /// The families' provider for `/metrics`.
    pub fn provider(&self) -> Arc<dyn FamilyProvider> {
        Arc::new(SpanMetricsProvider(self.table.clone()))
    }

    /// Count one span.
    pub fn record(&mut self, span: &SpanData) {
        self.table.lock().record(span);
    }

    /// Refresh the clock used for expiry and `_created`, and remove expired series.
    pub fn tick(&mut self) {
        self.tick_at(Instant::now(), wall_secs());
    }

    fn tick_at(&mut self, now: Instant, wall: f64) {
        let mut t = self.table.lock();
        t.now = now;
        t.wall_secs = wall;
        if now.saturating_duration_since(self.last_expiry) >= self.expiry_every {
            self.last_expiry = now;
            t.expire(now);
        }
    }
}

fn wall_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct SpanMetricsProvider(Arc<Mutex<Table>>);

impl FamilyProvider for SpanMetricsProvider {
    fn families(&self) -> Vec<FamilySnapshot> {
        // Copy under the lock (cheap: shared strings, small arrays), format outside it, so a
        // scrape holds up the drain thread as little as possible.
        let (bounds, mut series, overflow, overflow_spans, expired) = {
            let t = self.0.lock();
            let series: Vec<Series> = t.index.values().flatten().cloned().collect();
            (
                t.bounds.clone(),
                series,
                t.overflow.clone(),
                t.overflow_spans,
                t.expired,
            )
        };
        series.sort_by(|a, b| {
            (&a.service, &a.name, a.kind, a.status).cmp(&(&b.service, &b.name, b.kind, b.status))
        });
        let live = series.len();
        let mut calls = Vec::with_capacity(series.len() + 1);
        let mut durations = Vec::with_capacity(series.len() + 1);
        let labelled = series.into_iter().map(|s| {
            let labels = vec![
                ("service_name".to_owned(), s.service.to_string()),
                ("span_name".to_owned(), s.name.to_string()),
                ("span_kind".to_owned(), kind_label(s.kind).to_owned()),
                ("status_code".to_owned(), status_label(s.status).to_owned()),
            ];
            (labels, s)
        });
        let overflow = overflow.map(|s| {
            (
                vec![("otel_metric_overflow".to_owned(), "true".to_owned())],
                s,
            )
        });
        for (labels, s) in labelled.chain(overflow) {
            calls.push(SeriesSnapshot {
                labels: labels.clone(),
                value: SeriesValue::Counter {
                    total: s.calls as f64,
                    exemplar: s.latest.as_ref().map(Exemplar::snapshot),
                },
                created_unix_secs: Some(s.created_unix_secs),
            });
            let mut cumulative = 0;
            let buckets = s
                .counts
                .iter()
                .zip(s.exemplars.iter())
                .enumerate()
                .map(|(i, (n, ex))| {
                    cumulative += n;
                    BucketSnapshot {
                        upper: bounds.get(i).copied().unwrap_or(f64::INFINITY),
                        cumulative,
                        exemplar: ex.as_ref().map(Exemplar::snapshot),
                    }
                })
                .collect();
            durations.push(SeriesSnapshot {
                labels,
                value: SeriesValue::Histogram {
                    buckets,
                    sum: s.sum,
                    count: s.calls,
                },
                created_unix_secs: Some(s.created_unix_secs),
            });
        }
        let counter = |name: &str, help: &str, v: u64| FamilySnapshot {
            name: name.into(),
            help: help.into(),
            unit: String::new(),
            kind: MetricKind::Counter,
            series: vec![SeriesSnapshot {
                labels: Vec::new(),
                value: SeriesValue::Counter {
                    total: v as f64,
                    exemplar: None,
                },
                created_unix_secs: None,
            }],
        };
        vec![
            FamilySnapshot {
                name: CALLS.into(),
                help: "Spans seen by the collector, by service, span name, kind and status.".into(),
                unit: String::new(),
                kind: MetricKind::Counter,
                series: calls,
            },
            FamilySnapshot {
                name: DURATION.into(),
                help: "Span durations (end - start), by service, span name, kind and status."
                    .into(),
                unit: "seconds".into(),
                kind: MetricKind::Histogram,
                series: durations,
            },
            FamilySnapshot {
                name: "shmtel_spanmetrics_series".into(),
                help: "Label sets held by the span metrics (the overflow series excluded).".into(),
                unit: String::new(),
                kind: MetricKind::Gauge,
                series: vec![SeriesSnapshot {
                    labels: Vec::new(),
                    value: SeriesValue::Gauge(live as f64),
                    created_unix_secs: None,
                }],
            },
            counter(
                "shmtel_spanmetrics_overflow_spans",
                "Spans recorded into the overflow series because max_series label sets were held.",
                overflow_spans,
            ),
            counter(
                "shmtel_spanmetrics_expired_series",
                "Span-metric series removed after expiry_ms without an update.",
                expired,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::span;
    use super::*;
    use shmtel_core::layout::{span_kind, span_status};

    const MS: u64 = 1_000_000;

    fn find<'a>(f: &'a [FamilySnapshot], name: &str) -> &'a FamilySnapshot {
        f.iter().find(|f| f.name == name).expect(name)
    }

    fn series<'a>(f: &'a FamilySnapshot, span_name: &str, status: &str) -> &'a SeriesSnapshot {
        f.series
            .iter()
            .find(|s| {
                s.labels.contains(&("span_name".into(), span_name.into()))
                    && s.labels.contains(&("status_code".into(), status.into()))
            })
            .unwrap_or_else(|| panic!("{span_name} {status} in {:?}", f.series))
    }

    fn total(s: &SeriesSnapshot) -> f64 {
        match &s.value {
            SeriesValue::Counter { total, .. } => *total,
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn counts_calls_errors_and_durations_with_connector_labels() {
        let mut m = SpanMetrics::new(&SpanMetricsConfig::default());
        let p = m.provider();
        for i in 0..10u64 {
            let mut s = span(i, i + 1, 0, 0, 3 * MS); // 3 ms: bucket (0.002, 0.004]
            s.name = "GET /users".into();
            if i < 3 {
                s.status = span_status::ERROR;
            }
            m.record(&s);
        }
        let mut c = span(99, 99, 1, 0, 20_000 * MS); // 20 s: +Inf
        c.kind = span_kind::CLIENT;
        c.status = span_status::OK;
        m.record(&c);

        let f = p.families();
        let calls = find(&f, CALLS);
        assert_eq!(calls.series.len(), 3);
        let ok = series(calls, "GET /users", "STATUS_CODE_UNSET");
        assert_eq!(total(ok), 7.0);
        assert!(ok
            .labels
            .contains(&("span_kind".into(), "SPAN_KIND_SERVER".into())));
        assert!(ok.labels.contains(&("service_name".into(), "svc".into())));
        let err = series(calls, "GET /users", "STATUS_CODE_ERROR");
        assert_eq!(total(err), 3.0);
        match &err.value {
            SeriesValue::Counter {
                exemplar: Some(e), ..
            } => {
                assert_eq!(e.trace_id.len(), 32);
                assert_eq!(e.span_id, "0000000000000003", "the latest span");
            }
            v => panic!("no exemplar: {v:?}"),
        }
        let client = series(calls, "op", "STATUS_CODE_OK");
        assert!(client
            .labels
            .contains(&("span_kind".into(), "SPAN_KIND_CLIENT".into())));

        let d = find(&f, DURATION);
        assert_eq!(d.unit, "seconds");
        match &series(d, "GET /users", "STATUS_CODE_UNSET").value {
            SeriesValue::Histogram {
                buckets,
                sum,
                count,
            } => {
                assert_eq!(*count, 7);
                assert!((sum - 0.021).abs() < 1e-9);
                assert_eq!(buckets.len(), DEFAULT_BUCKETS.len() + 1);
                assert_eq!(buckets[0].cumulative, 0);
                assert!(buckets[0].exemplar.is_none());
                assert_eq!(buckets[1].upper, 0.004);
                assert_eq!(buckets[1].cumulative, 7);
                let e = buckets[1].exemplar.as_ref().expect("exemplar");
                assert_eq!(e.value, 0.003);
                assert_eq!(e.unix_secs, Some(0.003));
                assert_eq!(buckets.last().unwrap().cumulative, 7);
                assert!(buckets.last().unwrap().upper.is_infinite());
            }
            v => panic!("{v:?}"),
        }
        match &series(d, "op", "STATUS_CODE_OK").value {
            SeriesValue::Histogram { buckets, .. } => {
                let inf = buckets.last().unwrap();
                assert_eq!((inf.cumulative, buckets[15].cumulative), (1, 0));
                assert_eq!(inf.exemplar.as_ref().unwrap().value, 20.0);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn boundary_values_fall_in_the_inclusive_bucket() {
        let cfg = SpanMetricsConfig {
            buckets: vec![0.001, 0.002],
            ..Default::default()
        };
        let mut m = SpanMetrics::new(&cfg);
        m.record(&span(1, 1, 0, 0, MS)); // exactly 1 ms: le="0.001"
        m.record(&span(1, 2, 0, 5, 5)); // zero duration: first bucket
        let f = m.provider().families();
        match &find(&f, DURATION).series[0].value {
            SeriesValue::Histogram { buckets, .. } => {
                assert_eq!(buckets[0].cumulative, 2);
                assert_eq!(buckets[2].cumulative, 2);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn series_beyond_the_cap_go_to_the_overflow_series() {
        let cfg = SpanMetricsConfig {
            max_series: 3,
            ..Default::default()
        };
        let mut m = SpanMetrics::new(&cfg);
        for i in 0..10u64 {
            let mut s = span(i, i + 1, 0, 0, MS);
            s.name = format!("op{i}").into();
            m.record(&s);
            m.record(&s);
        }
        let f = m.provider().families();
        let calls = find(&f, CALLS);
        assert_eq!(calls.series.len(), 4);
        let of = calls
            .series
            .iter()
            .find(|s| s.labels == vec![("otel_metric_overflow".to_owned(), "true".to_owned())])
            .expect("overflow series");
        assert_eq!(total(of), 14.0);
        assert_eq!(
            total(&find(&f, "shmtel_spanmetrics_overflow_spans").series[0]),
            14.0
        );
        assert_eq!(
            find(&f, "shmtel_spanmetrics_series").series[0].value,
            SeriesValue::Gauge(3.0)
        );
        // The sum over all series is still every span.
        assert_eq!(calls.series.iter().map(total).sum::<f64>(), 20.0);
    }

    #[test]
    fn idle_series_expire_and_come_back_from_zero() {
        let cfg = SpanMetricsConfig {
            expiry_ms: 1_000,
            max_series: 1,
            ..Default::default()
        };
        let mut m = SpanMetrics::new(&cfg);
        let p = m.provider();
        let t0 = Instant::now();
        m.tick_at(t0, 100.0);
        let mut busy = span(1, 1, 0, 0, MS);
        busy.name = "busy".into();
        let mut idle = span(2, 2, 0, 0, MS);
        idle.name = "idle".into();
        m.record(&idle);
        m.record(&busy); // over the cap: overflow
        for i in 1..=8u64 {
            m.tick_at(t0 + Duration::from_millis(250 * i), 100.0);
            if i == 2 {
                // Still live at 0.5 s.
                assert_eq!(find(&p.families(), CALLS).series.len(), 2);
            }
        }
        // 2 s later, nothing was updated for more than 1 s: everything expired.
        let f = p.families();
        assert!(find(&f, CALLS).series.is_empty());
        assert_eq!(
            total(&find(&f, "shmtel_spanmetrics_expired_series").series[0]),
            2.0
        );
        // The cap is free again: "busy" gets a series of its own, from zero.
        m.record(&busy);
        let f = p.families();
        let s = series(find(&f, CALLS), "busy", "STATUS_CODE_UNSET");
        assert_eq!(total(s), 1.0);
        assert_eq!(s.created_unix_secs, Some(100.0));
    }

    #[test]
    fn every_series_renders_in_openmetrics_with_exemplars() {
        let mut m = SpanMetrics::new(&SpanMetricsConfig::default());
        for i in 1..=5u64 {
            m.record(&span(
                i,
                i,
                0,
                1_700_000_000_000_000_000,
                1_700_000_000_000_000_000 + i * MS * 100,
            ));
        }
        let f = m.provider().families();
        let mut text = String::new();
        let stats = crate::exposition::render_openmetrics(&f, &mut text);
        assert!(stats.is_clean(), "{stats:?}\n{text}");
        let mut prom = String::new();
        let stats = crate::exposition::render_prometheus(&f, &mut prom);
        assert!(stats.is_clean(), "{stats:?}\n{prom}");
        assert!(text.contains("traces_span_metrics_calls_total{"), "{text}");
        assert!(
            text.contains("traces_span_metrics_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("# {trace_id=\""), "{text}");
    }

    #[test]
    fn config_validation() {
        let ok = SpanMetricsConfig::default();
        ok.validate().unwrap();
        for (cfg, key) in [
            (
                SpanMetricsConfig {
                    buckets: vec![0.1, 0.1],
                    ..ok.clone()
                },
                "buckets",
            ),
            (
                SpanMetricsConfig {
                    buckets: vec![f64::INFINITY],
                    ..ok.clone()
                },
                "buckets",
            ),
            (
                SpanMetricsConfig {
                    expiry_ms: 0,
                    ..ok.clone()
                },
                "expiry_ms",
            ),
            (
                SpanMetricsConfig {
                    max_series: 0,
                    ..ok.clone()
                },
                "max_series",
            ),
        ] {
            assert_eq!(cfg.validate().unwrap_err().0, key);
        }
    }
}
