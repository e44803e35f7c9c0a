//! End-to-end tests of the log pipeline: a real `shmtel collect` drains log events that the
//! example `log_writer` (`logs/log_writer.rs`, a child process) wrote, and its stdout (the
//! default log sink) is checked line by line.
//!
//! - schema: every level, every field type, caller, correlation id, span ids, unicode, a
//!   truncated message, newlines/quotes/control characters, in the `shmtel`, `ecs` and `otel`
//!   schemas: every line parses as JSON and every field equals what was written;
//! - ordering: several writer threads; lines come out sorted by time and each exactly once;
//! - redaction: the PII the writer put in log messages, fields and span attributes reaches
//!   neither stdout nor the span JSON lines file;
//! - `shmtel tail --format logfmt|plain` shows log events as the collector renders them;
//! - `min_level` and the pipeline's self-metrics on /metrics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shmtel_e2e::*;

// ----------------------------------------------------------------------------------------------
// The writer child
// ----------------------------------------------------------------------------------------------

/// The example `log_writer`: `$SHMTEL_LOG_WRITER` or beside the shmtel binary in
/// `examples/`.
fn log_writer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHMTEL_LOG_WRITER").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let beside = shmtel_bin()
        .parent()
        .expect("the shmtel binary's directory")
        .join("examples/log_writer");
    if beside.is_file() {
        return beside;
    }
    workspace_root().join("target/release/examples/log_writer")
}

/// Run `log_writer DIR args...` to completion; returns its `WRITER` JSON.
fn run_writer(dir: &Path, args: &[&str]) -> Value {
    let mut cmd = Command::new(log_writer_bin());
    cmd.arg(dir).args(args).stdin(Stdio::null());
    remove_shmtel_env(&mut cmd);
    let out = cmd.output().expect("run log_writer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "log_writer {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRITER "))
        .unwrap_or_else(|| panic!("log_writer printed no WRITER line:\n{stdout}"));
    serde_json::from_str(line).expect("WRITER JSON")
}

// ----------------------------------------------------------------------------------------------
// Lines on the collector's stdout (a `ConfiguredCollector::start_split`: stdout and stderr to
// separate files)
// ----------------------------------------------------------------------------------------------

fn parse_line(line: &str) -> Value {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("a stdout line is not JSON ({e}):\n{line}"));
    assert!(v.is_object(), "not a JSON object: {line}");
    v
}

/// Every line parses as JSON; returns them.
fn json_lines(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| parse_line(l)).collect()
}

fn is_rfc3339_nanos(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[29] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 29) || c.is_ascii_digit())
}

// ----------------------------------------------------------------------------------------------
// Schema
// ----------------------------------------------------------------------------------------------

/// The key a field is written under in `schema` (colliding names get a `fields.` prefix).
fn field_key(schema: &str, name: &str) -> String {
    let reserved: &[&str] = match schema {
        "shmtel" => &[
            "@timestamp",
            "level",
            "message",
            "service",
            "pid",
            "thread",
            "trace_id",
            "span_id",
            "correlation_id",
            "caller",
            "truncated",
        ],
        "ecs" => &["@timestamp", "message", "tags"],
        _ => &["thread.id", "correlation_id"],
    };
    if reserved.contains(&name) {
        format!("fields.{name}")
    } else {
        name.to_owned()
    }
}

