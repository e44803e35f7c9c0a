//! The syslog log sink: RFC 5424 messages over UDP, TCP or a unix socket, to rsyslog,
//! syslog-ng, Fluent Bit's or Vector's syslog inputs, or any RFC 5424 receiver.
//!
//! Each log event becomes one message
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`, formatted here rather
//! than by a syslog crate because the header must carry the event's own time and the writer's
//! pid, not the collector's:
//!
//! - PRI = facility × 8 + severity, the severity from the level: TRACE and DEBUG 7 (debug),
//!   INFO 6 (informational), WARN 4 (warning), ERROR 3 (error), FATAL 2 (critical);
//! - TIMESTAMP: the event's time, RFC 3339 in UTC with microseconds (RFC 5424 allows at most
//!   six fractional digits): `2026-11-24T17:31:05.123456Z`;
//! - HOSTNAME (at most 255 characters), APP-NAME (48; the writer's service by default) and
//!   MSGID (`-`): printable US-ASCII only, anything else replaced by `_`; PROCID: the writer's
//!   pid;
//! - `mode = "json"` (the default): STRUCTURED-DATA `-`, MSG the event as one JSON line (the
//!   `[logs] schema`), so that a receiver's JSON parser (rsyslog `mmjsonparse`, Fluent Bit,
//!   Vector) gets every field;
//! - `mode = "structured"`: MSG the plain message, and the ids and fields as the parameters of
//!   one SD-ELEMENT `[shmtel@32473 thread="7" trace_id="…" span_id="…" correlation_id="…"
//!   caller="…" truncated="true" user_id="42"]` (ids only when set; a field named like one of
//!   them is written as `fields.<name>`): PARAM-NAMEs are sanitised (printable US-ASCII except
//!   `=`, space, `]` and `"`, at most 32), PARAM-VALUEs escape `"`, `\` and `]`;
//! - MSG carries no byte order mark.
//!
//! Messages are limited to `max_message_bytes` (header included). A longer one is cut, never
//! split: in JSON mode the event's message is shortened at a character boundary and marked
//! truncated (then fields dropped from the end if still needed) so that the MSG stays valid
//! JSON; in structured mode trailing parameters are dropped until the STRUCTURED-DATA fits and
//! the MSG is cut at a character boundary, with `truncated="true"` added.
//!
//! # Transports
//!
//! - `udp://host:port`: one datagram per message, no framing. A send error (an ICMP
//!   port-unreachable surfaces as "connection refused" on a later send) is retried from the
//!   message that failed. UDP itself may lose messages unseen.
//! - `tcp://host:port`: octet-counting framing (RFC 6587 `LEN SP MSG`, the default) or
//!   `framing = "newline"` (each message followed by LF; an LF inside a message becomes a
//!   space). The connection is reopened after an error, and the failed batch is resent whole
//!   on the new connection: messages the old connection had already carried may arrive
//!   twice. A connection the server closed is noticed before a batch is written to it.
//! - `unix:///path`: a datagram socket like `/dev/log` (one message per datagram), or a stream
//!   socket when the path is one (framed as for TCP). Note that a `/dev/log` owned by journald
//!   or by rsyslog's default `imuxsock` expects the old BSD format: point this sink at rsyslog
//!   `imuxsock` with `UseSpecialParser="off"`, or at syslog-ng's `unix-dgram` with
//!   `flags(syslog-protocol)`.
//!
//! Every failure is retryable (connection refused, broken pipe, timeouts): batches wait with
//! backoff within `max_retry_elapsed_ms`, while new events fill the queue and beyond it are
//! dropped and counted; an absent syslog server never holds up the drain loop.
//!
//! # Configuration
//!
//! ```toml
//! [[logs.syslog]]                  # one section per destination
//! address = "udp://127.0.0.1:514"  # required: udp://host:port | tcp://host:port | unix:///dev/log
//! name = "syslog"                  # the `sink` label of its self-metrics (default syslog, syslog.1, ...)
//! facility = "user"                # kern user mail daemon auth syslog lpr news uucp cron authpriv
//!                                  # ftp ntp security console solaris-cron local0 .. local7
//! mode = "json"                    # json | structured
//! sd_id = "shmtel@32473"           # the SD-ID of structured mode
//! framing = "octet-counting"       # octet-counting | newline (TCP and unix stream sockets)
//! max_message_bytes = 8192         # longer messages are truncated (256 ..= 65000 for UDP)
//! app_name = "api"                 # APP-NAME (default: the writer's service)
//! hostname = "web-1"               # HOSTNAME (default: this host's name)
//! timeout_ms = 5000                # connect and write timeout
//! batch_size = 256                 # messages per batch (one write on TCP)
//! batch_timeout_ms = 100           # longest a message waits for its batch
//! queue_size = 65536               # messages held at most; beyond, dropped and counted
//! max_retry_elapsed_ms = 30000     # retry budget of one batch; 0: never retry
//! retry_initial_backoff_ms = 200   # first retry delay (x0.5..1.5 jitter), doubling...
//! retry_max_backoff_ms = 5000      # ...up to this
//! ```

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::file::{check_name, Resume};
use super::render::Renderer;
use crate::export::resource::{host_name, ResourceInfo};
use crate::export::sender::{BatchSettings, BatchSink, Encoder, Outcome, Transport};
use crate::export::stats::ExporterStats;
use crate::export::{check_backoff, check_batching};
use crate::inspect::render::civil_from_days;
use crate::sinks::{LogData, LogSink, OwnedValue};

/// What goes into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogMode {
    /// MSG is the JSON line, no structured data.
    #[default]
    Json,
    /// MSG is the plain message; ids and fields in one SD-ELEMENT.
    Structured,
}

