//! The log pipeline: log events from the rings, filtered by level, redacted, reordered by time
//! within a short window, rendered and shipped to the configured sinks (stdout, files, syslog,
//! OTLP).
//!
//! ```text
//! drain loop ──► Head: min_level ──► redaction ──► reorder window ──► stdout (JSON lines)
//!                                                                 ├──► files ([[logs.file]])
//!                                                                 ├──► syslog ([[logs.syslog]])
//!                                                                 └──► OTLP/HTTP ([logs.otlp])
//! ```
//!
//! - [`render`]: one line per event: JSON in the `shmtel`, `ecs` or `otel` schema, logfmt, or
//!   plain text (the schemas are documented there);
//! - [`file`](mod@file), [`syslog`], [`otlp`]: the sinks besides stdout.
//!
//! # Ordering
//!
//! Every thread and process has its own ring, so events reach the collector grouped by ring, not
//! in time order. The head holds each event in a min-heap keyed by its time until the wall clock
//! is `reorder_window_ms` past it, then releases it: everything written within the window comes
//! out sorted by `@timestamp` across threads and processes. An event stamped more than a window
//! in the future (a skewed writer clock) is keyed by its arrival time instead, so nothing is held
//! longer than twice the window. When more than `max_pending` events are held, the oldest are released early. An event
//! older than one already released (a writer that stalled longer than the window) goes out at once
//! and is counted in `shmtel_logs_late_total`. `reorder_window_ms = 0` turns reordering off.
//!
//! # Configuration
//!
//! Every key is optional; the values shown are the defaults.
//!
//! ```toml
//! [logs]
//! format = "json"            # json | logfmt | plain: the stdout and file sinks' default
//! schema = "shmtel"          # shmtel | ecs | otel: JSON field names (see `render`)
//! reorder_window_ms = 250    # events are held this long so that they come out in time order
//! max_pending = 65536        # events held at most; beyond, the oldest are released early
//! min_level = "trace"        # trace | debug | info | warn | error | fatal: below is dropped
//!
//! [logs.stdout]              # JSON lines on the collector's stdout: on when the file configures
//! enabled = true             # no other log sink (OTLP enabled by the environment alone does not
//! format = "json"            # count), or when this section is present (enabled = false turns it
//!                            # off); format overrides [logs] format
//! queue_size = 65536         # events held at most; beyond, dropped and counted
//!
//! [[logs.file]]              # see `file`; its `format` overrides [logs] format
//! [[logs.syslog]]            # see `syslog`
//! [logs.otlp]                # see `otlp`; also enabled by OTEL_EXPORTER_OTLP_LOGS_ENDPOINT
//!                            # or OTEL_EXPORTER_OTLP_ENDPOINT
//! ```
//!
//! Redaction (`[redaction]`, see [`crate::redact`]) applies to every sink.
//!
//! Self-metrics: `shmtel_logs_filtered_total` (events below `min_level`),
//! `shmtel_logs_late_total`, `shmtel_logs_reorder_pending` (events in the window), and per sink
//! `shmtel_log_sink_records_total{sink,result}`, `shmtel_log_sink_retries_total{sink}`,
//! `shmtel_log_sink_queue_records{sink}` (sink `stdout`, `file`, `syslog`, `otlp`; further files
//! and syslog sinks are `file.1`, `syslog.1`, ...).
//!
//! # Background work
//!
//! The head runs on the drain thread: [`LogSink::export`] for each event and [`LogSink::tick`]
//! after every drain pass (at least every 50 ms) releases what the window lets go. Each sink
//! renders and writes on a thread of its own (the shared batching sender of
//! [`crate::export::sender`]), so a blocked stdout or a slow backend never holds up draining.

pub mod file;
pub mod otlp;
pub mod render;
pub mod syslog;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::export::env::OtelEnv;
use crate::export::jsonl::LineWriter;
use crate::export::resource::ResourceInfo;
use crate::export::sender::{BatchSettings, BatchSink};
use crate::export::stats::{ExporterMetrics, ExporterStats};
use crate::model::{FamilyProvider, FamilySnapshot, MetricKind, SeriesSnapshot, SeriesValue};
use crate::redact::Redactor;
use crate::sinks::{LogData, LogSink};

