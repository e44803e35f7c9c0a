//! Numbers and escaped strings as both text formats spell them.
//!
//! Floats follow prometheus_client (Python): `repr(float)` (the shortest string that reads back
//! as the same float, `.0` appended to integral values, exponent notation below `1e-4` and from
//! `1e16`), adjusted by `floatToGoString` so that positive values of seven or more integral digits
//! switch to exponent notation as Go's `%g` does (`1e+06`, `1.234567e+06`). That makes `le` and
//! `quantile` label values the canonical numbers of the OpenMetrics specification (`0.005`,
//! `1.0`, `1e+06`, `+Inf`).
//!
//! Everything writes into a caller-owned `String`; nothing allocates except the `String`'s
//! own growth.

/// Writes `v` as prometheus_client's `floatToGoString` does: `+Inf`, `-Inf`, `NaN`, otherwise
/// Python's `repr`, switched to exponent notation for positive values `>= 1e6`.
pub fn write_go_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if !write_integral(out, v, true) {
        let d = Shortest::of(v);
        // prometheus_client: `if d > 0 and dot > 6`, where `dot` is the index of the decimal
        // point in the positional repr, i.e. the number of integral digits.
        if v > 0.0 && d.positional() && d.decpt > 6 {
            let digits = d.digits();
            out.push(char::from(digits[0]));
            if digits.len() > 1 {
                out.push('.');
                push_ascii(out, &digits[1..]);
            }
            out.push_str("e+");
            // decpt is at most 16 here, so the exponent has exactly two digits.
            push_two_digits(out, (d.decpt - 1) as u32);
        } else {
            d.write_repr(out);
        }
    }
}

/// Writes `v` as Python's `repr(float)` does for finite values (`1.0`, `0.0001`, `1e-05`,
/// `1520879607.789`, `1e+16`). Non-finite values are written as in [`write_go_float`], so the
/// output is always a valid exposition number.
pub fn write_python_repr(out: &mut String, v: f64) {
    if v.is_finite() {
        if !write_integral(out, v, false) {
            Shortest::of(v).write_repr(out);
        }
    } else {
        write_go_float(out, v);
    }
}

/// Writes an unsigned integer in decimal (OpenMetrics counts and bucket values).
pub fn write_u64(out: &mut String, v: u64) {
    let mut buf = itoa::Buffer::new();
    out.push_str(buf.format(v));
}

/// Writes a label value (or an OpenMetrics help text) escaped: `\` as `\\`, `"` as `\"` and a
/// line feed as `\n`.
pub fn write_escaped_label_value(out: &mut String, s: &str) {
    write_escaped(out, s, true);
}

/// Writes a Prometheus text-format help text escaped: `\` as `\\` and a line feed as `\n`
/// (double quotes stay as they are, as prometheus_client writes them).
pub fn write_escaped_help_prometheus(out: &mut String, s: &str) {
    write_escaped(out, s, false);
}

/// Writes an OpenMetrics help text escaped (the same escapes as a label value).
pub fn write_escaped_help_openmetrics(out: &mut String, s: &str) {
    write_escaped(out, s, true);
}

fn write_escaped(out: &mut String, s: &str, quote: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'"' if quote => "\\\"",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&s[start..i]);
        out.push_str(escape);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// The fast path for integral values below 1e15 (counts, timestamps, round bounds), which
/// need no shortest-digits search: the digits are the integer's. Returns false, having
/// written nothing, for any other value.
fn write_integral(out: &mut String, v: f64, go: bool) -> bool {
    // NaN and infinities fail the first test; `fract` is exact.
    if v.is_nan() || v.abs() >= 1e15 || v.fract() != 0.0 {
        return false;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0.0" } else { "0.0" });
        return true;
    }
    let mut buf = itoa::Buffer::new();
    // Exact: |v| < 1e15 is an integer well inside i64.
    let digits = buf.format(v as i64);
    if go && v > 0.0 && digits.len() > 6 {
        // floatToGoString: `1.234567e+06`, trailing zeros (and a bare point) dropped.
        let significant = digits.trim_end_matches('0');
        out.push_str(&significant[..1]);
        if significant.len() > 1 {
            out.push('.');
            out.push_str(&significant[1..]);
        }
        out.push_str("e+");
        push_two_digits(out, (digits.len() - 1) as u32);
    } else {
        out.push_str(digits);
        out.push_str(".0");
    }
    true
}

fn push_ascii(out: &mut String, digits: &[u8]) {
    // Always ASCII digits; the check is a formality that cannot fail.
    if let Ok(digits) = std::str::from_utf8(digits) {
        out.push_str(digits);
    }
}

fn push_two_digits(out: &mut String, n: u32) {
    if n < 10 {
        out.push('0');
    }
    let mut buf = itoa::Buffer::new();
    out.push_str(buf.format(n));
}

/// The shortest decimal digits that read back as a float: `0.d1d2…dn × 10^decpt`.
struct Shortest {
    negative: bool,
    /// ASCII digits without leading or trailing zeros; empty for zero.
    buf: [u8; 32],
    len: usize,
    decpt: i32,
}

