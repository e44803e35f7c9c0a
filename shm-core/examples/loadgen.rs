//! loadgen: a writer that records a known workload and prints, as one JSON line, what it
//! committed. Tests and the demo compare the collector's output with it.
//!
//! ```text
//! loadgen --dir DIR --threads N --ops M [--service S] [--kinds counter,gauge,histogram,span,log,business]
//!         [--rate OPS_PER_SEC_PER_THREAD] [--hold-ms MS]
//! ```
//! Per iteration i on thread t: `loadgen_ops{thread=t}` += 1 and `loadgen_progress{thread=t}` =
//! i + 1 in one batch (one commit: after a crash they agree); `loadgen_bytes` += i % 7;
//! `loadgen_latency_seconds` observes (i % 100) / 1000; a span `loadgen.op` with one attribute;
//! a log event with two fields; a business event `loadgen.order`.

use std::time::{Duration, Instant};

use shmtel_core::{
    batch, business_event, flush_stats, log, Counter, CounterVec, GaugeMode, GaugeVec, Histogram,
    Level, Span, Symbol, Value,
};

struct Args {
    dir: Option<String>,
    threads: usize,
    ops: u64,
    service: String,
    kinds: Vec<String>,
    rate: f64,
    hold_ms: u64,
}

fn usage(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!(
        "usage: loadgen --dir DIR --threads N --ops M [--service S] [--kinds counter,gauge,histogram,span,log,business] [--rate R] [--hold-ms MS]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        dir: None,
        threads: 1,
        ops: 1000,
        service: "loadgen".into(),
        kinds: ["counter", "gauge", "histogram", "span", "log", "business"]
            .map(String::from)
            .to_vec(),
        rate: 0.0,
        hold_ms: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--dir" => a.dir = Some(val()),
            "--threads" => {
                a.threads = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--threads takes a number"))
            }
            "--ops" => {
                a.ops = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--ops takes a number"))
            }
            "--service" => a.service = val(),
            "--kinds" => a.kinds = val().split(',').map(String::from).collect(),
            "--rate" => {
                a.rate = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--rate takes a number"))
            }
            "--hold-ms" => {
                a.hold_ms = val()
                    .parse()
                    .unwrap_or_else(|_| usage("--hold-ms takes a number"))
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    for k in &a.kinds {
        if !["counter", "gauge", "histogram", "span", "log", "business"].contains(&k.as_str()) {
            usage(&format!("unknown kind {k}"));
        }
    }
    if a.threads == 0 {
        usage("--threads must be at least 1");
    }
    a
}

#[derive(Default, Clone, Copy)]
struct ThreadResult {
    ops: u64,
    bytes: u64,
    hist_count: u64,
    hist_sum: f64,
    spans: u64,
    logs: u64,
    dropped_spans: u64,
    dropped_logs: u64,
    dropped_other: u64,
    coalesced: u64,
}

fn main() {
    let args = parse_args();
    let cfg = shmtel_core::Config {
        dir: args.dir.clone().map(Into::into),
        service: args.service.clone(),
        ..Default::default()
    };
    if let Err(e) = shmtel_core::init(cfg) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
    let has = |k: &str| args.kinds.iter().any(|x| x == k);
    let (counter, gauge, histogram, span, logk, business) = (
        has("counter"),
        has("gauge"),
        has("histogram"),
        has("span"),
        has("log"),
        has("business"),
    );
    let ops_vec =
        CounterVec::new("loadgen_ops", "Loadgen iterations", &["thread"]).expect("register");
    let bytes = Counter::new("loadgen_bytes", "Loadgen bytes").expect("register");
    let progress = GaugeVec::new(
        "loadgen_progress",
        "Iterations committed",
        &["thread"],
        GaugeMode::All,
    )
    .expect("register");
    let hist = Histogram::new(
        "loadgen_latency_seconds",
        "Loadgen latency",
        &[0.001, 0.01, 0.1, 1.0],
    )
    .expect("register");
    let span_name = Symbol::intern("loadgen.op");
    let attr_key = Symbol::intern("loadgen.iteration");
    let k_user = Symbol::intern("user_id");
    let k_path = Symbol::intern("path");
    let order = Symbol::intern("loadgen.order");
    let usd = Symbol::intern("usd");
    let k_region = Symbol::intern("region");

    let start = Instant::now();
    let handles: Vec<_> = (0..args.threads)
        .map(|t| {
            let ops_vec = ops_vec.clone();
            let progress = progress.clone();
            let (n, rate) = (args.ops, args.rate);
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || {
                    let label = t.to_string();
                    let ops = ops_vec.with_label_values(&[&label]);
                    let prog = progress.with_label_values(&[&label]);
                    let mut r = ThreadResult::default();
                    let t0 = Instant::now();
                    for i in 0..n {
                        if rate > 0.0 {
                            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                        }
                        if counter || gauge {
                            batch(|| {
                                if counter {
                                    ops.inc();
                                }
                                if gauge {
                                    prog.set((i + 1) as f64);
                                }
                            });
                            if counter {
                                r.ops += 1;
                                bytes.add((i % 7) as f64);
                                r.bytes += i % 7;
                            }
                        }
                        if histogram {
                            let v = (i % 100) as f64 / 1000.0;
                            hist.observe(v);
                            r.hist_count += 1;
                            r.hist_sum += v;
                        }
                        if span {
                            let mut s = Span::start(span_name);
                            s.set_attribute(attr_key, Value::I64(i as i64));
                            s.end();
                            r.spans += 1;
                        }
                        if logk {
                            log(
                                Level::Info,
                                "loadgen iteration",
                                &[
                                    (k_user, Value::I64(i as i64)),
                                    (k_path, Value::Str("/users")),
                                ],
                            );
                            r.logs += 1;
                        }
                        if business {
                            business_event(order, 19.99, usd, &[(k_region, Value::Str("eu"))]);
                        }
                    }
                    let st = flush_stats();
                    r.dropped_spans = st.dropped_spans;
                    r.dropped_logs = st.dropped_logs;
                    r.dropped_other = st.dropped_other;
                    r.coalesced = st.coalesced;
                    r
                })
                .expect("spawn thread")
        })
        .collect();
    let results: Vec<ThreadResult> = handles
        .into_iter()
        .map(|h| h.join().expect("thread panicked"))
        .collect();
    let elapsed = start.elapsed();
    let sum = |f: fn(&ThreadResult) -> u64| results.iter().map(f).sum::<u64>();
    let hist_sum: f64 = results.iter().map(|r| r.hist_sum).sum();
    let total_ops = sum(|r| r.ops);
    let out = serde_json::json!({
        "pid": std::process::id(),
        "threads": args.threads,
        "ops": args.ops,
        "counters": {
            "loadgen_ops_total": total_ops,
            "loadgen_bytes_total": sum(|r| r.bytes),
        },
        "histogram_count": sum(|r| r.hist_count),
        "histogram_sum": hist_sum,
        "spans": sum(|r| r.spans),
        "logs": sum(|r| r.logs),
        "dropped_spans": sum(|r| r.dropped_spans),
        "dropped_logs": sum(|r| r.dropped_logs),
        "dropped_other": sum(|r| r.dropped_other),
        "coalesced": sum(|r| r.coalesced),
        "elapsed_ms": elapsed.as_millis() as u64,
    });
    println!("{out}");
    if args.hold_ms > 0 {
        std::thread::sleep(Duration::from_millis(args.hold_ms));
    }
}
