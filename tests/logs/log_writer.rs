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
//! `log_writer DIR schema`: writes one event of every level, one with a field of every type
//! (str, int, float, bool, null, JSON object and array, a JSON field that does not parse, a
//! field named `message`), one with a caller, one with a correlation id, one inside a span, one
//! with CJK, emoji and right-to-left text, one longer than `max_message_bytes` (8192; the writer
//! truncates it), and one with newlines, quotes, backslashes and control characters in its
//! message and a field. Prints `WRITER {"pid": P, "events": [...]}`, each event as
//! `{"message", "level", "fields": {name: JSON value as a reader should see it}, "caller",
//! "correlation_id", "trace_id", "span_id", "truncated"}` (ids as hex, empty when unset;
//! `message` as the writer stored it, i.e. truncated).
//!
//! Rings are 16 MiB per thread so that a load run does not drop when a collector is draining.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value as Json};
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
        eprintln!(
            "usage: log_writer DIR load N [THREADS] | log_writer DIR pii | log_writer DIR schema"
        );
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
        "schema" => schema(),
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

/// What the `schema` mode wrote, one JSON object per event.
struct Expected(Vec<Json>);

impl Expected {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        level: Level,
        message: &str,
        fields: Json,
        caller: &str,
        correlation_id: &str,
        ids: Option<(String, String)>,
        truncated: bool,
    ) {
        let (trace_id, span_id) = ids.unwrap_or_default();
        self.0.push(json!({
            "message": message, "level": level.as_str(), "fields": fields, "caller": caller,
            "correlation_id": correlation_id, "trace_id": trace_id, "span_id": span_id,
            "truncated": truncated,
        }));
    }
}

/// The message longer than `max_message_bytes`: 3-byte characters, so the cut falls inside one
/// unless the writer keeps to character boundaries.
fn long_message() -> (String, String) {
    let full = "\u{20ac}".repeat(3000);
    let cut = "\u{20ac}".repeat(8192 / 3);
    (full, cut)
}

fn schema() {
    use shmtel_core::Value as V;
    let sym = Symbol::intern;
    let mut ex = Expected(Vec::new());
    for (i, level) in [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ]
    .into_iter()
    .enumerate()
    {
        let msg = format!("level {}", level.as_str());
        shmtel_core::log(level, &msg, &[(sym("idx"), V::I64(i as i64))]);
        ex.push(level, &msg, json!({"idx": i}), "", "", None, false);
    }

    let obj = r#"{"a":1,"b":[true,null,"x"],"c":{"d":"\u00e9"}}"#;
    let arr = r#"[1, 2.5, "three"]"#;
    shmtel_core::log(
        Level::Info,
        "typed fields",
        &[
            (sym("str"), V::Str("plain text")),
            (sym("int"), V::I64(-9_007_199_254_740_993)),
            (sym("max"), V::I64(i64::MAX)),
            (sym("float"), V::F64(3.25)),
            (sym("tiny"), V::F64(1e-7)),
            (sym("nan"), V::F64(f64::NAN)),
            (sym("yes"), V::Bool(true)),
            (sym("no"), V::Bool(false)),
            (sym("nothing"), V::Null),
            (sym("obj"), V::Json(obj)),
            (sym("arr"), V::Json(arr)),
            (sym("broken"), V::Json("{not json")),
            (sym("message"), V::Str("a field named message")),
        ],
    );
    ex.push(
        Level::Info,
        "typed fields",
        json!({
            "str": "plain text", "int": -9_007_199_254_740_993i64, "max": i64::MAX,
            "float": 3.25, "tiny": 1e-7, "nan": null, "yes": true, "no": false,
            "nothing": null, "obj": serde_json::from_str::<Json>(obj).unwrap(),
            "arr": serde_json::from_str::<Json>(arr).unwrap(), "broken": "{not json",
            "message": "a field named message",
        }),
        "",
        "",
        None,
        false,
    );

    let caller = "app/views.py:42 get_user";
    shmtel_core::log_with_caller(Level::Warn, "with caller", &[], sym(caller));
    ex.push(
        Level::Warn,
        "with caller",
        json!({}),
        caller,
        "",
        None,
        false,
    );

    shmtel_core::set_correlation_id("req-42");
    shmtel_core::log(Level::Info, "with correlation id", &[]);
    shmtel_core::set_correlation_id("");
    ex.push(
        Level::Info,
        "with correlation id",
        json!({}),
        "",
        "req-42",
        None,
        false,
    );

    let span = Span::start(sym("schema-span"));
    let ctx = span.context();
    shmtel_core::log(Level::Error, "inside a span", &[(sym("k"), V::Str("v"))]);
    drop(span);
    ex.push(
        Level::Error,
        "inside a span",
        json!({"k": "v"}),
        "",
        "",
        Some((ctx.trace_id_hex(), ctx.span_id_hex())),
        false,
    );

    let unicode = "unicode \u{65e5}\u{672c}\u{8a9e} \u{1f600}\u{1f680} \u{5e9}\u{5dc}\u{5d5}\u{5dd} \u{645}\u{631}\u{62d}\u{628}\u{627}";
    shmtel_core::log(Level::Info, unicode, &[(sym("emoji"), V::Str("\u{1f389}"))]);
    ex.push(
        Level::Info,
        unicode,
        json!({"emoji": "\u{1f389}"}),
        "",
        "",
        None,
        false,
    );

    let (long, cut) = long_message();
    shmtel_core::log(Level::Info, &long, &[]);
    ex.push(Level::Info, &cut, json!({}), "", "", None, true);

    let nasty = "line one\nline two\r\n\"quoted\" back\\slash\ttab \u{1}\u{1f} esc\u{1b}[31m del\u{7f} nul\u{0}";
    shmtel_core::log(Level::Debug, nasty, &[(sym("nasty"), V::Str(nasty))]);
    ex.push(
        Level::Debug,
        nasty,
        json!({"nasty": nasty}),
        "",
        "",
        None,
        false,
    );

    shmtel_core::flush_stats();
    println!(
        "WRITER {}",
        json!({"pid": std::process::id(), "events": ex.0})
    );
}
