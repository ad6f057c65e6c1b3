"""Every hub process's numbers, seen from any one of them: ``ssehub serve --workers N``.

Behind ``--workers N`` (or several hubs on one Redis) the kernel hands each connection to one
process, so a number one process knows (its clients, what it published) is only its share.
`Workers` makes every process's share visible from any of them: once a second each process
reports its counters (`WorkerState`) to the shared backend (`Backend.report`: a Redis hash,
the report stamped with Redis' clock) and reads back every live process's report; a process
that stops reporting drops out after `WORKER_TTL` seconds. Readers (``/healthz``,
``/channels``, ``/metrics``, the dashboard and the publish answer) read the copy kept from the
last round, so no request waits on Redis.

What is summed and what is labelled: totals (clients, events published, replayed, dropped,
refused) are summed over the live processes (`Workers.totals`); numbers per channel stay the
answering process's own and say so with its ``worker`` name (``host:pid``). With the in-memory
backend there is one process and nothing is reported anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypedDict, cast

from ssehub.backends.base import Backend
from ssehub.errors import BackendUnavailable

__all__ = ["REPORT_INTERVAL", "SUMMED", "WORKER_TTL", "WorkerState", "Workers", "version"]

log = logging.getLogger("ssehub.server")

REPORT_INTERVAL = 1.0
"""Seconds between two reports of a hub process to the shared backend."""

WORKER_TTL = 5.0
"""Seconds after its last report that a hub process counts as gone."""

SUMMED = ("clients", "published", "replayed", "dropped_slow", "publish_errors", "rate")
"""The fields of `WorkerState` summed over every process in `Workers.totals`."""


class WorkerState(TypedDict):
    """One hub process's report: who it is, and its own share of every count."""

    worker: str
    """``host:pid``: the name every answer of this process carries."""
    pid: int
    version: str
    started: float
    """When the process started (Unix time)."""
    uptime: float
    clients: int
    """Open streams on this process."""
    channels: int
    """Channels with subscribers on this process."""
    published: int
    """Events published through this process."""
    replayed: int
    dropped_slow: int
    publish_errors: int
    rate: float
    """Events per second published through this process lately."""
    viewers: int
    """Dashboard viewers on this process."""


def version() -> str:
    """The installed ssehub's version (``"unknown"`` when not installed as a package)."""
    try:
        return metadata.version("ssehub")
    except metadata.PackageNotFoundError:
        return "unknown"


class Workers:
    """This process's `WorkerState`, and every live process's through the shared backend.

    Args:
        backend: the hub's backend; when it is not `Backend.shared`, nothing is reported.
        state: makes this process's state now (cheap: O(1) counters).
        interval: seconds between reports.
        ttl: seconds after which a silent process is left out.
    """

    def __init__(
        self,
        backend: Backend,
        state: Callable[[], WorkerState],
        *,
        interval: float = REPORT_INTERVAL,
        ttl: float = WORKER_TTL,
    ) -> None:
        self.backend = backend
        self.interval = interval
        self.ttl = ttl
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        """This process's name in every answer: ``host:pid``."""
        self.error: str | None = None
        """Why the last report failed (None when it succeeded)."""
        self._state = state
        self._others: list[WorkerState] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        """Whether other processes may serve the same channels (the backend is shared)."""
        return self.backend.shared

    def start(self) -> None:
        """Start reporting (on the running loop) when the backend is shared."""
        if self.shared and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="ssehub-worker-report"
            )

    async def stop(self) -> None:
        """Stop reporting and withdraw this process's report (a process that dies without
        stopping drops out of the others' view after `ttl`)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.backend.retire(self.name)

    def all(self) -> list[WorkerState]:
        """Every live process's state, this one's fresh and the others' from the last round,
        sorted by name. Synchronous and cheap."""
        own = self._state()
        found = [state for state in self._others if state.get("worker") != own["worker"]]
        found.append(own)
        found.sort(key=lambda state: state["worker"])
        return found

    def totals(self, states: list[WorkerState] | None = None) -> dict[str, float]:
        """The `SUMMED` fields summed over ``states`` (default: `all`), with ``workers``."""
        states = self.all() if states is None else states
        totals: dict[str, float] = {"workers": len(states)}
        for name in SUMMED:
            totals[name] = sum(state[name] for state in states)  # type: ignore[literal-required]
        totals["rate"] = round(totals["rate"], 2)
        return totals

    async def report_once(self) -> None:
        """Report this process's state and read the others' (one round trip)."""
        try:
            found = await asyncio.wait_for(
                self.backend.report(self.name, self._state(), self.ttl), self.ttl
            )
        except (BackendUnavailable, TimeoutError, OSError) as exc:
            if self.error is None:
                log.warning("event=worker_report_failed worker=%s error=%r", self.name, str(exc))
            self.error = str(exc) or type(exc).__name__
            # Reports older than the ttl are no longer evidence of a live process.
            self._others = []
            return
        self.error = None
        self._others = [state for state in map(_as_state, found) if state is not None]

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await self.report_once()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))


def _as_state(found: Any) -> WorkerState | None:
    """``found`` (another process's report, as JSON) when it has the fields readers use."""
    if not isinstance(found, dict) or not isinstance(found.get("worker"), str):
        return None
    if not all(isinstance(found.get(name), int | float) for name in SUMMED):
        return None
    return cast(WorkerState, found)
