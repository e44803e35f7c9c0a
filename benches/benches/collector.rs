//! Collector benchmarks: draining, scraping, and the collector process's memory and idle CPU.
//!
//! - `collector_drain/*`: records per second through the collector's own drain loop
//!   (`shmtel_collector::drain::Drainer::pass`: read, decode, resolve, aggregate). A writer
//!   thread (on the other core, as in a deployment) fills its ring with 30,000 records, untimed;
//!   then this thread times `pass()` until all of them are applied. One criterion "iteration" is
//!   one record, so criterion prints the rate as elements per second. Target: ≥ 50 M metric
//!   records/s on one core (≤ 20 ns per record).
//! - `collector_scrape/*`: what one `GET /metrics` costs the collector with 10,000 series
//!   (8 counter families × 1,000, a gauge family × 1,000, a histogram family × 1,000 with 11
//!   buckets): `Aggregator::snapshot` then the Prometheus text or OpenMetrics renderer, plus the
//!   snapshot alone. Target: render 10,000 series ≤ 10 ms.
//! - `collector_spans/*`: the span path on one core, in spans per second (one criterion
//!   "iteration" is one span). A writer thread fills its ring with 6,144 sampled root spans of
//!   one attribute each (`Span::start_root(name, 1.0)`, `set_attribute`, `end`: two ring
//!   records), untimed; this thread then times, until every span is assembled:
//!   `assemble` (the drain loop: read, decode, join the attribute to its span, wall-clock
//!   times, names resolved: a `SpanData` handed to a sink batching 512 spans, as the exporters'
//!   sink does), `assemble_encode_otlp` (the same with each full batch encoded as an OTLP
//!   `ExportTraceServiceRequest` with the collector's own `OtlpEncoder`, on the same thread).
//!   `encode_otlp` encodes batches of 512 assembled spans alone (cloned untimed), and
//!   `encode_otlp_gzip` adds the OTLP/HTTP transport's gzip (its default, level `fast`).
//!   Target: ≥ 1 M spans/s assembled and OTLP-encoded on one core (≤ 1 µs per span).
//! - `collector_logs/*`: the log path on one core, in lines per second (one criterion
//!   "iteration" is one log event). `render_{shmtel,ecs,otel,logfmt}`: a realistic event (a
//!   40-byte message, 3 fields: string, int, float; trace and span ids, a correlation id and a
//!   caller) rendered as one line by the log sinks' `Renderer` (timestamps 1 µs apart, so the
//!   cached second prefix is reused as in a real stream). `drain_render_shmtel`: a writer thread
//!   fills its ring with 4,096 such events (untimed); this thread then times the drain loop
//!   (read, decode, resolve names, build the `LogData`) plus rendering every event to JSON
//!   lines on the same thread. Target: ≥ 1 M lines/s rendered to JSON on one core.
//! - Not criterion: the real daemon (`shmtel_collector::collect::run`, in a child process)
//!   drains 64 writer threads' rings (another child process, 10,000 series, every ring wrapped
//!   twice); its resident memory is then read from `/proc`, and its CPU time over 10 idle
//!   seconds. Targets: RSS < 100 MB, idle CPU < 1% of a core. Printed, and written to
//!   `target/criterion/shmtel_collector_process.json` for `report.py`.
//!
//! This binary plays three roles, chosen by `SHMTEL_BENCH_ROLE`: the benchmark (unset), the
//! collector daemon (`collector`) and the 64-thread writer process (`writers`).

// `criterion_group!` expands to an undocumented `pub fn`.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use parking_lot::Mutex;
use shmtel_benches::WorkerThreads;
use shmtel_collector::aggregate::{Aggregator, Overrides};
use shmtel_collector::drain::{DrainOptions, Drainer, SelfStats};
use shmtel_collector::export::http::HttpTransport;
use shmtel_collector::export::otlp::OtlpEncoder;
use shmtel_collector::export::resource::ResourceInfo;
use shmtel_collector::export::sender::{Encoder, Transport};
use shmtel_collector::exposition::{render_openmetrics, render_prometheus};
use shmtel_collector::logs::render::{Format, Renderer, Schema};
use shmtel_collector::sinks::{LogData, LogSink, Origin, OwnedValue, SpanData, SpanSink};
use shmtel_core::{CounterVec, GaugeMode, GaugeVec, HistogramVec, Level, Span, Symbol, Value};

