//! Recording-path benchmarks: shmtel side by side with the libraries a user would pick instead.
//!
//! One criterion group per case (`counter_inc_1t`, `counter_inc_2t`, `labeled_inc`,
//! `histogram_observe`, `span_1_attr`, `span_sampled`, `span_unsampled`, `log_2_fields`, plus
//! `floor` for the machine's floors);
//! inside a group one function per implementation. `benches/report.py` turns the medians into
//! the ratio table of the README. Every competitor is set up the way its documentation tells a
//! user to; the README lists the exact configuration of each.
//!
//! shmtel records into real ring files in a temporary directory on `/dev/shm`. Its functions:
//! - `shmtel`: the recording thread drains its own ring between timed chunks of 2048 operations
//!   (untimed), so every timed record finds room: the append path, as with a collector that
//!   keeps up. Every sample checks that nothing went to an overflow slot or was dropped.
//! - `shmtel_draining`: a separate thread drains every ring concurrently, like the collector;
//!   when the writer outruns it the ring fills, and how often that happened is written to
//!   `target/criterion/shmtel_losses.json` (the report prints it).
//! - `shmtel_ring_full` (counter only): no consumer at all; the ring is full after the warm-up
//!   and every increment takes the overflow-slot path.

// `criterion_group!` expands to an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use shmtel_benches::drain::{dir_losses_since, dir_stats, BackgroundDrain, OwnRing};
use shmtel_benches::{time_chunks, time_loop, WorkerThreads};
use shmtel_core::{Counter, CounterVec, Histogram, Level, Span, SpanContext, Symbol, Value};

/// Label values used by every labeled case: a two-label family, as in a RED-metrics middleware.
const METHOD: &str = "GET";
const ROUTE: &str = "/users";

/// The two worker threads of the `_2t` case each record into a series of their own.
const THREAD_LABELS: [&str; 2] = ["0", "1"];

/// The bucket layout every histogram case uses: Prometheus' default buckets (what a user who
/// does not choose gets from `prometheus` and `prometheus_client`).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

mod shmtel {
    //! The process's shmtel configuration and the bookkeeping of the consumer modes.

    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    use shmtel_benches::drain::RingLosses;

    static DIR: OnceLock<PathBuf> = OnceLock::new();

    /// Initialises shmtel once, with its regions in a fresh directory on tmpfs; returns it.
    pub fn dir() -> &'static Path {
        DIR.get_or_init(|| {
            let dir = shmtel_benches::region_dir()
                .expect("create a region directory")
                .keep();
            shmtel_core::init(shmtel_core::Config {
                dir: Some(dir.clone()),
                service: "shmtel-bench".into(),
                ..Default::default()
            })
            .expect("initialise shmtel");
            dir
        })
    }

    /// Removes the region directory (at the end of the run).
    pub fn remove_dir() {
        if let Some(dir) = DIR.get() {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!("shmtel bench: cannot remove {}: {e}", dir.display());
            }
        }
    }

    /// What one consumer-mode benchmark saw: operations timed, records the consumer took, and
    /// what missed the ring.
    pub struct Note {
        pub id: String,
        pub ops: u64,
        pub records_per_op: u64,
        pub drained: u64,
        pub losses: RingLosses,
    }

    static NOTES: Mutex<Vec<Note>> = Mutex::new(Vec::new());

    /// Keeps `note` for `write_notes`, and says it on stderr.
    pub fn note(note: Note) {
        if note.ops == 0 {
            return; // a filtered or profiling run that did not measure this function
        }
        let missed = note.losses.total();
        let records = note.ops * note.records_per_op;
        eprintln!(
            "{}: {} ops, {} records drained, {} missed the ring ({:.1}% of {} records): {:?}",
            note.id,
            note.ops,
            note.drained,
            missed,
            100.0 * missed as f64 / records.max(1) as f64,
            records,
            note.losses
        );
        NOTES.lock().expect("notes lock").push(note);
    }

    /// Writes the notes as JSON beside criterion's results, for `report.py`.
    pub fn write_notes() {
        let dir = std::env::var_os("CRITERION_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("criterion"))
            })
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"));
        let notes = NOTES.lock().expect("notes lock");
        let path = dir.join("shmtel_losses.json");
        // A filtered or profiling run updates only what it measured.
        let mut json: serde_json::Map<String, serde_json::Value> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        json.extend(notes.iter().filter(|n| n.ops > 0).map(|n| {
            (
                n.id.clone(),
                serde_json::json!({
                    "ops": n.ops,
                    "records_per_op": n.records_per_op,
                    "drained": n.drained,
                    "coalesced": n.losses.coalesced,
                    "dropped_spans": n.losses.dropped_spans,
                    "dropped_logs": n.losses.dropped_logs,
                    "dropped_other": n.losses.dropped_other,
                    "dropped_metric": n.losses.dropped_metric,
                }),
            )
        }));
        let text = serde_json::to_string_pretty(&json).expect("serialise notes");
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
            eprintln!("shmtel bench: cannot write {}: {e}", path.display());
        }
    }
}