pub use render::{Format, Renderer, Schema};

/// A log level as the configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinLevel {
    /// Everything.
    #[default]
    Trace,
    /// DEBUG and above.
    Debug,
    /// INFO and above.
    Info,
    /// WARN and above.
    #[serde(alias = "warning")]
    Warn,
    /// ERROR and above.
    Error,
    /// FATAL only.
    Fatal,
}

impl MinLevel {
    /// The level code (0 TRACE .. 5 FATAL).
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The `[logs]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Line format of the stdout and file sinks (default json).
    pub format: Format,
    /// JSON field names (default shmtel).
    pub schema: Schema,
    /// How long events are held for ordering, in milliseconds (default 250; 0: off).
    pub reorder_window_ms: u64,
    /// Events held at most in the window (default 65536).
    pub max_pending: usize,
    /// Events below this level are dropped (default trace).
    pub min_level: MinLevel,
    /// `[logs.stdout]`.
    pub stdout: Option<StdoutConfig>,
    /// `[[logs.file]]`.
    pub file: Vec<file::FileConfig>,
    /// `[[logs.syslog]]`.
    pub syslog: Vec<syslog::SyslogConfig>,
    /// `[logs.otlp]`.
    pub otlp: Option<otlp::OtlpLogsConfig>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            format: Format::Json,
            schema: Schema::Shmtel,
            reorder_window_ms: 250,
            max_pending: 65_536,
            min_level: MinLevel::Trace,
            stdout: None,
            file: Vec::new(),
            syslog: Vec::new(),
            otlp: None,
        }
    }
}

/// `[logs.stdout]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutConfig {
    /// Default true (the section's presence turns stdout on even with other sinks).
    pub enabled: bool,
    /// Overrides `[logs] format`.
    pub format: Option<Format>,
    /// Events held at most (default 65536).
    pub queue_size: usize,
}

impl Default for StdoutConfig {
    fn default() -> Self {
        StdoutConfig {
            enabled: true,
            format: None,
            queue_size: 65_536,
        }
    }
}

/// Events per write of the stdout sink.
const STDOUT_BATCH: usize = 1024;
/// Longest an event waits for its stdout batch.
const STDOUT_BATCH_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest reorder window accepted.
const MAX_WINDOW_MS: u64 = 60_000;

impl LogsConfig {
    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.reorder_window_ms > MAX_WINDOW_MS {
            return Err((
                "logs.reorder_window_ms".into(),
                format!("must be at most {MAX_WINDOW_MS} (events are held in memory that long)"),
            ));
        }
        if self.max_pending == 0 {
            return Err(("logs.max_pending".into(), "must be at least 1".into()));
        }
        if let Some(s) = &self.stdout {
            if s.queue_size == 0 {
                return Err(("logs.stdout.queue_size".into(), "must be at least 1".into()));
            }
        }
        for (i, f) in self.file.iter().enumerate() {
            f.validate(&format!("logs.file[{i}]"))?;
        }
        for (i, s) in self.syslog.iter().enumerate() {
            s.validate(&format!("logs.syslog[{i}]"))?;
        }
        if let Some(o) = &self.otlp {
            o.validate()?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (key, label) in sink_labels(self) {
            if label.is_empty() {
                return Err((key, "must not be empty".into()));
            }
            if !seen.insert(label.clone()) {
                return Err((
                    key,
                    format!("sink name {label:?} is used twice (the `sink` label must be unique)"),
                ));
            }
        }
        Ok(())
    }

