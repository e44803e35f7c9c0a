//! Prometheus: both exposition formats pass `promtool check metrics`, and a real Prometheus
//! server scraping the collector ends up with the value the writer committed.
//!
//! Requires Debian's `prometheus` and `promtool`. Without them the suite prints a notice and
//! passes, unless `SHMTEL_REQUIRE_PROMETHEUS=1` (CI), which makes it a failure.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use shmtel_e2e::*;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

/// Run `promtool check metrics` on `body`. promtool exits 0 when the input parses and lints
/// clean, 3 when it parses but has lint problems (advice such as a missing HELP line), 1 when it
/// does not parse. With `strict` (the Prometheus text format, which promtool lints natively) the
/// exposition must lint clean; otherwise (OpenMetrics, which promtool 2.42 lints with its text
/// parser and so misreads `_total`/`_created` HELP lines) lint advice is printed, not failed on.
///
/// promtool 2.42's text parser has no exemplar syntax either, so exemplars (` # {...} v ts` after a
/// sample) are cut from the OpenMetrics input it lints; the real Prometheus scrape below, which
/// negotiates OpenMetrics and parses exemplars, must succeed on the complete exposition.
fn promtool_check(promtool: &Path, body: &str, format: &str, scratch: &Path, strict: bool) {
    let input = scratch.join(format!("metrics-{}.txt", format.replace(' ', "-")));
    let body = if strict {
        body.to_owned()
    } else {
        body.lines()
            .map(|l| match l.find(" # {") {
                Some(i) if !l.starts_with('#') => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    std::fs::write(&input, &body).expect("write the scraped metrics");
    let mut cmd = Command::new(promtool);
    cmd.args(["check", "metrics"])
        .stdin(Stdio::from(File::open(&input).expect("open")));
    let (status, stdout, stderr) =
        run_captured(cmd, "promtool check metrics", Duration::from_secs(60));
    let said = format!("{stdout}{stderr}");
    match status.code() {
        Some(0) => println!("promtool check metrics ({format}): clean"),
        Some(3) if !strict => {
            println!("promtool check metrics ({format}): parses; lint advice:\n{said}")
        }
        _ => panic!("promtool check metrics rejected the {format} exposition ({status}):\n{said}\n--- input ---\n{body}"),
    }
}

struct Prometheus {
    guard: ChildGuard,
    port: u16,
    log: std::path::PathBuf,
}

impl Prometheus {
    fn start(bin: &Path, sb: &Sandbox, target_port: u16) -> Prometheus {
        let cfg = sb.path("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: shmtel\n    \
                 scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = sb.path("prometheus.log");
        let logf = File::create(&log).expect("create the prometheus log");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", sb.path("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(sb.root())
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf);
        let mut p = Prometheus {
            guard: ChildGuard::spawn(cmd, "prometheus", false),
            port,
            log,
        };
        poll(
            "prometheus to be ready",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || {
                if let Some(s) = p.guard.exited() {
                    panic!("prometheus exited with {s}; its log:\n{}", p.log_text());
                }
                match http_get(&p.url("/-/ready"), None) {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("/-/ready: {} {}", r.status, r.body)),
                    Err(e) => Err(e),
                }
            },
        );
        p
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of an instant query's single result.
    fn query(&self, promql_encoded: &str) -> Result<f64, String> {
        let r = http_get(
            &self.url(&format!("/api/v1/query?query={promql_encoded}")),
            None,
        )?;
        let v: serde_json::Value =
            serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
        let value = v["data"]["result"][0]["value"][1]
            .as_str()
            .ok_or_else(|| format!("no result yet: {}", r.body))?;
        value.parse::<f64>().map_err(|e| format!("{e}: {}", r.body))
    }

    fn stop(mut self) {
        self.guard.signal(libc::SIGTERM);
        if self.guard.wait(Duration::from_secs(30)).is_none() {
            self.guard.kill();
        }
    }
}

#[test]
fn promtool_accepts_both_formats_and_prometheus_scrapes_exact_values() {
    let (Some(prometheus), Some(promtool)) = (which("prometheus"), which("promtool")) else {
        skip_or_fail(
            "SHMTEL_REQUIRE_PROMETHEUS",
            "the prometheus and promtool binaries are not installed",
        );
        return;
    };
    let sb = Sandbox::new("prometheus");
    let r = run_loadgen(&sb.regions(), &["--threads", "2", "--ops", "10000"], &[]);
    println!("loadgen: {}", r.raw);
    let mut collector =
        Collector::start(&sb.regions(), &sb.state_file(), &sb.path("collector.log"));
    collector.wait_exact("the writer's counters", SETTLE_TIMEOUT, &[], |m| {
        expect_eq(
            "loadgen_ops_total",
            m.require_sum("loadgen_ops_total")?,
            r.ops_total as f64,
        )?;
        expect_eq(
            "loadgen_bytes_total",
            m.require_sum("loadgen_bytes_total")?,
            r.bytes_total as f64,
        )
    });

    // Prometheus text 0.0.4.
    let text = collector
        .metrics_text(None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.content_type.starts_with("text/plain") && text.content_type.contains("0.0.4"),
        "GET /metrics without Accept: Content-Type {:?}, expected text/plain; version=0.0.4",
        text.content_type
    );
    promtool_check(&promtool, &text.body, "text 0.0.4", sb.root(), true);

    // OpenMetrics 1.0.0.
    let om = collector
        .metrics_text(Some(OPENMETRICS))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        om.content_type.starts_with("application/openmetrics-text"),
        "GET /metrics with Accept: {OPENMETRICS}: Content-Type {:?}",
        om.content_type
    );
    assert!(
        om.body.ends_with("# EOF\n"),
        "an OpenMetrics exposition must end with \"# EOF\\n\""
    );
    promtool_check(&promtool, &om.body, "OpenMetrics 1.0.0", sb.root(), false);
    assert!(
        om.body.contains(" # {trace_id=\""),
        "the span metrics carry exemplars in OpenMetrics (the Prometheus scrape below parses them)"
    );

    // Both say the same.
    let (mt, mo) = (
        Metrics::parse(&text.body).expect("parse text"),
        Metrics::parse(&om.body).expect("parse OpenMetrics"),
    );
    assert_eq!(
        mt.sum("loadgen_ops_total"),
        r.ops_total as f64,
        "text format loadgen_ops_total"
    );
    assert_eq!(
        mo.sum("loadgen_ops_total"),
        r.ops_total as f64,
        "OpenMetrics loadgen_ops_total"
    );

    // A real Prometheus server scraping the collector every second.
    let prom = Prometheus::start(&prometheus, &sb, collector.port);
    let expected = r.ops_total as f64;
    poll(
        "Prometheus to report sum(loadgen_ops_total)",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || match prom.query("sum%28loadgen_ops_total%29") {
            Ok(v) if v == expected => Ok(()),
            Ok(v) => Err(format!("sum(loadgen_ops_total) = {v}, expected {expected}")),
            Err(e) => Err(format!(
                "{e}\n--- prometheus log (tail) ---\n{}",
                tail(&prom.log_text())
            )),
        },
    );
    let targets = http_get(&prom.url("/api/v1/targets"), None).expect("/api/v1/targets");
    let v: serde_json::Value = serde_json::from_str(&targets.body).expect("targets JSON");
    let t = &v["data"]["activeTargets"][0];
    assert_eq!(
        t["health"], "up",
        "the collector's scrape target is not healthy: {t}"
    );
    assert_eq!(
        t["lastError"], "",
        "the last scrape of the collector failed: {t}"
    );
    prom.stop();
    collector.assert_running();
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
