"""A framework-neutral view of the request that opens a stream, for hooks and channel naming."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Request", "utf8_from_latin1"]


def utf8_from_latin1(text: str) -> str:
    """``text`` that a server decoded from bytes as latin-1, decoded as UTF-8 instead.

    ASGI and WSGI servers hand header values (and WSGI the query string) over as latin-1 text,
    while browsers send ``Last-Event-ID`` as the UTF-8 bytes of the id. Bytes that are not
    UTF-8 keep their latin-1 reading.
    """
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of an HTTP request that ssehub's hooks need.

    ``headers`` has lower-case names; ``query`` holds the first value of each query parameter
    and ``params`` every ``(name, value)`` pair in order (`query_values` reads a repeated one);
    ``Last-Event-ID`` and the query are text decoded from UTF-8, as browsers encode them;
    ``native`` is the framework's own request object (or the ASGI scope / WSGI environ), for
    hooks that need more.
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    client: tuple[str, int] | None = None
    native: Any = None
    params: tuple[tuple[str, str], ...] = ()

    def query_values(self, name: str) -> list[str]:
        """Every value of query parameter ``name``, in order (``?channel=a&channel=b``)."""
        if not self.params:
            value = self.query.get(name)
            return [] if value is None else [value]
        return [value for key, value in self.params if key == name]

    @property
    def last_event_id(self) -> str | None:
        """The id the client resumes after: the ``Last-Event-ID`` header, else ``lastEventId``."""
        value = self.headers.get("last-event-id")
        if value is None:
            value = self.query.get("lastEventId")
        return value
