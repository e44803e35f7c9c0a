//! The OTLP/HTTP logs sink: batches of log events as protobuf `ExportLogsServiceRequest`s
//! (the official generated types of `opentelemetry-proto`), posted to `/v1/logs` of an
//! OpenTelemetry Collector, Loki 3, Elastic or any OTLP receiver.
//!
//! It shares the span exporters' machinery: the batching sender (bounded queue, drops counted,
//! retries with exponential backoff and jitter on 429, 502, 503, 504 and connection errors
//! only, `Retry-After` honoured; other statuses fail the batch at once) and the HTTP transport
//! (keep-alive, gzip).
//!
//! # Mapping
//!
//! One `ResourceLogs` per (service, pid) in a batch, with the resource the span exporters attach
//! (`service.name`, `service.version` when known, `host.name`, `process.pid`, the extra
//! resource attributes), holding one `ScopeLogs` (scope `shmtel`). Each event becomes a
//! `LogRecord`:
//!
//! | LogRecord field | from |
//! |---|---|
//! | `time_unix_nano` | the event's time |
//! | `observed_time_unix_nano` | when the collector read the event from its ring (the drain pass that found it) |
//! | `severity_number`, `severity_text` | TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21; `INFO`, ... |
//! | `body` | the message, a string |
//! | `attributes` | the fields (typed; JSON fields as arrays/maps when they parse), then `thread.id`, `code.file.path`, `code.line.number`, `code.function.name` (the caller `file:line function`; text that does not parse goes to `code.file.path` whole), `correlation_id`, `shmtel.truncated` = true when the writer cut the message |
//! | `trace_id`, `span_id` | the context the event was written in; empty when none |
//! | `flags` | 0x01 (sampled) when the event has a trace id, else 0 |
//!
//! A field named like one of the added attributes is sent as `fields.<name>`. The names are
//! those of the `otel` JSON schema of [`super::render`], so every sink says the same thing.
//!
//! # Configuration
//!
//! ```toml
//! [logs.otlp]
//! endpoint = "http://localhost:4318"    # base URL; /v1/logs is appended
//! # logs_endpoint = "http://collector:4318/v1/logs"   # full URL, used as is
//! name = "otlp"                    # the `sink` label of its self-metrics
//! headers = { "api-key" = "secret" }
//! compression = "gzip"             # or "none"
//! timeout_ms = 10000               # per request
//! batch_size = 512                 # records per request
//! batch_timeout_ms = 1000          # longest a record waits for its batch
//! queue_size = 8192                # records held at most; beyond, dropped and counted
//! max_retry_elapsed_ms = 30000     # retry budget of one batch; 0: never retry
//! retry_initial_backoff_ms = 500   # first retry delay (x0.5..1.5 jitter), doubling...
//! retry_max_backoff_ms = 5000      # ...up to this
//!
//! [logs.otlp.tls]                  # an https:// endpoint's files, as [export.otlp.tls]
//! ca_file = "/etc/shmtel/ca.pem"
//! ```
//!
//! The OpenTelemetry SDK variables win over the file, and an endpoint variable enables the sink
//! without a `[logs.otlp]` section: `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` (used as is),
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/logs` appended), `OTEL_EXPORTER_OTLP_[LOGS_]HEADERS`
//! (`k=v,...`, URL-decoded, merged over the file's), `OTEL_EXPORTER_OTLP_[LOGS_]COMPRESSION`,
//! `OTEL_EXPORTER_OTLP_[LOGS_]TIMEOUT` (ms), `OTEL_EXPORTER_OTLP_[LOGS_]CERTIFICATE`,
//! `OTEL_EXPORTER_OTLP_[LOGS_]CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_[LOGS_]CLIENT_KEY`
//! (the `tls` files). `https://` endpoints go over TLS as `[export.otlp]`'s do
//! (`crate::export::tls`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use serde::Deserialize;