    /// Make relative paths (files) relative to `base`, the configuration file's directory.
    pub fn anchor_paths(&mut self, base: &Path) {
        for f in &mut self.file {
            f.anchor_paths(base);
        }
    }
}

/// The pipeline's head (the sink the drain loop feeds) and its metric families.
pub struct LogPipeline {
    /// Takes every decoded log event; None when no sink is enabled.
    pub head: Option<Box<dyn LogSink>>,
    /// The pipeline's and the sinks' self-metrics.
    pub metrics: Vec<Arc<dyn FamilyProvider>>,
}

/// A sink's stats name: `base` for the first of its kind, `base.<i>` after.
/// The `sink` label of a sink: its configured `name`, else `base` for the first of its kind and
/// `base.i` for the others.
fn sink_label(name: Option<&str>, base: &str, i: usize) -> String {
    match name {
        Some(n) => n.to_owned(),
        None if i == 0 => base.to_owned(),
        None => format!("{base}.{i}"),
    }
}

/// Every sink's label with the key that configures it, in build order (stdout first).
fn sink_labels(cfg: &LogsConfig) -> Vec<(String, String)> {
    let mut labels = vec![("logs.stdout".to_owned(), "stdout".to_owned())];
    for (i, f) in cfg.file.iter().enumerate() {
        labels.push((
            format!("logs.file[{i}].name"),
            sink_label(f.name.as_deref(), "file", i),
        ));
    }
    for (i, s) in cfg.syslog.iter().enumerate() {
        labels.push((
            format!("logs.syslog[{i}].name"),
            sink_label(s.name.as_deref(), "syslog", i),
        ));
    }
    let otlp = cfg.otlp.as_ref().and_then(|o| o.name.as_deref());
    labels.push(("logs.otlp.name".to_owned(), sink_label(otlp, "otlp", 0)));
    labels
}

/// A label for [`ExporterStats`], which wants a `&'static str`: built once at startup, a
/// handful of small strings for the process's lifetime.
fn leak(label: String) -> &'static str {
    Box::leak(label.into_boxed_str())
}

/// Build the pipeline `cfg` describes: the sinks (with the OTEL_* environment `env` laid over
/// `[logs.otlp]`), each rendering with `resource`, behind a head that filters by level, applies
/// `redaction` and reorders.
pub fn build(
    cfg: &LogsConfig,
    redaction: Option<Redactor>,
    env: &OtelEnv,
    resource: ResourceInfo,
) -> Result<LogPipeline, String> {
    cfg.validate().map_err(|(k, m)| format!("{k}: {m}"))?;
    let otlp_cfg = otlp::resolve(cfg.otlp.as_ref(), env);
    // Sinks configured in the file turn the default stdout sink off; OTLP enabled only by the
    // environment does not (OTEL_EXPORTER_OTLP_ENDPOINT is often set for traces alone, and a
    // container's logs are expected on stdout).
    let others = !cfg.file.is_empty() || !cfg.syslog.is_empty() || cfg.otlp.is_some();
    let stdout = match &cfg.stdout {
        Some(s) => s.enabled.then(|| s.clone()),
        None => (!others).then(StdoutConfig::default),
    };
    let mut sinks: Vec<Box<dyn LogSink>> = Vec::new();
    let mut stats = Vec::new();
    if let Some(s) = &stdout {
        let st = Arc::new(ExporterStats::new_for("stdout", "logs"));
        let renderer = Renderer::new(s.format.unwrap_or(cfg.format), cfg.schema, resource.clone());
        let settings = BatchSettings {
            batch_size: STDOUT_BATCH.min(s.queue_size),
            batch_timeout: STDOUT_BATCH_TIMEOUT,
            queue_size: s.queue_size,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(10),
        };
        let writer =
            LineWriter::open(&PathBuf::from("-")).map_err(|e| format!("logs.stdout: {e}"))?;
        sinks.push(Box::new(BatchSink::start(
            settings,
            st.clone(),
            renderer,
            writer,
        )?));
        stats.push(st);
    }
    for (i, f) in cfg.file.iter().enumerate() {
        let label = leak(sink_label(f.name.as_deref(), "file", i));
        let st = Arc::new(ExporterStats::new_for(label, "logs"));
        let renderer = Renderer::new(f.format.unwrap_or(cfg.format), cfg.schema, resource.clone());
        let sink =
            file::start(f, renderer, st.clone()).map_err(|e| format!("logs.file[{i}]: {e}"))?;
        sinks.push(sink);
        stats.push(st);
    }
    for (i, s) in cfg.syslog.iter().enumerate() {
        let label = leak(sink_label(s.name.as_deref(), "syslog", i));
        let st = Arc::new(ExporterStats::new_for(label, "logs"));
        let renderer = Renderer::new(Format::Json, cfg.schema, resource.clone());
        let sink = syslog::start(s, renderer, &resource, st.clone())
            .map_err(|e| format!("logs.syslog[{i}]: {e}"))?;
        sinks.push(sink);
        stats.push(st);
    }
    if let Some(o) = &otlp_cfg {
        let label = leak(sink_label(o.name.as_deref(), "otlp", 0));
        let st = Arc::new(ExporterStats::new_for(label, "logs"));
        let sink =
            otlp::start(o, resource.clone(), st.clone()).map_err(|e| format!("logs.otlp: {e}"))?;
        sinks.push(sink);
        stats.push(st);
    }
    let mut metrics: Vec<Arc<dyn FamilyProvider>> = Vec::new();
    if sinks.is_empty() {
        return Ok(LogPipeline {
            head: None,
            metrics,
        });
    }
    let head = Head::new(cfg, redaction, sinks, Box::new(crate::sinks::wall_clock_ns));
    metrics.push(Arc::new(PipelineMetrics(head.stats.clone())));
    metrics.push(Arc::new(ExporterMetrics::logs(stats)));
    Ok(LogPipeline {
        head: Some(Box::new(head)),
        metrics,
    })
}

