//! Tail sampling and span metrics, end to end: this test process writes traces through
//! `shmtel_core::Span` into a region directory; a real `shmtel collect` with tail sampling and
//! the JSON lines exporter drains them; the test reads the exported file and /metrics.
//!
//! The workload has known error traces (a child span with status error), known slow traces
//! (the root lasts longer than the latency threshold) and many fast, error-free ones. Checked:
//! - every error and slow trace is exported, complete (all its spans, each exactly once);
//! - of the others, exactly those OpenTelemetry's `TraceIdRatioBased` rule keeps at the
//!   configured ratio (besides any that turned out slow on a loaded machine, which the latency
//!   policy keeps, as it should), and that count is within statistical bounds;
//! - each kept trace appears in the file within a second of its root span's end;
//! - /metrics: span counts per name, kind and status are exact, the duration histogram's
//!   buckets separate the slow roots, exemplars are present in OpenMetrics, and the sampler's
//!   self-metrics agree with what was exported.
//!
//! The writer is this process (`shmtel_core::init` is process-wide), so the suite is one test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shmtel_core::{Span, SpanContext, SpanKind, SpanStatus, Symbol, Value};
use shmtel_e2e::{poll, tail_lines, ConfiguredCollector, Metrics, Sandbox, SETTLE_TIMEOUT};

const SERVICE: &str = "tailtest";
const RATIO: f64 = 0.2;
const LATENCY_THRESHOLD_MS: u64 = 150;
/// Slow roots last this long.
const SLOW_MS: u64 = 250;
const TRACES: usize = 2000;
/// Every `ERROR_EVERY`-th trace has an error; every `SLOW_EVERY`-th (offset by 3) is slow.
const ERROR_EVERY: usize = 25;
const SLOW_EVERY: usize = 100;
/// Traces written per 10 ms: the workload lasts about two seconds.
const PER_BATCH: usize = 10;
/// The decision must reach the exporter this soon after the root ends.
const DECISION_BOUND: Duration = Duration::from_secs(1);

