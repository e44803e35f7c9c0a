//! Trace-context propagation: W3C Trace Context (`traceparent`, `tracestate`), Jaeger
//! (`uber-trace-id`) and Zipkin B3 (the single `b3` header and the `X-B3-*` headers).
//!
//! Pure functions on strings: no allocation beyond the returned values, no dependency, and no
//! panic on any input (a proptest in `tests/propagation.rs` feeds them arbitrary strings).
//! Invalid input is ignored, as the specifications ask: the parsers return `None` and the
//! caller starts a new trace.
//!
//! [`extract`] reads headers through a getter and tries the formats in a fixed order: W3C, B3
//! single, B3 multi, Jaeger (the first valid one wins; `tracestate` is read only with a valid
//! `traceparent`). [`inject`] writes the headers of the [`Formats`] asked for through a setter.
//! Header names passed to getters and setters are lowercase (HTTP/2 requires it; HTTP/1 names
//! are case-insensitive): a getter must match names case-insensitively.
//!
//! | format | header(s) | ids | sampled |
//! |---|---|---|---|
//! | W3C | `traceparent: 00-{32 hex}-{16 hex}-{2 hex flags}` | lowercase hex, not all zero | flags bit 0 |
//! | B3 single | `b3: {16/32 hex}-{16 hex}[-{1,0,d}[-{16 hex parent}]]`, or `b3: {1,0,d}` alone | lowercase hex, 64-bit trace ids left-padded | `1` accept, `0` deny, `d` debug, absent: deferred |
//! | B3 multi | `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled` (`1`/`0`, legacy `true`/`false`), `x-b3-flags` (`1`: debug) | as B3 single | as B3 single |
//! | Jaeger | `uber-trace-id: {trace}:{span}:{parent}:{flags}` (`%3A` for `:` tolerated) | 1-32 / 1-16 hex digits of either case, left-padded | flags bit 0; bit 1 debug (implies sampled) |

use crate::span::SpanContext;

/// Most list members a `tracestate` may have (W3C Trace Context, 3.3.1.1).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Longest `tracestate` kept (W3C: vendors should propagate at least 512 characters; a longer
/// one is dropped whole here rather than truncated, which the spec also allows).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";
/// B3 single header name.
pub const B3: &str = "b3";
/// B3 multi: trace id.
pub const X_B3_TRACEID: &str = "x-b3-traceid";
/// B3 multi: span id.
pub const X_B3_SPANID: &str = "x-b3-spanid";
/// B3 multi: parent span id.
pub const X_B3_PARENTSPANID: &str = "x-b3-parentspanid";
/// B3 multi: sampling decision.
pub const X_B3_SAMPLED: &str = "x-b3-sampled";
/// B3 multi: debug flag.
pub const X_B3_FLAGS: &str = "x-b3-flags";
/// Jaeger header name.
pub const UBER_TRACE_ID: &str = "uber-trace-id";

/// Every header name [`extract`] may read, lowercase.
pub const HEADER_NAMES: [&str; 9] = [
    TRACEPARENT,
    TRACESTATE,
    B3,
    X_B3_TRACEID,
    X_B3_SPANID,
    X_B3_PARENTSPANID,
    X_B3_SAMPLED,
    X_B3_FLAGS,
    UBER_TRACE_ID,
];

/// The sampling decision a caller propagated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// Sampled.
    Accept,
    /// Not sampled.
    Deny,
    /// Sampled, and the caller asked for debug (B3 `d` / `X-B3-Flags: 1`, Jaeger flag 2).
    Debug,
    /// No decision: the receiver decides (B3 without a sampling state).
    Defer,
}

impl Sampling {
    /// `Some(sampled)` for a decision, `None` when deferred.
    pub fn decision(self) -> Option<bool> {
        match self {
            Sampling::Accept | Sampling::Debug => Some(true),
            Sampling::Deny => Some(false),
            Sampling::Defer => None,
        }
    }
}

/// The header format a context was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// W3C Trace Context.
    W3c,
    /// B3 single header.
    B3Single,
    /// B3 multiple headers.
    B3Multi,
    /// Jaeger `uber-trace-id`.
    Jaeger,
}

/// A validated W3C `tracestate` value, kept opaque (as received, outer whitespace trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceState(String);

