//! Rendering a log event as one line: JSON (three schemas), logfmt or plain text.
//!
//! Hand-written and allocation-free in the steady state: strings are escaped straight into the
//! output buffer, numbers go through `itoa`/`ryu`, and the `YYYY-MM-DDTHH:MM:SS` prefix of the
//! timestamp is cached per second (log lines arrive in time order, so nearly every line reuses
//! it). One core renders well over a million lines a second (`cargo bench -p shmtel-benches
//! --bench collector -- collector_logs`).
//!
//! A rendered line never contains a raw newline: JSON escapes control characters (`\n`, `\t`,
//! `\u001b`, ...) as RFC 8259 requires, logfmt and plain text escape them the same way.
//!
//! # The `shmtel` JSON schema (the default; stable)
//!
//! ```json
//! {"@timestamp":"2026-11-24T17:31:05.123456789Z","level":"INFO","message":"user signed in",
//!  "service":"api","pid":4242,"thread":4243,
//!  "trace_id":"<32 hex>","span_id":"<16 hex>","correlation_id":"req-1",
//!  "caller":{"file":"app/views.py","line":42,"function":"get_user"},"truncated":true,
//!  "user_id":42,"cart":{"items":3}}
//! ```
//!
//! - `@timestamp`: RFC 3339, UTC, always 9 fractional digits.
//! - `level`: `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`.
//! - `service` (the writer's service, or `OTEL_SERVICE_NAME`), `pid`, `thread` (the writer's
//!   thread id): always present.
//! - `trace_id`, `span_id`, `correlation_id`, `caller`, `truncated`: only when set. `caller` is
//!   parsed from the writer's `file:line function` text; text that does not parse is kept as
//!   `{"file": text}`. `truncated: true` means the writer cut the message at its size limit.
//! - then the event's fields, at the top level, in the order written: strings, integers, floats
//!   (non-finite ones as `null`), booleans, `null`, and JSON values embedded as JSON (a JSON
//!   field that does not parse is written as a string). A field whose name is one of the keys
//!   above is written as `fields.<name>` so that it cannot shadow them.
//!
//! # The `ecs` schema (Elastic Common Schema, as the ecs-logging libraries write it)
//!
//! `@timestamp`, `log.level` (lowercase), `message`, `ecs.version` (`1.6.0`), `service.name`,
//! `process.pid`, `process.thread.id`, then when set `trace.id`, `span.id`,
//! `labels.correlation_id` (ECS has no correlation field; `labels` is its place for custom
//! keywords), `log.origin.file.name`, `log.origin.file.line`, `log.origin.function`,
//! `tags: ["truncated"]`; then the fields at the top level as the ecs-logging libraries put
//! `extra` fields (a field colliding with one of these keys as `fields.<name>`). Keys are
//! dotted, as the ecs-logging spec writes them; Filebeat's `ndjson` parser with
//! `expand_keys: true` (or Elasticsearch itself) turns them into objects.
//!
//! # The `otel` schema (OpenTelemetry log data model field names)
//!
//! ```json
//! {"Timestamp":"1795541465123456789","ObservedTimestamp":"1795541465130000000",
//!  "SeverityText":"INFO","SeverityNumber":9,"Body":"user signed in",
//!  "TraceId":"<32 hex>","SpanId":"<16 hex>","TraceFlags":1,
//!  "Resource":{"service.name":"api","host.name":"h","process.pid":4242},
//!  "InstrumentationScope":{"name":"shmtel"},
//!  "Attributes":{"user_id":42,"thread.id":4243,"code.file.path":"app/views.py",
//!                "code.line.number":42,"code.function.name":"get_user",
//!                "correlation_id":"req-1","shmtel.truncated":true}}
//! ```
//!
//! Times are nanoseconds since the epoch as decimal strings, as the OTLP/JSON mapping writes
//! 64-bit integers (a JSON number would lose precision in most parsers); `ObservedTimestamp` is
//! when the collector (or `shmtel tail`) read the event from its ring. `SeverityNumber`: TRACE
//! 1, DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21. `TraceId`, `SpanId` and `TraceFlags` (1: the record was written inside a
//! span) only when the record has a trace context. The caller uses the current semantic
//! conventions (`code.file.path`, `code.line.number`, `code.function.name`). `Resource` is the
//! same resource the OTLP exporters attach.
//!
//! # logfmt
//!
//! `time=2026-11-24T17:31:05.123456789Z level=info msg="user signed in" service=api pid=4242
//! thread=4243 trace_id=… span_id=… correlation_id=req-1 caller="app/views.py:42 get_user"
//! truncated=true user_id=42`: values with spaces, `=`, `"` or non-printable characters are
//! quoted, with `\"`, `\\`, `\n`, `\r`, `\t` and `\u00XX` escapes; keys are made of printable
//! characters other than space, `=` and `"` (others become `_`).
//!
//! # plain
//!
//! `2026-11-24T17:31:05.123456789Z INFO  api[4242/4243] user signed in user_id=42 trace_id=…
//! span_id=…`: the message as is (control characters escaped), then the fields and ids in logfmt
//! style.

