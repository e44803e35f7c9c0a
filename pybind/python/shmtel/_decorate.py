"""Turning a context-manager factory into a decorator, for sync and ``async def`` functions.

The native ``Timer``, ``InprogressTracker`` and ``ExceptionCounter`` objects delegate their
``__call__(func)`` here: writing the wrapper in Python keeps ``functools.wraps`` semantics
(name, docstring, ``__wrapped__``, signature for FastAPI's dependency injection) exact.
Each call enters a fresh context from ``factory()``, so one decorated function may run in many
threads and tasks at once. For a coroutine function the wrapper is itself a coroutine function
and the context spans the ``await``: a timer measures the coroutine's run, not its creation
(prometheus_client's decorators get that wrong).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar, cast

P = ParamSpec("P")
R = TypeVar("R")


def wrap(
    func: Callable[P, R], factory: Callable[[], AbstractContextManager[Any]]
) -> Callable[P, R]:
    """Return ``func`` wrapped so that every call runs inside ``with factory():``."""
    if not callable(func):
        raise TypeError(f"expected a function to decorate, got {type(func).__name__}")
    if inspect.iscoroutinefunction(func):
        async_func = cast(Callable[P, Awaitable[Any]], func)

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with factory():
                return await async_func(*args, **kwargs)

        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with factory():
            return func(*args, **kwargs)

    return wrapper
