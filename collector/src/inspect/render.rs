//! Pure rendering of decoded records: one human line or one JSON object per record, with ids
//! resolved through the writer process's interning table and ticks converted to wall-clock time
//! through its region's clock anchor.
//!
//! Nothing here does I/O or keeps state, so the same functions serve `shmtel dump`, `shmtel tail`
//! and the collector's log sinks. Everything that comes out of a region file is untrusted: strings
//! may be invalid UTF-8 or hold terminal control sequences, ids may be unknown, floats may be NaN.
//! Human output therefore escapes control characters and quotes anything with spaces; JSON output
//! is escaped by `serde_json`; an unknown id renders as `#<id>` (symbols) or `series#<id>`.
//!
//! Human line layout (the time column is 30 characters wide, `-` for records without a time):
//!
//! ```text
//! 2026-11-24T09:20:01.123456789Z pid=41 tid=42 LOG INFO "user logged in" user_id=42 path=/users
//! -                              pid=41 tid=42 COUNTER http_requests{method="GET"} +1
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};
use shmtel_core::clock::ClockAnchor;
use shmtel_core::layout::{
    gauge_mode, metric_type, span_kind, span_status, LOG_FLAG_TRUNCATED, SPAN_FLAG_REMOTE_PARENT,
    SPAN_FLAG_SAMPLED,
};
use shmtel_core::reader::{Attr, AttrValue, Attrs, DecodeError, Record, TableReader};
use shmtel_core::Level;

/// Width of the time column of a human line (`2026-11-24T09:20:01.123456789Z`).
pub const TIME_WIDTH: usize = 30;

/// Where a record came from: printed on lines that mix rings (`shmtel tail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSource {
    /// Writer process id.
    pub pid: u32,
    /// Writer thread id.
    pub tid: u32,
}

/// What a record is rendered against.
#[derive(Clone, Copy)]
pub struct RenderContext<'a> {
    /// The writer process's interning table, if it could be read: resolves series and symbols.
    pub table: Option<&'a TableReader>,
    /// The ring's clock anchor ([`shmtel_core::region::RegionFile::anchor`]): converts ticks.
    pub anchor: ClockAnchor,
    /// Printed as `pid=.. tid=..` (human) or `"pid"`/`"tid"` (JSON) when set.
    pub source: Option<RecordSource>,
}

/// The kind of a decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// Counter increment.
    CounterAdd,
    /// Gauge set.
    GaugeSet,
    /// Gauge add.
    GaugeAdd,
    /// Histogram observation.
    Histogram,
    /// Finished span.
    Span,
    /// Span (or span event) attribute.
    SpanAttr,
    /// Span event.
    SpanEvent,
    /// Span link.
    SpanLink,
    /// Span link attribute.
    SpanLinkAttr,
    /// Log event.
    Log,
    /// Business metric event.
    Business,
}

impl RecordKind {
    /// Every kind, in layout order.
    pub const ALL: [RecordKind; 11] = [
        RecordKind::CounterAdd,
        RecordKind::GaugeSet,
        RecordKind::GaugeAdd,
        RecordKind::Histogram,
        RecordKind::Span,
        RecordKind::SpanAttr,
        RecordKind::SpanEvent,
        RecordKind::Log,
        RecordKind::Business,
        RecordKind::SpanLink,
        RecordKind::SpanLinkAttr,
    ];

    /// The kind of `record`.
    pub fn of(record: &Record<'_>) -> RecordKind {
        match record {
            Record::CounterAdd { .. } => RecordKind::CounterAdd,
            Record::GaugeSet { .. } => RecordKind::GaugeSet,
            Record::GaugeAdd { .. } => RecordKind::GaugeAdd,
            Record::Histogram { .. } => RecordKind::Histogram,
            Record::Span(_) => RecordKind::Span,
            Record::SpanAttr { .. } => RecordKind::SpanAttr,
            Record::SpanEvent(_) => RecordKind::SpanEvent,
            Record::SpanLink(_) => RecordKind::SpanLink,
            Record::SpanLinkAttr { .. } => RecordKind::SpanLinkAttr,
            Record::Log { .. } => RecordKind::Log,
            Record::Business { .. } => RecordKind::Business,
        }
    }

