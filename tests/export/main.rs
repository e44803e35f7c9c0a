//! Span exporters end to end: a real collector exports spans that a real writer process wrote
//! to a loopback receiver started by the test (OTLP/HTTP, decoded with the official
//! `opentelemetry-proto` messages; Zipkin v2 JSON) or to a JSON lines file, and every field is
//! checked. The outage test takes the receiver away and brings it back while a writer keeps
//! writing: memory stays bounded, the writer loses nothing, retried batches arrive once and
//! what could not be kept is counted. The TLS tests export to an `https://` receiver whose
//! certificate a test CA signed: verified against `tls.ca_file` (and the receiver requiring the
//! collector's client certificate), and refused against the built-in roots.
//!
//! The writer of the field tests is the e2e crate's example `span_writer` (`export/span_writer.rs`),
//! run as a child process: the shmtel writer is configured once per process, and each test needs
//! its own region directory.

#[path = "fixture.rs"]
mod fixture;
mod pki;
mod receiver;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value as V, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use prost::Message;
use serde_json::{json, Value};
use shmtel_e2e::*;

use fixture::{hex, LINKED_SPAN, LINKED_TRACE, REMOTE_PARENT, REMOTE_TRACE, SERVICE};
use pki::Pki;
use receiver::Receiver;

/// Slack between the writer's clock-derived span times and its own SystemTime readings.
const CLOCK_SLACK_NS: u64 = 50_000_000;

// ----------------------------------------------------------------------------------------------
// The writer child
// ----------------------------------------------------------------------------------------------

/// The example `span_writer`: `$SHMTEL_SPAN_WRITER` or `<workspace>/target/release/examples/`.
fn span_writer_bin() -> PathBuf {
    std::env::var_os("SHMTEL_SPAN_WRITER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/examples/span_writer"))
}

/// What the writer child wrote.
struct Written {
    pid: u32,
    t0: u64,
    t1: u64,
    server: (String, String),
    client: (String, String),
    root: (String, String),
}