mod competitors {
    //! Set-up of the competing libraries, each configured once per process.

    use std::sync::OnceLock;
    use std::time::Duration;

    use metrics_exporter_prometheus::PrometheusBuilder;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter};

    /// A span exporter that accepts every batch and sends it nowhere.
    ///
    /// The OTLP exporter a user would run needs a network and a collector; this one keeps the SDK's
    /// whole recording path (span building, processor, queue) and removes only the encoding and
    /// the I/O, which favours the SDK.
    #[derive(Debug, Default)]
    pub struct DiscardingExporter;

    impl SpanExporter for DiscardingExporter {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            drop(batch);
            Ok(())
        }
    }

    /// Two OpenTelemetry SDK tracers over the discarding exporter: one behind a
    /// `SimpleSpanProcessor` (export on `end()`, on the caller's thread), one behind the default
    /// `BatchSpanProcessor` (bounded queue, background thread: what production setups use).
    pub struct OtelTracers {
        /// Tracer whose provider uses `with_simple_exporter`.
        pub simple: SdkTracer,
        /// Tracer whose provider uses `with_batch_exporter`.
        pub batch: SdkTracer,
        // The providers own the processors; keep them alive for the whole run.
        _providers: [SdkTracerProvider; 2],
    }

    /// Builds both OpenTelemetry tracers.
    pub fn otel() -> OtelTracers {
        let simple_provider = SdkTracerProvider::builder()
            .with_simple_exporter(DiscardingExporter)
            .build();
        let batch_provider = SdkTracerProvider::builder()
            .with_batch_exporter(DiscardingExporter)
            .build();
        OtelTracers {
            simple: simple_provider.tracer("shmtel-bench"),
            batch: batch_provider.tracer("shmtel-bench"),
            _providers: [simple_provider, batch_provider],
        }
    }

    /// An OpenTelemetry SDK tracer with an explicit sampler, behind the default
    /// `BatchSpanProcessor` over the discarding exporter (the `span_sampled` and `span_unsampled`
    /// cases). The provider is returned too: dropping it shuts the processor down.
    pub fn otel_sampled(sampler: Sampler) -> (SdkTracer, SdkTracerProvider) {
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_batch_exporter(DiscardingExporter)
            .build();
        (provider.tracer("shmtel-bench"), provider)
    }

    /// Installs `metrics-exporter-prometheus` as the global `metrics` recorder, once, and runs its
    /// upkeep every second the way `PrometheusBuilder::install` would (without upkeep, histogram
    /// samples pile up in memory until the next scrape).
    pub fn install_metrics_recorder() {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .expect("install the metrics Prometheus recorder");
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(1));
                    handle.run_upkeep();
                })
                .expect("spawn the metrics upkeep thread");
        });
    }

    /// Installs tracing-subscriber's JSON formatter writing to `std::io::sink()` as the global
    /// subscriber, once. Span close events are on (`FmtSpan::CLOSE`) so that a span is written out
    /// like the other libraries' spans are; events at INFO and above are enabled.
    pub fn install_tracing_subscriber() {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .with_max_level(tracing::Level::INFO)
                .with_writer(std::io::sink)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("install the global tracing subscriber");
        });
    }
}

