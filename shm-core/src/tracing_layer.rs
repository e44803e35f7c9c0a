//! A [`tracing_subscriber::Layer`] that records `tracing` events and spans into shmtel's rings
//! (cargo feature `tracing`).
//!
//! ```no_run
//! use shmtel_core::tracing_layer::ShmtelLayer;
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry().with(ShmtelLayer::new()).init();
//!
//! let span = tracing::info_span!("checkout", otel.kind = "server", correlation_id = "req-7");
//! let _entered = span.enter();
//! tracing::info!(user_id = 42, region = "eu-west", "user logged in");
//! ```
//!
//! # Events
//!
//! Every event becomes one shmtel log record:
//! - level: `TRACE`..`ERROR` map to shmtel's levels of the same name (`tracing` has no FATAL);
//! - message: the `message` field (what `info!("...")` formats), formatted into a reused
//!   thread-local buffer;
//! - fields, typed: `i64`, `f64`, `bool` and `&str` as themselves; `u64`, `i128` and `u128` as
//!   an integer when they fit in an `i64`, else as their exact decimal text (a string: a float
//!   would round them); `Debug` values (`?x`) as their `{:?}` text; errors as their `Display`
//!   text;
//! - caller (unless [`ShmtelLayer::with_caller`]`(false)`): `file:line module_path`, interned
//!   once per call site and thread;
//! - trace and span ids: those of the event's span (its explicit `parent:`, else the span entered
//!   on this thread; `parent: None` means none);
//! - correlation id: the nearest enclosing span's `correlation_id` field (a span inherits its
//!   parent's when it has none of its own), else the thread's
//!   ([`crate::set_correlation_id`]).
//!
//! Call-site data (the caller symbol, the field-name symbols) is cached per thread, keyed by the
//! call site's `&'static Metadata`: after the first event of a call site on a thread, recording
//! an event takes no lock and makes no system call (the ring append is the one of
//! [`crate::log`]). Field values and the message are copied into thread-local buffers that are
//! reused, so a steady-state event does not allocate either.
//!
//! # Level filtering
//!
//! [`ShmtelLayer`]'s `enabled` answers shmtel's level ([`crate::log_enabled`], i.e.
//! `SHMTEL_LOG_LEVEL` or [`crate::set_log_level`]) for events, and its call-site interest is
//! "sometimes" so the level may change at run time. An event below the level is then skipped by
//! `tracing` before its fields are even looked at. The catch: a layer's `enabled` filters for the
//! *whole* subscriber, so other layers in the same registry (a `fmt` layer printing DEBUG) do
//! not see those events either. To filter for shmtel only, wrap the layer in the per-layer
//! filter [`ShmtelLevelFilter`]:
//!
//! ```no_run
//! use shmtel_core::tracing_layer::{ShmtelLayer, ShmtelLevelFilter};
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry()
//!     .with(ShmtelLayer::new().with_filter(ShmtelLevelFilter))
//!     .init();
//! ```
//!
//! # Spans
//!
//! A `tracing` span becomes a shmtel span, created in `on_new_span` as a child of its `tracing`
//! parent's shmtel span, else (for a contextual span without a `tracing` parent) of this thread's
//! current shmtel span, else as the root of a new trace. A child follows its parent's sampling
//! decision; a root is sampled unless [`ShmtelLayer::with_sample_ratio`] says otherwise
//! (OpenTelemetry's `TraceIdRatioBased` rule, [`crate::ratio_sampled`]). The special fields of
//! `tracing-opentelemetry` are honoured:
//! - `otel.name`: the span name (interned: keep it low-cardinality), else the span's own name;
//! - `otel.kind`: `server`, `client`, `producer`, `consumer` or `internal` (any case);
//! - `otel.status_code`: `ok` or `error` (any case); `otel.status_message`: recorded as the
//!   attribute `otel.status_description`, which the collector's exporters turn into the status
//!   message;
//! - every other field (including `correlation_id`) is an attribute, also when recorded later
//!   (`span.record(...)`). `follows_from` becomes a link.
//!
//! A span's attributes, links and (with [`ShmtelLayer::with_span_events`]) events are kept in
//! the span's registry extensions and written when the span closes, together with the span
//! record, on the closing thread: a `tracing` span may be entered on several threads, and the
//! collector then finds all of a span's frames in one ring, in order. The span record carries
//! the time of `on_new_span` as its start and the time of `on_close` as its end.
//!
//! While a `tracing` span is entered on a thread, it is that thread's current shmtel span
//! ([`crate::current_span`]): [`crate::log`] calls, histogram exemplars and
//! [`crate::Span::start`] inside it take its ids. Exiting restores the previous current span.
//!
//! With [`ShmtelLayer::with_span_events`]`(true)`, an event inside a sampled span is also
//! recorded as an event of that span (named after the event's call site, `event file:line`, a
//! low-cardinality name; attributes `message`, `level` and the fields), besides its log record.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Interest, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::{Level, LogContext, Span, SpanContext, SpanKind, SpanStatus, Symbol, Value};