fn run_writer(dir: &Path) -> Written {
    let mut cmd = Command::new(span_writer_bin());
    cmd.arg(dir).stdin(Stdio::null());
    remove_shmtel_env(&mut cmd);
    let out = cmd.output().expect("run the writer child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "writer child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("WRITER ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("the writer child printed no WRITER line:\n{stdout}"));
    let v: Value = serde_json::from_str(line).expect("writer JSON");
    let pair = |k: &str| {
        (
            v[k]["trace"].as_str().unwrap().to_owned(),
            v[k]["span"].as_str().unwrap().to_owned(),
        )
    };
    Written {
        pid: v["pid"].as_u64().unwrap() as u32,
        t0: v["t0"].as_u64().unwrap(),
        t1: v["t1"].as_u64().unwrap(),
        server: pair("server"),
        client: pair("client"),
        root: pair("root"),
    }
}

// ----------------------------------------------------------------------------------------------
// The collector (a `ConfiguredCollector`: a configuration file and a clean environment)
// ----------------------------------------------------------------------------------------------

fn exporter_count(m: &Metrics, exporter: &str, result: &str) -> f64 {
    m.sum_where(
        "shmtel_exporter_spans_total",
        &[("exporter", exporter), ("result", result)],
    )
}

/// Wait until `exporter` has handled (exported + failed + dropped) `n` spans; return the
/// last scrape.
fn wait_handled(c: &mut ConfiguredCollector, exporter: &str, n: f64) -> Metrics {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let m = c.scrape();
        let handled = ["exported", "failed", "dropped"]
            .iter()
            .map(|r| exporter_count(&m, exporter, r))
            .sum::<f64>();
        if handled >= n {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "exporter {exporter} handled {handled} of {n} spans; metrics:\n{}\nlog:\n{}",
            m.relevant(),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ----------------------------------------------------------------------------------------------
// OTLP
// ----------------------------------------------------------------------------------------------

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a V> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn any(v: V) -> AnyValue {
    AnyValue { value: Some(v) }
}

fn check_times(s: &OtlpSpan, w: &Written) {
    let (lo, hi) = (w.t0 - CLOCK_SLACK_NS, w.t1 + CLOCK_SLACK_NS);
    assert!(
        lo <= s.start_time_unix_nano
            && s.start_time_unix_nano <= s.end_time_unix_nano
            && s.end_time_unix_nano <= hi,
        "{}: times {}..{} not within the writer's {}..{}",
        s.name,
        s.start_time_unix_nano,
        s.end_time_unix_nano,
        w.t0,
        w.t1
    );
}

#[test]
fn otlp_exports_every_field() {
    let sb = Sandbox::new("export-otlp");
    let rx = Receiver::start(200);
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[export]\nresource_attributes = {{ \"deployment.environment\" = \"e2e\" }}\n\
             [export.otlp]\nendpoint = \"{}\"\nservice_version = \"1.2.3\"\n\
             headers = {{ \"x-from-file\" = \"yes\" }}\nbatch_timeout_ms = 100\n",
            rx.base_url()
        ),
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20t0k%3D",
        )],
    );
    let w = run_writer(&sb.regions());
    let m = wait_handled(&mut c, "otlp", 3.0);
    assert_eq!(
        exporter_count(&m, "otlp", "exported"),
        3.0,
        "{}",
        m.relevant()
    );
    assert_eq!(
        m.sum_where("shmtel_exporter_queue_spans", &[("exporter", "otlp")]),
        0.0
    );

    let reqs = rx.accepted();
    let mut spans: HashMap<String, (OtlpSpan, BTreeMap<String, V>)> = HashMap::new();
    for r in &reqs {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["content-encoding"], "gzip", "gzip is the default");
        assert_eq!(
            r.headers["authorization"], "Bearer t0k=",
            "env headers, URL-decoded"
        );
        assert_eq!(r.headers["x-from-file"], "yes");
        let req = ExportTraceServiceRequest::decode(&r.body[..]).expect("a valid OTLP request");
        for rs in req.resource_spans {
            let res = rs.resource.expect("a resource");
            let res_attrs: BTreeMap<String, V> = res
                .attributes
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.clone().and_then(|v| v.value).expect("a value"),
                    )
                })
                .collect();
            for ss in rs.scope_spans {
                assert_eq!(ss.scope.as_ref().expect("a scope").name, "shmtel");
                for s in ss.spans {
                    spans.insert(hex(&s.span_id), (s, res_attrs.clone()));
                }
            }
        }
    }
    assert_eq!(spans.len(), 3, "spans received: {:?}", spans.keys());

    // The resource: the writer's service, pid, this host, the configured version and extras.
    let expected_resource: BTreeMap<String, V> = [
        ("service.name", V::StringValue(SERVICE.into())),
        ("service.version", V::StringValue("1.2.3".into())),
        ("process.pid", V::IntValue(i64::from(w.pid))),
        (
            "host.name",
            V::StringValue(
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .unwrap()
                    .trim()
                    .into(),
            ),
        ),
        ("deployment.environment", V::StringValue("e2e".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    // The server span: remote parent, every attribute type, the event, error + message.
    let (s, res) = &spans[&w.server.1];
    assert_eq!(res, &expected_resource);
    assert_eq!(hex(&s.trace_id), w.server.0);
    assert_eq!(s.trace_id, REMOTE_TRACE);
    assert_eq!(s.parent_span_id, REMOTE_PARENT);
    assert_eq!(s.name, "GET /items/{id}");
    assert_eq!(s.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        s.flags,
        0x01 | 0x100 | 0x200,
        "sampled, parent known to be remote"
    );
    check_times(s, &w);
    assert_eq!(s.links.len(), 1, "the server span's link");
    let link = &s.links[0];
    assert_eq!(
        (link.trace_id.as_slice(), link.span_id.as_slice()),
        (LINKED_TRACE.as_slice(), LINKED_SPAN.as_slice())
    );
    assert_eq!(link.flags, 0x01 | 0x100 | 0x200, "sampled, remote");
    assert_eq!(link.attributes.len(), 1);
    assert_eq!(link.attributes[0].key, "messaging.message.id");
    assert_eq!(
        link.attributes[0]
            .value
            .as_ref()
            .and_then(|v| v.value.clone()),
        Some(V::StringValue("m-42".into()))
    );
    let st = s.status.as_ref().expect("a status");
    assert_eq!((st.code, st.message.as_str()), (2, "upstream timeout"));
    let a = &s.attributes;
    assert_eq!(
        attr(a, "http.route"),
        Some(&V::StringValue("/items/{id}".into()))
    );
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&V::IntValue(504))
    );
    assert_eq!(attr(a, "sample.ratio"), Some(&V::DoubleValue(0.25)));
    assert_eq!(attr(a, "cache.hit"), Some(&V::BoolValue(false)));
    let Some(V::ArrayValue(tags)) = attr(a, "tags") else {
        panic!("tags is not an array: {a:?}")
    };
    assert_eq!(
        tags.values,
        vec![
            any(V::StringValue("a".into())),
            any(V::StringValue("b".into())),
            any(V::IntValue(3))
        ]
    );
    let Some(V::KvlistValue(limits)) = attr(a, "limits") else {
        panic!("limits is not a kvlist: {a:?}")
    };
    assert_eq!(attr(&limits.values, "max"), Some(&V::IntValue(10)));
    assert_eq!(attr(&limits.values, "soft"), Some(&V::BoolValue(true)));
    assert!(
        attr(a, "otel.status_description").is_none(),
        "the description moved into the status"
    );
    assert_eq!(a.len(), 6, "{a:?}");
    assert_eq!(s.events.len(), 1);
    let e = &s.events[0];
    assert_eq!(e.name, "cache.miss");
    assert!(s.start_time_unix_nano <= e.time_unix_nano && e.time_unix_nano <= s.end_time_unix_nano);
    assert_eq!(
        attr(&e.attributes, "cache.key"),
        Some(&V::StringValue("item:7".into()))
    );
    assert_eq!(attr(&e.attributes, "attempt"), Some(&V::IntValue(2)));
    assert_eq!((s.dropped_attributes_count, s.dropped_events_count), (0, 0));

    // The client child: same trace, parent the server span, status ok without message.
    let (cs, res) = &spans[&w.client.1];
    assert_eq!(res, &expected_resource);
    assert_eq!(cs.trace_id, REMOTE_TRACE);
    assert_eq!(hex(&cs.parent_span_id), w.server.1);
    assert_eq!(cs.name, "SELECT items");
    assert_eq!(cs.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(cs.flags, 0x01 | 0x100, "sampled, parent known to be local");
    check_times(cs, &w);
    assert!(cs.start_time_unix_nano >= s.start_time_unix_nano);
    assert!(cs.end_time_unix_nano <= s.end_time_unix_nano);
    assert!(
        cs.end_time_unix_nano - cs.start_time_unix_nano >= 3_000_000,
        "slept 3 ms"
    );
    let st = cs.status.as_ref().expect("a status");
    assert_eq!((st.code, st.message.as_str()), (1, ""));
    assert_eq!(
        attr(&cs.attributes, "db.system"),
        Some(&V::StringValue("postgresql".into()))
    );
    assert!(cs.events.is_empty());

    // The internal root: a new trace, no parent, status unset.
    let (r, _) = &spans[&w.root.1];
    assert_eq!(hex(&r.trace_id), w.root.0);
    assert_ne!(r.trace_id, REMOTE_TRACE);
    assert!(r.parent_span_id.is_empty(), "a root has an empty parent");
    assert_eq!((r.name.as_str(), r.kind), ("housekeeping", 1));
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(0));
    check_times(r, &w);
    c.terminate();
}

