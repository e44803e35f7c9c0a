//! End-to-end tests of the log sinks: a real `shmtel collect` ships the log events that the
//! example `log_writer` (`logs/log_writer.rs`, a child process) wrote.
//!
//! - files: rotation by size under load (4 threads × 50k lines, 256 KiB files: every line is
//!   valid JSON, every `seq` exactly once across the live and the rotated files, no file past
//!   the limit); keep-N with gzip (only N rotated `.gz` files remain, with the configured mode);
//!   rotation by time (1 s) with gzip, nothing lost or duplicated;
//! - syslog: a real rsyslogd, started by the test on loopback (imudp, imtcp, imuxsock on a socket
//!   in the sandbox), receives every event over UDP, TCP (octet-counting and newline framing)
//!   and the unix socket in JSON mode and over TCP in structured mode: each message intact, its JSON parsing to what was written,
//!   its severity, APP-NAME and PROCID right, the SD parameters present;
//! - OTLP: a loopback receiver decodes `ExportLogsServiceRequest`s with the official protobuf
//!   definitions and every field of every record is checked; the sink enabled by
//!   `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` alone;
//! - TLS: the same sink to an `https://` receiver that requires a client certificate, set up by
//!   the OpenTelemetry variables alone;
//! - outage: the receiver answers 503, then is down, then comes back while writers write:
//!   the queue stays within `queue_size`, batches are retried, arrived + dropped + failed =
//!   written, nothing arrives twice, and no writer drops an event.

#[path = "../export/pki.rs"]
mod pki;
#[path = "../export/receiver.rs"]
mod receiver;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value as V, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::Value;
use shmtel_e2e::*;

use pki::Pki;
use receiver::Receiver;

/// The tests of this suite run one at a time: each starts writers that write as fast as they
/// can, and on a small machine two of them at once starve the collectors draining them (the
/// writers' rings would overflow, which is not what these tests are about).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ----------------------------------------------------------------------------------------------
// The writer child
// ----------------------------------------------------------------------------------------------

/// The example `log_writer`: `$SHMTEL_LOG_WRITER` or beside the shmtel binary in `examples/`.
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

/// Run `log_writer DIR args...` to completion; returns its `WRITER` JSON and its pid.
fn run_writer(dir: &Path, args: &[&str]) -> (Value, u32) {
    let mut cmd = Command::new(log_writer_bin());
    cmd.arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    remove_shmtel_env(&mut cmd);
    let child = cmd.spawn().expect("run log_writer");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for log_writer");
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
    (serde_json::from_str(line).expect("WRITER JSON"), pid)
}

/// `load N THREADS`, checking the writer dropped nothing.
fn run_load(dir: &Path, n: u64, threads: u64) -> u32 {
    let (w, pid) = run_writer(dir, &["load", &n.to_string(), &threads.to_string()]);
    assert_eq!(w["written"], n, "{w}");
    assert_eq!(w["dropped"], 0, "the writer's rings dropped events: {w}");
    pid
}

// ----------------------------------------------------------------------------------------------
// The collector (a `ConfiguredCollector`: a configuration file and a clean environment)
// ----------------------------------------------------------------------------------------------

/// `shmtel_log_sink_records_total{result}` summed over the sinks whose name starts with
/// `sink` (`syslog` covers `syslog.1`, ...).
fn sink_count(m: &Metrics, sink: &str, result: &str) -> f64 {
    m.series("shmtel_log_sink_records_total")
        .filter(|s| {
            s.labels.get("sink").is_some_and(|n| n.starts_with(sink))
                && s.labels.get("result").map(String::as_str) == Some(result)
        })
        .map(|s| s.value)
        .sum()
}

/// Wait until the sinks named `sink*` handled (exported + failed + dropped) `n` records.
fn wait_handled(c: &mut ConfiguredCollector, sink: &str, n: f64) -> Metrics {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let m = c.scrape();
        let handled: f64 = ["exported", "failed", "dropped"]
            .iter()
            .map(|r| sink_count(&m, sink, r))
            .sum();
        if handled >= n {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "sink {sink} handled {handled} of {n} records; metrics:\n{}\nlog:\n{}",
            m.relevant(),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ----------------------------------------------------------------------------------------------
// Files
// ----------------------------------------------------------------------------------------------

fn read_maybe_gz(p: &Path) -> String {
    let mut s = String::new();
    let f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    if p.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut s)
            .unwrap_or_else(|e| panic!("gunzip {}: {e}", p.display()));
    } else {
        (&f).read_to_string(&mut s).expect("read");
    }
    s
}

