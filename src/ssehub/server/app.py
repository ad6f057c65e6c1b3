"""The standalone hub's HTTP API as one plain ASGI app: subscribe, publish, inspect, dashboard.

Routes (the contract in DESIGN.md):

- ``GET /events/{channel...}`` streams the channel (its name is the full request path);
  ``POST`` to the same path publishes to it.
- ``POST /broadcast`` publishes to every channel.
- ``GET /channels``, ``GET /metrics``, ``GET /healthz``, ``GET /`` (the dashboard) and
  ``GET /dashboard/stats`` (the dashboard's own live feed, on a hub of its own).
- ``OPTIONS`` on any route answers a CORS preflight.

Publishing is the hot path: one scan of the headers, the body read in one piece, one JSON parse,
`Message` objects built, `Hub.publish` awaited, a small JSON answer. Nothing else happens per
event; metrics read the hub's own counters when scraped.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from ssehub.asgi import request_from_scope, stream_subscription
from ssehub.errors import BackendUnavailable, HubClosed, InvalidMessage, SubscriptionDenied
from ssehub.hub import Hub
from ssehub.subscription import CloseReason, Subscription
from ssehub.types import Receive, Scope, Send
from ssehub.wire import Message

__all__ = ["DEFAULT_MAX_BODY", "STATS_PATH", "HubServer"]

log = logging.getLogger("ssehub.server")

DEFAULT_MAX_BODY = 1024 * 1024
"""The largest publish body accepted by default (1 MiB)."""

STATS_PATH = "/dashboard/stats"
"""The dashboard's live statistics stream (served by a hub of its own, not listed in /channels)."""

EVENTS_PREFIX = "/events/"

_loads: Callable[[str], Any]
_dumps: Callable[[Any], bytes]
try:  # orjson is optional: faster parsing and encoding when installed
    import orjson  # type: ignore[import-not-found,unused-ignore]

    _loads = orjson.loads
    _dumps = orjson.dumps
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


_FIELDS = frozenset({"data", "event", "id", "retry"})
_JSON_CT = (b"content-type", b"application/json")
_PREFLIGHT_HEADERS = b"content-type, authorization, last-event-id, cache-control"
_ROUTE_METHODS = {
    "events": "GET, POST, OPTIONS",
    "broadcast": "POST, OPTIONS",
    "read": "GET, OPTIONS",
}