/// The receiver answers 503, then is down, then comes back while a writer keeps writing; the
/// exporter is configured by the environment alone (over a file section it overrides).
#[test]
fn otlp_outage_is_bounded_retried_once_and_counted() {
    const QUEUE: f64 = 1000.0;
    let sb = Sandbox::new("export-outage");
    let mut rx = Receiver::start(503);
    let endpoint = rx.base_url();
    let mut c = ConfiguredCollector::start(
        &sb,
        "[export.otlp]\nendpoint = \"http://127.0.0.1:9\"\ncompression = \"gzip\"\n\
         batch_size = 100\nbatch_timeout_ms = 100\nqueue_size = 1000\n\
         max_retry_elapsed_ms = 120000\nretry_initial_backoff_ms = 50\nretry_max_backoff_ms = 400\n",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_SERVICE_NAME", "outage-svc"),
        ],
    );
    let rss_before = rss_kib(c.pid());
    // 2 threads x 8000 spans at 1000/s each: 8 s of writing, across the whole outage.
    let started = Instant::now();
    let lg = Loadgen::spawn(
        &sb.regions(),
        &[
            "--kinds",
            "span",
            "--threads",
            "2",
            "--ops",
            "8000",
            "--rate",
            "1000",
        ],
        &[],
    );
    let mut max_queue = 0.0f64;
    let mut max_rss = rss_before;
    let mut watch = |c: &mut ConfiguredCollector, until: Duration| {
        while started.elapsed() < until {
            let m = c.scrape();
            max_queue =
                max_queue.max(m.sum_where("shmtel_exporter_queue_spans", &[("exporter", "otlp")]));
            max_rss = max_rss.max(rss_kib(c.pid()));
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    watch(&mut c, Duration::from_secs(2)); // 503s
    rx.down();
    watch(&mut c, Duration::from_secs(5)); // connection refused
    rx.set_status(200);
    rx.up();
    let report = lg.report(LOADGEN_TIMEOUT);
    let writer_time = started.elapsed();
    println!("loadgen: {} in {writer_time:?}", report.raw);
    assert_eq!(
        report.dropped_spans, 0,
        "the writer's ring dropped spans: {}",
        report.raw
    );
    assert!(
        writer_time < Duration::from_secs(30),
        "the writer took {writer_time:?} for 8 s of work"
    );
    let total = report.spans as f64;
    let m = wait_handled(&mut c, "otlp", total);
    let (exported, failed, dropped) = (
        exporter_count(&m, "otlp", "exported"),
        exporter_count(&m, "otlp", "failed"),
        exporter_count(&m, "otlp", "dropped"),
    );
    println!(
        "exported {exported} failed {failed} dropped {dropped} retries {} max queue {max_queue} \
         rss {rss_before} -> max {max_rss} KiB; receiver attempts {}",
        m.sum("shmtel_exporter_retries_total"),
        rx.attempts()
    );
    assert_eq!(
        m.sum("shmtel_spans_received_total"),
        total,
        "{}",
        m.relevant()
    );
    assert_eq!(exported + failed + dropped, total);
    assert!(
        dropped > 0.0,
        "the outage outlasted the queue: some spans must be dropped"
    );
    assert_eq!(failed, 0.0, "the retry budget outlasts the outage");
    assert!(m.sum("shmtel_exporter_retries_total") > 0.0);
    assert!(
        max_queue <= QUEUE,
        "queue gauge {max_queue} above queue_size {QUEUE}"
    );
    assert!(
        max_rss < rss_before + 64 * 1024,
        "collector RSS grew from {rss_before} KiB to {max_rss} KiB during the outage"
    );

    // Every accepted span arrived exactly once, and the accepted ones are the exported ones.
    let mut seen = HashSet::new();
    let mut copies = 0u64;
    for r in rx.accepted() {
        assert!(
            !r.headers.contains_key("content-encoding"),
            "compression=none from env"
        );
        let req = ExportTraceServiceRequest::decode(&r.body[..]).expect("OTLP request");
        for rs in req.resource_spans {
            let res = rs.resource.expect("resource");
            assert_eq!(
                attr(&res.attributes, "service.name"),
                Some(&V::StringValue("outage-svc".into())),
                "OTEL_SERVICE_NAME"
            );
            for ss in rs.scope_spans {
                for s in ss.spans {
                    copies += 1;
                    seen.insert((s.trace_id, s.span_id));
                }
            }
        }
    }
    assert_eq!(
        copies,
        seen.len() as u64,
        "some spans arrived more than once"
    );
    assert_eq!(
        seen.len() as f64,
        exported,
        "received vs counted as exported"
    );
    c.terminate();
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ----------------------------------------------------------------------------------------------
// Zipkin and JSON lines
// ----------------------------------------------------------------------------------------------

// ----------------------------------------------------------------------------------------------
// TLS
// ----------------------------------------------------------------------------------------------

/// The spans in the OTLP requests `rx` accepted.
fn spans_received(rx: &Receiver) -> usize {
    rx.accepted()
        .iter()
        .map(|r| {
            let req = ExportTraceServiceRequest::decode(&r.body[..]).expect("a valid OTLP request");
            req.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn otlp_over_mutual_tls_with_a_private_ca() {
    let sb = Sandbox::new("export-tls");
    let pki = Pki::new(sb.root());
    // The receiver requires a client certificate signed by the same CA.
    let rx = Receiver::start_tls(200, pki.server_config(true));
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[export.otlp]\nendpoint = \"{}\"\nbatch_timeout_ms = 100\n\
             [export.otlp.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            rx.base_url(),
            pki.client_cert_file.display(),
            pki.client_key_file.display(),
        ),
        // The CA from the OpenTelemetry variable, the client's files from the configuration.
        &[(
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            &pki.ca_file.display().to_string(),
        )],
    );
    run_writer(&sb.regions());
    let m = wait_handled(&mut c, "otlp", 3.0);
    assert_eq!(
        exporter_count(&m, "otlp", "exported"),
        3.0,
        "{}\nlog:\n{}",
        m.relevant(),
        c.log()
    );
    assert_eq!(spans_received(&rx), 3, "the receiver decoded every span");
    assert_eq!(rx.failed_handshakes(), 0);
}

#[test]
fn otlp_over_tls_refuses_a_server_the_roots_do_not_trust() {
    let sb = Sandbox::new("export-tls-untrusted");
    let pki = Pki::new(sb.root());
    let rx = Receiver::start_tls(200, pki.server_config(false));
    // No ca_file: the built-in roots, which do not know the test CA.
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[export.otlp]\nendpoint = \"{}\"\nbatch_timeout_ms = 100\n",
            rx.base_url()
        ),
        &[],
    );
    run_writer(&sb.regions());
    let m = wait_handled(&mut c, "otlp", 3.0);
    assert_eq!(
        exporter_count(&m, "otlp", "failed"),
        3.0,
        "{}\nlog:\n{}",
        m.relevant(),
        c.log()
    );
    assert_eq!(exporter_count(&m, "otlp", "exported"), 0.0);
    assert_eq!(
        m.sum_where("shmtel_exporter_retries_total", &[("exporter", "otlp")]),
        0.0,
        "a certificate the roots do not trust is not retried"
    );
    assert!(rx.accepted().is_empty(), "nothing was sent unverified");
    assert!(rx.failed_handshakes() >= 1);
    assert!(
        c.log().contains("certificate") || c.log().contains("UnknownIssuer"),
        "the collector says why:\n{}",
        c.log()
    );
    // The collector is still serving.
    c.scrape();
}

#[test]
fn zipkin_receives_v2_json() {
    let sb = Sandbox::new("export-zipkin");
    let rx = Receiver::start(202);
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[export.zipkin]\nendpoint = \"{}\"\nbatch_timeout_ms = 100\n",
            rx.base_url()
        ),
        &[],
    );
    let w = run_writer(&sb.regions());
    let m = wait_handled(&mut c, "zipkin", 3.0);
    assert_eq!(exporter_count(&m, "zipkin", "exported"), 3.0);
    let mut spans: HashMap<String, Value> = HashMap::new();
    for r in rx.accepted() {
        assert_eq!(r.path, "/api/v2/spans");
        assert_eq!(r.headers["content-type"], "application/json");
        let v: Value = serde_json::from_slice(&r.body).expect("JSON");
        for s in v.as_array().expect("an array of spans") {
            spans.insert(s["id"].as_str().unwrap().to_owned(), s.clone());
        }
    }
    assert_eq!(spans.len(), 3);
    let us = |ns: u64| ns / 1000;
    let s = &spans[&w.server.1];
    assert_eq!(s["traceId"], hex(&REMOTE_TRACE));
    assert_eq!(s["parentId"], hex(&REMOTE_PARENT));
    assert_eq!(s["name"], "GET /items/{id}");
    assert_eq!(s["kind"], "SERVER");
    assert_eq!(s["localEndpoint"]["serviceName"], SERVICE);
    let ts = s["timestamp"].as_u64().unwrap();
    let dur = s["duration"].as_u64().unwrap();
    assert!(us(w.t0 - CLOCK_SLACK_NS) <= ts && ts + dur <= us(w.t1 + CLOCK_SLACK_NS));
    assert!(dur >= 5000, "server span lasted at least 5 ms: {dur} µs");
    assert_eq!(
        s["tags"],
        json!({
            "http.route": "/items/{id}",
            "http.response.status_code": "504",
            "sample.ratio": "0.25",
            "cache.hit": "false",
            "tags": "[\"a\",\"b\",3]",
            "limits": "{\"max\":10,\"soft\":true}",
            "otel.scope.name": "shmtel",
            "otel.status_code": "ERROR",
            "error": "upstream timeout",
        })
    );
    let ann = s["annotations"].as_array().expect("annotations");
    assert_eq!(ann.len(), 1);
    let at = ann[0]["timestamp"].as_u64().unwrap();
    assert!(ts <= at && at <= ts + dur);
    let value = ann[0]["value"].as_str().unwrap();
    assert!(value.starts_with("\"cache.miss\": "), "{value}");
    let attrs: Value = serde_json::from_str(&value["\"cache.miss\": ".len()..]).unwrap();
    assert_eq!(attrs, json!({"cache.key": "item:7", "attempt": 2}));

    let cl = &spans[&w.client.1];
    assert_eq!(cl["parentId"], w.server.1);
    assert_eq!(cl["kind"], "CLIENT");
    assert_eq!(cl["tags"]["otel.status_code"], "OK");
    assert!(cl["tags"].get("error").is_none());
    assert!(cl.get("annotations").is_none());

    let r = &spans[&w.root.1];
    assert_eq!(r["traceId"], w.root.0);
    assert!(r.get("parentId").is_none(), "roots have no parentId");
    assert!(r.get("kind").is_none(), "internal spans have no kind");
    assert!(r["tags"].get("otel.status_code").is_none());
    c.terminate();
}