/// The live file and its rotated siblings (`app.log.N[.gz]`), sorted by name.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the log directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("app.log"))
        })
        .collect();
    v.sort();
    v
}

/// Every `seq` of every line of `files` (each line must be JSON of the `load` mode), counted.
fn seqs(files: &[PathBuf]) -> HashMap<u64, u32> {
    let mut seen = HashMap::new();
    for f in files {
        for (i, line) in read_maybe_gz(f).lines().enumerate() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: not JSON ({e}): {line:?}", f.display(), i + 1));
            let seq = v["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("{}:{}: no seq: {line}", f.display(), i + 1));
            assert_eq!(v["message"], format!("load line {seq}"), "{line}");
            *seen.entry(seq).or_insert(0) += 1;
        }
    }
    seen
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn file_rotation_by_size_under_load_loses_and_repeats_nothing() {
    let _serial = serial();
    const N: u64 = 200_000;
    const MAX: u64 = 256 * 1024;
    let sb = Sandbox::new("logsink-size");
    let logs = sb.path("logs");
    // The queue holds the whole run: this test is about rotation, and on a loaded machine the
    // sink's thread can fall behind the drain loop by more than the default 65,536 lines, which
    // would be dropped (and counted) by design.
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[[logs.file]]\npath = {:?}\nmax_bytes = {MAX}\nkeep = 100000\nqueue_size = {}\n",
            logs.join("app.log"),
            2 * N
        ),
        &[],
    );
    run_load(&sb.regions(), N, 4);
    let m = wait_handled(&mut c, "file", N as f64);
    assert_eq!(
        sink_count(&m, "file", "exported"),
        N as f64,
        "{}",
        m.relevant()
    );
    let files = log_files(&logs);
    assert!(files.len() > 10, "expected many rotations, got {files:?}");
    for f in &files {
        let len = std::fs::metadata(f).expect("stat").len();
        assert!(
            len <= MAX,
            "{} has {len} bytes, past max_bytes",
            f.display()
        );
        assert_eq!(mode_of(f), 0o640, "{}", f.display());
    }
    let seen = seqs(&files);
    let dup: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(dup.is_empty(), "lines written twice: {dup:?}");
    let missing: Vec<u64> = (0..N).filter(|s| !seen.contains_key(s)).take(5).collect();
    assert!(
        missing.is_empty(),
        "lines lost: {missing:?} ... of {}",
        N as usize - seen.len()
    );
    c.terminate();
}

#[test]
fn file_keep_n_with_gzip() {
    let _serial = serial();
    const N: u64 = 30_000;
    let sb = Sandbox::new("logsink-keep");
    let logs = sb.path("logs");
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[[logs.file]]\npath = {:?}\nmax_bytes = 65536\nkeep = 3\ncompress = true\n\
             file_mode = \"0600\"\n",
            logs.join("app.log")
        ),
        &[],
    );
    run_load(&sb.regions(), N, 2);
    let m = wait_handled(&mut c, "file", N as f64);
    assert_eq!(
        sink_count(&m, "file", "exported"),
        N as f64,
        "{}",
        m.relevant()
    );
    c.terminate();
    let names: Vec<String> = log_files(&logs)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["app.log", "app.log.1.gz", "app.log.2.gz", "app.log.3.gz"],
        "only keep = 3 rotated files, gzipped"
    );
    let files = log_files(&logs);
    for f in &files {
        assert_eq!(mode_of(f), 0o600, "{}", f.display());
    }
    let seen = seqs(&files);
    assert!(seen.values().all(|&n| n == 1), "a line written twice");
    // What is left is the newest lines: the files together hold a tail of the run.
    let newest = *seen.keys().max().expect("lines");
    assert!(
        newest >= N - 2_000,
        "the newest lines are kept (max seq {newest})"
    );
    assert!(seen.len() > 3 * 65536 / 400, "{} lines kept", seen.len());
}