impl TraceState {
    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A caller's span, read from request headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// 16-byte trace id (64-bit ids left-padded with zeros).
    pub trace_id: [u8; 16],
    /// The caller's span id: the parent of the span this process starts.
    pub span_id: [u8; 8],
    /// The caller's parent span id, when the format carries one (B3, Jaeger; informational).
    pub parent_span_id: Option<[u8; 8]>,
    /// The caller's sampling decision.
    pub sampling: Sampling,
    /// W3C `tracestate`, when it came with a valid `traceparent` and is itself valid.
    pub tracestate: Option<TraceState>,
    /// Where it came from.
    pub format: Format,
}

impl Extracted {
    /// The remote parent as a [`SpanContext`]; a deferred decision is taken by `decide` (given
    /// the trace id, e.g. `|t| ratio_sampled(t, ratio)`).
    pub fn span_context(&self, decide: impl FnOnce(&[u8; 16]) -> bool) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: match self.sampling.decision() {
                Some(s) => s,
                None => decide(&self.trace_id),
            },
        }
    }
}

/// A set of formats to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Formats(u8);

impl Formats {
    /// W3C `traceparent` (+ `tracestate` when given).
    pub const W3C: Formats = Formats(1);
    /// B3 single `b3` header.
    pub const B3_SINGLE: Formats = Formats(2);
    /// B3 multi `x-b3-*` headers.
    pub const B3_MULTI: Formats = Formats(4);
    /// Jaeger `uber-trace-id`.
    pub const JAEGER: Formats = Formats(8);
    /// No format.
    pub const NONE: Formats = Formats(0);

    /// A format by name: `w3c`/`tracecontext`, `b3`, `b3multi`, `jaeger` (case-insensitive,
    /// the names of `OTEL_PROPAGATORS` accepted too).
    pub fn from_name(name: &str) -> Option<Formats> {
        const NAMES: [(&str, Formats); 5] = [
            ("w3c", Formats::W3C),
            ("tracecontext", Formats::W3C),
            ("b3", Formats::B3_SINGLE),
            ("b3multi", Formats::B3_MULTI),
            ("jaeger", Formats::JAEGER),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(_, f)| *f)
    }

