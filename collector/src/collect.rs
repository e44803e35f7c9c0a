//! `shmtel collect`: the daemon. Wires the configuration, the drain thread, the saved state and
//! the HTTP server together, and exports the collector's own metrics.
//!
//! Threads: one drain thread (owns every reader; adaptive polling), and the main thread running
//! a current-thread tokio runtime for HTTP (renders run on tokio's blocking pool). SIGTERM or
//! SIGINT: the drain thread drains every ring once more, saves the state file, and the process
//! exits 0.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::aggregate::{Aggregator, Overrides};
use crate::config::{CollectArgs, Config};
use crate::drain::{
    DrainOptions, Drainer, RingSaved, SavedState, SelfStats, DROP_KINDS, RECORD_KINDS,
};
use crate::http::MetricsSource;
use crate::model::{FamilyProvider, FamilySnapshot, MetricKind, SeriesSnapshot, SeriesValue};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// How often the drain thread saves its state while running.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

fn overrides(cfg: &Config) -> Overrides {
    let mut o = Overrides::default();
    for (name, h) in &cfg.histograms {
        if let Some(b) = &h.buckets {
            o.buckets.insert(name.clone(), b.clone());
        }
        if !h.quantiles.is_empty() {
            o.quantiles.insert(name.clone(), h.quantiles.clone());
        }
    }
    for (name, g) in &cfg.gauges {
        o.gauge_modes.insert(name.clone(), g.mode.code());
    }
    o
}

/// Load a saved state; a missing file is an empty state, a broken one is logged and ignored.
pub fn load_state(path: &Path) -> Option<SavedState> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot read state file, starting empty: {e}");
            return None;
        }
    };
    match serde_json::from_slice::<SavedState>(&text) {
        Ok(s) if s.version == STATE_VERSION => Some(s),
        Ok(s) => {
            tracing::warn!(path = %path.display(), version = s.version, "state file of another version ignored");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "state file unreadable, starting empty: {e}");
            None
        }
    }
}

/// Write the state atomically (temporary file, then rename).
pub fn save_state(
    path: &Path,
    agg: &Aggregator,
    rings: HashMap<String, RingSaved>,
    stats: &SelfStats,
) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Ref<'a> {
        version: u32,
        aggregator: &'a Aggregator,
        rings: HashMap<String, RingSaved>,
        stats: &'a SelfStats,
    }
    let body = serde_json::to_vec(&Ref {
        version: STATE_VERSION,
        aggregator: agg,
        rings,
        stats,
    })
    .map_err(std::io::Error::other)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// What `/metrics` and `/healthz` serve.
pub struct Source {
    agg: Arc<Mutex<Aggregator>>,
    stats: Arc<Mutex<SelfStats>>,
    started: Instant,
    dir: String,
    /// Span-derived metrics and exporter self-metrics.
    providers: Vec<Arc<dyn FamilyProvider>>,
}

fn counter(name: &str, help: &str, series: Vec<(Vec<(String, String)>, f64)>) -> FamilySnapshot {
    FamilySnapshot {
        name: name.into(),
        help: help.into(),
        unit: String::new(),
        kind: MetricKind::Counter,
        series: series
            .into_iter()
            .map(|(labels, v)| SeriesSnapshot {
                labels,
                value: SeriesValue::Counter {
                    total: v,
                    exemplar: None,
                },
                created_unix_secs: None,
            })
            .collect(),
    }
}

fn gauge(name: &str, help: &str, series: Vec<(Vec<(String, String)>, f64)>) -> FamilySnapshot {
    FamilySnapshot {
        name: name.into(),
        help: help.into(),
        unit: String::new(),
        kind: MetricKind::Gauge,
        series: series
            .into_iter()
            .map(|(labels, v)| SeriesSnapshot {
                labels,
                value: SeriesValue::Gauge(v),
                created_unix_secs: None,
            })
            .collect(),
    }
}

fn l(k: &str, v: &str) -> Vec<(String, String)> {
    vec![(k.to_owned(), v.to_owned())]
}

/// Resident set size of this process in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as u64
}