/// Records per fill in the drain benchmark: 30,000 records of at most 32 bytes (a gauge set;
/// a counter add or a histogram observation is 24) take 960 KB and fit a 1 MiB ring.
const FILL: u64 = 30_000;
/// Spans per fill in the span benchmarks: a span with one string attribute is two frames
/// (72 + 48 bytes), so 6,144 spans take 737 KB of a 1 MiB ring; 12 batches of 512.
const SPAN_FILL: u64 = 6_144;
/// Spans per batch, the OTLP exporter's default `batch_size`.
const SPAN_BATCH: usize = 512;
/// Log events per fill in the drain-and-render benchmark: an event with a 40-byte message,
/// a correlation id and three fields is about 200 bytes, so 4,096 take ~800 KB of a 1 MiB ring.
const LOG_FILL: u64 = 4_096;
/// Writer threads (and so rings) of the process measurement.
const WRITER_THREADS: usize = 64;
/// Series of the scrape benchmark and of the process measurement.
const SERIES: usize = 10_000;
/// Environment variable selecting this binary's role.
const ROLE: &str = "SHMTEL_BENCH_ROLE";
/// Environment variable carrying the region directory to the child processes.
const DIR: &str = "SHMTEL_BENCH_DIR";

/// Initialises shmtel in this process with its regions in `dir` (default ring size, 1 MiB).
fn init_shmtel(dir: &Path) {
    shmtel_core::init(shmtel_core::Config {
        dir: Some(dir.to_path_buf()),
        service: "shmtel-bench".into(),
        max_series: 2 * SERIES,
        ..Default::default()
    })
    .expect("initialise shmtel");
}

fn new_drainer(dir: &Path) -> (Drainer, Arc<Mutex<Aggregator>>) {
    let agg = Arc::new(Mutex::new(Aggregator::new(
        Overrides::default(),
        10 * SERIES,
    )));
    let stats = Arc::new(Mutex::new(SelfStats::default()));
    let drainer = Drainer::new(
        DrainOptions::new(dir.to_path_buf()),
        agg.clone(),
        stats,
        Default::default(),
    );
    (drainer, agg)
}

/// The 10,000 series of the scrape benchmark and of the process measurement, registered in this
/// process; `record(i)` records once into series `i`.
struct SeriesSet {
    counters: Vec<CounterVec>,
    gauge: GaugeVec,
    histogram: HistogramVec,
}

const ROUTES_PER_FAMILY: usize = 1_000;