use std::sync::Arc;

use serde::Deserialize;

use crate::export::resource::ResourceInfo;
use crate::export::sender::Encoder;
use crate::inspect::render::civil_from_days;
use crate::sinks::{LogData, Origin, OwnedValue};

/// Field names of the JSON rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    /// shmtel's own schema (`@timestamp`, `level`, `message`, ...).
    #[default]
    Shmtel,
    /// Elastic Common Schema.
    Ecs,
    /// OpenTelemetry log data model field names.
    Otel,
}

/// How a line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object.
    #[default]
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// Human text.
    Plain,
}

/// The ECS version the `ecs` schema declares.
pub const ECS_VERSION: &str = "1.6.0";

/// The upper-case name of a level code (`LEVEL<n>` for a code this collector does not know).
pub fn level_name(level: u8) -> &'static str {
    match level {
        0 => "TRACE",
        1 => "DEBUG",
        2 => "INFO",
        3 => "WARN",
        4 => "ERROR",
        5 => "FATAL",
        _ => "UNKNOWN",
    }
}

fn level_lower(level: u8) -> &'static str {
    match level {
        0 => "trace",
        1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        5 => "fatal",
        _ => "unknown",
    }
}

/// The OpenTelemetry severity number of a level code (TRACE 1, DEBUG 5, ... FATAL 21).
pub fn severity_number(level: u8) -> u8 {
    if level <= 5 {
        1 + 4 * level
    } else {
        0
    }
}

/// A caller text `file:line function` split into its parts; `None` when it does not have
/// that shape. The line is the first `:<digits>` followed by a space or the end.
pub fn parse_caller(text: &str) -> Option<(&str, u32, &str)> {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(':').map(|i| i + from) {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let end = i + 1 + digits;
        if digits > 0 && (end == b.len() || b[end] == b' ') && i > 0 {
            if let Ok(line) = text[i + 1..end].parse::<u32>() {
                let function = if end == b.len() { "" } else { &text[end + 1..] };
                return Some((&text[..i], line, function));
            }
        }
        from = i + 1;
    }
    None
}

/// The `YYYY-MM-DDTHH:MM:SS` prefix of the last second rendered.
#[derive(Debug, Clone)]
struct SecondCache {
    secs: u64,
    prefix: [u8; 19],
}

impl SecondCache {
    fn new() -> SecondCache {
        SecondCache {
            secs: u64::MAX,
            prefix: [0; 19],
        }
    }

    /// Append `ns` as `2026-11-24T17:31:05.123456789Z`.
    fn write(&mut self, ns: u64, out: &mut Vec<u8>) {
        let secs = ns / 1_000_000_000;
        if secs != self.secs {
            self.secs = secs;
            let (year, month, day) = civil_from_days((secs / 86_400) as i64);
            let sod = secs % 86_400;
            let p = &mut self.prefix;
            let year = year.clamp(0, 9999) as u32;
            put_digits(&mut p[0..4], year);
            p[4] = b'-';
            put_digits(&mut p[5..7], month);
            p[7] = b'-';
            put_digits(&mut p[8..10], day);
            p[10] = b'T';
            put_digits(&mut p[11..13], (sod / 3600) as u32);
            p[13] = b':';
            put_digits(&mut p[14..16], (sod / 60 % 60) as u32);
            p[16] = b':';
            put_digits(&mut p[17..19], (sod % 60) as u32);
        }
        out.extend_from_slice(&self.prefix);
        let mut frac = [0u8; 11];
        frac[0] = b'.';
        put_digits(&mut frac[1..10], (ns % 1_000_000_000) as u32);
        frac[10] = b'Z';
        out.extend_from_slice(&frac);
    }
}

/// Write `v` as exactly `dst.len()` decimal digits (zero-padded, high digits dropped).
fn put_digits(dst: &mut [u8], mut v: u32) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The `Resource` object of the last origin rendered with the `otel` schema.
#[derive(Debug, Clone, Default)]
struct ResourceCache {
    key: Option<(Arc<str>, u32)>,
    json: Vec<u8>,
}

/// Renders log events; cheap to clone (one per sink).
#[derive(Debug, Clone)]
pub struct Renderer {
    format: Format,
    schema: Schema,
    resource: ResourceInfo,
    time: SecondCache,
    otel_resource: ResourceCache,
}

/// The keys of the `shmtel` schema a field may not take.
const SHMTEL_KEYS: &[&str] = &[
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
];