#[test]
fn file_rotation_by_time_with_gzip() {
    let _serial = serial();
    let sb = Sandbox::new("logsink-time");
    let logs = sb.path("logs");
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[[logs.file]]\npath = {:?}\nrotate_every = \"1s\"\nmax_bytes = 0\ncompress = true\n\
             keep = 1000\nbatch_timeout_ms = 20\n[logs]\nreorder_window_ms = 50\n",
            logs.join("app.log")
        ),
        &[],
    );
    let mut total = 0u64;
    for _ in 0..4 {
        run_load(&sb.regions(), 5_000, 2);
        total += 5_000;
        wait_handled(&mut c, "file", total as f64);
        std::thread::sleep(Duration::from_millis(1100));
    }
    c.terminate();
    let files = log_files(&logs);
    let rotated = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        .count();
    assert!(
        rotated >= 3,
        "a boundary passed between writer runs each time: {files:?}"
    );
    // Each writer run has its own seq range 0..5000: 4 of each.
    let seen = seqs(&files);
    assert_eq!(seen.len(), 5_000);
    assert!(
        seen.values().all(|&n| n == 4),
        "every line of every run exactly once: {:?}",
        seen.iter()
            .filter(|(_, &n)| n != 4)
            .take(5)
            .collect::<Vec<_>>()
    );
}

// ----------------------------------------------------------------------------------------------
// Syslog (a real rsyslogd)
// ----------------------------------------------------------------------------------------------

fn rsyslogd_bin() -> Option<PathBuf> {
    which("rsyslogd").or_else(|| {
        let p = PathBuf::from("/usr/sbin/rsyslogd");
        p.is_file().then_some(p)
    })
}

/// A free UDP port on 127.0.0.1.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind udp")
        .local_addr()
        .expect("addr")
        .port()
}

/// rsyslogd in the foreground with its own configuration, work directory and pid file in the
/// sandbox; killed by its guard even when the test panics.
struct Rsyslog {
    _guard: ChildGuard,
    out: PathBuf,
    udp: u16,
    tcp: u16,
    tcp_sd: u16,
    tcp_nl: u16,
    sock: PathBuf,
}

const FIELD_SEP: &str = "\u{1f}";

impl Rsyslog {
    fn start(sb: &Sandbox, bin: &Path) -> Rsyslog {
        let dir = sb.path("rsyslog");
        std::fs::create_dir_all(dir.join("work")).expect("mkdir");
        let out = dir.join("out.log");
        let sock = dir.join("log.sock");
        let (udp, tcp, tcp_sd, tcp_nl) = (free_udp_port(), free_port(), free_port(), free_port());
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
input(type="imudp" address="127.0.0.1" port="{udp}" name="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" name="tcp")
input(type="imtcp" address="127.0.0.1" port="{tcp_sd}" name="tcpsd")
input(type="imtcp" address="127.0.0.1" port="{tcp_nl}" name="tcpnl")
input(type="imuxsock" Socket="{sock}" UseSpecialParser="off" ParseHostname="on" Annotate="off" UsePIDFromSystem="off" RateLimit.Interval="0")
template(name="fields" type="list") {{
  property(name="inputname") constant(value="{sep}")
  property(name="syslogseverity") constant(value="{sep}")
  property(name="syslogfacility") constant(value="{sep}")
  property(name="hostname") constant(value="{sep}")
  property(name="app-name") constant(value="{sep}")
  property(name="procid") constant(value="{sep}")
  property(name="msgid") constant(value="{sep}")
  property(name="structured-data") constant(value="{sep}")
  property(name="msg") constant(value="\n")
}}
*.* action(type="omfile" file="{out}" template="fields")
"#,
                work = dir.join("work").display(),
                sock = sock.display(),
                out = out.display(),
                sep = FIELD_SEP,
            ),
        )
        .expect("write rsyslog.conf");
        let mut cmd = Command::new(bin);
        cmd.arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("rsyslogd.out")).expect("out"))
            .stderr(File::create(dir.join("rsyslogd.err")).expect("err"));
        let mut guard = ChildGuard::spawn(cmd, "rsyslogd", false);
        let r_out = out.clone();
        // Ready when a probe over each input has arrived.
        poll(
            "rsyslogd to receive probes on UDP, TCP and the unix socket",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                if let Some(s) = guard.exited() {
                    panic!(
                        "rsyslogd exited with {s}: {}",
                        std::fs::read_to_string(dir.join("rsyslogd.err")).unwrap_or_default()
                    );
                }
                let probe = b"<13>1 - - probe - - - probe";
                let u = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                let _ = u.send_to(probe, ("127.0.0.1", udp));
                for p in [tcp, tcp_sd, tcp_nl] {
                    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", p)) {
                        let _ = s.write_all(b"27 <13>1 - - probe - - - probe");
                    }
                }
                if let Ok(d) = std::os::unix::net::UnixDatagram::unbound() {
                    let _ = d.send_to(probe, &sock);
                }
                let text = std::fs::read_to_string(&r_out).unwrap_or_default();
                let got: HashSet<&str> = text
                    .lines()
                    .filter_map(|l| l.split(FIELD_SEP).next())
                    .collect();
                if ["udp", "tcp", "tcpsd", "tcpnl", "imuxsock"]
                    .iter()
                    .all(|i| got.contains(i))
                {
                    Ok(())
                } else {
                    Err(format!("inputs heard so far: {got:?}"))
                }
            },
        );
        Rsyslog {
            _guard: guard,
            out,
            udp,
            tcp,
            tcp_sd,
            tcp_nl,
            sock,
        }
    }

    /// Received messages (not probes): input -> [fields...].
    fn received(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(FIELD_SEP).map(str::to_owned).collect::<Vec<_>>())
            .filter(|f| f.len() == 9 && f[4] != "probe" && f[8] != "probe")
            .collect()
    }
}

