"""shmtel._decorate.wrap: sync and async wrappers entering a fresh context per call."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shmtel._decorate import wrap


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    @contextmanager
    def context(self) -> Iterator[None]:
        self.events.append("enter")
        try:
            yield
        except BaseException as e:
            self.events.append(f"error {type(e).__name__}")
            raise
        finally:
            self.events.append("exit")


def test_sync_wrapper_keeps_metadata_and_result() -> None:
    rec = Recorder()

    def add(a: int, b: int = 2) -> int:
        """Add."""
        rec.events.append("call")
        return a + b

    wrapped = wrap(add, rec.context)
    assert wrapped(1, b=5) == 6
    assert rec.events == ["enter", "call", "exit"]
    assert wrapped.__name__ == "add"
    assert wrapped.__doc__ == "Add."
    assert wrapped.__wrapped__ is add  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(add)
    assert not inspect.iscoroutinefunction(wrapped)


def test_sync_wrapper_propagates_exceptions() -> None:
    rec = Recorder()

    def fail() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        wrap(fail, rec.context)()
    assert rec.events == ["enter", "error KeyError", "exit"]


def test_async_wrapper_awaits_inside_the_context() -> None:
    rec = Recorder()

    async def work(x: int) -> int:
        rec.events.append("start")
        await asyncio.sleep(0)
        rec.events.append("end")
        return x * 2

    wrapped = wrap(work, rec.context)
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__name__ == "work"
    coro = wrapped(21)
    assert rec.events == []  # nothing happens until the coroutine runs
    assert asyncio.run(coro) == 42
    assert rec.events == ["enter", "start", "end", "exit"]


def test_async_wrapper_propagates_exceptions() -> None:
    rec = Recorder()

    async def fail() -> None:
        await asyncio.sleep(0)
        raise ValueError("v")

    with pytest.raises(ValueError):
        asyncio.run(wrap(fail, rec.context)())
    assert rec.events == ["enter", "error ValueError", "exit"]


def test_each_call_gets_a_fresh_context() -> None:
    entered: list[int] = []

    @contextmanager
    def factory() -> Iterator[None]:
        entered.append(len(entered))
        yield

    f = wrap(lambda: None, factory)
    f()
    f()
    assert entered == [0, 1]


def test_rejects_non_callables() -> None:
    rec = Recorder()
    with pytest.raises(TypeError, match="expected a function"):
        wrap(42, rec.context)  # type: ignore[arg-type]