/// The keys of the `ecs` schema a field may not take.
const ECS_KEYS: &[&str] = &[
    "@timestamp",
    "log.level",
    "message",
    "ecs.version",
    "service.name",
    "process.pid",
    "process.thread.id",
    "trace.id",
    "span.id",
    "labels.correlation_id",
    "log.origin.file.name",
    "log.origin.file.line",
    "log.origin.function",
    "tags",
];

/// The attribute names the `otel` schema adds itself.
const OTEL_KEYS: &[&str] = &[
    "thread.id",
    "code.file.path",
    "code.line.number",
    "code.function.name",
    "correlation_id",
    "shmtel.truncated",
];

/// The logfmt/plain keys a field may not take.
const LOGFMT_KEYS: &[&str] = &[
    "time",
    "level",
    "msg",
    "service",
    "pid",
    "thread",
    "trace_id",
    "span_id",
    "correlation_id",
    "caller",
    "truncated",
];

impl Renderer {
    /// A renderer of `format` (JSON with `schema`), naming services as `resource` says.
    pub fn new(format: Format, schema: Schema, resource: ResourceInfo) -> Renderer {
        Renderer {
            format,
            schema,
            resource,
            time: SecondCache::new(),
            otel_resource: ResourceCache::default(),
        }
    }

    /// The format it renders.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The JSON schema it renders with.
    pub fn schema(&self) -> Schema {
        self.schema
    }

