//! Span exporters: OTLP/HTTP protobuf, Zipkin v2 JSON, JSON lines.
//!
//! Each exporter is a [`SpanSink`] built on one shared batching sender ([`sender`]): spans are
//! batched on the drain thread (by size, and by age checked on every `tick`), handed to the
//! exporter's own sending thread over a channel, encoded once per batch ([`otlp`], [`zipkin`],
//! [`jsonl`]) and delivered ([`http`] for the network exporters, a file or stdout for JSON
//! lines). The drain loop never waits: spans beyond an exporter's `queue_size` are dropped and
//! counted. Network failures are retried with exponential backoff and jitter (429, 502, 503,
//! 504 and connection errors only, `Retry-After` honoured) until the batch's
//! `max_retry_elapsed_ms` budget runs out; other statuses fail the batch at once. At shutdown
//! each exporter gets up to 5 s to deliver what it holds.
//!
//! Self-metrics (one [`FamilyProvider`]): `shmtel_exporter_spans_total{exporter,result}` with
//! `result` one of `exported`, `failed`, `dropped`; `shmtel_exporter_retries_total{exporter}`;
//! `shmtel_exporter_queue_spans{exporter}` (spans held).
//!
//! Every exported span carries a resource: `service.name` (the writer's service, replaced by
//! `OTEL_SERVICE_NAME` when set), `service.version` (when configured), `host.name`,
//! `process.pid`, and any further `resource_attributes`.
//!
//! # Configuration
//!
//! A section enables its exporter; every key is optional. Defaults:
//!
//! ```toml
//! [export]
//! service_version = "1.4.2"        # service.version of every resource (default: none)
//! resource_attributes = { "deployment.environment" = "prod" }
//!
//! [export.otlp]                    # OTLP/HTTP protobuf
//! endpoint = "http://localhost:4318"   # base URL; /v1/traces is appended
//! # traces_endpoint = "http://collector:4318/v1/traces"  # full URL, used as is
//! headers = { "api-key" = "secret" }
//! compression = "gzip"             # or "none"
//! timeout_ms = 10000               # per request
//! batch_size = 512                 # spans per request
//! batch_timeout_ms = 1000          # longest a span waits for its batch to fill
//! queue_size = 4096                # spans held at most; beyond, dropped and counted
//! max_retry_elapsed_ms = 30000     # retry budget of one batch; 0: never retry
//! retry_initial_backoff_ms = 500   # first retry delay (x0.5..1.5 jitter), doubling...
//! retry_max_backoff_ms = 5000      # ...up to this
//! service_version = "1.4.2"        # overrides [export] service_version for OTLP
//!
//! [export.otlp.tls]                # an https:// endpoint's files (see `tls`); all optional
//! ca_file = "/etc/shmtel/ca.pem"   # CA certificates that verify the server, in place of the
//!                                  # built-in roots (Mozilla's)
//! cert_file = "/etc/shmtel/client.pem"  # client certificate chain, for mutual TLS...
//! key_file = "/etc/shmtel/client.key"   # ...and its private key
//!
//! [export.zipkin]                  # Zipkin v2 JSON
//! endpoint = "http://localhost:9411/api/v2/spans"  # /api/v2/spans added when no path
//! compression = "none"             # or "gzip"
//! # headers, timeout_ms, batch_size, batch_timeout_ms, queue_size, max_retry_elapsed_ms,
//! # retry_initial_backoff_ms, retry_max_backoff_ms, [export.zipkin.tls]: as for OTLP (same
//! # defaults)
//!
//! [export.jsonl]                   # one JSON object per span (see `jsonl`)
//! path = "/var/log/shmtel/spans.jsonl"   # appended to (created 0644); "-" is stdout
//! batch_size = 512
//! batch_timeout_ms = 100
//! queue_size = 65536
//! ```
//!
//! The OpenTelemetry SDK environment variables override the file (and an endpoint variable
//! enables the OTLP exporter without an `[export.otlp]` section):
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL, `/v1/traces` appended),
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), `OTEL_EXPORTER_OTLP_HEADERS`
//! (`k=v,k2=v2`, URL-decoded, merged over the file's), `OTEL_EXPORTER_OTLP_COMPRESSION`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT` (ms), `OTEL_EXPORTER_OTLP_CERTIFICATE`,
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (the `tls`
//! files), each also in its `OTEL_EXPORTER_OTLP_TRACES_*` form;
//! `OTEL_SERVICE_NAME` (replaces every span's service name, for all exporters);
//! `OTEL_RESOURCE_ATTRIBUTES` (`k=v,...`, added to every resource; its `service.name` and
//! `service.version` count as `OTEL_SERVICE_NAME` and `service_version`).
//!
//! `https://` endpoints go over TLS (rustls; the server verified against Mozilla's roots or
//! `tls.ca_file`, never unverified): see [`tls`].

pub mod env;
pub(crate) mod envelope;
pub mod http;
pub mod jsonl;
pub mod otlp;
pub mod resource;
pub mod sender;
pub mod stats;
pub mod tls;
pub mod zipkin;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::model::FamilyProvider;
use crate::sinks::SpanSink;

use self::env::OtelEnv;
use self::resource::ResourceInfo;
use self::sender::{BatchSettings, BatchSink};
use self::stats::{ExporterMetrics, ExporterStats};
use self::tls::TlsFiles;

/// The `[export]` section of the collector's configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// `service.version` of every resource (default none).
    pub service_version: Option<String>,
    /// Further resource attributes.
    pub resource_attributes: BTreeMap<String, String>,
    /// `[export.otlp]`: OTLP/HTTP protobuf.
    pub otlp: Option<OtlpConfig>,
    /// `[export.zipkin]`: Zipkin v2 JSON.
    pub zipkin: Option<ZipkinConfig>,
    /// `[export.jsonl]`: JSON lines to a file or stdout.
    pub jsonl: Option<JsonlConfig>,
}