/// The syslog severity of a level name.
fn severity_of(level: &str) -> &'static str {
    match level {
        "TRACE" | "DEBUG" => "7",
        "INFO" => "6",
        "WARN" => "4",
        "ERROR" => "3",
        "FATAL" => "2",
        other => panic!("level {other}"),
    }
}

#[test]
fn syslog_to_a_real_rsyslogd_over_udp_tcp_and_unix() {
    let _serial = serial();
    let Some(bin) = rsyslogd_bin() else {
        skip_or_fail(
            "SHMTEL_REQUIRE_RSYSLOG",
            "rsyslogd is not installed (`make deps` installs Debian's rsyslog)",
        );
        return;
    };
    let sb = Sandbox::new("logsink-syslog");
    let rs = Rsyslog::start(&sb, &bin);
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[[logs.syslog]]\naddress = \"udp://127.0.0.1:{}\"\nmax_message_bytes = 16384\n\
             facility = \"local3\"\nbatch_timeout_ms = 20\n\
             [[logs.syslog]]\naddress = \"tcp://127.0.0.1:{}\"\nmax_message_bytes = 16384\n\
             facility = \"local3\"\nbatch_timeout_ms = 20\n\
             [[logs.syslog]]\naddress = \"unix://{}\"\nmax_message_bytes = 16384\n\
             facility = \"local3\"\nbatch_timeout_ms = 20\n\
             [[logs.syslog]]\naddress = \"tcp://127.0.0.1:{}\"\nmode = \"structured\"\n\
             max_message_bytes = 16384\nbatch_timeout_ms = 20\n\
             [[logs.syslog]]\naddress = \"tcp://127.0.0.1:{}\"\nframing = \"newline\"\n\
             max_message_bytes = 16384\nfacility = \"local3\"\nbatch_timeout_ms = 20\n",
            rs.udp,
            rs.tcp,
            rs.sock.display(),
            rs.tcp_sd,
            rs.tcp_nl
        ),
        &[],
    );
    let (w, _) = run_writer(&sb.regions(), &["schema"]);
    let events = w["events"].as_array().expect("events").clone();
    let pid = w["pid"].as_u64().expect("pid").to_string();
    let n = events.len();
    let m = wait_handled(&mut c, "syslog", 5.0 * n as f64);
    assert_eq!(
        sink_count(&m, "syslog", "exported"),
        5.0 * n as f64,
        "{}",
        m.relevant()
    );
    let got = poll(
        "every message at rsyslogd",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let r = rs.received();
            if r.len() >= 5 * n {
                Ok(r)
            } else {
                Err(format!("{} of {} messages: {r:#?}", r.len(), 5 * n))
            }
        },
    );
    let mut by_input: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for f in got {
        by_input.entry(f[0].clone()).or_default().push(f);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();
    for input in ["udp", "tcp", "imuxsock", "tcpnl"] {
        let msgs = by_input
            .get(input)
            .unwrap_or_else(|| panic!("nothing over {input}"));
        assert_eq!(msgs.len(), n, "{input}: {msgs:#?}");
        for e in &events {
            let want = e["message"].as_str().unwrap();
            let f = msgs
                .iter()
                .find(|f| serde_json::from_str::<Value>(&f[8]).is_ok_and(|v| v["message"] == want))
                .unwrap_or_else(|| {
                    panic!("{input}: no JSON message {want:?} arrived intact; got {msgs:#?}")
                });
            let v: Value = serde_json::from_str(&f[8]).unwrap();
            let level = e["level"].as_str().unwrap();
            assert_eq!(f[1], severity_of(level), "{input} severity of {want:?}");
            assert_eq!(f[2], "19", "facility local3");
            assert_eq!(f[3], host);
            assert_eq!(f[4], "logwriter", "APP-NAME is the service");
            assert_eq!(f[5], pid, "PROCID is the writer's pid");
            assert_eq!(f[7], "-", "no structured data in JSON mode");
            assert_eq!(v["level"], level);
            assert_eq!(v["pid"].as_u64().map(|p| p.to_string()), Some(pid.clone()));
            for (k, x) in e["fields"].as_object().unwrap() {
                let key = if k == "message" {
                    "fields.message"
                } else {
                    k.as_str()
                };
                assert_eq!(&v[key], x, "{input}: field {k} of {want:?}");
            }
            if e["truncated"] == true {
                assert_eq!(v["truncated"], true);
            }
            for id in ["trace_id", "span_id", "correlation_id"] {
                if e[id] != "" {
                    assert_eq!(v[id], e[id], "{input}: {id}");
                }
            }
        }
    }
    // Structured mode: the plain message, ids and fields as SD parameters.
    let sd = by_input
        .get("tcpsd")
        .expect("nothing over the structured sink");
    assert_eq!(sd.len(), n);
    for e in &events {
        let want = e["message"].as_str().unwrap();
        if want.contains('\n') || want.contains('\u{1}') || want.len() > 1000 {
            continue; // control characters are escaped by rsyslog; the long one is checked below
        }
        let f = sd
            .iter()
            .find(|f| f[8] == want)
            .unwrap_or_else(|| panic!("structured: no message {want:?}: {sd:#?}"));
        assert_eq!(f[1], severity_of(e["level"].as_str().unwrap()));
        assert_eq!(f[2], "1", "facility user (the default)");
        assert!(f[7].starts_with("[shmtel@32473 thread=\""), "{}", f[7]);
        for id in ["trace_id", "span_id", "correlation_id"] {
            if e[id] != "" {
                let p = format!("{id}=\"{}\"", e[id].as_str().unwrap());
                assert!(f[7].contains(&p), "{p} in {}", f[7]);
            }
        }
        for (k, x) in e["fields"].as_object().unwrap() {
            let key = k.as_str();
            if let Some(s) = x.as_str() {
                if !s.contains(['"', '\\', ']']) && s.is_ascii() {
                    let p = format!("{key}=\"{s}\"");
                    assert!(f[7].contains(&p), "{p} in {}", f[7]);
                }
            } else if x.is_i64() || x.is_boolean() {
                let p = format!("{key}=\"{x}\"");
                assert!(f[7].contains(&p), "{p} in {}", f[7]);
            }
        }
    }
    assert!(
        sd.iter().any(|f| f[7].contains("str=\"plain text\"")
            && f[7].contains("obj=\"{\\\"a\\\":1,\\\"b\\\":[true,null,\\\"x\\\"\\],")),
        "escaped JSON field in SD: {sd:#?}"
    );
    assert!(
        sd.iter()
            .any(|f| f[8].starts_with("€€€") && f[7].contains("truncated=\"true\"")),
        "the long message arrives (already cut by the writer) with truncated=\"true\""
    );
    c.terminate();
}

