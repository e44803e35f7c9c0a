//! The `tracing` layer (`ShmtelLayer`), through real region files in a private directory, read
//! back with `shmtel_core::reader`.
//!
//! One `init` per test binary; every test runs on threads of its own (so on rings of its own)
//! under a subscriber installed with `tracing::dispatcher::with_default` on those threads only.
//! Tests that depend on the process-wide log level take `log_lock`.
#![cfg(all(feature = "tracing", not(loom)))]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use shmtel_core::layout::*;
use shmtel_core::reader::{scan_dir, AttrValue, DecodeError, Record, RingReader, TableReader};
use shmtel_core::region::RegionName;
use shmtel_core::tracing_layer::{ShmtelLayer, ShmtelLevelFilter};
use shmtel_core::{current_span, flush_stats, set_correlation_id, set_log_level, Config, Level};
use tracing::dispatcher::{self, Dispatch};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

// ------------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------------

static DIR: OnceLock<PathBuf> = OnceLock::new();

fn dir() -> &'static Path {
    DIR.get_or_init(|| {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shmtel-tracing-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        shmtel_core::init(Config {
            dir: Some(dir.clone()),
            service: "tracing-test".into(),
            ring_bytes: 65536,
            ..Default::default()
        })
        .expect("the only init of this process");
        dir
    })
}

static LOG_LEVEL: Mutex<()> = Mutex::new(());

fn log_lock() -> std::sync::MutexGuard<'static, ()> {
    LOG_LEVEL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `f` on a new thread with `dispatch` as its default subscriber; panics propagate.
fn on_fresh_thread<R: Send>(dispatch: &Dispatch, f: impl FnOnce() -> R + Send) -> R {
    dir();
    std::thread::scope(
        |s| match s.spawn(|| dispatcher::with_default(dispatch, f)).join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        },
    )
}

fn layer_dispatch(layer: ShmtelLayer) -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

fn ring_of(tid: u32) -> PathBuf {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() as u32 };
    scan_dir(dir())
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.name {
            RegionName::Ring {
                pid: p,
                tid: t,
                seq,
                ..
            } if p == pid && t == tid => Some((seq, e.path)),
            _ => None,
        })
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no ring for tid {tid}"))
}

fn table() -> TableReader {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() as u32 };
    let path = scan_dir(dir())
        .unwrap()
        .into_iter()
        .find(|e| matches!(e.name, RegionName::Table { pid: p, .. } if p == pid))
        .expect("a table")
        .path;
    let mut t = TableReader::open(&path).unwrap();
    t.refresh().unwrap();
    t
}

#[derive(Clone, Debug, PartialEq)]
enum Val {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(String),
}

fn val(v: AttrValue<'_>) -> Val {
    match v {
        AttrValue::Null => Val::Null,
        AttrValue::Bool(b) => Val::Bool(b),
        AttrValue::I64(i) => Val::I64(i),
        AttrValue::F64(f) => Val::F64(f),
        AttrValue::Str(s) | AttrValue::Json(s) => Val::Str(String::from_utf8(s.to_vec()).unwrap()),
    }
}

/// A decoded log record with its keys resolved.
#[derive(Clone, Debug)]
struct Log {
    rec: LogRecord,
    message: String,
    correlation: String,
    caller: String,
    fields: Vec<(String, Val)>,
}

impl Log {
    fn field(&self, k: &str) -> Option<&Val> {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }
}

/// Records of a ring, keys resolved.
#[derive(Default, Debug)]
struct Recs {
    logs: Vec<Log>,
    spans: Vec<(String, SpanRecord)>,
    /// (span id, event seq, key, value)
    attrs: Vec<([u8; 8], u16, String, Val)>,
    events: Vec<(String, SpanEvent)>,
    links: Vec<SpanLink>,
}

impl Recs {
    fn span(&self, name: &str) -> SpanRecord {
        let found: Vec<_> = self.spans.iter().filter(|(n, _)| n == name).collect();
        assert_eq!(found.len(), 1, "one span named {name}: {:?}", self.spans);
        found[0].1
    }

    fn attrs_of(&self, span: &SpanRecord, seq: u16) -> Vec<(String, Val)> {
        self.attrs
            .iter()
            .filter(|a| a.0 == span.span_id && a.1 == seq)
            .map(|a| (a.2.clone(), a.3.clone()))
            .collect()
    }

    fn log(&self, message: &str) -> &Log {
        let found: Vec<_> = self.logs.iter().filter(|l| l.message == message).collect();
        assert_eq!(found.len(), 1, "one log {message:?}: {:?}", self.logs);
        found[0]
    }
}