/// Body compression of a network exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `content-encoding: gzip`.
    Gzip,
    /// Plain bodies.
    None,
}

/// `[export.otlp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Base URL; `/v1/traces` is appended (default `http://localhost:4318`).
    pub endpoint: String,
    /// Full traces URL, used as is (wins over `endpoint`).
    pub traces_endpoint: Option<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Default gzip.
    pub compression: Compression,
    /// Per-request timeout (default 10000).
    pub timeout_ms: u64,
    /// Spans per request (default 512).
    pub batch_size: usize,
    /// Longest a span waits for its batch (default 1000).
    pub batch_timeout_ms: u64,
    /// Spans held at most (default 4096).
    pub queue_size: usize,
    /// Retry budget of one batch (default 30000; 0 never retries).
    pub max_retry_elapsed_ms: u64,
    /// First retry delay before jitter (default 500).
    pub retry_initial_backoff_ms: u64,
    /// Longest retry delay before jitter (default 5000).
    pub retry_max_backoff_ms: u64,
    /// `service.version` for OTLP resources (wins over `[export] service_version`).
    pub service_version: Option<String>,
    /// `[export.otlp.tls]`: the files of an `https://` endpoint.
    pub tls: TlsFiles,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: "http://localhost:4318".into(),
            traces_endpoint: None,
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            timeout_ms: 10_000,
            batch_size: 512,
            batch_timeout_ms: 1000,
            queue_size: 4096,
            max_retry_elapsed_ms: 30_000,
            retry_initial_backoff_ms: 500,
            retry_max_backoff_ms: 5000,
            service_version: None,
            tls: TlsFiles::default(),
        }
    }
}

/// `[export.zipkin]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZipkinConfig {
    /// URL; `/api/v2/spans` is added when it has no path (default
    /// `http://localhost:9411/api/v2/spans`).
    pub endpoint: String,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Default none.
    pub compression: Compression,
    /// Per-request timeout (default 10000).
    pub timeout_ms: u64,
    /// Spans per request (default 512).
    pub batch_size: usize,
    /// Longest a span waits for its batch (default 1000).
    pub batch_timeout_ms: u64,
    /// Spans held at most (default 4096).
    pub queue_size: usize,
    /// Retry budget of one batch (default 30000; 0 never retries).
    pub max_retry_elapsed_ms: u64,
    /// First retry delay before jitter (default 500).
    pub retry_initial_backoff_ms: u64,
    /// Longest retry delay before jitter (default 5000).
    pub retry_max_backoff_ms: u64,
    /// `[export.zipkin.tls]`: the files of an `https://` endpoint.
    pub tls: TlsFiles,
}

