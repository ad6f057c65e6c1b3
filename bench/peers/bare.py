"""The bare asyncio baseline: the practical ceiling of an SSE fan-out in Python.

An asyncio.Protocol per connection with httptools parsing the requests. Subscriber transports are
kept per channel in an insertion-ordered dict (a list with O(1) removal); a publish encodes the
event and its chunk frame once and writes the same bytes to every transport. No buffer bound, no
history, no ids, no keep-alive: it is a ceiling to measure against, not a server to deploy.

Same HTTP contract as ssehub's hub for the benchmark: GET /events/{channel} subscribes, POST
/events/{channel} with JSON ``{"data": ...}`` (or an array of them) publishes and answers JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource

import httptools

_LINES = re.compile(r"\r\n|\r|\n")
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
)

channels: dict[str, dict[asyncio.Transport, None]] = {}


def encode(data: str) -> bytes:
    """One event as a chunk of the HTTP/1.1 chunked body."""
    body = "".join(f"data: {line}\n" for line in _LINES.split(data)).encode() + b"\n"
    return b"%x\r\n%s\r\n" % (len(body), body)


def answer(status: str, obj: object) -> bytes:
    """A complete keep-alive JSON response."""
    body = json.dumps(obj).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: a publisher (keep-alive POSTs) or a subscriber (one GET)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.channel: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None and self.transport is not None:
            subs = channels.get(self.channel)
            if subs is not None:
                subs.pop(self.transport, None)
                if not subs:
                    del channels[self.channel]

    def data_received(self, data: bytes) -> None:
        if self.channel is not None:
            return  # a subscriber has nothing more to say
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(answer("400 Bad Request", {"error": "bad request"}))
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        assert transport is not None
        path = httptools.parse_url(self.url).path.decode()
        method = self.parser.get_method()
        if method == b"GET" and path.startswith("/events/"):
            self.channel = path
            channels.setdefault(path, {})[transport] = None
            transport.write(_STREAM_HEAD)
        elif method == b"POST" and path.startswith("/events/"):
            try:
                obj = json.loads(b"".join(self.body))
                items = obj if isinstance(obj, list) else [obj]
                frames = [encode(item["data"]) for item in items]
            except (ValueError, KeyError, TypeError) as exc:
                transport.write(answer("400 Bad Request", {"error": str(exc)}))
                return
            subs = channels.get(path, {})
            for frame in frames:
                for t in subs:
                    t.write(frame)
            transport.write(answer("200 OK", {"channel": path, "clients": len(subs)}))
        else:
            transport.write(answer("404 Not Found", {"error": "not found"}))


async def serve(host: str, port: int) -> None:
    """Serve until killed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