/// A `tracing` layer that records events as shmtel log records and spans as shmtel spans. See
/// the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ShmtelLayer {
    sample_ratio: f64,
    span_events: bool,
    caller: bool,
}

impl Default for ShmtelLayer {
    fn default() -> Self {
        ShmtelLayer::new()
    }
}

impl ShmtelLayer {
    /// A layer that samples every root span, records events as logs only, with their caller.
    pub fn new() -> Self {
        ShmtelLayer {
            sample_ratio: 1.0,
            span_events: false,
            caller: true,
        }
    }

    /// Sample root spans (those without a parent) with this probability, by their trace id
    /// (OpenTelemetry's `TraceIdRatioBased`); children follow their parent. Default 1.
    pub fn with_sample_ratio(mut self, ratio: f64) -> Self {
        self.sample_ratio = ratio;
        self
    }

    /// Also record events inside a sampled span as events of that span (default false: they
    /// are log records carrying the span's ids).
    pub fn with_span_events(mut self, on: bool) -> Self {
        self.span_events = on;
        self
    }

    /// Record each event's caller (`file:line module_path`) (default true).
    pub fn with_caller(mut self, on: bool) -> Self {
        self.caller = on;
        self
    }
}

/// A per-layer filter ([`tracing_subscriber::layer::Filter`]) that passes events at or above
/// shmtel's level ([`crate::log_enabled`]) and every span. Wrap [`ShmtelLayer`] in it
/// (`ShmtelLayer::new().with_filter(ShmtelLevelFilter)`) so that shmtel's level does not hide
/// events from the other layers of the subscriber.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShmtelLevelFilter;

impl<S> Filter<S> for ShmtelLevelFilter {
    #[inline]
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        level_passes(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        interest(meta)
    }
}

/// shmtel's level for a `tracing` level.
#[inline(always)]
fn level_of(level: &tracing_core::Level) -> Level {
    match *level {
        tracing_core::Level::TRACE => Level::Trace,
        tracing_core::Level::DEBUG => Level::Debug,
        tracing_core::Level::INFO => Level::Info,
        tracing_core::Level::WARN => Level::Warn,
        _ => Level::Error,
    }
}

/// Events pass at or above shmtel's level; spans always.
#[inline(always)]
fn level_passes(meta: &Metadata<'_>) -> bool {
    !meta.is_event() || crate::log_enabled(level_of(meta.level()))
}

/// Events: "sometimes" (ask `enabled` at every call), since shmtel's level may change at run
/// time; spans: always.
fn interest(meta: &Metadata<'_>) -> Interest {
    if meta.is_event() {
        Interest::sometimes()
    } else {
        Interest::always()
    }
}

// ------------------------------------------------------------------------------------------------
// Call sites
// ------------------------------------------------------------------------------------------------

/// What a field of a call site means to the layer.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// An event's message.
    Message,
    /// A field (event) or attribute (span) with this key.
    Plain(Symbol),
    /// `otel.name` of a span.
    OtelName,
    /// `otel.kind` of a span.
    OtelKind,
    /// `otel.status_code` of a span.
    OtelStatusCode,
    /// `otel.status_message` of a span.
    OtelStatusMessage,
    /// `correlation_id` of a span: also an attribute with this key.
    Correlation(Symbol),
}