impl Shortest {
    /// Takes ryu's shortest round-trip digits (the same digits Python's `repr` picks) apart.
    fn of(v: f64) -> Shortest {
        let mut ryu_buf = ryu::Buffer::new();
        // ryu writes `-`?, digits with an optional `.`, and optionally `e` and an exponent.
        let text = ryu_buf.format_finite(v).as_bytes();
        let mut d = Shortest {
            negative: false,
            buf: [0; 32],
            len: 0,
            decpt: 0,
        };
        let mut i = 0;
        if text.first() == Some(&b'-') {
            d.negative = true;
            i = 1;
        }
        let mut integral_digits: i32 = 0;
        let mut leading_zeros: i32 = 0;
        let mut after_point = false;
        let mut exponent: i32 = 0;
        while i < text.len() {
            match text[i] {
                b'.' => after_point = true,
                b'e' | b'E' => {
                    exponent = parse_exponent(&text[i + 1..]);
                    break;
                }
                c => {
                    if !after_point {
                        integral_digits += 1;
                    }
                    if d.len == 0 && c == b'0' {
                        leading_zeros += 1;
                    } else if d.len < d.buf.len() {
                        d.buf[d.len] = c;
                        d.len += 1;
                    }
                }
            }
            i += 1;
        }
        while d.len > 0 && d.buf[d.len - 1] == b'0' {
            d.len -= 1;
        }
        d.decpt = integral_digits - leading_zeros + exponent;
        d
    }

    fn digits(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Whether Python's `repr` writes this value positionally (else with an exponent).
    fn positional(&self) -> bool {
        // CPython's float_repr_style 'short', mode 'r': exponent if decpt <= -4 or > 16.
        self.len == 0 || (-4 < self.decpt && self.decpt <= 16)
    }

    fn write_repr(&self, out: &mut String) {
        if self.negative {
            out.push('-');
        }
        let digits = self.digits();
        if digits.is_empty() {
            out.push_str("0.0");
        } else if self.positional() {
            if self.decpt <= 0 {
                out.push_str("0.");
                for _ in 0..-self.decpt {
                    out.push('0');
                }
                push_ascii(out, digits);
            } else {
                let point = self.decpt as usize;
                if point < digits.len() {
                    push_ascii(out, &digits[..point]);
                    out.push('.');
                    push_ascii(out, &digits[point..]);
                } else {
                    push_ascii(out, digits);
                    for _ in digits.len()..point {
                        out.push('0');
                    }
                    out.push_str(".0");
                }
            }
        } else {
            out.push(char::from(digits[0]));
            if digits.len() > 1 {
                out.push('.');
                push_ascii(out, &digits[1..]);
            }
            let exponent = self.decpt - 1;
            out.push_str(if exponent < 0 { "e-" } else { "e+" });
            push_two_digits(out, exponent.unsigned_abs());
        }
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut n: i32 = 0;
    for &c in digits {
        n = n * 10 + i32::from(c - b'0');
    }
    if negative {
        -n
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(v: f64) -> String {
        let mut s = String::new();
        write_go_float(&mut s, v);
        s
    }

    fn repr(v: f64) -> String {
        let mut s = String::new();
        write_python_repr(&mut s, v);
        s
    }

    #[test]
    fn python_repr_matches_cpython() {
        // Expected strings are CPython 3.11 `repr(float(x))`.
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.1, "0.1"),
            (0.005, "0.005"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (1520879607.789, "1520879607.789"),
            (0.30000000000000004, "0.30000000000000004"),
            (-2.5e-5, "-2.5e-05"),
        ];
        for &(v, want) in cases {
            assert_eq!(repr(v), want, "repr({v:e})");
        }
    }

    #[test]
    fn go_float_matches_prometheus_client() {
        // Expected strings are prometheus_client 0.26 `floatToGoString(x)`.
        let cases: &[(f64, &str)] = &[
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (0.0, "0.0"),
            (1.0, "1.0"),
            (10.0, "10.0"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1200000.0, "1.2e+06"),
            (10000000.5, "1.00000005e+07"),
            (1e10, "1e+10"),
            (1605281325.0, "1.605281325e+09"),
            (1e15, "1e+15"),
            (1e16, "1e+16"),
            (-1e6, "-1000000.0"),
            (1e-10, "1e-10"),
            (1e-9, "1e-09"),
            (0.95, "0.95"),
            (0.999, "0.999"),
            (1.1e23, "1.1e+23"),
        ];
        for &(v, want) in cases {
            assert_eq!(go(v), want, "floatToGoString({v:e})");
        }
    }

    #[test]
    fn escapes() {
        let mut s = String::new();
        write_escaped_label_value(&mut s, "a\\b\"c\nd é");
        assert_eq!(s, r#"a\\b\"c\nd é"#);
        s.clear();
        write_escaped_help_prometheus(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b"c\nd"#);
        s.clear();
        write_escaped_help_openmetrics(&mut s, "q\"");
        assert_eq!(s, r#"q\""#);
    }
}