impl Source {
    /// The collector's self-metrics.
    pub fn self_metrics(&self) -> Vec<FamilySnapshot> {
        let s = self.stats.lock().clone();
        let (series, refused, conflicts) = {
            let a = self.agg.lock();
            (a.series_count(), a.series_refused, a.conflicts)
        };
        let mut rejected: Vec<_> = s
            .rejected
            .iter()
            .map(|(k, v)| (l("reason", k), *v as f64))
            .collect();
        rejected.sort_by(|a, b| a.0.cmp(&b.0));
        vec![
            counter(
                "shmtel_records_drained",
                "Records drained from rings, by kind.",
                RECORD_KINDS.iter().zip(s.drained).map(|(k, v)| (l("kind", k), v as f64)).collect(),
            ),
            counter(
                "shmtel_dropped_records",
                "Records writers dropped because their ring was full, by kind (metric: no overflow slot).",
                DROP_KINDS.iter().zip(s.dropped).map(|(k, v)| (l("kind", k), v as f64)).collect(),
            ),
            counter(
                "shmtel_process_dropped_records",
                "Records dropped by the writers of each live process, by kind (series go when the process is cleaned up).",
                {
                    let mut v: Vec<_> = s
                        .process_drops
                        .iter()
                        .flat_map(|((svc, pid), d)| {
                            DROP_KINDS.iter().zip(d).map(move |(k, n)| {
                                let labels = vec![
                                    ("kind".to_owned(), (*k).to_owned()),
                                    ("pid".to_owned(), pid.to_string()),
                                    ("service".to_owned(), svc.clone()),
                                ];
                                (labels, *n as f64)
                            })
                        })
                        .collect();
                    v.sort_by(|a, b| a.0.cmp(&b.0));
                    v
                },
            ),
            counter(
                "shmtel_coalesced_updates",
                "Counter and gauge updates recovered from overflow slots (rings were full; nothing lost).",
                vec![(vec![], s.coalesced as f64)],
            ),
            counter("shmtel_regions_rejected", "Region files rejected by validation, by reason.", rejected),
            gauge(
                "shmtel_regions",
                "Rings being drained, by state of their writer process.",
                vec![(l("state", "live"), s.regions_live as f64), (l("state", "dead"), s.regions_dead as f64)],
            ),
            counter("shmtel_spans_received", "Spans decoded and assembled.", vec![(vec![], s.spans as f64)]),
            counter("shmtel_logs_received", "Log events decoded.", vec![(vec![], s.logs as f64)]),
            counter("shmtel_business_events_received", "Business metric events decoded.", vec![(vec![], s.business as f64)]),
            counter(
                "shmtel_unresolved_records",
                "Metric records naming a series that is unknown, conflicting, or over the series limit.",
                vec![(vec![], s.unresolved as f64)],
            ),
            counter("shmtel_unknown_kind_records", "Records of a kind this collector does not know (skipped).", vec![(vec![], s.unknown_kinds as f64)]),
            counter("shmtel_processes_cleaned", "Dead processes whose regions were drained and removed.", vec![(vec![], s.processes_cleaned as f64)]),
            counter("shmtel_series_refused", "Series refused because the collector's series limit was reached.", vec![(vec![], refused as f64)]),
            counter("shmtel_family_conflicts", "Series whose family conflicts with an earlier one of the same name.", vec![(vec![], conflicts as f64)]),
            gauge("shmtel_series", "Series held by the aggregator.", vec![(vec![], series as f64)]),
            gauge(
                "shmtel_drain_lag_seconds",
                "Upper bound of how long a committed record waited to be drained (last pass plus sleep).",
                vec![(vec![], s.drain_lag_seconds)],
            ),
            gauge("shmtel_ring_backlog_bytes", "Largest undrained backlog of any ring at the last pass.", vec![(vec![], s.max_backlog_bytes as f64)]),
            gauge("shmtel_collector_resident_memory_bytes", "Resident memory of the collector.", vec![(vec![], rss_bytes() as f64)]),
            gauge("shmtel_collector_uptime_seconds", "Seconds since the collector started.", vec![(vec![], self.started.elapsed().as_secs_f64())]),
        ]
    }
}

impl MetricsSource for Source {
    fn families(&self) -> Vec<FamilySnapshot> {
        let mut f = self.agg.lock().snapshot();
        for p in &self.providers {
            f.extend(p.families());
        }
        f.extend(self.self_metrics());
        f
    }

    fn health(&self) -> serde_json::Value {
        let s = self.stats.lock();
        serde_json::json!({
            "status": "ok",
            "dir": self.dir,
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "regions_live": s.regions_live,
            "regions_dead": s.regions_dead,
            "drain_lag_seconds": s.drain_lag_seconds,
        })
    }
}

