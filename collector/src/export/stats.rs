//! The exporters' self-metrics: what each exporter did with the spans it was given.
//!
//! Every exporter owns one [`ExporterStats`]; a single [`ExporterMetrics`] provider renders all
//! of them, so each family appears once in `/metrics` whatever the number of exporters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::model::{FamilyProvider, FamilySnapshot, MetricKind, SeriesSnapshot, SeriesValue};

/// Counters of one exporter. Written by the drain thread (dropped, queued) and the exporter's
/// sending thread (exported, failed, retries, queued); read on scrapes. Every counter is an
/// independent statistic, so Relaxed ordering is enough throughout.
#[derive(Debug)]
pub struct ExporterStats {
    /// The `exporter` label: `otlp`, `zipkin`, `jsonl` (the `sink` label for log sinks).
    pub name: &'static str,
    /// What it exports, for its own log lines: `spans` or `logs`.
    pub what: &'static str,
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    queued: AtomicU64,
}

impl ExporterStats {
    /// Zeroed counters for the span exporter `name`.
    pub fn new(name: &'static str) -> ExporterStats {
        ExporterStats::new_for(name, "spans")
    }

    /// Zeroed counters for the exporter `name` of `what` (`spans`, `logs`).
    pub fn new_for(name: &'static str, what: &'static str) -> ExporterStats {
        ExporterStats {
            name,
            what,
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        }
    }

    /// Spans the backend accepted.
    pub fn exported(&self) -> u64 {
        // Ordering: Relaxed: an independent statistic.
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans given up on (permanent error, retries exhausted, shutdown).
    pub fn failed(&self) -> u64 {
        // Ordering: Relaxed: an independent statistic.
        self.failed.load(Ordering::Relaxed)
    }

    /// Spans refused because the queue was full.
    pub fn dropped(&self) -> u64 {
        // Ordering: Relaxed: an independent statistic.
        self.dropped.load(Ordering::Relaxed)
    }

    /// Send attempts that were retried.
    pub fn retries(&self) -> u64 {
        // Ordering: Relaxed: an independent statistic.
        self.retries.load(Ordering::Relaxed)
    }

    /// Spans held: waiting for a batch, queued for the sending thread, or being sent.
    pub fn queued(&self) -> u64 {
        // Ordering: Relaxed: a gauge; the queue bound is enforced by the single thread that
        // increments it (the drain thread), which always sees its own increments.
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn add_exported(&self, n: u64) {
        // Ordering: Relaxed: an independent statistic.
        self.exported.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_failed(&self, n: u64) {
        // Ordering: Relaxed: an independent statistic.
        self.failed.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        // Ordering: Relaxed: an independent statistic.
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_retry(&self) {
        // Ordering: Relaxed: an independent statistic.
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_queued(&self, n: u64) {
        // Ordering: Relaxed: see `queued`; no data is published through this counter (the
        // spans travel through a channel, which synchronises on its own).
        self.queued.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub_queued(&self, n: u64) {
        // Ordering: Relaxed: see `add_queued`.
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The `/metrics` families of every span exporter: `shmtel_exporter_spans_total{exporter,result}`,
/// `shmtel_exporter_retries_total{exporter}` and `shmtel_exporter_queue_spans{exporter}`; of
/// every log sink ([`ExporterMetrics::logs`]): `shmtel_log_sink_records_total{sink,result}`,
/// `shmtel_log_sink_retries_total{sink}` and `shmtel_log_sink_queue_records{sink}`.
pub struct ExporterMetrics {
    stats: Vec<Arc<ExporterStats>>,
    created: f64,
    names: Names,
}

/// Family names, label name and wording of one kind of exporter.
struct Names {
    total: &'static str,
    retries: &'static str,
    queue: &'static str,
    label: &'static str,
    items: &'static str,
    exporter: &'static str,
}

impl ExporterMetrics {
    /// A provider over the span exporters' `stats`.
    pub fn new(stats: Vec<Arc<ExporterStats>>) -> ExporterMetrics {
        Self::with_names(
            stats,
            Names {
                total: "shmtel_exporter_spans_total",
                retries: "shmtel_exporter_retries_total",
                queue: "shmtel_exporter_queue_spans",
                label: "exporter",
                items: "Spans",
                exporter: "span exporter",
            },
        )
    }

    /// A provider over the log sinks' `stats`.
    pub fn logs(stats: Vec<Arc<ExporterStats>>) -> ExporterMetrics {
        Self::with_names(
            stats,
            Names {
                total: "shmtel_log_sink_records_total",
                retries: "shmtel_log_sink_retries_total",
                queue: "shmtel_log_sink_queue_records",
                label: "sink",
                items: "Log records",
                exporter: "log sink",
            },
        )
    }

    fn with_names(stats: Vec<Arc<ExporterStats>>, names: Names) -> ExporterMetrics {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        ExporterMetrics {
            stats,
            created,
            names,
        }
    }
}

impl FamilyProvider for ExporterMetrics {
    fn families(&self) -> Vec<FamilySnapshot> {
        let counter = |labels: Vec<(String, String)>, total: u64| SeriesSnapshot {
            labels,
            value: SeriesValue::Counter {
                total: total as f64,
                exemplar: None,
            },
            created_unix_secs: Some(self.created),
        };
        let n = &self.names;
        let exporter = |s: &ExporterStats| (n.label.to_owned(), s.name.to_owned());
        let mut spans = Vec::new();
        let mut retries = Vec::new();
        let mut queue = Vec::new();
        for s in &self.stats {
            for (result, n) in [
                ("exported", s.exported()),
                ("failed", s.failed()),
                ("dropped", s.dropped()),
            ] {
                spans.push(counter(
                    vec![exporter(s), ("result".to_owned(), result.to_owned())],
                    n,
                ));
            }
            retries.push(counter(vec![exporter(s)], s.retries()));
            queue.push(SeriesSnapshot {
                labels: vec![exporter(s)],
                value: SeriesValue::Gauge(s.queued() as f64),
                created_unix_secs: None,
            });
        }
        vec![
            FamilySnapshot {
                name: n.total.into(),
                help: format!(
                    "{} handled by each {}, by result: exported (accepted by the backend), \
                     failed (rejected, or retries exhausted), dropped (queue full).",
                    n.items, n.exporter
                ),
                unit: String::new(),
                kind: MetricKind::Counter,
                series: spans,
            },
            FamilySnapshot {
                name: n.retries.into(),
                help: format!("Send attempts of {} batches that were retried.", n.exporter),
                unit: String::new(),
                kind: MetricKind::Counter,
                series: retries,
            },
            FamilySnapshot {
                name: n.queue.into(),
                help: format!(
                    "{} held by each {} (batching, queued or being sent).",
                    n.items, n.exporter
                ),
                unit: String::new(),
                kind: MetricKind::Gauge,
                series: queue,
            },
        ]
    }
}
