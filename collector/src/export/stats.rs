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
    /// The `exporter` label: `otlp`, `zipkin`, `jsonl`.
    pub name: &'static str,
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    queued: AtomicU64,
}

impl ExporterStats {
    /// Zeroed counters for the exporter `name`.
    pub fn new(name: &'static str) -> ExporterStats {
        ExporterStats {
            name,
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

/// The `/metrics` families of every exporter: `shmtel_exporter_spans_total{exporter,result}`,
/// `shmtel_exporter_retries_total{exporter}` and `shmtel_exporter_queue_spans{exporter}`.
pub struct ExporterMetrics {
    stats: Vec<Arc<ExporterStats>>,
    created: f64,
}

impl ExporterMetrics {
    /// A provider over `stats`.
    pub fn new(stats: Vec<Arc<ExporterStats>>) -> ExporterMetrics {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        ExporterMetrics { stats, created }
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
        let exporter = |s: &ExporterStats| ("exporter".to_owned(), s.name.to_owned());
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
                name: "shmtel_exporter_spans_total".into(),
                help: "Spans handled by each span exporter, by result: exported (accepted by \
                       the backend), failed (rejected, or retries exhausted), dropped (queue \
                       full)."
                    .into(),
                unit: String::new(),
                kind: MetricKind::Counter,
                series: spans,
            },
            FamilySnapshot {
                name: "shmtel_exporter_retries_total".into(),
                help: "Send attempts of span batches that were retried.".into(),
                unit: String::new(),
                kind: MetricKind::Counter,
                series: retries,
            },
            FamilySnapshot {
                name: "shmtel_exporter_queue_spans".into(),
                help: "Spans held by each span exporter (batching, queued or being sent).".into(),
                unit: String::new(),
                kind: MetricKind::Gauge,
                series: queue,
            },
        ]
    }
}
