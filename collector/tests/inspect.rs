//! `shmtel dump`, `tail` and `stat` against region files written by the real writer: this
//! process (through `shmtel_core::init`, once, in `in_process_writer`) and a child process that
//! has exited (`dead_process_and_hostile_files`), next to hostile files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shmtel_collector::inspect::dump::{self, DumpArgs};
use shmtel_collector::inspect::stat::{self, StatArgs};
use shmtel_collector::inspect::tail::{self, KindFilter, TailArgs, Tailer};
use shmtel_core::reader::{scan_dir, RingReader};
use shmtel_core::region::RegionName;
use shmtel_core::{
    business_event, log, set_correlation_id, Config, Counter, CounterVec, Gauge, GaugeMode,
    Histogram, Level, Span, SpanKind, SpanStatus, Symbol, Value as V,
};

const RING_BYTES: usize = 64 * 1024;
const CHILD_ENV: &str = "SHMTEL_INSPECT_TEST_CHILD_DIR";
const CHILD_OPS_ENV: &str = "SHMTEL_INSPECT_TEST_CHILD_OPS";
const CHILD_RING_ENV: &str = "SHMTEL_INSPECT_TEST_CHILD_RING";

// ------------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------------

fn dump_out(dir: &Path, json: bool, limit: usize) -> (i32, Vec<u8>) {
    let mut out = Vec::new();
    let code = dump::run_to(
        &DumpArgs {
            dir: dir.to_owned(),
            json,
            limit,
        },
        &mut out,
    );
    (code, out)
}

fn dump_json(dir: &Path, limit: usize) -> Value {
    let (code, out) = dump_out(dir, true, limit);
    assert_eq!(code, 0);
    serde_json::from_slice(&out).expect("dump --json prints one JSON document")
}

fn dump_text(dir: &Path, limit: usize) -> String {
    let (code, out) = dump_out(dir, false, limit);
    assert_eq!(code, 0);
    String::from_utf8(out).expect("dump prints UTF-8")
}

fn tail_once(dir: &Path, json: bool, kinds: Vec<KindFilter>) -> Vec<String> {
    let mut out = Vec::new();
    let code = tail::run_to(
        &TailArgs {
            dir: dir.to_owned(),
            follow: false,
            json,
            kinds,
            format: None,
        },
        &mut out,
    );
    assert_eq!(code, 0);
    String::from_utf8(out)
        .expect("UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The rings of a dump document, all processes.
fn rings(doc: &Value) -> Vec<&Value> {
    doc["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .flat_map(|p| p["rings"].as_array().expect("rings"))
        .collect()
}

fn ring_of<'a>(doc: &'a Value, thread: &str) -> &'a Value {
    rings(doc)
        .into_iter()
        .find(|r| r["thread"] == thread)
        .unwrap_or_else(|| panic!("no ring of thread {thread}"))
}

fn count(ring: &Value, kind: &str) -> u64 {
    ring["record_counts"][kind].as_u64().unwrap_or(0)
}

fn ring_path(dir: &Path, thread: &str) -> PathBuf {
    scan_dir(dir)
        .expect("scan")
        .into_iter()
        .filter(|e| matches!(e.name, RegionName::Ring { .. }))
        .find(|e| {
            RingReader::open(&e.path, false)
                .map(|r| {
                    r.region()
                        .header()
                        .thread_name
                        .starts_with(thread.as_bytes())
                })
                .unwrap_or(false)
        })
        .map(|e| e.path)
        .unwrap_or_else(|| panic!("no ring file of thread {thread}"))
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("UTF-8")
    }
}

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

// ------------------------------------------------------------------------------------------------
// in-process writer
// ------------------------------------------------------------------------------------------------

/// What `write_known_records` writes, by record kind.
const KNOWN: &[(&str, u64)] = &[
    ("counter_add", 6),
    ("gauge_set", 1),
    ("gauge_add", 1),
    ("histogram", 4),
    ("span", 1),
    ("span_attr", 2),
    ("span_event", 1),
    ("log", 2),
    ("business", 1),
];