class _HTTPError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(
        self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def _full_path(scope: Scope) -> str:
    # The same rule as ssehub.asgi.request_from_scope, so GET and POST name channels alike.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and not path.startswith(root):
        path = root + path
    return path


def _message_from(obj: Any, where: str = "") -> Message:
    if type(obj) is not dict:
        raise _HTTPError(
            400,
            f"{where}a message must be a JSON object like "
            f'{{"data": "...", "event": "...", "id": "...", "retry": 1000}}, '
            f"got {type(obj).__name__}",
        )
    if not obj.keys() <= _FIELDS:
        unknown = ", ".join(sorted(repr(k) for k in obj.keys() - _FIELDS))
        raise _HTTPError(400, f"{where}unknown field(s) {unknown}; allowed: data, event, id, retry")
    data = obj.get("data")
    if type(data) is not str:
        if data is None and "data" not in obj:
            raise _HTTPError(400, f'{where}missing field "data" (a string)')
        raise _HTTPError(400, f"{where}data must be a string, got {type(data).__name__}")
    try:
        return Message(data, id=obj.get("id"), event=obj.get("event"), retry=obj.get("retry"))
    except InvalidMessage as exc:
        raise _HTTPError(400, f"{where}{exc}") from None


class HubServer:
    """The ASGI app of ``ssehub serve``: the HTTP API around one `Hub`.

    Args:
        hub: the hub to serve (its ``channel_name`` should stay the default, the path).
        publish_token: when set, ``POST`` requests need ``Authorization: Bearer <token>``.
        subscribe_token: when set, streams need the same header or ``?token=<token>``.
        cors_origins: origins allowed to call the hub from a browser (``"*"`` for any).
        max_body: the largest publish body in bytes (larger ones get 413).
        stats_interval: seconds between the dashboard's statistics updates.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        publish_token: str | None = None,
        subscribe_token: str | None = None,
        cors_origins: Iterable[str] = (),
        max_body: int = DEFAULT_MAX_BODY,
        stats_interval: float = 1.0,
    ) -> None:
        if max_body <= 0:
            raise ValueError(f"max_body must be a positive number of bytes, got {max_body!r}")
        self.hub = hub
        self.max_body = max_body
        self._publish_token = publish_token.encode() if publish_token else None
        self._subscribe_token = subscribe_token.encode() if subscribe_token else None
        origins = list(dict.fromkeys(cors_origins))
        for origin in origins:
            if any(c in origin for c in "\r\n\0 ,"):
                raise ValueError(f"invalid CORS origin {origin!r}")
        self._any_origin = "*" in origins
        self._origins = {o.encode("latin-1"): o for o in origins if o != "*"}
        self._cors_cache: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self.publish_errors: dict[int, int] = {}
        """Rejected publishes and broadcasts, by HTTP status."""
        self.started_at = time.time()
        self._closing = False
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._stats_interval = stats_interval
        self._stats_task: asyncio.Task[None] | None = None
        self._stats_prev: dict[str, int] = {}
        self._stats_prev_delivered: dict[str, int] = {}
        self._stats_prev_time = time.monotonic()
        self._stats_last: bytes | None = None
        self.stats_hub = Hub(history=0, keepalive=15.0, on_connect=self._stats_viewer_joined)
        """A separate hub for the dashboard's statistics stream, so it never shows up in
        ``/channels``, metrics or broadcasts."""
        self._dashboard: bytes | None = None
        self._registry: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the hub (and fail early if its backend cannot start)."""
        await self.hub.start()
        await self.stats_hub.start()

    async def close(self, timeout: float = 5.0) -> None:
        """Refuse new publishes, let in-flight ones finish, then end every stream cleanly."""
        if not self._closing:
            self._closing = True
            if self._inflight:
                self._idle = asyncio.Event()
                try:
                    await asyncio.wait_for(self._idle.wait(), timeout)
                except asyncio.TimeoutError:
                    log.warning("event=shutdown_timeout inflight_publishes=%d", self._inflight)
            if self._stats_task is not None:
                self._stats_task.cancel()
        await asyncio.gather(self.hub.shutdown(timeout), self.stats_hub.shutdown(timeout))

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
                return
            raise RuntimeError(f"ssehub serve speaks http, not {kind!r}")
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path.startswith(EVENTS_PREFIX) and len(path) > len(EVENTS_PREFIX):
                if method == "POST":
                    await self._publish(scope, receive, send)
                elif method == "GET":
                    await self._subscribe(scope, receive, send)
                else:
                    self._check_method(method, "events", scope)
            elif path == "/broadcast":
                if method == "POST":
                    await self._broadcast(scope, receive, send)
                else:
                    self._check_method(method, "broadcast", scope)
            else:
                route = self._read_route(path)
                if method != "GET":
                    self._check_method(method, "read", scope)
                else:
                    await route(scope, receive, send)
        except _HTTPError as exc:
            await self._send_error(scope, send, exc)
        except _ClientGone:
            pass

    def _read_route(self, path: str) -> Callable[[Scope, Receive, Send], Any]:
        if path == "/":
            return self._get_dashboard
        if path == "/channels":
            return self._get_channels
        if path == "/metrics":
            return self._get_metrics
        if path == "/healthz":
            return self._get_health
        if path == STATS_PATH:
            return self._get_stats_stream
        if path == EVENTS_PREFIX or path == "/events":
            raise _HTTPError(404, "no channel given: use /events/<channel>")
        raise _HTTPError(
            404,
            f"no route {path}; the routes are /events/<channel>, /broadcast, /channels, "
            "/metrics, /healthz and /",
        )

    def _check_method(self, method: str, route: str, scope: Scope) -> None:
        allow = _ROUTE_METHODS[route]
        if method == "OPTIONS":
            raise _Preflight(allow)
        raise _HTTPError(
            405, f"method {method} not allowed here; allowed: {allow}", [(b"allow", allow.encode())]
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.error("event=startup_failed error=%r", str(exc))
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- CORS and responses ------------------------------------------------------------------

    def _cors(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        if not self._origins and not self._any_origin:
            return []
        origin = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
                break
        if origin is None:
            return [(b"access-control-allow-origin", b"*")] if self._any_origin else []
        cached = self._cors_cache.get(origin)
        if cached is not None:
            return cached
        if origin in self._origins:
            headers = [
                (b"access-control-allow-origin", origin),
                (b"vary", b"Origin"),
            ]
        elif self._any_origin:
            headers = [(b"access-control-allow-origin", b"*")]
        else:
            headers = []
        if len(self._cors_cache) < 1024:
            self._cors_cache[origin] = headers
        return headers

    async def _send_json(
        self,
        scope: Scope,
        send: Send,
        status: int,
        body: bytes,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        headers = [_JSON_CT, (b"content-length", b"%d" % len(body)), *extra]
        if self._origins or self._any_origin:
            headers += self._cors(scope)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_error(self, scope: Scope, send: Send, exc: _HTTPError) -> None:
        if isinstance(exc, _Preflight):
            await self._send_preflight(scope, send, exc.message)
            return
        await self._send_json(scope, send, exc.status, _dumps({"error": exc.message}), exc.headers)

    async def _send_preflight(self, scope: Scope, send: Send, allow: str) -> None:
        headers = [(b"allow", allow.encode()), *self._cors(scope)]
        if len(headers) > 1:
            headers += [
                (b"access-control-allow-methods", allow.encode()),
                (b"access-control-allow-headers", _PREFLIGHT_HEADERS),
                (b"access-control-max-age", b"86400"),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    # -- publishing (the hot path) -----------------------------------------------------------

    async def _read_publish(self, scope: Scope, receive: Receive) -> list[Message] | Message:
        """Check the token and read the body into one message or a list of them."""
        content_type = b""
        authorization = None
        length = -1
        encoded = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"content-encoding":
                encoded = value.strip().lower() != b"identity"
        token = self._publish_token
        if token is not None and (
            authorization is None
            or authorization[:7].lower() != b"bearer "
            or not hmac.compare_digest(authorization[7:].strip(), token)
        ):
            raise _HTTPError(
                401,
                "publishing needs the header 'Authorization: Bearer <publish token>'",
                [(b"www-authenticate", b'Bearer realm="ssehub"')],
            )
        if length > self.max_body:
            raise _HTTPError(413, f"the body is over the limit of {self.max_body} bytes")
        if encoded:
            raise _HTTPError(415, "compressed bodies are not accepted; send identity encoding")
        body = await self._read_body(receive)
        mime, _, params = content_type.partition(b";")
        mime = mime.strip().lower()
        if params and b"charset" in params.lower():
            charset = params.lower().split(b"charset=", 1)[-1].split(b";")[0].strip(b" \"'")
            if charset not in (b"utf-8", b"utf8"):
                raise _HTTPError(415, f"only UTF-8 bodies are accepted, not {charset.decode()!r}")
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise _HTTPError(
                415, f"the body is not valid UTF-8 (byte {exc.start}): only UTF-8 is accepted"
            ) from None
        if mime == b"application/json" or mime.endswith(b"+json"):
            try:
                parsed = _loads(text)
            except ValueError as exc:
                raise _HTTPError(400, f"malformed JSON: {exc}") from None
            if type(parsed) is list:
                return [_message_from(item, f"item {i}: ") for i, item in enumerate(parsed)]
            return _message_from(parsed)
        try:
            return Message(text)
        except InvalidMessage as exc:  # pragma: no cover - any str is valid data
            raise _HTTPError(400, str(exc)) from None

    async def _read_body(self, receive: Receive) -> bytes:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.max_body:
                raise _HTTPError(413, f"the body is over the limit of {self.max_body} bytes")
            return body
        chunks = [body]
        size = len(body)
        while True:
            if size > self.max_body:
                raise _HTTPError(413, f"the body is over the limit of {self.max_body} bytes")
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            body = message.get("body", b"")
            chunks.append(body)
            size += len(body)
            if not message.get("more_body", False):
                break
        if size > self.max_body:
            raise _HTTPError(413, f"the body is over the limit of {self.max_body} bytes")
        return b"".join(chunks)

    def _rejected(self, status: int, where: str, scope: Scope, error: str) -> None:
        self.publish_errors[status] = self.publish_errors.get(status, 0) + 1
        client = scope.get("client")
        log.warning(
            "event=publish_rejected status=%d target=%s client=%s error=%r",
            status,
            where,
            f"{client[0]}:{client[1]}" if client else "-",
            error,
        )

    async def _publish(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = _full_path(scope)
        hub = self.hub
        self._inflight += 1
        try:
            if self._closing:
                raise _HTTPError(503, "the hub is shutting down")
            messages = await self._read_publish(scope, receive)
            if type(messages) is list:
                ids = [await hub.publish(channel, m) for m in messages]
                body = _dumps(
                    {"ids": ids, "channel": channel, "clients": hub.client_count(channel)}
                )
            else:
                event_id = await hub.publish(channel, messages)  # type: ignore[arg-type]
                body = _dumps(
                    {"id": event_id, "channel": channel, "clients": hub.client_count(channel)}
                )
        except _HTTPError as exc:
            self._rejected(exc.status, channel, scope, exc.message)
            raise
        except HubClosed:
            self._rejected(503, channel, scope, "the hub is shut down")
            raise _HTTPError(503, "the hub is shutting down") from None
        except BackendUnavailable as exc:
            self._rejected(503, channel, scope, str(exc))
            raise _HTTPError(503, f"the backend is unavailable: {exc}") from None
        finally:
            self._inflight -= 1
            if self._idle is not None and not self._inflight:
                self._idle.set()
        await self._send_json(scope, send, 200, body)

    async def _broadcast(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        self._inflight += 1
        try:
            if self._closing:
                raise _HTTPError(503, "the hub is shutting down")
            messages = await self._read_publish(scope, receive)
            result: Any
            if type(messages) is list:
                result = [await hub.broadcast(m) for m in messages]
            else:
                result = await hub.broadcast(messages)  # type: ignore[arg-type]
            body = _dumps({"ids": result, "clients": hub.client_count()})
        except _HTTPError as exc:
            self._rejected(exc.status, "/broadcast", scope, exc.message)
            raise
        except HubClosed:
            self._rejected(503, "/broadcast", scope, "the hub is shut down")
            raise _HTTPError(503, "the hub is shutting down") from None
        except BackendUnavailable as exc:
            self._rejected(503, "/broadcast", scope, str(exc))
            raise _HTTPError(503, f"the backend is unavailable: {exc}") from None
        finally:
            self._inflight -= 1
            if self._idle is not None and not self._inflight:
                self._idle.set()
        await self._send_json(scope, send, 200, body)

    # -- subscribing -------------------------------------------------------------------------

    def _check_subscribe_token(self, scope: Scope) -> None:
        token = self._subscribe_token
        if token is None:
            return
        for name, value in scope["headers"]:
            if (
                name == b"authorization"
                and value[:7].lower() == b"bearer "
                and hmac.compare_digest(value[7:].strip(), token)
            ):
                return
        query = scope.get("query_string", b"")
        if query:
            for key, value in parse_qsl(query.decode("latin-1")):
                if key == "token" and hmac.compare_digest(value.encode("latin-1"), token):
                    return
        raise _HTTPError(
            401,
            "subscribing needs 'Authorization: Bearer <subscribe token>' or ?token=<token>",
            [(b"www-authenticate", b'Bearer realm="ssehub"')],
        )

    async def _stream(self, hub: Hub, scope: Scope, receive: Receive, send: Send) -> None:
        self._check_subscribe_token(scope)
        try:
            sub = await hub.open_stream(request_from_scope(scope))
        except SubscriptionDenied as exc:
            raise _HTTPError(403, str(exc)) from None
        except HubClosed:
            raise _HTTPError(503, "the hub is shutting down") from None
        except BackendUnavailable as exc:
            raise _HTTPError(503, f"the backend is unavailable: {exc}") from None
        headers = hub.headers
        if self._origins or self._any_origin:
            cors = [(k.decode(), v.decode("latin-1")) for k, v in self._cors(scope)]
            headers = headers + cors
        await stream_subscription(hub, sub, receive, send, headers, scope)

    async def _subscribe(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._stream(self.hub, scope, receive, send)

    async def _get_stats_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._stream(self.stats_hub, scope, receive, send)

    # -- reading -----------------------------------------------------------------------------

    async def _get_channels(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        channels = []
        for name in sorted(hub.channels()):
            ch = hub.get_channel(name)
            channels.append(
                {
                    "channel": name,
                    "clients": len(ch) if ch is not None else 0,
                    "published": hub.published_count(name),
                    "delivered": ch.delivered if ch is not None else 0,
                }
            )
        body = _dumps({"channels": channels, "clients": hub.client_count()})
        await self._send_json(scope, send, 200, body, [(b"cache-control", b"no-store")])

    async def _get_metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        from ssehub.server.metrics import build_registry, render

        if self._registry is None:
            self._registry = build_registry(self)
        body, content_type = render(self._registry)
        headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
        headers += self._cors(scope)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the hub can serve, and a JSON-able report (backend state, clients, uptime)."""
        hub = self.hub
        try:
            backend = await asyncio.wait_for(hub.backend.health(), 5.0)
        except (BackendUnavailable, OSError, asyncio.TimeoutError) as exc:
            backend = {"ok": False, "backend": type(hub.backend).__name__, "error": str(exc)}
        ok = bool(backend.get("ok")) and not hub.closed and not self._closing
        report = {
            "ok": ok,
            "status": "shutting down" if (hub.closed or self._closing) else "serving",
            "backend": backend,
            "channels": len(hub.channels()),
            "clients": hub.client_count(),
            "uptime": round(time.time() - self.started_at, 3),
            "pid": os.getpid(),
        }
        return ok, report

    async def _get_health(self, scope: Scope, receive: Receive, send: Send) -> None:
        ok, report = await self.health()
        await self._send_json(
            scope, send, 200 if ok else 503, _dumps(report), [(b"cache-control", b"no-store")]
        )

    async def _get_dashboard(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._dashboard is None:
            self._dashboard = (
                resources.files("ssehub.server").joinpath("dashboard.html").read_bytes()
            )
        body = self._dashboard
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-cache"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- the dashboard's statistics feed -----------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A snapshot for the dashboard: every channel's clients, totals and rates per second.

        Rates are measured since the previous snapshot. At most 500 channels are listed (the
        busiest first); ``total_channels`` says how many there are.
        """
        hub = self.hub
        now = time.monotonic()
        elapsed = max(now - self._stats_prev_time, 1e-6)
        published = hub.published_counts()
        prev = self._stats_prev
        prev_delivered = self._stats_prev_delivered
        delivered: dict[str, int] = {}
        names = set(hub.channels())
        names.update(name for name, count in published.items() if prev.get(name) != count)
        rows: list[dict[str, Any]] = []
        for name in names:
            ch = hub.get_channel(name)
            sent = ch.delivered if ch is not None else 0
            delivered[name] = sent
            count = published.get(name, 0)
            rows.append(
                {
                    "channel": name,
                    "clients": len(ch) if ch is not None else 0,
                    "published": count,
                    "rate": round(max(count - prev.get(name, count), 0) / elapsed, 2),
                    "delivery_rate": round(
                        max(sent - prev_delivered.get(name, sent), 0) / elapsed, 2
                    ),
                }
            )
        rows.sort(key=lambda r: (-r["clients"], -r["rate"], r["channel"]))
        self._stats_prev = published
        self._stats_prev_delivered = delivered
        self._stats_prev_time = now
        return {
            "time": time.time(),
            "clients": hub.client_count(),
            "total_channels": len(rows),
            "channels": rows[:500],
            "published": sum(published.values()),
            "replayed": hub.replayed,
            "dropped_slow": hub.dropped_slow,
            "publish_errors": sum(self.publish_errors.values()),
        }

    def _stats_viewer_joined(self, sub: Subscription) -> None:
        sub.send(Message(_dumps(self.stats()).decode(), event="stats"))
        if self._stats_task is None or self._stats_task.done():
            self._stats_task = asyncio.ensure_future(self._stats_loop())

    async def _stats_loop(self) -> None:
        stats_hub = self.stats_hub
        while not self._closing and not stats_hub.closed:
            await asyncio.sleep(self._stats_interval)
            if not stats_hub.client_count():
                return
            try:
                await stats_hub.publish(
                    STATS_PATH, Message(_dumps(self.stats()).decode(), event="stats")
                )
            except HubClosed:
                return


class _Preflight(_HTTPError):
    """Raised by the router to answer OPTIONS (a CORS preflight) with the route's methods."""

    def __init__(self, allow: str) -> None:
        super().__init__(204, allow)


def on_client_gone(sub: Subscription) -> None:
    """The hub's ``on_disconnect`` hook for ``ssehub serve``: log clients dropped as too slow."""
    if sub.close_reason == CloseReason.SLOW:
        client = sub.request.client if sub.request is not None else None
        log.warning(
            "event=client_dropped reason=slow channel=%s client=%s",
            sub.channel,
            f"{client[0]}:{client[1]}" if client else "-",
        )
