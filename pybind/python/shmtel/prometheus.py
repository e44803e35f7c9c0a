"""A drop-in for ``prometheus_client``'s instrumentation API, recording into shared memory.

Change ``from prometheus_client import Counter`` to ``from shmtel.prometheus import Counter`` and
nothing else: the constructors take prometheus_client's arguments (name, documentation,
labelnames, namespace, subsystem, unit, registry, buckets, multiprocess_mode, states) and the
metrics have its methods (``labels``, ``inc``, ``dec``, ``set``, ``observe``, ``time``,
``track_inprogress``, ``count_exceptions``, ``set_to_current_time``, ``info``, ``state``).

There is no in-process registry: the collector (``shmtel collect``) is the registry and serves the
merged ``/metrics`` of every worker, so there is no ``start_http_server`` here. ``REGISTRY`` and
``CollectorRegistry`` exist so that code passing ``registry=`` keeps working; metrics are recorded
whatever registry is named. ``REGISTRY.register(collector)`` takes custom collectors: they are
sampled every few seconds into shmtel families (see :class:`CollectorRegistry`).
:func:`generate_latest` renders this process's own view.

``Counter``, ``Gauge``, ``Histogram`` and ``Summary`` are the native classes themselves. ``Info``
and ``Enum`` are built here on a native gauge with multiprocess mode ``mostrecent`` and exposed as
prometheus_client exposes them: ``Info`` as a gauge ``<name>_info`` with value 1 carrying the info
as labels, ``Enum`` as a gauge ``<name>`` with a label ``<name>="<state>"``, 1 for the current
state and 0 for the others.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shmtel import _native
from shmtel._native import DEFAULT_BUCKETS, Counter, Gauge, Histogram, Summary

if TYPE_CHECKING:
    from shmtel._native import GaugeChild

__all__ = [
    "CONTENT_TYPE_LATEST",
    "CONTENT_TYPE_PLAIN_0_0_4",
    "DEFAULT_BUCKETS",
    "REGISTRY",
    "CollectorRegistry",
    "Counter",
    "Enum",
    "Gauge",
    "Histogram",
    "Info",
    "Summary",
    "generate_latest",
]

CONTENT_TYPE_PLAIN_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
# generate_latest() renders text format 0.0.4 (prometheus_client 0.26 moved its own
# CONTENT_TYPE_LATEST to 1.0.0, but the header must describe the bytes we return).
CONTENT_TYPE_LATEST = CONTENT_TYPE_PLAIN_0_0_4

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class CollectorRegistry:
    """Accepted wherever prometheus_client takes a registry; metrics ignore which one.

    Every metric is recorded into the process's shared-memory regions and the collector exposes
    all of them, so a registry selects nothing for shmtel's own metrics. Custom collectors (any
    object with prometheus_client's ``collect()``) are sampled instead of scraped: no scrape
    reaches a worker, so a daemon thread calls ``collect()`` every
    ``$SHMTEL_CUSTOM_COLLECTOR_INTERVAL`` seconds (default 5) and records what it yields (see
    :class:`_CustomCollectors`).
    """

    def __init__(
        self, auto_describe: bool = False, target_info: Mapping[str, str] | None = None
    ) -> None:
        self.auto_describe = auto_describe
        self.target_info = dict(target_info) if target_info is not None else None

    def register(self, collector: object) -> None:
        """Record a custom collector's samples periodically (shmtel's own metrics are recorded
        already and need no registration). TypeError for an object without ``collect()``."""
        if isinstance(collector, (Counter, Gauge, Histogram, Summary, Info, Enum)):
            return
        if not callable(getattr(collector, "collect", None)):
            raise TypeError(f"{collector!r} is not a collector: it has no collect() method")
        _CUSTOM.add(collector)

    def unregister(self, collector: object) -> None:
        """Stop sampling a custom collector (nothing for shmtel's own metrics)."""
        _CUSTOM.remove(collector)

    def __repr__(self) -> str:
        return "<shmtel.prometheus.CollectorRegistry (the shmtel collector is the registry)>"


class _CustomCollectors:
    """Custom collectors, sampled by a daemon thread into shmtel families.

    Per family type: ``counter`` samples (``<name>_total``) become a shmtel counter incremented
    by the growth since the previous sample (a drop is a reset: the new value is added);
    ``gauge``, ``unknown``, ``info`` and ``stateset`` samples become gauges (multiprocess mode
    ``all``: one series per process, labelled ``pid``, like prometheus_client's default);
    ``histogram``, ``summary`` and ``gaugehistogram`` samples become one gauge per sample name
    (``_bucket`` with its ``le`` label, ``_count``, ``_sum``), values unchanged. ``_created``
    samples and exemplars are left out. A ``collect()`` that raises, or a sample whose name is
    already a different metric, is logged once and skipped; the others go on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collectors: list[object] = []
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._families: dict[tuple[str, str, tuple[str, ...]], Any] = {}
        self._warned: set[str] = set()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        interval = os.environ.get("SHMTEL_CUSTOM_COLLECTOR_INTERVAL", "5")
        try:
            self.interval = max(float(interval), 0.05)
        except ValueError:
            raise ValueError(
                f"SHMTEL_CUSTOM_COLLECTOR_INTERVAL must be seconds, got {interval!r}"
            ) from None

    def add(self, collector: object) -> None:
        with self._lock:
            if any(c is collector for c in self._collectors):
                raise ValueError(f"Collector already registered: {collector!r}")
            self._collectors.append(collector)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="shmtel-custom-collectors", daemon=True
                )
                self._thread.start()
        self.sample(collector)

    def remove(self, collector: object) -> None:
        with self._lock:
            self._collectors = [c for c in self._collectors if c is not collector]

    def after_fork_in_child(self) -> None:
        """The sampling thread did not survive the fork: start a new one if needed."""
        self._lock = threading.Lock()
        self._last.clear()
        self._thread = None
        if self._collectors:
            self._thread = threading.Thread(
                target=self._run, name="shmtel-custom-collectors", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            with self._lock:
                collectors = list(self._collectors)
            for c in collectors:
                self.sample(c)

    def sample(self, collector: object) -> None:
        """Call ``collector.collect()`` once and record what it yields."""
        try:
            families = list(collector.collect())  # type: ignore[attr-defined]
        except Exception as e:  # a user's collector: log, keep the others going
            self._warn_once(f"collect:{id(collector)}", f"{collector!r}.collect() failed: {e!r}")
            return
        with self._lock:
            for family in families:
                for s in family.samples:
                    self._record(family, s)

    def _record(self, family: Any, s: Any) -> None:
        name, labels, value = s.name, dict(s.labels), float(s.value)
        if name.endswith("_created"):
            return
        labelnames = tuple(sorted(labels))
        values = tuple(labels[k] for k in labelnames)
        doc = family.documentation
        try:
            if family.type == "counter":
                metric = self._family(Counter, family.name, doc, labelnames)
                key = (name, tuple(zip(labelnames, values, strict=True)))
                last = self._last.get(key, 0.0)
                self._last[key] = value
                delta = value - last if value >= last else value
                if delta > 0:
                    (metric.labels(*values) if values else metric).inc(delta)
            else:
                metric = self._family(Gauge, name, doc, labelnames)
                (metric.labels(*values) if values else metric).set(value)
        except ValueError as e:
            self._warn_once(name, f"custom collector sample {name} skipped: {e}")

    def _family(self, cls: Any, name: str, doc: str, labelnames: tuple[str, ...]) -> Any:
        key = (cls.__name__, name, labelnames)
        metric = self._families.get(key)
        if metric is None:
            metric = cls(name, doc, labelnames)
            self._families[key] = metric
        return metric

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logging.getLogger("shmtel").warning(message)


_CUSTOM = _CustomCollectors()
os.register_at_fork(after_in_child=_CUSTOM.after_fork_in_child)

REGISTRY = CollectorRegistry(auto_describe=True)


def generate_latest(registry: CollectorRegistry | None = REGISTRY) -> bytes:
    """This process's metrics in Prometheus text format 0.0.4 (the collector has the merged view)."""
    return _native.render_process_metrics().encode("utf-8")


def _full_name(kind: str, name: str, namespace: str, subsystem: str, unit: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("Metric name should not be empty")
    if unit:
        raise ValueError(f"Metric name is of a type that cannot have a unit: {name} ({kind})")
    full = "_".join(part for part in (namespace, subsystem, name) if part)
    if not _METRIC_NAME.match(full):
        raise ValueError(f"Invalid metric name: {full}")
    return full


def _label_names(labelnames: Iterable[str]) -> tuple[str, ...]:
    if isinstance(labelnames, str):
        labelnames = (labelnames,)
    names = tuple(labelnames)
    for label in names:
        if not isinstance(label, str) or not _LABEL_NAME.match(label) or label.startswith("__"):
            raise ValueError(f"Invalid label metric name: {label!r}")
    return names


def _label_values(
    labelnames: tuple[str, ...], args: tuple[object, ...], kwargs: Mapping[str, object]
) -> tuple[str, ...]:
    # prometheus_client's rules and messages, so callers catching them keep working.
    if not labelnames:
        raise ValueError("No label names were set when constructing this metric")
    if args and kwargs:
        raise ValueError("Can't pass both *args and **kwargs")
    if kwargs:
        if sorted(kwargs) != sorted(labelnames):
            raise ValueError("Incorrect label names")
        return tuple(str(kwargs[name]) for name in labelnames)
    if len(args) != len(labelnames):
        raise ValueError("Incorrect label count")
    return tuple(str(value) for value in args)


class _InfoFamily:
    """The native gauge behind an Info metric and every labelled child of it."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.lock = threading.Lock()
        self.keys: tuple[str, ...] | None = None
        self.gauge: Gauge | None = None

    def gauge_for(self, keys: tuple[str, ...]) -> Gauge:
        # Called with the lock held. A shm family has fixed label names, so the info keys of the
        # first info() call are the keys for the life of the process.
        if self.gauge is None:
            self.gauge = Gauge(
                f"{self.name}_info",
                self.documentation,
                self.labelnames + keys,
                multiprocess_mode="mostrecent",
            )
            self.keys = keys
        elif keys != self.keys:
            raise ValueError(
                f"Info metric {self.name}: the info keys must stay the same for the life of the "
                f"process (first call used {list(self.keys or ())}, this one {list(keys)})"
            )
        return self.gauge


class Info:
    """Key-value information (build, version) exposed as a gauge ``<name>_info`` of value 1.

    Differences from prometheus_client, both forced by fixed-label shared-memory families: the
    info keys of the first :meth:`info` call must be used by every later call (ValueError
    otherwise), and a replaced value set stays exposed with value 0 until the process exits.
    """

    _type = "info"

    def __init__(
        self,
        name: str,
        documentation: str = "",
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: CollectorRegistry | None = REGISTRY,
        _labelvalues: Sequence[str] | None = None,
        *,
        _family: _InfoFamily | None = None,
    ) -> None:
        if _family is None:
            full = _full_name("info", name, namespace, subsystem, unit)
            _family = _InfoFamily(full, str(documentation), _label_names(labelnames))
        self._family = _family
        self._labelvalues = tuple(str(v) for v in (_labelvalues or ()))
        self._current: GaugeChild | Gauge | None = None
        self._children: dict[tuple[str, ...], Info] = {}
        self._children_lock = threading.Lock()

    @property
    def name(self) -> str:
        """Full name, without the ``_info`` suffix the exposition adds."""
        return self._family.name

    @property
    def documentation(self) -> str:
        return self._family.documentation

    @property
    def labelnames(self) -> tuple[str, ...]:
        return self._family.labelnames

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Info:
        """The child for these label values (created on first use, then cached)."""
        if self._labelvalues:
            raise ValueError(f"{self!r} already has labels set; can not chain calls to .labels()")
        values = _label_values(self._family.labelnames, labelvalues, labelkwargs)
        child = self._children.get(values)
        if child is None:
            with self._children_lock:
                child = self._children.get(values)
                if child is None:
                    child = Info(self._family.name, _labelvalues=values, _family=self._family)
                    self._children[values] = child
        return child

    def info(self, val: Mapping[str, str]) -> None:
        """Set the info: one series with these key-value pairs as labels, value 1."""
        family = self._family
        if family.labelnames and not self._labelvalues:
            raise ValueError(f"info metric is missing label values: {family.name}")
        if not isinstance(val, Mapping):
            raise TypeError(f"Info.info() takes a dict of str to str, got {type(val).__name__}")
        if set(family.labelnames).intersection(val.keys()):
            raise ValueError(
                f"Overlapping labels for Info metric, metric: {family.labelnames} child: {val}"
            )
        if any(v is None for v in val.values()):
            raise ValueError("Label value cannot be None")
        keys = tuple(sorted(str(k) for k in val))
        _label_names(keys)
        values = [str(val[k]) for k in sorted(val, key=str)]
        with family.lock:
            gauge = family.gauge_for(keys)
            child = gauge.labels(*self._labelvalues, *values) if gauge.labelnames else gauge
            previous = self._current
            if previous is not None and previous is not child:
                previous.set(0.0)
            child.set(1.0)
            self._current = child

    def __repr__(self) -> str:
        return f"shmtel.prometheus.Info({self._family.name!r}, labelvalues={self._labelvalues})"


class Enum:
    """Which one of a set of states is current, exposed as prometheus_client's stateset.

    A gauge ``<name>`` with an extra label named like the metric: the current state has value 1,
    every other state 0. The first state is the initial one.
    """

    _type = "stateset"

    def __init__(
        self,
        name: str,
        documentation: str = "",
        labelnames: Iterable[str] = (),
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: CollectorRegistry | None = REGISTRY,
        _labelvalues: Sequence[str] | None = None,
        states: Sequence[str] | None = None,
        *,
        _gauge: Gauge | None = None,
    ) -> None:
        names = _label_names(labelnames)
        if name in names:
            raise ValueError(f"Overlapping labels for Enum metric: {name}")
        if not states:
            raise ValueError(f"No states provided for Enum metric: {name}")
        if isinstance(states, str):
            raise TypeError(f"Enum states must be a sequence of str, not a str: {states!r}")
        self._states = tuple(str(s) for s in states)
        if len(set(self._states)) != len(self._states):
            raise ValueError(f"Duplicate states for Enum metric {name}: {list(self._states)}")
        self._name = _full_name("stateset", name, namespace, subsystem, unit)
        self._labelnames = names
        self._labelvalues = tuple(str(v) for v in (_labelvalues or ()))
        if _gauge is None:
            _gauge = Gauge(
                self._name,
                str(documentation),
                (*names, self._name),
                multiprocess_mode="mostrecent",
            )
        self._gauge = _gauge
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], Enum] = {}
        self._state_children: tuple[GaugeChild, ...] = ()
        if self._labelvalues or not names:
            self._state_children = tuple(_gauge.labels(*self._labelvalues, s) for s in self._states)
            self._set(0)

    @property
    def name(self) -> str:
        return self._name

    @property
    def states(self) -> tuple[str, ...]:
        return self._states

    @property
    def labelnames(self) -> tuple[str, ...]:
        return self._labelnames

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Enum:
        """The child for these label values, starting in the first state."""
        if self._labelvalues:
            raise ValueError(f"{self!r} already has labels set; can not chain calls to .labels()")
        values = _label_values(self._labelnames, labelvalues, labelkwargs)
        child = self._children.get(values)
        if child is None:
            with self._lock:
                child = self._children.get(values)
                if child is None:
                    child = Enum(
                        self._name,
                        labelnames=self._labelnames,
                        _labelvalues=values,
                        states=self._states,
                        _gauge=self._gauge,
                    )
                    self._children[values] = child
        return child

    def state(self, state: str) -> None:
        """Make ``state`` the current one (ValueError if it is not one of the states)."""
        if not self._state_children:
            raise ValueError(f"enum metric is missing label values: {self._name}")
        try:
            index = self._states.index(state)
        except ValueError:
            raise ValueError(
                f"{state!r} is not a state of Enum metric {self._name}: {list(self._states)}"
            ) from None
        self._set(index)

    def _set(self, index: int) -> None:
        with self._lock:
            for i, child in enumerate(self._state_children):
                child.set(1.0 if i == index else 0.0)

    def __repr__(self) -> str:
        return f"shmtel.prometheus.Enum({self._name!r}, labelvalues={self._labelvalues})"
