//! The `shmtel collect` configuration: flags, environment, a TOML file, defaults.
//!
//! Precedence, highest first: command-line flags, environment variables (`SHMTEL_DIR`,
//! `SHMTEL_LISTEN`, `SHMTEL_CONFIG`, `SHMTEL_STATE_FILE`, `SHMTEL_SERVICE`), the TOML file named
//! by `--config`/`SHMTEL_CONFIG`, then the defaults below. Flags and environment are resolved by
//! clap ([`CollectArgs`]); [`Config::load`] lays them over the file.
//!
//! A complete file, every key at its default (all keys are optional, unknown keys are errors):
//!
//! ```toml
//! service = "default"              # names the default dir
//! dir = "/dev/shm/shmtel/default"  # default: /dev/shm/shmtel/<service>
//! listen = "127.0.0.1:9464"
//! state_file = "/dev/shm/shmtel/default/.collector-state.json"  # default: <dir>/.collector-state.json
//! dead_process_grace_ms = 1000     # a dead writer's regions are kept this long after draining
//!
//! [poll]                           # the drain loop's polling (see drain::DrainOptions)
//! min_sleep_ms = 5                 # first pause after a pass that found work (batching;
//!                                  # halves while a ring fills over 1/8 per pause, doubles up
//!                                  # to max_sleep_ms while all stay under 1/16; skipped while
//!                                  # a ring is over a quarter full), first idle sleep
//! max_sleep_ms = 50                # idle sleeps double from min to max
//! spin_iterations = 0              # empty polls spent spinning, then...
//! yield_iterations = 0             # ...yielding, before sleeping; either > 0 also drops the
//!                                  # pause after work: lowest latency, costs up to a core
//! discover_interval_ms = 50        # how often the directory is rescanned for new regions
//!
//! [limits]
//! max_series = 100000              # series held by the aggregator; beyond, an overflow series
//! max_pending_spans = 100000       # spans queued for export; beyond, dropped and counted
//!
//! [histograms."http_request_duration_seconds"]  # per-histogram overrides, by family name
//! buckets = [0.005, 0.01, 0.1, 1.0]             # replaces the writer's bounds (+Inf implied)
//! quantiles = [0.5, 0.9, 0.99]                  # also expose these quantiles (hdrhistogram)
//!
//! [gauges."in_progress"]                        # per-gauge merge mode override
//! mode = "livesum"
//!
//! [export]                         # span exporters; each [export.*] section enables one
//! service_version = "1.4.2"        # service.version resource attribute (default: none)
//! resource_attributes = { "deployment.environment" = "prod" }
//!
//! [export.otlp]                    # OTLP/HTTP protobuf (OTEL_EXPORTER_OTLP_* env vars override)
//! endpoint = "http://localhost:4318"   # base URL, /v1/traces appended; https:// uses TLS
//! headers = { "api-key" = "secret" }
//! compression = "gzip"             # or "none"
//! timeout_ms = 10000
//! batch_size = 512
//! batch_timeout_ms = 1000
//! queue_size = 4096                # spans held; beyond, dropped and counted
//! max_retry_elapsed_ms = 30000     # retries on 429/502/503/504/connection errors only
//!
//! [export.otlp.tls]                # https:// only; the OpenTelemetry Collector's keys
//! ca_file = "/etc/shmtel/ca.pem"   # CA that verifies the server (default: Mozilla's roots)
//! cert_file = "client.pem"         # client certificate chain and key, for mutual TLS
//! key_file = "client.key"
//!
//! [export.zipkin]                  # Zipkin v2 JSON; same batching/retry keys as otlp
//! endpoint = "http://localhost:9411/api/v2/spans"
//!
//! [export.jsonl]                   # one JSON object per span
//! path = "spans.jsonl"             # appended to; "-" is stdout
//!
//! [traces.spanmetrics]             # RED metrics from spans (like the OTel spanmetrics connector)
//! enabled = true
//! expiry_ms = 300000               # a series not updated for this long is removed
//! max_series = 10000               # beyond, one series {otel_metric_overflow="true"}
//!
//! [traces.tail_sampling]           # decide which traces to export once they end
//! enabled = false
//! latency_threshold_ms = 1000      # keep traces lasting longer; 0: off
//! ratio = 0.1                      # keep this fraction of the rest (TraceIdRatioBased rule)
//! max_traces_per_second = 0        # cap on ratio-kept traces (0: none); errors and slow kept
//! decision_grace_ms = 500          # wait after the root span ends for late children
//! decision_wait_ms = 5000          # decide traces whose root never arrives after this
//! max_pending_traces = 50000       # beyond, the oldest pending trace is decided early (counted)
//! max_pending_spans = 500000       # spans buffered for decisions (not [limits] max_pending_spans,
//!                                  # which bounds spans being assembled in the drain loop)
//!
//! [logs]                           # the log pipeline (JSON lines on stdout by default)
//! format = "json"                  # json | logfmt | plain
//! schema = "shmtel"                # shmtel | ecs | otel (JSON field names)
//! reorder_window_ms = 250          # lines come out in time order within this window
//! max_pending = 65536              # lines held at most for ordering
//! min_level = "trace"              # lines below are dropped
//!
//! [logs.stdout]                    # on when no other log sink is configured, or when present
//! enabled = true
//!
//! [redaction]                      # PII redaction of logs and spans; off without this section
//! replacement = "[REDACTED]"       # deny_fields, builtin and patterns: see crate::redact
//! ```
//!
//! The `[export]` keys are listed in full in [`crate::export`], the `[traces]` keys in
//! [`crate::traces`], the `[logs]` keys in [`crate::logs`], the `[redaction]` keys in
//! [`crate::redact`].
//!
//! Relative paths in the file are relative to the file's directory; relative paths in flags and
//! environment are relative to the working directory. Errors name the file, line and key.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use shmtel_core::GaugeMode;

