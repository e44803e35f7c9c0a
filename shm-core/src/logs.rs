//! Log events and business metric events.
//!
//! A log event is one frame: level, time, the current trace and span ids, the thread's
//! correlation id, the message and typed fields. Formatting, redaction and shipping happen in the
//! collector. A call below the process's level costs one relaxed load.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::layout::*;
use crate::span::SpanContext;
use crate::table::Symbol;
use crate::value::Value;
use crate::writer::{with_thread, DropKind};

/// Log levels, TRACE to FATAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Finest detail.
    Trace = 0,
    /// Debugging.
    Debug = 1,
    /// Normal operation.
    Info = 2,
    /// Unexpected but handled.
    Warn = 3,
    /// An operation failed.
    Error = 4,
    /// The process cannot continue.
    Fatal = 5,
}

impl Level {
    /// Parse `trace`, `debug`, `info`, `warn`/`warning`, `error`, `fatal`/`critical` (any case).
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" => Level::Error,
            "fatal" | "critical" => Level::Fatal,
            _ => return None,
        })
    }

    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }

    /// From the layout's code.
    pub fn from_code(c: u8) -> Option<Level> {
        Some(match c {
            0 => Level::Trace,
            1 => Level::Debug,
            2 => Level::Info,
            3 => Level::Warn,
            4 => Level::Error,
            5 => Level::Fatal,
            _ => return None,
        })
    }
}

static MIN_LEVEL: AtomicU8 = AtomicU8::new(0);

