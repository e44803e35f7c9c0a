//! Exposition formats: tables of known snapshots with their exact Prometheus text and
//! OpenMetrics renderings, a grammar/round-trip property over random snapshots, a render-time
//! budget, and (with `SHMTEL_REQUIRE_PROMTOOL=1`, as `make test` sets) promtool's verdict.
//!
//! The Prometheus text expectations are what prometheus_client 0.26 (Python) writes for the same
//! metrics; the OpenMetrics ones follow the OpenMetrics 1.0 specification.

use std::io::Write;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use shmtel_collector::exposition::{
    is_valid_label_name, is_valid_metric_name, render_openmetrics, render_prometheus,
    ExpositionFormat, RenderStats, Skip, SkipReason,
};
use shmtel_collector::model::{
    BucketSnapshot, ExemplarSnapshot, FamilySnapshot, MetricKind, SeriesSnapshot, SeriesValue,
};

// -------------------------------------------------------------------------------------------
// Building snapshots
// -------------------------------------------------------------------------------------------

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn family(name: &str, help: &str, kind: MetricKind, series: Vec<SeriesSnapshot>) -> FamilySnapshot {
    FamilySnapshot {
        name: name.into(),
        help: help.into(),
        unit: String::new(),
        kind,
        series,
    }
}

fn with_unit(mut family: FamilySnapshot, unit: &str) -> FamilySnapshot {
    family.unit = unit.into();
    family
}

fn series(pairs: &[(&str, &str)], value: SeriesValue) -> SeriesSnapshot {
    SeriesSnapshot {
        labels: labels(pairs),
        value,
        created_unix_secs: None,
    }
}

fn created(mut series: SeriesSnapshot, at: f64) -> SeriesSnapshot {
    series.created_unix_secs = Some(at);
    series
}

fn counter(total: f64) -> SeriesValue {
    SeriesValue::Counter {
        total,
        exemplar: None,
    }
}

fn exemplar(value: f64, at: Option<f64>) -> ExemplarSnapshot {
    ExemplarSnapshot {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: "00f067aa0ba902b7".into(),
        value,
        unix_secs: at,
    }
}

/// A histogram from `(upper, cumulative)` pairs; `+Inf` must be included by the caller.
fn histogram(buckets: &[(f64, u64)], sum: f64) -> SeriesValue {
    SeriesValue::Histogram {
        buckets: buckets
            .iter()
            .map(|&(upper, cumulative)| BucketSnapshot {
                upper,
                cumulative,
                exemplar: None,
            })
            .collect(),
        sum,
        count: buckets.last().map_or(0, |b| b.1),
    }
}

fn prometheus(families: &[FamilySnapshot]) -> (String, RenderStats) {
    let mut out = String::new();
    let stats = render_prometheus(families, &mut out);
    (out, stats)
}

fn openmetrics(families: &[FamilySnapshot]) -> (String, RenderStats) {
    let mut out = String::new();
    let stats = render_openmetrics(families, &mut out);
    (out, stats)
}

const INF: f64 = f64::INFINITY;

// -------------------------------------------------------------------------------------------
// Known cases
// -------------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    families: Vec<FamilySnapshot>,
    prometheus: &'static str,
    openmetrics: &'static str,
}

