//! Propagation test vectors: W3C Trace Context (the spec's examples and its test suite's
//! cases), Jaeger's `uber-trace-id` (client docs) and B3 (openzipkin/b3-propagation README),
//! valid and invalid; round trips through inject/extract; and a proptest that no input panics.

use std::collections::HashMap;

use proptest::prelude::*;
use shmtel_core::propagation::{
    extract, extract_b3_multi, extract_sampling_only, format_b3_single, format_traceparent,
    format_uber_trace_id, inject, parse_b3_single, parse_traceparent, parse_tracestate,
    parse_uber_trace_id, to_hex, traceparent_bytes, B3Single, Extracted, Format, Formats, Sampling,
    HEADER_NAMES,
};
use shmtel_core::SpanContext;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
        .collect()
}

fn extract_from(pairs: &[(&str, &str)]) -> Option<Extracted> {
    let h = headers(pairs);
    extract(|name| h.get(name).map(String::as_str))
}

fn ids(e: &Extracted) -> (String, String) {
    (to_hex(&e.trace_id), to_hex(&e.span_id))
}

// -- W3C traceparent ------------------------------------------------------------------------------

#[test]
fn w3c_spec_examples() {
    // Trace Context §3.2.2.5 examples.
    let c = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
    assert_eq!(to_hex(&c.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(to_hex(&c.span_id), "b7ad6b7169203331");
    assert!(c.sampled);
    let c = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00").unwrap();
    assert!(!c.sampled);
    let c = parse_traceparent(TP).unwrap();
    assert_eq!(format_traceparent(&c), TP);
    assert_eq!(&traceparent_bytes(&c), TP.as_bytes());
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00";
    let c = parse_traceparent(unsampled).unwrap();
    assert_eq!(&traceparent_bytes(&c), unsampled.as_bytes());
}

#[test]
fn w3c_flags_other_bits_ignored() {
    // Only bit 0 (sampled) is defined for version 00; others are ignored, not rejected.
    for (flags, sampled) in [("03", true), ("02", false), ("ff", true), ("fe", false)] {
        let v = format!("00-{TRACE}-{SPAN}-{flags}");
        assert_eq!(parse_traceparent(&v).unwrap().sampled, sampled, "{v}");
    }
}

#[test]
fn w3c_surrounding_whitespace_is_allowed() {
    for v in [format!(" {TP}"), format!("{TP}\t"), format!(" \t{TP} \t")] {
        assert!(parse_traceparent(&v).is_some(), "{v:?}");
    }
}

#[test]
fn w3c_future_versions_are_parsed_leniently() {
    // test suite: test_traceparent_version_0xcc
    for v in [
        format!("cc-{TRACE}-{SPAN}-01"),
        format!("cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like"),
        format!("01-{TRACE}-{SPAN}-01"),
        format!("fe-{TRACE}-{SPAN}-00-x"),
    ] {
        assert!(parse_traceparent(&v).is_some(), "{v}");
    }
    assert!(
        !parse_traceparent(&format!("fe-{TRACE}-{SPAN}-00-x"))
            .unwrap()
            .sampled
    );
}

#[test]
fn w3c_invalid() {
    let cases = [
        String::new(),
        "00".to_owned(),
        // version ff is forbidden
        format!("ff-{TRACE}-{SPAN}-01"),
        // version 00 must be exactly 55 characters
        format!("00-{TRACE}-{SPAN}-01-"),
        format!("00-{TRACE}-{SPAN}-01-extra"),
        format!("00-{TRACE}-{SPAN}-01."),
        format!("00-{TRACE}-{SPAN}-1"),
        // a future version's 56th character must be '-'
        format!("cc-{TRACE}-{SPAN}-01.what-the-future-will-be-like"),
        // upper case anywhere
        format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
        format!("00-{TRACE}-{}-01", "00F067AA0BA902B7"),
        format!("0A-{TRACE}-{SPAN}-01"),
        format!("00-{TRACE}-{SPAN}-0A"),
        // all-zero ids
        format!("00-{}-{SPAN}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        // wrong lengths
        format!("00-{}-{SPAN}-01", &TRACE[..31]),
        format!("00-{TRACE}0-{SPAN}-01"),
        format!("00-{TRACE}-{}-01", &SPAN[..15]),
        format!("00-{TRACE}-{SPAN}0-01"),
        format!("0-{TRACE}-{SPAN}-01"),
        format!("000-{TRACE}-{SPAN}-01"),
        // illegal characters
        format!("0x-{TRACE}-{SPAN}-01"),
        format!("00-{TRACE}-{SPAN}-.0"),
        format!("00-{TRACE}-{SPAN}-0."),
        format!("00-{}g-{SPAN}-01", &TRACE[..31]),
        format!("00-{TRACE}-{}z-01", &SPAN[..15]),
        // wrong separators
        format!("00_{TRACE}-{SPAN}-01"),
        format!("00-{TRACE}_{SPAN}-01"),
        format!("00-{TRACE}-{SPAN}_01"),
        format!("00 {TRACE} {SPAN} 01"),
        // whitespace inside, non-ASCII
        format!("00- {}-{SPAN}-01", &TRACE[1..]),
        format!("00-{}é-{SPAN}-01", &TRACE[..30]),
    ];
    for c in cases {
        assert_eq!(parse_traceparent(&c), None, "{c:?}");
    }
}

// -- W3C tracestate -------------------------------------------------------------------------------

#[test]
fn tracestate_valid() {
    for v in [
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "congo=t61rcWkgMzE",
        "rojo=00f067aa0ba902b7",
        "foo=1 \t , \t bar=2",
        "foo=1,,bar=2",
        ",foo=1,",
        "foo=bar baz",
        "fw529a3039@dt=FW4;0;0;0;0;0;0;0",
        "a*/_-0=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~",
        "1tenant@sys=1",
    ] {
        let ts = parse_tracestate(v).unwrap_or_else(|| panic!("{v:?} is valid"));
        assert_eq!(ts.as_str(), v.trim());
    }
    // 32 members, key of 256 and value of 256 characters, tenant 241 and system 14
    let members: Vec<String> = (1..=32).map(|i| format!("bar{i:02}={i:02}")).collect();
    assert!(parse_tracestate(&members.join(",")).is_some());
    assert!(parse_tracestate(&format!("a{}=1", "b".repeat(255))).is_some());
    assert!(parse_tracestate(&format!("a={}", "b".repeat(256))).is_some());
    assert!(parse_tracestate(&format!("{}@{}=1", "t".repeat(241), "s".repeat(14))).is_some());
}

#[test]
fn tracestate_invalid() {
    let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
    let cases = [
        String::new(),
        " ".to_owned(),
        ",".to_owned(),
        members.join(","),
        "foo=1,foo=2".to_owned(),
        "FOO=1".to_owned(),
        "1foo=1".to_owned(),
        "foo".to_owned(),
        "foo=".to_owned(),
        "=1".to_owned(),
        "foo=1=2".to_owned(),
        "foo=1 x=2".to_owned(),
        "foo=bar ".to_owned() + ",x=1,foo@=1",
        "foo@=1".to_owned(),
        "@foo=1".to_owned(),
        "foo@@bar=1".to_owned(),
        "foo@Bar=1".to_owned(),
        "foo@1bar=1".to_owned(),
        "foo=é".to_owned(),
        "foo=\u{7f}".to_owned(),
        format!("a{}=1", "b".repeat(256)),
        format!("a={}", "b".repeat(257)),
        format!("{}@s=1", "t".repeat(242)),
        format!("t@{}=1", "s".repeat(15)),
        // longer than 512 characters in all
        (0..30)
            .map(|i| format!("k{i:02}={}", "v".repeat(16)))
            .collect::<Vec<_>>()
            .join(","),
    ];
    for c in cases {
        assert_eq!(parse_tracestate(&c), None, "{c:?}");
    }
}

#[test]
fn tracestate_only_with_a_valid_traceparent() {
    let e = extract_from(&[("traceparent", TP), ("tracestate", "rojo=1,congo=2")]).unwrap();
    assert_eq!(e.format, Format::W3c);
    assert_eq!(e.tracestate.unwrap().as_str(), "rojo=1,congo=2");
    let e = extract_from(&[("traceparent", TP), ("tracestate", "rojo=1,rojo=2")]).unwrap();
    assert_eq!(
        e.tracestate, None,
        "an invalid tracestate is dropped, the traceparent kept"
    );
    assert_eq!(extract_from(&[("tracestate", "rojo=1")]), None);
    let bad = TP.to_uppercase();
    assert_eq!(
        extract_from(&[("traceparent", &bad), ("tracestate", "rojo=1")]),
        None
    );
}

#[test]
fn duplicated_traceparent_is_invalid() {
    // Headers sent twice arrive joined with ','; a traceparent must not be (test suite:
    // test_traceparent_duplicated).
    let joined = format!("{TP},{TP}");
    assert_eq!(parse_traceparent(&joined), None);
}

// -- B3 -------------------------------------------------------------------------------------------

const B3_TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const B3_SPAN: &str = "e457b5a2e4d86bd1";
const B3_PARENT: &str = "05e3ac9a4f6e3b90";

fn b3_ctx(v: &str) -> Extracted {
    match parse_b3_single(v) {
        Some(B3Single::Context(e)) => e,
        other => panic!("{v:?}: {other:?}"),
    }
}

#[test]
fn b3_single_readme_examples() {
    let e = b3_ctx(&format!("{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}"));
    assert_eq!(ids(&e), (B3_TRACE.to_owned(), B3_SPAN.to_owned()));
    assert_eq!(
        e.parent_span_id.map(|p| to_hex(&p)).as_deref(),
        Some(B3_PARENT)
    );
    assert_eq!(e.sampling, Sampling::Accept);
    assert_eq!(e.format, Format::B3Single);

    let e = b3_ctx(&format!("{B3_TRACE}-{B3_SPAN}-1"));
    assert_eq!((e.sampling, e.parent_span_id), (Sampling::Accept, None));
    assert_eq!(
        b3_ctx(&format!("{B3_TRACE}-{B3_SPAN}-0")).sampling,
        Sampling::Deny
    );
    assert_eq!(
        b3_ctx(&format!("{B3_TRACE}-{B3_SPAN}-d")).sampling,
        Sampling::Debug
    );
    let deferred = b3_ctx(&format!("{B3_TRACE}-{B3_SPAN}"));
    assert_eq!(deferred.sampling, Sampling::Defer);
    assert!(deferred.span_context(|_| true).sampled);
    assert!(!deferred.span_context(|_| false).sampled);

    // 64-bit trace ids are left-padded
    let e = b3_ctx(&format!("{}-{B3_SPAN}-1", &B3_TRACE[16..]));
    assert_eq!(
        to_hex(&e.trace_id),
        format!("{}{}", "0".repeat(16), &B3_TRACE[16..])
    );

    // a lone sampling state
    assert_eq!(
        parse_b3_single("0"),
        Some(B3Single::SamplingOnly(Sampling::Deny))
    );
    assert_eq!(
        parse_b3_single("1"),
        Some(B3Single::SamplingOnly(Sampling::Accept))
    );
    assert_eq!(
        parse_b3_single("d"),
        Some(B3Single::SamplingOnly(Sampling::Debug))
    );
}

#[test]
fn b3_single_invalid() {
    let cases = [
        String::new(),
        "2".to_owned(),
        "true".to_owned(),
        B3_TRACE.to_owned(),
        format!("{B3_TRACE}-"),
        format!("{}-{B3_SPAN}-1", B3_TRACE.to_uppercase()),
        format!("{B3_TRACE}-{}-1", B3_SPAN.to_uppercase()),
        format!("{}-{B3_SPAN}-1", &B3_TRACE[1..]),
        format!("{}-{B3_SPAN}-1", &B3_TRACE[..20]),
        format!("{B3_TRACE}-{}-1", &B3_SPAN[1..]),
        format!("{}-{B3_SPAN}-1", "0".repeat(32)),
        format!("{}-{B3_SPAN}-1", "0".repeat(16)),
        format!("{B3_TRACE}-{}-1", "0".repeat(16)),
        format!("{B3_TRACE}-{B3_SPAN}-2"),
        format!("{B3_TRACE}-{B3_SPAN}-true"),
        format!("{B3_TRACE}-{B3_SPAN}-{B3_PARENT}"),
        format!("{B3_TRACE}-{B3_SPAN}-1-{}", &B3_PARENT[1..]),
        format!("{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}-x"),
        format!("{B3_TRACE}-{B3_SPAN}-1-"),
        format!("{B3_TRACE}:{B3_SPAN}:1"),
    ];
    for c in cases {
        assert_eq!(parse_b3_single(&c), None, "{c:?}");
    }
}

#[test]
fn b3_multi_readme_example() {
    let h = headers(&[
        ("X-B3-TraceId", B3_TRACE),
        ("X-B3-ParentSpanId", B3_PARENT),
        ("X-B3-SpanId", B3_SPAN),
        ("X-B3-Sampled", "1"),
    ]);
    let get = |n: &str| h.get(n).map(String::as_str);
    let e = extract_b3_multi(&get).unwrap();
    assert_eq!(ids(&e), (B3_TRACE.to_owned(), B3_SPAN.to_owned()));
    assert_eq!(
        e.parent_span_id.map(|p| to_hex(&p)).as_deref(),
        Some(B3_PARENT)
    );
    assert_eq!(e.sampling, Sampling::Accept);
    assert_eq!(e.format, Format::B3Multi);
}

#[test]
fn b3_multi_sampling_and_flags() {
    let base = [("X-B3-TraceId", B3_TRACE), ("X-B3-SpanId", B3_SPAN)];
    let with = |extra: &[(&str, &str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(extra);
        extract_from(&all).map(|e| e.sampling)
    };
    assert_eq!(with(&[]), Some(Sampling::Defer));
    assert_eq!(with(&[("X-B3-Sampled", "1")]), Some(Sampling::Accept));
    assert_eq!(with(&[("X-B3-Sampled", "0")]), Some(Sampling::Deny));
    assert_eq!(with(&[("X-B3-Sampled", "true")]), Some(Sampling::Accept));
    assert_eq!(with(&[("X-B3-Sampled", "false")]), Some(Sampling::Deny));
    assert_eq!(with(&[("X-B3-Flags", "1")]), Some(Sampling::Debug));
    assert_eq!(
        with(&[("X-B3-Flags", "1"), ("X-B3-Sampled", "0")]),
        Some(Sampling::Debug)
    );
    assert_eq!(with(&[("X-B3-Sampled", "2")]), None);
    assert_eq!(with(&[("X-B3-ParentSpanId", "xyz")]), None);
    // 64-bit trace id
    let e = extract_from(&[("X-B3-TraceId", &B3_TRACE[16..]), ("X-B3-SpanId", B3_SPAN)]).unwrap();
    assert_eq!(to_hex(&e.trace_id)[..16], *"0".repeat(16));
}

#[test]
fn b3_multi_invalid() {
    for pairs in [
        vec![("X-B3-TraceId", B3_TRACE)],
        vec![("X-B3-SpanId", B3_SPAN)],
        vec![("X-B3-TraceId", &B3_TRACE[2..]), ("X-B3-SpanId", B3_SPAN)],
        vec![
            ("X-B3-TraceId", "0000000000000000"),
            ("X-B3-SpanId", B3_SPAN),
        ],
        vec![
            ("X-B3-TraceId", B3_TRACE),
            ("X-B3-SpanId", "0000000000000000"),
        ],
        vec![
            ("X-B3-TraceId", "80F198EE56343BA864FE8B2A57D3EFF7"),
            ("X-B3-SpanId", B3_SPAN),
        ],
    ] {
        assert_eq!(extract_from(&pairs), None, "{pairs:?}");
    }
}

#[test]
fn sampling_only_decisions() {
    let only = |pairs: &[(&str, &str)]| {
        let h = headers(pairs);
        extract_sampling_only(|n| h.get(n).map(String::as_str))
    };
    assert_eq!(only(&[("b3", "0")]), Some(Sampling::Deny));
    assert_eq!(only(&[("b3", "d")]), Some(Sampling::Debug));
    assert_eq!(only(&[("X-B3-Sampled", "0")]), Some(Sampling::Deny));
    assert_eq!(only(&[("X-B3-Flags", "1")]), Some(Sampling::Debug));
    assert_eq!(only(&[]), None);
    assert_eq!(
        only(&[("X-B3-Sampled", "0"), ("X-B3-TraceId", B3_TRACE)]),
        None
    );
    assert_eq!(extract_from(&[("b3", "0")]), None, "no ids: not a context");
}

// -- Jaeger ---------------------------------------------------------------------------------------

#[test]
fn jaeger_valid() {
    let e = parse_uber_trace_id(&format!("{TRACE}:{SPAN}:0:1")).unwrap();
    assert_eq!(ids(&e), (TRACE.to_owned(), SPAN.to_owned()));
    assert_eq!(
        (e.sampling, e.parent_span_id, e.format),
        (Sampling::Accept, None, Format::Jaeger)
    );

    // 64-bit and shorter ids are left-padded; either case; %3A for ':'
    let e = parse_uber_trace_id("6e4c2a0c5d7b4d2e:6E4C2A0C5D7B4D2F:0:1").unwrap();
    assert_eq!(to_hex(&e.trace_id), "00000000000000006e4c2a0c5d7b4d2e");
    assert_eq!(to_hex(&e.span_id), "6e4c2a0c5d7b4d2f");
    let e = parse_uber_trace_id("abc:def:0:1").unwrap();
    assert_eq!(
        ids(&e),
        (
            format!("{}abc", "0".repeat(29)),
            format!("{}def", "0".repeat(13))
        )
    );
    let e = parse_uber_trace_id(&format!("{TRACE}%3A{SPAN}%3a{B3_PARENT}%3A0")).unwrap();
    assert_eq!(e.sampling, Sampling::Deny);
    assert_eq!(
        e.parent_span_id.map(|p| to_hex(&p)).as_deref(),
        Some(B3_PARENT)
    );

    // flags: bit 0 sampled, bit 1 debug (implies sampled), others ignored
    for (flags, sampling) in [
        ("0", Sampling::Deny),
        ("1", Sampling::Accept),
        ("2", Sampling::Debug),
        ("3", Sampling::Debug),
        ("8", Sampling::Deny),
        ("09", Sampling::Accept),
        ("ff", Sampling::Debug),
    ] {
        let e = parse_uber_trace_id(&format!("{TRACE}:{SPAN}:0:{flags}")).unwrap();
        assert_eq!(e.sampling, sampling, "flags {flags}");
    }
}

#[test]
fn jaeger_invalid() {
    for bad in [
        String::new(),
        "0:1:0:1".to_owned(),
        "1:0:0:1".to_owned(),
        format!("{}:{SPAN}:0:1", "0".repeat(32)),
        "1:2:0".to_owned(),
        "1:2:0:1:5".to_owned(),
        "xyz:1:0:1".to_owned(),
        "1:2:0:".to_owned(),
        "1:2::1".to_owned(),
        ":2:0:1".to_owned(),
        "1:2:0:100".to_owned(),
        format!("{TRACE}f:1:0:1"),
        format!("1:{SPAN}0:0:1"),
        format!("{TRACE}-{SPAN}-0-1"),
        "1%3B2%3B0%3B1".to_owned(),
        "1:2:0:g".to_owned(),
        "1:é:0:1".to_owned(),
    ] {
        assert_eq!(parse_uber_trace_id(&bad), None, "{bad:?}");
    }
}

// -- extract order, inject, round trips -----------------------------------------------------------

#[test]
fn extract_prefers_w3c_then_b3_single_then_multi_then_jaeger() {
    let b3 = format!("{B3_TRACE}-{B3_SPAN}-1");
    let uber = format!("{}:{SPAN}:0:1", &TRACE[..31]);
    let all = [
        ("traceparent", TP),
        ("b3", b3.as_str()),
        ("X-B3-TraceId", "1111111111111111"),
        ("X-B3-SpanId", "2222222222222222"),
        ("uber-trace-id", uber.as_str()),
    ];
    let formats: Vec<Format> = (0..all.len())
        .map(|skip| extract_from(&all[skip..]).unwrap().format)
        .collect();
    assert_eq!(
        formats,
        [
            Format::W3c,
            Format::B3Single,
            Format::B3Multi,
            Format::Jaeger,
            Format::Jaeger
        ]
    );
    // an invalid higher-priority header falls through to the next format
    let e = extract_from(&[
        ("traceparent", "garbage"),
        ("b3", "garbage"),
        ("uber-trace-id", &uber),
    ])
    .unwrap();
    assert_eq!(e.format, Format::Jaeger);
    assert_eq!(extract_from(&[]), None);
}

#[test]
fn format_names() {
    assert_eq!(Formats::from_name("w3c"), Some(Formats::W3C));
    assert_eq!(Formats::from_name("TraceContext"), Some(Formats::W3C));
    assert_eq!(Formats::from_name(" b3 "), Some(Formats::B3_SINGLE));
    assert_eq!(Formats::from_name("b3multi"), Some(Formats::B3_MULTI));
    assert_eq!(Formats::from_name("jaeger"), Some(Formats::JAEGER));
    assert_eq!(Formats::from_name("baggage"), None);
    let all = Formats::W3C | Formats::B3_SINGLE | Formats::B3_MULTI | Formats::JAEGER;
    assert!(all.contains(Formats::JAEGER) && !Formats::W3C.contains(Formats::JAEGER));
    assert!(Formats::NONE.is_empty());
}

#[test]
fn inject_writes_every_format() {
    let ctx = SpanContext {
        trace_id: [0xab; 16],
        span_id: [0x12; 8],
        sampled: true,
    };
    let ts = parse_tracestate("rojo=1").unwrap();
    let mut out = Vec::new();
    let all = Formats::W3C | Formats::B3_SINGLE | Formats::B3_MULTI | Formats::JAEGER;
    inject(&ctx, Some(&ts), all, |k, v| out.push((k, v)));
    let t = "ab".repeat(16);
    let s = "12".repeat(8);
    assert_eq!(
        out,
        vec![
            ("traceparent", format!("00-{t}-{s}-01")),
            ("tracestate", "rojo=1".to_owned()),
            ("b3", format!("{t}-{s}-1")),
            ("x-b3-traceid", t.clone()),
            ("x-b3-spanid", s.clone()),
            ("x-b3-sampled", "1".to_owned()),
            ("uber-trace-id", format!("{t}:{s}:0:1")),
        ]
    );
    let mut out = Vec::new();
    inject(&ctx, Some(&ts), Formats::B3_SINGLE, |k, v| out.push((k, v)));
    assert_eq!(out.len(), 1, "tracestate goes with W3C only");
    let mut out = Vec::new();
    inject(&ctx, None, Formats::NONE, |k, v| out.push((k, v)));
    assert!(out.is_empty());
}

fn round_trip(ctx: SpanContext, formats: Formats) -> Extracted {
    let mut h = HashMap::new();
    inject(&ctx, None, formats, |k, v| {
        h.insert(k.to_owned(), v);
    });
    extract(|n| h.get(n).map(String::as_str)).expect("injected headers extract")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn nothing_panics(s in any::<String>(), t in "[0-9a-fA-F%:\\-,=@ ]{0,80}") {
        for v in [s.as_str(), t.as_str()] {
            let _ = parse_traceparent(v);
            let _ = parse_tracestate(v);
            let _ = parse_b3_single(v);
            let _ = parse_uber_trace_id(v);
            let _ = extract(|_| Some(v));
            let _ = extract_sampling_only(|_| Some(v));
            for name in HEADER_NAMES {
                let _ = extract(|n| (n == name).then_some(v));
            }
        }
    }

    #[test]
    fn near_valid_traceparents_do_not_panic(
        version in "[0-9a-fA-F]{0,3}",
        trace in "[0-9a-fA-F]{30,34}",
        span in "[0-9a-fA-F]{14,18}",
        flags in "[0-9a-fA-F.]{0,3}",
        tail in "[-.a-z]{0,4}",
    ) {
        let v = format!("{version}-{trace}-{span}-{flags}{tail}");
        if let Some(c) = parse_traceparent(&v) {
            prop_assert_eq!(to_hex(&c.trace_id), trace.clone());
            prop_assert_eq!(to_hex(&c.span_id), span.clone());
        }
        let _ = parse_b3_single(&format!("{trace}-{span}-{flags}"));
        let _ = parse_uber_trace_id(&format!("{trace}:{span}:{flags}:{version}"));
    }

    #[test]
    fn inject_extract_round_trip(
        trace in any::<[u8; 16]>(),
        span in any::<[u8; 8]>(),
        sampled in any::<bool>(),
        which in 0usize..4,
    ) {
        prop_assume!(trace != [0; 16] && span != [0; 8]);
        let ctx = SpanContext { trace_id: trace, span_id: span, sampled };
        let formats = [Formats::W3C, Formats::B3_SINGLE, Formats::B3_MULTI, Formats::JAEGER][which];
        let e = round_trip(ctx, formats);
        prop_assert_eq!(e.span_context(|_| !sampled), ctx);
        prop_assert_eq!(format_traceparent(&ctx).len(), 55);
        prop_assert_eq!(format_b3_single(&ctx).len(), 51);
        prop_assert_eq!(format_uber_trace_id(&ctx).len(), 53);
    }
}
