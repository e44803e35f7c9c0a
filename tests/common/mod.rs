//! Helpers shared by the end-to-end suites: locating binaries, starting and stopping the
//! collector and loadgen processes, scraping and parsing /metrics.
//!
//! Every process a suite starts is owned by a guard whose `Drop` kills it and waits for it, and
//! every directory lives in a [`Sandbox`] that is removed when dropped, so a failing assertion
//! leaves nothing running and nothing behind. Nothing here asserts timing: waits poll with
//! generous timeouts and, when they give up, say what they last saw.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use shmtel_core::region::RegionName;

/// How long a collector may take to answer /healthz after it was started.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long draining, aggregation and cleanup may take to show up in /metrics.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a bounded loadgen run may take (the machine is small and shared).
pub const LOADGEN_TIMEOUT: Duration = Duration::from_secs(180);

// ----------------------------------------------------------------------------------------------
// Binaries and directories
// ----------------------------------------------------------------------------------------------

/// The workspace root (`tests/..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn binary(env_var: &str, fallback: &[&str]) -> PathBuf {
    let path = match std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => fallback
            .iter()
            .fold(workspace_root().join("target").join("release"), |p, c| {
                p.join(c)
            }),
    };
    assert!(
        path.is_file(),
        "{} not found (set {env_var} or run `cargo build --release --workspace --bins --examples`)",
        path.display()
    );
    path
}

/// The `shmtel` binary: `$SHMTEL_BIN` or `<workspace>/target/release/shmtel`.
pub fn shmtel_bin() -> PathBuf {
    binary("SHMTEL_BIN", &["shmtel"])
}

/// The `loadgen` example: `$SHMTEL_LOADGEN` or `<workspace>/target/release/examples/loadgen`.
pub fn loadgen_bin() -> PathBuf {
    binary("SHMTEL_LOADGEN", &["examples", "loadgen"])
}

/// Find an executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// An optional external tool is missing: panic with `what` when `env_var` is `1` (CI requires
/// the suite to run); otherwise print a notice that the suite did not run (the caller returns).
pub fn skip_or_fail(env_var: &str, what: &str) {
    if std::env::var(env_var).as_deref() == Ok("1") {
        panic!("{what}, and {env_var}=1 requires this suite to run");
    }
    eprintln!("NOTICE: this suite did NOT run: {what} (set {env_var}=1 to make that a failure)");
    println!("NOTICE: this suite did NOT run: {what} (set {env_var}=1 to make that a failure)");
}

/// A temporary directory for one test: `regions/` (the region directory, mode 0700), the
/// collector's state file and logs beside it. Removed on drop.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// Create a sandbox with an empty region directory.
    pub fn new(test: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix(&format!("shmtel-e2e-{test}-"))
            .tempdir()
            .expect("create a temporary directory");
        let s = Sandbox { dir };
        std::fs::create_dir(s.regions()).expect("create the region directory");
        set_mode(&s.regions(), 0o700);
        s
    }

    /// The sandbox root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The region directory the writers and the collector share.
    pub fn regions(&self) -> PathBuf {
        self.dir.path().join("regions")
    }

    /// The collector's state file (outside the region directory).
    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// A path inside the sandbox root.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

// ----------------------------------------------------------------------------------------------
// Processes
// ----------------------------------------------------------------------------------------------

/// Keep the test's own `SHMTEL_*` environment (directories, listen address, ring size, ...)
/// away from a child: each test passes what it means explicitly.
pub fn remove_shmtel_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("SHMTEL_")) {
            cmd.env_remove(k);
        }
    }
}

/// Send `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; pid is a child we started and have
    // not yet reaped, so it cannot have been reused.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Send `sig` to the process group `pgid`.
pub fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: as for `signal`; a negative pid addresses the group whose leader we started.
    unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
}

/// Wait for `child` to exit, polling, for at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
    }
}

/// A child process that is killed (SIGKILL, to its whole process group when it leads one) and
/// reaped on drop.
pub struct ChildGuard {
    child: Option<Child>,
    own_group: bool,
    what: String,
}