    /// Snake-case name, used as the `kind` of JSON objects and in per-kind counts.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::CounterAdd => "counter_add",
            RecordKind::GaugeSet => "gauge_set",
            RecordKind::GaugeAdd => "gauge_add",
            RecordKind::Histogram => "histogram",
            RecordKind::Span => "span",
            RecordKind::SpanAttr => "span_attr",
            RecordKind::SpanEvent => "span_event",
            RecordKind::SpanLink => "span_link",
            RecordKind::SpanLinkAttr => "span_link_attr",
            RecordKind::Log => "log",
            RecordKind::Business => "business",
        }
    }

    /// Upper-case label of human lines.
    pub fn label(self) -> &'static str {
        match self {
            RecordKind::CounterAdd => "COUNTER",
            RecordKind::GaugeSet => "GAUGE_SET",
            RecordKind::GaugeAdd => "GAUGE_ADD",
            RecordKind::Histogram => "HISTOGRAM",
            RecordKind::Span => "SPAN",
            RecordKind::SpanAttr => "SPAN_ATTR",
            RecordKind::SpanEvent => "SPAN_EVENT",
            RecordKind::SpanLink => "SPAN_LINK",
            RecordKind::SpanLinkAttr => "SPAN_LINK_ATTR",
            RecordKind::Log => "LOG",
            RecordKind::Business => "BUSINESS",
        }
    }

    /// The instrument a user thinks in: `counter`, `gauge`, `histogram`, `span` (spans, their
    /// attributes and events), `log` or `business` (the names `loadgen --kinds` takes).
    pub fn category(self) -> &'static str {
        match self {
            RecordKind::CounterAdd => "counter",
            RecordKind::GaugeSet | RecordKind::GaugeAdd => "gauge",
            RecordKind::Histogram => "histogram",
            RecordKind::Span
            | RecordKind::SpanAttr
            | RecordKind::SpanEvent
            | RecordKind::SpanLink
            | RecordKind::SpanLinkAttr => "span",
            RecordKind::Log => "log",
            RecordKind::Business => "business",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// The civil date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01, in the
/// proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 UTC time with nanoseconds of `ns` since the Unix epoch:
/// `2026-11-24T09:20:01.123456789Z` (always [`TIME_WIDTH`] characters: u64 ns end in 2554).
pub fn rfc3339_ns(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// A duration in ns as a human reads it: `850ns`, `12.345µs`, `3.002ms`, `1.500s`.
pub fn human_duration(ns: i64) -> String {
    let abs = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    if abs < 1_000 {
        format!("{sign}{abs}ns")
    } else if abs < 1_000_000 {
        format!("{sign}{:.3}µs", abs as f64 / 1e3)
    } else if abs < 1_000_000_000 {
        format!("{sign}{:.3}ms", abs as f64 / 1e6)
    } else {
        format!("{sign}{:.3}s", abs as f64 / 1e9)
    }
}

/// The wall-clock time (ns since the epoch) a record carries, if its kind carries one: the start
/// of a span, the exemplar time of a histogram observation; none for counter adds and span
/// attributes.
pub fn record_time_ns(anchor: &ClockAnchor, record: &Record<'_>) -> Option<u64> {
    let ticks = match record {
        Record::CounterAdd { .. }
        | Record::SpanAttr { .. }
        | Record::SpanLink(_)
        | Record::SpanLinkAttr { .. } => return None,
        Record::Histogram { exemplar, .. } => exemplar.as_ref()?.ts,
        Record::GaugeSet { ts, .. } | Record::GaugeAdd { ts, .. } => *ts,
        Record::Span(s) => s.start_ts,
        Record::SpanEvent(e) => e.ts,
        Record::Log { rec, .. } => rec.ts,
        Record::Business { rec, .. } => rec.ts,
    };
    Some(anchor.to_wall_ns(ticks))
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// Lowercase hex of `bytes` (trace and span ids).
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The text of symbol `id`; `#<id>` when the table is missing or does not (yet) define it.
pub fn symbol_text<'t>(table: Option<&'t TableReader>, id: u32) -> Cow<'t, str> {
    match table.and_then(|t| t.symbols.get(&id)) {
        Some(s) => Cow::Borrowed(s.as_str()),
        None => Cow::Owned(format!("#{id}")),
    }
}

/// A series as `name{label="value",...}` (Prometheus label escaping: `\\`, `\"`, `\n`), `name`
/// without labels, or `series#<id>` when the table does not resolve it.
pub fn series_display(table: Option<&TableReader>, id: u32) -> String {
    let Some((series, family)) = table.and_then(|t| t.series_family(id)) else {
        return format!("series#{id}");
    };
    let mut s = family.name.clone();
    if !family.labels.is_empty() {
        s.push('{');
        for (i, (name, value)) in family.labels.iter().zip(&series.values).enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(name);
            s.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        s.push('}');
    }
    s
}

/// Name of a [`metric_type`] code.
pub fn metric_type_name(code: u8) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        metric_type::COUNTER => "counter",
        metric_type::GAUGE => "gauge",
        metric_type::HISTOGRAM => "histogram",
        metric_type::SUMMARY => "summary",
        other => return Cow::Owned(format!("type{other}")),
    })
}

