//! The public recording API, through real region files in a private directory, read back with
//! `shmtel_core::reader`.
//!
//! One `init` per test binary (a `OnceLock`): every test records on a thread of its own (so on a
//! ring of its own) and finds that ring by pid and tid. Rings are 64 KiB (the smallest a writer
//! makes) and nobody drains them, so the overflow test can fill one. Tests that need a process of
//! their own (a different series limit, id numbering from 1) re-run this binary with `--exact`
//! and an environment variable naming the scenario.
#![cfg(not(loom))] // uses the parts of the crate that `--cfg loom` leaves out

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use shmtel_core::layout::*;
use shmtel_core::reader::{
    scan_dir, AttrValue, DecodeError, Record, RingReader, SlotValue, TableReader,
};
use shmtel_core::region::RegionName;
use shmtel_core::{
    batch, business_event, current_span, flush_stats, log, log_enabled, log_in_context,
    ratio_sampled, set_correlation_id, set_log_level, Config, Counter, CounterVec, Error, Gauge,
    GaugeMode, GaugeVec, Histogram, HistogramVec, Level, LogContext, Span, SpanContext, SpanKind,
    SpanStatus, Symbol, Value,
};

// ------------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------------

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The region directory, after the one `init` of this process.
fn dir() -> &'static Path {
    DIR.get_or_init(|| {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shmtel-api-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        let max_series = std::env::var("SHMTEL_API_TEST_MAX_SERIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        shmtel_core::init(Config {
            dir: Some(dir.clone()),
            service: "api-test".into(),
            ring_bytes: 65536,
            max_series,
            ..Default::default()
        })
        .expect("the only init of this process");
        dir
    })
}

/// Log tests change or depend on the process-wide level: they take this lock.
static LOG_LEVEL: Mutex<()> = Mutex::new(());

fn log_lock() -> std::sync::MutexGuard<'static, ()> {
    LOG_LEVEL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `f` on a new thread (so on a new ring) and return its result; panics propagate.
fn on_fresh_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    dir();
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    })
}

fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// The ring of the calling thread (the newest for this pid and tid: tids are reused).
fn my_ring() -> PathBuf {
    ring_of(getpid(), gettid())
}

fn ring_of(pid: u32, tid: u32) -> PathBuf {
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
        .unwrap_or_else(|| panic!("no ring for pid {pid} tid {tid} in {}", dir().display()))
}

fn table_of(pid: u32) -> TableReader {
    let path = scan_dir(dir())
        .unwrap()
        .into_iter()
        .find(|e| matches!(e.name, RegionName::Table { pid: p, .. } if p == pid))
        .unwrap_or_else(|| panic!("no table for pid {pid}"))
        .path;
    TableReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn my_table() -> TableReader {
    table_of(getpid())
}

/// A typed value, owned.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(String),
    Json(String),
}

fn val(v: AttrValue<'_>) -> Val {
    match v {
        AttrValue::Null => Val::Null,
        AttrValue::Bool(b) => Val::Bool(b),
        AttrValue::I64(i) => Val::I64(i),
        AttrValue::F64(f) => Val::F64(f),
        AttrValue::Str(s) => Val::Str(String::from_utf8(s.to_vec()).unwrap()),
        AttrValue::Json(s) => Val::Json(String::from_utf8(s.to_vec()).unwrap()),
    }
}

/// A decoded record, owned.
#[derive(Clone, Debug, PartialEq)]
enum Rec {
    Counter(u32, f64),
    GaugeSet(u32, u64, f64),
    GaugeAdd(u32, f64),
    Hist(u32, f64, Option<Exemplar>),
    Span(SpanRecord),
    Attr([u8; 8], u16, u32, Val),
    Event(SpanEvent),
    Link(SpanLink),
    LinkAttr([u8; 8], u16, u32, Val),
    Log(LogRecord, String, String, Vec<(u32, Val)>),
    Business(BusinessEvent, Vec<(u32, Val)>),
    Bad(DecodeError),
}

fn own(r: Result<Record<'_>, DecodeError>) -> Rec {
    match r {
        Err(e) => Rec::Bad(e),
        Ok(Record::CounterAdd { series, value }) => Rec::Counter(series, value),
        Ok(Record::GaugeSet { series, ts, value }) => Rec::GaugeSet(series, ts, value),
        Ok(Record::GaugeAdd { series, value, .. }) => Rec::GaugeAdd(series, value),
        Ok(Record::Histogram {
            series,
            value,
            exemplar,
        }) => Rec::Hist(series, value, exemplar),
        Ok(Record::Span(s)) => Rec::Span(s),
        Ok(Record::SpanAttr {
            span_id,
            event_seq,
            attr,
        }) => Rec::Attr(span_id, event_seq, attr.key, val(attr.value)),
        Ok(Record::SpanEvent(e)) => Rec::Event(e),
        Ok(Record::SpanLink(l)) => Rec::Link(l),
        Ok(Record::SpanLinkAttr {
            span_id,
            link_seq,
            attr,
        }) => Rec::LinkAttr(span_id, link_seq, attr.key, val(attr.value)),
        Ok(Record::Log {
            rec,
            message,
            correlation,
            fields,
        }) => Rec::Log(
            rec,
            String::from_utf8(message.to_vec()).unwrap(),
            String::from_utf8(correlation.to_vec()).unwrap(),
            fields.iter().map(|a| (a.key, val(a.value))).collect(),
        ),
        Ok(Record::Business { rec, tags }) => {
            Rec::Business(rec, tags.iter().map(|a| (a.key, val(a.value))).collect())
        }
    }
}

/// Every committed record of a ring, without consuming.
fn records(path: &Path) -> Vec<Rec> {
    let mut r = RingReader::open(path, false).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    r.read(usize::MAX, false, |_, rec| out.push(own(rec)))
        .expect("a ring our writer wrote is valid");
    out
}

/// Records of the calling thread's ring (after committing anything pending).
fn my_records() -> Vec<Rec> {
    flush_stats();
    records(&my_ring())
}