    /// Whether every format of `other` is in `self`.
    pub fn contains(self, other: Formats) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no format is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Formats {
    type Output = Formats;
    fn bitor(self, rhs: Formats) -> Formats {
        Formats(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Formats {
    fn bitor_assign(&mut self, rhs: Formats) {
        self.0 |= rhs.0;
    }
}

// -- extract ----------------------------------------------------------------------------------

/// Read a caller's context from headers: W3C, else B3 single, else B3 multi, else Jaeger; `None`
/// when none is present and valid. `get` returns a header's value by lowercase name (joined with
/// `,` when the header came more than once, as HTTP allows).
pub fn extract<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Extracted> {
    if let Some(ctx) = get(TRACEPARENT).and_then(parse_traceparent) {
        return Some(Extracted {
            trace_id: ctx.trace_id,
            span_id: ctx.span_id,
            parent_span_id: None,
            sampling: if ctx.sampled {
                Sampling::Accept
            } else {
                Sampling::Deny
            },
            tracestate: get(TRACESTATE).and_then(parse_tracestate),
            format: Format::W3c,
        });
    }
    if let Some(B3Single::Context(e)) = get(B3).and_then(parse_b3_single) {
        return Some(e);
    }
    if let Some(e) = extract_b3_multi(&get) {
        return Some(e);
    }
    get(UBER_TRACE_ID).and_then(parse_uber_trace_id)
}

/// A sampling decision sent without ids (`b3: 0`, `b3: 1`, `b3: d`, or `X-B3-Sampled` /
/// `X-B3-Flags` without `X-B3-TraceId`): what a new root span should do. Only meaningful when
/// [`extract`] found no context.
pub fn extract_sampling_only<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Sampling> {
    if let Some(B3Single::SamplingOnly(s)) = get(B3).and_then(parse_b3_single) {
        return Some(s);
    }
    if get(X_B3_TRACEID).is_some() {
        return None;
    }
    b3_multi_sampling(&get).filter(|s| *s != Sampling::Defer)
}

// -- W3C --------------------------------------------------------------------------------------

/// Parse a W3C `traceparent` header.
///
/// Version `00` must be exactly 55 characters; a higher version is parsed leniently (its first
/// 55 characters, followed by the end or a `-`), as the specification asks of a version-00
/// parser; version `ff` is invalid. Ids are lowercase hex and must not be all zeros. Only
/// spaces and tabs around the value are ignored.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let v = value.trim_matches(|c: char| c == ' ' || c == '\t');
    let b = v.as_bytes();
    if b.len() < 55 {
        return None;
    }
    let version = decode_lower_hex::<1>(&b[0..2])?[0];
    if version == 0xff || (version == 0 && b.len() != 55) {
        return None;
    }
    if b.len() > 55 && b[55] != b'-' {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace_id = decode_lower_hex::<16>(&b[3..35])?;
    let span_id = decode_lower_hex::<8>(&b[36..52])?;
    let flags = decode_lower_hex::<1>(&b[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(SpanContext {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// `00-{trace}-{span}-{01|00}`.
pub fn format_traceparent(ctx: &SpanContext) -> String {
    let bytes = traceparent_bytes(ctx);
    // Hex digits and dashes only.
    String::from_utf8_lossy(&bytes).into_owned()
}

/// [`format_traceparent`] on the stack (ASCII), for callers that need no `String`.
pub fn traceparent_bytes(ctx: &SpanContext) -> [u8; 55] {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex_into(&mut out[3..35], &ctx.trace_id);
    hex_into(&mut out[36..52], &ctx.span_id);
    if ctx.sampled {
        out[54] = b'1';
    }
    out
}

/// Validate a W3C `tracestate` header: comma-separated `key=value` members (empty members and
/// optional spaces/tabs around them allowed), at most [`MAX_TRACESTATE_MEMBERS`] members and
/// [`MAX_TRACESTATE_LEN`] characters, no key twice. Keys: `lcalpha *(lcalpha / digit / "_" /
/// "-" / "*" / "/")` up to 256, or `tenant@system` (tenant up to 241 starting with a lowercase
/// letter or digit, system up to 14 starting with a lowercase letter). Values: up to 256
/// printable ASCII characters except `,` and `=`, spaces allowed inside but not at the end.
/// Kept as is (trimmed): the whole header is dropped when anything is invalid.
pub fn parse_tracestate(value: &str) -> Option<TraceState> {
    let v = value.trim_matches(|c: char| c == ' ' || c == '\t');
    if v.len() > MAX_TRACESTATE_LEN {
        return None;
    }
    let mut keys: [&str; MAX_TRACESTATE_MEMBERS] = [""; MAX_TRACESTATE_MEMBERS];
    let mut n = 0;
    for member in v.split(',') {
        let member = member.trim_matches(|c: char| c == ' ' || c == '\t');
        if member.is_empty() {
            continue;
        }
        let (key, val) = member.split_once('=')?;
        if !valid_tracestate_key(key) || !valid_tracestate_value(val) {
            return None;
        }
        if n == MAX_TRACESTATE_MEMBERS || keys[..n].contains(&key) {
            return None;
        }
        keys[n] = key;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    Some(TraceState(v.to_owned()))
}

fn key_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

fn valid_tracestate_key(key: &str) -> bool {
    let b = key.as_bytes();
    match key.split_once('@') {
        None => {
            b.len() <= 256
                && b.first().is_some_and(u8::is_ascii_lowercase)
                && b.iter().all(|c| key_char(*c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|c| key_char(*c))
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().all(|c| key_char(*c))
        }
    }
}

fn valid_tracestate_value(val: &str) -> bool {
    let b = val.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|c| matches!(c, 0x20..=0x7e) && *c != b',' && *c != b'=')
        && b[b.len() - 1] != b' '
}

// -- B3 ---------------------------------------------------------------------------------------

/// What a `b3` single header holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum B3Single {
    /// Ids (and maybe a decision and a parent).
    Context(Extracted),
    /// Only a sampling decision (`0`, `1` or `d`).
    SamplingOnly(Sampling),
}

fn b3_sampling_state(s: &str) -> Option<Sampling> {
    match s {
        "1" => Some(Sampling::Accept),
        "0" => Some(Sampling::Deny),
        "d" => Some(Sampling::Debug),
        _ => None,
    }
}

/// A B3 trace id: 16 or 32 lowercase hex digits, left-padded, not all zero.
fn b3_trace_id(s: &str) -> Option<[u8; 16]> {
    let id = match s.len() {
        32 => decode_lower_hex::<16>(s.as_bytes())?,
        16 => {
            let low = decode_lower_hex::<8>(s.as_bytes())?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            id
        }
        _ => return None,
    };
    (id != [0; 16]).then_some(id)
}

/// A B3 span id: 16 lowercase hex digits, not all zero.
fn b3_span_id(s: &str) -> Option<[u8; 8]> {
    decode_lower_hex::<8>(s.as_bytes()).filter(|id| *id != [0; 8])
}

/// Parse a B3 single header: `{trace}-{span}[-{sampling}[-{parent}]]` or a lone `{sampling}`.
pub fn parse_b3_single(value: &str) -> Option<B3Single> {
    let v = value.trim_matches(|c: char| c == ' ' || c == '\t');
    if let Some(s) = b3_sampling_state(v) {
        return Some(B3Single::SamplingOnly(s));
    }
    let mut parts = v.split('-');
    let trace_id = b3_trace_id(parts.next()?)?;
    let span_id = b3_span_id(parts.next()?)?;
    let sampling = match parts.next() {
        None => Sampling::Defer,
        Some(s) => b3_sampling_state(s)?,
    };
    let parent_span_id = match parts.next() {
        None => None,
        Some(p) => Some(b3_span_id(p)?),
    };
    if parts.next().is_some() {
        return None;
    }
    Some(B3Single::Context(Extracted {
        trace_id,
        span_id,
        parent_span_id,
        sampling,
        tracestate: None,
        format: Format::B3Single,
    }))
}

fn b3_multi_sampling<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Option<Sampling> {
    let trim = |s: &'a str| s.trim_matches(|c: char| c == ' ' || c == '\t');
    if get(X_B3_FLAGS).map(trim) == Some("1") {
        return Some(Sampling::Debug);
    }
    match get(X_B3_SAMPLED).map(trim) {
        None => Some(Sampling::Defer),
        Some("1") => Some(Sampling::Accept),
        Some("0") => Some(Sampling::Deny),
        // Before the B3 spec, some tracers sent true/false; receivers should accept both.
        Some(s) if s.eq_ignore_ascii_case("true") => Some(Sampling::Accept),
        Some(s) if s.eq_ignore_ascii_case("false") => Some(Sampling::Deny),
        Some(_) => None,
    }
}

/// Read the B3 multi headers (`X-B3-TraceId`, `X-B3-SpanId`, optional `X-B3-ParentSpanId`,
/// `X-B3-Sampled`, `X-B3-Flags`). An invalid value of any present header invalidates them all.
pub fn extract_b3_multi<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Option<Extracted> {
    let trim = |s: &'a str| s.trim_matches(|c: char| c == ' ' || c == '\t');
    let trace_id = b3_trace_id(trim(get(X_B3_TRACEID)?))?;
    let span_id = b3_span_id(trim(get(X_B3_SPANID)?))?;
    let parent_span_id = match get(X_B3_PARENTSPANID) {
        None => None,
        Some(p) => Some(b3_span_id(trim(p))?),
    };
    let sampling = b3_multi_sampling(get)?;
    Some(Extracted {
        trace_id,
        span_id,
        parent_span_id,
        sampling,
        tracestate: None,
        format: Format::B3Multi,
    })
}

/// `{trace}-{span}-{1|0}`: the B3 single header for `ctx` (32-digit trace id).
pub fn format_b3_single(ctx: &SpanContext) -> String {
    let mut s = String::with_capacity(51);
    push_hex(&mut s, &ctx.trace_id);
    s.push('-');
    push_hex(&mut s, &ctx.span_id);
    s.push_str(if ctx.sampled { "-1" } else { "-0" });
    s
}

// -- Jaeger -----------------------------------------------------------------------------------

/// Parse Jaeger's `uber-trace-id` header: `{trace-id}:{span-id}:{parent-span-id}:{flags}`,
/// where ids may be shorter than 32/16 hex digits (left-padded with zeros) and of either case,
/// `%3A` may stand for `:`, and the flags are one or two hex digits: bit 0 sampled, bit 1 debug
/// (which implies sampled). Trace and span ids must not be zero; the parent may (`0` for none).
pub fn parse_uber_trace_id(value: &str) -> Option<Extracted> {
    let decoded;
    let v = if value.contains('%') {
        decoded = value.replace("%3A", ":").replace("%3a", ":");
        decoded.as_str()
    } else {
        value
    };
    let mut parts = v.trim_matches(|c: char| c == ' ' || c == '\t').split(':');
    let (trace, span, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let trace_id = decode_padded_hex::<16>(trace)?;
    let span_id = decode_padded_hex::<8>(span)?;
    let parent = decode_padded_hex::<8>(parent)?;
    let flags = decode_padded_hex::<1>(flags)?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    let sampling = if flags & 2 != 0 {
        Sampling::Debug
    } else if flags & 1 != 0 {
        Sampling::Accept
    } else {
        Sampling::Deny
    };
    Some(Extracted {
        trace_id,
        span_id,
        parent_span_id: (parent != [0; 8]).then_some(parent),
        sampling,
        tracestate: None,
        format: Format::Jaeger,
    })
}

/// `{trace:032x}:{span:016x}:0:{1|0}`: the Jaeger header for `ctx`.
pub fn format_uber_trace_id(ctx: &SpanContext) -> String {
    let mut s = String::with_capacity(53);
    push_hex(&mut s, &ctx.trace_id);
    s.push(':');
    push_hex(&mut s, &ctx.span_id);
    s.push_str(if ctx.sampled { ":0:1" } else { ":0:0" });
    s
}

// -- inject -----------------------------------------------------------------------------------

/// Write `ctx` as the headers of `formats` through `set(name, value)` (lowercase names).
/// `tracestate` goes with the W3C format only.
pub fn inject(
    ctx: &SpanContext,
    tracestate: Option<&TraceState>,
    formats: Formats,
    mut set: impl FnMut(&'static str, String),
) {
    if formats.contains(Formats::W3C) {
        set(TRACEPARENT, format_traceparent(ctx));
        if let Some(ts) = tracestate {
            set(TRACESTATE, ts.as_str().to_owned());
        }
    }
    if formats.contains(Formats::B3_SINGLE) {
        set(B3, format_b3_single(ctx));
    }
    if formats.contains(Formats::B3_MULTI) {
        set(X_B3_TRACEID, to_hex(&ctx.trace_id));
        set(X_B3_SPANID, to_hex(&ctx.span_id));
        set(
            X_B3_SAMPLED,
            (if ctx.sampled { "1" } else { "0" }).to_owned(),
        );
    }
    if formats.contains(Formats::JAEGER) {
        set(UBER_TRACE_ID, format_uber_trace_id(ctx));
    }
}

// -- hex --------------------------------------------------------------------------------------

/// Append `bytes` as lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX_DIGITS[(b >> 4) as usize] as char);
        out.push(HEX_DIGITS[(b & 15) as usize] as char);
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes` into `out`, which is twice as long (no allocation).
pub fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 15)];
    }
}

/// `bytes` as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

fn lower_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Exactly `2 * N` lowercase hex digits.
pub fn decode_lower_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = lower_nibble(s[2 * i])? << 4 | lower_nibble(s[2 * i + 1])?;
    }
    Some(out)
}

/// One to `2 * N` hex digits of either case, left-padded with zeros.
pub fn decode_padded_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.is_empty() || s.len() > 2 * N || 2 * N > 64 {
        return None;
    }
    let mut padded = [b'0'; 64];
    let start = 2 * N - s.len();
    padded[start..2 * N].copy_from_slice(s.as_bytes());
    padded[..2 * N].make_ascii_lowercase();
    decode_lower_hex::<N>(&padded[..2 * N])
}

/// Hex ids given by a caller: exactly 32/16 hex digits, either case, not all zeros.
pub fn parse_ids(trace_id: &str, span_id: &str) -> Result<([u8; 16], [u8; 8]), String> {
    let t = trace_id.to_ascii_lowercase();
    let s = span_id.to_ascii_lowercase();
    let trace = decode_lower_hex::<16>(t.as_bytes())
        .filter(|t| *t != [0; 16])
        .ok_or_else(|| {
            format!("invalid trace id {trace_id:?}: expected 32 hex digits, not all zero")
        })?;
    let span = decode_lower_hex::<8>(s.as_bytes())
        .filter(|s| *s != [0; 8])
        .ok_or_else(|| {
            format!("invalid span id {span_id:?}: expected 16 hex digits, not all zero")
        })?;
    Ok((trace, span))
}