/// Name of a [`gauge_mode`] code, as prometheus_client's multiprocess mode spells it.
pub fn gauge_mode_name(code: u8) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        gauge_mode::ALL => "all",
        gauge_mode::LIVEALL => "liveall",
        gauge_mode::SUM => "sum",
        gauge_mode::LIVESUM => "livesum",
        gauge_mode::MIN => "min",
        gauge_mode::LIVEMIN => "livemin",
        gauge_mode::MAX => "max",
        gauge_mode::LIVEMAX => "livemax",
        gauge_mode::MOSTRECENT => "mostrecent",
        gauge_mode::LIVEMOSTRECENT => "livemostrecent",
        other => return Cow::Owned(format!("mode{other}")),
    })
}

fn span_kind_name(code: u8) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        span_kind::UNSPECIFIED => "unspecified",
        span_kind::INTERNAL => "internal",
        span_kind::SERVER => "server",
        span_kind::CLIENT => "client",
        span_kind::PRODUCER => "producer",
        span_kind::CONSUMER => "consumer",
        other => return Cow::Owned(format!("kind{other}")),
    })
}

fn span_status_name(code: u8) -> Cow<'static, str> {
    Cow::Borrowed(match code {
        span_status::UNSET => "unset",
        span_status::OK => "ok",
        span_status::ERROR => "error",
        other => return Cow::Owned(format!("status{other}")),
    })
}

fn level_name(code: u8) -> Cow<'static, str> {
    match Level::from_code(code) {
        Some(level) => Cow::Borrowed(level.as_str()),
        None => Cow::Owned(format!("LEVEL{code}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Escaping for terminals
// ---------------------------------------------------------------------------------------------

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `s` with control characters escaped (`\n`, `\u{1b}`): text from shared memory never reaches
/// a terminal raw.
pub fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// `s` in double quotes, with `"`, `\` and control characters escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => push_escaped_char(&mut out, c),
        }
    }
    out.push('"');
    out
}

/// `s` bare when it is a single safe token (logfmt style), else [`quote`]d.
fn token(s: &str) -> Cow<'_, str> {
    let bare = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'));
    if bare {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(quote(s))
    }
}

fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

// ---------------------------------------------------------------------------------------------
// Human lines
// ---------------------------------------------------------------------------------------------

fn write_value(out: &mut String, value: &AttrValue<'_>) {
    match value {
        AttrValue::Null => out.push_str("null"),
        AttrValue::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        AttrValue::I64(v) => {
            let _ = write!(out, "{v}");
        }
        AttrValue::F64(v) => {
            let _ = write!(out, "{v}");
        }
        AttrValue::Str(b) | AttrValue::Json(b) => out.push_str(&token(&lossy(b))),
    }
}

