//! Spans: ids, parent, start and end times, name, kind, status, attributes and events.
//!
//! A span costs nothing in the ring until it has something to say: each attribute, event or link
//! is one frame when it is set, and the span itself one frame when it ends. The thread keeps the
//! current span's context, so spans started on a thread nest, log events carry the current
//! trace and span ids, and histogram observations carry them as exemplars.

use crate::layout::*;
use crate::table::Symbol;
use crate::value::Value;
use crate::writer::{append, count_drop, with_thread, DropKind, ThreadState};

/// The ids that identify a span across processes (W3C Trace Context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanContext {
    /// 16-byte trace id.
    pub trace_id: [u8; 16],
    /// 8-byte span id.
    pub span_id: [u8; 8],
    /// Whether the trace is sampled.
    pub sampled: bool,
}

impl SpanContext {
    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

/// OpenTelemetry's `TraceIdRatioBased` decision: sampled when the trace id's low 64 bits
/// (its last 8 bytes, big-endian) are below `ratio * 2^64`. Ratios at or above 1 sample
/// everything, at or below 0 (or NaN) nothing.
pub fn ratio_sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    // The SDKs compute the bound as round(ratio * 2^64) in floating point.
    let bound = (ratio * 18_446_744_073_709_551_616.0).round() as u64;
    let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
    low < bound
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Span kind (OpenTelemetry's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SpanKind {
    /// Internal operation.
    #[default]
    Internal,
    /// Server side of a request.
    Server,
    /// Client side of a request.
    Client,
    /// Producer of a message.
    Producer,
    /// Consumer of a message.
    Consumer,
}

impl SpanKind {
    fn code(self) -> u8 {
        match self {
            SpanKind::Internal => span_kind::INTERNAL,
            SpanKind::Server => span_kind::SERVER,
            SpanKind::Client => span_kind::CLIENT,
            SpanKind::Producer => span_kind::PRODUCER,
            SpanKind::Consumer => span_kind::CONSUMER,
        }
    }
}

/// Span status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SpanStatus {
    /// Not set.
    #[default]
    Unset,
    /// Completed successfully.
    Ok,
    /// Failed.
    Error,
}

/// Per-thread span state: the current span and an id generator.
pub(crate) struct ThreadSpans {
    current: Option<SpanContext>,
    rng: u64,
}

impl ThreadSpans {
    pub(crate) const fn new() -> Self {
        ThreadSpans {
            current: None,
            rng: 0,
        }
    }

    /// The current span of this thread, if any.
    #[inline(always)]
    pub(crate) fn current(&self) -> Option<SpanContext> {
        self.current
    }

    /// Whether this thread has a current span.
    #[inline(always)]
    pub(crate) fn has_current(&self) -> bool {
        self.current.is_some()
    }

    /// wyrand: a fast non-cryptographic generator, seeded once per thread from the kernel.
    #[inline(always)]
    fn next_u64(&mut self) -> u64 {
        if self.rng == 0 {
            self.rng = seed();
        }
        self.rng = self.rng.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.rng as u128).wrapping_mul((self.rng ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    }

    fn nonzero_u64(&mut self) -> u64 {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v;
            }
        }
    }
}

#[cold]
fn seed() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: buf is a valid writable buffer of 8 bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), 8, 0) };
    let mut s = u64::from_le_bytes(buf);
    if n != 8 {
        s ^= crate::clock::wall_ns();
    }
    // SAFETY: gettid has no preconditions.
    s ^= (unsafe { libc::gettid() } as u64) << 32;
    s | 1
}

/// The current span's context on this thread.
pub fn current_span() -> Option<SpanContext> {
    with_thread(|st| st.span.current()).flatten()
}