/// Check one rendered line against what the writer says it wrote.
fn check_event(schema: &str, line: &Value, ev: &Value, pid: u64) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let level = s(&ev["level"]);
    let (file, lineno, function) = match s(&ev["caller"]).as_str() {
        "" => (None, None, None),
        c => {
            let (loc, function) = c.split_once(' ').unwrap();
            let (file, l) = loc.rsplit_once(':').unwrap();
            (
                Some(file.to_owned()),
                Some(l.parse::<u64>().unwrap()),
                Some(function.to_owned()),
            )
        }
    };
    let opt = |v: &Value| {
        let t = s(v);
        (!t.is_empty()).then_some(t)
    };
    let (trace, span, corr) = (
        opt(&ev["trace_id"]),
        opt(&ev["span_id"]),
        opt(&ev["correlation_id"]),
    );
    let truncated = ev["truncated"].as_bool().unwrap();
    let fields = ev["fields"].as_object().unwrap();
    let ctx = format!("schema {schema}, event {ev}\nline {line}");
    match schema {
        "shmtel" => {
            assert!(
                is_rfc3339_nanos(line["@timestamp"].as_str().unwrap()),
                "{ctx}"
            );
            assert_eq!(line["level"], level.as_str(), "{ctx}");
            assert_eq!(line["message"], ev["message"], "{ctx}");
            assert_eq!(line["service"], "logwriter", "{ctx}");
            assert_eq!(line["pid"], pid, "{ctx}");
            assert!(line["thread"].as_u64().unwrap() > 0, "{ctx}");
            assert_eq!(
                line.get("trace_id").cloned(),
                trace.map(Value::from),
                "{ctx}"
            );
            assert_eq!(line.get("span_id").cloned(), span.map(Value::from), "{ctx}");
            assert_eq!(
                line.get("correlation_id").cloned(),
                corr.map(Value::from),
                "{ctx}"
            );
            match file {
                Some(f) => assert_eq!(
                    line["caller"],
                    serde_json::json!({"file": f, "line": lineno, "function": function}),
                    "{ctx}"
                ),
                None => assert!(line.get("caller").is_none(), "{ctx}"),
            }
            assert_eq!(
                line.get("truncated").cloned(),
                truncated.then_some(Value::Bool(true)),
                "{ctx}"
            );
            let fixed = 6 + [
                line.get("trace_id"),
                line.get("span_id"),
                line.get("correlation_id"),
                line.get("caller"),
                line.get("truncated"),
            ]
            .iter()
            .filter(|v| v.is_some())
            .count();
            assert_eq!(
                line.as_object().unwrap().len(),
                fixed + fields.len(),
                "{ctx}"
            );
            for (k, v) in fields {
                assert_eq!(&line[field_key(schema, k)], v, "field {k}: {ctx}");
            }
        }
        "ecs" => {
            assert!(
                is_rfc3339_nanos(line["@timestamp"].as_str().unwrap()),
                "{ctx}"
            );
            assert_eq!(line["log.level"], level.to_lowercase(), "{ctx}");
            assert_eq!(line["message"], ev["message"], "{ctx}");
            assert!(line["ecs.version"].is_string(), "{ctx}");
            assert_eq!(line["service.name"], "logwriter", "{ctx}");
            assert_eq!(line["process.pid"], pid, "{ctx}");
            assert!(line["process.thread.id"].as_u64().unwrap() > 0, "{ctx}");
            assert_eq!(
                line.get("trace.id").cloned(),
                trace.map(Value::from),
                "{ctx}"
            );
            assert_eq!(line.get("span.id").cloned(), span.map(Value::from), "{ctx}");
            assert_eq!(
                line.get("labels.correlation_id").cloned(),
                corr.map(Value::from),
                "{ctx}"
            );
            assert_eq!(
                line.get("log.origin.file.name").cloned(),
                file.map(Value::from),
                "{ctx}"
            );
            assert_eq!(
                line.get("log.origin.file.line").cloned(),
                lineno.map(Value::from),
                "{ctx}"
            );
            assert_eq!(
                line.get("log.origin.function").cloned(),
                function.map(Value::from),
                "{ctx}"
            );
            assert_eq!(
                line.get("tags").cloned(),
                truncated.then(|| serde_json::json!(["truncated"])),
                "{ctx}"
            );
            for (k, v) in fields {
                assert_eq!(&line[field_key(schema, k)], v, "field {k}: {ctx}");
            }
        }
        _ => {
            let ts: u64 = line["Timestamp"].as_str().unwrap().parse().unwrap();
            let observed: u64 = line["ObservedTimestamp"].as_str().unwrap().parse().unwrap();
            assert!(
                ts > 1_600_000_000_000_000_000 && observed >= ts - 5_000_000_000,
                "{ctx}"
            );
            assert_eq!(line["SeverityText"], level.as_str(), "{ctx}");
            let number = match level.as_str() {
                "TRACE" => 1,
                "DEBUG" => 5,
                "INFO" => 9,
                "WARN" => 13,
                "ERROR" => 17,
                _ => 21,
            };
            assert_eq!(line["SeverityNumber"], number, "{ctx}");
            assert_eq!(line["Body"], ev["message"], "{ctx}");
            assert_eq!(
                line.get("TraceId").cloned(),
                trace.clone().map(Value::from),
                "{ctx}"
            );
            assert_eq!(line.get("SpanId").cloned(), span.map(Value::from), "{ctx}");
            assert_eq!(
                line.get("TraceFlags").cloned(),
                trace.map(|_| Value::from(1)),
                "{ctx}"
            );
            assert_eq!(line["Resource"]["service.name"], "logwriter", "{ctx}");
            assert_eq!(line["Resource"]["process.pid"], pid, "{ctx}");
            assert_eq!(line["InstrumentationScope"]["name"], "shmtel", "{ctx}");
            let a = &line["Attributes"];
            assert!(a["thread.id"].as_u64().unwrap() > 0, "{ctx}");
            assert_eq!(
                a.get("code.file.path").cloned(),
                file.map(Value::from),
                "{ctx}"
            );
            assert_eq!(
                a.get("code.line.number").cloned(),
                lineno.map(Value::from),
                "{ctx}"
            );
            assert_eq!(
                a.get("code.function.name").cloned(),
                function.map(Value::from),
                "{ctx}"
            );
            assert_eq!(
                a.get("correlation_id").cloned(),
                corr.map(Value::from),
                "{ctx}"
            );
            assert_eq!(
                a.get("shmtel.truncated").cloned(),
                truncated.then_some(Value::Bool(true)),
                "{ctx}"
            );
            for (k, v) in fields {
                assert_eq!(&a[field_key(schema, k)], v, "field {k}: {ctx}");
            }
        }
    }
}