fn write_attr(out: &mut String, table: Option<&TableReader>, attr: &Attr<'_>) {
    out.push(' ');
    out.push_str(&clean(&symbol_text(table, attr.key)));
    out.push('=');
    write_value(out, &attr.value);
}

fn write_attrs(out: &mut String, table: Option<&TableReader>, attrs: &Attrs<'_>) {
    for attr in attrs.iter() {
        write_attr(out, table, &attr);
    }
}

fn write_time(out: &mut String, ns: Option<u64>) {
    match ns {
        Some(ns) => out.push_str(&rfc3339_ns(ns)),
        None => {
            let _ = write!(out, "{:<TIME_WIDTH$}", "-");
        }
    }
}

fn write_prefix(out: &mut String, ctx: &RenderContext<'_>, ns: Option<u64>, label: &str) {
    write_time(out, ns);
    if let Some(src) = ctx.source {
        let _ = write!(out, " pid={} tid={}", src.pid, src.tid);
    }
    out.push(' ');
    out.push_str(label);
}

fn signed(v: f64) -> String {
    if v.is_sign_negative() && !v.is_nan() {
        format!("{v}")
    } else {
        format!("+{v}")
    }
}

/// Append the human line of `record` (no trailing newline) to `out`.
pub fn write_human(out: &mut String, ctx: &RenderContext<'_>, record: &Record<'_>) {
    let table = ctx.table;
    let kind = RecordKind::of(record);
    write_prefix(out, ctx, record_time_ns(&ctx.anchor, record), kind.label());
    match record {
        Record::CounterAdd { series, value } => {
            let _ = write!(
                out,
                " {} {}",
                clean(&series_display(table, *series)),
                signed(*value)
            );
        }
        Record::GaugeSet { series, value, .. } => {
            let _ = write!(out, " {} = {value}", clean(&series_display(table, *series)));
        }
        Record::GaugeAdd { series, value, .. } => {
            let _ = write!(
                out,
                " {} {}",
                clean(&series_display(table, *series)),
                signed(*value)
            );
        }
        Record::Histogram {
            series,
            value,
            exemplar,
        } => {
            let _ = write!(
                out,
                " {} observe {value}",
                clean(&series_display(table, *series))
            );
            if let Some(e) = exemplar {
                let _ = write!(
                    out,
                    " trace_id={} span_id={}",
                    hex(&e.trace_id),
                    hex(&e.span_id)
                );
            }
        }
        Record::Span(s) => {
            let start = ctx.anchor.to_wall_ns(s.start_ts);
            let end = ctx.anchor.to_wall_ns(s.end_ts);
            let _ = write!(
                out,
                " {} kind={} status={} duration={} trace_id={} span_id={} parent_id={}",
                token(&clean(&symbol_text(table, s.name))),
                span_kind_name(s.kind),
                span_status_name(s.status),
                human_duration(duration_ns(start, end)),
                hex(&s.trace_id),
                hex(&s.span_id),
                if s.parent_span_id == [0; 8] {
                    "-".to_owned()
                } else {
                    hex(&s.parent_span_id)
                },
            );
            let _ = write!(out, " attrs={} events={}", s.attr_count, s.event_count);
            if s.dropped_attrs > 0 {
                let _ = write!(out, " dropped_attrs={}", s.dropped_attrs);
            }
            if s.flags & SPAN_FLAG_SAMPLED != 0 {
                out.push_str(" sampled");
            }
            if s.flags & SPAN_FLAG_REMOTE_PARENT != 0 {
                out.push_str(" remote_parent");
            }
        }
        Record::SpanAttr {
            span_id,
            event_seq,
            attr,
        } => {
            let _ = write!(out, " span_id={}", hex(span_id));
            if *event_seq > 0 {
                let _ = write!(out, " event={event_seq}");
            }
            write_attr(out, table, attr);
        }
        Record::SpanEvent(e) => {
            let _ = write!(
                out,
                " {} span_id={} seq={}",
                token(&clean(&symbol_text(table, e.name))),
                hex(&e.span_id),
                e.event_seq
            );
        }
        Record::SpanLink(l) => {
            let _ = write!(
                out,
                " span_id={} seq={} linked_trace_id={} linked_span_id={}",
                hex(&l.span_id),
                l.link_seq,
                hex(&l.linked_trace_id),
                hex(&l.linked_span_id)
            );
            if l.flags & SPAN_FLAG_SAMPLED != 0 {
                out.push_str(" sampled");
            }
            if l.flags & SPAN_FLAG_REMOTE_PARENT != 0 {
                out.push_str(" remote");
            }
        }
        Record::SpanLinkAttr {
            span_id,
            link_seq,
            attr,
        } => {
            let _ = write!(out, " span_id={} link={link_seq}", hex(span_id));
            write_attr(out, table, attr);
        }
        Record::Log {
            rec,
            message,
            correlation,
            fields,
        } => {
            let _ = write!(out, " {} {}", level_name(rec.level), quote(&lossy(message)));
            write_attrs(out, table, fields);
            if rec.trace_id != [0; 16] {
                let _ = write!(out, " trace_id={}", hex(&rec.trace_id));
            }
            if rec.span_id != [0; 8] {
                let _ = write!(out, " span_id={}", hex(&rec.span_id));
            }
            if !correlation.is_empty() {
                let _ = write!(out, " correlation_id={}", token(&lossy(correlation)));
            }
            if rec.caller != 0 {
                let _ = write!(out, " caller={}", token(&symbol_text(table, rec.caller)));
            }
            if rec.flags & LOG_FLAG_TRUNCATED != 0 {
                out.push_str(" truncated");
            }
        }
        Record::Business { rec, tags } => {
            let _ = write!(
                out,
                " {} {}",
                token(&clean(&symbol_text(table, rec.name))),
                rec.value
            );
            let unit = symbol_text(table, rec.unit);
            if rec.unit != 0 && !unit.is_empty() {
                let _ = write!(out, " {}", token(&clean(&unit)));
            }
            write_attrs(out, table, tags);
        }
    }
}