/// Make `ctx` this thread's current span (`None`: no current span) without a guard, and return
/// the previous one. For integrations that manage span lifetimes themselves (the `tracing`
/// layer sets it when a span is entered and restores the previous one on exit): log events,
/// exemplars and spans started with [`Span::start`] on this thread then take `ctx` as their
/// context. The caller restores the returned value.
pub fn set_current_span(ctx: Option<SpanContext>) -> Option<SpanContext> {
    with_thread(|st| std::mem::replace(&mut st.span.current, ctx)).flatten()
}

/// A span in progress. It ends when [`Span::end`] is called or when it is dropped.
#[derive(Debug)]
pub struct Span {
    ctx: SpanContext,
    parent: [u8; 8],
    prev: Option<SpanContext>,
    start: u64,
    name: u32,
    kind: u8,
    status: u8,
    flags: u8,
    attrs: u16,
    events: u16,
    links: u16,
    dropped: u16,
    ended: bool,
    is_current: bool,
}

impl Span {
    /// Start a span as a child of this thread's current span (or as the root of a new trace),
    /// and make it the current span until it ends.
    #[inline]
    pub fn start(name: Symbol) -> Span {
        with_thread(|st| {
            let parent = st.span.current();
            let mut s = new_span(st, name, parent, false);
            s.prev = parent;
            s.is_current = true;
            st.span.current = Some(s.ctx);
            s
        })
        .unwrap_or_else(|| detached(name))
    }

    /// Start a span with an explicit parent (`None`: a new trace); `remote` marks a parent
    /// taken from propagated headers. The thread's current span is not changed.
    pub fn start_with_parent(name: Symbol, parent: Option<SpanContext>, remote: bool) -> Span {
        with_thread(|st| new_span(st, name, parent, remote)).unwrap_or_else(|| detached(name))
    }