/// Writes the records of [`KNOWN`] on the calling thread; returns the span's trace id.
fn write_known_records() -> String {
    let reqs = CounterVec::new("http_requests", "Requests served", &["method", "route"])
        .expect("register");
    let get = reqs.with_label_values(&["GET", "/users"]);
    for _ in 0..5 {
        get.inc();
    }
    reqs.with_label_values(&["POST", "/a \"b\""]).add(2.0);
    let g =
        Gauge::new("in_progress", "Requests in progress", GaugeMode::LiveSum).expect("register");
    g.set(3.0);
    g.inc();
    let h =
        Histogram::new("latency_seconds", "Latency", &[0.005, 0.01, 0.1, 1.0]).expect("register");
    for _ in 0..3 {
        h.observe(0.02);
    }
    let mut s = Span::start(Symbol::intern("db.query"));
    s.set_kind(SpanKind::Client);
    s.set_attribute(Symbol::intern("db.system"), V::Str("postgres"));
    s.add_event(
        Symbol::intern("retry"),
        &[(Symbol::intern("attempt"), V::I64(2))],
    );
    log(
        Level::Info,
        "user logged in",
        &[
            (Symbol::intern("user_id"), V::I64(42)),
            (Symbol::intern("path"), V::Str("/users")),
        ],
    );
    h.observe(0.5);
    s.set_status(SpanStatus::Error);
    let trace = s.context().trace_id_hex();
    s.end();
    set_correlation_id("abc-123");
    log(Level::Warn, "disk \"almost\" full\n\x1b[31m", &[]);
    business_event(
        Symbol::intern("orders"),
        19.99,
        Symbol::intern("usd"),
        &[(Symbol::intern("region"), V::Str("eu"))],
    );
    trace
}

/// A thread whose ring is drained by a simulated collector while it writes, so that a tail
/// reader can be lapped.
enum LapCmd {
    /// Write logs (consuming each at once) until the head is `advance` bytes past where it was.
    WriteUntil(u64),
    /// Write this many logs (consuming each at once).
    Write(usize),
}

fn lapper(
    dir: PathBuf,
    ready: mpsc::Sender<()>,
    cmds: mpsc::Receiver<LapCmd>,
    done: mpsc::Sender<u64>,
) {
    let key = Symbol::intern("i");
    log(Level::Info, "lap start", &[]);
    let mut collector =
        RingReader::open(&ring_path(&dir, "lapper"), true).expect("open own ring writable");
    collector
        .read(usize::MAX, true, |_, _| {})
        .expect("consume");
    ready.send(()).expect("send");
    let mut i = 0i64;
    let mut write_one = |collector: &mut RingReader| {
        log(Level::Info, "lap", &[(key, V::I64(i))]);
        i += 1;
        collector
            .read(usize::MAX, true, |_, _| {})
            .expect("consume");
    };
    for cmd in cmds {
        let start = collector.stats().head;
        match cmd {
            LapCmd::WriteUntil(advance) => {
                while collector.stats().head - start < advance {
                    write_one(&mut collector);
                }
            }
            LapCmd::Write(n) => {
                for _ in 0..n {
                    write_one(&mut collector);
                }
            }
        }
        done.send(collector.stats().head - start).expect("send");
    }
}

