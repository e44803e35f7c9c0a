//! Trace-context propagation formats: W3C `traceparent` and Jaeger's `uber-trace-id`.
//!
//! Pure functions on strings and byte ids, so they are tested without an interpreter.

use shmtel_core::SpanContext;

/// Parse a W3C `traceparent` header.
///
/// Version `00` must be exactly 55 characters; a higher version is parsed leniently (its first
/// 55 characters, followed by the end or a `-`), as the specification asks of a version-00
/// parser; version `ff` is invalid. Ids are lowercase hex and must not be all zeros.
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

/// Parse Jaeger's `uber-trace-id` header: `{trace-id}:{span-id}:{parent-span-id}:{flags}`,
/// where ids may be shorter than 32/16 hex digits (left-padded with zeros), `%3A` may stand
/// for `:`, and bit 0 of the (hex) flags is "sampled".
pub fn parse_uber_trace_id(value: &str) -> Option<SpanContext> {
    let decoded;
    let v = if value.contains('%') {
        decoded = value.replace("%3A", ":").replace("%3a", ":");
        decoded.as_str()
    } else {
        value
    };
    let mut parts = v.trim().split(':');
    let (trace, span, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || parent.is_empty() || parent.len() > 16 {
        return None;
    }
    decode_padded_hex::<8>(parent)?;
    let trace_id = decode_padded_hex::<16>(trace)?;
    let span_id = decode_padded_hex::<8>(span)?;
    if flags.is_empty() || flags.len() > 2 {
        return None;
    }
    let flags = decode_padded_hex::<1>(flags)?[0];
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
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    push_hex(&mut s, &ctx.trace_id);
    s.push('-');
    push_hex(&mut s, &ctx.span_id);
    s.push_str(if ctx.sampled { "-01" } else { "-00" });
    s
}

/// Append `bytes` as lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
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
fn decode_padded_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.is_empty() || s.len() > 2 * N {
        return None;
    }
    let mut padded = [b'0'; 64];
    let start = 2 * N - s.len();
    padded[start..2 * N].copy_from_slice(s.as_bytes());
    padded[..2 * N].make_ascii_lowercase();
    decode_lower_hex::<N>(&padded[..2 * N])
}

/// Hex ids given by a caller (`set_trace_context`, `format_traceparent`): exactly 32/16 hex
/// digits, either case, not all zeros.
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

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_valid() {
        let c = parse_traceparent(TP).expect("valid");
        assert_eq!(to_hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(to_hex(&c.span_id), "00f067aa0ba902b7");
        assert!(c.sampled);
        assert_eq!(format_traceparent(&c), TP);
        let unsampled = TP.replace("-01", "-00");
        assert!(!parse_traceparent(&unsampled).expect("valid").sampled);
        assert!(
            parse_traceparent(&TP.replace("-01", "-03"))
                .expect("valid")
                .sampled
        );
    }

    #[test]
    fn traceparent_invalid() {
        let cases = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for c in cases {
            assert_eq!(parse_traceparent(c), None, "{c:?}");
        }
    }

    #[test]
    fn traceparent_future_version_is_lenient() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert!(parse_traceparent(v).is_some());
        assert!(parse_traceparent(&TP.replacen("00", "01", 1)).is_some());
    }

    #[test]
    fn uber_trace_id() {
        let c = parse_uber_trace_id("abc:def:0:1").expect("valid");
        assert_eq!(to_hex(&c.trace_id), "00000000000000000000000000000abc");
        assert_eq!(to_hex(&c.span_id), "0000000000000def");
        assert!(c.sampled);
        let c = parse_uber_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736%3A00f067aa0ba902b7%3A0%3A0")
            .expect("valid");
        assert_eq!(to_hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!c.sampled);
        assert!(parse_uber_trace_id("1:2:3:3").expect("valid").sampled);
        for bad in [
            "",
            "0:1:0:1",
            "1:0:0:1",
            "1:2:0",
            "1:2:0:1:5",
            "xyz:1:0:1",
            "1:2:0:",
            "11111111111111111111111111111111f:1:0:1",
        ] {
            assert_eq!(parse_uber_trace_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids() {
        assert!(parse_ids("4BF92F3577B34DA6A3CE929D0E0E4736", "00F067AA0BA902B7").is_ok());
        assert!(parse_ids("4bf9", "00f067aa0ba902b7").is_err());
        assert!(parse_ids("00000000000000000000000000000000", "00f067aa0ba902b7").is_err());
        assert!(parse_ids("4bf92f3577b34da6a3ce929d0e0e4736", "0000000000000000").is_err());
    }
}