#[test]
fn syslog_server_absent_costs_only_counted_drops() {
    let _serial = serial();
    let sb = Sandbox::new("logsink-syslog-absent");
    let port = free_port();
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[[logs.syslog]]\naddress = \"tcp://127.0.0.1:{port}\"\nqueue_size = 500\n\
             batch_size = 100\nmax_retry_elapsed_ms = 1000\nretry_initial_backoff_ms = 50\n\
             retry_max_backoff_ms = 100\n"
        ),
        &[],
    );
    run_load(&sb.regions(), 5_000, 1);
    let m = wait_handled(&mut c, "syslog", 5_000.0);
    assert_eq!(sink_count(&m, "syslog", "exported"), 0.0);
    assert!(
        sink_count(&m, "syslog", "dropped") > 0.0,
        "{}",
        m.relevant()
    );
    assert!(sink_count(&m, "syslog", "failed") > 0.0, "{}", m.relevant());
    assert!(m.sum("shmtel_log_sink_retries_total") > 0.0);
    assert!(m.sum("shmtel_log_sink_queue_records") <= 500.0);
    c.terminate();
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

/// A JSON value as the OTLP mapping sends it.
fn json_to_any(v: &Value) -> Option<V> {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => V::BoolValue(*b),
        Value::Number(n) if n.is_i64() => V::IntValue(n.as_i64().unwrap()),
        Value::Number(n) => V::DoubleValue(n.as_f64().unwrap()),
        Value::String(s) => V::StringValue(s.clone()),
        Value::Array(a) => V::ArrayValue(ArrayValue {
            values: a
                .iter()
                .map(|x| AnyValue {
                    value: json_to_any(x),
                })
                .collect(),
        }),
        Value::Object(o) => V::KvlistValue(KeyValueList {
            values: o
                .iter()
                .map(|(k, x)| KeyValue {
                    key: k.clone(),
                    value: Some(AnyValue {
                        value: json_to_any(x),
                    }),
                    ..Default::default()
                })
                .collect(),
        }),
    })
}