/// Benchmarks one shmtel operation on the calling thread in the two consumer modes: `shmtel`
/// (own ring drained between timed chunks) and `shmtel_draining` (a concurrent drain thread).
/// `records_per_op` is how many ring records one operation writes.
fn shmtel_1t(
    group: &mut BenchmarkGroup<'_, WallTime>,
    case: &str,
    records_per_op: u64,
    mut op: impl FnMut(),
) {
    let dir = shmtel::dir();
    op(); // creates this thread's ring and interns what the operation needs

    let mut own = OwnRing::open(dir).expect("open this thread's ring");
    let what = format!("{case}/shmtel");
    group.bench_function("shmtel", |b| {
        b.iter_custom(|n| {
            let elapsed = time_chunks(
                n,
                || {
                    own.drain();
                },
                &mut op,
            );
            own.assert_clean(&what);
            elapsed
        })
    });
    own.drain();
    drop(own);

    let before = dir_stats(dir).expect("read ring stats");
    let drain = BackgroundDrain::start(dir);
    let mut ops = 0u64;
    group.bench_function("shmtel_draining", |b| {
        b.iter_custom(|n| {
            ops += n;
            time_loop(n, &mut op)
        })
    });
    let drained = drain.stop();
    shmtel::note(shmtel::Note {
        id: format!("{case}/shmtel_draining"),
        ops,
        records_per_op,
        drained,
        losses: dir_losses_since(dir, &before).expect("read ring stats"),
    });
}

fn counter_inc_1t(c: &mut Criterion) {
    let mut group = c.benchmark_group("counter_inc_1t");

    shmtel::dir();
    let counter = Counter::new("bench_counter_1t", "help").expect("register counter");
    shmtel_1t(&mut group, "counter_inc_1t", 1, || black_box(counter).inc());

    // No consumer: the warm-up fills the ring, then every increment goes to its overflow slot.
    let dir = shmtel::dir();
    let before = dir_stats(dir).expect("read ring stats");
    let mut ops = 0u64;
    group.bench_function("shmtel_ring_full", |b| {
        b.iter_custom(|n| {
            ops += n;
            time_loop(n, || black_box(counter).inc())
        })
    });
    shmtel::note(shmtel::Note {
        id: "counter_inc_1t/shmtel_ring_full".into(),
        ops,
        records_per_op: 1,
        drained: 0,
        losses: dir_losses_since(dir, &before).expect("read ring stats"),
    });

    let registry = prometheus::Registry::new();
    let prom = prometheus::IntCounter::new("bench_counter_1t", "help").expect("valid counter");
    registry
        .register(Box::new(prom.clone()))
        .expect("register counter");
    group.bench_function("prometheus", |b| b.iter(|| black_box(&prom).inc()));

    competitors::install_metrics_recorder();
    group.bench_function("metrics", |b| {
        b.iter(|| metrics::counter!("bench_counter_1t").increment(1))
    });
    let handle = metrics::counter!("bench_counter_1t_handle");
    group.bench_function("metrics_handle", |b| {
        b.iter(|| black_box(&handle).increment(1))
    });

    group.finish();
}

fn counter_inc_2t(c: &mut Criterion) {
    let mut group = c.benchmark_group("counter_inc_2t");

    // shmtel, each thread draining its own ring between chunks.
    let dir = shmtel::dir();
    let family = CounterVec::new("bench_counter_2t", "help", &["thread"]).expect("register family");
    let make_family = family.clone();
    let workers = WorkerThreads::new(2, move |i| {
        let counter = make_family.with_label_values(&[THREAD_LABELS[i]]);
        counter.inc(); // creates the worker's ring
        let mut own = OwnRing::open(dir).expect("open the worker's ring");
        move |n| {
            let elapsed = time_chunks(
                n,
                || {
                    own.drain();
                },
                || black_box(counter).inc(),
            );
            own.assert_clean("counter_inc_2t/shmtel");
            elapsed
        }
    });
    group.bench_function("shmtel", |b| b.iter_custom(|n| workers.run(n)));
    drop(workers);

    // shmtel with a concurrent drain thread: three busy threads on two cores.
    let workers = WorkerThreads::new(2, move |i| {
        let counter = family.with_label_values(&[THREAD_LABELS[i]]);
        move |n| time_loop(n, || black_box(counter).inc())
    });
    let before = dir_stats(dir).expect("read ring stats");
    let drain = BackgroundDrain::start(dir);
    let mut ops = 0u64;
    group.bench_function("shmtel_draining", |b| {
        b.iter_custom(|n| {
            ops += 2 * n;
            workers.run(n)
        })
    });
    let drained = drain.stop();
    drop(workers);
    shmtel::note(shmtel::Note {
        id: "counter_inc_2t/shmtel_draining".into(),
        ops,
        records_per_op: 1,
        drained,
        losses: dir_losses_since(dir, &before).expect("read ring stats"),
    });

    let registry = prometheus::Registry::new();
    let prom_family = prometheus::IntCounterVec::new(
        prometheus::Opts::new("bench_counter_2t", "help"),
        &["thread"],
    )
    .expect("valid counter family");
    registry
        .register(Box::new(prom_family.clone()))
        .expect("register counter family");
    let per_thread = [
        prom_family.with_label_values(&[THREAD_LABELS[0]]),
        prom_family.with_label_values(&[THREAD_LABELS[1]]),
    ];
    let workers = WorkerThreads::new(2, move |i| {
        let counter = per_thread[i].clone();
        move |n| time_loop(n, || black_box(&counter).inc())
    });
    group.bench_function("prometheus", |b| b.iter_custom(|n| workers.run(n)));
    drop(workers);

    // Both threads on ONE series: the cache line bounces between the cores.
    let shared = prometheus::IntCounter::new("bench_counter_2t_shared", "help").expect("counter");
    let workers = WorkerThreads::new(2, move |_| {
        let counter = shared.clone();
        move |n| time_loop(n, || black_box(&counter).inc())
    });
    group.bench_function("prometheus_shared", |b| b.iter_custom(|n| workers.run(n)));
    drop(workers);

    competitors::install_metrics_recorder();
    let workers = WorkerThreads::new(2, |i| {
        let label = THREAD_LABELS[i];
        move |n| {
            time_loop(n, || {
                metrics::counter!("bench_counter_2t", "thread" => label).increment(1)
            })
        }
    });
    group.bench_function("metrics", |b| b.iter_custom(|n| workers.run(n)));
    drop(workers);

    let workers = WorkerThreads::new(2, |i| {
        let counter = metrics::counter!("bench_counter_2t_handle", "thread" => THREAD_LABELS[i]);
        move |n| time_loop(n, || black_box(&counter).increment(1))
    });
    group.bench_function("metrics_handle", |b| b.iter_custom(|n| workers.run(n)));
    drop(workers);

    group.finish();
}