/// Well-formed snapshots of every kind, with their exact renderings.
fn known_cases() -> Vec<Case> {
    vec![
        Case {
            name: "counter without labels",
            families: vec![family(
                "requests",
                "Requests served.",
                MetricKind::Counter,
                vec![series(&[], counter(3.0))],
            )],
            prometheus: "\
# HELP requests_total Requests served.
# TYPE requests_total counter
requests_total 3.0
",
            openmetrics: "\
# TYPE requests counter
# HELP requests Requests served.
requests_total 3.0
# EOF
",
        },
        Case {
            name: "counter registered with _total, labels sorted, created",
            families: vec![family(
                "http_requests_total",
                "HTTP requests.",
                MetricKind::Counter,
                vec![
                    created(
                        series(
                            &[("route", "/users"), ("method", "GET")],
                            counter(1234567.0),
                        ),
                        1700000000.5,
                    ),
                    series(&[("route", "/users"), ("method", "POST")], counter(0.0)),
                ],
            )],
            prometheus: r#"# HELP http_requests_total HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="GET",route="/users"} 1.234567e+06
http_requests_total{method="POST",route="/users"} 0.0
# HELP http_requests_created HTTP requests.
# TYPE http_requests_created gauge
http_requests_created{method="GET",route="/users"} 1.7000000005e+09
"#,
            openmetrics: r#"# TYPE http_requests counter
# HELP http_requests HTTP requests.
http_requests_total{method="GET",route="/users"} 1.234567e+06
http_requests_created{method="GET",route="/users"} 1.7000000005e+09
http_requests_total{method="POST",route="/users"} 0.0
# EOF
"#,
        },
        Case {
            name: "counter with unit and exemplars",
            families: vec![with_unit(
                family(
                    "cpu_seconds",
                    "CPU time.",
                    MetricKind::Counter,
                    vec![
                        series(
                            &[("mode", "user")],
                            SeriesValue::Counter {
                                total: 2.5,
                                exemplar: Some(exemplar(0.7, Some(1700000000.123))),
                            },
                        ),
                        series(
                            &[("mode", "system")],
                            SeriesValue::Counter {
                                total: 0.25,
                                exemplar: Some(exemplar(0.25, None)),
                            },
                        ),
                    ],
                ),
                "seconds",
            )],
            prometheus: r#"# HELP cpu_seconds_total CPU time.
# TYPE cpu_seconds_total counter
cpu_seconds_total{mode="user"} 2.5
cpu_seconds_total{mode="system"} 0.25
"#,
            openmetrics: r#"# TYPE cpu_seconds counter
# UNIT cpu_seconds seconds
# HELP cpu_seconds CPU time.
cpu_seconds_total{mode="user"} 2.5 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.7 1700000000.123
cpu_seconds_total{mode="system"} 0.25 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.25
# EOF
"#,
        },
        Case {
            name: "gauge values and escaping",
            families: vec![with_unit(
                family(
                    "room_temperature",
                    "Line one\nback\\slash \"quoted\" ünïcode",
                    MetricKind::Gauge,
                    vec![
                        series(&[("room", "a\"b\\c\nd")], SeriesValue::Gauge(21.5)),
                        series(&[("room", "")], SeriesValue::Gauge(f64::NAN)),
                        series(&[("room", "hot")], SeriesValue::Gauge(INF)),
                        series(&[("room", "cold")], SeriesValue::Gauge(f64::NEG_INFINITY)),
                        series(&[("room", "zero")], SeriesValue::Gauge(-0.0)),
                        series(&[("room", "tiny")], SeriesValue::Gauge(1e-05)),
                        series(&[("room", "big")], SeriesValue::Gauge(1e16)),
                        // A gauge has no creation time: ignored.
                        created(series(&[("room", "ü")], SeriesValue::Gauge(100000.0)), 1.0),
                    ],
                ),
                // Not a suffix of the name: no UNIT line.
                "celsius",
            )],
            prometheus: r#"# HELP room_temperature Line one\nback\\slash "quoted" ünïcode
# TYPE room_temperature gauge
room_temperature{room="a\"b\\c\nd"} 21.5
room_temperature{room=""} NaN
room_temperature{room="hot"} +Inf
room_temperature{room="cold"} -Inf
room_temperature{room="zero"} -0.0
room_temperature{room="tiny"} 1e-05
room_temperature{room="big"} 1e+16
room_temperature{room="ü"} 100000.0
"#,
            openmetrics: r#"# TYPE room_temperature gauge
# HELP room_temperature Line one\nback\\slash \"quoted\" ünïcode
room_temperature{room="a\"b\\c\nd"} 21.5
room_temperature{room=""} NaN
room_temperature{room="hot"} +Inf
room_temperature{room="cold"} -Inf
room_temperature{room="zero"} -0.0
room_temperature{room="tiny"} 1e-05
room_temperature{room="big"} 1e+16
room_temperature{room="ü"} 100000.0
# EOF
"#,
        },
        Case {
            name: "histogram with labels around le, exemplar, created",
            families: vec![with_unit(
                family(
                    "latency_seconds",
                    "Request latency.",
                    MetricKind::Histogram,
                    vec![created(
                        series(
                            &[("route", "/a"), ("app", "x")],
                            SeriesValue::Histogram {
                                buckets: vec![
                                    BucketSnapshot {
                                        upper: 0.005,
                                        cumulative: 1,
                                        exemplar: None,
                                    },
                                    BucketSnapshot {
                                        upper: 0.1,
                                        cumulative: 3,
                                        exemplar: Some(exemplar(0.05, Some(1700000000.0))),
                                    },
                                    BucketSnapshot {
                                        upper: 1.0,
                                        cumulative: 4,
                                        exemplar: None,
                                    },
                                    BucketSnapshot {
                                        upper: 1e6,
                                        cumulative: 4,
                                        exemplar: None,
                                    },
                                    BucketSnapshot {
                                        upper: INF,
                                        cumulative: 5,
                                        exemplar: Some(exemplar(2e6, None)),
                                    },
                                ],
                                sum: 2000001.25,
                                count: 5,
                            },
                        ),
                        1700000000.0,
                    )],
                ),
                "seconds",
            )],
            prometheus: r#"# HELP latency_seconds Request latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{app="x",le="0.005",route="/a"} 1.0
latency_seconds_bucket{app="x",le="0.1",route="/a"} 3.0
latency_seconds_bucket{app="x",le="1.0",route="/a"} 4.0
latency_seconds_bucket{app="x",le="1e+06",route="/a"} 4.0
latency_seconds_bucket{app="x",le="+Inf",route="/a"} 5.0
latency_seconds_count{app="x",route="/a"} 5.0
latency_seconds_sum{app="x",route="/a"} 2.00000125e+06
# HELP latency_seconds_created Request latency.
# TYPE latency_seconds_created gauge
latency_seconds_created{app="x",route="/a"} 1.7e+09
"#,
            openmetrics: r#"# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
# HELP latency_seconds Request latency.
latency_seconds_bucket{app="x",le="0.005",route="/a"} 1
latency_seconds_bucket{app="x",le="0.1",route="/a"} 3 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.05 1700000000.0
latency_seconds_bucket{app="x",le="1.0",route="/a"} 4
latency_seconds_bucket{app="x",le="1e+06",route="/a"} 4
latency_seconds_bucket{app="x",le="+Inf",route="/a"} 5 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 2e+06
latency_seconds_count{app="x",route="/a"} 5
latency_seconds_sum{app="x",route="/a"} 2.00000125e+06
latency_seconds_created{app="x",route="/a"} 1.7e+09
# EOF
"#,
        },
        Case {
            name: "histograms with negative bounds or a negative sum",
            families: vec![
                family(
                    "temperature_delta",
                    "Change.",
                    MetricKind::Histogram,
                    vec![series(
                        &[],
                        histogram(&[(-1.0, 0), (0.0, 1), (INF, 2)], -0.5),
                    )],
                ),
                family(
                    "offset",
                    "Offset.",
                    MetricKind::Histogram,
                    vec![series(&[], histogram(&[(1.0, 1), (INF, 1)], -3.0))],
                ),
            ],
            // prometheus_client leaves out `_sum` when the lowest bound is negative.
            prometheus: r#"# HELP temperature_delta Change.
# TYPE temperature_delta histogram
temperature_delta_bucket{le="-1.0"} 0.0
temperature_delta_bucket{le="0.0"} 1.0
temperature_delta_bucket{le="+Inf"} 2.0
temperature_delta_count 2.0
# HELP offset Offset.
# TYPE offset histogram
offset_bucket{le="1.0"} 1.0
offset_bucket{le="+Inf"} 1.0
offset_count 1.0
offset_sum -3.0
"#,
            // OpenMetrics: no sum unless it is a counter, and `_count` only with `_sum`.
            openmetrics: r#"# TYPE temperature_delta histogram
# HELP temperature_delta Change.
temperature_delta_bucket{le="-1.0"} 0
temperature_delta_bucket{le="0.0"} 1
temperature_delta_bucket{le="+Inf"} 2
# TYPE offset histogram
# HELP offset Offset.
offset_bucket{le="1.0"} 1
offset_bucket{le="+Inf"} 1
# EOF
"#,
        },
        Case {
            name: "summary with quantiles",
            families: vec![family(
                "rpc_seconds",
                "RPC latency.",
                MetricKind::Summary,
                vec![
                    created(
                        series(
                            &[("service", "db")],
                            SeriesValue::Summary {
                                quantiles: vec![(0.5, 0.1), (0.9, 0.25), (0.99, f64::NAN)],
                                sum: 1.5,
                                count: 10,
                            },
                        ),
                        1600000000.25,
                    ),
                    series(
                        &[("service", "cache")],
                        SeriesValue::Summary {
                            quantiles: vec![],
                            sum: 0.0,
                            count: 0,
                        },
                    ),
                ],
            )],
            prometheus: r#"# HELP rpc_seconds RPC latency.
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5",service="db"} 0.1
rpc_seconds{quantile="0.9",service="db"} 0.25
rpc_seconds{quantile="0.99",service="db"} NaN
rpc_seconds_count{service="db"} 10.0
rpc_seconds_sum{service="db"} 1.5
rpc_seconds_count{service="cache"} 0.0
rpc_seconds_sum{service="cache"} 0.0
# HELP rpc_seconds_created RPC latency.
# TYPE rpc_seconds_created gauge
rpc_seconds_created{service="db"} 1.60000000025e+09
"#,
            openmetrics: r#"# TYPE rpc_seconds summary
# HELP rpc_seconds RPC latency.
rpc_seconds{quantile="0.5",service="db"} 0.1
rpc_seconds{quantile="0.9",service="db"} 0.25
rpc_seconds{quantile="0.99",service="db"} NaN
rpc_seconds_count{service="db"} 10
rpc_seconds_sum{service="db"} 1.5
rpc_seconds_created{service="db"} 1.60000000025e+09
rpc_seconds_count{service="cache"} 0
rpc_seconds_sum{service="cache"} 0.0
# EOF
"#,
        },
        Case {
            name: "families without series, empty help, several families",
            families: vec![
                family("idle", "", MetricKind::Gauge, vec![]),
                family("jobs", "Jobs.", MetricKind::Counter, vec![]),
                family(
                    "up",
                    "",
                    MetricKind::Gauge,
                    vec![series(&[], SeriesValue::Gauge(1.0))],
                ),
            ],
            prometheus: "\
# HELP idle 
# TYPE idle gauge
# HELP jobs_total Jobs.
# TYPE jobs_total counter
# HELP up 
# TYPE up gauge
up 1.0
",
            openmetrics: "\
# TYPE idle gauge
# TYPE jobs counter
# HELP jobs Jobs.
# TYPE up gauge
up 1.0
# EOF
",
        },
        Case {
            name: "nothing at all",
            families: vec![],
            prometheus: "",
            openmetrics: "# EOF\n",
        },
    ]
}

