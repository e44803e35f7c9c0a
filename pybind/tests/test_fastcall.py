"""The raw METH_FASTCALL entry points (`fastcall.rs`) behave exactly like the pyo3 methods.

`labels`, `inc`, `dec`, `set` and `observe` answer common calls directly and hand every other
call to the pyo3 method of the same name with a leading underscore; these tests drive both paths
and check they agree, including the errors.
"""

from __future__ import annotations

import inspect
import math

import pytest

from shmtel import _native


def test_numeric_fast_path_takes_exact_float_and_int_and_defaults() -> None:
    c = _native.Counter("fastcall_counter", "d", ["k"])
    ch = c.labels("a")
    ch.inc()
    ch.inc(2)
    ch.inc(0.5)
    assert ch.value == 3.5
    # Subclasses of int (bool) and keywords take the slow path, with the same result.
    ch.inc(True)
    ch.inc(amount=1)
    ch._inc(1.5)  # the slow path itself
    assert ch.value == 7.0


def test_numeric_errors_match_the_slow_path() -> None:
    ch = _native.Counter("fastcall_errors", "d", ["k"]).labels("a")
    with pytest.raises(ValueError, match="non-negative"):
        ch.inc(-1)
    with pytest.raises(ValueError, match="non-negative"):
        ch.inc(-1.0)
    with pytest.raises(TypeError):
        ch.inc("1")
    with pytest.raises(TypeError):
        ch.inc(1, 2)
    with pytest.raises(OverflowError):
        ch.inc(10**400)
    with pytest.raises(TypeError):
        ch.inc(amount=1, other=2)
    assert ch.value == 0.0, "nothing recorded by a failed call"


def test_unlabelled_methods_on_a_labelled_family_raise() -> None:
    c = _native.Counter("fastcall_missing", "d", ["k"])
    g = _native.Gauge("fastcall_missing_gauge", "d", ["k"], multiprocess_mode="livesum")
    h = _native.Histogram("fastcall_missing_hist", "d", ["k"])
    s = _native.Summary("fastcall_missing_summary", "d", ["k"])
    for call in (c.inc, g.inc, g.dec, lambda: g.set(1.0), lambda: h.observe(1.0)):
        with pytest.raises(ValueError, match="missing label values"):
            call()
    with pytest.raises(ValueError, match="missing label values"):
        s.observe(1.0)


def test_gauge_and_histogram_fast_paths() -> None:
    g = _native.Gauge("fastcall_gauge", "d", multiprocess_mode="livesum")
    g.set(5)
    g.inc()
    g.dec(2.5)
    g.inc(amount=0.5)
    assert "fastcall_gauge 4.0" in _native.render_process_metrics()
    gc = _native.Gauge("fastcall_gauge_l", "d", ["k"], multiprocess_mode="livesum").labels("x")
    gc.set(2.0)
    gc.dec()
    gc.inc(3)
    assert gc.value == 4.0
    with pytest.raises(TypeError):
        gc.set()
    h = _native.Histogram("fastcall_hist", "d", buckets=(1.0, 2.0))
    h.observe(0.5)
    h.observe(3)
    h.observe(1.5, exemplar={"trace_id": "x"})  # keyword: slow path
    hc = _native.Histogram("fastcall_hist_l", "d", ["k"], buckets=(1.0,)).labels("x")
    hc.observe(0.25)
    hc.observe(float("nan"))
    assert math.isnan(hc.sum), "NaN joins the sum, as in prometheus_client"
    sc = _native.Summary("fastcall_summary_l", "d", ["k"]).labels("x")
    sc.observe(2)
    sc.observe(4.0)
    assert (sc.count, sc.sum) == (2, 6.0)
    with pytest.raises(TypeError):
        hc.observe()


def test_labels_fast_path_agrees_with_the_slow_path() -> None:
    c = _native.Counter("fastcall_labels", "d", ["method", "route"])
    first = c.labels("GET", "/users")  # a miss: created by the slow path
    assert c.labels("GET", "/users") is first  # a hit: the fast path
    assert c._labels("GET", "/users") is first
    assert c.labels(method="GET", route="/users") is first
    assert c.labels(route="/users", method="GET") is first
    assert c.labels(200, "/users") is c.labels("200", "/users"), "values str()'d"
    with pytest.raises(ValueError, match="Incorrect label count"):
        c.labels("GET")
    with pytest.raises(ValueError, match="Incorrect label count"):
        c.labels()
    with pytest.raises(ValueError, match="Incorrect label names"):
        c.labels("GET", route="/users")
    with pytest.raises(ValueError, match="Incorrect label names"):
        c.labels(method="GET", path="/users")
    # An unhashable value misses the cache and is str()'d like prometheus_client does.
    assert c.labels(["x"], "/users") is c.labels("['x']", "/users")
    bound = _native.Counter("fastcall_labels", "d", ["method", "route"], _labelvalues=("a", "b"))
    with pytest.raises(ValueError, match="can not chain"):
        bound.labels("a", "b")
    unlabelled = _native.Counter("fastcall_unlabelled", "d")
    with pytest.raises(ValueError, match="No label names"):
        unlabelled.labels("x")


def test_entry_points_have_text_signatures() -> None:
    ch = _native.Counter("fastcall_sig", "d", ["k"]).labels("a")
    assert str(inspect.signature(ch.inc)) == "(amount=1.0)"
    c = _native.Counter("fastcall_sig", "d", ["k"])
    assert str(inspect.signature(c.labels)) == "(*labelvalues, **labelkwargs)"
    h = _native.Histogram("fastcall_sig_h", "d")
    # exemplar= is accepted (prometheus_client's signature) and goes to the pyo3 method.
    assert str(inspect.signature(h.observe)) == "(amount, exemplar=None)"
    h.observe(0.5, exemplar={"trace_id": "abc"})
    h.observe(0.5, None)
