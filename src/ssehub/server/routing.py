"""Routes as a table: which endpoint answers a path and method, and what the path allows.

`Route` is one row (a path or a path prefix, an endpoint, its methods), as in Starlette's
``routing``. `Router` compiles the table once into a dict of exact paths and a short list of
prefixes, so a lookup is one prefix check and one dict lookup: publishing and subscribing go
through it on every request. What a path answers to ``OPTIONS`` (a preflight) and the ``Allow``
header of a 405 both come from the same table (`Resource.allow`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from ssehub.types import Receive, Scope, Send

__all__ = ["Endpoint", "HTTPError", "Resource", "Route", "Router", "decode_path"]

_ENCODED_SLASH = re.compile(rb"%2[fF]")


def decode_path(raw: bytes) -> str:
    """The path a request names, from its raw (percent-encoded) bytes: channel names come from it.

    Percent-escapes are decoded and the bytes read as UTF-8, except that an encoded slash stays
    ``%2F`` and a literal ``%`` is written ``%25``: ``/a%2Fb`` and ``/a/b`` are two channels,
    and two raw paths that differ in what they mean never name the same one. Raises ValueError
    when the decoded bytes are not UTF-8 (``%ff``), rather than replacing them.
    """
    if b"%" not in raw:
        return raw.decode()
    return "%2F".join(
        unquote_to_bytes(part).decode().replace("%", "%25") for part in _ENCODED_SLASH.split(raw)
    )


Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI callable that answers one route and method."""


class HTTPError(Exception):
    """A refused request, answered as JSON ``{"error": message}`` with ``status``, ``headers``."""

    def __init__(
        self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the table: ``endpoint`` answers ``methods`` on ``path``.

    With ``prefix=True`` the route matches every path that starts with ``path`` and is longer
    than it (``/events/`` matches ``/events/room`` but not ``/events/`` itself).
    """

    path: str
    endpoint: Endpoint
    methods: tuple[str, ...] = ("GET",)
    prefix: bool = False


class Resource:
    """Everything one path (or prefix) answers: an endpoint per method, and its ``Allow``."""

    __slots__ = ("allow", "endpoints")

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        """The endpoint for each method, in the order the table lists them."""
        self.allow = "OPTIONS"
        """The ``Allow`` header: the table's methods, then ``OPTIONS``."""

    def add(self, route: Route) -> None:
        """Serve ``route``'s methods here (a method listed twice is a mistake in the table)."""
        for method in route.methods:
            if method in self.endpoints or method == "OPTIONS":
                raise ValueError(f"{method} {route.path} is routed twice")
            self.endpoints[method] = route.endpoint
        self.allow = ", ".join([*self.endpoints, "OPTIONS"])


class Router:
    """The route table, compiled for lookups: `match` a path to its `Resource`."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, routes: Iterable[Route]) -> None:
        self._exact: dict[str, Resource] = {}
        prefixes: dict[str, Resource] = {}
        for route in routes:
            table = prefixes if route.prefix else self._exact
            table.setdefault(route.path, Resource()).add(route)
        # Longest first, so that a more specific prefix wins.
        self._prefixes = sorted(prefixes.items(), key=lambda item: -len(item[0]))

    def match(self, path: str) -> Resource | None:
        """The resource serving ``path``, or None (a 404)."""
        # Prefixes first: the event routes, where publishing and subscribing happen.
        for prefix, resource in self._prefixes:
            if path.startswith(prefix) and len(path) > len(prefix):
                return resource
        return self._exact.get(path)