impl ChildGuard {
    /// Spawn `cmd`. With `own_group`, the child leads a new process group, and drop kills the
    /// group (for wrappers such as strace that start processes of their own).
    pub fn spawn(mut cmd: Command, what: &str, own_group: bool) -> ChildGuard {
        use std::os::unix::process::CommandExt;
        if own_group {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what} ({cmd:?}): {e}"));
        ChildGuard {
            child: Some(child),
            own_group,
            what: what.to_owned(),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// The child.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child")
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child()
            .try_wait()
            .unwrap_or_else(|e| panic!("try_wait: {e}"))
    }

    /// Send a signal to the child.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.exited().is_none() {
            signal(self.pid(), sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(c) = self.child.as_mut() {
            if self.own_group {
                signal_group(c.id(), libc::SIGKILL);
            }
            let _ = c.kill();
        }
        self.child()
            .wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.what))
    }

    /// Wait for exit for at most `timeout`; `None` if it is still running.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(self.child(), timeout)
    }

    /// Take the child out of the guard (the caller then owns reaping it).
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                if self.own_group {
                    signal_group(c.id(), libc::SIGKILL);
                }
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

// ----------------------------------------------------------------------------------------------
// HTTP
// ----------------------------------------------------------------------------------------------

/// An HTTP response: status, content type and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Content-Type header ("" if none).
    pub content_type: String,
    /// Body text.
    pub body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// GET `url` with an optional Accept header.
pub fn http_get(url: &str, accept: Option<&str>) -> Result<HttpResponse, String> {
    let mut req = agent().get(url);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let mut resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading body: {e}"))?;
    Ok(HttpResponse {
        status,
        content_type,
        body,
    })
}

// ----------------------------------------------------------------------------------------------
// Polling
// ----------------------------------------------------------------------------------------------

/// Call `f` until it returns `Ok`, every `interval`, for at most `timeout`; then panic with
/// `what` and the last error.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() >= timeout => {
                panic!(
                    "timed out after {:.1?} waiting for {what}; last observation:\n{e}",
                    start.elapsed()
                )
            }
            Err(_) => std::thread::sleep(interval),
        }
    }
}

// ----------------------------------------------------------------------------------------------
// The collector
// ----------------------------------------------------------------------------------------------

/// A running `shmtel collect`, killed on drop if still running.
pub struct Collector {
    guard: ChildGuard,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The region directory it collects.
    pub dir: PathBuf,
    /// Its state file.
    pub state_file: PathBuf,
    /// The file its stdout and stderr go to.
    pub log_path: PathBuf,
}