fn slots(path: &Path) -> HashMap<u32, SlotValue> {
    let r = RingReader::open(path, false).unwrap();
    let mut out = HashMap::new();
    r.read_slots(|s, v| {
        out.insert(s, v);
    });
    out
}

fn counter_sum(recs: &[Rec], series: u32) -> f64 {
    recs.iter()
        .map(|r| {
            if let Rec::Counter(s, v) = r {
                if *s == series {
                    *v
                } else {
                    0.0
                }
            } else {
                0.0
            }
        })
        .sum()
}

// ------------------------------------------------------------------------------------------------
// Metrics
// ------------------------------------------------------------------------------------------------

#[test]
fn counters_gauges_histograms_and_label_lookups() {
    on_fresh_thread(|| {
        let c = Counter::new("api_requests", "Requests served").unwrap();
        c.inc();
        c.inc();
        c.add(2.5);
        c.add(-1.0); // ignored: counters only go up
        c.add(f64::NAN); // ignored
        c.add(f64::INFINITY); // ignored

        let cv =
            CounterVec::new("api_http_requests", "HTTP requests", &["method", "route"]).unwrap();
        let get = cv.with_label_values(&["GET", "/users"]);
        get.inc();
        cv.get_with_label_values(&["POST", "/users"])
            .unwrap()
            .add(3.0);
        assert_eq!(
            cv.with_label_values(&["GET", "/users"]),
            get,
            "the same label values are the same series"
        );
        assert_ne!(cv.with_label_values(&["GET", "/orders"]), get);

        let g = Gauge::new("api_in_progress", "In progress", GaugeMode::LiveSum).unwrap();
        g.set(3.0);
        g.add(1.5);
        g.inc();
        g.dec();
        let gv =
            GaugeVec::new("api_temperature", "Temperature", &["room"], GaugeMode::Max).unwrap();
        gv.with_label_values(&["kitchen"]).set(21.5);

        let h = Histogram::new("api_latency_seconds", "Latency", &[0.01, 0.1, 1.0]).unwrap();
        h.observe(0.05);
        let hv = HistogramVec::new("api_size_bytes", "Sizes", &["route"], &[]).unwrap();
        hv.with_label_values(&["/x"]).observe(100.0);

        let recs = my_records();
        let t = my_table();
        let (cs, cf) = t.series_family(c.series_id()).unwrap();
        assert_eq!(
            (cf.name.as_str(), cf.metric_type, cs.values.len()),
            ("api_requests", metric_type::COUNTER, 0)
        );
        assert_eq!(counter_sum(&recs, c.series_id()), 4.5);
        assert_eq!(
            recs.iter()
                .filter(|r| matches!(r, Rec::Counter(s, _) if *s == c.series_id()))
                .count(),
            3
        );

        let (s, f) = t.series_family(get.series_id()).unwrap();
        assert_eq!(f.labels, ["method", "route"]);
        assert_eq!(s.values, ["GET", "/users"]);
        let post = cv.with_label_values(&["POST", "/users"]).series_id();
        assert_eq!(t.series_family(post).unwrap().0.values, ["POST", "/users"]);
        assert_eq!(counter_sum(&recs, get.series_id()), 1.0);
        assert_eq!(counter_sum(&recs, post), 3.0);

        let gs = g.series_id();
        let gauge: Vec<&Rec> = recs
            .iter()
            .filter(|r| matches!(r, Rec::GaugeSet(s, ..) | Rec::GaugeAdd(s, _) if *s == gs))
            .collect();
        assert!(
            matches!(gauge[0], Rec::GaugeSet(_, ts, v) if *v == 3.0 && *ts > 0),
            "{:?}",
            gauge[0]
        );
        assert_eq!(
            gauge[1..],
            [
                &Rec::GaugeAdd(gs, 1.5),
                &Rec::GaugeAdd(gs, 1.0),
                &Rec::GaugeAdd(gs, -1.0)
            ]
        );
        let gf = t.series_family(gs).unwrap().1;
        assert_eq!(
            (gf.metric_type, gf.mode),
            (metric_type::GAUGE, gauge_mode::LIVESUM)
        );
        assert_eq!(
            t.series_family(gv.with_label_values(&["kitchen"]).series_id())
                .unwrap()
                .1
                .mode,
            gauge_mode::MAX
        );

        assert!(recs.contains(&Rec::Hist(h.series_id(), 0.05, None)));
        let hf = t.series_family(h.series_id()).unwrap().1;
        assert_eq!(
            (hf.metric_type, hf.buckets.as_slice()),
            (metric_type::HISTOGRAM, &[0.01, 0.1, 1.0][..])
        );
        let hvf = t
            .series_family(hv.with_label_values(&["/x"]).series_id())
            .unwrap()
            .1;
        assert_eq!(
            hvf.buckets,
            shmtel_core::DEFAULT_BUCKETS,
            "empty buckets mean the defaults"
        );
    });
}

#[test]
fn histogram_exemplars_carry_the_current_span() {
    on_fresh_thread(|| {
        let h = Histogram::new("api_exemplar_seconds", "Latency", &[0.1, 1.0]).unwrap();
        let span = Span::start(Symbol::intern("api.exemplar"));
        h.observe(0.5);
        let ctx = span.context();
        span.end();
        h.observe(0.25);
        h.observe_with_exemplar(0.75, [7; 16], [8; 8]);
        let hist: Vec<Rec> = my_records()
            .into_iter()
            .filter(|r| matches!(r, Rec::Hist(..)))
            .collect();
        let Rec::Hist(_, 0.5, Some(ex)) = &hist[0] else {
            panic!("{:?}", hist[0])
        };
        assert_eq!((ex.trace_id, ex.span_id), (ctx.trace_id, ctx.span_id));
        assert!(ex.ts > 0);
        assert_eq!(
            hist[1],
            Rec::Hist(h.series_id(), 0.25, None),
            "no span, no exemplar"
        );
        let Rec::Hist(_, 0.75, Some(ex)) = &hist[2] else {
            panic!("{:?}", hist[2])
        };
        assert_eq!((ex.trace_id, ex.span_id), ([7; 16], [8; 8]));
    });
}

