//! A log-writing worker for the log pipeline's end-to-end tests.
//!
//! `log_writer DIR load N [THREADS]`: THREADS threads (default 1) write N log events between
//! them, as fast as they can. Event `i` (0-based, over all threads) has the message
//! `load line {i}` and the fields `seq` = i (int) and `thread` = the writer thread's index (int),
//! level INFO. Prints `WRITER {"written": N, "dropped": D}` when done, `dropped` being the events
//! that found a ring full (counted by the writer, exported by the collector). The service is
//! `logwriter`.
//!
//! `log_writer DIR pii`: writes the events of [`PII`] (messages and fields with emails, card
//! numbers, tokens) and one span whose attributes carry the same; prints `WRITER {...}`.
//!
//! Rings are 16 MiB per thread so that a load run does not drop when a collector is draining.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;
use shmtel_core::{Level, Span, Symbol, Value};

/// PII written by the `pii` mode: (message, field name, field value).
pub const PII: &[(&str, &str, &str)] = &[
    (
        "user alice@example.com signed in",
        "email",
        "bob@example.org",
    ),
    (
        "charged card 4111 1111 1111 1111",
        "card",
        "5500-0000-0000-0004",
    ),
    (
        "token sk_live_abcdefghijklmnop1234 used",
        "password",
        "hunter2",
    ),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "authorization",
        "Bearer abc.def.ghi",
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: log_writer DIR load N [THREADS] | log_writer DIR pii");
        std::process::exit(2);
    }
    shmtel_core::init(shmtel_core::Config {
        dir: Some(args[0].clone().into()),
        service: "logwriter".into(),
        ring_bytes: 16 << 20,
        ..shmtel_core::Config::default()
    })
    .expect("init the writer");
    match args[1].as_str() {
        "load" => {
            let n: u64 = args.get(2).and_then(|s| s.parse().ok()).expect("N");
            let threads: u64 = args.get(3).map_or(1, |s| s.parse().expect("THREADS"));
            load(n, threads.max(1));
        }
        "pii" => pii(),
        other => {
            eprintln!("log_writer: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}

fn load(n: u64, threads: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let next = next.clone();
            std::thread::spawn(move || {
                let (seq, thread) = (Symbol::intern("seq"), Symbol::intern("thread"));
                loop {
                    // Ordering: Relaxed: only hands out distinct numbers.
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let msg = format!("load line {i}");
                    shmtel_core::log(
                        Level::Info,
                        &msg,
                        &[(seq, Value::I64(i as i64)), (thread, Value::I64(t as i64))],
                    );
                }
                shmtel_core::flush_stats().dropped_logs
            })
        })
        .collect();
    let dropped: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("writer thread"))
        .sum();
    println!("WRITER {}", json!({"written": n, "dropped": dropped}));
}

fn pii() {
    let sym = Symbol::intern;
    for (msg, key, value) in PII {
        shmtel_core::log(Level::Warn, msg, &[(sym(key), Value::Str(value))]);
    }
    let mut span = Span::start(sym("checkout"));
    for (msg, key, value) in PII {
        span.set_attribute(sym(key), Value::Str(value));
        span.set_attribute(sym("note"), Value::Str(msg));
    }
    drop(span);
    shmtel_core::flush_stats();
    println!(
        "WRITER {}",
        json!({"written": PII.len(), "span": "checkout"})
    );
}