fn labeled_inc(c: &mut Criterion) {
    let mut group = c.benchmark_group("labeled_inc");

    shmtel::dir();
    let family = CounterVec::new("bench_http_requests", "help", &["method", "route"])
        .expect("register family");
    shmtel_1t(&mut group, "labeled_inc", 1, || {
        family
            .with_label_values(&[black_box(METHOD), black_box(ROUTE)])
            .inc()
    });

    let registry = prometheus::Registry::new();
    let prom_family = prometheus::IntCounterVec::new(
        prometheus::Opts::new("bench_http_requests", "help"),
        &["method", "route"],
    )
    .expect("valid counter family");
    registry
        .register(Box::new(prom_family.clone()))
        .expect("register counter family");
    group.bench_function("prometheus", |b| {
        b.iter(|| {
            prom_family
                .with_label_values(&[black_box(METHOD), black_box(ROUTE)])
                .inc()
        })
    });

    competitors::install_metrics_recorder();
    group.bench_function("metrics", |b| {
        b.iter(|| {
            metrics::counter!("bench_http_requests", "method" => black_box(METHOD), "route" => black_box(ROUTE))
                .increment(1)
        })
    });

    group.finish();
}

fn histogram_observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("histogram_observe");
    // Values cycle through the buckets so no branch predictor learns one answer.
    let values: Vec<f64> = (0..64).map(|i| f64::from(i) * 0.02).collect();

    shmtel::dir();
    let hist = Histogram::new("bench_latency_seconds", "help", &BUCKETS).expect("register");
    let mut i = 0usize;
    shmtel_1t(&mut group, "histogram_observe", 1, || {
        i = (i + 1) & 63;
        black_box(hist).observe(values[i]);
    });

    let registry = prometheus::Registry::new();
    let prom = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("bench_latency_seconds", "help").buckets(BUCKETS.to_vec()),
    )
    .expect("valid histogram");
    registry
        .register(Box::new(prom.clone()))
        .expect("register histogram");
    let mut i = 0usize;
    group.bench_function("prometheus", |b| {
        b.iter(|| {
            i = (i + 1) & 63;
            black_box(&prom).observe(values[i]);
        })
    });

    competitors::install_metrics_recorder();
    let mut i = 0usize;
    group.bench_function("metrics", |b| {
        b.iter(|| {
            i = (i + 1) & 63;
            metrics::histogram!("bench_latency_seconds").record(values[i]);
        })
    });
    let handle = metrics::histogram!("bench_latency_seconds_handle");
    let mut i = 0usize;
    group.bench_function("metrics_handle", |b| {
        b.iter(|| {
            i = (i + 1) & 63;
            black_box(&handle).record(values[i]);
        })
    });

    group.finish();
}