/// Set the lowest level recorded by this process.
pub fn set_log_level(level: Level) {
    // Ordering: Relaxed: a filter; a racing log call may use the old level.
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a log event at `level` would be recorded.
#[inline(always)]
pub fn log_enabled(level: Level) -> bool {
    // Ordering: Relaxed: see `set_log_level`.
    level as u8 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Longest correlation id kept (longer ones are truncated).
pub const MAX_CORRELATION_ID: usize = 128;

/// The thread's correlation id, in a fixed buffer (no allocation on the hot path).
pub(crate) struct Correlation {
    buf: [u8; MAX_CORRELATION_ID],
    len: usize,
}

impl Correlation {
    pub(crate) const fn new() -> Self {
        Correlation {
            buf: [0; MAX_CORRELATION_ID],
            len: 0,
        }
    }

    fn get(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Set this thread's correlation id (empty clears it); later log events carry it.
pub fn set_correlation_id(id: &str) {
    let n = floor_char_boundary(id, MAX_CORRELATION_ID);
    with_thread(|st| {
        st.correlation.buf[..n].copy_from_slice(&id.as_bytes()[..n]);
        st.correlation.len = n;
    });
}

/// This thread's correlation id, if set.
pub fn correlation_id() -> Option<String> {
    with_thread(|st| {
        let c = st.correlation.get();
        (!c.is_empty()).then(|| String::from_utf8_lossy(c).into_owned())
    })
    .flatten()
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut n = max;
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

#[inline(always)]
fn values_len(values: &[(Symbol, Value<'_>)]) -> usize {
    values
        .iter()
        .map(|(_, v)| 16 + align8(v.encode().2.len()))
        .sum()
}

/// Write typed values at `at` within the frame at `off`; returns the offset after them.
#[inline(always)]
fn put_values(
    ring: &mut crate::writer::ThreadRing,
    off: usize,
    mut at: usize,
    values: &[(Symbol, Value<'_>)],
) -> usize {
    for (k, v) in values {
        let (vtype, inline, bytes) = v.encode();
        let tv = TypedValue {
            key: k.0,
            vtype,
            reserved: [0; 3],
            value: inline,
        };
        ring.put(off, at, bytemuck::bytes_of(&tv));
        ring.put_padded(off, at + 16, bytes);
        at += 16 + align8(bytes.len());
    }
    at
}

/// Record a log event with typed fields. The current span's ids and the thread's correlation
/// id are added automatically.
#[inline]
pub fn log(level: Level, message: &str, fields: &[(Symbol, Value<'_>)]) {
    log_with_caller(level, message, fields, Symbol(0));
}

/// [`log`] with a caller symbol (`file:line function`, interned once per call site).
pub fn log_with_caller(
    level: Level,
    message: &str,
    fields: &[(Symbol, Value<'_>)],
    caller: Symbol,
) {
    if !log_enabled(level) {
        return;
    }
    write_log(level, message, fields, caller, Context::Thread);
}

/// A log event's context given by the caller rather than taken from the thread: for runtimes
/// whose tasks share a thread (Python's asyncio keeps them in `contextvars`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogContext<'a> {
    /// The span the event belongs to (its trace and span ids are recorded).
    pub span: Option<SpanContext>,
    /// The correlation id (empty: none).
    pub correlation_id: &'a str,
}

/// [`log_with_caller`] with an explicit context instead of the thread's current span and
/// correlation id.
pub fn log_in_context(
    level: Level,
    message: &str,
    fields: &[(Symbol, Value<'_>)],
    caller: Symbol,
    context: LogContext<'_>,
) {
    if !log_enabled(level) {
        return;
    }
    write_log(level, message, fields, caller, Context::Given(context));
}

/// [`log_with_caller`] in an explicit span (`None`: none) instead of the thread's current one,
/// with the thread's correlation id: for integrations whose events name their span (a `tracing`
/// event with an explicit parent).
pub fn log_in_span(
    level: Level,
    message: &str,
    fields: &[(Symbol, Value<'_>)],
    caller: Symbol,
    span: Option<SpanContext>,
) {
    if !log_enabled(level) {
        return;
    }
    write_log(level, message, fields, caller, Context::Span(span));
}

/// Where a log event's span and correlation id come from.
#[derive(Clone, Copy)]
enum Context<'a> {
    /// The thread's current span and correlation id.
    Thread,
    /// The given span, the thread's correlation id.
    Span(Option<SpanContext>),
    /// Both given.
    Given(LogContext<'a>),
}

#[inline(always)]
fn write_log(
    level: Level,
    message: &str,
    fields: &[(Symbol, Value<'_>)],
    caller: Symbol,
    context: Context<'_>,
) {
    let ts = crate::clock::now_ticks();
    let max_msg = crate::config::get().max_message_bytes;
    with_thread(|st| {
        let batch = st.batch_depth != 0;
        let (ctx, corr) = match context {
            Context::Given(c) => {
                let n = floor_char_boundary(c.correlation_id, MAX_CORRELATION_ID);
                (c.span, &c.correlation_id.as_bytes()[..n])
            }
            Context::Span(span) => (span, st.correlation.get()),
            Context::Thread => (st.span.current(), st.correlation.get()),
        };
        let corr_len = corr.len();
        let Some(ring) = st.slot.get() else { return };
        let mut flags = 0u8;
        let mut msg_len = floor_char_boundary(message, max_msg);
        let fixed = FRAME_HEADER_SIZE + std::mem::size_of::<LogRecord>();
        let mut nfields = fields.len().min(u16::MAX as usize);
        let mut flen = values_len(&fields[..nfields]);
        let budget = ring_budget(ring);
        while fixed + align8(msg_len + corr_len) + flen > budget && nfields > 0 {
            nfields -= 1;
            flen = values_len(&fields[..nfields]);
        }
        if fixed + align8(msg_len + corr_len) + flen > budget {
            msg_len = floor_char_boundary(message, budget.saturating_sub(fixed + corr_len + 8));
        }
        if msg_len < message.len() || nfields < fields.len() {
            flags |= LOG_FLAG_TRUNCATED;
        }
        let len = fixed + align8(msg_len + corr_len) + flen;
        let Some(off) = ring.claim(KIND_LOG, 0, len) else {
            ring.count(DropKind::Log);
            return;
        };
        let rec = LogRecord {
            ts,
            trace_id: ctx.map(|c| c.trace_id).unwrap_or([0; 16]),
            span_id: ctx.map(|c| c.span_id).unwrap_or([0; 8]),
            level: level as u8,
            flags,
            field_count: nfields as u16,
            caller: caller.0,
            msg_len: msg_len as u32,
            corr_len: corr_len as u32,
        };
        let mut at = FRAME_HEADER_SIZE;
        ring.put(off, at, bytemuck::bytes_of(&rec));
        at += std::mem::size_of::<LogRecord>();
        if (msg_len + corr_len) % 8 != 0 {
            // Zero the last word first; the text then overwrites its leading bytes.
            ring.put(off, at + align8(msg_len + corr_len) - 8, &[0u8; 8]);
        }
        ring.put(off, at, &message.as_bytes()[..msg_len]);
        if corr_len != 0 {
            ring.put(off, at + msg_len, corr);
        }
        at += align8(msg_len + corr_len);
        put_values(ring, off, at, &fields[..nfields]);
        if !batch {
            ring.commit();
        }
    });
}

/// The largest frame this thread's ring takes.
fn ring_budget(ring: &crate::writer::ThreadRing) -> usize {
    ring.max_frame()
}

/// Record a business metric event (name, value, unit, tags), exported by the collector.
pub fn business_event(name: Symbol, value: f64, unit: Symbol, tags: &[(Symbol, Value<'_>)]) {
    let ts = crate::clock::now_ticks();
    with_thread(|st| {
        let batch = st.batch_depth != 0;
        let Some(ring) = st.ring() else { return };
        let fixed = FRAME_HEADER_SIZE + std::mem::size_of::<BusinessEvent>();
        let mut n = tags.len().min(u16::MAX as usize);
        while n > 0 && fixed + values_len(&tags[..n]) > ring.max_frame() {
            n -= 1;
        }
        let len = fixed + values_len(&tags[..n]);
        let Some(off) = ring.claim(KIND_BUSINESS, 0, len) else {
            ring.count(DropKind::Other);
            return;
        };
        let rec = BusinessEvent {
            ts,
            value,
            name: name.0,
            unit: unit.0,
            tag_count: n as u16,
            reserved: [0; 6],
        };
        ring.put(off, FRAME_HEADER_SIZE, bytemuck::bytes_of(&rec));
        put_values(ring, off, fixed, &tags[..n]);
        if !batch {
            ring.commit();
        }
    });
}
