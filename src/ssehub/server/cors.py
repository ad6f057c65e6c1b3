"""CORS for the standalone hub as one object: which origins may call it, and what to answer.

Like Starlette's ``CORSMiddleware``: `CORS.is_allowed_origin`, the headers of a preflight
(`CORS.preflight_headers`) and those of every other response (`CORS.simple_headers`). A listed
origin is echoed back with ``Vary: Origin`` and ``Access-Control-Allow-Credentials: true`` (its
pages may send cookies, as Mercure's cookie auth needs); with ``"*"`` among the origins any
other origin gets ``*``, without credentials. The headers for each origin seen are computed
once and cached (at most `CACHE_SIZE` origins), so a request pays one dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["CACHE_SIZE", "CORS", "PREFLIGHT_ALLOW_HEADERS"]

Headers = Sequence[tuple[bytes, bytes]]

CACHE_SIZE = 1024
"""How many origins' answers are cached (an origin past that is computed on each request)."""

PREFLIGHT_ALLOW_HEADERS = b"content-type, authorization, last-event-id, cache-control"
"""The request headers a preflight allows: what publishing and subscribing use."""

_NONE: Headers = ()
_ANY: Headers = ((b"access-control-allow-origin", b"*"),)


class CORS:
    """The hub's cross-origin policy for ``origins`` (``"*"`` allows any).

    Raises ValueError for an origin that could not be a header value (CR, LF, NUL, space or
    comma in it).
    """

    __slots__ = ("_any", "_cache", "_origins", "enabled")

    def __init__(self, origins: Iterable[str] = ()) -> None:
        listed = list(dict.fromkeys(origins))
        for origin in listed:
            if any(c in origin for c in "\r\n\0 ,"):
                raise ValueError(f"invalid CORS origin {origin!r}")
        self._any = "*" in listed
        self._origins = frozenset(o.encode("latin-1") for o in listed if o != "*")
        self._cache: dict[bytes, Headers] = {}
        self.enabled = self._any or bool(self._origins)
        """Whether any origin is allowed (without origins, no CORS header is ever sent)."""

    def is_allowed_origin(self, origin: bytes) -> bool:
        """Whether ``origin`` (an ``Origin`` header's value) may call the hub."""
        return self._any or origin in self._origins

    def allows_publish(self, origin: bytes, host: bytes | None) -> bool:
        """Whether a browser page of ``origin`` may publish to a hub reached as ``host``.

        Same-origin pages (``http://`` or ``https://`` plus the request's ``Host``) and the
        allowed origins may; any other origin, ``null`` included, may not. This is what stops a
        cross-site "simple" POST (a form, ``text/plain``) from publishing to an open hub.
        """
        if self._any or origin in self._origins:
            return True
        if host is None:
            return False
        origin = origin.lower()
        host = host.lower()
        return origin == b"http://" + host or origin == b"https://" + host

    def simple_headers(self, request_headers: Iterable[tuple[bytes, bytes]]) -> Headers:
        """The CORS headers of a response to a request with ``request_headers`` (ASGI ones).

        Empty when the request's origin is not allowed. The result is shared: do not change it.
        """
        if not self.enabled:
            return _NONE
        origin = None
        for name, value in request_headers:
            if name == b"origin":
                origin = value
                break
        if origin is None:
            return _ANY if self._any else _NONE
        cached = self._cache.get(origin)
        if cached is not None:
            return cached
        headers: Headers
        if origin in self._origins:
            # A listed origin may send credentials (EventSource's withCredentials: a Mercure or
            # ssehub token in a cookie); "*" never allows them.
            headers = (
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"Origin"),
            )
        elif self._any:
            headers = _ANY
        else:
            headers = _NONE
        if len(self._cache) < CACHE_SIZE:
            self._cache[origin] = headers
        return headers

    def preflight_headers(
        self, request_headers: Iterable[tuple[bytes, bytes]], allow: bytes
    ) -> list[tuple[bytes, bytes]]:
        """The headers of the 204 answering ``OPTIONS`` on a route that allows ``allow``.

        Always ``Allow``; for an allowed origin also its ``Access-Control-Allow-*`` headers
        (methods, request headers, a max-age of one day).
        """
        headers = [(b"allow", allow), *self.simple_headers(request_headers)]
        if len(headers) > 1:
            headers += [
                (b"access-control-allow-methods", allow),
                (b"access-control-allow-headers", PREFLIGHT_ALLOW_HEADERS),
                (b"access-control-max-age", b"86400"),
            ]
        return headers