    /// Append `log` as one line to `out`, without the trailing newline. The line never
    /// contains a raw newline.
    pub fn render(&mut self, log: &LogData, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => match self.schema {
                Schema::Shmtel => self.shmtel(log, out),
                Schema::Ecs => self.ecs(log, out),
                Schema::Otel => self.otel(log, out),
            },
            Format::Logfmt => self.logfmt(log, out),
            Format::Plain => self.plain(log, out),
        }
    }

    fn shmtel(&mut self, log: &LogData, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"@timestamp\":\"");
        self.time.write(log.time_ns, out);
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(level_name(log.level).as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        json_str(&log.message, out);
        out.extend_from_slice(b",\"service\":");
        json_str(self.resource.service(&log.origin), out);
        out.extend_from_slice(b",\"pid\":");
        int(log.origin.pid, out);
        out.extend_from_slice(b",\"thread\":");
        int(log.origin.tid, out);
        if log.trace_id != [0; 16] {
            out.extend_from_slice(b",\"trace_id\":\"");
            hex_into(&log.trace_id, out);
            out.push(b'"');
        }
        if log.span_id != [0; 8] {
            out.extend_from_slice(b",\"span_id\":\"");
            hex_into(&log.span_id, out);
            out.push(b'"');
        }
        if !log.correlation_id.is_empty() {
            out.extend_from_slice(b",\"correlation_id\":");
            json_str(&log.correlation_id, out);
        }
        if !log.caller.is_empty() {
            out.extend_from_slice(b",\"caller\":");
            match parse_caller(&log.caller) {
                Some((file, line, function)) => {
                    out.extend_from_slice(b"{\"file\":");
                    json_str(file, out);
                    out.extend_from_slice(b",\"line\":");
                    int(line, out);
                    if !function.is_empty() {
                        out.extend_from_slice(b",\"function\":");
                        json_str(function, out);
                    }
                    out.push(b'}');
                }
                None => {
                    out.extend_from_slice(b"{\"file\":");
                    json_str(&log.caller, out);
                    out.push(b'}');
                }
            }
        }
        if log.truncated {
            out.extend_from_slice(b",\"truncated\":true");
        }
        json_fields(&log.fields, SHMTEL_KEYS, out);
        out.push(b'}');
    }

    fn ecs(&mut self, log: &LogData, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"@timestamp\":\"");
        self.time.write(log.time_ns, out);
        out.extend_from_slice(b"\",\"log.level\":\"");
        out.extend_from_slice(level_lower(log.level).as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        json_str(&log.message, out);
        out.extend_from_slice(b",\"ecs.version\":\"");
        out.extend_from_slice(ECS_VERSION.as_bytes());
        out.extend_from_slice(b"\",\"service.name\":");
        json_str(self.resource.service(&log.origin), out);
        out.extend_from_slice(b",\"process.pid\":");
        int(log.origin.pid, out);
        out.extend_from_slice(b",\"process.thread.id\":");
        int(log.origin.tid, out);
        if log.trace_id != [0; 16] {
            out.extend_from_slice(b",\"trace.id\":\"");
            hex_into(&log.trace_id, out);
            out.push(b'"');
        }
        if log.span_id != [0; 8] {
            out.extend_from_slice(b",\"span.id\":\"");
            hex_into(&log.span_id, out);
            out.push(b'"');
        }
        if !log.correlation_id.is_empty() {
            out.extend_from_slice(b",\"labels.correlation_id\":");
            json_str(&log.correlation_id, out);
        }
        if !log.caller.is_empty() {
            match parse_caller(&log.caller) {
                Some((file, line, function)) => {
                    out.extend_from_slice(b",\"log.origin.file.name\":");
                    json_str(file, out);
                    out.extend_from_slice(b",\"log.origin.file.line\":");
                    int(line, out);
                    if !function.is_empty() {
                        out.extend_from_slice(b",\"log.origin.function\":");
                        json_str(function, out);
                    }
                }
                None => {
                    out.extend_from_slice(b",\"log.origin.file.name\":");
                    json_str(&log.caller, out);
                }
            }
        }
        if log.truncated {
            out.extend_from_slice(b",\"tags\":[\"truncated\"]");
        }
        json_fields(&log.fields, ECS_KEYS, out);
        out.push(b'}');
    }

    fn otel(&mut self, log: &LogData, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"Timestamp\":\"");
        int(log.time_ns, out);
        out.extend_from_slice(b"\",\"ObservedTimestamp\":\"");
        int(log.observed_ns, out);
        out.extend_from_slice(b"\",\"SeverityText\":\"");
        out.extend_from_slice(level_name(log.level).as_bytes());
        out.extend_from_slice(b"\",\"SeverityNumber\":");
        int(severity_number(log.level), out);
        out.extend_from_slice(b",\"Body\":");
        json_str(&log.message, out);
        if log.trace_id != [0; 16] {
            out.extend_from_slice(b",\"TraceId\":\"");
            hex_into(&log.trace_id, out);
            out.push(b'"');
            if log.span_id != [0; 8] {
                out.extend_from_slice(b",\"SpanId\":\"");
                hex_into(&log.span_id, out);
                out.push(b'"');
            }
            out.extend_from_slice(b",\"TraceFlags\":1");
        }
        out.extend_from_slice(b",\"Resource\":");
        self.otel_resource_json(&log.origin, out);
        out.extend_from_slice(b",\"InstrumentationScope\":{\"name\":\"shmtel\"}");
        out.extend_from_slice(b",\"Attributes\":{");
        let mut first = true;
        for (k, v) in &log.fields {
            if first {
                first = false;
            } else {
                out.push(b',');
            }
            json_key(k, OTEL_KEYS, out);
            json_value(v, out);
        }
        let mut sep = |out: &mut Vec<u8>| {
            if first {
                first = false;
            } else {
                out.push(b',');
            }
        };
        sep(out);
        out.extend_from_slice(b"\"thread.id\":");
        int(log.origin.tid, out);
        if !log.caller.is_empty() {
            sep(out);
            match parse_caller(&log.caller) {
                Some((file, line, function)) => {
                    out.extend_from_slice(b"\"code.file.path\":");
                    json_str(file, out);
                    out.extend_from_slice(b",\"code.line.number\":");
                    int(line, out);
                    if !function.is_empty() {
                        out.extend_from_slice(b",\"code.function.name\":");
                        json_str(function, out);
                    }
                }
                None => {
                    out.extend_from_slice(b"\"code.file.path\":");
                    json_str(&log.caller, out);
                }
            }
        }
        if !log.correlation_id.is_empty() {
            sep(out);
            out.extend_from_slice(b"\"correlation_id\":");
            json_str(&log.correlation_id, out);
        }
        if log.truncated {
            sep(out);
            out.extend_from_slice(b"\"shmtel.truncated\":true");
        }
        out.extend_from_slice(b"}}");
    }

    fn otel_resource_json(&mut self, origin: &Origin, out: &mut Vec<u8>) {
        let hit = matches!(&self.otel_resource.key,
            Some((s, p)) if *p == origin.pid && *s == origin.service);
        if !hit {
            let mut json = Vec::with_capacity(128);
            json.push(b'{');
            for (i, (k, v)) in self.resource.attributes(origin).iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                json_str(k, &mut json);
                json.push(b':');
                json_value(v, &mut json);
            }
            json.push(b'}');
            self.otel_resource = ResourceCache {
                key: Some((origin.service.clone(), origin.pid)),
                json,
            };
        }
        out.extend_from_slice(&self.otel_resource.json);
    }

    fn logfmt(&mut self, log: &LogData, out: &mut Vec<u8>) {
        out.extend_from_slice(b"time=");
        self.time.write(log.time_ns, out);
        out.extend_from_slice(b" level=");
        out.extend_from_slice(level_lower(log.level).as_bytes());
        out.extend_from_slice(b" msg=");
        logfmt_str(&log.message, out);
        out.extend_from_slice(b" service=");
        logfmt_str(self.resource.service(&log.origin), out);
        out.extend_from_slice(b" pid=");
        int(log.origin.pid, out);
        out.extend_from_slice(b" thread=");
        int(log.origin.tid, out);
        ids_logfmt(log, out);
        if !log.caller.is_empty() {
            out.extend_from_slice(b" caller=");
            logfmt_str(&log.caller, out);
        }
        if log.truncated {
            out.extend_from_slice(b" truncated=true");
        }
        for (k, v) in &log.fields {
            out.push(b' ');
            logfmt_key(k, LOGFMT_KEYS, out);
            out.push(b'=');
            logfmt_value(v, out);
        }
    }

    fn plain(&mut self, log: &LogData, out: &mut Vec<u8>) {
        self.time.write(log.time_ns, out);
        out.push(b' ');
        let level = level_name(log.level);
        out.extend_from_slice(level.as_bytes());
        for _ in level.len()..5 {
            out.push(b' ');
        }
        out.push(b' ');
        escape_text(self.resource.service(&log.origin), b"", out);
        out.push(b'[');
        int(log.origin.pid, out);
        out.push(b'/');
        int(log.origin.tid, out);
        out.extend_from_slice(b"] ");
        escape_text(&log.message, b"", out);
        for (k, v) in &log.fields {
            out.push(b' ');
            logfmt_key(k, LOGFMT_KEYS, out);
            out.push(b'=');
            logfmt_value(v, out);
        }
        ids_logfmt(log, out);
        if !log.caller.is_empty() {
            out.extend_from_slice(b" caller=");
            logfmt_str(&log.caller, out);
        }
        if log.truncated {
            out.extend_from_slice(b" truncated=true");
        }
    }
}