#[test]
fn in_process_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("regions");
    shmtel_core::init(Config {
        dir: Some(dir.clone()),
        service: "inspect-test".into(),
        ring_bytes: RING_BYTES,
        ..Default::default()
    })
    .expect("init");
    let pid = std::process::id();

    // --- dump: counts by kind, names resolved, times converted --------------------------------
    let trace = std::thread::Builder::new()
        .name("writer-a".into())
        .spawn(write_known_records)
        .expect("spawn")
        .join()
        .expect("writer thread");
    let doc = dump_json(&dir, 0);
    let procs = doc["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 1, "{doc:#}");
    assert_eq!(procs[0]["pid"], pid);
    assert_eq!(procs[0]["alive"], true);
    assert_eq!(procs[0]["service"], "inspect-test");
    assert_eq!(procs[0]["table"]["families"], 3);
    assert_eq!(procs[0]["table"]["series"], 4);
    assert_eq!(doc["rejected"].as_array().expect("rejected").len(), 0);
    let ring = ring_of(&doc, "writer-a");
    assert_eq!(ring["state"], "closed");
    assert_eq!(ring["capacity"], RING_BYTES as u64);
    for (kind, n) in KNOWN {
        assert_eq!(
            count(ring, kind),
            *n,
            "{kind} in {:#}",
            ring["record_counts"]
        );
    }
    let total: u64 = KNOWN.iter().map(|(_, n)| n).sum();
    assert_eq!(ring["records_total"], total);
    assert_eq!(
        ring["records"].as_array().expect("records").len() as u64,
        total
    );
    assert_eq!(ring["fill_bytes"], ring["head"]);
    let records = ring["records"].as_array().expect("records");
    let first = &records[0];
    assert_eq!(first["kind"], "counter_add");
    assert_eq!(
        first["series"],
        r#"http_requests{method="GET",route="/users"}"#
    );
    assert_eq!(first["labels"]["route"], "/users");
    let info = records
        .iter()
        .find(|r| r["kind"] == "log" && r["level"] == "INFO")
        .expect("info log");
    assert_eq!(info["message"], "user logged in");
    assert_eq!(info["fields"]["user_id"], 42);
    assert_eq!(info["fields"]["path"], "/users");
    assert_eq!(info["trace_id"], trace.as_str());
    let t = info["time_ns"].as_u64().expect("log time");
    assert!(
        now_ns().abs_diff(t) < 120_000_000_000,
        "log time {} is not now",
        info["time"]
    );
    let warn = records
        .iter()
        .find(|r| r["kind"] == "log" && r["level"] == "WARN")
        .expect("warn log");
    assert_eq!(warn["correlation_id"], "abc-123");
    let span = records.iter().find(|r| r["kind"] == "span").expect("span");
    assert_eq!(
        (&span["name"], &span["span_kind"], &span["status"]),
        (&"db.query".into(), &"client".into(), &"error".into())
    );
    assert!(span["duration_ns"].as_i64().expect("duration") >= 0);
    let exemplar = records
        .iter()
        .find(|r| r["kind"] == "histogram" && r["value"] == 0.5)
        .expect("observation");
    assert_eq!(exemplar["exemplar"]["trace_id"], trace.as_str());
    let biz = records
        .iter()
        .find(|r| r["kind"] == "business")
        .expect("business");
    assert_eq!(
        (&biz["name"], &biz["unit"], &biz["tags"]["region"]),
        (&"orders".into(), &"usd".into(), &"eu".into())
    );

    // Human text: the same, one line per record; control characters never reach the terminal.
    let text = dump_text(&dir, 0);
    assert!(text.contains(&format!("process {pid} (start ")), "{text}");
    assert!(text.contains("service \"inspect-test\""), "{text}");
    assert!(text.contains("thread \"writer-a\""), "{text}");
    assert!(
        text.contains("COUNTER http_requests{method=\"GET\",route=\"/users\"} +1"),
        "{text}"
    );
    assert!(
        text.contains("COUNTER http_requests{method=\"POST\",route=\"/a \\\"b\\\"\"} +2"),
        "{text}"
    );
    assert!(text.contains("GAUGE_SET in_progress = 3"), "{text}");
    assert!(text.contains("GAUGE_ADD in_progress +1"), "{text}");
    assert!(
        text.contains(&format!(
            "LOG INFO \"user logged in\" user_id=42 path=/users trace_id={trace}"
        )),
        "{text}"
    );
    assert!(
        text.contains(r#"LOG WARN "disk \"almost\" full\n\u{1b}[31m" correlation_id=abc-123"#),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "raw escape in the dump");
    assert!(
        text.contains("SPAN db.query kind=client status=error duration="),
        "{text}"
    );
    assert!(text.contains("SPAN_ATTR span_id="), "{text}");
    assert!(text.contains("event=1 attempt=2"), "{text}");
    assert!(
        text.contains("BUSINESS orders 19.99 usd region=eu"),
        "{text}"
    );
    let log_line = text
        .lines()
        .find(|l| l.contains("LOG INFO"))
        .expect("log line")
        .trim_start();
    let (time, _) = log_line.split_once(' ').expect("time column");
    assert_eq!(time.len(), 30, "{time}");
    assert!(
        time.ends_with('Z') && time.as_bytes()[10] == b'T' && time.as_bytes()[19] == b'.',
        "{time}"
    );
    assert!(
        text.contains(&format!("records: {total} (business 1, counter_add 6,")),
        "{text}"
    );
    // --limit
    let limited = dump_json(&dir, 3);
    let r = ring_of(&limited, "writer-a");
    assert_eq!(
        (r["records_shown"].as_u64(), r["records_total"].as_u64()),
        (Some(3), Some(total))
    );
    assert!(dump_text(&dir, 3).contains(&format!("... {} more", total - 3)));

    // --- dump does not consume: the tail stays, the file's bytes stay --------------------------
    let path = ring_path(&dir, "writer-a");
    let mut collector = RingReader::open(&path, true).expect("open writable");
    assert_eq!(collector.read(5, true, |_, _| {}).expect("consume"), 5);
    let before = collector.stats();
    assert!(before.tail > 0);
    let bytes_before = std::fs::read(&path).expect("read ring");
    let doc = dump_json(&dir, 0);
    let _ = dump_text(&dir, 0);
    let _ = tail_once(&dir, false, vec![]);
    assert_eq!(collector.stats(), before, "inspection moved a position");
    assert_eq!(
        std::fs::read(&path).expect("read ring"),
        bytes_before,
        "inspection wrote to the ring file"
    );
    let ring = ring_of(&doc, "writer-a");
    assert_eq!(ring["tail"], before.tail);
    assert_eq!(
        ring["records_total"],
        total - 5,
        "only what is between the shared tail and head"
    );
    assert_eq!(count(ring, "counter_add"), 1);
    drop(collector);

    // --- stat ---------------------------------------------------------------------------------
    let mut out = Vec::new();
    assert_eq!(
        stat::run_to(
            &StatArgs {
                dir: dir.clone(),
                json: true
            },
            &mut out
        ),
        0
    );
    let st: Value = serde_json::from_slice(&out).expect("stat --json");
    let p = &st["processes"][0];
    assert_eq!(p["pid"], pid);
    assert!(p["symbols"].as_u64().expect("symbols") >= 8, "{p:#}");
    let fams = p["families"].as_array().expect("families");
    let fam = |name: &str| {
        fams.iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("family {name}"))
    };
    let reqs = fam("http_requests");
    assert_eq!(reqs["type"], "counter");
    assert_eq!(reqs["labels"], serde_json::json!(["method", "route"]));
    assert_eq!(reqs["series"].as_array().expect("series").len(), 2);
    assert_eq!(
        reqs["series"][0]["labels"],
        serde_json::json!({"method": "GET", "route": "/users"})
    );
    assert_eq!(fam("in_progress")["mode"], "livesum");
    assert_eq!(
        fam("latency_seconds")["buckets"],
        serde_json::json!([0.005, 0.01, 0.1, 1.0])
    );
    let mut out = Vec::new();
    assert_eq!(
        stat::run_to(
            &StatArgs {
                dir: dir.clone(),
                json: false
            },
            &mut out
        ),
        0
    );
    let text = String::from_utf8(out).expect("UTF-8");
    assert!(
        text.contains("counter http_requests: \"Requests served\""),
        "{text}"
    );
    assert!(text.contains("gauge in_progress (mode livesum)"), "{text}");
    assert!(text.contains("buckets: 0.005, 0.01, 0.1, 1"), "{text}");
    assert!(text.contains("{method=\"GET\",route=\"/users\"}"), "{text}");

    // --- tail without --follow: what is between tail and head, filtered by kind ----------------
    let lines = tail_once(&dir, true, vec![]);
    assert_eq!(lines.len() as u64, total - 5);
    for line in &lines {
        let v: Value = serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(v["pid"], pid);
        assert!(v["tid"].as_u64().is_some());
    }
    let logs = tail_once(&dir, false, vec![KindFilter::Log]);
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(
        logs[0].contains(&format!(" pid={pid} tid="))
            && logs[0].contains(" LOG INFO \"user logged in\" user_id=42")
    );
    let spans = tail_once(&dir, true, vec![KindFilter::Span, KindFilter::Business]);
    assert_eq!(spans.len(), 5, "{spans:?}");

    // --- a full ring: drops, coalesced updates, overflow slots ---------------------------------
    std::thread::Builder::new()
        .name("filler".into())
        .spawn(|| {
            let key = Symbol::intern("n");
            for i in 0..2000 {
                log(Level::Debug, "filling the ring", &[(key, V::I64(i))]);
            }
            let c = Counter::new("filler_ops", "Ops while full").expect("register");
            // The ring has less than one log frame free: a few 24-byte counter frames may
            // still fit, the rest (and the gauge set after them) go to the overflow slots.
            for _ in 0..20 {
                c.inc();
            }
            Gauge::new("filler_level", "Level while full", GaugeMode::All)
                .expect("register")
                .set(5.0);
        })
        .expect("spawn")
        .join()
        .expect("filler");
    let doc = dump_json(&dir, 1);
    let ring = ring_of(&doc, "filler");
    let dropped = ring["dropped"]["logs"].as_u64().expect("dropped logs");
    assert!(dropped > 0, "{ring:#}");
    assert_eq!(count(ring, "log") + dropped, 2000);
    let in_ring = count(ring, "counter_add");
    assert!(in_ring <= 3, "{ring:#}");
    assert_eq!(count(ring, "gauge_set"), 0, "{ring:#}");
    assert_eq!(ring["coalesced"], 20 - in_ring + 1);
    assert!(
        ring["fill_percent"].as_f64().expect("fill") > 99.0,
        "{ring:#}"
    );
    let overflow = ring["overflow"].as_array().expect("overflow");
    let slot = |name: &str| {
        overflow
            .iter()
            .find(|o| o["series"] == name)
            .unwrap_or_else(|| panic!("slot {name}: {overflow:?}"))
    };
    assert_eq!(slot("filler_ops")["added"], (20 - in_ring) as f64);
    assert_eq!(slot("filler_level")["set_value"], 5.0);
    let text = dump_text(&dir, 1);
    assert!(
        text.contains(&format!("filler_ops: added {}\n", 20 - in_ring)),
        "{text}"
    );
    assert!(
        text.contains("filler_level: added 0, last set 5 at 20"),
        "{text}"
    );

    // --- tail --follow: from the head of existing rings, new rings from their start ------------
    log(Level::Info, "before follow", &[]); // this thread's ring exists before tail starts
    let out = SharedBuf::default();
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (mut out, stop, dir) = (out.clone(), Arc::clone(&stop), dir.clone());
        std::thread::spawn(move || {
            let args = TailArgs {
                dir,
                follow: true,
                json: false,
                kinds: vec![],
                format: None,
            };
            tail::run_until(&args, &mut out, &stop)
        })
    };
    std::thread::sleep(Duration::from_millis(500)); // its first scan (at the start) is long done
    for i in 0..3 {
        log(
            Level::Info,
            "after follow",
            &[(Symbol::intern("i"), V::I64(i))],
        );
    }
    std::thread::Builder::new()
        .name("writer-b".into())
        .spawn(|| business_event(Symbol::intern("signups"), 1.0, Symbol::intern(""), &[]))
        .expect("spawn")
        .join()
        .expect("writer-b");
    wait_for("followed records", Duration::from_secs(10), || {
        let t = out.text();
        t.matches("\"after follow\"").count() == 3 && t.contains("BUSINESS signups 1")
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(follower.join().expect("follower"), 0);
    let text = out.text();
    assert!(
        !text.contains("before follow"),
        "existing records were printed: {text}"
    );
    assert!(
        !text.contains("user logged in"),
        "existing records were printed: {text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");

    // --- lapped by the writer: a notice, then back in step -------------------------------------
    let (ready_tx, ready_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let lap_thread = {
        let dir = dir.clone();
        std::thread::Builder::new()
            .name("lapper".into())
            .spawn(move || lapper(dir, ready_tx, cmd_rx, done_tx))
            .expect("spawn")
    };
    ready_rx.recv().expect("lapper ready");
    let mut tailer = Tailer::new(&TailArgs {
        dir: dir.clone(),
        follow: true,
        json: false,
        kinds: vec![KindFilter::Log],
        format: None,
    });
    tailer.scan().expect("scan");
    let cap = RING_BYTES as u64;
    let mut poll = |cmd: LapCmd| {
        cmd_tx.send(cmd).expect("send");
        let advanced = done_rx.recv().expect("done");
        let mut out = Vec::new();
        tailer.poll(&mut out).expect("poll");
        (advanced, String::from_utf8(out).expect("UTF-8"))
    };
    // More than a capacity past our position: lapped.
    let (advanced, text) = poll(LapCmd::WriteUntil(cap + cap / 2));
    assert!(advanced > cap);
    assert_eq!(text, format!("... {advanced} bytes skipped pid={pid} tid={} (overwritten by the writer before they were read)\n", lap_tid(&text)));
    // Not lapped, but so close that the writer may have been overwriting what we copied.
    let (advanced, text) = poll(LapCmd::WriteUntil(cap - 6000));
    assert!(advanced < cap);
    assert!(
        text.starts_with(&format!("... {advanced} bytes skipped pid={pid}")),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    // Well behind the writer's reach: every record, no notice.
    let (_, text) = poll(LapCmd::Write(10));
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(
        text.lines().all(|l| l.contains(" LOG INFO \"lap\" i=")),
        "{text}"
    );
    drop(cmd_tx);
    lap_thread.join().expect("lapper");
}

fn lap_tid(notice: &str) -> String {
    notice
        .split(" tid=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or("?")
        .to_owned()
}

// ------------------------------------------------------------------------------------------------
// a dead process, hostile files
// ------------------------------------------------------------------------------------------------

/// Not a test by itself: the writer process of the tests that need a dead process, which run
/// this test binary again with only this test selected and `CHILD_ENV` set (see `run_child`).
/// Does nothing otherwise. `CHILD_OPS_ENV` sets the number of counter increments and
/// `CHILD_RING_ENV` the ring size.
#[test]
fn child_writer_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let env_num = |k: &str, default: usize| {
        std::env::var(k)
            .ok()
            .map_or(default, |v| v.parse().expect("a number"))
    };
    let ops = env_num(CHILD_OPS_ENV, 10);
    shmtel_core::init(Config {
        dir: Some(dir.into()),
        service: "inspect-child".into(),
        ring_bytes: env_num(CHILD_RING_ENV, RING_BYTES),
        ..Default::default()
    })
    .expect("init");
    std::thread::Builder::new()
        .name("child-w".into())
        .spawn(move || {
            let c = Counter::new("child_ops", "Child ops").expect("register");
            for i in 0..ops as i64 {
                c.inc();
                if i < 10 && i % 4 == 0 {
                    log(
                        Level::Info,
                        "child says hi",
                        &[(Symbol::intern("i"), V::I64(i))],
                    );
                }
            }
            for _ in 0..2 {
                let mut s = Span::start(Symbol::intern("child.op"));
                s.set_attribute(Symbol::intern("k"), V::Bool(true));
                s.end();
            }
        })
        .expect("spawn")
        .join()
        .expect("child thread");
}

/// Run `child_writer_process` in a child process writing into `dir`, and wait for it to exit.
fn run_child(dir: &Path, ops: usize, ring_bytes: usize) {
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_writer_process",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_ENV, dir)
        .env(CHILD_OPS_ENV, ops.to_string())
        .env(CHILD_RING_ENV, ring_bytes.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the child writer");
    assert!(status.success());
}

fn patch(bytes: &mut [u8], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create");
    f.write_all(bytes).expect("write");
}

#[test]
fn dead_process_and_hostile_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    run_child(&dir, 10, RING_BYTES);

    let entries = scan_dir(&dir).expect("scan");
    let table = entries
        .iter()
        .find(|e| matches!(e.name, RegionName::Table { .. }))
        .expect("child table")
        .clone();
    let ring = entries
        .iter()
        .find(|e| matches!(e.name, RegionName::Ring { .. }))
        .expect("child ring")
        .clone();
    let RegionName::Ring {
        pid, start, tid, ..
    } = ring.name
    else {
        unreachable!()
    };
    let ring_bytes = std::fs::read(&ring.path).expect("read ring");
    let table_bytes = std::fs::read(&table.path).expect("read table");

    // Hostile neighbours, named like regions so that they are looked at.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    write_private(&dir.join("11-1.table"), &table_bytes[..100]);
    write_private(&dir.join("12-2-12-1.ring"), &[0u8; 8192]);
    let noise: Vec<u8> = (0..8192)
        .map(|_| random() as u8)
        .map(|b| b & 0x7f)
        .collect();
    write_private(&dir.join("13-3-13-1.ring"), &noise);
    let mut v2 = ring_bytes.clone();
    patch(&mut v2, 8, &2u32.to_le_bytes());
    write_private(&dir.join("14-4-14-1.ring"), &v2);
    std::os::unix::fs::symlink(&ring.path, dir.join("15-5-15-1.ring")).expect("symlink");
    let mut unready = ring_bytes.clone();
    patch(&mut unready, 8, &0u32.to_le_bytes());
    write_private(&dir.join("16-6-16-1.ring"), &unready);
    // Valid headers, corrupt contents: under the child's own name (another seq).
    let mut far_head = ring_bytes.clone();
    patch(&mut far_head, 256, &(1u64 << 40).to_le_bytes());
    write_private(&dir.join(format!("{pid}-{start}-{tid}-98.ring")), &far_head);
    let mut bad_frame = ring_bytes.clone();
    patch(&mut bad_frame, 512, &3u32.to_le_bytes());
    write_private(
        &dir.join(format!("{pid}-{start}-{tid}-99.ring")),
        &bad_frame,
    );
    std::fs::write(dir.join("notes.txt"), "not a region").expect("write");

    let doc = dump_json(&dir, 0);
    let procs = doc["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 1, "{doc:#}");
    let p = &procs[0];
    assert_eq!(
        (p["pid"].as_u64(), p["start"].as_u64()),
        (Some(pid.into()), Some(start))
    );
    assert_eq!(p["alive"], false);
    assert_eq!(p["state"], "dead");
    assert_eq!(p["service"], "inspect-child");
    let rings = p["rings"].as_array().expect("rings");
    assert_eq!(rings.len(), 3, "{p:#}");
    let good = rings
        .iter()
        .find(|r| r["seq"] != 98 && r["seq"] != 99)
        .expect("the real ring");
    assert_eq!(good["state"], "closed", "the writer thread exited");
    assert_eq!(good["thread"], "child-w");
    assert_eq!((count(good, "counter_add"), count(good, "log")), (10, 3));
    assert_eq!((count(good, "span"), count(good, "span_attr")), (2, 2));
    assert_eq!(good["error"], Value::Null);
    let far = rings.iter().find(|r| r["seq"] == 98).expect("ring 98");
    assert!(
        far["error"]
            .as_str()
            .expect("error")
            .contains("positions are inconsistent"),
        "{far:#}"
    );
    let bad = rings.iter().find(|r| r["seq"] == 99).expect("ring 99");
    assert!(
        bad["error"]
            .as_str()
            .expect("error")
            .contains("invalid frame at position 0"),
        "{bad:#}"
    );

    let rejected: Vec<(String, String)> = doc["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            let name = Path::new(r["path"].as_str().expect("path"))
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, r["reason"].as_str().expect("reason").to_owned())
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("11-1.table", "truncated"),
        ("12-2-12-1.ring", "bad_magic"),
        ("13-3-13-1.ring", "bad_magic"),
        ("14-4-14-1.ring", "unsupported_version"),
        ("15-5-15-1.ring", "not_regular_file"),
        ("16-6-16-1.ring", "not_ready"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(rejected, want);

    let text = dump_text(&dir, 5);
    assert!(
        text.contains(&format!(
            "process {pid} (start {start}): dead, service \"inspect-child\""
        )),
        "{text}"
    );
    assert!(text.contains("thread \"child-w\" seq 1: closed"), "{text}");
    assert!(text.contains("LOG INFO \"child says hi\" i=0"), "{text}");
    assert!(text.contains("rejected files:"), "{text}");
    assert!(
        text.contains("14-4-14-1.ring: layout version 2 is not supported"),
        "{text}"
    );
    assert!(
        text.contains("15-5-15-1.ring: not a regular file"),
        "{text}"
    );
    assert!(
        text.contains("error: ring positions are inconsistent"),
        "{text}"
    );

    // stat sees the dead process's table; tail prints the dead rings' records and ignores the rest.
    let mut out = Vec::new();
    assert_eq!(
        stat::run_to(
            &StatArgs {
                dir: dir.clone(),
                json: false
            },
            &mut out
        ),
        0
    );
    let st = String::from_utf8(out).expect("UTF-8");
    assert!(st.contains("counter child_ops: \"Child ops\""), "{st}");
    assert!(st.contains("11-1.table: rejected: truncated"), "{st}");
    let lines = tail_once(&dir, false, vec![KindFilter::Log]);
    assert_eq!(lines.len(), 3, "{lines:?}");

    // Random damage to the valid ring's bytes: never a panic, always exit 0.
    let victim = dir.join(format!("{pid}-{start}-{tid}-97.ring"));
    for round in 0..300 {
        let mut bytes = ring_bytes.clone();
        for _ in 0..1 + random() % 8 {
            // Mostly the writer block and frames, sometimes the header.
            let span = if round % 5 == 0 {
                bytes.len()
            } else {
                512 + 4096
            };
            let at = random() as usize % span;
            bytes[at] = random() as u8;
        }
        let _ = std::fs::remove_file(&victim);
        write_private(&victim, &bytes);
        let (code, _) = dump_out(&dir, round % 2 == 0, 0);
        assert_eq!(code, 0);
        let _ = tail_once(&dir, round % 2 == 1, vec![]);
    }
}

/// More frames than one read step takes (dump reads 16 Ki frames per step, tail 4 Ki).
#[test]
fn large_ring_is_read_in_steps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ops = 40_000;
    run_child(tmp.path(), ops, 2 << 20);
    let doc = dump_json(tmp.path(), 0);
    let ring = ring_of(&doc, "child-w");
    assert_eq!(count(ring, "counter_add"), ops as u64);
    assert_eq!(count(ring, "log"), 3);
    assert_eq!(ring["records_shown"], ring["records_total"]);
    assert_eq!(ring["dropped"]["metric"], 0);
    assert_eq!(ring["coalesced"], 0);
    let text = dump_text(tmp.path(), 20);
    let more = ops as u64 + 3 + 4 - 20;
    assert!(text.contains(&format!("      ... {more} more")), "{text}");
    let lines = tail_once(tmp.path(), false, vec![KindFilter::Counter]);
    assert_eq!(lines.len(), ops);
    assert!(lines.iter().all(|l| l.ends_with(" COUNTER child_ops +1")));
}

#[test]
fn unreadable_directory_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nope");
    let (code, out) = dump_out(&missing, false, 20);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    let mut out = Vec::new();
    assert_eq!(
        stat::run_to(
            &StatArgs {
                dir: missing.clone(),
                json: true
            },
            &mut out
        ),
        1
    );
    let mut out = Vec::new();
    assert_eq!(
        tail::run_to(
            &TailArgs {
                dir: missing,
                follow: false,
                json: false,
                kinds: vec![],
                format: None,
            },
            &mut out
        ),
        1
    );
    // An empty directory is fine.
    let doc = dump_json(tmp.path(), 20);
    assert_eq!(doc["processes"], serde_json::json!([]));
    assert_eq!(doc["rejected"], serde_json::json!([]));
}