fn span_1_attr(c: &mut Criterion) {
    use opentelemetry::trace::{Span as _, Tracer as _};
    use opentelemetry::KeyValue;

    let mut group = c.benchmark_group("span_1_attr");

    shmtel::dir();
    let name = Symbol::intern("db.query");
    let key = Symbol::intern("db.system");
    // Two records per span: the attribute frame and the span frame.
    shmtel_1t(&mut group, "span_1_attr", 2, || {
        let mut span = Span::start(name);
        span.set_attribute(key, Value::Str(black_box("postgres")));
        span.end();
    });

    let otel = competitors::otel();
    group.bench_function("otel_simple", |b| {
        b.iter(|| {
            let mut span = otel.simple.start("db.query");
            span.set_attribute(KeyValue::new("db.system", black_box("postgres")));
            span.end();
        })
    });
    group.bench_function("otel_batch", |b| {
        b.iter(|| {
            let mut span = otel.batch.start("db.query");
            span.set_attribute(KeyValue::new("db.system", black_box("postgres")));
            span.end();
        })
    });

    competitors::install_tracing_subscriber();
    group.bench_function("tracing_json", |b| {
        b.iter(|| {
            let span = tracing::info_span!("db.query", db.system = black_box("postgres"));
            drop(span.entered());
        })
    });

    group.finish();
}

/// Head sampling, sampled side: a new root span sampled by its ratio (`Span::start_root(name,
/// 1.0)`, the trace-id ratio decision taken and passed), one attribute, end. Against the
/// OpenTelemetry SDK with an explicit `AlwaysOn` sampler behind the `BatchSpanProcessor`.
fn span_sampled(c: &mut Criterion) {
    use opentelemetry::trace::{Span as _, Tracer as _};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::Sampler;

    let mut group = c.benchmark_group("span_sampled");

    shmtel::dir();
    let name = Symbol::intern("db.query");
    let key = Symbol::intern("db.system");
    // Two records per span: the attribute frame and the span frame.
    shmtel_1t(&mut group, "span_sampled", 2, || {
        let mut span = Span::start_root(name, black_box(1.0));
        span.set_attribute(key, Value::Str(black_box("postgres")));
        span.end();
    });

    let (tracer, _provider) = competitors::otel_sampled(Sampler::AlwaysOn);
    group.bench_function("otel_batch", |b| {
        b.iter(|| {
            let mut span = tracer.start("db.query");
            span.set_attribute(KeyValue::new("db.system", black_box("postgres")));
            span.end();
        })
    });

    group.finish();
}