impl SeriesSet {
    fn register() -> SeriesSet {
        let labels = ["method", "route", "status"];
        let counters = (0..8)
            .map(|f| {
                CounterVec::new(&format!("bench_requests_{f}"), "Requests.", &labels)
                    .expect("register counter family")
            })
            .collect();
        let gauge = GaugeVec::new("bench_in_flight", "In flight.", &labels, GaugeMode::LiveSum)
            .expect("register gauge family");
        let histogram = HistogramVec::new(
            "bench_latency_seconds",
            "Latency.",
            &labels,
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .expect("register histogram family");
        SeriesSet {
            counters,
            gauge,
            histogram,
        }
    }

    /// Records into series `i` (0..SERIES) with value `v`.
    fn record(&self, i: usize, v: f64) {
        let family = i / ROUTES_PER_FAMILY;
        let route = format!("/r/{}", i % ROUTES_PER_FAMILY);
        let values = ["GET", route.as_str(), "200"];
        match family {
            0..=7 => self.counters[family].with_label_values(&values).add(v),
            8 => self.gauge.with_label_values(&values).set(v),
            _ => self
                .histogram
                .with_label_values(&values)
                .observe(v / 1000.0),
        }
    }
}

fn scrape(c: &mut Criterion, dir: &Path) {
    let set = SeriesSet::register();
    for i in 0..SERIES {
        set.record(i, (i % 97) as f64);
    }
    let (mut drainer, agg) = new_drainer(dir);
    drainer.drain_everything();
    let series = agg.lock().series_count();
    assert!(
        series >= SERIES,
        "the aggregator holds {series} series, expected {SERIES}"
    );

    let mut group = c.benchmark_group("collector_scrape");
    group.sample_size(30);
    group.bench_function("snapshot_10k", |b| b.iter(|| agg.lock().snapshot()));
    let mut out = String::new();
    group.bench_function("scrape_prometheus_10k", |b| {
        b.iter(|| {
            let families = agg.lock().snapshot();
            out.clear();
            render_prometheus(&families, &mut out);
            out.len()
        })
    });
    eprintln!(
        "collector_scrape: {series} series, Prometheus text body {} bytes",
        out.len()
    );
    group.bench_function("scrape_openmetrics_10k", |b| {
        b.iter(|| {
            let families = agg.lock().snapshot();
            out.clear();
            render_openmetrics(&families, &mut out);
            out.len()
        })
    });
    group.finish();
}

fn drain(c: &mut Criterion, dir: &Path) {
    let mut group = c.benchmark_group("collector_drain");
    group.throughput(Throughput::Elements(1));

    // Counter records over 100 series, and a mix of counter adds, gauge sets and histogram
    // observations over the same 100 label sets.
    for (name, mixed) in [("counter_records", false), ("mixed_metric_records", true)] {
        let writer = WorkerThreads::new(1, move |_| {
            let family = CounterVec::new("bench_drain_ops", "Ops.", &["n"]).expect("register");
            let gauges = GaugeVec::new("bench_drain_level", "Level.", &["n"], GaugeMode::All)
                .expect("register");
            let hists = HistogramVec::new("bench_drain_seconds", "Seconds.", &["n"], &[])
                .expect("register");
            let labels: Vec<String> = (0..100).map(|i| i.to_string()).collect();
            let counters: Vec<_> = labels
                .iter()
                .map(|l| family.with_label_values(&[l]))
                .collect();
            let gauges: Vec<_> = labels
                .iter()
                .map(|l| gauges.with_label_values(&[l]))
                .collect();
            let hists: Vec<_> = labels
                .iter()
                .map(|l| hists.with_label_values(&[l]))
                .collect();
            move |n| {
                let start = Instant::now();
                for i in 0..n as usize {
                    let s = i % 100;
                    match (mixed, i % 3) {
                        (false, _) | (true, 0) => counters[s].inc(),
                        (true, 1) => gauges[s].set(i as f64),
                        (true, _) => hists[s].observe(0.001 * s as f64),
                    }
                }
                start.elapsed()
            }
        });
        let (mut drainer, _agg) = new_drainer(dir);
        drainer.drain_everything(); // discovers the writer's ring and the table
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(FILL);
                    writer.run(n);
                    let start = Instant::now();
                    let mut applied = 0u64;
                    while applied < n {
                        let k = drainer.pass() as u64;
                        if k == 0 {
                            break;
                        }
                        applied += k;
                    }
                    timed += start.elapsed();
                    assert_eq!(
                        applied, n,
                        "{name}: the drain applied {applied} of {n} records"
                    );
                    left -= n;
                }
                timed
            })
        });
    }
    group.finish();
}

/// What the span sink of the `collector_spans` benchmarks does with each full batch.
enum BatchWork {
    /// Hand it over (to `SpanBatches::kept`), to be dropped untimed or reused.
    Keep,
    /// Encode it as an OTLP request into a fresh body, as the exporter's sending thread does.
    EncodeOtlp(OtlpEncoder),
}