/// Counters of the head, read on scrapes.
#[derive(Debug, Default)]
pub struct PipelineStats {
    filtered: AtomicU64,
    late: AtomicU64,
    pending: AtomicU64,
}

impl PipelineStats {
    /// Events dropped below `min_level`.
    pub fn filtered(&self) -> u64 {
        // Ordering: Relaxed: an independent statistic.
        self.filtered.load(Ordering::Relaxed)
    }

    /// Events that arrived after newer ones were released.
    pub fn late(&self) -> u64 {
        // Ordering: Relaxed: an independent statistic.
        self.late.load(Ordering::Relaxed)
    }

    /// Events held in the window.
    pub fn pending(&self) -> u64 {
        // Ordering: Relaxed: a gauge.
        self.pending.load(Ordering::Relaxed)
    }
}

struct PipelineMetrics(Arc<PipelineStats>);

impl FamilyProvider for PipelineMetrics {
    fn families(&self) -> Vec<FamilySnapshot> {
        let one = |name: &str, help: &str, kind: MetricKind, v: u64| FamilySnapshot {
            name: name.into(),
            help: help.into(),
            unit: String::new(),
            kind,
            series: vec![SeriesSnapshot {
                labels: Vec::new(),
                value: match kind {
                    MetricKind::Counter => SeriesValue::Counter {
                        total: v as f64,
                        exemplar: None,
                    },
                    _ => SeriesValue::Gauge(v as f64),
                },
                created_unix_secs: None,
            }],
        };
        let s = &self.0;
        vec![
            one(
                "shmtel_logs_filtered_total",
                "Log events dropped because their level is below [logs] min_level.",
                MetricKind::Counter,
                s.filtered(),
            ),
            one(
                "shmtel_logs_late_total",
                "Log events that arrived after newer events had left the reorder window \
                 (written out of order).",
                MetricKind::Counter,
                s.late(),
            ),
            one(
                "shmtel_logs_reorder_pending",
                "Log events held in the reorder window.",
                MetricKind::Gauge,
                s.pending(),
            ),
        ]
    }
}

/// A held event: ordered by key (time, or arrival for future-stamped events), then arrival.
struct Held {
    key: u64,
    seq: u64,
    log: Box<LogData>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.seq) == (other.key, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.key, self.seq).cmp(&(other.key, other.seq))
    }
}