/// What the layer keeps per call site (per thread): interned once, then read without a lock.
struct Callsite {
    /// `file:line module_path` (or the target when the call site has no file).
    caller: Symbol,
    /// The call site's name: a span's name, an event's span-event name.
    name: Symbol,
    /// The role of each field, by [`Field::index`].
    roles: Box<[Role]>,
}

impl Callsite {
    #[cold]
    fn new(meta: &'static Metadata<'static>) -> Callsite {
        let caller = match (meta.file(), meta.line()) {
            (Some(file), Some(line)) => format!(
                "{file}:{line} {}",
                meta.module_path().unwrap_or(meta.target())
            ),
            _ => meta.target().to_owned(),
        };
        let span = meta.is_span();
        let roles = meta
            .fields()
            .iter()
            .map(|f| match (span, f.name()) {
                (false, "message") => Role::Message,
                (true, "otel.name") => Role::OtelName,
                (true, "otel.kind") => Role::OtelKind,
                (true, "otel.status_code") => Role::OtelStatusCode,
                (true, "otel.status_message") => Role::OtelStatusMessage,
                (true, "correlation_id") => Role::Correlation(Symbol::intern("correlation_id")),
                (_, name) => Role::Plain(Symbol::intern(name)),
            })
            .collect();
        Callsite {
            caller: Symbol::intern(&caller),
            name: Symbol::intern(meta.name()),
            roles,
        }
    }

    #[inline(always)]
    fn role(&self, field: &Field) -> Role {
        match self.roles.get(field.index()) {
            Some(r) => *r,
            // A field of another call site (never seen from `tracing`'s macros): slow but right.
            None => Role::Plain(Symbol::intern(field.name())),
        }
    }
}

/// Hashes a `&'static Metadata` address: a multiply spreads the aligned pointer's bits.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    #[inline(always)]
    fn write_usize(&mut self, n: usize) {
        let x = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

type CallsiteMap = HashMap<usize, Callsite, BuildHasherDefault<AddressHasher>>;

#[inline(always)]
fn callsite<'a>(map: &'a mut CallsiteMap, meta: &'static Metadata<'static>) -> &'a Callsite {
    map.entry(meta as *const Metadata<'static> as usize)
        .or_insert_with(|| Callsite::new(meta))
}

// ------------------------------------------------------------------------------------------------
// Thread-local state
// ------------------------------------------------------------------------------------------------

/// A `tracing` span entered on this thread.
struct Entered {
    id: u64,
    ctx: SpanContext,
    correlation: Option<Arc<str>>,
    /// This thread's current shmtel span before the enter (restored on exit).
    prev: Option<SpanContext>,
}

/// A field value as visited: strings are ranges of [`Local::text`].
#[derive(Clone, Copy)]
enum Raw {
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(usize, usize),
}

impl Raw {
    #[inline(always)]
    fn value<'t>(self, text: &'t str) -> Value<'t> {
        match self {
            Raw::Bool(b) => Value::Bool(b),
            Raw::I64(i) => Value::I64(i),
            Raw::F64(f) => Value::F64(f),
            Raw::Str(a, b) => Value::Str(&text[a..b]),
        }
    }
}