fn schema_round_trip(schema: &str) {
    let sb = Sandbox::new(&format!("logs-schema-{schema}"));
    let mut c =
        ConfiguredCollector::start_split(&sb, &format!("[logs]\nschema = \"{schema}\"\n"), &[]);
    let written = run_writer(&sb.regions(), &["schema"]);
    let events = written["events"].as_array().unwrap();
    let pid = written["pid"].as_u64().unwrap();
    let lines = json_lines(&c.wait_lines(events.len()));
    assert_eq!(lines.len(), events.len(), "one line per event");
    let message_key = if schema == "otel" { "Body" } else { "message" };
    for ev in events {
        let line = lines
            .iter()
            .find(|l| l[message_key] == ev["message"])
            .unwrap_or_else(|| panic!("no line for {ev}; lines:\n{lines:#?}"));
        check_event(schema, line, ev, pid);
    }
    // Written by one thread: out in the order written.
    let order: Vec<&Value> = lines.iter().map(|l| &l[message_key]).collect();
    let want: Vec<&Value> = events.iter().map(|e| &e["message"]).collect();
    assert_eq!(order, want);
    c.terminate();
}

#[test]
fn schema_shmtel() {
    schema_round_trip("shmtel");
}

#[test]
fn schema_ecs() {
    schema_round_trip("ecs");
}

#[test]
fn schema_otel() {
    schema_round_trip("otel");
}

// ----------------------------------------------------------------------------------------------
// Ordering
// ----------------------------------------------------------------------------------------------