use super::file::check_name;
use super::render::{level_name, parse_caller, severity_number};
use crate::export::env::OtelEnv;
use crate::export::http::{check_endpoint, HttpTransport};
use crate::export::otlp::{group_by_origin, key_values, resource, scope};
use crate::export::resource::ResourceInfo;
use crate::export::sender::{BatchSettings, BatchSink, Encoder};
use crate::export::stats::ExporterStats;
use crate::export::tls::TlsFiles;
use crate::export::{check_batching, check_retry, Compression};
use crate::sinks::{LogData, LogSink, OwnedValue};

/// `[logs.otlp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpLogsConfig {
    /// Base URL; `/v1/logs` is appended (default `http://localhost:4318`).
    pub endpoint: String,
    /// Full logs URL, used as is (wins over `endpoint`).
    pub logs_endpoint: Option<String>,
    /// The `sink` label of the self-metrics (default `otlp`).
    pub name: Option<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Default gzip.
    pub compression: Compression,
    /// Per-request timeout (default 10000).
    pub timeout_ms: u64,
    /// Records per request (default 512).
    pub batch_size: usize,
    /// Longest a record waits for its batch (default 1000).
    pub batch_timeout_ms: u64,
    /// Records held at most (default 8192).
    pub queue_size: usize,
    /// Retry budget of one batch (default 30000; 0 never retries).
    pub max_retry_elapsed_ms: u64,
    /// First retry delay before jitter (default 500).
    pub retry_initial_backoff_ms: u64,
    /// Longest retry delay before jitter (default 5000).
    pub retry_max_backoff_ms: u64,
    /// `[logs.otlp.tls]`: the files of an `https://` endpoint (as `[export.otlp.tls]`).
    pub tls: TlsFiles,
}

impl Default for OtlpLogsConfig {
    fn default() -> Self {
        OtlpLogsConfig {
            endpoint: "http://localhost:4318".into(),
            logs_endpoint: None,
            name: None,
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            timeout_ms: 10_000,
            batch_size: 512,
            batch_timeout_ms: 1000,
            queue_size: 8192,
            max_retry_elapsed_ms: 30_000,
            retry_initial_backoff_ms: 500,
            retry_max_backoff_ms: 5000,
            tls: TlsFiles::default(),
        }
    }
}

/// `<base>/v1/logs`.
pub fn logs_url(base: &str) -> String {
    format!("{}/v1/logs", base.trim_end_matches('/'))
}

impl OtlpLogsConfig {
    /// The URL requests go to.
    pub fn url(&self) -> String {
        self.logs_endpoint
            .clone()
            .unwrap_or_else(|| logs_url(&self.endpoint))
    }

    /// Check the section; errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        const P: &str = "logs.otlp";
        check_name(P, &self.name)?;
        check_batching(P, self.batch_size, self.batch_timeout_ms, self.queue_size)?;
        check_retry(
            P,
            self.timeout_ms,
            self.retry_initial_backoff_ms,
            self.retry_max_backoff_ms,
            &self.headers,
        )?;
        let which = if self.logs_endpoint.is_some() {
            "logs_endpoint"
        } else {
            "endpoint"
        };
        check_endpoint(P, which, &self.url(), &self.tls)
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
}

/// The section with the OTEL_* environment laid over it: `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`
/// or `OTEL_EXPORTER_OTLP_ENDPOINT` enable it when the file has no `[logs.otlp]`.
pub fn resolve(cfg: Option<&OtlpLogsConfig>, env: &OtelEnv) -> Option<OtlpLogsConfig> {
    let e = &env.logs;
    let mut c = match cfg {
        Some(c) => c.clone(),
        None if e.endpoint.is_some() => OtlpLogsConfig::default(),
        None => return None,
    };
    if let Some(url) = &e.endpoint {
        c.logs_endpoint = Some(url.clone());
    }
    for (k, v) in &e.headers {
        c.headers.retain(|name, _| !name.eq_ignore_ascii_case(k));
        c.headers.insert(k.clone(), v.clone());
    }
    if let Some(comp) = e.compression {
        c.compression = comp;
    }
    if let Some(t) = e.timeout_ms {
        c.timeout_ms = t;
    }
    c.tls.overlay(&e.tls);
    Some(c)
}