impl Collector {
    /// Start `shmtel collect --dir DIR --listen 127.0.0.1:PORT --state-file STATE` with its
    /// output appended to `log_path`, and wait until /healthz answers 200.
    pub fn start(dir: &Path, state_file: &Path, log_path: &Path) -> Collector {
        let mut last_log = String::new();
        // A port picked free can be taken by someone else before the child binds it: retry.
        for _attempt in 0..3 {
            let port = free_port();
            let log = File::options()
                .create(true)
                .append(true)
                .open(log_path)
                .expect("open the collector log");
            let mut cmd = Command::new(shmtel_bin());
            cmd.arg("collect")
                .arg("--dir")
                .arg(dir)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--state-file")
                .arg(state_file)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log);
            remove_shmtel_env(&mut cmd);
            let guard = ChildGuard::spawn(cmd, "shmtel collect", false);
            let mut c = Collector {
                guard,
                port,
                dir: dir.to_owned(),
                state_file: state_file.to_owned(),
                log_path: log_path.to_owned(),
            };
            let start = Instant::now();
            loop {
                if let Some(status) = c.guard.exited() {
                    last_log = c.log();
                    if last_log.contains("in use") {
                        break; // port taken: try another
                    }
                    panic!("shmtel collect exited with {status} before becoming healthy; its log:\n{last_log}");
                }
                match http_get(&c.url("/healthz"), None) {
                    Ok(r) if r.status == 200 => {
                        assert!(
                            r.body.contains("\"status\"") && r.body.contains("ok"),
                            "/healthz answered 200 but not {{\"status\":\"ok\"}}: {}",
                            r.body
                        );
                        return c;
                    }
                    _ if start.elapsed() > STARTUP_TIMEOUT => {
                        panic!(
                            "shmtel collect did not answer /healthz within {STARTUP_TIMEOUT:?}; its log:\n{}",
                            c.log()
                        )
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        panic!("shmtel collect could not bind a port in 3 attempts; last log:\n{last_log}");
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET /metrics (Prometheus text unless `accept` says otherwise).
    pub fn metrics_text(&self, accept: Option<&str>) -> Result<HttpResponse, String> {
        let r = http_get(&self.url("/metrics"), accept)?;
        if r.status != 200 {
            return Err(format!("GET /metrics: status {}: {}", r.status, r.body));
        }
        Ok(r)
    }

    /// Scrape and parse /metrics.
    pub fn try_scrape(&self) -> Result<Metrics, String> {
        let r = self.metrics_text(None)?;
        Metrics::parse(&r.body)
    }

    /// Scrape and parse /metrics; panic on failure.
    pub fn scrape(&mut self) -> Metrics {
        self.assert_running();
        self.try_scrape()
            .unwrap_or_else(|e| panic!("scrape failed: {e}\ncollector log:\n{}", self.log_tail()))
    }

    /// Scrape until `check` returns `Ok`, for at most `timeout`; then panic with the last error
    /// and the relevant part of the last scrape. Also fails at once if the collector exits.
    pub fn wait_metrics(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Metrics) -> Result<(), String>,
    ) -> Metrics {
        let start = Instant::now();
        loop {
            self.assert_running();
            let last = match self.try_scrape() {
                Ok(m) => match check(&m) {
                    Ok(()) => return m,
                    Err(e) => format!(
                        "{e}\n--- last scrape (shmtel_/loadgen_ samples) ---\n{}",
                        m.relevant()
                    ),
                },
                Err(e) => e,
            };
            if start.elapsed() >= timeout {
                panic!(
                    "timed out after {:.1?} waiting for {what}:\n{last}\n--- collector log (tail) ---\n{}",
                    start.elapsed(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Like [`Collector::wait_metrics`], but fails at once, with the collector's log, if a
    /// region is rejected for a reason not in `allowed`: waiting cannot bring its data back.
    pub fn wait_exact(
        &mut self,
        what: &str,
        timeout: Duration,
        allowed: &[&str],
        mut check: impl FnMut(&Metrics) -> Result<(), String>,
    ) -> Metrics {
        let log_path = self.log_path.clone();
        self.wait_metrics(what, timeout, |m| {
            if let Err(e) = unexpected_rejections(m, allowed) {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "{e}\n--- last scrape ---\n{}\n--- collector log ---\n{}",
                    m.relevant(),
                    tail_lines(&log, 60)
                );
            }
            check(m)
        })
    }

    /// Panic (with its log) if the collector has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.guard.exited() {
            panic!(
                "the collector exited unexpectedly with {status}; its log:\n{}",
                self.log_tail()
            );
        }
    }

    /// The last 60 lines of its log.
    pub fn log_tail(&self) -> String {
        tail_lines(&self.log(), 60)
    }

    /// SIGTERM, then wait for exit; panics if it does not exit within [`EXIT_TIMEOUT`].
    pub fn terminate(mut self) -> ExitStatus {
        self.guard.signal(libc::SIGTERM);
        match self.guard.wait(EXIT_TIMEOUT) {
            Some(s) => s,
            None => {
                let log = self.log_tail();
                self.guard.kill();
                panic!("the collector did not exit within {EXIT_TIMEOUT:?} of SIGTERM; its log:\n{log}")
            }
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running `shmtel collect --config FILE`, killed on drop. The file holds `dir`, `listen` and
/// `state_file` (the sandbox's), then the test's own TOML; the child gets a clean environment
/// (no `SHMTEL_*`, no `OTEL_*`) plus what the test passes.
pub struct ConfiguredCollector {
    guard: ChildGuard,
    port: u16,
    /// Where its stdout goes (the default log sink writes there).
    stdout: PathBuf,
    /// Where its stderr (its own diagnostics) goes; the same file as `stdout` unless started
    /// with [`ConfiguredCollector::start_split`].
    stderr: PathBuf,
}

impl ConfiguredCollector {
    /// Start it with stdout and stderr both appended to `collector.log` in the sandbox, and
    /// wait until /healthz answers 200.
    pub fn start(sb: &Sandbox, extra_toml: &str, env: &[(&str, &str)]) -> ConfiguredCollector {
        let log = sb.path("collector.log");
        Self::spawn(sb, extra_toml, env, &log, &log)
    }

    /// Like [`ConfiguredCollector::start`], but stdout to `collector.out` and stderr to
    /// `collector.err`, so that stdout holds only what the log sink wrote.
    pub fn start_split(
        sb: &Sandbox,
        extra_toml: &str,
        env: &[(&str, &str)],
    ) -> ConfiguredCollector {
        Self::spawn(
            sb,
            extra_toml,
            env,
            &sb.path("collector.out"),
            &sb.path("collector.err"),
        )
    }

    fn spawn(
        sb: &Sandbox,
        extra_toml: &str,
        env: &[(&str, &str)],
        stdout: &Path,
        stderr: &Path,
    ) -> ConfiguredCollector {
        let open = |p: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let mut last = String::new();
        // A port picked free can be taken by someone else before the child binds it: retry.
        for attempt in 0..3 {
            let port = free_port();
            let config = sb.path(&format!("collector-{attempt}.toml"));
            std::fs::write(
                &config,
                format!(
                    "dir = {:?}\nlisten = \"127.0.0.1:{port}\"\nstate_file = {:?}\n{extra_toml}\n",
                    sb.regions(),
                    sb.state_file()
                ),
            )
            .expect("write the config");
            let out = open(stdout);
            let err = if stdout == stderr {
                out.try_clone().expect("dup the log")
            } else {
                open(stderr)
            };
            let mut cmd = Command::new(shmtel_bin());
            cmd.arg("collect")
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            remove_shmtel_env(&mut cmd);
            for (k, _) in std::env::vars_os() {
                if k.to_str().is_some_and(|k| k.starts_with("OTEL_")) {
                    cmd.env_remove(k);
                }
            }
            cmd.envs(env.iter().copied());
            let mut c = ConfiguredCollector {
                guard: ChildGuard::spawn(cmd, "shmtel collect", false),
                port,
                stdout: stdout.to_owned(),
                stderr: stderr.to_owned(),
            };
            let start = Instant::now();
            loop {
                if let Some(status) = c.guard.exited() {
                    last = std::fs::read_to_string(&c.stderr).unwrap_or_default();
                    if last.contains("in use") {
                        break; // port taken: try another
                    }
                    panic!("shmtel collect exited with {status}; its log:\n{last}");
                }
                if matches!(http_get(&c.url("/healthz"), None), Ok(h) if h.status == 200) {
                    return c;
                }
                assert!(
                    start.elapsed() < STARTUP_TIMEOUT,
                    "shmtel collect did not become healthy; its log:\n{}",
                    c.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("shmtel collect could not bind a port in 3 attempts; last log:\n{last}");
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The last 60 lines of its log (stderr).
    pub fn log(&self) -> String {
        tail_lines(
            &std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            60,
        )
    }

    /// Its stdout so far, as lines.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Wait until stdout has at least `n` complete lines; returns them.
    pub fn wait_lines(&mut self, n: usize) -> Vec<String> {
        poll(
            &format!("{n} lines on the collector's stdout"),
            SETTLE_TIMEOUT,
            Duration::from_millis(100),
            || {
                self.assert_running();
                let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
                let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
                let lines: Vec<String> = complete.lines().map(str::to_owned).collect();
                if lines.len() >= n {
                    Ok(lines)
                } else {
                    Err(format!(
                        "{} lines so far:\n{}",
                        lines.len(),
                        tail_lines(complete, 10)
                    ))
                }
            },
        )
    }

    /// Panic (with its log) if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.guard.exited() {
            panic!("the collector exited with {s}; its log:\n{}", self.log());
        }
    }

    /// GET /metrics (`accept`: Prometheus text when `None`); panics unless it answers 200.
    pub fn metrics(&mut self, accept: Option<&str>) -> String {
        self.assert_running();
        let r = http_get(&self.url("/metrics"), accept).expect("GET /metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Scrape and parse /metrics.
    pub fn scrape(&mut self) -> Metrics {
        Metrics::parse(&self.metrics(None)).expect("parse /metrics")
    }

    /// SIGTERM and wait (the exporters and sinks flush); panics if it does not exit within
    /// [`EXIT_TIMEOUT`].
    pub fn terminate(mut self) -> ExitStatus {
        self.guard.signal(libc::SIGTERM);
        self.guard.wait(EXIT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "the collector did not exit after SIGTERM; its log:\n{}",
                self.log()
            )
        })
    }
}

/// Run `shmtel ARGS...` to completion (timeout 60 s); returns (status, stdout, stderr).
pub fn run_shmtel(args: &[&str]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(shmtel_bin());
    cmd.args(args).stdin(Stdio::null());
    remove_shmtel_env(&mut cmd);
    run_captured(cmd, "shmtel", Duration::from_secs(60))
}

/// Run a command to completion with stdout and stderr captured (through files, so a chatty
/// child cannot block on a full pipe); panics on timeout.
pub fn run_captured(
    mut cmd: Command,
    what: &str,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let out = tempfile::tempfile().expect("tempfile");
    let err = tempfile::tempfile().expect("tempfile");
    cmd.stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"));
    let mut g = ChildGuard::spawn(cmd, what, true);
    let status = g
        .wait(timeout)
        .unwrap_or_else(|| panic!("{what} did not finish within {timeout:?}"));
    (status, read_all(out), read_all(err))
}

fn read_all(mut f: File) -> String {
    use std::io::{Read, Seek};
    let mut s = String::new();
    f.rewind().expect("rewind");
    f.read_to_string(&mut s).expect("read captured output");
    s
}

// ----------------------------------------------------------------------------------------------
// /metrics parsing
// ----------------------------------------------------------------------------------------------

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample name (with `_total`, `_bucket`, ... suffixes as exposed).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed exposition: samples keyed by `name{k="v",...}` (label keys sorted; `name` alone
/// without labels).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The raw text.
    pub text: String,
    /// `name{labels}` -> value.
    pub samples: BTreeMap<String, f64>,
    list: Vec<Sample>,
}

/// The canonical key of a sample: `name{a="x",b="y"}` with sorted label keys.
pub fn sample_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let mut chars = line.char_indices().peekable();
    let mut name_end = line.len();
    while let Some(&(i, c)) = chars.peek() {
        if !is_name_char(c, i == 0) {
            name_end = i;
            break;
        }
        chars.next();
    }
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let b = after.as_bytes();
        let mut i = 0;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b',') {
                i += 1;
            }
            if i < b.len() && b[i] == b'}' {
                i += 1;
                break;
            }
            let k0 = i;
            while i < b.len() && is_name_char(b[i] as char, i == k0) {
                i += 1;
            }
            let key = &after[k0..i];
            if key.is_empty() || i + 1 >= b.len() || b[i] != b'=' || b[i + 1] != b'"' {
                return Err(format!("malformed label set near {:?}", &after[k0..]));
            }
            i += 2;
            let mut val = String::new();
            loop {
                match b.get(i) {
                    None => return Err("unterminated label value".into()),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        match b.get(i + 1) {
                            Some(b'n') => val.push('\n'),
                            Some(b'\\') => val.push('\\'),
                            Some(b'"') => val.push('"'),
                            other => return Err(format!("bad escape {other:?} in label value")),
                        }
                        i += 2;
                    }
                    Some(_) => {
                        // Copy one UTF-8 character.
                        let ch = after[i..].chars().next().expect("char");
                        val.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if labels.insert(key.to_owned(), val).is_some() {
                return Err(format!("label {key} repeated"));
            }
        }
        rest = &after[i..];
    }
    // Value, then an optional timestamp; an OpenMetrics exemplar starts with '#'.
    let rest = rest.split(" #").next().unwrap_or("");
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

impl Metrics {
    /// Parse Prometheus text (0.0.4) or OpenMetrics text. Comments and `# EOF` are skipped; a
    /// malformed line or a repeated sample is an error.
    pub fn parse(text: &str) -> Result<Metrics, String> {
        let mut samples = BTreeMap::new();
        let mut list = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let s =
                parse_line(line).map_err(|e| format!("/metrics line {}: {e}: {line:?}", n + 1))?;
            let key = sample_key(&s.name, &s.labels);
            if samples.insert(key.clone(), s.value).is_some() {
                return Err(format!(
                    "/metrics line {}: sample {key} appears twice",
                    n + 1
                ));
            }
            list.push(s);
        }
        Ok(Metrics {
            text: text.to_owned(),
            samples,
            list,
        })
    }

    /// The value of the sample with this exact key.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.samples.get(key).copied()
    }

    /// All samples named `name`.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.list.iter().filter(move |s| s.name == name)
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.series(name).next().is_some()
    }

    /// Sum of all samples named `name` whose labels include every `(key, value)` of `filter`.
    pub fn sum_where(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.series(name)
            .filter(|s| {
                filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(|x| x.as_str()) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Sum of all samples named `name`, whatever their labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.sum_where(name, &[])
    }

    /// Sum of all samples named `name`, or an error if there is none.
    pub fn require_sum(&self, name: &str) -> Result<f64, String> {
        if !self.has(name) {
            return Err(format!("{name} is absent from /metrics"));
        }
        Ok(self.sum(name))
    }

    /// The `shmtel_` and `loadgen_` samples, one per line (for failure messages).
    pub fn relevant(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.samples {
            if (k.starts_with("shmtel_") || k.starts_with("loadgen_")) && !k.contains("_bucket") {
                out.push_str(&format!("{k} {v}\n"));
            }
        }
        out
    }
}

/// `Err` naming every `shmtel_regions_rejected_total{reason}` sample above 0 whose reason is
/// not in `allowed`.
pub fn unexpected_rejections(m: &Metrics, allowed: &[&str]) -> Result<(), String> {
    let bad: Vec<String> = m
        .series("shmtel_regions_rejected_total")
        .filter(|s| s.value > 0.0)
        .filter(|s| !allowed.contains(&s.labels.get("reason").map(|r| r.as_str()).unwrap_or("")))
        .map(|s| format!("{} {}", sample_key(&s.name, &s.labels), s.value))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the collector rejected regions written by a healthy writer: {}",
            bad.join(", ")
        ))
    }
}

/// `Err` describing the mismatch unless `actual == expected` exactly.
pub fn expect_eq(what: &str, actual: f64, expected: f64) -> Result<(), String> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "{what}: /metrics says {actual}, expected exactly {expected} (difference {})",
            actual - expected
        ))
    }
}

// ----------------------------------------------------------------------------------------------
// loadgen
// ----------------------------------------------------------------------------------------------

/// What one loadgen run says it committed (its JSON line).
#[derive(Debug, Clone, Default)]
pub struct LoadgenReport {
    /// Process id.
    pub pid: u32,
    /// Threads.
    pub threads: u64,
    /// Iterations per thread.
    pub ops: u64,
    /// `loadgen_ops_total` summed over threads.
    pub ops_total: u64,
    /// `loadgen_bytes_total`.
    pub bytes_total: u64,
    /// Histogram observations made.
    pub histogram_count: u64,
    /// Sum of the observed values.
    pub histogram_sum: f64,
    /// Spans ended.
    pub spans: u64,
    /// Log events emitted.
    pub logs: u64,
    /// Spans dropped because the ring was full.
    pub dropped_spans: u64,
    /// Log events dropped because the ring was full.
    pub dropped_logs: u64,
    /// Histogram observations and business events dropped because the ring was full.
    pub dropped_other: u64,
    /// Counter/gauge updates that went to overflow slots.
    pub coalesced: u64,
    /// The raw line.
    pub raw: String,
}

impl LoadgenReport {
    /// Parse loadgen's JSON line.
    pub fn parse(line: &str) -> Result<LoadgenReport, String> {
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .map_err(|e| format!("loadgen output {line:?}: {e}"))?;
        let u = |path: &[&str]| -> Result<u64, String> {
            let mut x = &v;
            for p in path {
                x = x
                    .get(p)
                    .ok_or_else(|| format!("loadgen output lacks {}: {line}", path.join(".")))?;
            }
            x.as_u64().ok_or_else(|| {
                format!(
                    "loadgen output {} is not an integer: {line}",
                    path.join(".")
                )
            })
        };
        Ok(LoadgenReport {
            pid: u(&["pid"])? as u32,
            threads: u(&["threads"])?,
            ops: u(&["ops"])?,
            ops_total: u(&["counters", "loadgen_ops_total"])?,
            bytes_total: u(&["counters", "loadgen_bytes_total"])?,
            histogram_count: u(&["histogram_count"])?,
            histogram_sum: v
                .get("histogram_sum")
                .and_then(|x| x.as_f64())
                .ok_or_else(|| format!("loadgen output lacks histogram_sum: {line}"))?,
            spans: u(&["spans"])?,
            logs: u(&["logs"])?,
            dropped_spans: u(&["dropped_spans"])?,
            dropped_logs: u(&["dropped_logs"])?,
            dropped_other: u(&["dropped_other"])?,
            coalesced: u(&["coalesced"])?,
            raw: line.trim().to_owned(),
        })
    }
}

/// Sums over several loadgen reports.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Σ ops_total.
    pub ops_total: u64,
    /// Σ bytes_total.
    pub bytes_total: u64,
    /// Σ histogram_count.
    pub histogram_count: u64,
    /// Σ histogram_sum.
    pub histogram_sum: f64,
    /// Σ spans.
    pub spans: u64,
    /// Σ logs.
    pub logs: u64,
    /// Σ dropped_spans.
    pub dropped_spans: u64,
    /// Σ dropped_logs.
    pub dropped_logs: u64,
    /// Σ dropped_other.
    pub dropped_other: u64,
    /// Σ coalesced.
    pub coalesced: u64,
}

