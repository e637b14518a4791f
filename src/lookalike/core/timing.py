"""Stage timers: how long each step of a search or an ingest takes.

Service code marks its steps with `timed("search", "embed")`; whoever wants the numbers (the
API's Prometheus metrics) registers a `StageSink`. With no sink registered, `timed` returns one
shared do-nothing object, so the hooks cost a function call and a truth test.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Protocol

log = logging.getLogger(__name__)


class StageSink(Protocol):
    def observe_stage(
        self, operation: str, stage: str, seconds: float, cpu_seconds: float | None = None
    ) -> None:
        """`seconds` of wall time; `cpu_seconds` of the measuring thread's CPU time, when known."""


# A tuple swapped whole under the lock: readers on the hot path never lock.
_sinks: tuple[StageSink, ...] = ()
_sinks_lock = threading.Lock()


def add_stage_sink(sink: StageSink) -> None:
    global _sinks
    with _sinks_lock:
        if sink not in _sinks:
            _sinks = (*_sinks, sink)


def remove_stage_sink(sink: StageSink) -> None:
    global _sinks
    with _sinks_lock:
        _sinks = tuple(s for s in _sinks if s is not sink)


class _NoTimer:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class _Timer:
    __slots__ = ("_cpu_start", "_operation", "_stage", "_start")

    def __init__(self, operation: str, stage: str) -> None:
        self._operation = operation
        self._stage = stage
        self._start = 0.0
        self._cpu_start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()
        self._cpu_start = time.thread_time()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        record_stage(
            self._operation,
            self._stage,
            time.perf_counter() - self._start,
            time.thread_time() - self._cpu_start,
        )


_NO_TIMER = _NoTimer()


def timed(operation: str, stage: str) -> _Timer | _NoTimer:
    """A context manager that reports how long its block took as `operation`/`stage`.

    Failed blocks are reported too: a slow failure is still time spent.
    """
    if not _sinks:
        return _NO_TIMER
    return _Timer(operation, stage)


def record_stage(
    operation: str, stage: str, seconds: float, cpu_seconds: float | None = None
) -> None:
    """Report a duration measured elsewhere (a batch, say) to every sink."""
    for sink in _sinks:
        try:
            sink.observe_stage(operation, stage, seconds, cpu_seconds)
        except Exception:  # metrics must never break the work they measure
            log.exception("stage sink %r failed", sink)