#[test]
fn known_cases_render_exactly() {
    for case in known_cases() {
        let (text, stats) = prometheus(&case.families);
        assert_eq!(text, case.prometheus, "Prometheus text of {:?}", case.name);
        assert!(stats.is_clean(), "{}: {stats:?}", case.name);
        let (text, stats) = openmetrics(&case.families);
        assert_eq!(text, case.openmetrics, "OpenMetrics of {:?}", case.name);
        assert!(stats.is_clean(), "{}: {stats:?}", case.name);
        assert_eq!(stats.families, case.families.len());
    }
}

#[test]
fn render_appends_to_the_buffer() {
    let families = vec![family(
        "up",
        "Up.",
        MetricKind::Gauge,
        vec![series(&[], SeriesValue::Gauge(1.0))],
    )];
    let mut out = String::from("# existing\n");
    render_prometheus(&families, &mut out);
    assert_eq!(out, "# existing\n# HELP up Up.\n# TYPE up gauge\nup 1.0\n");
    let mut out = String::new();
    ExpositionFormat::OpenMetrics.render(&families, &mut out);
    assert!(out.ends_with("up 1.0\n# EOF\n"));
}

// -------------------------------------------------------------------------------------------
// Invalid input: skipped and counted, never written
// -------------------------------------------------------------------------------------------

#[test]
fn invalid_families_and_series_are_skipped_and_counted() {
    let ok = || series(&[("a", "1")], SeriesValue::Gauge(1.0));
    let families = vec![
        // 0: invalid family names.
        family("bad-name", "x", MetricKind::Gauge, vec![ok()]),
        family("", "x", MetricKind::Gauge, vec![ok()]),
        family(
            "_total",
            "x",
            MetricKind::Counter,
            vec![series(&[], counter(1.0))],
        ),
        family("9lives", "x", MetricKind::Gauge, vec![ok()]),
        // 4: a valid counter...
        family(
            "requests",
            "R.",
            MetricKind::Counter,
            vec![series(&[], counter(1.0))],
        ),
        // 5..: ...and families whose exposed names clash with it.
        family("requests_total", "x", MetricKind::Gauge, vec![ok()]),
        family(
            "requests_total",
            "x",
            MetricKind::Counter,
            vec![series(&[], counter(1.0))],
        ),
        family("requests", "x", MetricKind::Gauge, vec![ok()]),
        family("requests_created", "x", MetricKind::Gauge, vec![ok()]),
        // 9: a histogram whose name is the counter's sample name.
        family("requests_total", "x", MetricKind::Histogram, vec![]),
        // 10: a gauge `lat_bucket`, then a histogram `lat` would expose `lat_bucket` again.
        family("lat_bucket", "x", MetricKind::Gauge, vec![ok()]),
        family("lat", "x", MetricKind::Histogram, vec![]),
        // 12: series-level problems inside a valid family.
        family(
            "things",
            "T.",
            MetricKind::Gauge,
            vec![
                series(&[("__reserved", "x")], SeriesValue::Gauge(1.0)),
                series(&[("bad-label", "x")], SeriesValue::Gauge(1.0)),
                series(&[("", "x")], SeriesValue::Gauge(1.0)),
                series(&[("a", "x"), ("a", "y")], SeriesValue::Gauge(1.0)),
                series(&[("a", "x")], counter(1.0)),
                // `le` and `quantile` are only reserved for histograms and summaries.
                series(&[("le", "x"), ("quantile", "y")], SeriesValue::Gauge(2.0)),
            ],
        ),
        family(
            "events",
            "E.",
            MetricKind::Counter,
            vec![
                series(&[("k", "nan")], counter(f64::NAN)),
                series(&[("k", "neg")], counter(-1.0)),
                series(&[("k", "inf")], counter(INF)),
            ],
        ),
        family(
            "sizes",
            "S.",
            MetricKind::Histogram,
            vec![
                series(&[("le", "1")], histogram(&[(INF, 0)], 0.0)),
                series(&[("k", "empty")], histogram(&[], 0.0)),
                series(&[("k", "no-inf")], histogram(&[(1.0, 0)], 0.0)),
                series(
                    &[("k", "unsorted")],
                    histogram(&[(2.0, 0), (1.0, 0), (INF, 0)], 0.0),
                ),
                series(
                    &[("k", "repeated")],
                    histogram(&[(1.0, 0), (1.0, 0), (INF, 0)], 0.0),
                ),
                series(
                    &[("k", "nan-bound")],
                    histogram(&[(f64::NAN, 0), (INF, 0)], 0.0),
                ),
                series(
                    &[("k", "decreasing")],
                    histogram(&[(1.0, 5), (INF, 4)], 0.0),
                ),
                series(&[("k", "nan-sum")], histogram(&[(INF, 1)], f64::NAN)),
                series(
                    &[("k", "count")],
                    SeriesValue::Histogram {
                        buckets: vec![BucketSnapshot {
                            upper: INF,
                            cumulative: 3,
                            exemplar: None,
                        }],
                        sum: 1.0,
                        count: 4,
                    },
                ),
                series(&[("k", "fine")], histogram(&[(INF, 1)], 1.0)),
            ],
        ),
        family(
            "durations",
            "D.",
            MetricKind::Summary,
            vec![
                series(
                    &[("quantile", "x")],
                    SeriesValue::Summary {
                        quantiles: vec![],
                        sum: 0.0,
                        count: 0,
                    },
                ),
                series(
                    &[("k", "range")],
                    SeriesValue::Summary {
                        quantiles: vec![(1.5, 1.0)],
                        sum: 0.0,
                        count: 0,
                    },
                ),
                series(
                    &[("k", "nan-q")],
                    SeriesValue::Summary {
                        quantiles: vec![(f64::NAN, 1.0)],
                        sum: 0.0,
                        count: 0,
                    },
                ),
                series(
                    &[("k", "twice")],
                    SeriesValue::Summary {
                        quantiles: vec![(0.5, 1.0), (0.5, 2.0)],
                        sum: 0.0,
                        count: 0,
                    },
                ),
                series(
                    &[("k", "negative")],
                    SeriesValue::Summary {
                        quantiles: vec![(0.5, -1.0)],
                        sum: 0.0,
                        count: 0,
                    },
                ),
                series(
                    &[("k", "nan-sum")],
                    SeriesValue::Summary {
                        quantiles: vec![],
                        sum: f64::NAN,
                        count: 0,
                    },
                ),
            ],
        ),
    ];

    let expected_prometheus = r#"# HELP requests_total R.
# TYPE requests_total counter
requests_total 1.0
# HELP lat_bucket x
# TYPE lat_bucket gauge
lat_bucket{a="1"} 1.0
# HELP things T.
# TYPE things gauge
things{le="x",quantile="y"} 2.0
# HELP events_total E.
# TYPE events_total counter
events_total{k="inf"} +Inf
# HELP sizes S.
# TYPE sizes histogram
sizes_bucket{k="fine",le="+Inf"} 1.0
sizes_count{k="fine"} 1.0
sizes_sum{k="fine"} 1.0
# HELP durations D.
# TYPE durations summary
"#;
    let expected_openmetrics = r#"# TYPE requests counter
# HELP requests R.
requests_total 1.0
# TYPE lat_bucket gauge
# HELP lat_bucket x
lat_bucket{a="1"} 1.0
# TYPE things gauge
# HELP things T.
things{le="x",quantile="y"} 2.0
# TYPE events counter
# HELP events E.
events_total{k="inf"} +Inf
# TYPE sizes histogram
# HELP sizes S.
sizes_bucket{k="fine",le="+Inf"} 1
sizes_count{k="fine"} 1
sizes_sum{k="fine"} 1.0
# TYPE durations summary
# HELP durations D.
# EOF
"#;
    let first_skip = Some(Skip {
        family: 0,
        series: None,
        reason: SkipReason::InvalidMetricName,
    });
    for (text, stats, expected) in [
        {
            let (text, stats) = prometheus(&families);
            (text, stats, expected_prometheus)
        },
        {
            let (text, stats) = openmetrics(&families);
            (text, stats, expected_openmetrics)
        },
    ] {
        assert_eq!(text, expected);
        assert_eq!(
            stats,
            RenderStats {
                families: 6,
                series: 5,
                skipped_families: 10,
                skipped_series: 5 + 2 + 9 + 6,
                dropped_exemplars: 0,
                first_skip,
            }
        );
    }
}

