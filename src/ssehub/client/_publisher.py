"""The publisher: events to a hub over one streaming POST (NDJSON), ids back in order.

`Publisher` keeps one ``POST /events`` (or ``POST /events/{channel}``) open with
``Content-Type: application/x-ndjson`` and ``Transfer-Encoding: chunked``, writes one JSON line
per event and reads the hub's answer lines as they come: one per event, in order. Requests are
pipelined: many events may be on the wire at once, and the lines written in one turn of the
event loop go out in one write. `SyncPublisher` is the same for plain threads (it runs a
`Publisher` on a loop of its own, in a daemon thread).

Why not httpx: it sends a request's whole body before it reads the response, and this body
never ends; so the publisher speaks the little HTTP/1.1 it needs over an asyncio stream itself
(``http://`` and ``https://`` URLs).

A stream that drops fails the events not yet answered with `ConnectionLost` (they may or may
not have been published: retry them with the same ``id`` and the hub drops the duplicates); the
next `Publisher.publish` opens a new stream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import ssl
import threading
from collections import deque
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ssehub.client._exceptions import ClientError, ConnectionLost

__all__ = ["PublishRefused", "Publisher", "SyncPublisher"]

_T = TypeVar("_T")
_MAX_ANSWER = 1024 * 1024  # the longest answer line (or response head) read


class PublishRefused(ClientError):
    """The hub refused an event (or the whole stream): ``status`` and its ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _line(
    data: Any,
    channel: str | None,
    channels: list[str] | tuple[str, ...] | None,
    event: str | None,
    id: str | None,
    retry: int | None,
    private: bool,
) -> bytes:
    obj: dict[str, Any] = {"data": data}
    if channel is not None:
        obj["channel"] = channel
    if channels is not None:
        obj["channels"] = list(channels)
    if event is not None:
        obj["event"] = event
    if id is not None:
        obj["id"] = id
    if retry is not None:
        obj["retry"] = retry
    if private:
        obj["private"] = True
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class _Stream:
    """One open streaming POST: the writer, the reader task, the events awaiting answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.waiting: deque[asyncio.Future[str]] = deque()
        self.out: list[bytes] = []
        self.flushing = False
        self.closed = False
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.keepalive: asyncio.Task[None] | None = None
        self.written = 0.0

    def fail(self, error: BaseException) -> None:
        self.closed = True
        if self.error is None:
            self.error = error
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if not self.writer.is_closing():
            self.writer.close()


class Publisher:
    """Publishes events over one streaming POST to ``url``; use it as an async context manager.

    ``url`` is the hub's ``.../events`` (each event then names its ``channel`` or
    ``channels``) or ``.../events/<channel>`` (every event goes there). ``headers`` are sent
    with the request (``Authorization: Bearer <token>``). With nothing to send for
    ``keepalive`` seconds the publisher sends a blank line, so the hub (which wants a line
    within ``--body-timeout``) keeps the stream open. Not thread-safe: use it from one event
    loop (see `SyncPublisher` for threads).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        keepalive: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        self._target = target
        self._headers = dict(headers or {})
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._stream: _Stream | None = None
        self._opening: asyncio.Future[_Stream] | None = None
        self._closed = False

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def pending(self) -> int:
        """Events written and not yet answered."""
        return len(self._stream.waiting) if self._stream is not None else 0

    async def publish(
        self,
        data: Any,
        *,
        channel: str | None = None,
        channels: list[str] | tuple[str, ...] | None = None,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        private: bool = False,
    ) -> str:
        """Publish one event and return its id once the hub answers.

        ``data`` is a string, or any JSON value (sent as compact JSON). ``channel`` or
        ``channels`` name where it goes on a ``.../events`` URL (not on ``.../events/<ch>``).
        Raises `PublishRefused` (the hub refused this event), `ConnectionLost` (the stream
        dropped before the answer: the event may or may not be published).
        """
        future = await self.send(
            data,
            channel=channel,
            channels=channels,
            event=event,
            id=id,
            retry=retry,
            private=private,
        )
        return await future

    async def send(
        self,
        data: Any,
        *,
        channel: str | None = None,
        channels: list[str] | tuple[str, ...] | None = None,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        private: bool = False,
    ) -> asyncio.Future[str]:
        """Write one event and return at once a future of its id (pipelining: await many
        futures together); the future raises as `publish` does."""
        line = _line(data, channel, channels, event, id, retry, private)
        stream = await self._open()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        stream.waiting.append(future)
        stream.out.append(line)
        if not stream.flushing:
            stream.flushing = True
            asyncio.get_running_loop().call_soon(self._flush, stream)
        if stream.writer.transport.get_write_buffer_size() > 1024 * 1024:
            await self._drain(stream)
        return future

    async def aclose(self) -> None:
        """End the stream after every event written was answered (or the stream dropped)."""
        self._closed = True
        stream = self._stream
        if stream is None:
            return
        self._flush(stream)
        if not stream.closed:
            with contextlib.suppress(OSError):
                stream.writer.write(b"0\r\n\r\n")  # the end of the body: the hub answers the rest
            if stream.task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(stream.task), 30)
        stream.fail(ConnectionLost("the publisher is closed"))
        if stream.keepalive is not None:
            stream.keepalive.cancel()
        if stream.task is not None:
            stream.task.cancel()
            with contextlib.suppress(BaseException):
                await stream.task
        with contextlib.suppress(OSError):
            await stream.writer.wait_closed()
        self._stream = None

    # -- the stream --------------------------------------------------------------------------

    async def _open(self) -> _Stream:
        if self._closed:
            raise ConnectionLost("the publisher is closed")
        stream = self._stream
        if stream is not None and not stream.closed:
            return stream
        if self._opening is not None:
            return await asyncio.shield(self._opening)
        self._opening = asyncio.get_running_loop().create_future()
        try:
            stream = await self._connect()
        except BaseException as exc:
            self._opening.set_exception(exc)
            self._opening.exception()  # a failure nobody else awaited is not logged
            raise
        else:
            self._opening.set_result(stream)
        finally:
            self._opening = None
        self._stream = stream
        return stream

    async def _connect(self) -> _Stream:
        context = ssl.create_default_context() if self._tls else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port, ssl=context, limit=_MAX_ANSWER),
                self._connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to {self.url}: {exc!r}") from exc
        host = self._host if ":" not in self._host else f"[{self._host}]"
        head = [
            f"POST {self._target} HTTP/1.1",
            f"Host: {host}:{self._port}",
            "Content-Type: application/x-ndjson",
            "Transfer-Encoding: chunked",
            "Accept: application/x-ndjson",
        ]
        head += [f"{name}: {value}" for name, value in self._headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        stream = _Stream(reader, writer)
        stream.written = asyncio.get_running_loop().time()
        stream.task = asyncio.ensure_future(self._read(stream))
        if self._keepalive > 0:
            stream.keepalive = asyncio.ensure_future(self._keep_alive(stream))
        return stream

    def _flush(self, stream: _Stream) -> None:
        stream.flushing = False
        if stream.closed or not stream.out:
            return
        body = b"".join(stream.out)
        stream.out.clear()
        stream.writer.write(b"%x\r\n%b\r\n" % (len(body), body))
        stream.written = asyncio.get_running_loop().time()

    async def _drain(self, stream: _Stream) -> None:
        try:
            await stream.writer.drain()
        except OSError as exc:
            stream.fail(ConnectionLost(f"the stream to {self.url} dropped: {exc!r}"))

    async def _keep_alive(self, stream: _Stream) -> None:
        loop = asyncio.get_running_loop()
        while not stream.closed:
            idle = loop.time() - stream.written
            if idle >= self._keepalive:
                stream.out.append(b"\n")
                self._flush(stream)
                idle = 0.0
            await asyncio.sleep(self._keepalive - idle)

    async def _read(self, stream: _Stream) -> None:
        try:
            await self._read_answers(stream)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            stream.fail(ConnectionLost(f"the stream to {self.url} dropped: {exc!r}"))
        finally:
            stream.fail(ConnectionLost(f"the hub ended the stream to {self.url}"))
            if stream.keepalive is not None:
                stream.keepalive.cancel()

    async def _read_answers(self, stream: _Stream) -> None:
        reader = stream.reader
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        chunked = False
        length = -1
        while True:
            header = await reader.readuntil(b"\r\n")
            if header == b"\r\n":
                break
            name, _, value = header.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "content-length":
                length = int(value.strip())
        if status != 200:
            body = await reader.readexactly(length) if length >= 0 else await reader.read(65536)
            try:
                message = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                message = body.decode("utf-8", "replace")
            stream.fail(PublishRefused(status, str(message)))
            return
        held = b""
        while True:
            if chunked:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return
                data = await reader.readexactly(size + 2)
                data = data[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    return
            held += data
            if len(held) > _MAX_ANSWER and b"\n" not in held:
                raise ValueError("an answer line over 1 MiB")
            *lines, held = held.split(b"\n")
            for line in lines:
                self._answer(stream, line)

    def _answer(self, stream: _Stream, line: bytes) -> None:
        if not line.strip():
            return
        answer = json.loads(line)
        if not stream.waiting:
            if answer.get("end"):
                stream.closed = True
            return  # the end of a stream nothing was waiting on (e.g. an idle timeout)
        if answer.get("end"):
            # The hub ends the stream here: the next event goes to a new one.
            stream.closed = True
        future = stream.waiting.popleft()
        if future.done():
            return
        if "id" in answer:
            future.set_result(answer["id"])
        else:
            future.set_exception(PublishRefused(int(answer.get("status", 0)), answer["error"]))


class SyncPublisher:
    """`Publisher` for plain threads: `publish` blocks until the id; `send` returns a
    `concurrent.futures.Future` (pipelining). Thread-safe; use it as a context manager or call
    `close`. It runs its `Publisher` on an event loop in a daemon thread of its own."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        keepalive: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        # Made first: a bad URL raises here, before a thread is started.
        self._publisher = Publisher(
            url, headers=headers, keepalive=keepalive, connect_timeout=connect_timeout
        )
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ssehub-publisher", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> SyncPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        if self._closed:
            coro.close()
            raise ConnectionLost("the publisher is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def publish(self, data: Any, **fields: Any) -> str:
        """Publish one event and return its id (blocks); the fields and errors are
        `Publisher.publish`'s."""
        return self.send(data, **fields).result()

    def send(self, data: Any, **fields: Any) -> concurrent.futures.Future[str]:
        """Write one event; a future of its id (`Future.result` raises as `publish` does)."""

        async def sent() -> str:
            future = await self._publisher.send(data, **fields)
            return await future

        return self._call(sent())

    def close(self) -> None:
        """End the stream once every event written was answered, and stop the thread."""
        if self._closed:
            return
        self._call(self._publisher.aclose()).result()
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