#[test]
fn lines_of_all_threads_come_out_in_time_order() {
    const N: usize = 40_000;
    let sb = Sandbox::new("logs-order");
    let mut c = ConfiguredCollector::start_split(&sb, "[logs]\nreorder_window_ms = 500\n", &[]);
    let written = run_writer(&sb.regions(), &["load", &N.to_string(), "4"]);
    assert_eq!(written["dropped"], 0, "{written}");
    let lines = c.wait_lines(N);
    let m = c.scrape();
    let late = m
        .get("shmtel_logs_late_total")
        .expect("shmtel_logs_late_total");
    let mut seen = vec![false; N];
    let mut threads = std::collections::HashSet::new();
    let mut newest = String::new();
    let mut inversions = 0u64;
    for l in &lines {
        let v = parse_line(l);
        let seq = v["seq"].as_u64().unwrap() as usize;
        assert_eq!(v["message"], format!("load line {seq}"));
        assert!(!seen[seq], "seq {seq} twice");
        seen[seq] = true;
        threads.insert(v["thread"].as_u64().unwrap());
        let ts = v["@timestamp"].as_str().unwrap().to_owned();
        // RFC 3339 with fixed-width nanoseconds sorts as text.
        if ts < newest {
            inversions += 1;
        } else {
            newest = ts;
        }
    }
    assert_eq!(lines.len(), N, "no line twice");
    assert!(seen.iter().all(|s| *s), "every seq once");
    // Which writer threads got work depends on scheduling; the interleaving of those that did
    // is what the window orders.
    eprintln!("{} writer threads wrote", threads.len());
    assert!(
        inversions as f64 <= late,
        "{inversions} lines out of time order but only {late} counted late"
    );
    assert!(
        late < (N / 100) as f64,
        "{late} of {N} lines late: the window should hold nearly all"
    );
    c.terminate();
}

// ----------------------------------------------------------------------------------------------
// Redaction
// ----------------------------------------------------------------------------------------------

#[test]
fn pii_reaches_no_sink() {
    let sb = Sandbox::new("logs-pii");
    let spans = sb.path("spans.jsonl");
    let mut c = ConfiguredCollector::start_split(
        &sb,
        &format!("[redaction]\n[export.jsonl]\npath = {spans:?}\nbatch_timeout_ms = 50\n"),
        &[],
    );
    let written = run_writer(&sb.regions(), &["pii"]);
    let n = written["written"].as_u64().unwrap() as usize;
    let lines = c.wait_lines(n);
    poll(
        "the span in the JSON lines file",
        SETTLE_TIMEOUT,
        Duration::from_millis(100),
        || {
            let t = std::fs::read_to_string(&spans).unwrap_or_default();
            if t.contains("checkout") {
                Ok(())
            } else {
                Err(t)
            }
        },
    );
    let m = c.scrape();
    c.terminate();
    let out = std::fs::read_to_string(sb.path("collector.out")).unwrap();
    let span_text = std::fs::read_to_string(&spans).unwrap();
    let err = std::fs::read_to_string(sb.path("collector.err")).unwrap();
    for text in [&out, &span_text, &err] {
        for pii in [
            "alice@example.com",
            "bob@example.org",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "sk_live_abcdefghijklmnop1234",
            "hunter2",
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJzdWIiOiIxIn0",
            "abc.def.ghi",
        ] {
            assert!(!text.contains(pii), "{pii:?} leaked:\n{text}");
        }
    }
    let logs = json_lines(&lines);
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "user [REDACTED] signed in",
            "charged card [REDACTED]",
            "token [REDACTED] used",
            "Authorization: Bearer [REDACTED]",
        ]
    );
    for (l, key) in logs
        .iter()
        .zip(["email", "card", "password", "authorization"])
    {
        assert_eq!(l[key], "[REDACTED]", "{l}");
        assert_eq!(l["level"], "WARN");
    }
    let span: Value = serde_json::from_str(span_text.lines().next().unwrap()).unwrap();
    assert_eq!(span["name"], "checkout");
    let attrs = &span["attributes"];
    for key in ["email", "card", "password", "authorization"] {
        assert_eq!(attrs[key], "[REDACTED]", "{span}");
    }
    assert_eq!(attrs["note"], "Authorization: Bearer [REDACTED]", "{span}");
    let rule = |r: &str| m.sum_where("shmtel_redactions_total", &[("rule", r)]);
    assert!(
        rule("email") >= 2.0 && rule("credit_card") >= 2.0,
        "{}",
        m.relevant()
    );
    assert!(rule("field") >= 4.0 && rule("api_key") >= 1.0 && rule("bearer") >= 1.0);
}

// ----------------------------------------------------------------------------------------------
// shmtel tail
// ----------------------------------------------------------------------------------------------