#[test]
fn skip_reasons_name_the_problem() {
    let reason_of = |family: FamilySnapshot| {
        let (_, stats) = prometheus(&[family]);
        stats.first_skip.map(|s| s.reason)
    };
    let gauge = |pairs: &[(&str, &str)]| {
        family(
            "g",
            "",
            MetricKind::Gauge,
            vec![series(pairs, SeriesValue::Gauge(1.0))],
        )
    };
    assert_eq!(
        reason_of(gauge(&[("__x", "")])),
        Some(SkipReason::InvalidLabelName)
    );
    assert_eq!(
        reason_of(gauge(&[("x", ""), ("x", "")])),
        Some(SkipReason::DuplicateLabelName)
    );
    assert_eq!(
        reason_of(family(
            "h",
            "",
            MetricKind::Histogram,
            vec![series(&[("le", "")], histogram(&[(INF, 0)], 0.0))]
        )),
        Some(SkipReason::ReservedLabelName)
    );
    assert_eq!(
        reason_of(family(
            "h",
            "",
            MetricKind::Histogram,
            vec![series(&[], SeriesValue::Gauge(1.0))]
        )),
        Some(SkipReason::KindMismatch)
    );
    assert_eq!(
        reason_of(family(
            "h",
            "",
            MetricKind::Histogram,
            vec![series(&[], histogram(&[(1.0, 0)], 0.0))]
        )),
        Some(SkipReason::InvalidBuckets)
    );
    assert_eq!(
        reason_of(family(
            "c",
            "",
            MetricKind::Counter,
            vec![series(&[], counter(-0.5))]
        )),
        Some(SkipReason::InvalidCounterTotal)
    );
    // The same label set twice in a family (in another order): the first one is written.
    let twice = family(
        "g",
        "",
        MetricKind::Gauge,
        vec![
            series(&[("a", "1"), ("b", "2")], SeriesValue::Gauge(1.0)),
            series(&[("a", "2"), ("b", "1")], SeriesValue::Gauge(2.0)),
            series(&[("b", "2"), ("a", "1")], SeriesValue::Gauge(3.0)),
        ],
    );
    let (text, stats) = prometheus(std::slice::from_ref(&twice));
    assert_eq!(
        text,
        "# HELP g \n# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1.0\ng{a=\"2\",b=\"1\"} 2.0\n"
    );
    assert_eq!(
        stats.first_skip,
        Some(Skip {
            family: 0,
            series: Some(2),
            reason: SkipReason::DuplicateSeries
        })
    );
    assert_eq!(openmetrics(&[twice]).1.skipped_series, 1);

    let skip = prometheus(&[gauge(&[]), gauge(&[])]).1.first_skip.unwrap();
    assert_eq!(skip.reason, SkipReason::NameClash);
    assert_eq!(
        skip.to_string(),
        "family #1: metric name clashes with an earlier family"
    );
}

#[test]
fn invalid_exemplars_are_dropped_and_counted() {
    let bucket = |upper: f64, cumulative: u64, exemplar: Option<ExemplarSnapshot>| BucketSnapshot {
        upper,
        cumulative,
        exemplar,
    };
    let mut long = exemplar(1.0, None);
    long.trace_id = "f".repeat(120);
    let mut empty = exemplar(1.0, None);
    empty.span_id.clear();
    let families = vec![
        family(
            "h",
            "",
            MetricKind::Histogram,
            vec![series(
                &[],
                SeriesValue::Histogram {
                    buckets: vec![
                        // Above the bucket's bound.
                        bucket(1.0, 1, Some(exemplar(1.5, None))),
                        // At or below the previous bound.
                        bucket(2.0, 2, Some(exemplar(1.0, None))),
                        // Non-finite timestamp.
                        bucket(3.0, 3, Some(exemplar(2.5, Some(f64::NAN)))),
                        bucket(INF, 4, Some(exemplar(f64::NAN, None))),
                    ],
                    sum: 5.0,
                    count: 4,
                },
            )],
        ),
        family(
            "c",
            "",
            MetricKind::Counter,
            vec![
                series(
                    &[("k", "long")],
                    SeriesValue::Counter {
                        total: 1.0,
                        exemplar: Some(long),
                    },
                ),
                series(
                    &[("k", "empty")],
                    SeriesValue::Counter {
                        total: 1.0,
                        exemplar: Some(empty),
                    },
                ),
            ],
        ),
    ];
    let (text, stats) = openmetrics(&families);
    assert_eq!(stats.dropped_exemplars, 6, "{text}");
    assert_eq!(stats.series, 3);
    assert!(!text.contains(" # {"), "{text}");
    // The Prometheus text format has no exemplars, so nothing is dropped there.
    assert!(prometheus(&families).1.is_clean());
}

#[test]
fn name_validation() {
    for name in [
        "a",
        "_",
        ":",
        "a_b:c9",
        "A",
        "http_requests_total",
        "__meta",
    ] {
        assert!(is_valid_metric_name(name), "{name}");
    }
    for name in ["", "9a", "a-b", "a b", "a.b", "é", "a\n"] {
        assert!(!is_valid_metric_name(name), "{name:?}");
    }
    for name in ["a", "_", "_a", "le", "quantile", "a_B9"] {
        assert!(is_valid_label_name(name), "{name}");
    }
    for name in ["", "__", "__name__", "9", "a:b", "a-b", "é"] {
        assert!(!is_valid_label_name(name), "{name:?}");
    }
}

// -------------------------------------------------------------------------------------------
// A strict line grammar for both formats, used by the property tests and the promtool test
// -------------------------------------------------------------------------------------------

/// Label pairs as parsed, in written order.
type Labels = Vec<(String, String)>;

/// A parsed exemplar: labels, value text, timestamp text.
type ParsedExemplar = (Labels, String, Option<String>);