/// Run the daemon; returns the process exit code.
pub fn run(args: &CollectArgs) -> i32 {
    let cfg = match Config::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shmtel collect: {e}");
            return 2;
        }
    };
    let ov = overrides(&cfg);
    let max_series = cfg.limits.max_series;
    let (agg, stats, rings) = match load_state(&cfg.state_file) {
        Some(s) => {
            tracing::info!(path = %cfg.state_file.display(), rings = s.rings.len(), "restored state");
            (s.aggregator.restore(ov, max_series), s.stats, s.rings)
        }
        None => (
            Aggregator::new(ov, max_series),
            SelfStats::default(),
            HashMap::new(),
        ),
    };
    let agg = Arc::new(Mutex::new(agg));
    let stats = Arc::new(Mutex::new(stats));
    let listener = match std::net::TcpListener::bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shmtel collect: cannot listen on {}: {e}", cfg.listen);
            return 1;
        }
    };
    let _ = listener.set_nonblocking(true);
    tracing::info!(dir = %cfg.dir.display(), listen = %cfg.listen, "collecting");

    let mut opts = DrainOptions::new(cfg.dir.clone());
    opts.discover_interval = cfg.poll.discover_interval();
    opts.spin_iterations = cfg.poll.spin_iterations;
    opts.yield_iterations = cfg.poll.yield_iterations;
    opts.min_sleep = cfg.poll.min_sleep();
    opts.max_sleep = cfg.poll.max_sleep();
    opts.dead_grace = cfg.dead_process_grace();
    opts.max_pending_spans = cfg.limits.max_pending_spans;

    let env = match crate::export::env::OtelEnv::read(|k| std::env::var(k).ok()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shmtel collect: exporters: {e}");
            return 2;
        }
    };
    let exporters = match crate::export::build_with_env(&cfg.export, &env) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shmtel collect: exporters: {e}");
            return 2;
        }
    };
    let redactor = match cfg.redaction.as_ref().map(crate::redact::Redactor::new) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err((k, m))) => {
            eprintln!("shmtel collect: {k}: {m}");
            return 2;
        }
    };
    let pipeline = match crate::traces::build(&cfg.traces, exporters.sinks, redactor.clone()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shmtel collect: span pipeline: {e}");
            return 2;
        }
    };
    let (_, resource) = crate::export::resolve(&cfg.export, &env);
    let logs = match crate::logs::build(&cfg.logs, redactor.clone(), &env, resource) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shmtel collect: log pipeline: {e}");
            return 2;
        }
    };
    let mut providers = pipeline.metrics;
    providers.extend(exporters.metrics);
    providers.extend(logs.metrics);
    if let Some(r) = &redactor {
        providers.push(r.provider());
    }
    let span_head = pipeline.head;
    let log_head = logs.head;

    let stop = Arc::new(AtomicBool::new(false));
    let drain_thread = {
        let (agg, stats, stop, state_file) = (
            agg.clone(),
            stats.clone(),
            stop.clone(),
            cfg.state_file.clone(),
        );
        std::thread::Builder::new()
            .name("shmtel-drain".into())
            .spawn(move || {
                let mut d = Drainer::new(opts, agg.clone(), stats.clone(), rings);
                if let Some(head) = span_head {
                    d.add_span_sink(head);
                }
                if let Some(head) = log_head {
                    d.add_log_sink(head);
                }
                let save = |d: &Drainer| {
                    let a = agg.lock();
                    let s = stats.lock();
                    if let Err(e) = save_state(&state_file, &a, d.ring_state(), &s) {
                        tracing::warn!(path = %state_file.display(), "cannot save state: {e}");
                    }
                };
                let mut last_save = Instant::now();
                // Ordering: Relaxed: a flag; see Drainer::run.
                while !stop.load(Ordering::Relaxed) {
                    d.run_for(&stop, SAVE_INTERVAL);
                    if last_save.elapsed() >= SAVE_INTERVAL {
                        save(&d);
                        last_save = Instant::now();
                    }
                }
                d.drain_everything();
                save(&d);
            })
            .expect("spawn drain thread")
    };

    let source: Arc<dyn MetricsSource> = Arc::new(Source {
        agg,
        stats,
        started: Instant::now(),
        dir: cfg.dir.display().to_string(),
        providers,
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shmtel collect: cannot start the runtime: {e}");
            return 1;
        }
    };
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
            }
            tracing::info!("signal received: draining and saving state");
        };
        crate::http::serve(listener, source, shutdown).await
    });
    // Ordering: Relaxed: the drain thread polls it; join below synchronises.
    stop.store(true, Ordering::Relaxed);
    if drain_thread.join().is_err() {
        eprintln!("shmtel collect: the drain thread panicked");
        return 1;
    }
    match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shmtel collect: http server failed: {e}");
            1
        }
    }
}