use crate::exposition::is_valid_metric_name;

/// Root of the default region directories: `/dev/shm/shmtel/<service>`.
pub const DEFAULT_DIR_ROOT: &str = "/dev/shm/shmtel";
/// The service whose directory is drained when none is named.
pub const DEFAULT_SERVICE: &str = "default";
/// Default HTTP listen address.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);
/// File name of the default state file, inside the region directory.
pub const DEFAULT_STATE_FILE_NAME: &str = ".collector-state.json";
/// Default quantiles of a `[histograms."<name>"]` section.
pub const DEFAULT_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Flags of `shmtel collect`; each also reads an environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct CollectArgs {
    /// Directory of region files to drain (default `/dev/shm/shmtel/<service>`).
    #[arg(
        long,
        env = "SHMTEL_DIR",
        value_name = "DIR",
        help = "Directory of region files to drain [default: /dev/shm/shmtel/<service>]"
    )]
    pub dir: Option<PathBuf>,
    /// Address to serve /metrics and /healthz on [default: 127.0.0.1:9464]
    #[arg(long, env = "SHMTEL_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TOML configuration file (see the collector README for its keys)
    #[arg(long, env = "SHMTEL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where drain positions and counter totals are saved across restarts (default
    /// `<dir>/.collector-state.json`).
    #[arg(
        long,
        env = "SHMTEL_STATE_FILE",
        value_name = "FILE",
        help = "Where drain positions and counter totals are saved across restarts \
                [default: <dir>/.collector-state.json]"
    )]
    pub state_file: Option<PathBuf>,
    /// Service name, used for the default directory [default: default]
    #[arg(long, env = "SHMTEL_SERVICE", value_name = "NAME")]
    pub service: Option<String>,
}

/// The resolved configuration of the collector.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The service name (default `default`).
    pub service: String,
    /// Directory of region files (default `/dev/shm/shmtel/<service>`).
    pub dir: PathBuf,
    /// HTTP listen address (default `127.0.0.1:9464`).
    pub listen: SocketAddr,
    /// State file (default `<dir>/.collector-state.json`).
    pub state_file: PathBuf,
    /// Adaptive polling of the drain loop.
    pub poll: PollConfig,
    /// Memory bounds.
    pub limits: LimitsConfig,
    /// Per-histogram overrides, by family name.
    pub histograms: BTreeMap<String, HistogramConfig>,
    /// Per-gauge merge-mode overrides, by family name.
    pub gauges: BTreeMap<String, GaugeConfig>,
    /// How long a dead process's drained regions are kept before cleanup, in milliseconds
    /// (default 1000).
    pub dead_process_grace_ms: u64,
    /// Span exporters (`[export.*]`; OTEL_* environment variables override).
    pub export: crate::export::ExportConfig,
    /// The span pipeline: tail sampling and span-derived RED metrics (`[traces.*]`).
    pub traces: crate::traces::TraceConfig,
    /// The log pipeline and its sinks (`[logs]`, `[logs.*]`).
    pub logs: crate::logs::LogsConfig,
    /// PII redaction of log events and spans (`[redaction]`); `None` (off) without the section.
    pub redaction: Option<crate::redact::RedactionConfig>,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
}

/// The drain loop's polling: by default a pause after a pass that found work that follows the
/// write rate (none while a ring is backlogged), and sleeps doubling from `min_sleep_ms` to
/// `max_sleep_ms` when idle; optionally spinning and yielding first, for the lowest latency (the
/// policy and its limits are described at [`crate::drain::DrainOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    /// Empty polls spent spinning before yielding (default 0). Non-zero also removes the pause
    /// after a pass that found work.
    pub spin_iterations: u32,
    /// Empty polls spent yielding before sleeping (default 0). Non-zero also removes the pause
    /// after a pass that found work.
    pub yield_iterations: u32,
    /// First pause after a pass that found work (it then follows the write rate), and first
    /// sleep when idle, in milliseconds (default 5; when only `max_sleep_ms` is set, and
    /// lower, it follows it down).
    pub min_sleep_ms: u64,
    /// Longest pause after work and longest sleep between polls when idle, in milliseconds
    /// (default 50).
    pub max_sleep_ms: u64,
    /// Interval between directory rescans for new or vanished regions, in milliseconds
    /// (default 50).
    pub discover_interval_ms: u64,
}

