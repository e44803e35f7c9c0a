//! Prometheus text format 0.0.4 as prometheus_client writes it: pure formatting functions.
//!
//! Floats are written by `floatToGoString` (Python's `repr`, with Go's earlier switch to
//! exponents for large positive values), label values escape `\`, `"` and newline, help text
//! escapes `\` and newline, and labels are sorted by name.

use std::fmt::Write as _;

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
pub fn py_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v);
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{int_part}{frac_part}");
    let mut decpt = int_part.len() as i32 + exp;
    let lead = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..lead);
    decpt -= lead as i32;
    while digits.ends_with('0') {
        digits.pop();
    }
    let mut out = String::with_capacity(24);
    if neg {
        out.push('-');
    }
    if digits.is_empty() {
        out.push_str("0.0");
        return out;
    }
    let n = digits.len() as i32;
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-decpt) as usize));
        out.push_str(&digits);
    } else if decpt >= n {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

/// prometheus_client's `floatToGoString`.
pub fn go_float(v: f64) -> String {
    if v == f64::INFINITY {
        return "+Inf".into();
    }
    if v == f64::NEG_INFINITY {
        return "-Inf".into();
    }
    if v.is_nan() {
        return "NaN".into();
    }
    let s = py_float_repr(v);
    match s.find('.') {
        Some(dot) if v > 0.0 && dot > 6 => {
            let raw = format!("{}.{}{}", &s[..1], &s[1..dot], &s[dot + 1..]);
            let mantissa = raw.trim_end_matches(['0', '.']);
            format!("{mantissa}e+{:02}", dot - 1)
        }
        _ => s,
    }
}

/// Escape a `# HELP` text: backslash and newline.
pub fn escape_help(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escape a label value: backslash, newline and double quote.
pub fn escape_label_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
pub fn write_header(out: &mut String, name: &str, help: &str, type_name: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(help, out);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(type_name);
    out.push('\n');
}

/// One sample line; `labels` must already be sorted by name.
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(v, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&go_float(value));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (0.005, "0.005"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.0, "123456.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1234.5678, "1234.5678"),
        ];
        for (v, want) in cases {
            assert_eq!(py_float_repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn go_float_matches_prometheus_client() {
        let cases = [
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1.0, "1.0"),
            (0.005, "0.005"),
            (123456.0, "123456.0"),
            (1234567.0, "1.234567e+06"),
            (1e15, "1e+15"),
            (12345678.9, "1.23456789e+07"),
            (1e16, "1e+16"),
            (-1234567.0, "-1234567.0"),
            (10000000.0, "1e+07"),
        ];
        for (v, want) in cases {
            assert_eq!(go_float(v), want, "{v:e}");
        }
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_label_value("a\\b\"c\nd", &mut s);
        assert_eq!(s, r#"a\\b\"c\nd"#);
        let mut h = String::new();
        escape_help("x\\y\"z\n", &mut h);
        assert_eq!(h, r#"x\\y"z\n"#);
        let mut out = String::new();
        write_sample(&mut out, "m_total", &[("a", "1"), ("b", "x\"y")], 2.0);
        assert_eq!(out, "m_total{a=\"1\",b=\"x\\\"y\"} 2.0\n");
    }
}