#[test]
fn wrong_label_count_is_an_error() {
    dir();
    let cv = CounterVec::new("api_label_count", "help", &["a", "b"]).unwrap();
    match cv.get_with_label_values(&["x"]) {
        Err(Error::LabelCount {
            expected: 2,
            got: 1,
            metric,
        }) => assert_eq!(metric, "api_label_count"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cv.get_with_label_values(&["x", "y", "z"]),
        Err(Error::LabelCount {
            expected: 2,
            got: 3,
            ..
        })
    ));
    let gv = GaugeVec::new("api_label_count_g", "help", &["a"], GaugeMode::All).unwrap();
    assert!(matches!(
        gv.get_with_label_values(&[]),
        Err(Error::LabelCount {
            expected: 1,
            got: 0,
            ..
        })
    ));
    let hv = HistogramVec::new("api_label_count_h", "help", &["a"], &[1.0]).unwrap();
    assert!(matches!(
        hv.get_with_label_values(&["a", "b"]),
        Err(Error::LabelCount { .. })
    ));
    let panicked = std::panic::catch_unwind(|| cv.with_label_values(&["only one"]));
    assert!(
        panicked.is_err(),
        "with_label_values panics on a wrong label count"
    );
}

#[test]
fn invalid_names_are_refused() {
    dir();
    for bad in ["", "1abc", "a-b", "a b", "é", "a.b"] {
        assert!(
            matches!(Counter::new(bad, "h"), Err(Error::InvalidName(_))),
            "metric name {bad:?}"
        );
    }
    for ok in ["a", "_a", "a:b", "api_valid_name:total_2"] {
        assert!(Counter::new(ok, "h").is_ok(), "metric name {ok:?}");
    }
    for bad in ["", "1a", "a-b", "__reserved", "a:b"] {
        assert!(
            matches!(
                CounterVec::new("api_bad_label", "h", &[bad]),
                Err(Error::InvalidName(_))
            ),
            "label {bad:?}"
        );
    }
    assert!(matches!(
        CounterVec::new("api_dup_label", "h", &["a", "a"]),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        HistogramVec::new("api_le_label", "h", &["le"], &[1.0]),
        Err(Error::InvalidName(_))
    ));
    assert!(
        CounterVec::new("api_le_label_counter", "h", &["le"]).is_ok(),
        "`le` is only reserved for histograms"
    );
    assert!(matches!(
        Histogram::new("api_bad_buckets", "h", &[1.0, 0.5]),
        Err(Error::InvalidBuckets(_))
    ));
    assert!(matches!(
        Histogram::new("api_nan_buckets", "h", &[f64::NAN]),
        Err(Error::InvalidBuckets(_))
    ));
    assert!(
        Histogram::new("api_inf_bucket", "h", &[1.0, f64::INFINITY]).is_ok(),
        "a trailing +Inf is implied"
    );
}

#[test]
fn conflicting_registration_is_refused() {
    dir();
    let c = Counter::new("api_conflict", "help").unwrap();
    assert_eq!(
        Counter::new("api_conflict", "other help").unwrap(),
        c,
        "an identical definition is the same metric"
    );
    assert!(matches!(
        Gauge::new("api_conflict", "help", GaugeMode::All),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        CounterVec::new("api_conflict", "help", &["x"]),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        Histogram::new("api_conflict", "help", &[1.0]),
        Err(Error::Conflict(_))
    ));
    Gauge::new("api_conflict_g", "help", GaugeMode::Sum).unwrap();
    assert!(
        matches!(
            Gauge::new("api_conflict_g", "help", GaugeMode::Max),
            Err(Error::Conflict(_))
        ),
        "mode"
    );
    Histogram::new("api_conflict_h", "help", &[1.0, 2.0]).unwrap();
    assert!(
        matches!(
            Histogram::new("api_conflict_h", "help", &[1.0, 3.0]),
            Err(Error::Conflict(_))
        ),
        "buckets"
    );
    CounterVec::new("api_conflict_v", "help", &["a", "b"]).unwrap();
    assert!(
        matches!(
            CounterVec::new("api_conflict_v", "help", &["b", "a"]),
            Err(Error::Conflict(_))
        ),
        "label order"
    );
}

// ------------------------------------------------------------------------------------------------
// Spans
// ------------------------------------------------------------------------------------------------

fn spans(recs: &[Rec]) -> Vec<SpanRecord> {
    recs.iter()
        .filter_map(|r| if let Rec::Span(s) = r { Some(*s) } else { None })
        .collect()
}