#[derive(Debug, Clone, PartialEq)]
struct ParsedSample {
    name: String,
    labels: Vec<(String, String)>,
    value: String,
    exemplar: Option<ParsedExemplar>,
}

/// The OpenMetrics `realnumber`, or (case-insensitively) `[+-]inf`, `[+-]infinity`, `nan`.
fn is_number(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.strip_prefix(['+', '-']).unwrap_or(&lower);
    if unsigned == "inf" || unsigned == "infinity" || lower == "nan" {
        return true;
    }
    is_real_number(s)
}

fn is_real_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty()),
        None => !mantissa.is_empty() && digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Reads a metric name at the start of `s`, returning it and the rest.
fn take_metric_name(s: &str) -> Result<(&str, &str), String> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    let name = &s[..end];
    if !is_valid_metric_name(name) {
        return Err(format!("bad metric name in {s:?}"));
    }
    Ok((name, &s[end..]))
}

/// How a string is escaped where it appears.
#[derive(Clone, Copy, PartialEq)]
enum Escaping {
    /// A label value: `\\`, `\n`, `\"`; ends at an unescaped `"`.
    LabelValue,
    /// An OpenMetrics help text: `\\`, `\n`, `\"`; no raw `"`; runs to the end of the line.
    OpenMetricsHelp,
    /// A Prometheus text help: `\\` and `\n` only; `"` is written raw.
    PrometheusHelp,
}

/// Unescapes `s` per `escaping`, returning the value and what follows it.
fn unescape(s: &str, escaping: Escaping) -> Result<(String, &str), String> {
    let quote_escapes = escaping != Escaping::PrometheusHelp;
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' if escaping == Escaping::LabelValue => return Ok((value, &s[i + 1..])),
            '"' if escaping == Escaping::OpenMetricsHelp => return Err("raw quote in help".into()),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, '"')) if quote_escapes => value.push('"'),
                other => return Err(format!("bad escape {other:?} in {s:?}")),
            },
            '\n' => return Err("raw line feed".into()),
            c => value.push(c),
        }
    }
    if escaping == Escaping::LabelValue {
        Err(format!("unterminated string in {s:?}"))
    } else {
        Ok((value, ""))
    }
}

/// Reads `{name="value",...}` at the start of `s`.
fn take_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('}') {
        return Ok((labels, after));
    }
    loop {
        let end = rest.find('=').ok_or("expected =")?;
        let name = &rest[..end];
        if !is_valid_label_name(name) && name != "quantile" && name != "le" {
            return Err(format!("bad label name {name:?}"));
        }
        let value_start = rest[end + 1..].strip_prefix('"').ok_or("expected \"")?;
        let (value, after) = unescape(value_start, Escaping::LabelValue)?;
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        labels.push((name.to_string(), value));
        if let Some(after) = after.strip_prefix(',') {
            rest = after;
        } else if let Some(after) = after.strip_prefix('}') {
            return Ok((labels, after));
        } else {
            return Err(format!("expected , or }} at {after:?}"));
        }
    }
}

fn parse_sample_line(line: &str, openmetrics: bool) -> Result<ParsedSample, String> {
    let (name, rest) = take_metric_name(line)?;
    let (labels, rest) = if rest.starts_with('{') {
        take_labels(rest)?
    } else {
        (Vec::new(), rest)
    };
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected a space before the value")?;
    let (value, rest) = match rest.split_once(' ') {
        Some((_, "")) => return Err("trailing space".into()),
        Some(split) => split,
        None => (rest, ""),
    };
    if !is_number(value) {
        return Err(format!("bad value {value:?}"));
    }
    let mut exemplar = None;
    if !rest.is_empty() {
        let ex = rest
            .strip_prefix("# ")
            .filter(|_| openmetrics)
            .ok_or("trailing text")?;
        let (ex_labels, ex_rest) = take_labels(ex)?;
        let ex_rest = ex_rest.strip_prefix(' ').ok_or("expected exemplar value")?;
        let mut parts = ex_rest.split(' ');
        let ex_value = parts.next().unwrap_or("");
        if !is_number(ex_value) {
            return Err(format!("bad exemplar value {ex_value:?}"));
        }
        let ts = parts.next().map(str::to_string);
        if ts.as_deref().is_some_and(|t| !is_real_number(t)) || parts.next().is_some() {
            return Err(format!("bad exemplar timestamp in {ex_rest:?}"));
        }
        let chars: usize = ex_labels
            .iter()
            .map(|(n, v)| n.chars().count() + v.chars().count())
            .sum();
        if chars > 128 {
            return Err("exemplar labels longer than 128 characters".into());
        }
        exemplar = Some((ex_labels, ex_value.to_string(), ts));
    }
    Ok(ParsedSample {
        name: name.to_string(),
        labels,
        value: value.to_string(),
        exemplar,
    })
}

/// Sample-name suffixes allowed in a family of each type.
fn allowed_suffixes(type_name: &str, openmetrics: bool) -> &'static [&'static str] {
    match (type_name, openmetrics) {
        ("counter", true) => &["_total", "_created"],
        ("counter", false) | ("gauge", _) => &[""],
        ("histogram", _) => &["_bucket", "_count", "_sum", "_created"],
        ("summary", _) => &["", "_count", "_sum", "_created"],
        _ => &[],
    }
}