impl PollConfig {
    /// [`min_sleep_ms`](Self::min_sleep_ms) as a duration.
    pub fn min_sleep(&self) -> Duration {
        Duration::from_millis(self.min_sleep_ms)
    }

    /// [`max_sleep_ms`](Self::max_sleep_ms) as a duration.
    pub fn max_sleep(&self) -> Duration {
        Duration::from_millis(self.max_sleep_ms)
    }

    /// [`discover_interval_ms`](Self::discover_interval_ms) as a duration.
    pub fn discover_interval(&self) -> Duration {
        Duration::from_millis(self.discover_interval_ms)
    }
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            spin_iterations: 0,
            yield_iterations: 0,
            min_sleep_ms: 5,
            max_sleep_ms: 50,
            discover_interval_ms: 50,
        }
    }
}

/// Memory bounds of the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Series the aggregator holds (default 100000); updates to further series go to an
    /// overflow series and are counted.
    pub max_series: usize,
    /// Spans queued for export (default 100000); further spans are dropped and counted.
    pub max_pending_spans: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_series: 100_000,
            max_pending_spans: 100_000,
        }
    }
}

/// Overrides for one histogram family.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramConfig {
    /// Bucket upper bounds replacing the writer's, finite and strictly increasing (`+Inf` is
    /// always added); `None` keeps the writer's bounds.
    pub buckets: Option<Vec<f64>>,
    /// Quantiles in `[0, 1]` computed from an hdrhistogram of the observations and exposed
    /// beside the buckets (default `[0.5, 0.9, 0.99]`; `[]` for none).
    pub quantiles: Vec<f64>,
}

impl Default for HistogramConfig {
    fn default() -> Self {
        HistogramConfig {
            buckets: None,
            quantiles: DEFAULT_QUANTILES.to_vec(),
        }
    }
}

/// Override for one gauge family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeConfig {
    /// How the gauge's values from several processes are merged (prometheus_client's
    /// multiprocess modes; `live*` only count processes that are still running).
    pub mode: GaugeMode,
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The configuration file could not be read.
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    Parse {
        /// The file.
        file: PathBuf,
        /// 1-based line and column of the error, when known.
        position: Option<(usize, usize)>,
        /// What is wrong (from the TOML parser).
        message: String,
    },
    /// A value is well-formed but not acceptable.
    Invalid {
        /// Where it came from: a file and 1-based line, or `None` for flags and environment.
        file: Option<(PathBuf, usize)>,
        /// The key (`poll.max_sleep_ms`, `histograms."lat".buckets`, `--service`, ...).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, source } => {
                write!(f, "cannot read config file {}: {source}", file.display())
            }
            ConfigError::Parse {
                file,
                position,
                message,
            } => {
                write!(f, "{}", file.display())?;
                if let Some((line, column)) = position {
                    write!(f, ":{line}:{column}")?;
                }
                write!(f, ": {}", message.trim_end())
            }
            ConfigError::Invalid { file, key, message } => {
                if let Some((file, line)) = file {
                    write!(f, "{}:{line}: ", file.display())?;
                }
                write!(f, "{key}: {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Default for Config {
    /// Every setting at its default.
    fn default() -> Self {
        let dir = Path::new(DEFAULT_DIR_ROOT).join(DEFAULT_SERVICE);
        Config {
            service: DEFAULT_SERVICE.to_owned(),
            state_file: dir.join(DEFAULT_STATE_FILE_NAME),
            dir,
            listen: DEFAULT_LISTEN,
            poll: PollConfig::default(),
            limits: LimitsConfig::default(),
            histograms: BTreeMap::new(),
            gauges: BTreeMap::new(),
            dead_process_grace_ms: 1000,
            export: Default::default(),
            traces: Default::default(),
            logs: Default::default(),
            redaction: None,
            file: None,
        }
    }
}

impl Config {
    /// Resolves the configuration: `args` (flags and environment, already merged by clap) over
    /// the file `args.config` names (if any), over the defaults.
    pub fn load(args: &CollectArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    file: path.clone(),
                    source,
                })?;
                Some(FileConfig::parse(&text, path)?)
            }
            None => None,
        };
        Config::resolve(args, file)
    }

    /// Like [`load`](Self::load) with the file's text given rather than read; `path` names it
    /// in errors and anchors its relative paths.
    pub fn from_toml_str(
        args: &CollectArgs,
        text: &str,
        path: &Path,
    ) -> Result<Config, ConfigError> {
        let file = FileConfig::parse(text, path)?;
        Config::resolve(args, Some(file))
    }

    /// [`dead_process_grace_ms`](Self::dead_process_grace_ms) as a duration.
    pub fn dead_process_grace(&self) -> Duration {
        Duration::from_millis(self.dead_process_grace_ms)
    }

    fn resolve(args: &CollectArgs, file: Option<FileConfig>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut file_dir = None;
        let mut file_state_file = None;
        if let Some(file) = file {
            config.file = Some(file.path);
            if let Some(service) = file.service {
                config.service = service;
            }
            file_dir = file.dir;
            file_state_file = file.state_file;
            if let Some(listen) = file.listen {
                config.listen = listen;
            }
            config.poll = file.poll;
            config.limits = file.limits;
            config.histograms = file.histograms;
            config.gauges = file.gauges;
            config.export = file.export;
            config.traces = file.traces;
            config.logs = file.logs;
            config.redaction = file.redaction;
            if let Some(grace) = file.dead_process_grace_ms {
                config.dead_process_grace_ms = grace;
            }
        }
        if let Some(service) = &args.service {
            check_service(service).map_err(|message| ConfigError::Invalid {
                file: None,
                key: "--service / SHMTEL_SERVICE".into(),
                message,
            })?;
            config.service = service.clone();
        }
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        config.dir = args
            .dir
            .clone()
            .or(file_dir)
            .unwrap_or_else(|| Path::new(DEFAULT_DIR_ROOT).join(&config.service));
        config.state_file = args
            .state_file
            .clone()
            .or(file_state_file)
            .unwrap_or_else(|| config.dir.join(DEFAULT_STATE_FILE_NAME));
        Ok(config)
    }
}