impl Totals {
    /// Add up reports.
    pub fn of(reports: &[LoadgenReport]) -> Totals {
        let mut t = Totals::default();
        for r in reports {
            t.ops_total += r.ops_total;
            t.bytes_total += r.bytes_total;
            t.histogram_count += r.histogram_count;
            t.histogram_sum += r.histogram_sum;
            t.spans += r.spans;
            t.logs += r.logs;
            t.dropped_spans += r.dropped_spans;
            t.dropped_logs += r.dropped_logs;
            t.dropped_other += r.dropped_other;
            t.coalesced += r.coalesced;
        }
        t
    }
}

/// A running loadgen process; killed on drop if still running.
pub struct Loadgen {
    guard: ChildGuard,
    out: File,
    err: File,
    args: Vec<String>,
}

impl Loadgen {
    /// Start `loadgen --dir DIR ARGS...` with extra environment `env` (the ring size, ...).
    /// `SHMTEL_*` variables of the test's own environment are not passed on.
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Loadgen {
        let out = tempfile::tempfile().expect("tempfile");
        let err = tempfile::tempfile().expect("tempfile");
        let mut cmd = Command::new(loadgen_bin());
        cmd.arg("--dir").arg(dir).args(args).stdin(Stdio::null());
        remove_shmtel_env(&mut cmd);
        cmd.envs(env.iter().copied());
        cmd.stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"));
        let guard = ChildGuard::spawn(cmd, "loadgen", false);
        Loadgen {
            guard,
            out,
            err,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.guard.exited().is_some()
    }

    /// SIGKILL it and reap it.
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// Wait for it to finish successfully and parse its report.
    pub fn report(mut self, timeout: Duration) -> LoadgenReport {
        let status = self
            .guard
            .wait(timeout)
            .unwrap_or_else(|| panic!("loadgen {:?} did not finish within {timeout:?}", self.args));
        let out = read_all(self.out.try_clone().expect("dup"));
        let err = read_all(self.err.try_clone().expect("dup"));
        assert!(
            status.success(),
            "loadgen {:?} failed with {status}; stderr:\n{err}\nstdout:\n{out}",
            self.args
        );
        let line = out
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "loadgen {:?} printed no JSON line; stdout:\n{out}\nstderr:\n{err}",
                    self.args
                )
            });
        LoadgenReport::parse(line).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Run loadgen to completion and return its report.