/// What the workload wrote about one trace.
#[derive(Debug, Default)]
struct Written {
    error: bool,
    slow: bool,
    spans: HashSet<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// Write the workload; returns what was written, by trace id (hex).
fn write_workload() -> HashMap<String, (SpanContext, Written)> {
    let request = Symbol::intern("request");
    let db = Symbol::intern("db");
    let compute = Symbol::intern("compute");
    let attr = Symbol::intern("test.index");
    let mut written = HashMap::new();
    let mut open_slow: Vec<(Instant, Span)> = Vec::new();
    for i in 0..TRACES {
        let error = i % ERROR_EVERY == 0;
        let slow = i % SLOW_EVERY == 3;
        let mut root = Span::start_with_parent(request, None, false);
        root.set_kind(SpanKind::Server);
        root.set_attribute(attr, Value::I64(i as i64));
        let ctx = root.context();
        let mut w = Written {
            error,
            slow,
            ..Default::default()
        };
        w.spans.insert(hex(&ctx.span_id));
        let mut child = Span::start_with_parent(db, Some(ctx), false);
        child.set_kind(SpanKind::Client);
        child.set_status(if error {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        });
        w.spans.insert(hex(&child.context().span_id));
        child.end();
        let grandchild = Span::start_with_parent(compute, Some(ctx), false);
        w.spans.insert(hex(&grandchild.context().span_id));
        grandchild.end();
        written.insert(hex(&ctx.trace_id), (ctx, w));
        if slow {
            open_slow.push((Instant::now(), root));
        } else {
            root.end();
        }
        let due = Duration::from_millis(SLOW_MS);
        while open_slow.first().is_some_and(|(t, _)| t.elapsed() >= due) {
            open_slow.remove(0).1.end();
        }
        if i % PER_BATCH == PER_BATCH - 1 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for (t, root) in open_slow {
        std::thread::sleep(Duration::from_millis(SLOW_MS).saturating_sub(t.elapsed()));
        root.end();
    }
    let stats = shmtel_core::flush_stats();
    assert_eq!(
        stats.dropped_spans, 0,
        "the writer's ring dropped spans: {stats:?}"
    );
    written
}

/// One exported span (the fields the test needs).
#[derive(Debug, Clone)]
struct Exported {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    start_ns: u64,
    end_ns: u64,
    status: u64,
    /// When the test first saw it in the file.
    seen_ns: u64,
}

fn num(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Follows the exported file from another thread, stamping each span with when it was seen.
struct Follower {
    spans: Arc<Mutex<Vec<Exported>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(path: std::path::PathBuf) -> Follower {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (spans, stop) = (spans.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut offset = 0u64;
                let mut partial = String::new();
                loop {
                    // Ordering: Relaxed: a flag; the final read below happens after it either way.
                    let last = stop.load(Ordering::Relaxed);
                    let mut text = Vec::new();
                    if let Ok(mut f) = File::open(&path) {
                        if f.seek(SeekFrom::Start(offset)).is_ok() {
                            let _ = f.read_to_end(&mut text);
                        }
                    }
                    let seen_ns = now_ns();
                    if !text.is_empty() {
                        // Lines are whole in the file: the exporter writes each batch at once.
                        partial.push_str(&String::from_utf8_lossy(&text));
                        offset += text.len() as u64;
                        let mut lines: Vec<&str> = partial.split('\n').collect();
                        let rest = lines.pop().unwrap_or("").to_owned();
                        let mut out = spans.lock().unwrap();
                        for line in lines.into_iter().filter(|l| !l.trim().is_empty()) {
                            let v: serde_json::Value = serde_json::from_str(line)
                                .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
                            let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                            out.push(Exported {
                                trace_id: s("traceId"),
                                span_id: s("spanId"),
                                parent: s("parentSpanId"),
                                name: s("name"),
                                start_ns: num(&v["startTimeUnixNano"]),
                                end_ns: num(&v["endTimeUnixNano"]),
                                status: v["status"]["code"].as_u64().unwrap_or(0),
                                seen_ns,
                            });
                        }
                        partial = rest;
                    }
                    if last {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Follower {
            spans,
            stop,
            thread: Some(thread),
        }
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }

    fn finish(mut self) -> Vec<Exported> {
        // Ordering: Relaxed: a flag; join() orders everything the thread did before us.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the follower thread panicked");
        }
        self.spans()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // Ordering: Relaxed: a flag.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sample(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let key = shmtel_e2e::sample_key(name, &labels);
    m.get(&key)
        .unwrap_or_else(|| panic!("no sample {key} in:\n{}", m.relevant()))
}

fn span_metric_labels<'a>(
    name: &'a str,
    kind: &'a str,
    status: &'a str,
) -> [(&'a str, &'a str); 4] {
    [
        ("service_name", SERVICE),
        ("span_name", name),
        ("span_kind", kind),
        ("status_code", status),
    ]
}

#[test]
fn tail_sampling_keeps_error_slow_and_ratio_traces_and_span_metrics_count_everything() {
    let sb = Sandbox::new("tail");
    let out = sb.path("spans.jsonl");
    let config = format!(
        "[export.jsonl]\npath = {out:?}\n\n\
         [traces.tail_sampling]\nenabled = true\nratio = {RATIO}\n\
         latency_threshold_ms = {LATENCY_THRESHOLD_MS}\ndecision_grace_ms = 500\n\
         decision_wait_ms = 5000\n\n\
         [traces.spanmetrics]\nenabled = true\n",
        out = out.display().to_string()
    );
    let mut collector = ConfiguredCollector::start(&sb, &config, &[]);
    let follower = Follower::start(out.clone());

    shmtel_core::init(shmtel_core::Config {
        dir: Some(sb.regions()),
        service: SERVICE.into(),
        ring_bytes: 8 << 20,
        ..Default::default()
    })
    .expect("init shmtel");
    let written = write_workload();
    let errors: HashSet<&String> = written
        .iter()
        .filter(|(_, (_, w))| w.error)
        .map(|(t, _)| t)
        .collect();
    let slow: HashSet<&String> = written
        .iter()
        .filter(|(_, (_, w))| w.slow)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(errors.len(), TRACES / ERROR_EVERY);
    assert_eq!(slow.len(), TRACES / SLOW_EVERY);
    assert!(errors.is_disjoint(&slow));
    let ratio_kept: HashSet<&String> = written
        .iter()
        .filter(|(_, (ctx, w))| {
            !w.error && !w.slow && shmtel_core::ratio_sampled(&ctx.trace_id, RATIO)
        })
        .map(|(t, _)| t)
        .collect();

    // Every error, slow and ratio-kept trace arrives, complete.
    let must: HashSet<&String> = errors
        .iter()
        .chain(&slow)
        .chain(&ratio_kept)
        .copied()
        .collect();
    let expected_spans: usize = must.iter().map(|t| written[*t].1.spans.len()).sum();
    poll(
        "the kept traces in the exported file",
        SETTLE_TIMEOUT,
        Duration::from_millis(100),
        || {
            let got: HashSet<String> = follower.spans().into_iter().map(|s| s.span_id).collect();
            let missing = must
                .iter()
                .flat_map(|t| written[*t].1.spans.iter())
                .filter(|s| !got.contains(*s))
                .count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!(
                "{missing} of {expected_spans} expected spans missing; {} exported; collector log:\n{}",
                got.len(),
                tail_lines(&collector.log(), 30)
            ))
            }
        },
    );
    // Anything still pending is decided within decision_wait_ms: then nothing more may come.
    std::thread::sleep(Duration::from_millis(1500));
    let metrics_text = collector.metrics(None);
    let openmetrics = collector.metrics(Some("application/openmetrics-text; version=1.0.0"));
    let status = collector.terminate();
    assert!(
        status.success(),
        "the collector did not exit cleanly ({status}); its log:\n{}",
        tail_lines(
            &std::fs::read_to_string(sb.path("collector.log")).unwrap_or_default(),
            60
        )
    );
    let exported = follower.finish();

    // Each span exactly once, and only spans of this workload.
    let mut by_trace: HashMap<&str, Vec<&Exported>> = HashMap::new();
    let mut ids = HashSet::new();
    for s in &exported {
        assert!(ids.insert(&s.span_id), "span {} exported twice", s.span_id);
        assert!(
            written.contains_key(&s.trace_id),
            "unknown trace {}",
            s.trace_id
        );
        by_trace.entry(&s.trace_id).or_default().push(s);
    }
    // Kept traces are complete; the exported set is exactly what the policies say.
    let mut unexpectedly_slow = 0;
    for (t, spans) in &by_trace {
        let (ctx, w) = &written[*t];
        let got: HashSet<String> = spans.iter().map(|s| s.span_id.clone()).collect();
        assert_eq!(got, w.spans, "trace {t} exported incomplete");
        let root = spans
            .iter()
            .find(|s| s.parent.is_empty())
            .unwrap_or_else(|| panic!("trace {t}: no root in {spans:?}"));
        assert_eq!(root.name, "request");
        let duration_ms = (spans.iter().map(|s| s.end_ns).max().unwrap()
            - spans.iter().map(|s| s.start_ns).min().unwrap()) as f64
            / 1e6;
        if w.error {
            assert!(
                spans.iter().any(|s| s.status == 2),
                "trace {t}: error status lost"
            );
        } else if w.slow {
            assert!(
                duration_ms >= SLOW_MS as f64,
                "trace {t}: slow root lasted {duration_ms} ms"
            );
        } else if !shmtel_core::ratio_sampled(&ctx.trace_id, RATIO) {
            // Only the latency policy may keep it: it must really have been slow.
            assert!(
                duration_ms > LATENCY_THRESHOLD_MS as f64,
                "trace {t} kept though neither error, slow ({duration_ms} ms) nor in the ratio"
            );
            unexpectedly_slow += 1;
        }
    }
    assert_eq!(by_trace.len(), must.len() + unexpectedly_slow);

    // The ratio of the rest is within statistical bounds (binomial, 5 standard deviations).
    let rest = TRACES - errors.len() - slow.len();
    let sd = (rest as f64 * RATIO * (1.0 - RATIO)).sqrt();
    let dev = (ratio_kept.len() as f64 - rest as f64 * RATIO).abs();
    assert!(
        dev <= 5.0 * sd,
        "kept {} of {rest} at ratio {RATIO}",
        ratio_kept.len()
    );

    // Decisions arrive within a second of the root's end.
    let mut delays: Vec<(u64, &str)> = by_trace
        .iter()
        .map(|(t, spans)| {
            let root = spans.iter().find(|s| s.parent.is_empty()).unwrap();
            let seen = spans.iter().map(|s| s.seen_ns).max().unwrap();
            (seen.saturating_sub(root.end_ns), *t)
        })
        .collect();
    delays.sort();
    let (worst, worst_trace) = *delays.last().expect("something was exported");
    let median = delays[delays.len() / 2].0;
    eprintln!(
        "decision delay after the root's end: median {:.0} ms, max {:.0} ms over {} traces",
        median as f64 / 1e6,
        worst as f64 / 1e6,
        delays.len()
    );
    assert!(
        Duration::from_nanos(worst) <= DECISION_BOUND,
        "trace {worst_trace} reached the exporter {:.0} ms after its root ended",
        worst as f64 / 1e6
    );

    // Span metrics: every span, sampled out or not, counted exactly.
    let m = Metrics::parse(&metrics_text).expect("parse /metrics");
    let calls = "traces_span_metrics_calls_total";
    let n = TRACES as f64;
    let e = errors.len() as f64;
    let server = span_metric_labels("request", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET");
    assert_eq!(sample(&m, calls, &server), n);
    let db_err = span_metric_labels("db", "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR");
    assert_eq!(sample(&m, calls, &db_err), e);
    let db_ok = span_metric_labels("db", "SPAN_KIND_CLIENT", "STATUS_CODE_OK");
    assert_eq!(sample(&m, calls, &db_ok), n - e);
    let compute = span_metric_labels("compute", "SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET");
    assert_eq!(sample(&m, calls, &compute), n);
    assert_eq!(m.sum_where(calls, &[("service_name", SERVICE)]), 3.0 * n);
    let hist = "traces_span_metrics_duration_seconds";
    let bucket = |le: &str| {
        let mut l = server.to_vec();
        l.push(("le", le));
        sample(&m, &format!("{hist}_bucket"), &l)
    };
    assert_eq!(sample(&m, &format!("{hist}_count"), &server), n);
    assert_eq!(bucket("+Inf"), n);
    // The slow roots lie above 0.2 s (with any root a stalled writer made slow).
    assert!(bucket("0.2") <= n - slow.len() as f64);

    // OpenMetrics: exemplars on the histogram buckets and on the calls, naming real traces.
    let exemplar_traces: Vec<&str> = openmetrics
        .lines()
        .filter(|l| l.starts_with(hist) || l.starts_with(calls))
        .filter_map(|l| l.split("# {trace_id=\"").nth(1))
        .filter_map(|rest| rest.get(..32))
        .collect();
    assert!(
        openmetrics
            .lines()
            .any(|l| l.starts_with(&format!("{hist}_bucket")) && l.contains(" # {trace_id=\"")),
        "no bucket exemplar in:\n{openmetrics}"
    );
    assert!(
        openmetrics
            .lines()
            .any(|l| l.starts_with(calls) && l.contains(" # {trace_id=\"")),
        "no calls exemplar"
    );
    for t in &exemplar_traces {
        assert!(written.contains_key(*t), "exemplar names unknown trace {t}");
    }

    // The sampler's own account agrees with what was exported.
    let traces = "shmtel_tail_sampling_traces_total";
    let decided = |d: &str, p: &str| sample(&m, traces, &[("decision", d), ("policy", p)]);
    assert_eq!(decided("kept", "error"), e);
    assert_eq!(
        decided("kept", "latency"),
        (slow.len() + unexpectedly_slow) as f64
    );
    assert_eq!(decided("kept", "ratio"), ratio_kept.len() as f64);
    assert_eq!(decided("dropped", "ratio"), n - by_trace.len() as f64);
    assert_eq!(decided("dropped", "rate_limit"), 0.0);
    assert_eq!(
        sample(
            &m,
            "shmtel_tail_sampling_spans_dropped_total",
            &[("reason", "policy")]
        ),
        3.0 * n - exported.len() as f64
    );
    assert_eq!(sample(&m, "shmtel_tail_sampling_pending_traces", &[]), 0.0);
    let forced = "shmtel_tail_sampling_forced_decisions_total";
    for reason in ["root_timeout", "max_pending_traces", "max_pending_spans"] {
        assert_eq!(sample(&m, forced, &[("reason", reason)]), 0.0, "{reason}");
    }
}