/// Checks every line of an exposition against the format's grammar and the family structure
/// (metadata before samples, each once, samples named after their family, OpenMetrics' EOF)
/// and returns the samples.
fn check_exposition(text: &str, openmetrics: bool) -> Result<Vec<ParsedSample>, String> {
    let body = if openmetrics {
        text.strip_suffix("# EOF\n").ok_or("no final # EOF")?
    } else {
        text
    };
    if !body.is_empty() && !body.ends_with('\n') {
        return Err("does not end with a line feed".into());
    }
    let mut samples = Vec::new();
    let mut seen_families = std::collections::HashSet::new();
    // Sample name -> the family it was written in; and every (name, labels) written.
    let mut sample_family = std::collections::HashMap::new();
    let mut seen_series = std::collections::HashSet::new();
    // (family name, type, metadata seen, any sample yet)
    let mut current: Option<(String, String, Vec<&str>, bool)> = None;
    for (n, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(meta) = line.strip_prefix("# ") {
            let (keyword, rest) = meta
                .split_once(' ')
                .ok_or_else(|| at("bad comment".into()))?;
            let (name, rest) = take_metric_name(rest).map_err(at)?;
            let value = rest
                .strip_prefix(' ')
                .ok_or_else(|| at("expected a space".into()))?;
            let same = current.as_ref().is_some_and(|c| c.0 == name && !c.3);
            if !same {
                if !seen_families.insert(name.to_string()) {
                    return Err(at("family declared twice".into()));
                }
                current = Some((name.to_string(), String::new(), Vec::new(), false));
            }
            let family = current.as_mut().expect("set above");
            if family.2.contains(&keyword) {
                return Err(at(format!("second {keyword} line")));
            }
            match keyword {
                "HELP" => {
                    let escaping = if openmetrics {
                        Escaping::OpenMetricsHelp
                    } else {
                        Escaping::PrometheusHelp
                    };
                    unescape(value, escaping).map_err(at)?;
                }
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary"].contains(&value) {
                        return Err(at("bad type".into()));
                    }
                    family.1 = value.to_string();
                }
                "UNIT" if openmetrics => {
                    if value.is_empty() || !name.ends_with(&format!("_{value}")) {
                        return Err(at("unit is not a suffix of the name".into()));
                    }
                }
                _ => return Err(at(format!("unknown metadata {keyword}"))),
            }
            family.2.push(keyword);
        } else if line.starts_with('#') {
            return Err(at("stray comment".into()));
        } else {
            let sample = parse_sample_line(line, openmetrics).map_err(at)?;
            let family = current
                .as_mut()
                .ok_or_else(|| at("sample before any TYPE".into()))?;
            family.3 = true;
            let suffix = sample
                .name
                .strip_prefix(family.0.as_str())
                .ok_or_else(|| at(format!("sample outside family {}", family.0)))?;
            if !allowed_suffixes(&family.1, openmetrics).contains(&suffix) {
                return Err(at(format!(
                    "suffix {suffix:?} not allowed in a {}",
                    family.1
                )));
            }
            let needs = match (family.1.as_str(), suffix) {
                ("histogram", "_bucket") => Some("le"),
                ("summary", "") => Some("quantile"),
                _ => None,
            };
            if let Some(label) = needs {
                if !sample.labels.iter().any(|(n, _)| n == label) {
                    return Err(at(format!("missing {label}")));
                }
            }
            if sample.exemplar.is_some()
                && !matches!(
                    (family.1.as_str(), suffix),
                    ("counter", "_total") | ("histogram", "_bucket")
                )
            {
                return Err(at("exemplar on a sample that cannot have one".into()));
            }
            if openmetrics
                && matches!(suffix, "_bucket" | "_count")
                && !sample.value.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(at("counts must be integers".into()));
            }
            if sample_family
                .insert(sample.name.clone(), family.0.clone())
                .is_some_and(|f| f != family.0)
            {
                return Err(at("sample name already used by another family".into()));
            }
            if seen_families.contains(&sample.name) && sample.name != family.0 {
                return Err(at("sample name is another family's name".into()));
            }
            let mut key = sample.labels.clone();
            key.sort();
            if !seen_series.insert((sample.name.clone(), key)) {
                return Err(at("sample written twice".into()));
            }
            samples.push(sample);
        }
    }
    Ok(samples)
}

#[test]
fn grammar_checker_rejects_what_it_should() {
    let bad_om = [
        "# TYPE a gauge\na 1\n",
        "# TYPE a gauge\na{b=\"\\q\"} 1\n# EOF\n",
        "# TYPE a gauge\na{b=\"x\"} 1 \n# EOF\n",
        "# TYPE a gauge\na 1 # {t=\"x\"} 1\n# EOF\n",
        "# TYPE a gauge\n# UNIT a seconds\n# EOF\n",
        "# TYPE a gauge\n# TYPE a gauge\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1.0\n# EOF\n",
        "# TYPE a gauge\na_total 1\n# EOF\n",
        "# TYPE a gauge\na 1e\n# EOF\n",
        "# TYPE a gauge\n# HELP a say \"hi\"\n# EOF\n",
    ];
    for text in bad_om {
        assert!(check_exposition(text, true).is_err(), "accepted {text:?}");
    }
    let good_om = "# TYPE a counter\n# HELP a x\\\"y\na_total{b=\"\\\\\\n\\\"\"} 1.5e-07 # {t=\"x\"} 1 2.5\n# EOF\n";
    check_exposition(good_om, true).unwrap();
    let bad_text = [
        "# HELP a x\\\"y\n# TYPE a gauge\n",
        "# TYPE a_total counter\na 1\n",
        "a 1\n",
        "# TYPE a gauge\na 1 # {t=\"x\"} 1\n",
    ];
    for text in bad_text {
        assert!(check_exposition(text, false).is_err(), "accepted {text:?}");
    }
}

#[test]
fn known_cases_pass_the_grammar() {
    for case in known_cases() {
        check_exposition(case.prometheus, false).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        check_exposition(case.openmetrics, true).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
}

// -------------------------------------------------------------------------------------------
// Property: any snapshot with valid names renders to grammatical text that round-trips
// -------------------------------------------------------------------------------------------

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,6}".prop_filter("reserved", |n| n != "le" && n != "quantile")
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/ ]{0,8}",
        any::<String>(),
        "[\\\\\"\n]{0,4}[a-z]{0,2}[\\\\\"\n]{0,4}",
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        -1e7..1e7f64,
        (0u32..2000).prop_map(|n| f64::from(n) / 1000.0),
        Just(f64::NAN),
        Just(INF),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
    ]
}

fn non_negative() -> impl Strategy<Value = f64> {
    float().prop_map(|f| if f.is_nan() { 0.0 } else { f.abs() })
}

fn hex(len: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9a-f]{{{len}}}")).expect("valid regex")
}

fn maybe_exemplar(range: (f64, f64)) -> impl Strategy<Value = Option<ExemplarSnapshot>> {
    let (lower, upper) = range;
    proptest::option::of(
        (
            hex(32),
            hex(16),
            0.0..1.0f64,
            proptest::option::of(0.0..2e9f64),
        )
            .prop_map(move |(trace_id, span_id, t, unix_secs)| {
                // A value inside (lower, upper].
                let value = if upper.is_finite() {
                    if lower.is_finite() {
                        lower + (upper - lower) * (1.0 - t)
                    } else {
                        upper - t * 10.0
                    }
                } else {
                    lower.max(0.0) + 1.0 + t
                };
                ExemplarSnapshot {
                    trace_id,
                    span_id,
                    value,
                    unix_secs,
                }
            }),
    )
    .prop_filter("exemplar inside its bucket", move |e| {
        e.as_ref()
            .is_none_or(|e| e.value > lower && e.value <= upper)
    })
}

fn value_for(kind: MetricKind) -> BoxedStrategy<SeriesValue> {
    match kind {
        MetricKind::Counter => (non_negative(), maybe_exemplar((f64::NEG_INFINITY, INF)))
            .prop_map(|(total, exemplar)| SeriesValue::Counter { total, exemplar })
            .boxed(),
        MetricKind::Gauge => float().prop_map(SeriesValue::Gauge).boxed(),
        MetricKind::Histogram => (
            proptest::collection::vec(-1e6..1e6f64, 0..6),
            proptest::collection::vec(0u64..1000, 7),
            float().prop_filter("sum is not NaN", |f| !f.is_nan()),
        )
            .prop_flat_map(|(mut bounds, increments, sum)| {
                bounds.sort_by(f64::total_cmp);
                bounds.dedup();
                bounds.push(INF);
                let ranges: Vec<(f64, f64)> = bounds
                    .iter()
                    .enumerate()
                    .map(|(i, &u)| {
                        (
                            if i == 0 {
                                f64::NEG_INFINITY
                            } else {
                                bounds[i - 1]
                            },
                            u,
                        )
                    })
                    .collect();
                let exemplars: Vec<_> = ranges.iter().map(|&r| maybe_exemplar(r)).collect();
                (Just(bounds), Just(increments), Just(sum), exemplars)
            })
            .prop_map(|(bounds, increments, sum, exemplars)| {
                let mut cumulative = 0;
                let buckets: Vec<BucketSnapshot> = bounds
                    .iter()
                    .zip(exemplars)
                    .enumerate()
                    .map(|(i, (&upper, exemplar))| {
                        cumulative += increments[i];
                        BucketSnapshot {
                            upper,
                            cumulative,
                            exemplar,
                        }
                    })
                    .collect();
                SeriesValue::Histogram {
                    buckets,
                    sum,
                    count: cumulative,
                }
            })
            .boxed(),
        MetricKind::Summary => (
            proptest::collection::btree_map(0u32..=1000, non_negative(), 0..4),
            float().prop_filter("sum is not NaN", |f| !f.is_nan()),
            any::<u64>(),
        )
            .prop_map(|(quantiles, sum, count)| SeriesValue::Summary {
                quantiles: quantiles
                    .into_iter()
                    .map(|(q, v)| (f64::from(q) / 1000.0, v))
                    .collect(),
                sum,
                count,
            })
            .boxed(),
    }
}