#[derive(Default)]
struct Local {
    callsites: CallsiteMap,
    entered: Vec<Entered>,
    message: String,
    text: String,
    raw: Vec<(Symbol, Raw)>,
    /// Empty between events: only its allocation is reused.
    values: Vec<(Symbol, Value<'static>)>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// Run `f` on this thread's state; if it is busy (a field's `Debug` emitted an event while the
/// layer was visiting fields) or gone (thread teardown), on a fresh one (slow, but right).
#[inline(always)]
fn with_local<R>(f: impl FnOnce(&mut Local) -> R) -> R {
    let mut f = Some(f);
    let done = LOCAL.try_with(|cell| {
        let mut local = cell.try_borrow_mut().ok()?;
        let f = f.take().expect("not called yet");
        Some(f(&mut local))
    });
    match done {
        Ok(Some(r)) => r,
        _ => (f.take().expect("not called yet"))(&mut Local::default()),
    }
}

// ------------------------------------------------------------------------------------------------
// Visitors
// ------------------------------------------------------------------------------------------------

/// Writes an event's fields into the thread's buffers.
struct EventVisitor<'a> {
    callsite: &'a Callsite,
    message: &'a mut String,
    text: &'a mut String,
    raw: &'a mut Vec<(Symbol, Raw)>,
}

impl EventVisitor<'_> {
    #[inline]
    fn text(&mut self, key: Symbol, write: impl FnOnce(&mut String)) {
        let start = self.text.len();
        write(self.text);
        self.raw.push((key, Raw::Str(start, self.text.len())));
    }

    #[inline]
    fn value(&mut self, field: &Field, raw: Raw, display: &dyn fmt::Display) {
        match self.callsite.role(field) {
            Role::Message => {
                let _ = write!(self.message, "{display}");
            }
            r => self.raw.push((key_of(r), raw)),
        }
    }
}

/// The attribute key of a role that is not the message.
#[inline(always)]
fn key_of(role: Role) -> Symbol {
    match role {
        Role::Plain(k) | Role::Correlation(k) => k,
        _ => Symbol::EMPTY,
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field, Raw::F64(value), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field, Raw::I64(value), &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(i) => self.value(field, Raw::I64(i), &value),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        match i64::try_from(value) {
            Ok(i) => self.value(field, Raw::I64(i), &value),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        match i64::try_from(value) {
            Ok(i) => self.value(field, Raw::I64(i), &value),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field, Raw::Bool(value), &value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match self.callsite.role(field) {
            Role::Message => self.message.push_str(value),
            r => self.text(key_of(r), |t| t.push_str(value)),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match self.callsite.role(field) {
            Role::Message => {
                let _ = write!(self.message, "{value}");
            }
            r => self.text(key_of(r), |t| {
                let _ = write!(t, "{value}");
            }),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match self.callsite.role(field) {
            Role::Message => {
                let _ = write!(self.message, "{value:?}");
            }
            r => self.text(key_of(r), |t| {
                let _ = write!(t, "{value:?}");
            }),
        }
    }
}

/// A field value owned (kept in a span's extensions until it closes).
#[derive(Clone, Debug, PartialEq)]
enum Owned {
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(String),
}

impl Owned {
    fn value(&self) -> Value<'_> {
        match self {
            Owned::Bool(b) => Value::Bool(*b),
            Owned::I64(i) => Value::I64(*i),
            Owned::F64(f) => Value::F64(*f),
            Owned::Str(s) => Value::Str(s),
        }
    }
}

/// What a span's fields say, from `on_new_span` or `on_record`.
#[derive(Default)]
struct SpanFields {
    name: Option<String>,
    kind: Option<SpanKind>,
    status: Option<SpanStatus>,
    correlation: Option<String>,
    attrs: Vec<(Symbol, Owned)>,
}

struct SpanVisitor<'a> {
    callsite: &'a Callsite,
    out: &'a mut SpanFields,
}

impl SpanVisitor<'_> {
    fn owned(&mut self, field: &Field, value: Owned) {
        match self.callsite.role(field) {
            // Numbers and booleans in an otel.* field: recorded as text.
            Role::OtelName | Role::OtelKind | Role::OtelStatusCode | Role::OtelStatusMessage => {
                let text = match &value {
                    Owned::Bool(b) => b.to_string(),
                    Owned::I64(i) => i.to_string(),
                    Owned::F64(f) => f.to_string(),
                    Owned::Str(s) => s.clone(),
                };
                self.text(field, text);
            }
            r => self.out.attrs.push((key_of(r), value)),
        }
    }

    fn text(&mut self, field: &Field, text: String) {
        match self.callsite.role(field) {
            Role::OtelName => self.out.name = Some(text),
            Role::OtelKind => self.out.kind = parse_kind(&text),
            Role::OtelStatusCode => self.out.status = parse_status(&text),
            Role::OtelStatusMessage => self
                .out
                .attrs
                .push((status_description(), Owned::Str(text))),
            Role::Correlation(k) => {
                self.out.correlation = Some(text.clone());
                self.out.attrs.push((k, Owned::Str(text)));
            }
            r => self.out.attrs.push((key_of(r), Owned::Str(text))),
        }
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.owned(field, Owned::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.owned(field, Owned::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(i) => self.owned(field, Owned::I64(i)),
            Err(_) => self.text(field, value.to_string()),
        }
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        match i64::try_from(value) {
            Ok(i) => self.owned(field, Owned::I64(i)),
            Err(_) => self.text(field, value.to_string()),
        }
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        match i64::try_from(value) {
            Ok(i) => self.owned(field, Owned::I64(i)),
            Err(_) => self.text(field, value.to_string()),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.owned(field, Owned::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, format!("{value:?}"));
    }
}

fn parse_kind(s: &str) -> Option<SpanKind> {
    let is = |k: &str| s.eq_ignore_ascii_case(k);
    Some(if is("server") {
        SpanKind::Server
    } else if is("client") {
        SpanKind::Client
    } else if is("producer") {
        SpanKind::Producer
    } else if is("consumer") {
        SpanKind::Consumer
    } else if is("internal") {
        SpanKind::Internal
    } else {
        return None;
    })
}

fn parse_status(s: &str) -> Option<SpanStatus> {
    let is = |k: &str| s.eq_ignore_ascii_case(k);
    Some(if is("ok") {
        SpanStatus::Ok
    } else if is("error") {
        SpanStatus::Error
    } else if is("unset") {
        SpanStatus::Unset
    } else {
        return None;
    })
}

/// A process-wide symbol, interned on first use.
macro_rules! static_symbol {
    ($fn:ident, $text:literal) => {
        fn $fn() -> Symbol {
            static S: OnceLock<Symbol> = OnceLock::new();
            *S.get_or_init(|| Symbol::intern($text))
        }
    };
}

static_symbol!(status_description, "otel.status_description");
static_symbol!(message_key, "message");
static_symbol!(level_key, "level");

// ------------------------------------------------------------------------------------------------
// Spans in the registry
// ------------------------------------------------------------------------------------------------

/// An event kept for a span until it closes.
struct BufferedEvent {
    name: Symbol,
    ticks: u64,
    attrs: Vec<(Symbol, Owned)>,
}

/// What the layer keeps in a `tracing` span's extensions.
struct TracedSpan {
    span: Span,
    ctx: SpanContext,
    /// Its own `correlation_id`, else its parent's.
    correlation: Option<Arc<str>>,
    attrs: Vec<(Symbol, Owned)>,
    links: Vec<SpanContext>,
    events: Vec<BufferedEvent>,
    /// Attributes, links and events refused because the span's buffer reached the per-span
    /// limit of its kind ([`crate::Config`]'s `max_span_*`): memory stays bounded, and the
    /// refusals are counted as the span's dropped items when it ends.
    refused: [u16; 3],
}

/// Indexes of [`TracedSpan::refused`].
const ATTRS: usize = 0;
const LINKS: usize = 1;
const EVENTS: usize = 2;

/// Push `item` unless `buffer` holds `limit` items already; count a refusal then.
fn push_bounded<T>(buffer: &mut Vec<T>, limit: u16, refused: &mut u16, item: T) {
    if buffer.len() < limit as usize {
        buffer.push(item);
    } else {
        *refused = refused.saturating_add(1);
    }
}

impl TracedSpan {
    fn new(span: Span, correlation: Option<Arc<str>>) -> TracedSpan {
        TracedSpan {
            ctx: span.context(),
            span,
            correlation,
            attrs: Vec::new(),
            links: Vec::new(),
            events: Vec::new(),
            refused: [0; 3],
        }
    }

    fn add_link(&mut self, linked: SpanContext) {
        if self.ctx.sampled {
            let limit = crate::config::get().max_span_links;
            push_bounded(&mut self.links, limit, &mut self.refused[LINKS], linked);
        }
    }

    fn add_event(&mut self, event: BufferedEvent) {
        if self.ctx.sampled {
            let limit = crate::config::get().max_span_events;
            push_bounded(&mut self.events, limit, &mut self.refused[EVENTS], event);
        }
    }

    fn apply(&mut self, fields: SpanFields) {
        if let Some(c) = fields.correlation {
            self.correlation = Some(Arc::from(c));
        }
        if !self.ctx.sampled {
            return; // an unsampled span writes nothing
        }
        if let Some(name) = fields.name {
            self.span.set_name(Symbol::intern(&name));
        }
        if let Some(kind) = fields.kind {
            self.span.set_kind(kind);
        }
        if let Some(status) = fields.status {
            self.span.set_status(status);
        }
        let limit = crate::config::get().max_span_attributes;
        for a in fields.attrs {
            push_bounded(&mut self.attrs, limit, &mut self.refused[ATTRS], a);
        }
    }

    /// Write everything kept, then the span record, as one commit on this thread's ring.
    fn end(mut self) {
        if !self.ctx.sampled {
            self.span.end();
            return;
        }
        crate::batch(|| {
            for (k, v) in &self.attrs {
                self.span.set_attribute(*k, v.value());
            }
            for l in &self.links {
                self.span.add_link(*l, false, &[]);
            }
            let mut values = Vec::new();
            for e in &self.events {
                values.clear();
                values.extend(e.attrs.iter().map(|(k, v)| (*k, v.value())));
                self.span.add_event_at(e.name, e.ticks, &values);
            }
            // The buffers stopped at the limits, so each of these calls is refused by the span
            // and counted in its dropped items; nothing more is written.
            for _ in 0..self.refused[ATTRS] {
                self.span.set_attribute(Symbol::EMPTY, Value::Null);
            }
            for _ in 0..self.refused[LINKS] {
                self.span.add_link(self.ctx, false, &[]);
            }
            for _ in 0..self.refused[EVENTS] {
                self.span.add_event(Symbol::EMPTY, &[]);
            }
            self.span.end();
        });
    }
}

// ------------------------------------------------------------------------------------------------
// The layer
// ------------------------------------------------------------------------------------------------

impl<S> Layer<S> for ShmtelLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        interest(meta)
    }

    #[inline]
    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        level_passes(meta)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = level_of(meta.level());
        if !crate::log_enabled(level) {
            return; // the level changed since `enabled`, or a per-layer filter let it through
        }
        with_local(|local| self.record_event(local, event, level, &ctx));
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span_ref) = ctx.span(id) else { return };
        let meta = attrs.metadata();
        let mut fields = SpanFields::default();
        let name = with_local(|local| {
            let cs = callsite(&mut local.callsites, meta);
            attrs.record(&mut SpanVisitor {
                callsite: cs,
                out: &mut fields,
            });
            cs.name
        });
        let name = match fields.name.take() {
            Some(n) => Symbol::intern(&n),
            None => name,
        };
        let parent = span_ref.parent().and_then(|p| {
            p.extensions()
                .get::<TracedSpan>()
                .map(|t| (t.ctx, t.correlation.clone()))
        });
        let (span, inherited) = match parent {
            Some((pctx, corr)) => (Span::start_with_parent(name, Some(pctx), false), corr),
            None => {
                let current = if attrs.is_contextual() {
                    crate::current_span()
                } else {
                    None
                };
                match current {
                    Some(c) => (Span::start_with_parent(name, Some(c), false), None),
                    None => (Span::start_root(name, self.sample_ratio), None),
                }
            }
        };
        let mut traced = TracedSpan::new(span, inherited);
        traced.apply(fields);
        span_ref.extensions_mut().insert(traced);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span_ref) = ctx.span(id) else { return };
        let meta = span_ref.metadata();
        let mut fields = SpanFields::default();
        with_local(|local| {
            values.record(&mut SpanVisitor {
                callsite: callsite(&mut local.callsites, meta),
                out: &mut fields,
            })
        });
        let mut ext = span_ref.extensions_mut();
        if let Some(t) = ext.get_mut::<TracedSpan>() {
            t.apply(fields);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let Some(linked) = ctx
            .span(follows)
            .and_then(|f| f.extensions().get::<TracedSpan>().map(|t| t.ctx))
        else {
            return;
        };
        if let Some(span_ref) = ctx.span(id) {
            let mut ext = span_ref.extensions_mut();
            if let Some(t) = ext.get_mut::<TracedSpan>() {
                t.add_link(linked);
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span_ref) = ctx.span(id) else { return };
        let Some((span_ctx, correlation)) = span_ref
            .extensions()
            .get::<TracedSpan>()
            .map(|t| (t.ctx, t.correlation.clone()))
        else {
            return;
        };
        let prev = crate::set_current_span(Some(span_ctx));
        with_local(|local| {
            local.entered.push(Entered {
                id: id.into_u64(),
                ctx: span_ctx,
                correlation,
                prev,
            })
        });
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let id = id.into_u64();
        let restore = with_local(|local| {
            let entered = &mut local.entered;
            let at = entered.iter().rposition(|e| e.id == id)?;
            let e = entered.remove(at);
            if let Some(above) = entered.get_mut(at) {
                // Exited out of order: the span entered above it now restores what it restored.
                if above.prev == Some(e.ctx) {
                    above.prev = e.prev;
                }
                None
            } else {
                Some(e)
            }
        });
        if let Some(e) = restore {
            if crate::current_span() == Some(e.ctx) {
                crate::set_current_span(e.prev);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span_ref) = ctx.span(&id) else {
            return;
        };
        let traced = span_ref.extensions_mut().remove::<TracedSpan>();
        if let Some(t) = traced {
            t.end();
        }
    }
}

impl ShmtelLayer {
    #[inline(always)]
    fn record_event<S>(
        &self,
        local: &mut Local,
        event: &Event<'_>,
        level: Level,
        ctx: &Context<'_, S>,
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Local {
            callsites,
            entered,
            message,
            text,
            raw,
            values,
        } = local;
        let cs = callsite(callsites, event.metadata());
        message.clear();
        text.clear();
        raw.clear();
        event.record(&mut EventVisitor {
            callsite: cs,
            message,
            text,
            raw,
        });
        let caller = if self.caller {
            cs.caller
        } else {
            Symbol::EMPTY
        };
        let text: &str = text;
        let mut fields: Vec<(Symbol, Value<'_>)> = std::mem::take(values);
        fields.extend(raw.iter().map(|(k, r)| (*k, r.value(text))));

        // The span the event belongs to, when it is not the thread's entered one.
        let mut explicit = None;
        if let Some(parent) = event.parent() {
            let found = ctx.span(parent).and_then(|p| {
                p.extensions()
                    .get::<TracedSpan>()
                    .map(|t| (t.ctx, t.correlation.clone()))
            });
            let span = found.as_ref().map(|f| f.0);
            match found.as_ref().and_then(|f| f.1.as_deref()) {
                Some(corr) => crate::log_in_context(
                    level,
                    message,
                    &fields,
                    caller,
                    LogContext {
                        span,
                        correlation_id: corr,
                    },
                ),
                None => crate::log_in_span(level, message, &fields, caller, span),
            }
            explicit = Some(parent.clone());
        } else if event.is_root() {
            crate::log_in_span(level, message, &fields, caller, None);
        } else {
            match entered.last().and_then(|e| e.correlation.as_deref()) {
                Some(corr) => crate::log_in_context(
                    level,
                    message,
                    &fields,
                    caller,
                    LogContext {
                        span: crate::current_span(),
                        correlation_id: corr,
                    },
                ),
                None => crate::log_with_caller(level, message, &fields, caller),
            }
        }

        if self.span_events && !event.is_root() {
            let target = explicit.or_else(|| entered.last().map(|e| Id::from_u64(e.id)));
            if let Some(span_ref) = target.and_then(|id| ctx.span(&id)) {
                let mut ext = span_ref.extensions_mut();
                if let Some(t) = ext.get_mut::<TracedSpan>() {
                    if t.ctx.sampled {
                        let mut attrs = Vec::with_capacity(fields.len() + 2);
                        attrs.push((message_key(), Owned::Str(message.clone())));
                        attrs.push((level_key(), Owned::Str(level.as_str().to_owned())));
                        attrs.extend(fields.iter().map(|(k, v)| (*k, owned(v))));
                        t.add_event(BufferedEvent {
                            name: cs.name,
                            ticks: crate::clock::now_ticks(),
                            attrs,
                        });
                    }
                }
            }
        }

        fields.clear();
        // Give the (now empty) allocation back for the next event; an in-place collect keeps
        // it, since the element types have the same layout.
        *values = fields
            .into_iter()
            .map(|_| (Symbol::EMPTY, Value::Null))
            .collect();
    }
}

fn owned(v: &Value<'_>) -> Owned {
    match *v {
        Value::Null => Owned::Str(String::new()),
        Value::Bool(b) => Owned::Bool(b),
        Value::I64(i) => Owned::I64(i),
        Value::F64(f) => Owned::F64(f),
        Value::Str(s) | Value::Json(s) => Owned::Str(s.to_owned()),
    }
}