/// A validated configuration file, before flags and environment are laid over it.
struct FileConfig {
    path: PathBuf,
    service: Option<String>,
    dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    state_file: Option<PathBuf>,
    dead_process_grace_ms: Option<u64>,
    poll: PollConfig,
    limits: LimitsConfig,
    histograms: BTreeMap<String, HistogramConfig>,
    gauges: BTreeMap<String, GaugeConfig>,
    export: crate::export::ExportConfig,
    traces: crate::traces::TraceConfig,
    logs: crate::logs::LogsConfig,
    redaction: Option<crate::redact::RedactionConfig>,
}

/// The file as written, with the source positions validation errors point at.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    service: Option<Spanned<String>>,
    dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    state_file: Option<PathBuf>,
    dead_process_grace_ms: Option<u64>,
    #[serde(default)]
    poll: RawPoll,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    histograms: BTreeMap<Spanned<String>, RawHistogram>,
    #[serde(default)]
    gauges: BTreeMap<Spanned<String>, RawGauge>,
    #[serde(default)]
    export: crate::export::ExportConfig,
    #[serde(default)]
    traces: crate::traces::TraceConfig,
    #[serde(default)]
    logs: crate::logs::LogsConfig,
    redaction: Option<crate::redact::RedactionConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPoll {
    spin_iterations: Option<u32>,
    yield_iterations: Option<u32>,
    min_sleep_ms: Option<Spanned<u64>>,
    max_sleep_ms: Option<Spanned<u64>>,
    discover_interval_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_series: Option<Spanned<usize>>,
    max_pending_spans: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistogram {
    buckets: Option<Spanned<Vec<f64>>>,
    quantiles: Option<Spanned<Vec<f64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGauge {
    mode: Spanned<String>,
}

impl FileConfig {
    fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let mut raw: RawFile = toml::from_str(text).map_err(|error| ConfigError::Parse {
            file: path.to_path_buf(),
            position: error.span().map(|span| line_column(text, span.start)),
            message: error.message().to_owned(),
        })?;
        let invalid = |span: Range<usize>, key: String, message: String| ConfigError::Invalid {
            file: Some((path.to_path_buf(), line_column(text, span.start).0)),
            key,
            message,
        };
        let section = |(key, message): (String, String)| ConfigError::Invalid {
            file: None,
            key: format!("{}: {key}", path.display()),
            message,
        };
        raw.export.validate().map_err(section)?;
        raw.traces.validate().map_err(section)?;
        raw.logs.validate().map_err(section)?;
        if let Some(r) = &raw.redaction {
            r.validate().map_err(section)?;
        }
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(Path::new(""));
        let anchor = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        raw.export.anchor_paths(base);
        raw.logs.anchor_paths(base);

        let service = match raw.service {
            Some(service) => {
                let span = service.span();
                let service = service.into_inner();
                check_service(&service).map_err(|m| invalid(span, "service".into(), m))?;
                Some(service)
            }
            None => None,
        };

        let defaults = PollConfig::default();
        let mut poll = PollConfig {
            spin_iterations: raw.poll.spin_iterations.unwrap_or(defaults.spin_iterations),
            yield_iterations: raw
                .poll
                .yield_iterations
                .unwrap_or(defaults.yield_iterations),
            ..defaults
        };
        if let Some(min) = &raw.poll.min_sleep_ms {
            poll.min_sleep_ms = *min.get_ref();
        }
        if let Some(max) = &raw.poll.max_sleep_ms {
            if *max.get_ref() == 0 {
                return Err(invalid(
                    max.span(),
                    "poll.max_sleep_ms".into(),
                    "must be at least 1 (0 would busy-poll when idle)".into(),
                ));
            }
            poll.max_sleep_ms = *max.get_ref();
            if raw.poll.min_sleep_ms.is_none() {
                // A file that only shortens the longest sleep below the default pause means
                // "never sleep longer than this": the default pause follows it down.
                poll.min_sleep_ms = poll.min_sleep_ms.min(poll.max_sleep_ms);
            }
        }
        if poll.min_sleep_ms > poll.max_sleep_ms {
            let span = raw
                .poll
                .min_sleep_ms
                .as_ref()
                .or(raw.poll.max_sleep_ms.as_ref())
                .map(Spanned::span)
                .unwrap_or(0..0);
            return Err(invalid(
                span,
                "poll.min_sleep_ms".into(),
                format!(
                    "{} is greater than poll.max_sleep_ms ({})",
                    poll.min_sleep_ms, poll.max_sleep_ms
                ),
            ));
        }
        if let Some(interval) = &raw.poll.discover_interval_ms {
            if *interval.get_ref() == 0 {
                return Err(invalid(
                    interval.span(),
                    "poll.discover_interval_ms".into(),
                    "must be at least 1".into(),
                ));
            }
            poll.discover_interval_ms = *interval.get_ref();
        }

        let mut limits = LimitsConfig::default();
        for (value, target, key) in [
            (
                &raw.limits.max_series,
                &mut limits.max_series,
                "limits.max_series",
            ),
            (
                &raw.limits.max_pending_spans,
                &mut limits.max_pending_spans,
                "limits.max_pending_spans",
            ),
        ] {
            if let Some(value) = value {
                if *value.get_ref() == 0 {
                    return Err(invalid(
                        value.span(),
                        key.into(),
                        "must be at least 1".into(),
                    ));
                }
                *target = *value.get_ref();
            }
        }

        let mut histograms = BTreeMap::new();
        for (name, section) in raw.histograms {
            let key = format!("histograms.\"{}\"", name.get_ref());
            if !is_valid_metric_name(name.get_ref()) {
                return Err(invalid(
                    name.span(),
                    key,
                    "not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)".into(),
                ));
            }
            let mut histogram = HistogramConfig::default();
            if let Some(buckets) = section.buckets {
                check_buckets(buckets.get_ref())
                    .map_err(|m| invalid(buckets.span(), format!("{key}.buckets"), m))?;
                histogram.buckets = Some(buckets.into_inner());
            }
            if let Some(quantiles) = section.quantiles {
                check_quantiles(quantiles.get_ref())
                    .map_err(|m| invalid(quantiles.span(), format!("{key}.quantiles"), m))?;
                histogram.quantiles = quantiles.into_inner();
            }
            histograms.insert(name.into_inner(), histogram);
        }

        let mut gauges = BTreeMap::new();
        for (name, section) in raw.gauges {
            if !is_valid_metric_name(name.get_ref()) {
                return Err(invalid(
                    name.span(),
                    format!("gauges.\"{}\"", name.get_ref()),
                    "not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)".into(),
                ));
            }
            let Some(mode) = GaugeMode::parse(section.mode.get_ref()) else {
                return Err(invalid(
                    section.mode.span(),
                    format!("gauges.\"{}\".mode", name.get_ref()),
                    format!(
                        "unknown mode {:?}: expected one of all, liveall, sum, livesum, min, \
                         livemin, max, livemax, mostrecent, livemostrecent",
                        section.mode.get_ref()
                    ),
                ));
            };
            gauges.insert(name.into_inner(), GaugeConfig { mode });
        }

        Ok(FileConfig {
            path: path.to_path_buf(),
            service,
            dir: raw.dir.map(anchor),
            listen: raw.listen,
            state_file: raw.state_file.map(anchor),
            dead_process_grace_ms: raw.dead_process_grace_ms,
            poll,
            limits,
            histograms,
            gauges,
            export: raw.export,
            traces: raw.traces,
            logs: raw.logs,
            redaction: raw.redaction,
        })
    }
}

/// A service name becomes a directory name: no separators, no `.`/`..`, not empty.
fn check_service(service: &str) -> Result<(), String> {
    if service.is_empty() || service == "." || service == ".." {
        return Err(format!("{service:?} is not a usable service name"));
    }
    if service.contains(['/', '\0']) {
        return Err(format!(
            "{service:?} contains '/' or NUL; a service name is one directory name"
        ));
    }
    Ok(())
}

fn check_buckets(buckets: &[f64]) -> Result<(), String> {
    if buckets.is_empty() {
        return Err("needs at least one bound (+Inf is added automatically)".into());
    }
    if let Some(bad) = buckets.iter().find(|b| !b.is_finite()) {
        return Err(format!(
            "bounds must be finite, found {bad} (+Inf is added automatically)"
        ));
    }
    if let Some(pair) = buckets.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "bounds must be strictly increasing, found {} then {}",
            pair[0], pair[1]
        ));
    }
    Ok(())
}