/// Head sampling, unsampled side: what a span costs when the trace is not sampled (it still
/// gets ids, for logs and propagation, but records nothing). shmtel: a root whose ratio is 0
/// (`shmtel`), and a child of an unsampled remote parent (`shmtel_child`, what a service whose
/// caller did not sample does). OpenTelemetry SDK (batch processor): `AlwaysOff`,
/// `TraceIdRatioBased(0.0)`, and the default `ParentBased(AlwaysOn)` with an unsampled remote
/// parent (`otel_child`). Every sample checks that shmtel wrote nothing to the ring.
fn span_unsampled(c: &mut Criterion) {
    use opentelemetry::trace::{
        Span as _, SpanContext as OtelContext, SpanId, TraceContextExt as _, TraceFlags, TraceId,
        TraceState, Tracer as _,
    };
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::Sampler;

    let mut group = c.benchmark_group("span_unsampled");

    let dir = shmtel::dir();
    let name = Symbol::intern("db.query");
    let key = Symbol::intern("db.system");
    // One sampled span so that this thread has a ring (a filtered run may start here), then
    // watch that ring: an unsampled span must not write to it.
    Span::start_root(name, 1.0).end();
    let mut own = OwnRing::open(dir).expect("open this thread's ring");
    own.drain();
    let parent = SpanContext {
        trace_id: [0x4b; 16],
        span_id: [0x2c; 8],
        sampled: false,
    };
    let mut check = |what: &str| {
        let written = own.drain();
        assert_eq!(
            written, 0,
            "{what}: an unsampled span wrote {written} records"
        );
        own.assert_clean(what);
    };
    group.bench_function("shmtel", |b| {
        b.iter(|| {
            let mut span = Span::start_root(name, black_box(0.0));
            span.set_attribute(key, Value::Str(black_box("postgres")));
            span.end();
        })
    });
    check("span_unsampled/shmtel");
    group.bench_function("shmtel_child", |b| {
        b.iter(|| {
            let mut span = Span::start_with_parent(name, Some(black_box(parent)), true);
            span.set_attribute(key, Value::Str(black_box("postgres")));
            span.end();
        })
    });
    check("span_unsampled/shmtel_child");
    drop(own);

    let (off, _off_provider) = competitors::otel_sampled(Sampler::AlwaysOff);
    group.bench_function("otel_always_off", |b| {
        b.iter(|| {
            let mut span = off.start("db.query");
            span.set_attribute(KeyValue::new("db.system", black_box("postgres")));
            span.end();
        })
    });
    let (ratio0, _ratio0_provider) = competitors::otel_sampled(Sampler::TraceIdRatioBased(0.0));
    group.bench_function("otel_ratio_0", |b| {
        b.iter(|| {
            let mut span = ratio0.start("db.query");
            span.set_attribute(KeyValue::new("db.system", black_box("postgres")));
            span.end();
        })
    });
    let (parent_based, _pb_provider) =
        competitors::otel_sampled(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let remote = opentelemetry::Context::new().with_remote_span_context(OtelContext::new(
        TraceId::from_bytes([0x4b; 16]),
        SpanId::from_bytes([0x2c; 8]),
        TraceFlags::default(),
        true,
        TraceState::default(),
    ));
    group.bench_function("otel_child", |b| {
        b.iter(|| {
            let mut span = parent_based.start_with_context("db.query", black_box(&remote));
            span.set_attribute(KeyValue::new("db.system", black_box("postgres")));
            span.end();
        })
    });

    group.finish();
}

fn log_2_fields(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_2_fields");

    shmtel::dir();
    let user_id = Symbol::intern("user_id");
    let region = Symbol::intern("region");
    shmtel_1t(&mut group, "log_2_fields", 1, || {
        shmtel_core::log(
            Level::Info,
            black_box("user logged in"),
            &[
                (user_id, Value::I64(black_box(42))),
                (region, Value::Str(black_box("eu-west"))),
            ],
        )
    });

    competitors::install_tracing_subscriber();
    group.bench_function("tracing_json", |b| {
        b.iter(|| {
            tracing::info!(
                user_id = black_box(42_i64),
                region = black_box("eu-west"),
                "user logged in"
            )
        })
    });

    group.finish();
}

/// Machine floors measured in the same run, to read the other figures against: an uncontended
/// atomic add (what `prometheus` and `metrics` handles pay), a monotonic clock read (what a span
/// or log timestamp costs if taken with `Instant::now`) and shmtel's own clock read (two per
/// span, one per log event).
fn floors(c: &mut Criterion) {
    use std::sync::atomic::{AtomicU64, Ordering};

    let mut group = c.benchmark_group("floor");
    let cell = AtomicU64::new(0);
    // Ordering: Relaxed: only the cost of the read-modify-write is of interest.
    group.bench_function("atomic_add", |b| {
        b.iter(|| black_box(&cell).fetch_add(1, Ordering::Relaxed))
    });
    let mut plain = 0u64;
    group.bench_function("plain_add", |b| {
        b.iter(|| {
            plain = black_box(plain) + 1;
        })
    });
    group.bench_function("instant_now", |b| b.iter(std::time::Instant::now));
    // shmtel's timestamp source (the TSC where it is invariant, else the vDSO wall clock).
    shmtel::dir();
    shmtel_core::clock::init();
    group.bench_function("shmtel_now_ticks", |b| {
        b.iter(shmtel_core::clock::now_ticks)
    });
    group.finish();
}

fn config() -> Criterion {
    // Short windows keep the whole run (about 45 functions) within a few minutes on 2 cores;
    // command-line flags (`--measurement-time`, `--quick`) still override these.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = recording;
    config = config();
    targets = floors, counter_inc_1t, counter_inc_2t, labeled_inc, histogram_observe, span_1_attr,
        span_sampled, span_unsampled, log_2_fields
}

// `criterion_main!` plus the clean-up: the consumer-mode notes for the report, and the removal
// of the ring files.
fn main() {
    recording();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each function once and must
    // not overwrite a measured run's notes.
    if std::env::args().any(|a| a == "--bench") {
        shmtel::write_notes();
    }
    shmtel::remove_dir();
    Criterion::default().configure_from_args().final_summary();
}
