"""What the async and the sync source share: the caller's view of them, and building httpx."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ssehub.client._reconnect import Reconnection

if TYPE_CHECKING:
    import httpx


def require_httpx() -> None:
    """Raise a clear `ImportError` when httpx (the ``ssehub[client]`` extra) is missing."""
    try:
        import httpx  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "ssehub.client needs httpx: install it with pip install 'ssehub[client]'"
        ) from exc


def http_timeout(connect_timeout: float, read_timeout: float | None) -> httpx.Timeout:
    """The httpx timeout of a source's own client."""
    import httpx

    return httpx.Timeout(connect_timeout, read=read_timeout, pool=connect_timeout)


class Source(ABC):
    """The properties and repr both sources show the caller, read from their `Reconnection`."""

    @abstractmethod
    def _reconnection(self) -> Reconnection:
        """The policy this source carries out."""

    @property
    def url(self) -> str:
        """The URL the source connects (and reconnects) to."""
        return self._reconnection().url

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event delivered (None before any); sent as ``Last-Event-ID``.

        Save it to resume later with ``connect(url, last_event_id=...)``.
        """
        return self._reconnection().last_event_id

    @property
    def reconnect_delay(self) -> float:
        """The current reconnection time in seconds (the server's ``retry:`` once it sends one)."""
        return self._reconnection().delay

    @property
    def reconnects(self) -> int:
        """How many times the source has reconnected."""
        return self._reconnection().reconnects

    @property
    def closed(self) -> bool:
        """True once the source is closed (by `aclose` / `close`, a 204, or an error)."""
        return self._reconnection().closed

    def __repr__(self) -> str:
        policy = self._reconnection()
        state = "closed" if policy.closed else "open" if policy.streaming else "idle"
        return f"<{type(self).__name__} {self.url!r} {state} last_event_id={self.last_event_id!r}>"