/// What the span sink hands back to the benchmark.
#[derive(Default)]
struct SpanBatches {
    kept: Vec<Vec<SpanData>>,
    encoded_spans: u64,
    encoded_bytes: u64,
}

/// A span sink that batches like the exporters' `BatchSink` (a batch of `SPAN_BATCH` spans is
/// handed on when full) and then keeps or encodes the batch on the drain thread itself.
struct BenchSpanSink {
    open: Vec<SpanData>,
    work: BatchWork,
    out: Arc<Mutex<SpanBatches>>,
}

impl SpanSink for BenchSpanSink {
    fn export(&mut self, span: SpanData) {
        self.open.push(span);
        if self.open.len() < SPAN_BATCH {
            return;
        }
        let batch = std::mem::replace(&mut self.open, Vec::with_capacity(SPAN_BATCH));
        match &mut self.work {
            BatchWork::Keep => self.out.lock().kept.push(batch),
            BatchWork::EncodeOtlp(encoder) => {
                let n = batch.len() as u64;
                let mut body = Vec::new();
                encoder.encode(batch, &mut body);
                let mut out = self.out.lock();
                out.encoded_spans += n;
                out.encoded_bytes += body.len() as u64;
            }
        }
    }
}

/// The resource the OTLP encoder attaches: what a collector configured with a service version
/// and one extra attribute sends.
fn bench_resource() -> ResourceInfo {
    ResourceInfo {
        service_name: None,
        service_version: Some("1.2.3".into()),
        host_name: "bench-host".into(),
        extra: vec![("deployment.environment".into(), "bench".into())],
    }
}

/// Times the drain of spans (`SPAN_FILL` per writer fill) through `work`; returns the batches
/// the sink kept, for the encoding benchmark.
fn spans_through_drainer(
    c: &mut Criterion,
    dir: &Path,
    bench: &str,
    work: BatchWork,
) -> Arc<Mutex<SpanBatches>> {
    let writer = WorkerThreads::new(1, move |_| {
        let name = Symbol::intern("db.query");
        let key = Symbol::intern("db.system");
        move |n| {
            let start = Instant::now();
            for _ in 0..n {
                let mut span = Span::start_root(name, 1.0);
                span.set_attribute(key, Value::Str("postgres"));
                span.end();
            }
            start.elapsed()
        }
    });
    let stats = Arc::new(Mutex::new(SelfStats::default()));
    let agg = Arc::new(Mutex::new(Aggregator::new(
        Overrides::default(),
        10 * SERIES,
    )));
    let mut drainer = Drainer::new(
        DrainOptions::new(dir.to_path_buf()),
        agg,
        stats.clone(),
        Default::default(),
    );
    let out = Arc::new(Mutex::new(SpanBatches::default()));
    drainer.add_span_sink(Box::new(BenchSpanSink {
        open: Vec::with_capacity(SPAN_BATCH),
        work,
        out: out.clone(),
    }));
    drainer.drain_everything(); // discovers the writer's ring and the table
                                // Untimed warm-up: one full batch, so that `Keep` has a batch for `encode_otlp` even in a
                                // `cargo test --benches` run (one iteration).
    writer.run(SPAN_BATCH as u64);
    drainer.drain_everything();
    let mut group = c.benchmark_group("collector_spans");
    group.throughput(Throughput::Elements(1));
    group.bench_function(bench, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(SPAN_FILL);
                writer.run(n);
                let before = stats.lock().spans;
                let start = Instant::now();
                let mut assembled = 0;
                while assembled < n {
                    let k = drainer.pass();
                    assembled = stats.lock().spans - before;
                    if k == 0 {
                        break;
                    }
                }
                timed += start.elapsed();
                assert_eq!(assembled, n, "{bench}: {assembled} of {n} spans assembled");
                // Untimed: drop what `Keep` handed over, except one batch for `encode_otlp`.
                let mut o = out.lock();
                o.kept.truncate(1);
                left -= n;
            }
            timed
        })
    });
    group.finish();
    drop(writer);
    let o = out.lock();
    if o.encoded_spans > 0 {
        eprintln!(
            "collector_spans/{bench}: {} spans encoded, {:.0} bytes of OTLP per span",
            o.encoded_spans,
            o.encoded_bytes as f64 / o.encoded_spans as f64
        );
    }
    drop(o);
    out
}