fn read(path: &Path) -> Recs {
    let t = table();
    let sym = |id: u32| t.symbol(id).to_owned();
    let mut out = Recs::default();
    let mut r = RingReader::open(path, false).unwrap();
    r.read(
        usize::MAX,
        false,
        |_, rec: Result<Record<'_>, DecodeError>| match rec.expect("valid records") {
            Record::Log {
                rec,
                message,
                correlation,
                fields,
            } => out.logs.push(Log {
                rec,
                message: String::from_utf8(message.to_vec()).unwrap(),
                correlation: String::from_utf8(correlation.to_vec()).unwrap(),
                caller: sym(rec.caller),
                fields: fields.iter().map(|a| (sym(a.key), val(a.value))).collect(),
            }),
            Record::Span(s) => out.spans.push((sym(s.name), s)),
            Record::SpanAttr {
                span_id,
                event_seq,
                attr,
            } => out
                .attrs
                .push((span_id, event_seq, sym(attr.key), val(attr.value))),
            Record::SpanEvent(e) => out.events.push((sym(e.name), e)),
            Record::SpanLink(l) => out.links.push(l),
            _ => {}
        },
    )
    .unwrap();
    out
}

/// Records of the calling thread's ring, after committing anything pending.
fn my_records() -> Recs {
    flush_stats();
    read(&ring_of(gettid()))
}

#[derive(Debug)]
struct Oops;

impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk on fire")
    }
}

impl std::error::Error for Oops {}

// ------------------------------------------------------------------------------------------------
// Events
// ------------------------------------------------------------------------------------------------

#[test]
fn events_become_logs_with_typed_fields_levels_and_caller() {
    let _level = log_lock();
    set_log_level(Level::Trace);
    on_fresh_thread(&layer_dispatch(ShmtelLayer::new()), || {
        set_correlation_id("thread-corr");
        let err = Oops;
        let line = line!() + 1;
        tracing::info!(
            i = -5_i64,
            u = 7_u64,
            big = u64::MAX,
            wide = i128::MIN,
            small128 = 3_u128,
            f = 1.5,
            b = true,
            s = "text ü",
            d = ?vec![1, 2],
            e = &err as &(dyn std::error::Error + 'static),
            "hello {}",
            "world"
        );
        tracing::trace!("t");
        tracing::debug!("d");
        tracing::warn!("w");
        tracing::error!(message = "e as a field");
        set_correlation_id("");
        let r = my_records();
        assert_eq!(r.logs.len(), 5, "{:?}", r.logs);
        let l = r.log("hello world");
        assert_eq!(l.rec.level, log_level::INFO);
        assert_eq!((l.rec.trace_id, l.rec.span_id), ([0; 16], [0; 8]));
        assert_eq!(l.correlation, "thread-corr");
        assert_eq!(
            l.caller,
            format!("{}:{line} {}", file!(), module_path!()),
            "file:line module_path"
        );
        assert_eq!(
            l.fields,
            [
                ("i".to_owned(), Val::I64(-5)),
                ("u".into(), Val::I64(7)),
                ("big".into(), Val::Str(u64::MAX.to_string())),
                ("wide".into(), Val::Str(i128::MIN.to_string())),
                ("small128".into(), Val::I64(3)),
                ("f".into(), Val::F64(1.5)),
                ("b".into(), Val::Bool(true)),
                ("s".into(), Val::Str("text ü".into())),
                ("d".into(), Val::Str("[1, 2]".into())),
                ("e".into(), Val::Str("disk on fire".into())),
            ]
        );
        let levels: Vec<(String, u8)> = r
            .logs
            .iter()
            .skip(1)
            .map(|l| (l.message.clone(), l.rec.level))
            .collect();
        assert_eq!(
            levels,
            [
                ("t".to_owned(), log_level::TRACE),
                ("d".into(), log_level::DEBUG),
                ("w".into(), log_level::WARN),
                ("e as a field".into(), log_level::ERROR),
            ]
        );
        assert!(r.logs.iter().all(|l| l.rec.ts > 0));
    });
}

#[test]
fn caller_can_be_left_out() {
    let _level = log_lock();
    set_log_level(Level::Trace);
    on_fresh_thread(
        &layer_dispatch(ShmtelLayer::new().with_caller(false)),
        || {
            tracing::info!("no caller");
            let r = my_records();
            assert_eq!(r.log("no caller").rec.caller, 0);
        },
    );
}

/// A `Debug` value that counts how often it is formatted, and logs while being formatted.
struct Noisy<'a>(&'a AtomicUsize);