    /// Start the root span of a new trace, sampled as OpenTelemetry's `TraceIdRatioBased`
    /// sampler would decide for its trace id (see [`ratio_sampled`]). An unsampled span still
    /// has ids (logs and propagated headers carry them) but writes nothing. The thread's
    /// current span is not changed.
    #[inline]
    pub fn start_root(name: Symbol, sample_ratio: f64) -> Span {
        with_thread(|st| {
            let hi = st.span.nonzero_u64();
            let lo = st.span.next_u64();
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&hi.to_be_bytes());
            trace_id[8..].copy_from_slice(&lo.to_be_bytes());
            let parent = SpanContext {
                trace_id,
                span_id: [0; 8],
                sampled: ratio_sampled(&trace_id, sample_ratio),
            };
            let mut s = new_span(st, name, Some(parent), false);
            // A root has no parent span: the context above only carried the trace id and the
            // sampling decision.
            s.parent = [0; 8];
            s
        })
        .unwrap_or_else(|| detached(name))
    }

    /// This span's context (for propagation and correlation).
    pub fn context(&self) -> SpanContext {
        self.ctx
    }

    /// Rename the span (e.g. a server span once the route template is known).
    pub fn set_name(&mut self, name: Symbol) {
        self.name = name.0;
    }

    /// Set the kind (default internal).
    pub fn set_kind(&mut self, kind: SpanKind) {
        self.kind = kind.code();
    }

    /// Set the status.
    pub fn set_status(&mut self, status: SpanStatus) {
        self.status = match status {
            SpanStatus::Unset => span_status::UNSET,
            SpanStatus::Ok => span_status::OK,
            SpanStatus::Error => span_status::ERROR,
        };
    }

    /// Whether `count` reached `limit`; a refused item is counted as dropped.
    fn over_limit(&mut self, count: u16, limit: u16) -> bool {
        if count >= limit {
            self.dropped = self.dropped.saturating_add(1);
            true
        } else {
            false
        }
    }

    /// Set an attribute (one frame in the ring).
    #[inline]
    pub fn set_attribute(&mut self, key: Symbol, value: Value<'_>) {
        if self.ended
            || !self.ctx.sampled
            || self.over_limit(self.attrs, crate::config::get().max_span_attributes)
        {
            return;
        }
        self.attrs += 1;
        if !write_attr(KIND_SPAN_ATTR, self.ctx.span_id, 0, key, value) {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Add an event with attributes.
    pub fn add_event(&mut self, name: Symbol, attrs: &[(Symbol, Value<'_>)]) {
        self.event_at(name, None, attrs);
    }

    /// [`Span::add_event`] with the event's time given, in ticks of [`crate::clock::now_ticks`]
    /// (an integration that buffers events and writes them when the span ends).
    pub fn add_event_at(&mut self, name: Symbol, ticks: u64, attrs: &[(Symbol, Value<'_>)]) {
        self.event_at(name, Some(ticks), attrs);
    }

    fn event_at(&mut self, name: Symbol, ticks: Option<u64>, attrs: &[(Symbol, Value<'_>)]) {
        if self.ended
            || !self.ctx.sampled
            || self.over_limit(self.events, crate::config::get().max_span_events)
        {
            return;
        }
        self.events += 1;
        let seq = self.events;
        let body = SpanEvent {
            span_id: self.ctx.span_id,
            ts: ticks.unwrap_or_else(crate::clock::now_ticks),
            name: name.0,
            event_seq: seq,
            reserved: 0,
        };
        let ok = with_thread(|st| append(st, KIND_SPAN_EVENT, 0, &body)).unwrap_or(false);
        if !ok {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        for (k, v) in attrs {
            if !write_attr(KIND_SPAN_ATTR, self.ctx.span_id, seq, *k, *v) {
                self.dropped = self.dropped.saturating_add(1);
            }
        }
    }

    /// Record an error as OpenTelemetry records exceptions: an `exception` event with
    /// `exception.type`, `exception.message` and, when given, `exception.stacktrace`; the
    /// status becomes error. (Interns its names: meant for the error path, not a hot loop.)
    pub fn record_exception(&mut self, type_name: &str, message: &str, stacktrace: Option<&str>) {
        let mut attrs = vec![
            (Symbol::intern("exception.type"), Value::Str(type_name)),
            (Symbol::intern("exception.message"), Value::Str(message)),
        ];
        if let Some(st) = stacktrace {
            attrs.push((Symbol::intern("exception.stacktrace"), Value::Str(st)));
        }
        self.add_event(Symbol::intern("exception"), &attrs);
        self.set_status(SpanStatus::Error);
    }

    /// Link another span (e.g. the messages a batch consumer processes), with attributes.
    pub fn add_link(&mut self, linked: SpanContext, remote: bool, attrs: &[(Symbol, Value<'_>)]) {
        if self.ended
            || !self.ctx.sampled
            || self.over_limit(self.links, crate::config::get().max_span_links)
        {
            return;
        }
        self.links += 1;
        let seq = self.links;
        let mut flags = if linked.sampled { SPAN_FLAG_SAMPLED } else { 0 };
        if remote {
            flags |= SPAN_FLAG_REMOTE_PARENT;
        }
        let body = SpanLink {
            span_id: self.ctx.span_id,
            linked_trace_id: linked.trace_id,
            linked_span_id: linked.span_id,
            link_seq: seq,
            flags,
            reserved: [0; 5],
        };
        let ok = with_thread(|st| append(st, KIND_SPAN_LINK, 0, &body)).unwrap_or(false);
        if !ok {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        for (k, v) in attrs {
            if !write_attr(KIND_SPAN_LINK_ATTR, self.ctx.span_id, seq, *k, *v) {
                self.dropped = self.dropped.saturating_add(1);
            }
        }
    }

    /// End the span now: writes its frame and restores the previous current span.
    #[inline]
    pub fn end(mut self) {
        self.finish();
    }

    #[inline]
    fn finish(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if !self.ctx.sampled && !self.is_current {
            // Nothing to write and no thread state to restore: no clock read, no TLS access.
            return;
        }
        let end = crate::clock::now_ticks();
        let rec = SpanRecord {
            trace_id: self.ctx.trace_id,
            span_id: self.ctx.span_id,
            parent_span_id: self.parent,
            start_ts: self.start,
            end_ts: end,
            name: self.name,
            kind: self.kind,
            status: self.status,
            flags: self.flags,
            reserved0: 0,
            attr_count: self.attrs,
            event_count: self.events,
            dropped_attrs: self.dropped,
            reserved1: 0,
        };
        let sampled = self.ctx.sampled;
        let (is_current, ctx, prev) = (self.is_current, self.ctx, self.prev);
        with_thread(|st| {
            if sampled && !append(st, KIND_SPAN, 0, &rec) {
                count_drop(st, DropKind::Span);
            }
            if is_current && st.span.current == Some(ctx) {
                st.span.current = prev;
            }
        });
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.finish();
    }
}

#[inline(always)]
fn new_span(st: &mut ThreadState, name: Symbol, parent: Option<SpanContext>, remote: bool) -> Span {
    let span_id = st.span.nonzero_u64().to_be_bytes();
    let (trace_id, parent_id, sampled) = match parent {
        Some(p) => (p.trace_id, p.span_id, p.sampled),
        None => {
            let hi = st.span.nonzero_u64();
            let lo = st.span.next_u64();
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&hi.to_be_bytes());
            t[8..].copy_from_slice(&lo.to_be_bytes());
            (t, [0u8; 8], true)
        }
    };
    let mut flags = if sampled { SPAN_FLAG_SAMPLED } else { 0 };
    if remote {
        flags |= SPAN_FLAG_REMOTE_PARENT;
    }
    Span {
        ctx: SpanContext {
            trace_id,
            span_id,
            sampled,
        },
        parent: parent_id,
        prev: None,
        // An unsampled span writes nothing: its times are never read.
        start: if sampled {
            crate::clock::now_ticks()
        } else {
            0
        },
        name: name.0,
        kind: span_kind::INTERNAL,
        status: span_status::UNSET,
        flags,
        attrs: 0,
        events: 0,
        links: 0,
        dropped: 0,
        ended: false,
        is_current: false,
    }
}

/// A span for a thread whose state is gone (thread teardown): records nothing.
fn detached(name: Symbol) -> Span {
    Span {
        ctx: SpanContext {
            trace_id: [0; 16],
            span_id: [0; 8],
            sampled: false,
        },
        parent: [0; 8],
        prev: None,
        start: 0,
        name: name.0,
        kind: 0,
        status: 0,
        flags: 0,
        attrs: 0,
        events: 0,
        links: 0,
        dropped: 0,
        ended: true,
        is_current: false,
    }
}

/// One attribute frame (`kind`: of the span or an event, or of a link) for `seq` (0: the span).
fn write_attr(kind: u16, span_id: [u8; 8], seq: u16, key: Symbol, value: Value<'_>) -> bool {
    let (vtype, inline, bytes) = value.encode();
    let len = FRAME_HEADER_SIZE + 32 + align8(bytes.len());
    with_thread(|st| {
        let Some(ring) = st.ring() else { return false };
        let Some(off) = ring.claim(kind, 0, len) else {
            return false;
        };
        let attr = SpanAttr {
            span_id,
            event_seq: seq,
            reserved: [0; 6],
        };
        ring.put(off, FRAME_HEADER_SIZE, bytemuck::bytes_of(&attr));
        let tv = TypedValue {
            key: key.0,
            vtype,
            reserved: [0; 3],
            value: inline,
        };
        ring.put(off, FRAME_HEADER_SIZE + 16, bytemuck::bytes_of(&tv));
        ring.put_padded(off, FRAME_HEADER_SIZE + 32, bytes);
        // Not committed here: the span's own frame (or any later record on this thread)
        // publishes it, so a span with attributes costs one release store, not one per frame.
        true
    })
    .unwrap_or(false)
}