/// Times `encode` over batches of `SPAN_BATCH` copies of `batch` (cloned untimed), per span.
fn encode_spans(
    c: &mut Criterion,
    bench: &str,
    batch: &[SpanData],
    mut encode: impl FnMut(Vec<SpanData>) -> usize,
) {
    let mut group = c.benchmark_group("collector_spans");
    group.throughput(Throughput::Elements(1));
    let mut bytes = (0usize, 0u64);
    group.bench_function(bench, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(batch.len());
                let spans = batch[..n].to_vec();
                let start = Instant::now();
                let len = encode(spans);
                timed += start.elapsed();
                bytes = (bytes.0 + len, bytes.1 + n as u64);
                left -= n;
            }
            timed
        })
    });
    group.finish();
    eprintln!(
        "collector_spans/{bench}: {:.0} bytes per span",
        bytes.0 as f64 / bytes.1.max(1) as f64
    );
}

fn spans(c: &mut Criterion, dir: &Path) {
    let kept = spans_through_drainer(c, dir, "assemble", BatchWork::Keep);
    spans_through_drainer(
        c,
        dir,
        "assemble_encode_otlp",
        BatchWork::EncodeOtlp(OtlpEncoder::new(bench_resource())),
    );

    let batch = kept
        .lock()
        .kept
        .first()
        .cloned()
        .expect("the assemble benchmark kept a batch");
    assert_eq!(batch.len(), SPAN_BATCH);
    let mut encoder = OtlpEncoder::new(bench_resource());
    encode_spans(c, "encode_otlp", &batch, |spans| {
        let mut body = Vec::new();
        encoder.encode(spans, &mut body);
        body.len()
    });
    // The OTLP/HTTP transport's own gzip step (`prepare`); no request is sent.
    let mut transport = HttpTransport::new(
        "http://127.0.0.1:4318/v1/traces",
        "application/x-protobuf",
        Vec::new(),
        true,
        Duration::from_secs(10),
        &Default::default(),
    )
    .expect("an OTLP/HTTP transport");
    encode_spans(c, "encode_otlp_gzip", &batch, |spans| {
        let mut body = Vec::new();
        encoder.encode(spans, &mut body);
        transport.prepare(body).len()
    });
}

/// A realistic log event as the drain loop builds it.
fn bench_log(i: u64) -> LogData {
    LogData {
        origin: Origin {
            service: "checkout-api".into(),
            pid: 4242,
            tid: 4243,
        },
        time_ns: 1_795_541_465_000_000_000 + i * 1_000,
        observed_ns: 1_795_541_465_000_000_000 + i * 1_000 + 50_000_000,
        level: 2,
        message: format!("order {i} placed by customer, payment ok"),
        truncated: false,
        correlation_id: "c0ffee00-1234-4567-89ab-cdef01234567".into(),
        trace_id: [0x4b; 16],
        span_id: [0x1f; 8],
        caller: "app/orders/views.py:142 place_order".into(),
        fields: vec![
            ("http.route".into(), OwnedValue::Str("/orders/{id}".into())),
            ("order_id".into(), OwnedValue::I64(i as i64)),
            ("amount".into(), OwnedValue::F64(129.95)),
        ],
    }
}