#[test]
fn spans_nest_and_carry_attributes_events_and_status() {
    on_fresh_thread(|| {
        let (name, child_name) = (Symbol::intern("api.request"), Symbol::intern("api.db"));
        let (k_sys, k_n, k_ok, k_ratio, k_null, k_doc) = (
            Symbol::intern("db.system"),
            Symbol::intern("n"),
            Symbol::intern("ok"),
            Symbol::intern("ratio"),
            Symbol::intern("nothing"),
            Symbol::intern("doc"),
        );
        let retry = Symbol::intern("retry");
        assert!(current_span().is_none());
        let mut parent = Span::start(name);
        parent.set_kind(SpanKind::Server);
        let pctx = parent.context();
        assert_eq!(current_span(), Some(pctx));
        assert!(pctx.sampled && pctx.trace_id != [0; 16] && pctx.span_id != [0; 8]);

        let mut child = Span::start(child_name);
        let cctx = child.context();
        assert_eq!(
            current_span(),
            Some(cctx),
            "a started span becomes the current span"
        );
        assert_eq!(cctx.trace_id, pctx.trace_id, "same trace");
        child.set_kind(SpanKind::Client);
        child.set_attribute(k_sys, Value::Str("postgres")); // 8 bytes
        child.set_attribute(k_n, Value::I64(-3));
        child.set_attribute(k_ok, Value::Bool(true));
        child.set_attribute(k_ratio, Value::F64(0.5));
        child.set_attribute(k_null, Value::Null);
        // Strings of 8 bytes here; other lengths: `span_attribute_strings_of_any_length_decode`.
        child.set_attribute(k_doc, Value::Json("[1,2,34]"));
        child.add_event(retry, &[(k_n, Value::I64(2))]);
        child.set_status(SpanStatus::Error);
        child.end();
        assert_eq!(
            current_span(),
            Some(pctx),
            "ending the child restores the parent"
        );
        parent.set_status(SpanStatus::Ok);
        drop(parent); // ending by drop
        assert_eq!(current_span(), None);

        let recs = my_records();
        let s = spans(&recs);
        assert_eq!(s.len(), 2, "the child ends first");
        let (c, p) = (s[0], s[1]);
        assert_eq!(
            (c.span_id, c.parent_span_id, c.trace_id),
            (cctx.span_id, pctx.span_id, pctx.trace_id)
        );
        assert_eq!(
            (p.span_id, p.parent_span_id),
            (pctx.span_id, [0; 8]),
            "a root span has no parent"
        );
        assert_eq!((c.name, p.name), (child_name.id(), name.id()));
        assert_eq!((c.kind, c.status), (span_kind::CLIENT, span_status::ERROR));
        assert_eq!((p.kind, p.status), (span_kind::SERVER, span_status::OK));
        assert_eq!(c.flags & SPAN_FLAG_SAMPLED, SPAN_FLAG_SAMPLED);
        assert_eq!((c.attr_count, c.event_count, c.dropped_attrs), (6, 1, 0));
        assert!(c.start_ts <= c.end_ts && p.start_ts <= c.start_ts && c.end_ts <= p.end_ts);

        let attrs: Vec<(u16, u32, Val)> = recs
            .iter()
            .filter_map(|r| match r {
                Rec::Attr(id, seq, k, v) if *id == cctx.span_id => Some((*seq, *k, v.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            attrs,
            [
                (0, k_sys.id(), Val::Str("postgres".into())),
                (0, k_n.id(), Val::I64(-3)),
                (0, k_ok.id(), Val::Bool(true)),
                (0, k_ratio.id(), Val::F64(0.5)),
                (0, k_null.id(), Val::Null),
                (0, k_doc.id(), Val::Json("[1,2,34]".into())),
                (1, k_n.id(), Val::I64(2)),
            ]
        );
        let ev: Vec<&SpanEvent> = recs
            .iter()
            .filter_map(|r| if let Rec::Event(e) = r { Some(e) } else { None })
            .collect();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].span_id, ev[0].name, ev[0].event_seq),
            (cctx.span_id, retry.id(), 1)
        );
        assert!(!recs.iter().any(|r| matches!(r, Rec::Bad(_))), "{recs:?}");
        let t = my_table();
        assert_eq!(t.symbol(child_name.id()), "api.db");
        assert_eq!(t.symbol(k_sys.id()), "db.system");
    });
}

