"""A framework-neutral view of the request that opens a stream, for hooks and channel naming."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Request"]


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of an HTTP request that ssehub's hooks need.

    ``headers`` has lower-case names; ``query`` holds the first value of each query parameter;
    ``native`` is the framework's own request object (or the ASGI scope / WSGI environ), for
    hooks that need more.
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    client: tuple[str, int] | None = None
    native: Any = None

    @property
    def last_event_id(self) -> str | None:
        """The id the client resumes after: the ``Last-Event-ID`` header, else ``lastEventId``."""
        value = self.headers.get("last-event-id")
        if value is None:
            value = self.query.get("lastEventId")
        return value