/// Times rendering `LogData` events as lines with `format`/`schema`, per line.
fn render_logs(c: &mut Criterion, bench: &str, format: Format, schema: Schema) {
    let events: Vec<LogData> = (0..1024).map(bench_log).collect();
    let mut renderer = Renderer::new(format, schema, bench_resource());
    let mut out = Vec::with_capacity(1 << 20);
    let mut group = c.benchmark_group("collector_logs");
    group.throughput(Throughput::Elements(1));
    let mut bytes = (0usize, 0u64);
    group.bench_function(bench, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters as usize {
                renderer.render(&events[i % events.len()], &mut out);
                out.push(b'\n');
                if out.len() > (1 << 20) - 4096 {
                    bytes = (bytes.0 + out.len(), bytes.1);
                    out.clear();
                }
            }
            bytes.1 += iters;
            start.elapsed()
        })
    });
    group.finish();
    eprintln!(
        "collector_logs/{bench}: {:.0} bytes per line",
        (bytes.0 + out.len()) as f64 / bytes.1.max(1) as f64
    );
}

/// A log sink rendering every event to JSON lines on the drain thread.
struct RenderSink {
    renderer: Renderer,
    out: Vec<u8>,
    lines: Arc<Mutex<(u64, u64)>>,
}

impl LogSink for RenderSink {
    fn export(&mut self, log: LogData) {
        self.renderer.render(&log, &mut self.out);
        self.out.push(b'\n');
        if self.out.len() > 1 << 20 {
            let mut l = self.lines.lock();
            l.1 += self.out.len() as u64;
            self.out.clear();
        }
        self.lines.lock().0 += 1;
    }
}

fn logs_through_drainer(c: &mut Criterion, dir: &Path) {
    let writer = WorkerThreads::new(1, move |_| {
        let route = Symbol::intern("http.route");
        let order = Symbol::intern("order_id");
        let amount = Symbol::intern("amount");
        let caller = Symbol::intern("app/orders/views.py:142 place_order");
        shmtel_core::set_correlation_id("c0ffee00-1234-4567-89ab-cdef01234567");
        move |n| {
            let start = Instant::now();
            let span = Span::start_root(Symbol::intern("POST /orders"), 1.0);
            for i in 0..n {
                shmtel_core::log_with_caller(
                    Level::Info,
                    "order placed by customer, payment ok!!!",
                    &[
                        (route, Value::Str("/orders/{id}")),
                        (order, Value::I64(i as i64)),
                        (amount, Value::F64(129.95)),
                    ],
                    caller,
                );
            }
            drop(span);
            start.elapsed()
        }
    });
    let stats = Arc::new(Mutex::new(SelfStats::default()));
    let agg = Arc::new(Mutex::new(Aggregator::new(
        Overrides::default(),
        10 * SERIES,
    )));
    let mut drainer = Drainer::new(
        DrainOptions::new(dir.to_path_buf()),
        agg,
        stats.clone(),
        Default::default(),
    );
    let lines = Arc::new(Mutex::new((0u64, 0u64)));
    drainer.add_log_sink(Box::new(RenderSink {
        renderer: Renderer::new(Format::Json, Schema::Shmtel, bench_resource()),
        out: Vec::with_capacity(2 << 20),
        lines: lines.clone(),
    }));
    drainer.drain_everything();
    writer.run(64);
    drainer.drain_everything();
    let mut group = c.benchmark_group("collector_logs");
    group.throughput(Throughput::Elements(1));
    group.bench_function("drain_render_shmtel", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(LOG_FILL);
                writer.run(n);
                let before = stats.lock().logs;
                let start = Instant::now();
                let mut drained = 0;
                while drained < n {
                    let k = drainer.pass();
                    drained = stats.lock().logs - before;
                    if k == 0 {
                        break;
                    }
                }
                timed += start.elapsed();
                assert_eq!(drained, n, "{drained} of {n} log events drained");
                left -= n;
            }
            timed
        })
    });
    group.finish();
}

fn logs(c: &mut Criterion, dir: &Path) {
    render_logs(c, "render_shmtel", Format::Json, Schema::Shmtel);
    render_logs(c, "render_ecs", Format::Json, Schema::Ecs);
    render_logs(c, "render_otel", Format::Json, Schema::Otel);
    render_logs(c, "render_logfmt", Format::Logfmt, Schema::Shmtel);
    logs_through_drainer(c, dir);
}