/// The human line of `record` (no trailing newline).
pub fn human_line(ctx: &RenderContext<'_>, record: &Record<'_>) -> String {
    let mut out = String::with_capacity(128);
    write_human(&mut out, ctx, record);
    out
}

/// The human line of a frame that could not be decoded.
pub fn human_undecodable(ctx: &RenderContext<'_>, position: u64, error: &DecodeError) -> String {
    let mut out = String::with_capacity(96);
    write_prefix(&mut out, ctx, None, "UNDECODABLE");
    let _ = write!(out, " at position {position}: {error}");
    out
}

fn duration_ns(start: u64, end: u64) -> i64 {
    (i128::from(end) - i128::from(start)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// A float as JSON: a number when finite, else the string `"NaN"`, `"+Inf"` or `"-Inf"`.
pub fn json_f64(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => Value::String("NaN".into()),
        None if v > 0.0 => Value::String("+Inf".into()),
        None => Value::String("-Inf".into()),
    }
}

/// A typed value as JSON: JSON-typed values are embedded as parsed documents (as a string when
/// they do not parse), strings are decoded lossily.
pub fn json_attr_value(value: &AttrValue<'_>) -> Value {
    match value {
        AttrValue::Null => Value::Null,
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::I64(v) => Value::from(*v),
        AttrValue::F64(v) => json_f64(*v),
        AttrValue::Str(b) => Value::String(lossy(b).into_owned()),
        AttrValue::Json(b) => {
            serde_json::from_slice(b).unwrap_or_else(|_| Value::String(lossy(b).into_owned()))
        }
    }
}

/// Typed values as a JSON object keyed by symbol text (a repeated key keeps its last value).
pub fn json_attrs(table: Option<&TableReader>, attrs: &Attrs<'_>) -> Value {
    let mut m = Map::new();
    for attr in attrs.iter() {
        m.insert(
            symbol_text(table, attr.key).into_owned(),
            json_attr_value(&attr.value),
        );
    }
    Value::Object(m)
}

/// A series as JSON: `series_id`, `series` (as [`series_display`]), `name` and `labels` (null
/// when the table does not resolve it).
fn json_series(m: &mut Map<String, Value>, table: Option<&TableReader>, id: u32) {
    m.insert("series_id".into(), id.into());
    m.insert("series".into(), series_display(table, id).into());
    match table.and_then(|t| t.series_family(id)) {
        Some((series, family)) => {
            m.insert("name".into(), family.name.clone().into());
            let labels: Map<String, Value> = family
                .labels
                .iter()
                .zip(&series.values)
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            m.insert("labels".into(), Value::Object(labels));
        }
        None => {
            m.insert("name".into(), Value::Null);
            m.insert("labels".into(), Value::Null);
        }
    }
}

fn json_prefix(ctx: &RenderContext<'_>, ns: Option<u64>, kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    match ns {
        Some(ns) => {
            m.insert("time".into(), rfc3339_ns(ns).into());
            m.insert("time_ns".into(), ns.into());
        }
        None => {
            m.insert("time".into(), Value::Null);
        }
    }
    if let Some(src) = ctx.source {
        m.insert("pid".into(), src.pid.into());
        m.insert("tid".into(), src.tid.into());
    }
    m.insert("kind".into(), kind.into());
    m
}

