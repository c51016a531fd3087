"""Helpers shared by the test modules (no implementation code in here)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

JOIN_TIMEOUT = 10.0  # only against hangs: never an assertion on speed


def go_matches(flt: Any, entry: Any) -> bool:
    """Go's ``OpsLogFilter.matches``, transcribed line by line from the Go
    original (``opslog.go``, not in this repository), for checking the
    implementations against."""
    if flt.min_status > 0 and entry.status < flt.min_status:
        return False
    if flt.model != "" and entry.model != flt.model:
        return False
    if flt.account_id > 0 and entry.account_id != flt.account_id:
        return False
    if flt.group_id > 0 and entry.group_id != flt.group_id:
        return False
    if flt.min_latency_ms > 0 and entry.latency_ms < flt.min_latency_ms:
        return False
    return True


class Worker(threading.Thread):
    """A daemon thread that keeps what its function returned or raised."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self._args = args
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn(*self._args)
        except BaseException as exc:  # handed to the test thread by finish()
            self.error = exc


def start(fn: Callable[..., Any], *args: Any) -> Worker:
    worker = Worker(fn, *args)
    worker.start()
    return worker


def finish(worker: Worker, timeout: float = JOIN_TIMEOUT) -> Any:
    """Join ``worker``; fail if it is still running; re-raise its error."""
    worker.join(timeout)
    assert not worker.is_alive(), "worker thread did not finish: a reader was never released"
    if worker.error is not None:
        raise worker.error
    return worker.result


def outcome(worker: Worker, timeout: float = JOIN_TIMEOUT) -> Any:
    """Join ``worker`` and return what it returned, or the exception it raised."""
    worker.join(timeout)
    assert not worker.is_alive(), "worker thread did not finish: a reader was never released"
    return worker.error if worker.error is not None else worker.result