/// Every record the receiver accepted, with its resource attributes and scope name.
fn records(rx: &Receiver, path: &str) -> Vec<(LogRecord, BTreeMap<String, V>, String)> {
    let mut out = Vec::new();
    for r in rx.accepted() {
        assert_eq!(r.path, path);
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        let req = ExportLogsServiceRequest::decode(&r.body[..]).expect("a valid OTLP request");
        for rl in req.resource_logs {
            let res: BTreeMap<String, V> = rl
                .resource
                .expect("a resource")
                .attributes
                .into_iter()
                .map(|kv| (kv.key, kv.value.and_then(|v| v.value).expect("a value")))
                .collect();
            for sl in rl.scope_logs {
                let scope = sl.scope.expect("a scope").name;
                for lr in sl.log_records {
                    out.push((lr, res.clone(), scope.clone()));
                }
            }
        }
    }
    out
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn otlp_logs_every_field() {
    let _serial = serial();
    let sb = Sandbox::new("logsink-otlp");
    let rx = Receiver::start(200);
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[export]\nresource_attributes = {{ \"deployment.environment\" = \"e2e\" }}\n\
             [logs.otlp]\nendpoint = \"{}\"\nheaders = {{ \"x-from-file\" = \"yes\" }}\n\
             batch_timeout_ms = 100\n",
            rx.base_url()
        ),
        &[],
    );
    let t0 = now_ns();
    let (w, _) = run_writer(&sb.regions(), &["schema"]);
    let t1 = now_ns();
    let events = w["events"].as_array().expect("events").clone();
    let pid = w["pid"].as_i64().expect("pid");
    let m = wait_handled(&mut c, "otlp", events.len() as f64);
    assert_eq!(
        sink_count(&m, "otlp", "exported"),
        events.len() as f64,
        "{}",
        m.relevant()
    );
    for r in rx.accepted() {
        assert_eq!(r.headers["content-encoding"], "gzip", "gzip is the default");
        assert_eq!(r.headers["x-from-file"], "yes");
    }
    let recs = records(&rx, "/v1/logs");
    assert_eq!(recs.len(), events.len());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    for e in &events {
        let want = e["message"].as_str().unwrap();
        let (r, res, scope) = recs
            .iter()
            .find(|(r, _, _)| {
                r.body.as_ref().and_then(|b| b.value.clone()) == Some(V::StringValue(want.into()))
            })
            .unwrap_or_else(|| panic!("no record with body {want:?}"));
        assert_eq!(scope, "shmtel");
        assert_eq!(res["service.name"], V::StringValue("logwriter".into()));
        assert_eq!(res["process.pid"], V::IntValue(pid));
        assert_eq!(res["host.name"], V::StringValue(host.clone()));
        assert_eq!(res["deployment.environment"], V::StringValue("e2e".into()));
        let level = e["level"].as_str().unwrap();
        let number = match level {
            "TRACE" => 1,
            "DEBUG" => 5,
            "INFO" => 9,
            "WARN" => 13,
            "ERROR" => 17,
            "FATAL" => 21,
            _ => unreachable!(),
        };
        assert_eq!(
            (r.severity_number, r.severity_text.as_str()),
            (number, level)
        );
        assert!(
            t0 - 50_000_000 <= r.time_unix_nano && r.time_unix_nano <= t1 + 50_000_000,
            "time {} not within the writer's run",
            r.time_unix_nano
        );
        assert!(r.observed_time_unix_nano >= r.time_unix_nano);
        let a = &r.attributes;
        let mut expected_len = 1; // thread.id
        assert!(matches!(attr(a, "thread.id"), Some(V::IntValue(t)) if *t > 0));
        for (k, x) in e["fields"].as_object().unwrap() {
            expected_len += 1;
            let got = a
                .iter()
                .find(|kv| kv.key == *k)
                .unwrap_or_else(|| panic!("field {k} of {want:?} missing: {a:?}"));
            let got = got.value.as_ref().and_then(|v| v.value.clone());
            if k == "nan" {
                assert!(
                    matches!(got, Some(V::DoubleValue(f)) if f.is_nan()),
                    "{got:?}"
                );
            } else {
                assert_eq!(got, json_to_any(x), "field {k} of {want:?}");
            }
        }
        let caller = e["caller"].as_str().unwrap();
        if !caller.is_empty() {
            expected_len += 3;
            assert_eq!(
                attr(a, "code.file.path"),
                Some(&V::StringValue("app/views.py".into()))
            );
            assert_eq!(attr(a, "code.line.number"), Some(&V::IntValue(42)));
            assert_eq!(
                attr(a, "code.function.name"),
                Some(&V::StringValue("get_user".into()))
            );
        }
        let cid = e["correlation_id"].as_str().unwrap();
        if !cid.is_empty() {
            expected_len += 1;
            assert_eq!(attr(a, "correlation_id"), Some(&V::StringValue(cid.into())));
        }
        if e["truncated"] == true {
            expected_len += 1;
            assert_eq!(attr(a, "shmtel.truncated"), Some(&V::BoolValue(true)));
        }
        assert_eq!(a.len(), expected_len, "attributes of {want:?}: {a:?}");
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&r.trace_id),
            e["trace_id"].as_str().unwrap(),
            "{want:?}"
        );
        assert_eq!(hex(&r.span_id), e["span_id"].as_str().unwrap(), "{want:?}");
        let flags = if e["trace_id"] == "" { 0 } else { 1 };
        assert_eq!(r.flags, flags, "{want:?}");
        assert_eq!(r.dropped_attributes_count, 0);
    }
    c.terminate();
}