/// The pipeline's head: level filter, redaction, reorder window, fan-out.
pub struct Head {
    min_level: u8,
    redactor: Option<Redactor>,
    window_ns: u64,
    max_pending: usize,
    heap: BinaryHeap<Reverse<Held>>,
    seq: u64,
    /// Key of the newest event released so far.
    released: u64,
    sinks: Vec<Box<dyn LogSink>>,
    clock: Box<dyn FnMut() -> u64 + Send>,
    /// The clock as first read since the last tick: the drain loop calls `export` for a whole
    /// pass's events, then `tick`, so the clock is read once per pass, not once per event.
    now: Option<u64>,
    stats: Arc<PipelineStats>,
}

impl Head {
    /// A head for `cfg` feeding `sinks`; `clock` gives the wall-clock time in ns (injectable
    /// for tests).
    pub fn new(
        cfg: &LogsConfig,
        redactor: Option<Redactor>,
        sinks: Vec<Box<dyn LogSink>>,
        clock: Box<dyn FnMut() -> u64 + Send>,
    ) -> Head {
        Head {
            min_level: cfg.min_level.code(),
            redactor,
            window_ns: cfg.reorder_window_ms * 1_000_000,
            max_pending: cfg.max_pending.max(1),
            heap: BinaryHeap::new(),
            seq: 0,
            released: 0,
            sinks,
            clock,
            now: None,
            stats: Arc::new(PipelineStats::default()),
        }
    }

    /// The head's counters.
    pub fn stats(&self) -> Arc<PipelineStats> {
        self.stats.clone()
    }

    fn emit(&mut self, log: LogData) {
        if let Some((last, rest)) = self.sinks.split_last_mut() {
            for s in rest {
                s.export(log.clone());
            }
            last.export(log);
        }
    }

    fn pop(&mut self) -> Option<LogData> {
        let Reverse(h) = self.heap.pop()?;
        self.released = self.released.max(h.key);
        Some(*h.log)
    }

    /// Release every held event at or before `upto` (all with `None`), in key order.
    fn release(&mut self, upto: Option<u64>) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if upto.is_some_and(|t| top.key > t) {
                break;
            }
            let log = self.pop().expect("peeked");
            self.emit(log);
        }
        self.set_pending();
    }

    fn set_pending(&self) {
        // Ordering: Relaxed: a gauge.
        self.stats
            .pending
            .store(self.heap.len() as u64, Ordering::Relaxed);
    }
}

