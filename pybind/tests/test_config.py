"""The configuration dataclasses: defaults as the seed, validation with clear ValueErrors."""

from __future__ import annotations

from typing import Any

import pytest

from shmtel import LoggingConfig, LogLevel, MetricConfig, Observability, TracingConfig
from shmtel._native import DEFAULT_BUCKETS


def test_defaults() -> None:
    m = MetricConfig()
    assert (m.namespace, m.enabled, m.collection_interval, m.batch_size, m.max_cardinality) == (
        "covet",
        True,
        10.0,
        100,
        10000,
    )
    assert tuple(m.default_buckets) == tuple(DEFAULT_BUCKETS)
    t = TracingConfig()
    assert (t.enabled, t.service_name, t.service_version, t.jaeger_endpoint) == (
        True,
        "covet-service",
        "1.0.0",
        None,
    )
    assert (t.sampling_ratio, t.max_span_attributes, t.max_span_events) == (0.1, 32, 32)
    lg = LoggingConfig()
    assert (lg.level, lg.format, lg.include_caller) == (LogLevel.INFO, "json", False)
    assert lg.correlation_fields == ["correlation_id", "trace_id"]
    # the default list is not shared between instances
    lg.correlation_fields.append("span_id")
    assert LoggingConfig().correlation_fields == ["correlation_id", "trace_id"]


def test_log_level_is_an_int_enum() -> None:
    assert [int(level) for level in LogLevel] == [0, 1, 2, 3, 4, 5]
    assert [level.name for level in LogLevel] == [
        "TRACE",
        "DEBUG",
        "INFO",
        "WARN",
        "ERROR",
        "FATAL",
    ]
    assert LogLevel.parse("info") is LogLevel.INFO
    assert LogLevel.parse("WARNING") is LogLevel.WARN
    assert LogLevel.parse("critical") is LogLevel.FATAL
    assert LogLevel.parse(4) is LogLevel.ERROR
    for bad in ("loud", 6, -1, True, 1.5, None):
        with pytest.raises(ValueError, match="invalid log level"):
            LogLevel.parse(bad)  # type: ignore[arg-type]


def test_logging_level_accepts_names() -> None:
    assert LoggingConfig(level="DEBUG").level is LogLevel.DEBUG  # type: ignore[arg-type]
    assert LoggingConfig(level=3).level is LogLevel.WARN  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"namespace": "bad-name"}, "namespace"),
        ({"namespace": 3}, "namespace"),
        ({"enabled": "yes"}, "enabled"),
        ({"collection_interval": 0}, "collection_interval"),
        ({"collection_interval": float("inf")}, "collection_interval"),
        ({"collection_interval": "10"}, "collection_interval"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"max_cardinality": 0}, "max_cardinality"),
        ({"max_cardinality": True}, "max_cardinality"),
        ({"default_buckets": []}, "default_buckets"),
        ({"default_buckets": [1.0, 0.5]}, "strictly increasing"),
        ({"default_buckets": [1.0, 1.0]}, "strictly increasing"),
        ({"default_buckets": ["a"]}, "numbers"),
        ({"default_buckets": "0.1,1"}, "default_buckets"),
        ({"default_buckets": [float("nan")]}, "numbers"),
    ],
)
def test_metric_config_rejects(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MetricConfig(**kwargs)


def test_metric_config_normalises_buckets() -> None:
    assert MetricConfig(default_buckets=[1, 2, 5]).default_buckets == (1.0, 2.0, 5.0)
    assert MetricConfig(namespace="").namespace == ""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"enabled": 1}, "enabled"),
        ({"service_name": ""}, "service_name"),
        ({"service_name": None}, "service_name"),
        ({"service_version": 2}, "service_version"),
        ({"jaeger_endpoint": 5}, "jaeger_endpoint"),
        ({"sampling_ratio": 1.5}, "sampling_ratio"),
        ({"sampling_ratio": -0.1}, "sampling_ratio"),
        ({"sampling_ratio": float("nan")}, "sampling_ratio"),
        ({"sampling_ratio": "0.5"}, "sampling_ratio"),
        ({"max_span_attributes": -1}, "max_span_attributes"),
        ({"max_span_events": "3"}, "max_span_events"),
    ],
)
def test_tracing_config_rejects(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TracingConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"level": "LOUD"}, "invalid log level"),
        ({"format": "xml"}, "format"),
        ({"include_caller": "no"}, "include_caller"),
        ({"correlation_fields": ["user_id"]}, "unknown"),
        ({"correlation_fields": "trace_id"}, "correlation_fields"),
    ],
)
def test_logging_config_rejects(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LoggingConfig(**kwargs)


def test_from_dict() -> None:
    obs = Observability.from_dict(
        {
            "metrics": {"namespace": "my_service"},
            "tracing": {"service_name": "my-service", "sampling_ratio": 0.2},
            "logging": {"level": "INFO"},
        }
    )
    assert obs.metrics_config.namespace == "my_service"
    assert obs.tracing_config.sampling_ratio == 0.2
    assert obs.logging_config.level is LogLevel.INFO
    assert Observability.from_dict(None).metrics_config == MetricConfig()


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"metric": {}}, "unknown observability config sections"),
        ({"metrics": {"namespac": "x"}}, "namespac"),
        ({"tracing": []}, "must be a dict"),
        ({"logging": {"level": "nope"}}, "invalid log level"),
    ],
)
def test_from_dict_rejects(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Observability.from_dict(config)


def test_observability_rejects_wrong_config_types() -> None:
    with pytest.raises(TypeError, match="metrics_config must be a MetricConfig"):
        Observability(metrics_config=TracingConfig())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="logging_config"):
        Observability(logging_config={"level": "INFO"})  # type: ignore[arg-type]