impl std::fmt::Debug for Noisy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ordering: Relaxed: a counter read by the same thread.
        self.0.fetch_add(1, Ordering::Relaxed);
        tracing::info!("from inside Debug");
        f.write_str("noisy")
    }
}

#[test]
fn filtered_events_produce_nothing_and_are_not_visited() {
    let _level = log_lock();
    let formatted = AtomicUsize::new(0);
    on_fresh_thread(&layer_dispatch(ShmtelLayer::new()), || {
        set_log_level(Level::Warn);
        tracing::info!(x = ?Noisy(&formatted), "filtered info");
        tracing::debug!("filtered debug");
        let span = tracing::info_span!("still.traced");
        span.in_scope(|| tracing::info!("filtered inside a span"));
        drop(span);
        tracing::warn!("kept warn");
        // Ordering: Relaxed: same thread.
        assert_eq!(formatted.load(Ordering::Relaxed), 0, "fields never visited");
        set_log_level(Level::Trace);
        tracing::info!("kept again");
        // A value that logs while it is formatted: `tracing` drops events emitted from inside
        // its subscriber (its reentrancy guard); the outer one is recorded whole.
        tracing::info!(x = ?Noisy(&formatted), "outer");
        let r = my_records();
        let messages: Vec<&str> = r.logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["kept warn", "kept again", "outer"]);
        assert_eq!(r.log("outer").field("x"), Some(&Val::Str("noisy".into())));
        assert_eq!(r.spans.len(), 1, "spans are not filtered by the log level");
    });
}