#[test]
fn otlp_logs_enabled_by_the_environment() {
    let _serial = serial();
    let sb = Sandbox::new("logsink-otlp-env");
    let rx = Receiver::start(200);
    let mut c = ConfiguredCollector::start(
        &sb,
        "",
        &[
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                &format!("{}/custom/logs", rx.base_url()),
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                "authorization=Bearer%20t0k",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ],
    );
    run_load(&sb.regions(), 1_000, 1);
    let m = wait_handled(&mut c, "otlp", 1_000.0);
    assert_eq!(
        sink_count(&m, "otlp", "exported"),
        1_000.0,
        "{}",
        m.relevant()
    );
    for r in rx.accepted() {
        assert_eq!(r.headers["authorization"], "Bearer t0k");
        assert!(!r.headers.contains_key("content-encoding"));
    }
    assert_eq!(records(&rx, "/custom/logs").len(), 1_000);
    c.terminate();
}

#[test]
fn otlp_logs_over_mutual_tls_set_up_by_the_environment() {
    let _serial = serial();
    let sb = Sandbox::new("logsink-otlp-tls");
    let pki = Pki::new(sb.root());
    let rx = Receiver::start_tls(200, pki.server_config(true));
    let (ca, cert, key) = (
        pki.ca_file.display().to_string(),
        pki.client_cert_file.display().to_string(),
        pki.client_key_file.display().to_string(),
    );
    let mut c = ConfiguredCollector::start(
        &sb,
        "",
        &[
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                &format!("{}/v1/logs", rx.base_url()),
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", &ca),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &cert),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &key),
        ],
    );
    run_load(&sb.regions(), 500, 1);
    let m = wait_handled(&mut c, "otlp", 500.0);
    assert_eq!(
        sink_count(&m, "otlp", "exported"),
        500.0,
        "{}\nlog:\n{}",
        m.relevant(),
        c.log()
    );
    assert_eq!(records(&rx, "/v1/logs").len(), 500);
    assert_eq!(rx.failed_handshakes(), 0);
    c.terminate();
}