/// How messages are delimited on stream transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// RFC 6587 octet counting: `LEN SP MSG`.
    #[default]
    OctetCounting,
    /// Each message followed by LF.
    Newline,
}

/// `[[logs.syslog]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// `udp://host:port`, `tcp://host:port` or `unix:///dev/log` (required).
    pub address: String,
    /// The `sink` label of the self-metrics (default: chosen by the pipeline).
    pub name: Option<String>,
    /// Facility name (default `user`).
    pub facility: String,
    /// JSON in the message, or structured data (default json).
    pub mode: SyslogMode,
    /// SD-ID of structured mode (default `shmtel@32473`).
    pub sd_id: String,
    /// Stream framing (default octet-counting).
    pub framing: Framing,
    /// Longest message in bytes, header included (default 8192).
    pub max_message_bytes: usize,
    /// APP-NAME (default: the writer's service).
    pub app_name: Option<String>,
    /// HOSTNAME (default: this host's name).
    pub hostname: Option<String>,
    /// Connect and write timeout (default 5000).
    pub timeout_ms: u64,
    /// Messages per batch (default 256).
    pub batch_size: usize,
    /// Longest a message waits for its batch (default 100).
    pub batch_timeout_ms: u64,
    /// Messages held at most (default 65536).
    pub queue_size: usize,
    /// Retry budget of one batch (default 30000; 0 never retries).
    pub max_retry_elapsed_ms: u64,
    /// First retry delay before jitter (default 200).
    pub retry_initial_backoff_ms: u64,
    /// Longest retry delay before jitter (default 5000).
    pub retry_max_backoff_ms: u64,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            address: String::new(),
            name: None,
            facility: "user".into(),
            mode: SyslogMode::Json,
            sd_id: DEFAULT_SD_ID.into(),
            framing: Framing::OctetCounting,
            max_message_bytes: 8192,
            app_name: None,
            hostname: None,
            timeout_ms: 5000,
            batch_size: 256,
            batch_timeout_ms: 100,
            queue_size: 65_536,
            max_retry_elapsed_ms: 30_000,
            retry_initial_backoff_ms: 200,
            retry_max_backoff_ms: 5000,
        }
    }
}

/// The default SD-ID of structured mode (32473 is the private enterprise number RFC 5612
/// reserves for documentation examples).
pub const DEFAULT_SD_ID: &str = "shmtel@32473";

/// The smallest `max_message_bytes` accepted.
const MIN_MESSAGE: usize = 256;
/// The largest `max_message_bytes` over UDP (an IPv4 datagram's payload, with room to spare).
const MAX_UDP_MESSAGE: usize = 65_000;
/// The largest `max_message_bytes` otherwise.
const MAX_MESSAGE: usize = 1 << 20;

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `udp://host:port`.
    Udp(String),
    /// `tcp://host:port`.
    Tcp(String),
    /// `unix:///path`.
    Unix(PathBuf),
}

/// Parse `udp://host:port`, `tcp://host:port` or `unix:///path`.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let t = text.trim();
    let host_port = |rest: &str| -> Result<String, String> {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: no port (like udp://127.0.0.1:514)"))?;
        if host.is_empty() || host.contains('/') {
            return Err(format!("{text:?}: no host"));
        }
        port.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("{text:?}: {port:?} is not a port"))?;
        Ok(rest.to_owned())
    };
    if let Some(rest) = t.strip_prefix("udp://") {
        Ok(Address::Udp(host_port(rest)?))
    } else if let Some(rest) = t.strip_prefix("tcp://") {
        Ok(Address::Tcp(host_port(rest)?))
    } else if let Some(rest) = t.strip_prefix("unix://") {
        if !rest.starts_with('/') {
            return Err(format!(
                "{text:?}: the socket path must be absolute (unix:///dev/log)"
            ));
        }
        Ok(Address::Unix(PathBuf::from(rest)))
    } else {
        Err(format!(
            "{text:?}: must be udp://host:port, tcp://host:port or unix:///path"
        ))
    }
}