/// A layer that counts the events it sees.
struct Counting(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for Counting {
    fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
        // Ordering: Relaxed: a counter.
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn per_layer_filter_leaves_other_layers_alone() {
    let _level = log_lock();
    let seen = Arc::new(AtomicUsize::new(0));
    let per_layer = Dispatch::new(
        tracing_subscriber::registry()
            .with(Counting(seen.clone()))
            .with(ShmtelLayer::new().with_filter(ShmtelLevelFilter)),
    );
    on_fresh_thread(&per_layer, || {
        set_log_level(Level::Warn);
        tracing::info!("seen by the other layer only");
        tracing::warn!("seen by both");
        set_log_level(Level::Trace);
        let r = my_records();
        let messages: Vec<&str> = r.logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["seen by both"]);
    });
    // Ordering: Relaxed: the thread was joined.
    assert_eq!(seen.load(Ordering::Relaxed), 2);

    // The documented trade-off of the plain layer: its level filters for the whole subscriber.
    let seen = Arc::new(AtomicUsize::new(0));
    let global = Dispatch::new(
        tracing_subscriber::registry()
            .with(Counting(seen.clone()))
            .with(ShmtelLayer::new()),
    );
    on_fresh_thread(&global, || {
        set_log_level(Level::Warn);
        tracing::info!("seen by nobody");
        tracing::warn!("seen by both");
        set_log_level(Level::Trace);
    });
    // Ordering: Relaxed: the thread was joined.
    assert_eq!(seen.load(Ordering::Relaxed), 1);
}

// ------------------------------------------------------------------------------------------------
// Spans
// ------------------------------------------------------------------------------------------------

#[test]
fn spans_nest_and_events_carry_their_ids_and_correlation() {
    let _level = log_lock();
    set_log_level(Level::Trace);
    on_fresh_thread(&layer_dispatch(ShmtelLayer::new()), || {
        set_correlation_id("thread-corr");
        let outer = tracing::info_span!(
            "http.request",
            otel.name = "GET /users/{id}",
            otel.kind = "server",
            http.method = "GET",
            correlation_id = "req-42",
            late = tracing::field::Empty,
        );
        let outer_guard = outer.enter();
        let outer_ctx = current_span().expect("the entered span is current");
        tracing::info!(n = 1, "in outer");
        let inner = tracing::debug_span!(
            "db.query",
            otel.kind = "CLIENT",
            otel.status_code = "error",
            otel.status_message = "timeout",
            rows = 3_u64,
        );
        inner.in_scope(|| {
            let inner_ctx = current_span().unwrap();
            assert_eq!(inner_ctx.trace_id, outer_ctx.trace_id);
            tracing::warn!("in inner");
            // The direct API inside an entered tracing span takes its ids too.
            shmtel_core::log(Level::Info, "direct in inner", &[]);
        });
        assert_eq!(
            current_span(),
            Some(outer_ctx),
            "exit restores the outer span"
        );
        outer.record("late", 99);
        drop(inner);
        drop(outer_guard);
        assert_eq!(current_span(), None);
        drop(outer);
        tracing::info!("after");
        set_correlation_id("");

        let r = my_records();
        let o = r.span("GET /users/{id}");
        let i = r.span("db.query");
        assert_eq!(
            (o.trace_id, o.span_id, o.parent_span_id),
            (outer_ctx.trace_id, outer_ctx.span_id, [0; 8])
        );
        assert_eq!((i.trace_id, i.parent_span_id), (o.trace_id, o.span_id));
        assert_eq!((o.kind, o.status), (span_kind::SERVER, span_status::UNSET));
        assert_eq!((i.kind, i.status), (span_kind::CLIENT, span_status::ERROR));
        assert!(o.flags & SPAN_FLAG_SAMPLED != 0 && i.flags & SPAN_FLAG_SAMPLED != 0);
        assert!(o.start_ts <= i.start_ts && i.start_ts <= i.end_ts && i.end_ts <= o.end_ts);
        assert_eq!(
            r.attrs_of(&o, 0),
            [
                ("http.method".to_owned(), Val::Str("GET".into())),
                ("correlation_id".into(), Val::Str("req-42".into())),
                ("late".into(), Val::I64(99)),
            ]
        );
        assert_eq!(
            r.attrs_of(&i, 0),
            [
                (
                    "otel.status_description".to_owned(),
                    Val::Str("timeout".into())
                ),
                ("rows".into(), Val::I64(3)),
            ]
        );
        assert_eq!(o.attr_count, 3);

        let l = r.log("in outer");
        assert_eq!((l.rec.trace_id, l.rec.span_id), (o.trace_id, o.span_id));
        assert_eq!(l.correlation, "req-42", "the span's correlation id");
        assert_eq!(l.field("n"), Some(&Val::I64(1)));
        let l = r.log("in inner");
        assert_eq!((l.rec.trace_id, l.rec.span_id), (i.trace_id, i.span_id));
        assert_eq!(l.correlation, "req-42", "inherited from the outer span");
        let l = r.log("direct in inner");
        assert_eq!((l.rec.trace_id, l.rec.span_id), (i.trace_id, i.span_id));
        let l = r.log("after");
        assert_eq!((l.rec.trace_id, l.rec.span_id), ([0; 16], [0; 8]));
        assert_eq!(l.correlation, "thread-corr");
    });
}

#[test]
fn explicit_parents_roots_and_follows_from() {
    let _level = log_lock();
    set_log_level(Level::Trace);
    on_fresh_thread(&layer_dispatch(ShmtelLayer::new()), || {
        let a = tracing::info_span!("a", correlation_id = "corr-a");
        let b = tracing::info_span!("b");
        let _in_b = b.enter();
        tracing::info!(parent: &a, "to a");
        set_correlation_id("thread-corr");
        tracing::info!(parent: &b, "to b, which has no correlation id");
        tracing::info!(parent: None, "to nobody");
        set_correlation_id("");
        let child_of_a = tracing::info_span!(parent: &a, "child_of_a");
        let root = tracing::info_span!(parent: None, "root");
        root.follows_from(&a);
        drop((child_of_a, root));
        drop(_in_b);
        drop((a, b));

        let r = my_records();
        let (a, b) = (r.span("a"), r.span("b"));
        assert_ne!(a.trace_id, b.trace_id, "two roots");
        let l = r.log("to a");
        assert_eq!((l.rec.trace_id, l.rec.span_id), (a.trace_id, a.span_id));
        assert_eq!(l.correlation, "corr-a");
        let l = r.log("to b, which has no correlation id");
        assert_eq!((l.rec.trace_id, l.rec.span_id), (b.trace_id, b.span_id));
        assert_eq!(l.correlation, "thread-corr");
        let l = r.log("to nobody");
        assert_eq!((l.rec.trace_id, l.rec.span_id), ([0; 16], [0; 8]));
        assert_eq!(l.correlation, "thread-corr");
        let c = r.span("child_of_a");
        assert_eq!((c.trace_id, c.parent_span_id), (a.trace_id, a.span_id));
        let root = r.span("root");
        assert_eq!(root.parent_span_id, [0; 8]);
        assert!(root.trace_id != a.trace_id && root.trace_id != b.trace_id);
        assert_eq!(r.links.len(), 1);
        let link = r.links[0];
        assert_eq!(
            (link.span_id, link.linked_trace_id, link.linked_span_id),
            (root.span_id, a.trace_id, a.span_id)
        );
    });
}

#[test]
fn spans_exited_out_of_order_restore_the_right_current_span() {
    on_fresh_thread(&layer_dispatch(ShmtelLayer::new()), || {
        let native = shmtel_core::Span::start(shmtel_core::Symbol::intern("native"));
        let native_ctx = native.context();
        let a = tracing::info_span!("order.a").entered();
        let a_ctx = current_span().unwrap();
        assert_eq!(
            a_ctx.trace_id, native_ctx.trace_id,
            "child of the native current span"
        );
        let b = tracing::info_span!("order.b").entered();
        let b_ctx = current_span().unwrap();
        drop(a); // exits a while b is still entered
        assert_eq!(current_span(), Some(b_ctx), "b stays current");
        drop(b);
        assert_eq!(current_span(), Some(native_ctx), "back to what preceded a");
        native.end();
        assert_eq!(current_span(), None);
        let r = my_records();
        let (a, b) = (r.span("order.a"), r.span("order.b"));
        assert_eq!(a.parent_span_id, native_ctx.span_id);
        assert_eq!(b.parent_span_id, a.span_id);
    });
}

#[test]
fn span_buffers_are_bounded_by_the_per_span_limits() {
    on_fresh_thread(&layer_dispatch(ShmtelLayer::new()), || {
        let s = tracing::info_span!("busy", n = tracing::field::Empty);
        for i in 0..130 {
            s.record("n", i);
        }
        let linked = tracing::info_span!("linked");
        for _ in 0..129 {
            s.follows_from(&linked);
        }
        drop((s, linked));
        let r = my_records();
        let s = r.span("busy");
        assert_eq!(r.attrs_of(&s, 0).len(), 128, "the default limit");
        assert_eq!(r.links.len(), 128);
        assert_eq!(
            s.dropped_attrs,
            2 + 1,
            "two attributes and one link refused"
        );
    });
}

#[test]
fn a_span_entered_on_two_threads_is_one_span_written_where_it_closes() {
    let _level = log_lock();
    set_log_level(Level::Trace);
    let dispatch = layer_dispatch(ShmtelLayer::new());
    let (span, tid_a) = on_fresh_thread(&dispatch, || {
        let span = tracing::info_span!("shared", step = 1);
        span.in_scope(|| tracing::info!("on a"));
        (span, gettid())
    });
    let tid_b = on_fresh_thread(&dispatch, || {
        span.in_scope(|| tracing::info!("on b"));
        span.record("step", 2);
        drop(span);
        gettid()
    });
    let (a, b) = (read(&ring_of(tid_a)), read(&ring_of(tid_b)));
    assert!(
        a.spans.is_empty(),
        "nothing of the span on the thread that did not close it"
    );
    let s = b.span("shared");
    assert_eq!(
        b.attrs_of(&s, 0),
        [
            ("step".to_owned(), Val::I64(1)),
            ("step".into(), Val::I64(2))
        ]
    );
    for l in [a.log("on a"), b.log("on b")] {
        assert_eq!((l.rec.trace_id, l.rec.span_id), (s.trace_id, s.span_id));
    }
    assert!(s.start_ts <= s.end_ts);
}

#[test]
fn span_events_and_sampling() {
    let _level = log_lock();
    set_log_level(Level::Trace);
    on_fresh_thread(
        &layer_dispatch(ShmtelLayer::new().with_span_events(true)),
        || {
            let s = tracing::info_span!("with.events");
            s.in_scope(|| tracing::info!(k = "v", "inside"));
            drop(s);
            let r = my_records();
            let s = r.span("with.events");
            assert_eq!(s.event_count, 1);
            assert_eq!(r.events.len(), 1);
            let (name, e) = &r.events[0];
            assert!(name.starts_with("event "), "{name}");
            assert_eq!((e.span_id, e.event_seq), (s.span_id, 1));
            assert!(s.start_ts <= e.ts && e.ts <= s.end_ts);
            assert_eq!(
                r.attrs_of(&s, 1),
                [
                    ("message".to_owned(), Val::Str("inside".into())),
                    ("level".into(), Val::Str("INFO".into())),
                    ("k".into(), Val::Str("v".into())),
                ]
            );
            assert_eq!(r.logs.len(), 1, "still a log record too");
        },
    );
    on_fresh_thread(
        &layer_dispatch(ShmtelLayer::new().with_sample_ratio(0.0)),
        || {
            let s = tracing::info_span!("unsampled", k = 1);
            s.in_scope(|| {
                let _child = tracing::info_span!("unsampled.child").entered();
                tracing::info!("inside unsampled");
            });
            drop(s);
            let r = my_records();
            assert!(r.spans.is_empty() && r.attrs.is_empty(), "{r:?}");
            let l = r.log("inside unsampled");
            assert_ne!(l.rec.trace_id, [0; 16], "logs still carry the ids");
        },
    );
}