impl Default for ZipkinConfig {
    fn default() -> Self {
        let o = OtlpConfig::default();
        ZipkinConfig {
            endpoint: format!("http://localhost:9411{}", zipkin::DEFAULT_PATH),
            headers: BTreeMap::new(),
            compression: Compression::None,
            timeout_ms: o.timeout_ms,
            batch_size: o.batch_size,
            batch_timeout_ms: o.batch_timeout_ms,
            queue_size: o.queue_size,
            max_retry_elapsed_ms: o.max_retry_elapsed_ms,
            retry_initial_backoff_ms: o.retry_initial_backoff_ms,
            retry_max_backoff_ms: o.retry_max_backoff_ms,
            tls: TlsFiles::default(),
        }
    }
}

/// `[export.jsonl]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlConfig {
    /// File to append to, or `-` for stdout (required).
    pub path: PathBuf,
    /// Spans per write (default 512).
    pub batch_size: usize,
    /// Longest a span waits before it is written (default 100).
    pub batch_timeout_ms: u64,
    /// Spans held at most (default 65536).
    pub queue_size: usize,
}

impl Default for JsonlConfig {
    fn default() -> Self {
        JsonlConfig {
            path: PathBuf::new(),
            batch_size: 512,
            batch_timeout_ms: 100,
            queue_size: 65_536,
        }
    }
}

/// The checks every exporter's batching keys share.
/// Batching keys of a section (`prefix`, e.g. `export.otlp` or `logs.file`); errors are
/// (key, message).
pub(crate) fn check_batching(
    prefix: &str,
    batch_size: usize,
    batch_timeout_ms: u64,
    queue_size: usize,
) -> Result<(), (String, String)> {
    let err = |k: &str, m: String| Err((format!("{prefix}.{k}"), m));
    if batch_size == 0 {
        return err("batch_size", "must be at least 1".into());
    }
    if batch_timeout_ms == 0 {
        return err("batch_timeout_ms", "must be at least 1".into());
    }
    if queue_size < batch_size {
        return err(
            "queue_size",
            format!("must be at least batch_size ({batch_size})"),
        );
    }
    Ok(())
}

/// The retry backoff keys of a section (`prefix`): the first delay at least 1 ms and at most
/// the longest.
pub(crate) fn check_backoff(prefix: &str, initial: u64, max: u64) -> Result<(), (String, String)> {
    if initial == 0 || max < initial {
        return Err((
            format!("{prefix}.retry_initial_backoff_ms"),
            format!("must be at least 1 and at most retry_max_backoff_ms ({max})"),
        ));
    }
    Ok(())
}

/// The request keys of an HTTP section (`prefix`): timeout, retry backoff, headers.
pub(crate) fn check_retry(
    prefix: &str,
    timeout_ms: u64,
    initial: u64,
    max: u64,
    headers: &BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    let key = |k: &str| format!("{prefix}.{k}");
    if timeout_ms == 0 {
        return Err((key("timeout_ms"), "must be at least 1".into()));
    }
    check_backoff(prefix, initial, max)?;
    for (k, v) in headers {
        if ureq::http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || ureq::http::HeaderValue::from_str(v).is_err()
        {
            return Err((key("headers"), format!("invalid header {k:?}")));
        }
    }
    Ok(())
}

impl OtlpConfig {
    /// The URL requests go to.
    pub fn url(&self) -> String {
        self.traces_endpoint
            .clone()
            .unwrap_or_else(|| env::traces_url(&self.endpoint))
    }