#[test]
fn jsonl_file_holds_one_object_per_span() {
    let sb = Sandbox::new("export-jsonl");
    // A relative path would be relative to the collector's working directory (see the
    // lead's note on anchoring); the test uses an absolute one.
    let path = sb.path("spans.jsonl");
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[export]\nservice_version = \"7\"\n[export.jsonl]\npath = {:?}\n",
            path
        ),
        &[],
    );
    let w = run_writer(&sb.regions());
    let m = wait_handled(&mut c, "jsonl", 3.0);
    assert_eq!(exporter_count(&m, "jsonl", "exported"), 3.0);
    let text = std::fs::read_to_string(&path).expect("the JSON lines file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let by_id: HashMap<&str, &Value> = lines
        .iter()
        .map(|v| (v["spanId"].as_str().unwrap(), v))
        .collect();
    let s = by_id[w.server.1.as_str()];
    assert_eq!(s["traceId"], hex(&REMOTE_TRACE));
    assert_eq!(s["parentSpanId"], hex(&REMOTE_PARENT));
    assert_eq!(
        s["links"],
        json!([{"traceId": hex(&LINKED_TRACE), "spanId": hex(&LINKED_SPAN), "sampled": true,
                "remote": true, "attributes": {"messaging.message.id": "m-42"}}])
    );
    assert_eq!(s["name"], "GET /items/{id}");
    assert_eq!(s["kind"], 2);
    assert_eq!(s["flags"], 0x301);
    assert_eq!(
        s["status"],
        json!({"code": 2, "message": "upstream timeout"})
    );
    assert_eq!(
        s["attributes"],
        json!({
            "http.route": "/items/{id}",
            "http.response.status_code": 504,
            "sample.ratio": 0.25,
            "cache.hit": false,
            "tags": ["a", "b", 3],
            "limits": {"max": 10, "soft": true},
        })
    );
    assert_eq!(s["events"][0]["name"], "cache.miss");
    assert_eq!(
        s["events"][0]["attributes"],
        json!({"cache.key": "item:7", "attempt": 2})
    );
    let start = s["startTimeUnixNano"].as_u64().unwrap();
    let end = s["endTimeUnixNano"].as_u64().unwrap();
    assert!(w.t0 - CLOCK_SLACK_NS <= start && start <= end && end <= w.t1 + CLOCK_SLACK_NS);
    assert_eq!(s["resource"]["service.name"], SERVICE);
    assert_eq!(s["resource"]["service.version"], "7");
    assert_eq!(s["resource"]["process.pid"], w.pid);
    assert_eq!(s["scope"]["name"], "shmtel");

    let cl = by_id[w.client.1.as_str()];
    assert_eq!(cl["parentSpanId"], w.server.1);
    assert_eq!(cl["kind"], 3);
    assert_eq!(cl["status"], json!({"code": 1, "message": ""}));

    let r = by_id[w.root.1.as_str()];
    assert_eq!(r["traceId"], w.root.0);
    assert_eq!(r["parentSpanId"], "");
    assert_eq!(r["kind"], 1);
    c.terminate();
}