/// The facility code of a name (`user` 1, `local0` 16, ...).
pub fn facility_code(name: &str) -> Option<u8> {
    let code = match name.trim().to_ascii_lowercase().as_str() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "ntp" => 12,
        "security" | "audit" => 13,
        "console" | "alert" => 14,
        "solaris-cron" | "clock" => 15,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    };
    Some(code)
}

/// The syslog severity of a level code: TRACE/DEBUG 7, INFO 6, WARN 4, ERROR 3, FATAL 2.
pub fn severity(level: u8) -> u8 {
    match level {
        0 | 1 => 7,
        2 => 6,
        3 => 4,
        4 => 3,
        5 => 2,
        _ => 5,
    }
}

impl SyslogConfig {
    /// Check the section; errors are (key, message), `key` prefixed with `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{prefix}.{k}");
        if self.address.is_empty() {
            return Err((key("address"), "is required".into()));
        }
        let addr = parse_address(&self.address).map_err(|m| (key("address"), m))?;
        check_name(prefix, &self.name)?;
        if facility_code(&self.facility).is_none() {
            return Err((
                key("facility"),
                format!(
                    "{:?} is not a facility (kern, user, mail, daemon, auth, syslog, lpr, news, \
                     uucp, cron, authpriv, ftp, ntp, security, console, solaris-cron, \
                     local0 .. local7)",
                    self.facility
                ),
            ));
        }
        if self.sd_id.is_empty() || sd_name(&self.sd_id) != self.sd_id {
            return Err((
                key("sd_id"),
                format!(
                    "{:?} is not an SD-ID (1 to 32 printable ASCII characters, no space, '=', ']' or '\"')",
                    self.sd_id
                ),
            ));
        }
        let max = if matches!(addr, Address::Udp(_)) {
            MAX_UDP_MESSAGE
        } else {
            MAX_MESSAGE
        };
        if !(MIN_MESSAGE..=max).contains(&self.max_message_bytes) {
            return Err((
                key("max_message_bytes"),
                format!("must be between {MIN_MESSAGE} and {max} for this address"),
            ));
        }
        if self.timeout_ms == 0 {
            return Err((key("timeout_ms"), "must be at least 1".into()));
        }
        check_backoff(
            prefix,
            self.retry_initial_backoff_ms,
            self.retry_max_backoff_ms,
        )?;
        check_batching(
            prefix,
            self.batch_size,
            self.batch_timeout_ms,
            self.queue_size,
        )
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

/// Start the sink. `renderer` renders the JSON of `mode = "json"`; `resource` names services
/// (`OTEL_SERVICE_NAME`) and the host.
pub fn start(
    cfg: &SyslogConfig,
    renderer: Renderer,
    resource: &ResourceInfo,
    stats: Arc<ExporterStats>,
) -> Result<Box<dyn LogSink>, String> {
    let addr = parse_address(&cfg.address)?;
    let encoder = SyslogEncoder::new(cfg, renderer, resource)?;
    let transport = SyslogTransport::new(addr, cfg.framing, Duration::from_millis(cfg.timeout_ms));
    tracing::info!(address = %cfg.address, sink = stats.name, "sending log events to syslog");
    Ok(Box::new(BatchSink::start(
        cfg.batch(),
        stats,
        encoder,
        transport,
    )?))
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

/// Printable US-ASCII (33..=126), other bytes `_`, at most `max` bytes; `-` when empty.
pub fn header_field(text: &str, max: usize) -> String {
    let s: String = text
        .chars()
        .take(max)
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// An SD-NAME: printable US-ASCII except `=`, space, `]` and `"` (others `_`), at most 32.
pub fn sd_name(text: &str) -> String {
    let s: String = text
        .chars()
        .take(32)
        .map(|c| match c {
            '=' | ']' | '"' => '_',
            c if ('!'..='~').contains(&c) => c,
            _ => '_',
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Append `value` as a PARAM-VALUE body (`"`, `\` and `]` escaped with `\`).
pub fn escape_param_value(value: &str, out: &mut Vec<u8>) {
    for b in value.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn floor_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Append `ns` as `2026-11-24T17:31:05.123456Z`.
pub fn timestamp(ns: u64, out: &mut Vec<u8>) {
    let secs = ns / 1_000_000_000;
    let micros = (ns % 1_000_000_000) / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        y.clamp(0, 9999),
        mo,
        d,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        micros
    );
}

/// Builds RFC 5424 messages and frames them (octet counting) into batch bodies.
pub struct SyslogEncoder {
    renderer: Renderer,
    resource: ResourceInfo,
    facility: u8,
    mode: SyslogMode,
    sd_id: String,
    max: usize,
    app_name: Option<String>,
    hostname: String,
    msg: Vec<u8>,
}

/// The id parameters of structured mode, which fields may not shadow.
const SD_KEYS: &[&str] = &[
    "thread",
    "trace_id",
    "span_id",
    "correlation_id",
    "caller",
    "truncated",
];

impl SyslogEncoder {
    /// An encoder for `cfg` (validated).
    pub fn new(
        cfg: &SyslogConfig,
        renderer: Renderer,
        resource: &ResourceInfo,
    ) -> Result<SyslogEncoder, String> {
        let facility = facility_code(&cfg.facility)
            .ok_or_else(|| format!("{:?} is not a facility", cfg.facility))?;
        let host = match &cfg.hostname {
            Some(h) => h.clone(),
            None if !resource.host_name.is_empty() => resource.host_name.clone(),
            None => host_name(),
        };
        Ok(SyslogEncoder {
            renderer,
            resource: resource.clone(),
            facility,
            mode: cfg.mode,
            sd_id: sd_name(&cfg.sd_id),
            max: cfg.max_message_bytes.max(MIN_MESSAGE),
            app_name: cfg.app_name.as_deref().map(|a| header_field(a, 48)),
            hostname: header_field(&host, 255),
            msg: Vec::new(),
        })
    }

    /// Append the message for `log` (no framing) to `out`.
    pub fn message(&mut self, log: &LogData, out: &mut Vec<u8>) {
        let start = out.len();
        let pri = u16::from(self.facility) * 8 + u16::from(severity(log.level));
        let _ = write!(out, "<{pri}>1 ");
        timestamp(log.time_ns, out);
        out.push(b' ');
        out.extend_from_slice(self.hostname.as_bytes());
        out.push(b' ');
        match &self.app_name {
            Some(a) => out.extend_from_slice(a.as_bytes()),
            None => out
                .extend_from_slice(header_field(self.resource.service(&log.origin), 48).as_bytes()),
        }
        let _ = write!(out, " {} - ", log.origin.pid);
        let room = self.max.saturating_sub(out.len() - start);
        match self.mode {
            SyslogMode::Json => {
                out.extend_from_slice(b"- ");
                self.json_msg(log, room.saturating_sub(2), out);
            }
            SyslogMode::Structured => self.structured(log, room, out),
        }
    }

    /// The JSON line, made to fit `room` bytes by shortening the message (marked truncated),
    /// then dropping fields from the end, so that it stays valid JSON.
    fn json_msg(&mut self, log: &LogData, room: usize, out: &mut Vec<u8>) {
        let start = out.len();
        self.renderer.render(log, out);
        if out.len() - start <= room {
            return;
        }
        let mut l = log.clone();
        l.truncated = true;
        loop {
            let excess = (out.len() - start).saturating_sub(room);
            out.truncate(start);
            if !l.message.is_empty() {
                // Escaping only lengthens text: cutting `excess` raw bytes cuts at least as
                // many rendered ones (the first round also pays for `"truncated":true`).
                let keep =
                    floor_boundary(&l.message, l.message.len().saturating_sub(excess.max(1)));
                l.message.truncate(keep);
            } else if l.fields.pop().is_none() {
                self.renderer.render(&l, out);
                let text = String::from_utf8_lossy(&out[start..]).into_owned();
                out.truncate(start + floor_boundary(&text, room));
                return;
            }
            self.renderer.render(&l, out);
            if out.len() - start <= room {
                return;
            }
        }
    }

    fn structured(&mut self, log: &LogData, room: usize, out: &mut Vec<u8>) {
        let mut params: Vec<(String, String)> = Vec::with_capacity(log.fields.len() + 6);
        params.push(("thread".into(), log.origin.tid.to_string()));
        if log.trace_id != [0; 16] {
            params.push(("trace_id".into(), hex(&log.trace_id)));
        }
        if log.span_id != [0; 8] {
            params.push(("span_id".into(), hex(&log.span_id)));
        }
        if !log.correlation_id.is_empty() {
            params.push(("correlation_id".into(), log.correlation_id.clone()));
        }
        if !log.caller.is_empty() {
            params.push(("caller".into(), String::from(&*log.caller)));
        }
        let ids = params.len();
        let mut truncated = log.truncated;
        for (k, v) in &log.fields {
            let name = if SD_KEYS.contains(&&**k) {
                sd_name(&format!("fields.{k}"))
            } else {
                sd_name(k)
            };
            params.push((name, param_text(v)));
        }
        let sd = |params: &[(String, String)], truncated: bool, buf: &mut Vec<u8>| {
            buf.clear();
            buf.push(b'[');
            buf.extend_from_slice(self.sd_id.as_bytes());
            for (i, (k, v)) in params.iter().enumerate() {
                if i == ids && truncated {
                    buf.extend_from_slice(b" truncated=\"true\"");
                }
                buf.push(b' ');
                buf.extend_from_slice(k.as_bytes());
                buf.extend_from_slice(b"=\"");
                escape_param_value(v, buf);
                buf.push(b'"');
            }
            if params.len() == ids && truncated {
                buf.extend_from_slice(b" truncated=\"true\"");
            }
            buf.push(b']');
        };
        let mut buf = std::mem::take(&mut self.msg);
        sd(&params, truncated, &mut buf);
        if buf.len() + 1 + log.message.len() > room {
            truncated = true;
            sd(&params, truncated, &mut buf);
            // Keep at least a little of the message: drop trailing fields while the
            // structured data alone takes more than half the room.
            while buf.len() + 1 > room / 2 && params.len() > ids {
                params.pop();
                sd(&params, truncated, &mut buf);
            }
            if buf.len() + 1 > room {
                params.truncate(ids);
                sd(&params, truncated, &mut buf);
            }
        }
        out.extend_from_slice(&buf);
        let left = room.saturating_sub(buf.len() + 1);
        if !log.message.is_empty() {
            out.push(b' ');
            out.extend_from_slice(&log.message.as_bytes()[..floor_boundary(&log.message, left)]);
        }
        self.msg = buf;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A field value as PARAM-VALUE text.
fn param_text(v: &OwnedValue) -> String {
    match v {
        OwnedValue::Null => "null".into(),
        OwnedValue::Bool(b) => b.to_string(),
        OwnedValue::I64(i) => i.to_string(),
        OwnedValue::F64(f) => f.to_string(),
        OwnedValue::Str(s) | OwnedValue::Json(s) => s.clone(),
    }
}

impl Encoder<LogData> for SyslogEncoder {
    fn encode(&mut self, items: Vec<LogData>, out: &mut Vec<u8>) {
        let mut msg = Vec::new();
        for log in &items {
            msg.clear();
            self.message(log, &mut msg);
            let _ = write!(out, "{} ", msg.len());
            out.extend_from_slice(&msg);
        }
    }
}

/// The octet-counted frames of a body: `(frame start, message)`.
pub fn frames(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = body.get(at..).filter(|r| !r.is_empty())?;
        let sp = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        let msg = rest.get(sp + 1..sp + 1 + len)?;
        let start = at;
        at += sp + 1 + len;
        Some((start, msg))
    })
}

// ---------------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------------

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    UnixDgram(UnixDatagram),
    UnixStream(UnixStream),
}

/// Sends framed batches over UDP, TCP or a unix socket, (re)connecting as needed.
pub struct SyslogTransport {
    addr: Address,
    framing: Framing,
    timeout: Duration,
    conn: Option<Conn>,
    resume: Resume,
}

fn retry(why: impl std::fmt::Display) -> Outcome {
    Outcome::Retry {
        after: None,
        why: why.to_string(),
    }
}

impl SyslogTransport {
    /// A transport to `addr`; nothing is connected until the first batch.
    pub fn new(addr: Address, framing: Framing, timeout: Duration) -> SyslogTransport {
        SyslogTransport {
            addr,
            framing,
            timeout,
            conn: None,
            resume: Resume::default(),
        }
    }

    fn resolve(hp: &str) -> io::Result<Vec<SocketAddr>> {
        let v: Vec<SocketAddr> = hp.to_socket_addrs()?.collect();
        if v.is_empty() {
            return Err(io::Error::other(format!("{hp}: no address")));
        }
        Ok(v)
    }

    fn connect(&self) -> io::Result<Conn> {
        match &self.addr {
            Address::Udp(hp) => {
                let mut last = None;
                for a in Self::resolve(hp)? {
                    let local: SocketAddr = if a.is_ipv4() {
                        ([0, 0, 0, 0], 0).into()
                    } else {
                        ([0u16; 8], 0).into()
                    };
                    let r = UdpSocket::bind(local).and_then(|s| {
                        s.connect(a)?;
                        s.set_write_timeout(Some(self.timeout))?;
                        Ok(s)
                    });
                    match r {
                        Ok(s) => return Ok(Conn::Udp(s)),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| io::Error::other("no address")))
            }
            Address::Tcp(hp) => {
                let mut last = None;
                for a in Self::resolve(hp)? {
                    match TcpStream::connect_timeout(&a, self.timeout) {
                        Ok(s) => {
                            s.set_write_timeout(Some(self.timeout))?;
                            return Ok(Conn::Tcp(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| io::Error::other("no address")))
            }
            Address::Unix(path) => {
                let d = UnixDatagram::unbound()?;
                match d.connect(path) {
                    Ok(()) => {
                        d.set_write_timeout(Some(self.timeout))?;
                        Ok(Conn::UnixDgram(d))
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                        let s = UnixStream::connect(path)?;
                        s.set_write_timeout(Some(self.timeout))?;
                        Ok(Conn::UnixStream(s))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Whether the peer of a stream connection is still there (it has not closed it).
    fn stream_alive(conn: &Conn) -> bool {
        let check = |set: &dyn Fn(bool) -> io::Result<()>,
                     peek: &dyn Fn(&mut [u8]) -> io::Result<usize>| {
            if set(true).is_err() {
                return false;
            }
            let mut b = [0u8; 1];
            let alive = match peek(&mut b) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            };
            set(false).is_ok() && alive
        };
        match conn {
            Conn::Tcp(s) => check(&|on| s.set_nonblocking(on), &|buf| s.peek(buf)),
            Conn::UnixStream(s) => check(&|on| s.set_nonblocking(on), &|buf| {
                use std::os::fd::AsRawFd;
                // A unix stream has no peek in std: recv with MSG_PEEK.
                // SAFETY: buf is valid for writes of buf.len() bytes, and the descriptor is
                // open: `s` owns it for the duration of the call.
                let n = unsafe {
                    libc::recv(
                        s.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }),
            Conn::Udp(_) | Conn::UnixDgram(_) => true,
        }
    }

    /// The bytes a stream carries for `body`: as is (octet counting) or newline framed.
    fn stream_bytes(&self, body: &[u8]) -> Vec<u8> {
        match self.framing {
            Framing::OctetCounting => body.to_vec(),
            Framing::Newline => {
                let mut out = Vec::with_capacity(body.len());
                for (_, msg) in frames(body) {
                    out.extend(msg.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
                    out.push(b'\n');
                }
                out
            }
        }
    }
}

impl Transport for SyslogTransport {
    fn send(&mut self, body: &[u8]) -> Outcome {
        let from = self.resume.start(body);
        if self.conn.as_ref().is_some_and(|c| !Self::stream_alive(c)) {
            self.conn = None;
        }
        if self.conn.is_none() {
            match self.connect() {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.resume.stopped(body, from);
                    return retry(format!("connect: {e}"));
                }
            }
        }
        let datagram =
            |send: &dyn Fn(&[u8]) -> io::Result<usize>| -> Result<(), (usize, io::Error)> {
                for (start, msg) in frames(body).filter(|(s, _)| *s >= from) {
                    if let Err(e) = send(msg) {
                        if e.raw_os_error() == Some(libc::EMSGSIZE) {
                            // Too long for this socket, whatever we do: skip it.
                            tracing::warn!("syslog message of {} bytes too long for the socket; lowered max_message_bytes?", msg.len());
                            continue;
                        }
                        return Err((start, e));
                    }
                }
                Ok(())
            };
        let r = match self.conn.as_mut() {
            Some(Conn::Udp(s)) => datagram(&|m| s.send(m)),
            Some(Conn::UnixDgram(s)) => datagram(&|m| s.send(m)),
            Some(Conn::Tcp(_)) | Some(Conn::UnixStream(_)) => {
                let bytes = self.stream_bytes(body);
                let w = match self.conn.as_mut() {
                    Some(Conn::Tcp(s)) => s.write_all(&bytes).and_then(|()| s.flush()),
                    Some(Conn::UnixStream(s)) => s.write_all(&bytes).and_then(|()| s.flush()),
                    _ => Ok(()),
                };
                // A stream resends the whole batch (what the broken connection carried is
                // unknown).
                w.map_err(|e| (0, e))
            }
            None => Ok(()),
        };
        match r {
            Ok(()) => Outcome::Done,
            Err((at, e)) => {
                self.conn = None;
                self.resume.stopped(body, at);
                retry(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::render::{Format, Schema};
    use crate::sinks::Origin;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;

    fn log(level: u8, message: &str) -> LogData {
        LogData {
            origin: Origin {
                service: "api svc".into(),
                pid: 4242,
                tid: 7,
            },
            time_ns: 1_795_541_465_123_456_789,
            observed_ns: 1_795_541_465_200_000_000,
            level,
            message: message.into(),
            truncated: false,
            correlation_id: String::new(),
            trace_id: [0; 16],
            span_id: [0; 8],
            caller: "".into(),
            fields: vec![("user_id".into(), OwnedValue::I64(42))],
        }
    }

    fn encoder(cfg: &SyslogConfig) -> SyslogEncoder {
        let res = ResourceInfo {
            host_name: "web-1".into(),
            ..Default::default()
        };
        let r = Renderer::new(Format::Json, Schema::Shmtel, res.clone());
        SyslogEncoder::new(cfg, r, &res).unwrap()
    }

    fn msg(enc: &mut SyslogEncoder, l: &LogData) -> String {
        let mut out = Vec::new();
        enc.message(l, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn pri_follows_facility_and_level() {
        assert_eq!((0..6).map(severity).collect::<Vec<_>>(), [7, 7, 6, 4, 3, 2]);
        assert_eq!(facility_code("user"), Some(1));
        assert_eq!(facility_code("LOCAL7"), Some(23));
        assert_eq!(facility_code("local8"), None);
        let mut e = encoder(&SyslogConfig {
            facility: "local0".into(),
            ..Default::default()
        });
        assert!(msg(&mut e, &log(4, "x")).starts_with("<131>1 "), "16*8+3");
        let mut e = encoder(&SyslogConfig::default());
        assert!(msg(&mut e, &log(0, "x")).starts_with("<15>1 "));
        assert!(msg(&mut e, &log(5, "x")).starts_with("<10>1 "));
    }

    #[test]
    fn json_mode_header_and_message() {
        let mut e = encoder(&SyslogConfig::default());
        let m = msg(&mut e, &log(2, "hello"));
        let (head, json) = m.split_once(" - - ").unwrap();
        assert_eq!(head, "<14>1 2026-11-24T17:31:05.123456Z web-1 api_svc 4242");
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["message"], "hello");
        assert_eq!(v["user_id"], 42);
        let mut e = encoder(&SyslogConfig {
            app_name: Some("ä very long application name that goes past forty-eight".into()),
            hostname: Some("h st".into()),
            ..Default::default()
        });
        let m = msg(&mut e, &log(2, "x"));
        let f: Vec<&str> = m.split(' ').collect();
        assert_eq!(f[2], "h_st");
        assert_eq!(f[3].len(), 48);
        assert!(f[3].starts_with("__very_long"), "{}", f[3]);
    }

    #[test]
    fn structured_mode_escapes_and_sanitises() {
        let mut e = encoder(&SyslogConfig {
            mode: SyslogMode::Structured,
            ..Default::default()
        });
        let mut l = log(3, "plain \"message\"");
        l.trace_id = [0xab; 16];
        l.correlation_id = "req]1".into();
        l.caller = "a.py:1 f".into();
        l.fields = vec![
            ("we\"ird name=x".into(), OwnedValue::Str("q\"b\\s]e".into())),
            ("thread".into(), OwnedValue::Bool(true)),
            ("obj".into(), OwnedValue::Json("{\"a\":[1]}".into())),
        ];
        let m = msg(&mut e, &l);
        let sd = m.split_once(" 4242 - ").unwrap().1;
        assert_eq!(
            sd,
            format!(
                "[shmtel@32473 thread=\"7\" trace_id=\"{}\" correlation_id=\"req\\]1\" \
                 caller=\"a.py:1 f\" we_ird_name_x=\"q\\\"b\\\\s\\]e\" fields.thread=\"true\" \
                 obj=\"{{\\\"a\\\":[1\\]}}\"] plain \"message\"",
                "ab".repeat(16)
            )
        );
        assert_eq!(sd_name("a b=c]d\"é"), "a_b_c_d__");
        assert_eq!(sd_name(&"x".repeat(40)).len(), 32);
        assert_eq!(header_field("", 48), "-");
    }

    #[test]
    fn long_messages_are_cut_at_char_boundaries_and_stay_json() {
        let cfg = SyslogConfig {
            max_message_bytes: 300,
            ..Default::default()
        };
        let mut e = encoder(&cfg);
        let m = msg(&mut e, &log(2, &"€".repeat(500)));
        assert!(m.len() <= 300, "{}", m.len());
        let json = m.split_once(" - - ").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["truncated"], true);
        assert!(v["message"].as_str().unwrap().chars().all(|c| c == '€'));
        assert!(v["message"].as_str().unwrap().len() > 50);
        // Fields go when the message alone cannot make room.
        let mut l = log(2, "m");
        l.fields = (0..40)
            .map(|i| (format!("field{i}").into(), OwnedValue::Str("v".repeat(20))))
            .collect();
        let m = msg(&mut e, &l);
        assert!(m.len() <= 300);
        serde_json::from_str::<serde_json::Value>(m.split_once(" - - ").unwrap().1).unwrap();

        let mut e = encoder(&SyslogConfig {
            mode: SyslogMode::Structured,
            ..cfg
        });
        let mut l = log(2, &"€".repeat(500));
        l.fields = (0..40)
            .map(|i| (format!("field{i}").into(), OwnedValue::Str("v".repeat(20))))
            .collect();
        let m = msg(&mut e, &l);
        assert!(m.len() <= 300, "{}", m.len());
        assert!(m.contains("truncated=\"true\""));
        assert!(m.ends_with('€'));
        assert_eq!(floor_boundary("a€", 2), 1);
        assert_eq!(floor_boundary("a€", 9), 4);
    }

    #[test]
    fn frames_round_trip() {
        let mut e = encoder(&SyslogConfig::default());
        let mut body = Vec::new();
        e.encode(vec![log(2, "a"), log(3, "ü\nb")], &mut body);
        let f: Vec<(usize, &[u8])> = frames(&body).collect();
        assert_eq!(f.len(), 2);
        assert!(f[0].1.starts_with(b"<14>1 "));
        assert!(f[1].1.starts_with(b"<12>1 "));
        let first_len = f[0].1.len();
        assert!(body.starts_with(format!("{first_len} <14>").as_bytes()));
        let t = SyslogTransport::new(
            Address::Tcp("x:1".into()),
            Framing::Newline,
            Duration::from_secs(1),
        );
        let nl = t.stream_bytes(&body);
        assert_eq!(nl.iter().filter(|&&b| b == b'\n').count(), 2);
    }

    #[test]
    fn addresses_and_config() {
        assert_eq!(
            parse_address("udp://127.0.0.1:514"),
            Ok(Address::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            parse_address("tcp://[::1]:601"),
            Ok(Address::Tcp("[::1]:601".into()))
        );
        assert_eq!(
            parse_address("unix:///dev/log"),
            Ok(Address::Unix("/dev/log".into()))
        );
        for bad in [
            "127.0.0.1:514",
            "udp://host",
            "tcp://:1",
            "udp://h:0",
            "unix://rel",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        let c: SyslogConfig = toml::from_str(
            "address = \"tcp://127.0.0.1:601\"\nmode = \"structured\"\nframing = \"newline\"\nfacility = \"local3\"",
        )
        .unwrap();
        assert!(c.validate("logs.syslog[0]").is_ok());
        assert_eq!(
            (c.mode, c.framing),
            (SyslogMode::Structured, Framing::Newline)
        );
        let bad = |t: &str, key: &str| {
            let c: SyslogConfig = toml::from_str(t).unwrap();
            assert_eq!(c.validate("logs.syslog[0]").unwrap_err().0, key, "{t}");
        };
        bad("facility = \"user\"", "logs.syslog[0].address");
        bad("address = \"http://x:1\"", "logs.syslog[0].address");
        bad(
            "address = \"udp://x:1\"\nfacility = \"nope\"",
            "logs.syslog[0].facility",
        );
        bad(
            "address = \"udp://x:1\"\nsd_id = \"a b\"",
            "logs.syslog[0].sd_id",
        );
        bad(
            "address = \"udp://x:1\"\nmax_message_bytes = 70000",
            "logs.syslog[0].max_message_bytes",
        );
        bad(
            "address = \"udp://x:1\"\nbatch_size = 0",
            "logs.syslog[0].batch_size",
        );
        assert!(toml::from_str::<SyslogConfig>("framing = \"lf\"").is_err());
    }

    #[test]
    fn udp_sends_one_datagram_per_message() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = Address::Udp(rx.local_addr().unwrap().to_string());
        let mut t = SyslogTransport::new(addr, Framing::OctetCounting, Duration::from_secs(1));
        let mut e = encoder(&SyslogConfig::default());
        let mut body = Vec::new();
        e.encode(vec![log(2, "one"), log(4, "two")], &mut body);
        assert_eq!(t.send(&body), Outcome::Done);
        let mut buf = [0u8; 2048];
        let n = rx.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"<14>1 "));
        let n = rx.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"<11>1 "));
    }

    #[test]
    fn tcp_reconnects_and_an_absent_server_is_retryable() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let addr = Address::Tcp(format!("127.0.0.1:{port}"));
        let mut t = SyslogTransport::new(addr, Framing::OctetCounting, Duration::from_secs(1));
        let mut e = encoder(&SyslogConfig::default());
        let mut body = Vec::new();
        e.encode(vec![log(2, "one")], &mut body);
        assert_eq!(t.send(&body), Outcome::Done);
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s);
        let mut len = Vec::new();
        r.read_until(b' ', &mut len).unwrap();
        let n: usize = std::str::from_utf8(&len).unwrap().trim().parse().unwrap();
        let mut m = vec![0; n];
        r.read_exact(&mut m).unwrap();
        assert!(m.starts_with(b"<14>1 "));
        // The server closes the connection: the next batch goes over a new one.
        drop(r);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(t.send(&body), Outcome::Done);
        let (s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = (&s).take(body.len() as u64).read_to_end(&mut got);
        assert_eq!(got, body);
        drop(l);
        drop(s);
        std::thread::sleep(Duration::from_millis(50));
        let mut failed = false;
        for _ in 0..3 {
            failed |= matches!(t.send(&body), Outcome::Retry { .. });
        }
        assert!(failed, "sending to a closed port must be retryable");
    }

    #[test]
    fn unix_datagram_and_stream_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.sock");
        let rx = UnixDatagram::bind(&p).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut t = SyslogTransport::new(
            Address::Unix(p.clone()),
            Framing::OctetCounting,
            Duration::from_secs(1),
        );
        let mut e = encoder(&SyslogConfig::default());
        let mut body = Vec::new();
        e.encode(vec![log(2, "dgram")], &mut body);
        assert_eq!(t.send(&body), Outcome::Done);
        let mut buf = [0u8; 2048];
        let n = rx.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("dgram"));

        let ps = dir.path().join("stream.sock");
        let l = std::os::unix::net::UnixListener::bind(&ps).unwrap();
        let mut t =
            SyslogTransport::new(Address::Unix(ps), Framing::Newline, Duration::from_secs(1));
        assert_eq!(t.send(&body), Outcome::Done);
        let (s, _) = l.accept().unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert!(
            line.starts_with("<14>1 ") && line.ends_with("dgram\"}\n") || line.contains("dgram")
        );
        // Nobody listening: retryable.
        let mut t = SyslogTransport::new(
            Address::Unix(dir.path().join("none.sock")),
            Framing::OctetCounting,
            Duration::from_secs(1),
        );
        assert!(matches!(t.send(&body), Outcome::Retry { .. }));
    }
}