fn check_quantiles(quantiles: &[f64]) -> Result<(), String> {
    if let Some(bad) = quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(format!("quantiles must be within [0, 1], found {bad}"));
    }
    for (i, q) in quantiles.iter().enumerate() {
        if quantiles[..i].contains(q) {
            return Err(format!("quantile {q} is listed twice"));
        }
    }
    Ok(())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use clap::Parser;

    use super::*;

    /// Tests that set `SHMTEL_*` variables hold this, so they do not see each other's.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    const ENV_VARS: [&str; 5] = [
        "SHMTEL_DIR",
        "SHMTEL_LISTEN",
        "SHMTEL_CONFIG",
        "SHMTEL_STATE_FILE",
        "SHMTEL_SERVICE",
    ];

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CollectArgs,
    }

    /// Parses `flags` with exactly the `env` variables among `SHMTEL_*` set.
    fn parse(flags: &[&str], env: &[(&str, &str)]) -> CollectArgs {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for var in ENV_VARS {
            std::env::remove_var(var);
        }
        for (var, value) in env {
            std::env::set_var(var, value);
        }
        let parsed = Cli::try_parse_from(std::iter::once("shmtel").chain(flags.iter().copied()));
        for var in ENV_VARS {
            std::env::remove_var(var);
        }
        parsed.unwrap().args
    }

    fn write_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("collector.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(
            &CollectArgs::default(),
            text,
            Path::new("/etc/shmtel/c.toml"),
        )
    }

    #[test]
    fn defaults() {
        let config = Config::load(&parse(&[], &[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.dir, Path::new("/dev/shm/shmtel/default"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(
            config.state_file,
            Path::new("/dev/shm/shmtel/default/.collector-state.json")
        );
        assert_eq!(config.poll, PollConfig::default());
        assert_eq!(config.poll.spin_iterations, 0);
        assert_eq!(config.poll.yield_iterations, 0);
        assert_eq!(config.poll.min_sleep(), Duration::from_millis(5));
        assert_eq!(config.poll.max_sleep(), Duration::from_millis(50));
        assert_eq!(config.poll.discover_interval(), Duration::from_millis(50));
        assert_eq!(config.limits.max_series, 100_000);
        assert_eq!(config.limits.max_pending_spans, 100_000);
        assert_eq!(config.dead_process_grace(), Duration::from_secs(1));
        assert!(config.histograms.is_empty() && config.gauges.is_empty());
    }

    #[test]
    fn service_names_the_default_dir_and_state_file() {
        let config = Config::load(&parse(&["--service", "shop"], &[])).unwrap();
        assert_eq!(config.dir, Path::new("/dev/shm/shmtel/shop"));
        assert_eq!(
            config.state_file,
            Path::new("/dev/shm/shmtel/shop/.collector-state.json")
        );
        let config = Config::load(&parse(&[], &[("SHMTEL_SERVICE", "api")])).unwrap();
        assert_eq!(config.dir, Path::new("/dev/shm/shmtel/api"));
        // --dir moves the state file along.
        let config = Config::load(&parse(&["--dir", "/tmp/regions"], &[])).unwrap();
        assert_eq!(
            config.state_file,
            Path::new("/tmp/regions/.collector-state.json")
        );
    }

    #[test]
    fn a_short_max_sleep_alone_lowers_the_default_pause() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_file(tmp.path(), "[poll]\nmax_sleep_ms = 2\n");
        let config = Config::load(&parse(&["--config", file.to_str().unwrap()], &[])).unwrap();
        assert_eq!((config.poll.min_sleep_ms, config.poll.max_sleep_ms), (2, 2));
        let file = write_file(tmp.path(), "[poll]\nmax_sleep_ms = 20\n");
        let config = Config::load(&parse(&["--config", file.to_str().unwrap()], &[])).unwrap();
        assert_eq!(
            (config.poll.min_sleep_ms, config.poll.max_sleep_ms),
            (5, 20)
        );
    }

    #[test]
    fn precedence_flags_over_env_over_file_over_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write_file(
            tmp.path(),
            "service = \"from-file\"\nlisten = \"127.0.0.1:1111\"\nstate_file = \"state.json\"\n\
             dead_process_grace_ms = 250\n[poll]\nmax_sleep_ms = 20\n",
        );
        let file = file.to_str().unwrap();

        // File over defaults (the relative state file is anchored at the file's directory).
        let config = Config::load(&parse(&["--config", file], &[])).unwrap();
        assert_eq!(config.service, "from-file");
        assert_eq!(config.dir, Path::new("/dev/shm/shmtel/from-file"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:1111");
        assert_eq!(config.state_file, tmp.path().join("state.json"));
        assert_eq!(config.dead_process_grace_ms, 250);
        assert_eq!(config.poll.max_sleep_ms, 20);
        assert_eq!(config.poll.min_sleep_ms, 5);
        assert_eq!(config.file.as_deref(), Some(Path::new(file)));

        // Environment over file (the config file itself named by the environment too).
        let env = [
            ("SHMTEL_CONFIG", file),
            ("SHMTEL_LISTEN", "127.0.0.1:2222"),
            ("SHMTEL_SERVICE", "from-env"),
            ("SHMTEL_STATE_FILE", "/tmp/env-state.json"),
        ];
        let config = Config::load(&parse(&[], &env)).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:2222");
        assert_eq!(config.dir, Path::new("/dev/shm/shmtel/from-env"));
        assert_eq!(config.state_file, Path::new("/tmp/env-state.json"));
        assert_eq!(config.poll.max_sleep_ms, 20);

        // Flags over environment.
        let flags = [
            "--listen",
            "127.0.0.1:3333",
            "--dir",
            "/tmp/flag-dir",
            "--state-file",
            "/tmp/flag-state.json",
        ];
        let env = [
            ("SHMTEL_CONFIG", file),
            ("SHMTEL_LISTEN", "127.0.0.1:2222"),
            ("SHMTEL_DIR", "/tmp/env-dir"),
            ("SHMTEL_STATE_FILE", "/tmp/env-state.json"),
        ];
        let config = Config::load(&parse(&flags, &env)).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:3333");
        assert_eq!(config.dir, Path::new("/tmp/flag-dir"));
        assert_eq!(config.state_file, Path::new("/tmp/flag-state.json"));
        assert_eq!(config.dead_process_grace_ms, 250);

        // A directory from the environment beats the file's service-derived default.
        let config = Config::load(&parse(
            &[],
            &[("SHMTEL_CONFIG", file), ("SHMTEL_DIR", "/x")],
        ))
        .unwrap();
        assert_eq!(config.dir, Path::new("/x"));
        assert_eq!(config.state_file, tmp.path().join("state.json"));
    }

    #[test]
    fn full_file() {
        let config = load_text(
            r#"
dir = "regions"
[poll]
spin_iterations = 8
yield_iterations = 2
min_sleep_ms = 2
max_sleep_ms = 100
discover_interval_ms = 500
[limits]
max_series = 10
max_pending_spans = 20
[histograms."http_request_duration_seconds"]
buckets = [0.005, 0.01, 0.1, 1.0]
[histograms."db_seconds"]
quantiles = []
[gauges."in_progress"]
mode = "livesum"
[gauges."temperature"]
mode = "mostrecent"
"#,
        )
        .unwrap();
        assert_eq!(config.dir, Path::new("/etc/shmtel/regions"));
        assert_eq!(
            config.poll,
            PollConfig {
                spin_iterations: 8,
                yield_iterations: 2,
                min_sleep_ms: 2,
                max_sleep_ms: 100,
                discover_interval_ms: 500,
            }
        );
        assert_eq!(
            config.limits,
            LimitsConfig {
                max_series: 10,
                max_pending_spans: 20
            }
        );
        let http = &config.histograms["http_request_duration_seconds"];
        assert_eq!(http.buckets.as_deref(), Some(&[0.005, 0.01, 0.1, 1.0][..]));
        assert_eq!(http.quantiles, DEFAULT_QUANTILES);
        let db = &config.histograms["db_seconds"];
        assert_eq!(db.buckets, None);
        assert!(db.quantiles.is_empty());
        assert_eq!(config.gauges["in_progress"].mode, GaugeMode::LiveSum);
        assert_eq!(config.gauges["temperature"].mode, GaugeMode::MostRecent);
    }

    fn error_text(text: &str) -> String {
        load_text(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let message = error_text("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n");
        assert!(message.starts_with("/etc/shmtel/c.toml:2:1: "), "{message}");
        assert!(message.contains("unknown field `listen_addr`"), "{message}");

        let message = error_text("[poll]\nspin_iterations = 1\nspin = 2\n");
        assert!(message.starts_with("/etc/shmtel/c.toml:3:"), "{message}");
        assert!(message.contains("unknown field `spin`"), "{message}");

        let message = error_text("[histograms.lat]\nbucket = [1.0]\n");
        assert!(message.starts_with("/etc/shmtel/c.toml:2:"), "{message}");
        assert!(message.contains("unknown field `bucket`"), "{message}");

        let message = error_text("[metrics]\n");
        assert!(message.contains("unknown field `metrics`"), "{message}");
    }

    #[test]
    fn wrong_types_name_file_and_line() {
        let message = error_text("\n[limits]\nmax_series = \"many\"\n");
        assert!(message.starts_with("/etc/shmtel/c.toml:3:"), "{message}");
        assert!(message.contains("invalid type"), "{message}");

        let message = error_text("listen = \"localhost\"\n");
        assert!(message.starts_with("/etc/shmtel/c.toml:1:"), "{message}");
        assert!(message.contains("socket address"), "{message}");

        let message = error_text("[gauges.g]\nmode = \"average\"\n");
        assert!(message.starts_with("/etc/shmtel/c.toml:2:"), "{message}");
        assert!(message.contains("livesum"), "lists the modes: {message}");

        let message = error_text("[poll]\nmin_sleep_ms = -1\n");
        assert!(message.starts_with("/etc/shmtel/c.toml:2:"), "{message}");

        let message = error_text("dir = \n");
        assert!(message.starts_with("/etc/shmtel/c.toml:1:"), "{message}");
    }

    #[test]
    fn invalid_values_name_file_line_and_key() {
        let cases = [
            (
                "[histograms.\"lat\"]\nquantiles = [0.5]\nbuckets = [1.0, 0.5]\n",
                "/etc/shmtel/c.toml:3: histograms.\"lat\".buckets: bounds must be strictly increasing",
            ),
            (
                "[histograms.lat]\nbuckets = []\n",
                "/etc/shmtel/c.toml:2: histograms.\"lat\".buckets: needs at least one bound",
            ),
            (
                "[histograms.lat]\nbuckets = [1.0, inf]\n",
                "/etc/shmtel/c.toml:2: histograms.\"lat\".buckets: bounds must be finite",
            ),
            (
                "[histograms.lat]\n\nquantiles = [0.5, 1.5]\n",
                "/etc/shmtel/c.toml:3: histograms.\"lat\".quantiles: quantiles must be within [0, 1]",
            ),
            (
                "[histograms.\"bad-name\"]\n",
                "/etc/shmtel/c.toml:1: histograms.\"bad-name\": not a valid metric name",
            ),
            (
                "[gauges.\"9lives\"]\nmode = \"all\"\n",
                "/etc/shmtel/c.toml:1: gauges.\"9lives\": not a valid metric name",
            ),
            (
                "[poll]\nmin_sleep_ms = 100\nmax_sleep_ms = 10\n",
                "/etc/shmtel/c.toml:2: poll.min_sleep_ms: 100 is greater than poll.max_sleep_ms (10)",
            ),
            (
                "[poll]\nmax_sleep_ms = 0\n",
                "/etc/shmtel/c.toml:2: poll.max_sleep_ms: must be at least 1",
            ),
            (
                "[limits]\nmax_pending_spans = 0\n",
                "/etc/shmtel/c.toml:2: limits.max_pending_spans: must be at least 1",
            ),
            (
                "service = \"../etc\"\n",
                "/etc/shmtel/c.toml:1: service: \"../etc\" contains '/'",
            ),
        ];
        for (text, expected) in cases {
            let message = error_text(text);
            assert!(
                message.starts_with(expected),
                "for {text:?}\n got: {message}\nwant: {expected}…"
            );
        }
    }

    #[test]
    fn bad_flags_and_missing_files() {
        let message = Config::load(&parse(&["--service", ".."], &[]))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("--service / SHMTEL_SERVICE: "),
            "{message}"
        );

        let error =
            Config::load(&parse(&["--config", "/nonexistent/shmtel.toml"], &[])).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }));
        assert!(
            error
                .to_string()
                .starts_with("cannot read config file /nonexistent/shmtel.toml: "),
            "{error}"
        );

        // clap rejects an unparsable address from the environment, naming the variable's value.
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("SHMTEL_LISTEN", "nowhere");
        let parsed = Cli::try_parse_from(["shmtel"]);
        std::env::remove_var("SHMTEL_LISTEN");
        let message = parsed
            .err()
            .expect("an invalid address is an error")
            .to_string();
        assert!(message.contains("nowhere"), "{message}");
    }

    #[test]
    fn logs_and_redaction_sections() {
        let config = load_text("").unwrap();
        assert_eq!(config.logs, crate::logs::LogsConfig::default());
        assert!(
            config.redaction.is_none(),
            "redaction is off without the section"
        );
        let config =
            load_text("[logs]\nschema = \"ecs\"\n[[logs.file]]\npath = \"app.log\"\n[redaction]\n")
                .unwrap();
        assert_eq!(config.logs.schema, crate::logs::Schema::Ecs);
        assert_eq!(config.logs.file[0].path, Path::new("/etc/shmtel/app.log"));
        assert_eq!(
            config.redaction,
            Some(crate::redact::RedactionConfig::default()),
            "an empty section means the defaults"
        );
        let message = error_text("[redaction]\npatterns = [{ name = \"x\", regex = \"(\" }]\n");
        assert!(
            message.contains("redaction.patterns[0].regex: invalid regular expression"),
            "{message}"
        );
        let message = error_text("[logs]\nmax_pending = 0\n");
        assert!(
            message.contains("logs.max_pending: must be at least 1"),
            "{message}"
        );
        let message = error_text("[logs]\nformat = \"xml\"\n");
        assert!(message.starts_with("/etc/shmtel/c.toml:2:"), "{message}");
        let message = error_text("[redaction]\nbogus = 1\n");
        assert!(message.contains("unknown field `bogus`"), "{message}");
    }

    #[test]
    fn line_columns() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("abc\ndé\nx", 7), (2, 3));
        assert_eq!(line_column("abc\ndé\nx", 6), (2, 2));
        assert_eq!(line_column("a\n", 99), (2, 1));
    }
}