impl LogSink for Head {
    fn export(&mut self, mut log: LogData) {
        if log.level < self.min_level {
            // Ordering: Relaxed: an independent statistic.
            self.stats.filtered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(r) = &self.redactor {
            r.redact_log(&mut log);
        }
        if self.window_ns == 0 {
            self.emit(log);
            return;
        }
        let now = *self.now.get_or_insert_with(&mut self.clock);
        // A writer clock a little ahead is fine (the event waits a little longer); one far
        // ahead would hold its events for that long: they are keyed by their arrival instead.
        let key = if log.time_ns > now.saturating_add(self.window_ns) {
            now
        } else {
            log.time_ns
        };
        if key < self.released {
            // Ordering: Relaxed: an independent statistic.
            self.stats.late.fetch_add(1, Ordering::Relaxed);
            self.emit(log);
            return;
        }
        self.seq += 1;
        self.heap.push(Reverse(Held {
            key,
            seq: self.seq,
            log: Box::new(log),
        }));
        while self.heap.len() > self.max_pending {
            if let Some(l) = self.pop() {
                self.emit(l);
            }
        }
        self.set_pending();
    }

    fn tick(&mut self) {
        self.now = None;
        if !self.heap.is_empty() {
            let now = (self.clock)();
            self.release(Some(now.saturating_sub(self.window_ns)));
        }
        for s in &mut self.sinks {
            s.tick();
        }
    }

    fn flush(&mut self) {
        self.release(None);
        for s in &mut self.sinks {
            s.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{Origin, OwnedValue};
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<LogData>>>);

    impl Capture {
        fn times(&self) -> Vec<u64> {
            self.0.lock().unwrap().iter().map(|l| l.time_ns).collect()
        }
    }

    impl LogSink for Capture {
        fn export(&mut self, log: LogData) {
            self.0.lock().unwrap().push(log);
        }
    }

    fn log(time_ns: u64, level: u8) -> LogData {
        LogData {
            origin: Origin {
                service: "s".into(),
                pid: 1,
                tid: 1,
            },
            time_ns,
            observed_ns: time_ns + 1_000,
            level,
            message: format!("m{time_ns}"),
            truncated: false,
            correlation_id: String::new(),
            trace_id: [0; 16],
            span_id: [0; 8],
            caller: "".into(),
            fields: vec![("email".into(), OwnedValue::Str("a@b.io".into()))],
        }
    }

    const MS: u64 = 1_000_000;

    fn head(cfg: &LogsConfig) -> (Head, Capture, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(1_000 * MS));
        let clock = now.clone();
        let out = Capture::default();
        let h = Head::new(
            cfg,
            None,
            vec![Box::new(out.clone())],
            // Ordering: Relaxed: a test clock on one thread.
            Box::new(move || clock.load(Ordering::Relaxed)),
        );
        (h, out, now)
    }

    fn set(now: &AtomicU64, ms: u64) {
        // Ordering: Relaxed: a test clock on one thread.
        now.store(ms * MS, Ordering::Relaxed);
    }

    #[test]
    fn sink_labels_follow_names_and_must_be_unique() {
        let parse = |t: &str| toml::from_str::<LogsConfig>(t).unwrap();
        let cfg = parse(
            "[[file]]\npath = \"a.log\"\n[[file]]\npath = \"b.log\"\n\
             [[file]]\npath = \"c.log\"\nname = \"audit\"\n\
             [[syslog]]\naddress = \"udp://127.0.0.1:514\"\n",
        );
        let labels: Vec<String> = sink_labels(&cfg).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            labels,
            ["stdout", "file", "file.1", "audit", "syslog", "otlp"]
        );
        assert!(cfg.validate().is_ok());
        let dup = parse(
            "[[file]]\npath = \"a.log\"\nname = \"x\"\n\
             [[syslog]]\naddress = \"udp://127.0.0.1:514\"\nname = \"x\"\n",
        );
        let (key, msg) = dup.validate().unwrap_err();
        assert_eq!(key, "logs.syslog[0].name");
        assert!(msg.contains("used twice"), "{msg}");
    }

    #[test]
    fn the_window_releases_in_time_order() {
        let (mut h, out, now) = head(&LogsConfig::default());
        for t in [900, 700, 950, 800, 990] {
            h.export(log(t * MS, 2));
        }
        h.tick();
        assert_eq!(out.times(), [700 * MS], "only what is 250 ms old");
        assert_eq!(h.stats.pending(), 4);
        set(&now, 1_200);
        h.tick();
        assert_eq!(out.times(), [700 * MS, 800 * MS, 900 * MS, 950 * MS]);
        // A late event (older than one released) goes out at once and is counted.
        h.export(log(850 * MS, 2));
        assert_eq!(h.stats.late(), 1);
        assert_eq!(out.times().last(), Some(&(850 * MS)));
        // An event from the far future is held no longer than the window.
        h.export(log(99_999 * MS, 2));
        set(&now, 1_460);
        h.tick();
        assert_eq!(out.times().len(), 7, "{:?}", out.times());
        assert_eq!(h.stats.pending(), 0);
        h.export(log(1_400 * MS, 2));
        h.flush();
        assert_eq!(out.times().len(), 8, "flush releases everything");
    }

    #[test]
    fn max_pending_releases_the_oldest_early() {
        let cfg = LogsConfig {
            max_pending: 3,
            ..LogsConfig::default()
        };
        let (mut h, out, _) = head(&cfg);
        for t in [905, 901, 903, 902, 904] {
            h.export(log(t * MS, 2));
        }
        assert_eq!(out.times(), [901 * MS, 902 * MS]);
        assert_eq!(h.stats.pending(), 3);
        // Older than what was released early: late.
        h.export(log(900 * MS, 2));
        assert_eq!(h.stats.late(), 1);
        h.flush();
        assert_eq!(out.times(), [901, 902, 900, 903, 904, 905].map(|t| t * MS));
    }