fn series_for(kind: MetricKind) -> impl Strategy<Value = SeriesSnapshot> {
    (
        proptest::collection::btree_map(label_name(), label_value(), 0..4),
        value_for(kind),
        proptest::option::of(prop_oneof![0.0..2e9f64, float()]),
    )
        .prop_map(|(labels, value, created_unix_secs)| SeriesSnapshot {
            labels: labels.into_iter().rev().collect(),
            value,
            created_unix_secs,
        })
}

fn kind() -> impl Strategy<Value = MetricKind> {
    prop_oneof![
        Just(MetricKind::Counter),
        Just(MetricKind::Gauge),
        Just(MetricKind::Histogram),
        Just(MetricKind::Summary),
    ]
}

fn family_strategy(index: usize) -> impl Strategy<Value = FamilySnapshot> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
        any::<String>(),
        prop_oneof![Just(String::new()), "[a-z]{1,6}"],
        kind(),
        any::<bool>(),
    )
        .prop_flat_map(move |(stem, help, unit, kind, unit_suffix)| {
            // Distinct prefixes per family keep generated names from clashing.
            let mut name = format!("f{index}_{stem}");
            if unit_suffix && !unit.is_empty() {
                name = format!("{name}_{unit}");
            }
            // Series with distinct label sets.
            proptest::collection::vec(series_for(kind), 0..4).prop_map(move |mut series| {
                let mut seen = std::collections::HashSet::new();
                series.retain(|s| {
                    let mut key = s.labels.clone();
                    key.sort();
                    seen.insert(key)
                });
                FamilySnapshot {
                    name: name.clone(),
                    help: help.clone(),
                    unit: unit.clone(),
                    kind,
                    series,
                }
            })
        })
}

/// Mostly names that clash with one another through the sample suffixes, some arbitrary.
fn clash_prone_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "a", "a_total", "a_created", "a_bucket", "a_count", "a_sum", "a_total_total",
            "a_sum_count", "b", "b_total", "_total", "",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// Label names, valid, reserved, duplicated or arbitrary.
fn clash_prone_label() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "le", "quantile", "__x", "9", ""])
            .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn families_strategy() -> impl Strategy<Value = Vec<FamilySnapshot>> {
    (0usize..5).prop_flat_map(|n| (0..n).map(family_strategy).collect::<Vec<_>>())
}

fn same_float(text: &str, expected: f64) -> bool {
    let parsed = match text {
        "+Inf" => INF,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        t => t.parse().unwrap_or(f64::NAN),
    };
    parsed.to_bits() == expected.to_bits() || (parsed.is_nan() && expected.is_nan())
}

fn sorted(mut labels: Vec<(String, String)>) -> Vec<(String, String)> {
    labels.sort();
    labels
}

/// The sample of `family` for `series`' labels with `suffix` (and `extra` label, if any).
fn find<'a>(
    samples: &'a [ParsedSample],
    name: &str,
    series: &SeriesSnapshot,
    extra: Option<(&str, String)>,
) -> Option<&'a ParsedSample> {
    let mut want = series.labels.clone();
    want.extend(extra.map(|(k, v)| (k.to_string(), v)));
    let want = sorted(want);
    samples.iter().find(|s| s.name == name && s.labels == want)
}

fn canonical(v: f64) -> String {
    let mut s = String::new();
    shmtel_collector::exposition::format::write_go_float(&mut s, v);
    s
}