/// Resident and CPU figures of the collector process, from `/proc/<pid>`.
struct ProcFigures {
    vm_rss_kb: u64,
    vm_hwm_kb: u64,
    rss_anon_kb: u64,
    rss_file_kb: u64,
    rss_shmem_kb: u64,
}

fn proc_status(pid: u32) -> ProcFigures {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    ProcFigures {
        vm_rss_kb: field("VmRSS:"),
        vm_hwm_kb: field("VmHWM:"),
        rss_anon_kb: field("RssAnon:"),
        rss_file_kb: field("RssFile:"),
        rss_shmem_kb: field("RssShmem:"),
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// Whether every ring in `dir` has been consumed up to its head.
fn all_drained(dir: &Path) -> bool {
    let Ok(entries) = shmtel_core::reader::scan_dir(dir) else {
        return false;
    };
    entries
        .iter()
        .filter(|e| matches!(e.name, shmtel_core::region::RegionName::Ring { .. }))
        .all(
            |e| match shmtel_core::reader::RingReader::open(&e.path, false) {
                Ok(r) => {
                    let s = r.stats();
                    s.head == s.tail
                }
                Err(_) => true,
            },
        )
}

/// Runs the daemon and the 64-thread writer as child processes; measures the daemon.
fn process_measurement() -> serde_json::Value {
    let dir = shmtel_benches::region_dir().expect("create a region directory");
    let exe = std::env::current_exe().expect("current executable");
    let mut collector = Command::new(&exe)
        .env(ROLE, "collector")
        .env(DIR, dir.path())
        .env_remove("SHMTEL_CONFIG")
        .env_remove("SHMTEL_LISTEN")
        .env_remove("SHMTEL_STATE_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the collector child");
    let collector_pid = collector.id();
    let mut writers = Command::new(&exe)
        .env(ROLE, "writers")
        .env(DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer child");
    let mut line = String::new();
    BufReader::new(writers.stdout.take().expect("writer stdout"))
        .read_line(&mut line)
        .expect("read the writer's report");
    let written: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    while !all_drained(dir.path()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained = all_drained(dir.path());
    // Let the drain loop settle into its idle polling before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let mem = proc_status(collector_pid);
    let idle_window = Duration::from_secs(10);
    let cpu_before = cpu_seconds(collector_pid);
    std::thread::sleep(idle_window);
    let cpu_idle = (cpu_seconds(collector_pid) - cpu_before) / idle_window.as_secs_f64();

    // Closing the writer's stdin lets it exit; SIGTERM makes the daemon drain, save and exit.
    drop(writers.stdin.take());
    let _ = writers.wait();
    // SAFETY: kill has no memory preconditions; the pid is our own child's, not yet reaped.
    unsafe { libc::kill(collector_pid as libc::pid_t, libc::SIGTERM) };
    let _ = collector.wait();
    drop(dir);

    let result = serde_json::json!({
        "writer_threads": WRITER_THREADS,
        "series": SERIES,
        "written": written,
        "drained_before_measuring": drained,
        "vm_rss_kb": mem.vm_rss_kb,
        "vm_hwm_kb": mem.vm_hwm_kb,
        "rss_anon_kb": mem.rss_anon_kb,
        "rss_file_kb": mem.rss_file_kb,
        "rss_shmem_kb": mem.rss_shmem_kb,
        "idle_cpu_fraction_of_a_core": cpu_idle,
        "idle_window_seconds": idle_window.as_secs_f64(),
    });
    eprintln!("collector process: {result}");
    result
}

/// Role `collector`: the real daemon on the given directory, on an ephemeral loopback port.
fn run_collector(dir: PathBuf) -> i32 {
    let args = shmtel_collector::config::CollectArgs {
        dir: Some(dir.clone()),
        listen: Some("127.0.0.1:0".parse().expect("loopback address")),
        state_file: Some(dir.join(".collector-state.json")),
        ..Default::default()
    };
    shmtel_collector::collect::run(&args)
}

/// Role `writers`: 64 threads record into the 10,000 series until each ring has wrapped twice,
/// then report on stdout and stay alive (their rings stay live) until stdin closes.
fn run_writers(dir: PathBuf) -> i32 {
    // Default settings (1 MiB rings, 10,000 series per process): what a deployment has, and what
    // sizes each ring's overflow-slot array, which the collector maps too.
    shmtel_core::init(shmtel_core::Config {
        dir: Some(dir),
        service: "shmtel-bench-writers".into(),
        ..Default::default()
    })
    .expect("initialise shmtel");
    let set = Arc::new(SeriesSet::register());
    for i in 0..SERIES {
        set.record(i, 1.0);
    }
    // 2 MiB of 24-to-32-byte records per thread: every 1 MiB ring wraps twice.
    let per_thread = 2 * (1 << 20) / 24;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
    let exit_rx = Arc::new(std::sync::Mutex::new(exit_rx));
    let mut handles = Vec::new();
    for t in 0..WRITER_THREADS {
        let set = Arc::clone(&set);
        let done_tx = done_tx.clone();
        let exit_rx = Arc::clone(&exit_rx);
        handles.push(std::thread::spawn(move || {
            // Handles looked up once: the cost measured here is the collector's, not ours.
            let mine: Vec<usize> = (t..SERIES).step_by(WRITER_THREADS).collect();
            for k in 0..per_thread {
                set.record(mine[k % mine.len()], 1.0);
                if k % 4096 == 0 {
                    // Leave the collector room: this measures its memory, not our drop path.
                    std::thread::yield_now();
                }
            }
            let stats = shmtel_core::flush_stats();
            done_tx.send(stats).expect("report");
            // Stay alive (ring open) until the parent closes our stdin.
            let _ = exit_rx.lock().map(|rx| rx.recv());
        }));
    }
    drop(done_tx);
    let stats: Vec<_> = done_rx.iter().take(WRITER_THREADS).collect();
    let coalesced: u64 = stats.iter().map(|s| s.coalesced).sum();
    let dropped: u64 = stats
        .iter()
        .map(|s| s.dropped_other + s.dropped_metric)
        .sum();
    let report = serde_json::json!({
        "records": per_thread * WRITER_THREADS,
        "coalesced": coalesced,
        "dropped": dropped,
    });
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{report}");
    let _ = stdout.flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    for _ in 0..WRITER_THREADS {
        let _ = exit_tx.send(());
    }
    for h in handles {
        let _ = h.join();
    }
    0
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

fn output_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("criterion"))
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"))
}

fn collector_benches(c: &mut Criterion) {
    let dir = shmtel_benches::region_dir().expect("create a region directory");
    init_shmtel(dir.path());
    scrape(c, dir.path());
    drain(c, dir.path());
    spans(c, dir.path());
    logs(c, dir.path());
}

criterion_group! {
    name = collector;
    config = config();
    targets = collector_benches
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("collector") => std::process::exit(run_collector(PathBuf::from(
            std::env::var_os(DIR).expect("SHMTEL_BENCH_DIR"),
        ))),
        Ok("writers") => std::process::exit(run_writers(PathBuf::from(
            std::env::var_os(DIR).expect("SHMTEL_BENCH_DIR"),
        ))),
        _ => {}
    }
    collector();
    // The process measurement takes ~15 s and is no criterion benchmark: run it under
    // `cargo bench` (which passes `--bench`; `cargo test --benches` does not), unless the run is
    // filtered to other benchmarks (`cargo bench -- collector_drain`) or only lists them.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    let filtered = args.iter().any(|a| !a.starts_with('-'));
    if benching && (!filtered || args.iter().any(|a| a == "collector_process")) {
        let result = process_measurement();
        let dir = output_dir();
        let path = dir.join("shmtel_collector_process.json");
        let text = serde_json::to_string_pretty(&result).expect("serialise");
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
    Criterion::default().configure_from_args().final_summary();
}