/// Start the sink.
pub fn start(
    cfg: &OtlpLogsConfig,
    resource: ResourceInfo,
    stats: Arc<ExporterStats>,
) -> Result<Box<dyn LogSink>, String> {
    let url = cfg.url();
    let transport = HttpTransport::new(
        &url,
        "application/x-protobuf",
        cfg.headers.clone().into_iter().collect(),
        cfg.compression == Compression::Gzip,
        Duration::from_millis(cfg.timeout_ms),
        &cfg.tls,
    )?;
    let sink = BatchSink::start(
        cfg.batch(),
        stats.clone(),
        OtlpLogsEncoder::new(resource),
        transport,
    )?;
    tracing::info!(%url, sink = stats.name, "exporting log events over OTLP/HTTP");
    Ok(Box::new(sink))
}

/// The attribute names the mapping adds itself (a field with one of these names is sent as
/// `fields.<name>`).
const ADDED: &[&str] = &[
    "thread.id",
    "code.file.path",
    "code.line.number",
    "code.function.name",
    "correlation_id",
    "shmtel.truncated",
];

/// `LOG_RECORD_FLAGS_TRACE_FLAGS_MASK`'s sampled bit.
pub const FLAG_SAMPLED: u32 = 0x01;

/// Encodes batches as protobuf `ExportLogsServiceRequest`s.
pub struct OtlpLogsEncoder {
    resource: ResourceInfo,
}

impl OtlpLogsEncoder {
    /// An encoder attaching `resource`.
    pub fn new(resource: ResourceInfo) -> OtlpLogsEncoder {
        OtlpLogsEncoder { resource }
    }

    /// The request for `logs`.
    pub fn request(&self, logs: Vec<LogData>) -> ExportLogsServiceRequest {
        let groups = group_by_origin(
            logs,
            |l| &l.origin,
            |origin, n| ResourceLogs {
                resource: Some(resource(&self.resource, origin)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: Vec::with_capacity(n),
                    ..Default::default()
                }],
                ..Default::default()
            },
            |g: &mut ResourceLogs, l| g.scope_logs[0].log_records.push(log_record(l)),
        );
        ExportLogsServiceRequest {
            resource_logs: groups,
        }
    }
}

impl Encoder<LogData> for OtlpLogsEncoder {
    fn encode(&mut self, logs: Vec<LogData>, out: &mut Vec<u8>) {
        let req = self.request(logs);
        crate::export::envelope::encode_request(&req.resource_logs, out);
    }
}