    #[test]
    fn level_filter_redaction_and_no_window() {
        let cfg = LogsConfig {
            min_level: MinLevel::Warn,
            reorder_window_ms: 0,
            ..LogsConfig::default()
        };
        let out = Capture::default();
        let r = Redactor::new(&crate::redact::RedactionConfig::default()).unwrap();
        let mut h = Head::new(&cfg, Some(r), vec![Box::new(out.clone())], Box::new(|| 0));
        for lvl in 0..6 {
            h.export(log(u64::from(10 - lvl), lvl));
        }
        assert_eq!(h.stats.filtered(), 3);
        assert_eq!(out.times(), [7, 6, 5], "no reordering with a zero window");
        let got = out.0.lock().unwrap();
        assert_eq!(got[0].fields[0].1, OwnedValue::Str("[REDACTED]".into()));
    }

    #[test]
    fn fan_out_reaches_every_sink() {
        let (a, b) = (Capture::default(), Capture::default());
        let mut h = Head::new(
            &LogsConfig::default(),
            None,
            vec![Box::new(a.clone()), Box::new(b.clone())],
            Box::new(|| 0),
        );
        h.export(log(5, 2));
        h.flush();
        assert_eq!(a.times(), [5]);
        assert_eq!(b.times(), a.times());
    }

    #[test]
    fn config_parses_with_defaults_and_names_bad_keys() {
        let cfg: LogsConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, LogsConfig::default());
        let cfg: LogsConfig =
            toml::from_str("format = \"logfmt\"\nschema = \"ecs\"\nmin_level = \"warning\"\n")
                .unwrap();
        assert_eq!(
            (cfg.format, cfg.schema, cfg.min_level),
            (Format::Logfmt, Schema::Ecs, MinLevel::Warn)
        );
        let cfg: LogsConfig = toml::from_str("[stdout]\nformat = \"plain\"\n").unwrap();
        let s = cfg.stdout.unwrap();
        assert!(s.enabled);
        assert_eq!((s.format, s.queue_size), (Some(Format::Plain), 65_536));
        assert!(toml::from_str::<LogsConfig>("schema = \"gelf\"").is_err());
        assert!(toml::from_str::<LogsConfig>("[stdout]\nbogus = 1").is_err());
        assert!(toml::from_str::<LogsConfig>("min_level = \"verbose\"").is_err());
        let bad = |text: &str, key: &str| {
            let cfg: LogsConfig = toml::from_str(text).unwrap();
            assert_eq!(cfg.validate().unwrap_err().0, key, "{text}");
            assert!(build(&cfg, None, &OtelEnv::default(), ResourceInfo::default()).is_err());
        };
        bad("max_pending = 0", "logs.max_pending");
        bad("reorder_window_ms = 3600000", "logs.reorder_window_ms");
        bad("[stdout]\nqueue_size = 0", "logs.stdout.queue_size");
        bad("[[file]]\n", "logs.file[0].path");
    }

    #[test]
    fn stdout_is_the_default_sink() {
        let p = build(
            &LogsConfig::default(),
            None,
            &OtelEnv::default(),
            ResourceInfo::default(),
        )
        .unwrap();
        assert!(p.head.is_some());
        let names: Vec<String> = p
            .metrics
            .iter()
            .flat_map(|m| m.families())
            .map(|f| f.name)
            .collect();
        for n in [
            "shmtel_logs_filtered_total",
            "shmtel_logs_late_total",
            "shmtel_logs_reorder_pending",
            "shmtel_log_sink_records_total",
        ] {
            assert!(names.contains(&n.to_owned()), "{n} in {names:?}");
        }
        let off: LogsConfig = toml::from_str("[stdout]\nenabled = false").unwrap();
        let p = build(&off, None, &OtelEnv::default(), ResourceInfo::default()).unwrap();
        assert!(p.head.is_none() && p.metrics.is_empty());
    }
}