/// The largest `shmtel_log_sink_queue_records{sink="otlp"}` seen over `d`, scraping every
/// 100 ms.
fn watch_queue(c: &mut ConfiguredCollector, d: Duration) -> f64 {
    let until = Instant::now() + d;
    let mut max = 0.0f64;
    while Instant::now() < until {
        let m = c.scrape();
        max = max.max(m.sum_where("shmtel_log_sink_queue_records", &[("sink", "otlp")]));
        std::thread::sleep(Duration::from_millis(100));
    }
    max
}

#[test]
fn otlp_logs_outage_is_bounded_retried_and_counted() {
    let _serial = serial();
    const QUEUE: f64 = 1000.0;
    const PER_RUN: u64 = 3000;
    const LAST_RUN: u64 = 500;
    let sb = Sandbox::new("logsink-outage");
    let mut rx = Receiver::start(503);
    let mut c = ConfiguredCollector::start(
        &sb,
        &format!(
            "[logs.otlp]\nendpoint = \"{}\"\nbatch_size = 100\nbatch_timeout_ms = 100\n\
             queue_size = 1000\nmax_retry_elapsed_ms = 120000\nretry_initial_backoff_ms = 50\n\
             retry_max_backoff_ms = 400\n",
            rx.base_url()
        ),
        &[],
    );
    let mut max_queue = 0.0f64;
    let mut pids = Vec::new();
    pids.push(run_load(&sb.regions(), PER_RUN, 2)); // answered 503
    max_queue = max_queue.max(watch_queue(&mut c, Duration::from_secs(2)));
    rx.down();
    pids.push(run_load(&sb.regions(), PER_RUN, 2)); // connection refused
    max_queue = max_queue.max(watch_queue(&mut c, Duration::from_secs(3)));
    rx.set_status(200);
    rx.up();
    // Back: what was held is delivered, then a run smaller than the queue arrives whole.
    poll(
        "the queue to drain once the receiver is back",
        SETTLE_TIMEOUT,
        Duration::from_millis(100),
        || {
            let m = c.scrape();
            let q = m.sum_where("shmtel_log_sink_queue_records", &[("sink", "otlp")]);
            max_queue = max_queue.max(q);
            if q == 0.0 {
                Ok(())
            } else {
                Err(format!("{q} records held"))
            }
        },
    );
    pids.push(run_load(&sb.regions(), LAST_RUN, 1));
    let total = 2.0 * PER_RUN as f64 + LAST_RUN as f64;
    let m = wait_handled(&mut c, "otlp", total);
    max_queue = max_queue.max(watch_queue(&mut c, Duration::from_millis(300)));
    assert!(max_queue <= QUEUE, "queue gauge reached {max_queue}");
    let exported = sink_count(&m, "otlp", "exported");
    let dropped = sink_count(&m, "otlp", "dropped");
    let failed = sink_count(&m, "otlp", "failed");
    assert_eq!(exported + dropped + failed, total, "{}", m.relevant());
    assert!(
        dropped > 0.0,
        "the queue overflowed during the outage: {}",
        m.relevant()
    );
    assert!(
        m.sum_where("shmtel_log_sink_retries_total", &[("sink", "otlp")]) > 0.0,
        "{}",
        m.relevant()
    );
    assert!(
        rx.attempts() > rx.accepted().len() as u64,
        "the receiver answered 503 to some attempts"
    );
    // What arrived arrived once: (pid, seq) unique, and as many as counted exported.
    let recs = records(&rx, "/v1/logs");
    let mut seen = HashSet::new();
    for (r, res, _) in &recs {
        let Some(V::IntValue(pid)) = res.get("process.pid") else {
            panic!("no pid")
        };
        let Some(V::IntValue(seq)) = attr(&r.attributes, "seq") else {
            panic!("no seq")
        };
        assert!(pids.contains(&(*pid as u32)));
        assert!(
            seen.insert((*pid, *seq)),
            "record {pid}/{seq} arrived twice"
        );
    }
    assert_eq!(seen.len() as f64, exported, "arrived = exported");
    assert_eq!(
        seen.iter().filter(|(p, _)| *p as u32 == pids[2]).count() as u64,
        LAST_RUN,
        "the run after the outage arrived whole"
    );
    c.terminate();
}