    fn batch(&self) -> BatchSettings {
        BatchSettings {
            batch_size: self.batch_size,
            batch_timeout: Duration::from_millis(self.batch_timeout_ms),
            queue_size: self.queue_size,
            initial_backoff: Duration::from_millis(self.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
            max_elapsed: Duration::from_millis(self.max_retry_elapsed_ms),
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        check_batching(
            "export.otlp",
            self.batch_size,
            self.batch_timeout_ms,
            self.queue_size,
        )?;
        check_retry(
            "export.otlp",
            self.timeout_ms,
            self.retry_initial_backoff_ms,
            self.retry_max_backoff_ms,
            &self.headers,
        )?;
        let key = if self.traces_endpoint.is_some() {
            "traces_endpoint"
        } else {
            "endpoint"
        };
        http::check_endpoint("export.otlp", key, &self.url(), &self.tls)
    }
}

impl ZipkinConfig {
    fn batch(&self) -> BatchSettings {
        BatchSettings {
            batch_size: self.batch_size,
            batch_timeout: Duration::from_millis(self.batch_timeout_ms),
            queue_size: self.queue_size,
            initial_backoff: Duration::from_millis(self.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
            max_elapsed: Duration::from_millis(self.max_retry_elapsed_ms),
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        check_batching(
            "export.zipkin",
            self.batch_size,
            self.batch_timeout_ms,
            self.queue_size,
        )?;
        check_retry(
            "export.zipkin",
            self.timeout_ms,
            self.retry_initial_backoff_ms,
            self.retry_max_backoff_ms,
            &self.headers,
        )?;
        http::check_endpoint(
            "export.zipkin",
            "endpoint",
            &zipkin::spans_url(&self.endpoint),
            &self.tls,
        )
    }
}

impl JsonlConfig {
    fn batch(&self) -> BatchSettings {
        BatchSettings {
            batch_size: self.batch_size,
            batch_timeout: Duration::from_millis(self.batch_timeout_ms),
            queue_size: self.queue_size,
            // A failing write (disk full) is retried for a while like a network send.
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(10),
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.path.as_os_str().is_empty() {
            return Err((
                "export.jsonl.path".into(),
                "is required (a file, or \"-\" for stdout)".into(),
            ));
        }
        check_batching(
            "export.jsonl",
            self.batch_size,
            self.batch_timeout_ms,
            self.queue_size,
        )
    }
}

impl ExportConfig {
    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(o) = &self.otlp {
            o.validate()?;
        }
        if let Some(z) = &self.zipkin {
            z.validate()?;
        }
        if let Some(j) = &self.jsonl {
            j.validate()?;
        }
        Ok(())
    }

    /// Make relative paths (the JSON lines file) relative to `base`, the configuration file's
    /// directory, as the rest of the file's paths are.
    pub fn anchor_paths(&mut self, base: &Path) {
        if let Some(j) = &mut self.jsonl {
            if j.path.is_relative() && j.path.as_os_str() != "-" {
                j.path = base.join(&j.path);
            }
        }
    }
}

/// The exporters a configuration asks for, and their self-metrics.
pub struct Exporters {
    /// One sink per configured exporter (each queues, batches and sends on its own thread).
    pub sinks: Vec<Box<dyn SpanSink>>,
    /// Self-metrics of the exporters (spans exported, failed, dropped, retried).
    pub metrics: Vec<Arc<dyn FamilyProvider>>,
}

/// Build the exporters `cfg` configures, with the OTEL_* environment variables laid over it.
pub fn build(cfg: &ExportConfig) -> Result<Exporters, String> {
    let env = OtelEnv::read(|k| std::env::var(k).ok())?;
    build_with_env(cfg, &env)
}

/// The configuration with the environment laid over it: the OTLP section (enabled by an
/// endpoint variable) and the resource settings.
pub fn resolve(cfg: &ExportConfig, env: &OtelEnv) -> (ExportConfig, ResourceInfo) {
    let mut cfg = cfg.clone();
    if cfg.otlp.is_none() && env.traces_endpoint.is_some() {
        cfg.otlp = Some(OtlpConfig::default());
    }
    if let Some(o) = &mut cfg.otlp {
        if let Some(url) = &env.traces_endpoint {
            o.traces_endpoint = Some(url.clone());
        }
        for (k, v) in &env.headers {
            o.headers.retain(|name, _| !name.eq_ignore_ascii_case(k));
            o.headers.insert(k.clone(), v.clone());
        }
        if let Some(c) = env.compression {
            o.compression = c;
        }
        if let Some(t) = env.timeout_ms {
            o.timeout_ms = t;
        }
        o.tls.overlay(&env.tls);
    }
    let mut resource = ResourceInfo {
        service_name: None,
        service_version: cfg.service_version.clone(),
        host_name: resource::host_name(),
        extra: cfg
            .resource_attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    for (k, v) in &env.resource_attributes {
        match k.as_str() {
            "service.name" => resource.service_name = Some(v.clone()),
            "service.version" => resource.service_version = Some(v.clone()),
            _ => {
                resource.extra.retain(|(name, _)| name != k);
                resource.extra.push((k.clone(), v.clone()));
            }
        }
    }
    if let Some(name) = &env.service_name {
        resource.service_name = Some(name.clone());
    }
    resource
        .extra
        .retain(|(k, _)| k != "service.name" && k != "service.version");
    (cfg, resource)
}

/// [`build`] with the environment given.
pub fn build_with_env(cfg: &ExportConfig, env: &OtelEnv) -> Result<Exporters, String> {
    let (cfg, resource) = resolve(cfg, env);
    cfg.validate().map_err(|(k, m)| format!("{k}: {m}"))?;
    let mut sinks: Vec<Box<dyn SpanSink>> = Vec::new();
    let mut stats = Vec::new();
    if let Some(o) = &cfg.otlp {
        let s = Arc::new(ExporterStats::new("otlp"));
        let mut res = resource.clone();
        let env_version = env
            .resource_attributes
            .iter()
            .any(|(k, _)| k == "service.version");
        if let (Some(v), false) = (&o.service_version, env_version) {
            res.service_version = Some(v.clone());
        }
        let url = o.url();
        let transport = http::HttpTransport::new(
            &url,
            "application/x-protobuf",
            o.headers.clone().into_iter().collect(),
            o.compression == Compression::Gzip,
            Duration::from_millis(o.timeout_ms),
            &o.tls,
        )
        .map_err(|e| format!("export.otlp: {e}"))?;
        let sink = BatchSink::start(o.batch(), s.clone(), otlp::OtlpEncoder::new(res), transport)?;
        tracing::info!(%url, "exporting spans over OTLP/HTTP");
        sinks.push(Box::new(sink));
        stats.push(s);
    }
    if let Some(z) = &cfg.zipkin {
        let s = Arc::new(ExporterStats::new("zipkin"));
        let url = zipkin::spans_url(&z.endpoint);
        let transport = http::HttpTransport::new(
            &url,
            "application/json",
            z.headers.clone().into_iter().collect(),
            z.compression == Compression::Gzip,
            Duration::from_millis(z.timeout_ms),
            &z.tls,
        )
        .map_err(|e| format!("export.zipkin: {e}"))?;
        let sink = BatchSink::start(
            z.batch(),
            s.clone(),
            zipkin::ZipkinEncoder::new(resource.clone()),
            transport,
        )?;
        tracing::info!(%url, "exporting spans to Zipkin");
        sinks.push(Box::new(sink));
        stats.push(s);
    }
    if let Some(j) = &cfg.jsonl {
        let s = Arc::new(ExporterStats::new("jsonl"));
        let writer =
            jsonl::LineWriter::open(&j.path).map_err(|e| format!("export.jsonl.path: {e}"))?;
        let sink = BatchSink::start(
            j.batch(),
            s.clone(),
            jsonl::JsonlEncoder::new(resource.clone()),
            writer,
        )?;
        tracing::info!(path = %j.path.display(), "writing spans as JSON lines");
        sinks.push(Box::new(sink));
        stats.push(s);
    }
    let metrics: Vec<Arc<dyn FamilyProvider>> = if stats.is_empty() {
        Vec::new()
    } else {
        vec![Arc::new(ExporterMetrics::new(stats))]
    };
    Ok(Exporters { sinks, metrics })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ExportConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_means_no_exporters() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg, ExportConfig::default());
        let e = build_with_env(&cfg, &OtelEnv::default()).unwrap();
        assert!(e.sinks.is_empty() && e.metrics.is_empty());
    }

    #[test]
    fn sections_parse_with_defaults() {
        let cfg = parse(
            r#"
            service_version = "2.0"
            resource_attributes = { "deployment.environment" = "prod" }
            [otlp]
            endpoint = "http://127.0.0.1:4318"
            headers = { "api-key" = "k" }
            compression = "none"
            batch_size = 10
            [zipkin]
            endpoint = "http://127.0.0.1:9411"
            [jsonl]
            path = "-"
            "#,
        )
        .unwrap();
        let o = cfg.otlp.as_ref().unwrap();
        assert_eq!(o.url(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(o.compression, Compression::None);
        assert_eq!((o.batch_size, o.queue_size), (10, 4096));
        let z = cfg.zipkin.as_ref().unwrap();
        assert_eq!(z.compression, Compression::None);
        assert_eq!(cfg.jsonl.as_ref().unwrap().queue_size, 65_536);
        assert!(cfg.validate().is_ok());
        assert_eq!(OtlpConfig::default().compression, Compression::Gzip);
    }

    #[test]
    fn bad_keys_and_values_are_errors() {
        assert!(parse("[otlp]\nendpoint_url = \"x\"").is_err());
        assert!(parse("[otlp]\ncompression = \"zstd\"").is_err());
        assert!(parse("bogus = 1").is_err());
        let bad = |t: &str, key: &str| {
            let e = parse(t).unwrap().validate().unwrap_err();
            assert_eq!(e.0, key, "{t}: {e:?}");
        };
        bad("[otlp]\nbatch_size = 0", "export.otlp.batch_size");
        bad("[otlp]\nqueue_size = 10", "export.otlp.queue_size");
        bad("[otlp]\nendpoint = \"ftp://x\"", "export.otlp.endpoint");
        assert!(parse("[otlp]\nendpoint = \"https://x\"")
            .unwrap()
            .validate()
            .is_ok());
        // An https:// endpoint's files are read when the configuration is checked.
        bad(
            "[otlp]\nendpoint = \"https://x\"\n[otlp.tls]\nca_file = \"/nonexistent/ca.pem\"",
            "export.otlp.tls",
        );
        bad(
            "[zipkin]\nendpoint = \"https://z\"\n[zipkin.tls]\ncert_file = \"/nonexistent/c.pem\"",
            "export.zipkin.tls",
        );
        assert!(parse("[otlp.tls]\nca = \"x\"").is_err(), "unknown tls key");
        bad(
            "[otlp]\ntraces_endpoint = \"x:1\"",
            "export.otlp.traces_endpoint",
        );
        bad(
            "[otlp]\nheaders = { \"a b\" = \"c\" }",
            "export.otlp.headers",
        );
        bad(
            "[zipkin]\nendpoint = \"zipkin:9411\"",
            "export.zipkin.endpoint",
        );
        bad("[jsonl]\nbatch_size = 5", "export.jsonl.path");
    }

    #[test]
    fn the_environment_wins_and_enables_otlp() {
        let env = OtelEnv::read(|k| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:1".into()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("API-KEY=env".into()),
            "OTEL_EXPORTER_OTLP_COMPRESSION" => Some("none".into()),
            "OTEL_SERVICE_NAME" => Some("svc".into()),
            "OTEL_RESOURCE_ATTRIBUTES" => Some("service.version=3,team=core".into()),
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY" => Some("/env/k.pem".into()),
            _ => None,
        })
        .unwrap();
        let file = parse(
            "service_version = \"1\"\n[otlp]\nendpoint = \"http://file:4318\"\nheaders = { \"api-key\" = \"file\" }",
        )
        .unwrap();
        let (cfg, res) = resolve(&file, &env);
        let o = cfg.otlp.unwrap();
        assert_eq!(o.url(), "http://127.0.0.1:1/v1/traces");
        assert_eq!(
            o.headers.into_iter().collect::<Vec<_>>(),
            [("API-KEY".to_string(), "env".to_string())]
        );
        assert_eq!(o.compression, Compression::None);
        assert_eq!(o.tls.key_file.as_deref(), Some(Path::new("/env/k.pem")));
        assert_eq!(res.service_name.as_deref(), Some("svc"));
        assert_eq!(res.service_version.as_deref(), Some("3"));
        assert_eq!(res.extra, [("team".to_string(), "core".to_string())]);

        let (cfg, _) = resolve(&ExportConfig::default(), &env);
        assert!(cfg.otlp.is_some(), "an endpoint variable enables OTLP");
        let e = build_with_env(&ExportConfig::default(), &env).unwrap();
        assert_eq!((e.sinks.len(), e.metrics.len()), (1, 1));
    }

    #[test]
    fn relative_jsonl_paths_follow_the_file() {
        let mut cfg = parse("[jsonl]\npath = \"spans.jsonl\"").unwrap();
        cfg.anchor_paths(Path::new("/etc/shmtel"));
        assert_eq!(
            cfg.jsonl.unwrap().path,
            PathBuf::from("/etc/shmtel/spans.jsonl")
        );
        let mut cfg = parse("[jsonl]\npath = \"-\"").unwrap();
        cfg.anchor_paths(Path::new("/etc/shmtel"));
        assert_eq!(cfg.jsonl.unwrap().path, PathBuf::from("-"));
    }
}