pub fn run_loadgen(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> LoadgenReport {
    Loadgen::spawn(dir, args, env).report(LOADGEN_TIMEOUT)
}

// ----------------------------------------------------------------------------------------------
// Region files
// ----------------------------------------------------------------------------------------------

/// Region files (names that parse as `<pid>-<start>.table` or `<pid>-<start>-<tid>-<seq>.ring`)
/// in `dir`, with what their names say, sorted by path.
pub fn region_files(dir: &Path) -> Vec<(PathBuf, RegionName)> {
    let mut out: Vec<(PathBuf, RegionName)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str().and_then(RegionName::parse)?;
                Some((e.path(), name))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read_dir {}: {e}", dir.display()),
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Ring files of `pid` in `dir`, sorted by path.
pub fn ring_files_of(dir: &Path, pid: u32) -> Vec<PathBuf> {
    region_files(dir)
        .into_iter()
        .filter(|(_, n)| matches!(n, RegionName::Ring { .. }) && n.process().0 == pid)
        .map(|(p, _)| p)
        .collect()
}

/// The table file of `pid` in `dir`.
pub fn table_file_of(dir: &Path, pid: u32) -> Option<PathBuf> {
    region_files(dir)
        .into_iter()
        .find(|(_, n)| matches!(n, RegionName::Table { .. }) && n.process().0 == pid)
        .map(|(p, _)| p)
}

/// Region files in `dir` that belong to one of `pids`.
pub fn region_files_of(dir: &Path, pids: &HashSet<u32>) -> Vec<PathBuf> {
    region_files(dir)
        .into_iter()
        .filter(|(_, n)| pids.contains(&n.process().0))
        .map(|(p, _)| p)
        .collect()
}

/// Wait until no region file of `pids` is left in `dir`; returns how long that took. Panics
/// with the remaining files after `timeout`.
pub fn wait_region_files_gone(dir: &Path, pids: &HashSet<u32>, timeout: Duration) -> Duration {
    let start = Instant::now();
    poll(
        "the dead writers' region files to be removed",
        timeout,
        Duration::from_millis(100),
        || {
            let left = region_files_of(dir, pids);
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} file(s) still present: {left:#?}", left.len()))
            }
        },
    );
    start.elapsed()
}

/// Write bytes at `offset` of a file.
pub fn patch_file(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all_at(bytes, offset)
        .unwrap_or_else(|e| panic!("patch {}: {e}", path.display()));
}

/// Read a little-endian u64 at `offset` of a file.
pub fn read_u64_at(path: &Path, offset: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, offset)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_openmetrics_samples() {
        let text =
            "# HELP a_total A.\n# TYPE a_total counter\na_total{b=\"x\",a=\"y\\\"z\\\\\"} 3\n\
                    h_bucket{le=\"+Inf\"} 4 1700000000000\nh_sum 1.5e3\ng NaN\n\
                    c_total 2.0 # {trace_id=\"ab\"} 1.0 1.7e9\n# EOF\n";
        let m = Metrics::parse(text).expect("parse");
        assert_eq!(m.get("a_total{a=\"y\\\"z\\\\\",b=\"x\"}"), Some(3.0));
        assert_eq!(m.get("h_bucket{le=\"+Inf\"}"), Some(4.0));
        assert_eq!(m.get("h_sum"), Some(1500.0));
        assert!(m.get("g").expect("g").is_nan());
        assert_eq!(m.get("c_total"), Some(2.0));
        assert_eq!(m.sum_where("a_total", &[("b", "x")]), 3.0);
        assert!(
            Metrics::parse("x 1\nx 2\n").is_err(),
            "a repeated sample is an error"
        );
        assert!(Metrics::parse("x{a=\"1} 1\n").is_err());
    }
}