fn nonzero_hex(bytes: &[u8]) -> Value {
    if bytes.iter().all(|b| *b == 0) {
        Value::Null
    } else {
        hex(bytes).into()
    }
}

/// `record` as one JSON object: `time` (RFC 3339 or null), `time_ns`, `pid`/`tid` (with a
/// source), `kind` ([`RecordKind::as_str`]) and the kind's fields with names resolved.
pub fn json_value(ctx: &RenderContext<'_>, record: &Record<'_>) -> Value {
    let table = ctx.table;
    let kind = RecordKind::of(record);
    let mut m = json_prefix(ctx, record_time_ns(&ctx.anchor, record), kind.as_str());
    match record {
        Record::CounterAdd { series, value }
        | Record::GaugeSet { series, value, .. }
        | Record::GaugeAdd { series, value, .. } => {
            json_series(&mut m, table, *series);
            m.insert("value".into(), json_f64(*value));
        }
        Record::Histogram {
            series,
            value,
            exemplar,
        } => {
            json_series(&mut m, table, *series);
            m.insert("value".into(), json_f64(*value));
            if let Some(e) = exemplar {
                let mut ex = Map::new();
                ex.insert("trace_id".into(), hex(&e.trace_id).into());
                ex.insert("span_id".into(), hex(&e.span_id).into());
                m.insert("exemplar".into(), Value::Object(ex));
            }
        }
        Record::Span(s) => {
            let start = ctx.anchor.to_wall_ns(s.start_ts);
            let end = ctx.anchor.to_wall_ns(s.end_ts);
            m.insert(
                "name".into(),
                symbol_text(table, s.name).into_owned().into(),
            );
            m.insert(
                "span_kind".into(),
                span_kind_name(s.kind).into_owned().into(),
            );
            m.insert(
                "status".into(),
                span_status_name(s.status).into_owned().into(),
            );
            m.insert("trace_id".into(), hex(&s.trace_id).into());
            m.insert("span_id".into(), hex(&s.span_id).into());
            m.insert("parent_span_id".into(), nonzero_hex(&s.parent_span_id));
            m.insert("start".into(), rfc3339_ns(start).into());
            m.insert("end".into(), rfc3339_ns(end).into());
            m.insert("duration_ns".into(), duration_ns(start, end).into());
            m.insert("sampled".into(), (s.flags & SPAN_FLAG_SAMPLED != 0).into());
            m.insert(
                "remote_parent".into(),
                (s.flags & SPAN_FLAG_REMOTE_PARENT != 0).into(),
            );
            m.insert("attr_count".into(), s.attr_count.into());
            m.insert("event_count".into(), s.event_count.into());
            m.insert("dropped_attrs".into(), s.dropped_attrs.into());
        }
        Record::SpanAttr {
            span_id,
            event_seq,
            attr,
        } => {
            m.insert("span_id".into(), hex(span_id).into());
            m.insert("event_seq".into(), (*event_seq).into());
            m.insert(
                "key".into(),
                symbol_text(table, attr.key).into_owned().into(),
            );
            m.insert("value".into(), json_attr_value(&attr.value));
        }
        Record::SpanEvent(e) => {
            m.insert(
                "name".into(),
                symbol_text(table, e.name).into_owned().into(),
            );
            m.insert("span_id".into(), hex(&e.span_id).into());
            m.insert("event_seq".into(), e.event_seq.into());
        }
        Record::SpanLink(l) => {
            m.insert("span_id".into(), hex(&l.span_id).into());
            m.insert("link_seq".into(), l.link_seq.into());
            m.insert("linked_trace_id".into(), hex(&l.linked_trace_id).into());
            m.insert("linked_span_id".into(), hex(&l.linked_span_id).into());
            m.insert("sampled".into(), (l.flags & SPAN_FLAG_SAMPLED != 0).into());
            m.insert(
                "remote".into(),
                (l.flags & SPAN_FLAG_REMOTE_PARENT != 0).into(),
            );
        }
        Record::SpanLinkAttr {
            span_id,
            link_seq,
            attr,
        } => {
            m.insert("span_id".into(), hex(span_id).into());
            m.insert("link_seq".into(), (*link_seq).into());
            m.insert(
                "key".into(),
                symbol_text(table, attr.key).into_owned().into(),
            );
            m.insert("value".into(), json_attr_value(&attr.value));
        }
        Record::Log {
            rec,
            message,
            correlation,
            fields,
        } => {
            m.insert("level".into(), level_name(rec.level).into_owned().into());
            m.insert("message".into(), lossy(message).into_owned().into());
            m.insert("fields".into(), json_attrs(table, fields));
            m.insert("trace_id".into(), nonzero_hex(&rec.trace_id));
            m.insert("span_id".into(), nonzero_hex(&rec.span_id));
            let corr = if correlation.is_empty() {
                Value::Null
            } else {
                lossy(correlation).into_owned().into()
            };
            m.insert("correlation_id".into(), corr);
            let caller = if rec.caller == 0 {
                Value::Null
            } else {
                symbol_text(table, rec.caller).into_owned().into()
            };
            m.insert("caller".into(), caller);
            m.insert(
                "truncated".into(),
                (rec.flags & LOG_FLAG_TRUNCATED != 0).into(),
            );
        }
        Record::Business { rec, tags } => {
            m.insert(
                "name".into(),
                symbol_text(table, rec.name).into_owned().into(),
            );
            m.insert("value".into(), json_f64(rec.value));
            let unit = symbol_text(table, rec.unit);
            let unit = if rec.unit == 0 || unit.is_empty() {
                Value::Null
            } else {
                unit.into_owned().into()
            };
            m.insert("unit".into(), unit);
            m.insert("tags".into(), json_attrs(table, tags));
        }
    }
    Value::Object(m)
}