impl Encoder<LogData> for Renderer {
    fn encode(&mut self, items: Vec<LogData>, out: &mut Vec<u8>) {
        for log in &items {
            self.render(log, out);
            out.push(b'\n');
        }
    }
}

fn ids_logfmt(log: &LogData, out: &mut Vec<u8>) {
    if log.trace_id != [0; 16] {
        out.extend_from_slice(b" trace_id=");
        hex_into(&log.trace_id, out);
    }
    if log.span_id != [0; 8] {
        out.extend_from_slice(b" span_id=");
        hex_into(&log.span_id, out);
    }
    if !log.correlation_id.is_empty() {
        out.extend_from_slice(b" correlation_id=");
        logfmt_str(&log.correlation_id, out);
    }
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

fn int(v: impl itoa::Integer, out: &mut Vec<u8>) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

fn hex_into(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 15) as usize]);
    }
}

/// Bytes that need an escape inside a JSON string.
static JSON_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Append `s` as a JSON string (RFC 8259 escapes; control characters as `\u00XX`).
pub fn json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    json_str_body(s, out);
    out.push(b'"');
}

fn json_str_body(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !JSON_ESCAPE[b as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A field name as a JSON key followed by `:`, as `fields.<name>` when it is in `reserved`.
fn json_key(name: &str, reserved: &[&str], out: &mut Vec<u8>) {
    out.push(b'"');
    if reserved.contains(&name) {
        out.extend_from_slice(b"fields.");
    }
    json_str_body(name, out);
    out.extend_from_slice(b"\":");
}

fn json_fields(fields: &[(Arc<str>, OwnedValue)], reserved: &[&str], out: &mut Vec<u8>) {
    for (k, v) in fields {
        out.push(b',');
        json_key(k, reserved, out);
        json_value(v, out);
    }
}

fn json_f64(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        let mut b = ryu::Buffer::new();
        out.extend_from_slice(b.format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Append a field value as JSON.
pub fn json_value(v: &OwnedValue, out: &mut Vec<u8>) {
    match v {
        OwnedValue::Null => out.extend_from_slice(b"null"),
        OwnedValue::Bool(true) => out.extend_from_slice(b"true"),
        OwnedValue::Bool(false) => out.extend_from_slice(b"false"),
        OwnedValue::I64(i) => int(*i, out),
        OwnedValue::F64(f) => json_f64(*f, out),
        OwnedValue::Str(s) => json_str(s, out),
        OwnedValue::Json(s) => {
            if is_json(s) {
                // Valid JSON has raw line breaks only as whitespace between tokens.
                out.extend(
                    s.trim()
                        .bytes()
                        .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                );
            } else {
                json_str(s, out);
            }
        }
    }
}

/// Whether `s` is one complete JSON value.
fn is_json(s: &str) -> bool {
    !s.trim().is_empty() && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

// ---------------------------------------------------------------------------------------------
// logfmt and plain text
// ---------------------------------------------------------------------------------------------

/// Whether a logfmt value must be quoted.
fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.bytes()
            .any(|b| b <= b' ' || b == b'=' || b == b'"' || b == b'\\' || b == 0x7f)
        || s.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Append `s` escaping `\\`, control characters and the bytes in `also` (`\"` for quotes).
fn escape_text(s: &str, also: &[u8], out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let (b, len) = (c as u32, c.len_utf8());
        let special =
            c.is_control() || (b < 0x80 && (b == b'\\' as u32 || also.contains(&(b as u8))));
        if !special {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '"' => out.extend_from_slice(b"\\\""),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            _ if b < 0x80 => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.extend_from_slice(format!("\\u{{{b:x}}}").as_bytes()),
        }
        start = i + len;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn logfmt_str(s: &str, out: &mut Vec<u8>) {
    if needs_quotes(s) {
        out.push(b'"');
        escape_text(s, b"\"", out);
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn logfmt_key(k: &str, reserved: &[&str], out: &mut Vec<u8>) {
    if reserved.contains(&k) {
        out.extend_from_slice(b"fields.");
    }
    if k.is_empty() {
        out.push(b'_');
    }
    for c in k.chars() {
        if c.is_control() || c.is_whitespace() || c == '=' || c == '"' {
            out.push(b'_');
        } else {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
}

fn logfmt_value(v: &OwnedValue, out: &mut Vec<u8>) {
    match v {
        OwnedValue::Null => out.extend_from_slice(b"null"),
        OwnedValue::Bool(true) => out.extend_from_slice(b"true"),
        OwnedValue::Bool(false) => out.extend_from_slice(b"false"),
        OwnedValue::I64(i) => int(*i, out),
        OwnedValue::F64(f) => {
            if f.is_finite() {
                json_f64(*f, out);
            } else if f.is_nan() {
                out.extend_from_slice(b"NaN");
            } else if *f > 0.0 {
                out.extend_from_slice(b"+Inf");
            } else {
                out.extend_from_slice(b"-Inf");
            }
        }
        OwnedValue::Str(s) => logfmt_str(s, out),
        OwnedValue::Json(s) => {
            if is_json(s) {
                let mut compact = Vec::with_capacity(s.len());
                json_value(v, &mut compact);
                logfmt_str(&String::from_utf8_lossy(&compact), out);
            } else {
                logfmt_str(s, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn log() -> LogData {
        LogData {
            origin: Origin {
                service: "api".into(),
                pid: 42,
                tid: 7,
            },
            time_ns: 1_795_541_465_123_456_789,
            observed_ns: 77,
            level: 2,
            message: "hello".into(),
            truncated: false,
            correlation_id: String::new(),
            trace_id: [0; 16],
            span_id: [0; 8],
            caller: "".into(),
            fields: Vec::new(),
        }
    }

    fn full() -> LogData {
        let mut l = log();
        l.level = 4;
        l.message = "a \"q\" \\ b\nc\td\u{1}e 日本 😀 שלום".into();
        l.truncated = true;
        l.correlation_id = "req-1".into();
        l.trace_id = [0xab; 16];
        l.span_id = [0x01; 8];
        l.caller = "app/views.py:42 get_user".into();
        l.fields = vec![
            ("s".into(), OwnedValue::Str("x y".into())),
            ("i".into(), OwnedValue::I64(-5)),
            ("f".into(), OwnedValue::F64(1.5)),
            ("nan".into(), OwnedValue::F64(f64::NAN)),
            ("b".into(), OwnedValue::Bool(true)),
            ("n".into(), OwnedValue::Null),
            ("j".into(), OwnedValue::Json("{\"a\":\n[1,2]}".into())),
            ("badj".into(), OwnedValue::Json("{nope".into())),
            ("level".into(), OwnedValue::Str("collides".into())),
        ];
        l
    }

    fn render(format: Format, schema: Schema, l: &LogData) -> String {
        let mut r = Renderer::new(format, schema, ResourceInfo::default());
        let mut out = Vec::new();
        r.render(l, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains('\n'), "raw newline in {s}");
        s
    }

    /// The keys appear in `line` in this order.
    fn assert_in_order(line: &str, keys: &[&str]) {
        let mut at = 0;
        for k in keys {
            let pat = format!("\"{k}\":");
            let i = line[at..]
                .find(&pat)
                .unwrap_or_else(|| panic!("{k} not after byte {at} in {line}"));
            at += i + pat.len();
        }
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    #[test]
    fn timestamps() {
        let mut c = SecondCache::new();
        let mut t = |ns: u64| {
            let mut out = Vec::new();
            c.write(ns, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(t(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(t(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(t(999_999_999), "1970-01-01T00:00:00.999999999Z");
        // 2024-02-29 (leap day) 23:59:59.5 and the next day.
        let leap = 1_709_251_199_000_000_000u64;
        assert_eq!(t(leap + 500_000_000), "2024-02-29T23:59:59.500000000Z");
        assert_eq!(t(leap + 1_000_000_000), "2024-03-01T00:00:00.000000000Z");
        // 2000-02-29 (a leap year divisible by 400).
        assert_eq!(t(951_782_400_000_000_007), "2000-02-29T00:00:00.000000007Z");
        assert_eq!(
            t(1_795_541_465_123_456_789),
            "2026-11-24T17:31:05.123456789Z"
        );
        // Cached prefix reused within the second, refreshed after.
        assert_eq!(
            t(1_795_541_465_000_000_000),
            "2026-11-24T17:31:05.000000000Z"
        );
        assert_eq!(
            t(1_795_541_466_000_000_000),
            "2026-11-24T17:31:06.000000000Z"
        );
        for ns in [0u64, 1 << 40, 1_700_000_000_123_456_789, u64::MAX / 2] {
            assert_eq!(t(ns), crate::inspect::render::rfc3339_ns(ns));
        }
    }

    #[test]
    fn escaping_is_rfc8259() {
        let mut out = Vec::new();
        json_str("a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é😀", &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u001f\u{7f}é😀\"");
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é😀");
    }

    #[test]
    fn caller_parsing() {
        assert_eq!(
            parse_caller("app/views.py:42 get_user"),
            Some(("app/views.py", 42, "get_user"))
        );
        assert_eq!(parse_caller("src/main.rs:7"), Some(("src/main.rs", 7, "")));
        assert_eq!(
            parse_caller("C:/x.rs:10 a::b::<T> c"),
            Some(("C:/x.rs", 10, "a::b::<T> c"))
        );
        assert_eq!(parse_caller("nofile"), None);
        assert_eq!(parse_caller("a.py:x f"), None);
        assert_eq!(parse_caller(":3 f"), None);
    }

    #[test]
    fn shmtel_schema() {
        let s = render(Format::Json, Schema::Shmtel, &log());
        assert_eq!(
            s,
            "{\"@timestamp\":\"2026-11-24T17:31:05.123456789Z\",\"level\":\"INFO\",\
             \"message\":\"hello\",\"service\":\"api\",\"pid\":42,\"thread\":7}"
        );
        let l = full();
        let line = render(Format::Json, Schema::Shmtel, &l);
        let v = parse(&line);
        assert_eq!(v.as_object().unwrap().len(), 20);
        assert_in_order(
            &line,
            &[
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
                "s",
                "i",
                "f",
                "nan",
                "b",
                "n",
                "j",
                "badj",
                "fields.level",
            ],
        );
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["message"], l.message.as_str());
        assert_eq!(v["trace_id"], "ab".repeat(16));
        assert_eq!(v["span_id"], "01".repeat(8));
        assert_eq!(v["correlation_id"], "req-1");
        assert_eq!(
            v["caller"],
            json!({"file": "app/views.py", "line": 42, "function": "get_user"})
        );
        assert_eq!(v["truncated"], true);
        assert_eq!(v["s"], "x y");
        assert_eq!(v["i"], -5);
        assert_eq!(v["f"], 1.5);
        assert_eq!(v["nan"], Value::Null);
        assert_eq!(v["b"], true);
        assert_eq!(v["n"], Value::Null);
        assert_eq!(v["j"], json!({"a": [1, 2]}));
        assert_eq!(v["badj"], "{nope");
        assert_eq!(v["fields.level"], "collides");
        let mut odd = log();
        odd.caller = "weird caller".into();
        let v = parse(&render(Format::Json, Schema::Shmtel, &odd));
        assert_eq!(v["caller"], json!({"file": "weird caller"}));
    }

    #[test]
    fn ecs_schema() {
        let l = full();
        let line = render(Format::Json, Schema::Ecs, &l);
        let v = parse(&line);
        assert!(line.starts_with("{\"@timestamp\":"));
        assert_in_order(
            &line,
            &["@timestamp", "log.level", "message", "ecs.version"],
        );
        assert_eq!(v["@timestamp"], "2026-11-24T17:31:05.123456789Z");
        assert_eq!(v["log.level"], "error");
        assert_eq!(v["ecs.version"], ECS_VERSION);
        assert_eq!(v["service.name"], "api");
        assert_eq!(v["process.pid"], 42);
        assert_eq!(v["process.thread.id"], 7);
        assert_eq!(v["trace.id"], "ab".repeat(16));
        assert_eq!(v["span.id"], "01".repeat(8));
        assert_eq!(v["labels.correlation_id"], "req-1");
        assert_eq!(v["log.origin.file.name"], "app/views.py");
        assert_eq!(v["log.origin.file.line"], 42);
        assert_eq!(v["log.origin.function"], "get_user");
        assert_eq!(v["tags"], json!(["truncated"]));
        assert_eq!(v["level"], "collides");
        assert_eq!(v["j"], json!({"a": [1, 2]}));
    }

    #[test]
    fn otel_schema() {
        let l = full();
        let v = parse(&render(Format::Json, Schema::Otel, &l));
        assert_eq!(v["Timestamp"], "1795541465123456789");
        assert_eq!(v["ObservedTimestamp"], "77");
        assert_eq!(v["SeverityText"], "ERROR");
        assert_eq!(v["SeverityNumber"], 17);
        assert_eq!(v["Body"], l.message.as_str());
        assert_eq!(v["TraceId"], "ab".repeat(16));
        assert_eq!(v["SpanId"], "01".repeat(8));
        assert_eq!(v["TraceFlags"], 1);
        assert_eq!(v["Resource"]["service.name"], "api");
        assert_eq!(v["Resource"]["process.pid"], 42);
        assert_eq!(v["InstrumentationScope"], json!({"name": "shmtel"}));
        let a = &v["Attributes"];
        assert_eq!(a["thread.id"], 7);
        assert_eq!(a["code.file.path"], "app/views.py");
        assert_eq!(a["code.line.number"], 42);
        assert_eq!(a["code.function.name"], "get_user");
        assert_eq!(a["correlation_id"], "req-1");
        assert_eq!(a["shmtel.truncated"], true);
        assert_eq!(a["level"], "collides");
        assert_eq!(a["j"], json!({"a": [1, 2]}));
        for (lvl, n) in [(0u8, 1), (1, 5), (2, 9), (3, 13), (4, 17), (5, 21)] {
            assert_eq!(severity_number(lvl), n);
        }
        let v = parse(&render(Format::Json, Schema::Otel, &log()));
        assert!(v.get("TraceId").is_none() && v.get("TraceFlags").is_none());
        assert_eq!(v["Attributes"], json!({"thread.id": 7}));
    }

    #[test]
    fn logfmt_and_plain() {
        let mut l = log();
        l.message = "say \"hi\"\nnow".into();
        l.trace_id = [1; 16];
        l.fields = vec![
            ("k".into(), OwnedValue::Str("v".into())),
            ("k2".into(), OwnedValue::Str("v 2".into())),
            ("eq".into(), OwnedValue::Str("a=b".into())),
            ("e".into(), OwnedValue::Str(String::new())),
            ("bad key".into(), OwnedValue::I64(1)),
            ("j".into(), OwnedValue::Json("{\"a\": 1}".into())),
            ("msg".into(), OwnedValue::Bool(false)),
        ];
        l.caller = "a.rs:1 f".into();
        let s = render(Format::Logfmt, Schema::Shmtel, &l);
        assert_eq!(
            s,
            format!(
                "time=2026-11-24T17:31:05.123456789Z level=info msg=\"say \\\"hi\\\"\\nnow\" \
                 service=api pid=42 thread=7 trace_id={} caller=\"a.rs:1 f\" k=v k2=\"v 2\" \
                 eq=\"a=b\" e=\"\" bad_key=1 j=\"{{\\\"a\\\": 1}}\" fields.msg=false",
                "01".repeat(16)
            )
        );
        let s = render(Format::Plain, Schema::Shmtel, &l);
        assert_eq!(
            s,
            format!(
                "2026-11-24T17:31:05.123456789Z INFO  api[42/7] say \"hi\"\\nnow k=v k2=\"v 2\" \
                 eq=\"a=b\" e=\"\" bad_key=1 j=\"{{\\\"a\\\": 1}}\" fields.msg=false trace_id={} \
                 caller=\"a.rs:1 f\"",
                "01".repeat(16)
            )
        );
        let mut c = log();
        c.message = "bell\u{7}\u{85}".into();
        assert!(render(Format::Plain, Schema::Shmtel, &c).ends_with("bell\\u0007\\u{85}"));
    }

    #[test]
    fn encoder_appends_one_line_per_event() {
        let mut r = Renderer::new(Format::Json, Schema::Shmtel, ResourceInfo::default());
        let mut out = Vec::new();
        r.encode(vec![full(), log(), full()], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            parse(line);
        }
    }

    #[test]
    fn service_override_applies() {
        let res = ResourceInfo {
            service_name: Some("renamed".into()),
            ..ResourceInfo::default()
        };
        let mut r = Renderer::new(Format::Json, Schema::Otel, res);
        let mut out = Vec::new();
        r.render(&log(), &mut out);
        let v = parse(std::str::from_utf8(&out).unwrap());
        assert_eq!(v["Resource"]["service.name"], "renamed");
        assert!(
            v["ObservedTimestamp"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
    }
}