/// One log event as an OTLP `LogRecord`.
pub fn log_record(l: LogData) -> LogRecord {
    let mut attrs: Vec<(String, OwnedValue)> = Vec::with_capacity(l.fields.len() + 6);
    for (k, v) in l.fields {
        let k = if ADDED.contains(&&*k) {
            format!("fields.{k}")
        } else {
            String::from(&*k)
        };
        attrs.push((k, v));
    }
    attrs.push(("thread.id".into(), OwnedValue::I64(i64::from(l.origin.tid))));
    if !l.caller.is_empty() {
        match parse_caller(&l.caller) {
            Some((file, line, function)) => {
                attrs.push(("code.file.path".into(), OwnedValue::Str(file.into())));
                attrs.push(("code.line.number".into(), OwnedValue::I64(i64::from(line))));
                if !function.is_empty() {
                    attrs.push((
                        "code.function.name".into(),
                        OwnedValue::Str(function.into()),
                    ));
                }
            }
            None => attrs.push((
                "code.file.path".into(),
                OwnedValue::Str(String::from(&*l.caller)),
            )),
        }
    }
    if !l.correlation_id.is_empty() {
        attrs.push(("correlation_id".into(), OwnedValue::Str(l.correlation_id)));
    }
    if l.truncated {
        attrs.push(("shmtel.truncated".into(), OwnedValue::Bool(true)));
    }
    let has_trace = l.trace_id != [0; 16];
    LogRecord {
        time_unix_nano: l.time_ns,
        observed_time_unix_nano: l.observed_ns,
        severity_number: i32::from(severity_number(l.level)),
        severity_text: level_name(l.level).to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(l.message)),
        }),
        attributes: key_values(attrs),
        dropped_attributes_count: 0,
        flags: if has_trace { FLAG_SAMPLED } else { 0 },
        trace_id: if has_trace {
            l.trace_id.to_vec()
        } else {
            Vec::new()
        },
        span_id: if has_trace && l.span_id != [0; 8] {
            l.span_id.to_vec()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::Origin;
    use any_value::Value as V;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use prost::Message;

    fn log(service: &str, pid: u32) -> LogData {
        LogData {
            origin: Origin {
                service: service.into(),
                pid,
                tid: 9,
            },
            time_ns: 1_700_000_000_123_456_789,
            observed_ns: 1_700_000_000_200_000_000,
            level: 3,
            message: "disk almost full".into(),
            truncated: true,
            correlation_id: "req-7".into(),
            trace_id: [0x11; 16],
            span_id: [0x22; 8],
            caller: "app/disk.py:42 check_space".into(),
            fields: vec![
                ("free_mb".into(), OwnedValue::I64(12)),
                ("ratio".into(), OwnedValue::F64(0.5)),
                ("tags".into(), OwnedValue::Json("[\"a\",1]".into())),
                ("thread.id".into(), OwnedValue::Str("shadow".into())),
            ],
        }
    }

    fn attr<'a>(a: &'a [KeyValue], k: &str) -> Option<&'a V> {
        a.iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn every_field_maps() {
        let r = log_record(log("api", 1));
        assert_eq!(r.time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(r.observed_time_unix_nano, 1_700_000_000_200_000_000);
        assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "WARN"));
        assert_eq!(
            r.body.unwrap().value,
            Some(V::StringValue("disk almost full".into()))
        );
        assert_eq!((r.trace_id, r.span_id), (vec![0x11; 16], vec![0x22; 8]));
        assert_eq!(r.flags, FLAG_SAMPLED);
        let a = &r.attributes;
        assert_eq!(attr(a, "free_mb"), Some(&V::IntValue(12)));
        assert_eq!(attr(a, "ratio"), Some(&V::DoubleValue(0.5)));
        assert!(matches!(attr(a, "tags"), Some(V::ArrayValue(v)) if v.values.len() == 2));
        assert_eq!(
            attr(a, "fields.thread.id"),
            Some(&V::StringValue("shadow".into()))
        );
        assert_eq!(attr(a, "thread.id"), Some(&V::IntValue(9)));
        assert_eq!(
            attr(a, "code.file.path"),
            Some(&V::StringValue("app/disk.py".into()))
        );
        assert_eq!(attr(a, "code.line.number"), Some(&V::IntValue(42)));
        assert_eq!(
            attr(a, "code.function.name"),
            Some(&V::StringValue("check_space".into()))
        );
        assert_eq!(
            attr(a, "correlation_id"),
            Some(&V::StringValue("req-7".into()))
        );
        assert_eq!(attr(a, "shmtel.truncated"), Some(&V::BoolValue(true)));
        assert_eq!(a.len(), 10);

        let mut plain = log("api", 1);
        plain.trace_id = [0; 16];
        plain.span_id = [0; 8];
        plain.caller = "somewhere".into();
        plain.truncated = false;
        plain.correlation_id.clear();
        plain.fields.clear();
        let r = log_record(plain);
        assert!(r.trace_id.is_empty() && r.span_id.is_empty());
        assert_eq!(r.flags, 0);
        assert_eq!(
            attr(&r.attributes, "code.file.path"),
            Some(&V::StringValue("somewhere".into()))
        );
        assert_eq!(r.attributes.len(), 2);
        for (lvl, n) in [(0, 1), (1, 5), (2, 9), (3, 13), (4, 17), (5, 21)] {
            let mut l = log("a", 1);
            l.level = lvl;
            assert_eq!(log_record(l).severity_number, n);
        }
    }

    #[test]
    fn grouped_by_writer_and_decodable() {
        let res = ResourceInfo {
            host_name: "h".into(),
            ..Default::default()
        };
        let mut enc = OtlpLogsEncoder::new(res);
        let mut body = Vec::new();
        enc.encode(
            vec![log("a", 1), log("b", 2), log("a", 1), log("a", 3)],
            &mut body,
        );
        let req = ExportLogsServiceRequest::decode(&body[..]).unwrap();
        let counts: Vec<usize> = req
            .resource_logs
            .iter()
            .map(|rl| rl.scope_logs[0].log_records.len())
            .collect();
        assert_eq!(counts, [2, 1, 1]);
        let rl = &req.resource_logs[1];
        let ra = &rl.resource.as_ref().unwrap().attributes;
        assert_eq!(attr(ra, "service.name"), Some(&V::StringValue("b".into())));
        assert_eq!(attr(ra, "process.pid"), Some(&V::IntValue(2)));
        assert_eq!(attr(ra, "host.name"), Some(&V::StringValue("h".into())));
        assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "shmtel");
        // Each record keeps the time the collector read it, not the batch's encoding time.
        let records = &req.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(
            records[0].observed_time_unix_nano,
            1_700_000_000_200_000_000
        );
    }

    #[test]
    fn config_env_and_validation() {
        let c: OtlpLogsConfig = toml::from_str("endpoint = \"http://127.0.0.1:4318/\"").unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:4318/v1/logs");
        assert_eq!(
            (c.batch_size, c.queue_size, c.compression),
            (512, 8192, Compression::Gzip)
        );
        assert!(c.validate().is_ok());
        let bad = |t: &str, key: &str| {
            let c: OtlpLogsConfig = toml::from_str(t).unwrap();
            assert_eq!(c.validate().unwrap_err().0, key, "{t}");
        };
        bad("endpoint = \"ftp://x\"", "logs.otlp.endpoint");
        bad(
            "endpoint = \"https://x\"\n[tls]\nkey_file = \"/nonexistent/k.pem\"",
            "logs.otlp.tls",
        );
        bad("logs_endpoint = \"x:1\"", "logs.otlp.logs_endpoint");
        bad("queue_size = 10", "logs.otlp.queue_size");
        bad("timeout_ms = 0", "logs.otlp.timeout_ms");
        bad("headers = { \"a b\" = \"c\" }", "logs.otlp.headers");
        assert!(toml::from_str::<OtlpLogsConfig>("traces_endpoint = \"x\"").is_err());

        assert_eq!(resolve(None, &OtelEnv::default()), None);
        let env = OtelEnv::read(|k| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://env:4318".into()),
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS" => Some("API-KEY=e".into()),
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION" => Some("none".into()),
            "OTEL_EXPORTER_OTLP_TIMEOUT" => Some("250".into()),
            "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE" => Some("/env/ca.pem".into()),
            _ => None,
        })
        .unwrap();
        let c = resolve(None, &env).expect("an endpoint variable enables the sink");
        assert_eq!(c.url(), "http://env:4318/v1/logs");
        assert_eq!((c.compression, c.timeout_ms), (Compression::None, 250));
        let file: OtlpLogsConfig = toml::from_str(
            "endpoint = \"http://file:1\"\nheaders = { \"api-key\" = \"f\" }\n\
             [tls]\nca_file = \"/file/ca.pem\"\ncert_file = \"/file/c.pem\"",
        )
        .unwrap();
        let c = resolve(Some(&file), &env).unwrap();
        assert_eq!(c.url(), "http://env:4318/v1/logs", "the environment wins");
        assert_eq!(
            (c.tls.ca_file.unwrap(), c.tls.cert_file.unwrap()),
            ("/env/ca.pem".into(), "/file/c.pem".into()),
            "the environment's CA over the file's; the file's client certificate kept"
        );
        assert_eq!(
            c.headers.into_iter().collect::<Vec<_>>(),
            [("API-KEY".to_string(), "e".to_string())]
        );
        let c = resolve(Some(&file), &OtelEnv::default()).unwrap();
        assert_eq!(c.url(), "http://file:1/v1/logs");
    }
}