/// A frame that could not be decoded, as JSON: `kind` `"undecodable"`, `position`, `error`.
pub fn json_undecodable(ctx: &RenderContext<'_>, position: u64, error: &DecodeError) -> Value {
    let mut m = json_prefix(ctx, None, "undecodable");
    m.insert("position".into(), position.into());
    m.insert("error".into(), error.to_string().into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmtel_core::layout::CLOCK_REALTIME_NS;

    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    #[test]
    fn rfc3339_known_instants() {
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00.000000000Z"),
            (1, "1970-01-01T00:00:00.000000001Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000000000Z"),
            (951_868_799_999_999_999, "2000-02-29T23:59:59.999999999Z"),
            (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
            (4_107_542_400_000_000_000, "2100-03-01T00:00:00.000000000Z"),
            (1_798_072_801_123_456_789, "2026-12-24T00:40:01.123456789Z"),
            (u64::MAX, "2554-07-21T23:34:33.709551615Z"),
        ];
        for (ns, want) in cases {
            assert_eq!(rfc3339_ns(*ns), *want, "{ns}");
            assert_eq!(rfc3339_ns(*ns).len(), TIME_WIDTH);
        }
    }

    #[test]
    fn civil_from_days_round_trips_and_steps_by_one_day() {
        let mut prev = civil_from_days(-800_000);
        for days in -799_999..800_000i64 {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
            // Consecutive days: the next day of the month, or day 1 of the next month/year.
            let next_ok = (y, m, d) == (prev.0, prev.1, prev.2 + 1)
                || (d == 1
                    && ((y, m) == (prev.0, prev.1 + 1) || (y, m, prev.1) == (prev.0 + 1, 1, 12)));
            assert!(next_ok, "{prev:?} -> {:?}", (y, m, d));
            prev = (y, m, d);
        }
        // Leap years: 2000 (div by 400) has Feb 29, 1900 and 2100 do not.
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(
            civil_from_days(days_from_civil(1900, 2, 28) + 1),
            (1900, 3, 1)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2100, 2, 28) + 1),
            (2100, 3, 1)
        );
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(850), "850ns");
        assert_eq!(human_duration(12_345), "12.345µs");
        assert_eq!(human_duration(3_002_000), "3.002ms");
        assert_eq!(human_duration(1_500_000_000), "1.500s");
        assert_eq!(human_duration(-5), "-5ns");
    }

    #[test]
    fn escaping() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(clean("a\x1b[31mred\n"), "a\\u{1b}[31mred\\n");
        assert_eq!(quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(token("/users"), "/users");
        assert_eq!(token("two words"), "\"two words\"");
        assert_eq!(token(""), "\"\"");
        assert_eq!(token("a=b"), "\"a=b\"");
    }

    #[test]
    fn floats_in_json() {
        assert_eq!(json_f64(1.5), serde_json::json!(1.5));
        assert_eq!(json_f64(f64::NAN), serde_json::json!("NaN"));
        assert_eq!(json_f64(f64::INFINITY), serde_json::json!("+Inf"));
        assert_eq!(json_f64(f64::NEG_INFINITY), serde_json::json!("-Inf"));
        assert_eq!(signed(2.0), "+2");
        assert_eq!(signed(-2.5), "-2.5");
    }

    #[test]
    fn records_without_a_table() {
        let anchor = ClockAnchor {
            source: CLOCK_REALTIME_NS,
            ticks: 0,
            wall_ns: 0,
            ticks_per_sec: 1e9,
        };
        let ctx = RenderContext {
            table: None,
            anchor,
            source: Some(RecordSource { pid: 7, tid: 8 }),
        };
        let line = human_line(
            &ctx,
            &Record::CounterAdd {
                series: 3,
                value: 1.0,
            },
        );
        assert_eq!(line, format!("{:<30} pid=7 tid=8 COUNTER series#3 +1", "-"));
        let line = human_line(
            &ctx,
            &Record::GaugeSet {
                series: 4,
                ts: 1_700_000_000_123_456_789,
                value: 2.5,
            },
        );
        assert_eq!(
            line,
            "2023-11-14T22:13:20.123456789Z pid=7 tid=8 GAUGE_SET series#4 = 2.5"
        );
        let v = json_value(
            &ctx,
            &Record::CounterAdd {
                series: 3,
                value: 1.0,
            },
        );
        assert_eq!(
            v,
            serde_json::json!({"time": null, "pid": 7, "tid": 8, "kind": "counter_add", "series_id": 3,
                               "series": "series#3", "name": null, "labels": null, "value": 1.0})
        );
    }
}