#[test]
fn spans_carry_links_and_limits_apply_per_kind() {
    on_fresh_thread(|| {
        let (name, k) = (Symbol::intern("api.batch"), Symbol::intern("messaging.id"));
        let linked = SpanContext {
            trace_id: [3; 16],
            span_id: [4; 8],
            sampled: true,
        };
        let mut s = Span::start_with_parent(name, None, false);
        let ctx = s.context();
        s.add_link(linked, true, &[(k, Value::Str("m-1"))]);
        s.add_link(
            SpanContext {
                sampled: false,
                ..linked
            },
            false,
            &[],
        );
        s.record_exception("TimeoutError", "upstream took 3 s", None);
        // The default limits are 128 of each kind, counted separately.
        for i in 0..130 {
            s.set_attribute(k, Value::I64(i));
        }
        for _ in 0..128 {
            s.add_event(name, &[]);
        }
        s.end();
        let recs = my_records();
        let rec = spans(&recs)
            .into_iter()
            .find(|r| r.span_id == ctx.span_id)
            .unwrap();
        assert_eq!(
            (rec.attr_count, rec.event_count, rec.dropped_attrs),
            (128, 128, 3),
            "2 attributes and 1 event over their own limits; links not counted against them"
        );
        assert_eq!(
            rec.status,
            span_status::ERROR,
            "record_exception sets the status"
        );
        let exception_attrs: Vec<_> = recs
            .iter()
            .filter_map(|r| match r {
                Rec::Attr(id, 1, key, v) if *id == ctx.span_id => Some((*key, v.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            exception_attrs,
            [
                (
                    Symbol::intern("exception.type").id(),
                    Val::Str("TimeoutError".into())
                ),
                (
                    Symbol::intern("exception.message").id(),
                    Val::Str("upstream took 3 s".into())
                ),
            ],
            "the first event is the exception, with OTel's attribute names"
        );
        let links: Vec<SpanLink> = recs
            .iter()
            .filter_map(|r| if let Rec::Link(l) = r { Some(*l) } else { None })
            .collect();
        assert_eq!(links.len(), 2);
        assert_eq!(
            (
                links[0].span_id,
                links[0].linked_trace_id,
                links[0].linked_span_id
            ),
            (ctx.span_id, [3; 16], [4; 8])
        );
        assert_eq!((links[0].link_seq, links[1].link_seq), (1, 2));
        assert_eq!(links[0].flags, SPAN_FLAG_SAMPLED | SPAN_FLAG_REMOTE_PARENT);
        assert_eq!(links[1].flags, 0);
        let link_attrs: Vec<_> = recs
            .iter()
            .filter_map(|r| match r {
                Rec::LinkAttr(id, seq, key, v) => Some((*id, *seq, *key, v.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            link_attrs,
            [(ctx.span_id, 1, k.id(), Val::Str("m-1".into()))]
        );
        assert!(!recs.iter().any(|r| matches!(r, Rec::Bad(_))), "{recs:?}");
    });
}

#[test]
fn span_with_explicit_parent_does_not_change_the_current_span() {
    on_fresh_thread(|| {
        let remote = shmtel_core::SpanContext {
            trace_id: [9; 16],
            span_id: [3; 8],
            sampled: true,
        };
        let s = Span::start_with_parent(Symbol::intern("api.remote"), Some(remote), true);
        assert_eq!(current_span(), None);
        let ctx = s.context();
        s.end();
        let sp = spans(&my_records());
        assert_eq!(sp.len(), 1);
        assert_eq!(
            (sp[0].trace_id, sp[0].parent_span_id, sp[0].span_id),
            ([9; 16], [3; 8], ctx.span_id)
        );
        assert_eq!(sp[0].flags, SPAN_FLAG_SAMPLED | SPAN_FLAG_REMOTE_PARENT);
        // An unsampled parent: nothing is written at all.
        let unsampled = shmtel_core::SpanContext {
            sampled: false,
            ..remote
        };
        let mut s = Span::start_with_parent(Symbol::intern("api.unsampled"), Some(unsampled), true);
        s.set_attribute(Symbol::intern("k"), Value::I64(1));
        s.end();
        assert_eq!(
            spans(&my_records()).len(),
            1,
            "unsampled spans are not recorded"
        );
    });
}

/// records.md §5: a typed value's string is padded to 8 *inside* the frame. Span attributes
/// with strings of every length modulo 8 must decode.
#[test]
fn span_attribute_strings_of_any_length_decode() {
    on_fresh_thread(|| {
        let key = Symbol::intern("api.attr_len");
        let strings: Vec<String> = (0..=17).map(|n| "x".repeat(n)).collect();
        let mut s = Span::start(Symbol::intern("api.attr_lengths"));
        for v in &strings {
            s.set_attribute(key, Value::Str(v));
        }
        s.set_attribute(key, Value::Json("{}"));
        let id = s.context().span_id;
        s.end();
        let got: Vec<Rec> = my_records()
            .into_iter()
            .filter(|r| matches!(r, Rec::Attr(sid, ..) if *sid == id) || matches!(r, Rec::Bad(_)))
            .collect();
        let mut want: Vec<Rec> = strings
            .iter()
            .map(|v| Rec::Attr(id, 0, key.id(), Val::Str(v.clone())))
            .collect();
        want.push(Rec::Attr(id, 0, key.id(), Val::Json("{}".into())));
        assert_eq!(got, want);
    });
}

// ------------------------------------------------------------------------------------------------
// Logs and business events
// ------------------------------------------------------------------------------------------------

/// A decoded log event: fixed part, message, correlation id, fields.
type LogEvent = (LogRecord, String, String, Vec<(u32, Val)>);

fn logs(recs: &[Rec]) -> Vec<LogEvent> {
    recs.iter()
        .filter_map(|r| {
            if let Rec::Log(a, b, c, d) = r {
                Some((*a, b.clone(), c.clone(), d.clone()))
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn logs_carry_fields_correlation_span_and_truncation() {
    let _level = log_lock();
    on_fresh_thread(|| {
        let (k_user, k_name, k_f, k_b) = (
            Symbol::intern("user_id"),
            Symbol::intern("name"),
            Symbol::intern("f"),
            Symbol::intern("b"),
        );
        log(
            Level::Info,
            "user logged in",
            &[(k_user, Value::I64(42)), (k_name, Value::Str("x"))],
        );
        set_correlation_id("abc-123");
        assert_eq!(shmtel_core::correlation_id().as_deref(), Some("abc-123"));
        let span = Span::start(Symbol::intern("api.log_span"));
        let ctx = span.context();
        log(
            Level::Warn,
            "inside ü",
            &[
                (k_f, Value::F64(1.25)),
                (k_b, Value::Bool(false)),
                (k_name, Value::Null),
            ],
        );
        span.end();
        set_correlation_id("");
        assert_eq!(shmtel_core::correlation_id(), None);
        let long = "é".repeat(6000); // 12000 bytes, over the 8192-byte default limit
        log(Level::Error, &long, &[]);
        log(Level::Fatal, "", &[(k_name, Value::Json("{\"a\":1}"))]);

        let l = logs(&my_records());
        assert_eq!(l.len(), 4);
        let (rec, msg, corr, fields) = &l[0];
        assert_eq!(
            (rec.level, rec.flags, msg.as_str(), corr.as_str()),
            (log_level::INFO, 0, "user logged in", "")
        );
        assert_eq!(
            fields,
            &[
                (k_user.id(), Val::I64(42)),
                (k_name.id(), Val::Str("x".into()))
            ]
        );
        assert_eq!(
            (rec.trace_id, rec.span_id),
            ([0; 16], [0; 8]),
            "no current span"
        );
        assert!(rec.ts > 0);

        let (rec, msg, corr, fields) = &l[1];
        assert_eq!(
            (rec.level, msg.as_str(), corr.as_str()),
            (log_level::WARN, "inside ü", "abc-123")
        );
        assert_eq!(
            (rec.trace_id, rec.span_id),
            (ctx.trace_id, ctx.span_id),
            "the current span's ids"
        );
        assert_eq!(
            fields,
            &[
                (k_f.id(), Val::F64(1.25)),
                (k_b.id(), Val::Bool(false)),
                (k_name.id(), Val::Null)
            ]
        );

        let (rec, msg, corr, _) = &l[2];
        assert_eq!(
            rec.flags & LOG_FLAG_TRUNCATED,
            LOG_FLAG_TRUNCATED,
            "a long message is marked truncated"
        );
        assert_eq!(
            msg.len(),
            8192,
            "cut to the limit, at a character boundary (é is 2 bytes)"
        );
        assert!(long.starts_with(msg.as_str()));
        assert_eq!(corr, "", "cleared");

        let (rec, msg, _, fields) = &l[3];
        assert_eq!(
            (rec.level, rec.flags, msg.as_str()),
            (log_level::FATAL, 0, "")
        );
        assert_eq!(fields, &[(k_name.id(), Val::Json("{\"a\":1}".into()))]);
    });
}

#[test]
fn logs_in_an_explicit_context_ignore_the_threads_span_and_correlation() {
    let _level = log_lock();
    on_fresh_thread(|| {
        set_correlation_id("thread-corr");
        let thread_span = Span::start(Symbol::intern("api.thread_span"));
        let task = SpanContext {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled: true,
        };
        log_in_context(
            Level::Info,
            "from a task",
            &[],
            Symbol::EMPTY,
            LogContext {
                span: Some(task),
                correlation_id: "task-corr",
            },
        );
        log_in_context(
            Level::Info,
            "no context",
            &[],
            Symbol::EMPTY,
            LogContext::default(),
        );
        thread_span.end();
        set_correlation_id("");
        let l = logs(&my_records());
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].0.trace_id, l[0].0.span_id, l[0].2.as_str()),
            ([7; 16], [9; 8], "task-corr")
        );
        assert_eq!(
            (l[1].0.trace_id, l[1].0.span_id, l[1].2.as_str()),
            ([0; 16], [0; 8], "")
        );
    });
}

#[test]
fn root_spans_are_sampled_by_trace_id_ratio() {
    // The OpenTelemetry SDKs' rule: low 64 bits of the trace id below round(ratio * 2^64).
    let mut t = [0u8; 16];
    t[8..].copy_from_slice(&(u64::MAX / 10 - 1).to_be_bytes());
    assert!(ratio_sampled(&t, 0.1));
    t[8..].copy_from_slice(&(u64::MAX / 10 + 1_000_000).to_be_bytes());
    assert!(!ratio_sampled(&t, 0.1));
    assert!(ratio_sampled(&[0xff; 16], 1.0) && !ratio_sampled(&[0; 16], 0.0));
    assert!(!ratio_sampled(&[0; 16], f64::NAN));
    on_fresh_thread(|| {
        let name = Symbol::intern("api.sampled_root");
        let (mut kept, n) = (0, 1200);
        for _ in 0..n {
            let mut s = Span::start_root(name, 0.25);
            let ctx = s.context();
            assert_eq!(ctx.sampled, ratio_sampled(&ctx.trace_id, 0.25));
            assert!(
                ctx.trace_id != [0; 16] && ctx.span_id != [0; 8],
                "ids even when unsampled"
            );
            kept += ctx.sampled as usize;
            s.set_attribute(Symbol::intern("k"), Value::I64(1));
            s.end();
        }
        assert!((240..360).contains(&kept), "{kept} of {n} sampled at 0.25");
        let recorded = spans(&my_records()).len();
        assert_eq!(recorded, kept, "unsampled spans write nothing");
        assert_eq!(
            shmtel_core::current_span(),
            None,
            "roots do not become current"
        );
    });
}

#[test]
fn log_level_filter() {
    let _level = log_lock();
    on_fresh_thread(|| {
        set_log_level(Level::Warn);
        assert!(!log_enabled(Level::Info) && log_enabled(Level::Warn) && log_enabled(Level::Fatal));
        log(Level::Debug, "filtered", &[]);
        log(Level::Info, "filtered", &[]);
        log(Level::Warn, "kept warn", &[]);
        log(Level::Error, "kept error", &[]);
        set_log_level(Level::Trace);
        log(Level::Trace, "kept trace", &[]);
        let l: Vec<String> = logs(&my_records()).into_iter().map(|x| x.1).collect();
        assert_eq!(l, ["kept warn", "kept error", "kept trace"]);
    });
}

#[test]
fn business_events_resolve_through_the_table() {
    on_fresh_thread(|| {
        let (name, unit, region, n) = (
            Symbol::intern("orders.placed"),
            Symbol::intern("usd"),
            Symbol::intern("region"),
            Symbol::intern("items"),
        );
        business_event(
            name,
            19.99,
            unit,
            &[(region, Value::Str("eu-west-1")), (n, Value::I64(3))],
        );
        business_event(name, 5.0, Symbol::intern(""), &[]);
        let recs = my_records();
        let b: Vec<&Rec> = recs
            .iter()
            .filter(|r| matches!(r, Rec::Business(..)))
            .collect();
        assert_eq!(b.len(), 2);
        let Rec::Business(rec, tags) = b[0] else {
            unreachable!()
        };
        assert_eq!(
            (rec.value, rec.name, rec.unit, rec.tag_count),
            (19.99, name.id(), unit.id(), 2)
        );
        assert!(rec.ts > 0);
        assert_eq!(
            tags,
            &[
                (region.id(), Val::Str("eu-west-1".into())),
                (n.id(), Val::I64(3))
            ]
        );
        let t = my_table();
        assert_eq!(
            (t.symbol(rec.name), t.symbol(rec.unit)),
            ("orders.placed", "usd")
        );
        let Rec::Business(rec, tags) = b[1] else {
            unreachable!()
        };
        assert_eq!((rec.value, tags.len()), (5.0, 0));
    });
}

// ------------------------------------------------------------------------------------------------
// Batches
// ------------------------------------------------------------------------------------------------

fn visible_head(path: &Path) -> u64 {
    RingReader::open(path, false).unwrap().stats().head
}

#[test]
fn batch_commits_together() {
    on_fresh_thread(|| {
        let c = Counter::new("api_batch_ops", "help").unwrap();
        let g = Gauge::new("api_batch_progress", "help", GaugeMode::All).unwrap();
        c.inc(); // creates the ring, commits
        let ring = my_ring();
        let before = visible_head(&ring);
        batch(|| {
            c.inc();
            batch(|| g.set(1.0)); // nested: the outer batch decides
            assert_eq!(
                visible_head(&ring),
                before,
                "nothing is visible inside a batch"
            );
            g.set(2.0);
            assert_eq!(visible_head(&ring), before);
        });
        assert_eq!(
            visible_head(&ring),
            before + 24 + 32 + 32,
            "one commit, three frames"
        );
        let recs = records(&ring);
        assert_eq!(counter_sum(&recs, c.series_id()), 2.0);
    });
}

/// A panic inside `batch` (caught by the application, as web frameworks do) must not leave the
/// thread in batch mode for ever: later records must still become visible without any
/// explicit flush.
#[test]
fn batch_survives_a_panic() {
    on_fresh_thread(|| {
        let c = Counter::new("api_batch_panic", "help").unwrap();
        c.inc();
        let ring = my_ring();
        let r = std::panic::catch_unwind(|| {
            batch(|| {
                c.add(2.0);
                panic!("handler failed");
            })
        });
        assert!(r.is_err());
        c.add(7.0);
        // Deliberately no flush_stats() here (it commits): look at what a collector would see.
        let mut rr = RingReader::open(&ring, false).unwrap();
        let mut seen = Vec::new();
        rr.read(usize::MAX, false, |_, rec| seen.push(own(rec)))
            .unwrap();
        assert_eq!(
            seen.last(),
            Some(&Rec::Counter(c.series_id(), 7.0)),
            "a record after the panic is committed: {seen:?}"
        );
    });
}

// ------------------------------------------------------------------------------------------------
// Full ring: overflow slots and drop counters
// ------------------------------------------------------------------------------------------------

#[test]
fn full_ring_never_loses_counter_increments_and_counts_drops() {
    let _level = log_lock(); // logs below must not be filtered
    on_fresh_thread(|| {
        let c = Counter::new("api_overflow_ops", "help").unwrap();
        let g = Gauge::new("api_overflow_gauge", "help", GaugeMode::All).unwrap();
        let h = Histogram::new("api_overflow_hist", "help", &[1.0]).unwrap();
        let span_name = Symbol::intern("api.overflow");
        const N: u64 = 10_000; // 24 bytes each: 240 KB through a 64 KiB ring nobody drains
        for i in 0..N {
            c.inc();
            if i % 100 == 0 {
                g.set(i as f64);
            }
        }
        let before = flush_stats();
        assert!(before.coalesced > 0, "the ring filled up: {before:?}");
        const S: u64 = 50;
        for _ in 0..S {
            Span::start(span_name).end();
            log(Level::Info, "dropped when full", &[]);
            h.observe(1.0);
        }
        g.set(12345.0); // the last set, into the slot
        let st = flush_stats();
        let ring = my_ring();
        let recs = records(&ring);
        let sl = slots(&ring);

        // Counters: ring records + the overflow slot == every increment.
        let in_ring = counter_sum(&recs, c.series_id());
        let slot = sl.get(&c.series_id()).copied().unwrap_or_default();
        assert_eq!(
            in_ring + slot.added,
            N as f64,
            "ring {in_ring} + slot {}",
            slot.added
        );
        assert!(slot.seq > 0 && slot.seq % 2 == 0);
        // The gauge's last set is in its slot, with a timestamp.
        let gslot = sl[&g.series_id()];
        assert_eq!(gslot.set_value, 12345.0);
        assert!(gslot.set_ts > 0);
        // Spans, logs, histograms: what is not in the ring was counted as dropped.
        let n_spans = spans(&recs).len() as u64;
        let n_logs = logs(&recs).len() as u64;
        let n_hist = recs
            .iter()
            .filter(|r| matches!(r, Rec::Hist(s, ..) if *s == h.series_id()))
            .count() as u64;
        assert_eq!(n_spans + st.dropped_spans, S);
        assert_eq!(n_logs + st.dropped_logs, S);
        assert_eq!(n_hist + st.dropped_other, S);
        assert!(
            st.dropped_spans > 0 && st.dropped_logs > 0 && st.dropped_other > 0,
            "{st:?}"
        );
        // Every coalesced update is accounted for: counter increments and gauge sets in slots.
        let ring_sets = recs
            .iter()
            .filter(|r| matches!(r, Rec::GaugeSet(s, ..) if *s == g.series_id()))
            .count() as u64;
        assert_eq!(
            st.coalesced,
            (N - in_ring as u64) + (N / 100 + 1 - ring_sets)
        );
        assert_eq!(st.dropped_metric, 0);
        // The reader's view agrees with the writer's.
        let rs = RingReader::open(&ring, false).unwrap().stats();
        assert_eq!(
            (rs.dropped_spans, rs.dropped_logs, rs.coalesced),
            (st.dropped_spans, st.dropped_logs, st.coalesced)
        );
        assert!(rs.head - rs.tail <= rs.capacity);

        // A collector drains the ring: the writer sees the space again.
        let mut reader = RingReader::open(&ring, true).unwrap();
        reader.read(usize::MAX, true, |_, _| {}).unwrap();
        c.add(5.0);
        let after = records(&ring);
        assert_eq!(
            after,
            [Rec::Counter(c.series_id(), 5.0)],
            "after the drain, records go to the ring again"
        );
        let slot_after = slots(&ring)[&c.series_id()];
        assert_eq!(
            slot_after.added, slot.added,
            "slots are never reset, and not used while there is room"
        );
    });
}

// ------------------------------------------------------------------------------------------------
// Thread exit and fork
// ------------------------------------------------------------------------------------------------

#[test]
fn thread_exit_closes_its_ring() {
    dir();
    let c = Counter::new("api_thread_exit", "help").unwrap();
    let (ring, tid) = std::thread::spawn(move || {
        c.inc();
        flush_stats();
        (my_ring(), gettid())
    })
    .join()
    .unwrap();
    let r = RingReader::open(&ring, false).unwrap();
    assert!(r.stats().closed, "closed = 1 after the thread exited");
    assert_eq!(r.region().header().tid, tid);
    assert_eq!(records(&ring), [Rec::Counter(c.series_id(), 1.0)]);
}

fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid");
    assert!(
        libc::WIFEXITED(status),
        "child did not exit normally: status {status}"
    );
    libc::WEXITSTATUS(status)
}

/// Fork, run `child` in the child (which must not panic out: a panic is exit code 101), and
/// return the child's pid and exit code.
fn fork_and(child: impl FnOnce()) -> (u32, i32) {
    // SAFETY: fork has no preconditions; the child only runs `child` (recording through the
    // crate, which is made for this with its at-fork handlers) and leaves with `_exit`, never
    // returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).is_ok();
        // SAFETY: `_exit` ends the child at once, without running the parent's atexit handlers
        // or destructors in this copy of the process.
        unsafe { libc::_exit(if ok { 0 } else { 101 }) };
    }
    (pid as u32, wait_child(pid))
}

#[test]
fn fork_child_records_into_its_own_files() {
    on_fresh_thread(|| {
        let c = Counter::new("api_fork_ops", "help").unwrap();
        c.inc();
        let parent_ring = my_ring();
        let parent_head = flush_stats().head;
        let (child, code) = fork_and(|| {
            for _ in 0..5 {
                c.inc();
            }
            let only_child = Counter::new("api_fork_child_only", "help").unwrap();
            only_child.add(2.0);
            shmtel_core::log(Level::Error, "from the child", &[]);
            flush_stats();
        });
        assert_eq!(code, 0, "child failed");
        assert_ne!(child, getpid());
        // The parent's ring was not written by the child.
        assert_eq!(
            visible_head(&parent_ring),
            parent_head,
            "the child wrote into the parent's ring"
        );
        assert_eq!(records(&parent_ring), [Rec::Counter(c.series_id(), 1.0)]);
        // The child's files carry its pid; its records use the same ids, defined in its table.
        let ring = scan_dir(dir())
            .unwrap()
            .into_iter()
            .find(|e| matches!(e.name, RegionName::Ring { pid, .. } if pid == child))
            .expect("the child created a ring of its own")
            .path;
        let recs = records(&ring);
        assert_eq!(counter_sum(&recs, c.series_id()), 5.0);
        let t = table_of(child);
        assert_eq!(t.region().header().pid, child);
        let (_, fam) = t
            .series_family(c.series_id())
            .expect("the child's table defines the parent's ids");
        assert_eq!(fam.name, "api_fork_ops");
        let child_only = recs
            .iter()
            .find_map(|r| match r {
                Rec::Counter(s, v) if *s != c.series_id() => Some((*s, *v)),
                _ => None,
            })
            .unwrap();
        assert_eq!(child_only.1, 2.0);
        assert_eq!(
            t.series_family(child_only.0).unwrap().1.name,
            "api_fork_child_only"
        );
        // The parent may hand the same id to another series later, never to this family.
        let parent_def = my_table()
            .series_family(child_only.0)
            .map(|(_, f)| f.name.clone());
        assert_ne!(
            parent_def.as_deref(),
            Some("api_fork_child_only"),
            "the child's family stays the child's"
        );
        assert_eq!(logs(&recs).len(), 1);
    });
}

// ------------------------------------------------------------------------------------------------
// Scenarios in a process of their own
// ------------------------------------------------------------------------------------------------

/// Re-run this test binary for one test in a fresh process with extra environment; returns
/// whether it passed (its output is printed on failure).
fn run_in_own_process(test: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .env("SHMTEL_API_SCENARIO", test)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scenario {test} failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_scenario(test: &str) -> bool {
    std::env::var("SHMTEL_API_SCENARIO").is_ok_and(|s| s == test)
}

/// table.md §4: separate id spaces, each starting at 1. Needs a process whose table is fresh.
#[test]
fn ids_start_at_one_in_separate_spaces() {
    const NAME: &str = "ids_start_at_one_in_separate_spaces";
    if !in_scenario(NAME) {
        return run_in_own_process(NAME, &[]);
    }
    dir();
    let s = Symbol::intern("first.symbol");
    let c = Counter::new("first_family", "help").unwrap();
    let s2 = Symbol::intern("second.symbol");
    let g = Gauge::new("second_family", "help", GaugeMode::All).unwrap();
    assert_eq!((s.id(), s2.id()), (1, 2), "symbols");
    assert_eq!((c.series_id(), g.series_id()), (1, 2), "series");
    let t = my_table();
    assert_eq!(
        t.families
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [1, 2].into(),
        "families"
    );
    assert_eq!(t.families[&1].name, "first_family");
    assert_eq!(Symbol::intern("first.symbol"), s, "interning is idempotent");
}

/// table.md §5 and lifecycle.md §5: past the series limit, new label sets go to the family's
/// `__shmtel_overflow__` series; after fork, the child's table must define that series too
/// (the child's handles keep using its id).
#[test]
fn cardinality_overflow_series_survives_fork() {
    const NAME: &str = "cardinality_overflow_series_survives_fork";
    if !in_scenario(NAME) {
        return run_in_own_process(NAME, &[("SHMTEL_API_TEST_MAX_SERIES", "2")]);
    }
    dir();
    let cv = CounterVec::new("limited", "help", &["user"]).unwrap();
    let a = cv.with_label_values(&["a"]);
    let b = cv.with_label_values(&["b"]);
    let c = cv.with_label_values(&["c"]);
    let d = cv.with_label_values(&["d"]);
    assert_eq!((a.series_id(), b.series_id()), (1, 2));
    assert_eq!(c, d, "both refused label sets share the overflow series");
    assert_ne!(c, a);
    c.inc();
    d.inc();
    let t = my_table();
    let (s, f) = t
        .series_family(c.series_id())
        .expect("the overflow series is defined");
    assert_eq!(
        (s.values.as_slice(), f.name.as_str()),
        (&["__shmtel_overflow__".to_string()][..], "limited")
    );
    assert_eq!(t.overflowed_series(), 2);
    assert_eq!(counter_sum(&my_records(), c.series_id()), 2.0);

    let (child, code) = fork_and(|| {
        c.inc();
        a.inc();
        flush_stats();
    });
    assert_eq!(code, 0);
    let t = table_of(child);
    assert!(
        t.series_family(a.series_id()).is_some(),
        "ordinary series are copied into the child's table"
    );
    let (s, _) = t.series_family(c.series_id()).expect(
        "the child's table must define the overflow series its records use (lifecycle.md §5)",
    );
    assert_eq!(s.values, ["__shmtel_overflow__"]);
}