fn check_round_trip(families: &[FamilySnapshot], samples: &[ParsedSample], openmetrics: bool) {
    for family in families {
        let base = match family.kind {
            MetricKind::Counter => family.name.strip_suffix("_total").unwrap_or(&family.name),
            _ => family.name.as_str(),
        };
        for series in &family.series {
            // Labels are emitted sorted by name; the sample's labels equal the series' plus the
            // reserved one.
            let first = samples
                .iter()
                .position(|s| {
                    s.name.starts_with(base)
                        && s.labels
                            .iter()
                            .filter(|(n, _)| n != "le" && n != "quantile")
                            .cloned()
                            .collect::<Vec<_>>()
                            == sorted(series.labels.clone())
                })
                .unwrap_or_else(|| panic!("no sample for {base} {:?}", series.labels));
            let names: Vec<&str> = samples[first]
                .labels
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            let mut by_name = names.clone();
            by_name.sort();
            assert_eq!(names, by_name, "labels not sorted");
            match &series.value {
                SeriesValue::Counter { total, .. } => {
                    let s = find(samples, &format!("{base}_total"), series, None).expect("total");
                    assert!(same_float(&s.value, *total), "{} vs {total}", s.value);
                }
                SeriesValue::Gauge(v) => {
                    let s = find(samples, base, series, None).expect("gauge");
                    assert!(same_float(&s.value, *v), "{} vs {v}", s.value);
                }
                SeriesValue::Histogram { buckets, .. } => {
                    for b in buckets {
                        let s = find(
                            samples,
                            &format!("{base}_bucket"),
                            series,
                            Some(("le", canonical(b.upper))),
                        )
                        .expect("bucket");
                        assert!(same_float(&s.value, b.cumulative as f64));
                        assert_eq!(s.exemplar.is_some(), openmetrics && b.exemplar.is_some());
                    }
                }
                SeriesValue::Summary {
                    quantiles, count, ..
                } => {
                    for &(q, v) in quantiles {
                        let s = find(samples, base, series, Some(("quantile", canonical(q))))
                            .expect("quantile");
                        assert!(same_float(&s.value, v));
                    }
                    let s = find(samples, &format!("{base}_count"), series, None).expect("count");
                    assert!(same_float(&s.value, *count as f64));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/regressions/exposition.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn valid_snapshots_render_grammatical_round_tripping_text(families in families_strategy()) {
        let total_series: usize = families.iter().map(|f| f.series.len()).sum();
        for openmetrics in [false, true] {
            let (text, stats) = if openmetrics { self::openmetrics(&families) } else { prometheus(&families) };
            prop_assert!(stats.is_clean(), "{:?}", stats);
            prop_assert_eq!(stats.families, families.len());
            prop_assert_eq!(stats.series, total_series);
            let samples = check_exposition(&text, openmetrics)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            check_round_trip(&families, &samples, openmetrics);
        }
    }

    #[test]
    fn any_snapshot_renders_grammatical_text(
        families in proptest::collection::vec(
            (clash_prone_name(), any::<String>(), any::<String>(), kind(),
             proptest::collection::vec(
                (proptest::collection::vec((clash_prone_label(), any::<String>()), 0..3),
                 prop_oneof![value_for(MetricKind::Counter), value_for(MetricKind::Gauge),
                             value_for(MetricKind::Histogram), value_for(MetricKind::Summary)],
                 proptest::option::of(float())),
                0..3)),
            0..6)
    ) {
        // Arbitrary or clashing names, labels, kinds and values: whatever is skipped, what is
        // written is valid.
        let families: Vec<FamilySnapshot> = families
            .into_iter()
            .map(|(name, help, unit, kind, series)| FamilySnapshot {
                name, help, unit, kind,
                series: series.into_iter().map(|(labels, value, created_unix_secs)| SeriesSnapshot {
                    labels, value, created_unix_secs,
                }).collect(),
            })
            .collect();
        for openmetrics in [false, true] {
            let (text, _) = if openmetrics { self::openmetrics(&families) } else { prometheus(&families) };
            check_exposition(&text, openmetrics).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        }
    }
}

// -------------------------------------------------------------------------------------------
// Performance budget
// -------------------------------------------------------------------------------------------

/// 10,000 series over 100 families of every kind, with labels needing no escaping.
fn ten_thousand_series() -> Vec<FamilySnapshot> {
    (0..100)
        .map(|f| {
            let kind = [
                MetricKind::Counter,
                MetricKind::Gauge,
                MetricKind::Histogram,
                MetricKind::Summary,
            ][f % 4];
            let series = (0..100)
                .map(|s| {
                    let value = match kind {
                        MetricKind::Counter => counter(s as f64 * 3.5),
                        MetricKind::Gauge => SeriesValue::Gauge(s as f64 / 7.0),
                        MetricKind::Histogram => histogram(
                            &[(0.005, 1), (0.01, 2), (0.1, 3), (1.0, 3 + s), (INF, 4 + s)],
                            s as f64 * 0.25,
                        ),
                        MetricKind::Summary => SeriesValue::Summary {
                            quantiles: vec![(0.5, 0.1), (0.9, 0.2), (0.99, 0.3)],
                            sum: 12.5,
                            count: s,
                        },
                    };
                    let s = s.to_string();
                    created(
                        series(
                            &[
                                ("method", "GET"),
                                ("route", "/api/v1/items"),
                                ("instance", &s),
                            ],
                            value,
                        ),
                        1.7e9,
                    )
                })
                .collect();
            family(&format!("family_{f}"), "Some help text.", kind, series)
        })
        .collect()
}

/// Speed is measured in `benches/` (collector render), never asserted here: this checks that a
/// large exposition renders every series.
#[test]
fn ten_thousand_series_render_completely() {
    let families = ten_thousand_series();
    for format in [
        ExpositionFormat::PrometheusText,
        ExpositionFormat::OpenMetrics,
    ] {
        let mut out = String::new();
        let stats = format.render(&families, &mut out);
        assert_eq!(stats.series, 10_000);
        assert!(stats.is_clean(), "{format:?}: {stats:?}");
    }
}

// -------------------------------------------------------------------------------------------
// promtool
// -------------------------------------------------------------------------------------------

/// Families following Prometheus naming conventions, so promtool's linter has nothing to say.
fn lint_clean_families() -> Vec<FamilySnapshot> {
    let mut families: Vec<FamilySnapshot> = known_cases()
        .into_iter()
        .flat_map(|case| case.families)
        .filter(|f| !f.help.is_empty())
        .collect();
    // promtool wants counters to be called `*_total` in the text format; all of ours are.
    families.retain(|f| f.name != "offset");
    families
}

fn promtool_required() -> bool {
    std::env::var_os("SHMTEL_REQUIRE_PROMTOOL").is_some_and(|v| v == "1")
}

/// Runs `promtool` with `args`, feeding `stdin`; returns (success, combined output).
fn run_promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("SHMTEL_REQUIRE_PROMTOOL=1 but promtool cannot be run ({e}); run `make test` (or `make deps`), which installs it")
        });
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Gives every sample line a timestamp (after the value, before any exemplar): promtool's
/// OpenMetrics importer, the only strict OpenMetrics parser it has, insists on them.
fn with_timestamps(openmetrics: &str) -> String {
    let mut out = String::new();
    for line in openmetrics.lines() {
        if line.starts_with('#') {
            out.push_str(line);
        } else {
            let (sample, exemplar) = match line.find(" # {") {
                Some(i) => line.split_at(i),
                None => (line, ""),
            };
            out.push_str(sample);
            out.push_str(" 1700000000");
            out.push_str(exemplar);
        }
        out.push('\n');
    }
    out
}

#[test]
fn promtool_accepts_both_formats() {
    if !promtool_required() {
        eprintln!(
            "promtool checks did not run: set SHMTEL_REQUIRE_PROMTOOL=1 to run them \
             (`make test` sets it and installs promtool)"
        );
        return;
    }
    let families = lint_clean_families();

    // Prometheus text: `promtool check metrics` parses and lints it.
    let (text, stats) = prometheus(&families);
    assert!(stats.is_clean());
    let (ok, output) = run_promtool(&["check", "metrics"], &text);
    assert!(
        ok,
        "promtool check metrics rejected the Prometheus text:\n{output}\n{text}"
    );

    // OpenMetrics: `promtool check metrics` only knows the Prometheus text format (it chokes
    // on exemplars), so the exposition goes through promtool's strict OpenMetrics parser, the
    // backfill importer, into a scratch TSDB.
    let (text, stats) = openmetrics(&families);
    assert!(stats.is_clean());
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("exposition.om");
    std::fs::write(&input, with_timestamps(&text)).expect("write exposition");
    let blocks = dir.path().join("blocks");
    let (ok, output) = run_promtool(
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().expect("utf-8 path"),
            blocks.to_str().expect("utf-8 path"),
        ],
        "",
    );
    assert!(
        ok,
        "promtool's OpenMetrics parser rejected the exposition:\n{output}\n{text}"
    );

    // The importer does reject bad OpenMetrics (so the check above means something).
    let broken = text.replace("# EOF\n", "");
    std::fs::write(&input, with_timestamps(&broken)).expect("write exposition");
    let blocks = dir.path().join("blocks-broken");
    let (ok, output) = run_promtool(
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().unwrap(),
            blocks.to_str().unwrap(),
        ],
        "",
    );
    assert!(!ok, "promtool accepted an exposition without # EOF");
    assert!(output.contains("EOF"), "{output}");

    // Random valid snapshots pass promtool's parsers too (not its linter: random names and
    // help texts break naming conventions, so only parse errors count here).
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(20));
    for _ in 0..20 {
        let families = families_strategy()
            .new_tree(&mut runner)
            .expect("strategy")
            .current();
        let (text, _) = prometheus(&families);
        let (_, output) = run_promtool(&["check", "metrics"], &text);
        assert!(
            !output.contains("error while linting"),
            "promtool could not parse:\n{output}\n{text}"
        );
        let (text, _) = openmetrics(&families);
        std::fs::write(&input, with_timestamps(&text)).expect("write exposition");
        let blocks = dir.path().join(format!("blocks-{}", rand_suffix()));
        let (ok, output) = run_promtool(
            &[
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                input.to_str().unwrap(),
                blocks.to_str().unwrap(),
            ],
            "",
        );
        assert!(
            ok,
            "promtool's OpenMetrics parser rejected:\n{output}\n{text}"
        );
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Relaxed: a unique counter, nothing else is published through it.
    NEXT.fetch_add(1, Ordering::Relaxed)
}