fn tail(dir: &Path, format: &str) -> Vec<String> {
    let mut cmd = Command::new(shmtel_bin());
    cmd.args(["tail", "--kinds", "log", "--format", format, "--dir"])
        .arg(dir)
        .stdin(Stdio::null());
    remove_shmtel_env(&mut cmd);
    let out = cmd.output().expect("run shmtel tail");
    assert!(
        out.status.success(),
        "shmtel tail --format {format}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn tail_shows_logfmt_and_plain_lines() {
    let sb = Sandbox::new("logs-tail");
    // No collector: the rings keep what was written, and tail reads without consuming.
    let written = run_writer(&sb.regions(), &["load", "3"]);
    assert_eq!(written["written"], 3);
    let logfmt = tail(&sb.regions(), "logfmt");
    assert_eq!(logfmt.len(), 3, "{logfmt:#?}");
    for (i, l) in logfmt.iter().enumerate() {
        assert!(l.starts_with("time=") && l.contains('Z'), "{l}");
        assert!(
            l.contains(&format!(
                " level=info msg=\"load line {i}\" service=logwriter pid="
            )),
            "{l}"
        );
        assert!(l.ends_with(&format!(" seq={i} fields.thread=0")), "{l}");
    }
    let plain = tail(&sb.regions(), "plain");
    assert_eq!(plain.len(), 3, "{plain:#?}");
    for (i, l) in plain.iter().enumerate() {
        let (time, rest) = l.split_once(' ').unwrap();
        assert!(is_rfc3339_nanos(time), "{l}");
        assert!(rest.starts_with("INFO  logwriter["), "{l}");
        assert!(
            rest.ends_with(&format!("] load line {i} seq={i} fields.thread=0")),
            "{l}"
        );
    }
    // The text and JSON formats are unchanged.
    let json = tail(&sb.regions(), "json");
    assert!(
        json.iter().all(|l| parse_line(l)["kind"].is_string()),
        "{json:#?}"
    );
    let text = tail(&sb.regions(), "text");
    assert!(
        text[0].contains(" LOG INFO \"load line 0\" seq=0 thread=0"),
        "{text:#?}"
    );
}

// ----------------------------------------------------------------------------------------------
// min_level and the self-metrics
// ----------------------------------------------------------------------------------------------

#[test]
fn min_level_filters_and_the_pipeline_reports_itself() {
    let sb = Sandbox::new("logs-level");
    let mut c = ConfiguredCollector::start_split(&sb, "[logs]\nmin_level = \"warn\"\n", &[]);
    let written = run_writer(&sb.regions(), &["schema"]);
    let events = written["events"].as_array().unwrap();
    let kept: Vec<&Value> = events
        .iter()
        .filter(|e| matches!(e["level"].as_str(), Some("WARN" | "ERROR" | "FATAL")))
        .collect();
    let filtered = events.len() - kept.len();
    assert!(filtered > 0 && !kept.is_empty());
    let lines = json_lines(&c.wait_lines(kept.len()));
    let m = poll(
        "the filtered count on /metrics",
        SETTLE_TIMEOUT,
        Duration::from_millis(100),
        || {
            let m = c.scrape();
            match m.get("shmtel_logs_filtered_total") {
                Some(f) if f == filtered as f64 => Ok(m),
                other => Err(format!("{other:?}\n{}", m.relevant())),
            }
        },
    );
    // Nothing below WARN made it out, and nothing else is still coming.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(c.lines().len(), kept.len(), "{:#?}", c.lines());
    for (l, e) in lines.iter().zip(&kept) {
        assert_eq!(l["message"], e["message"]);
    }
    let m2 = c.scrape();
    assert_eq!(
        m2.sum_where(
            "shmtel_log_sink_records_total",
            &[("sink", "stdout"), ("result", "exported")]
        ),
        kept.len() as f64,
        "{}",
        m2.relevant()
    );
    assert_eq!(m.get("shmtel_logs_late_total"), Some(0.0));
    assert_eq!(m2.get("shmtel_logs_reorder_pending"), Some(0.0));
    assert_eq!(
        m2.sum_where("shmtel_log_sink_records_total", &[("result", "dropped")]),
        0.0
    );
    assert_eq!(
        m2.get("shmtel_logs_received_total"),
        Some(events.len() as f64)
    );
    c.terminate();
}
