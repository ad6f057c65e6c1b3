"""The blocking source: `SyncEventSource` and `connect_sync`, doing what `Reconnection` decides."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from ssehub.client._base import Source, http_timeout, require_httpx
from ssehub.client._exceptions import UnsendableRequest
from ssehub.client._reconnect import EXCERPT_BYTES, Reconnection, Reject, Stream, wait_or_raise
from ssehub.wire import Message

if TYPE_CHECKING:
    import httpx


def _shutdown_socket(response: httpx.Response | None) -> None:
    """Wake a read blocked on ``response`` from another thread by shutting its socket down."""
    if response is None:
        return
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class SyncEventSource(Source):
    """The blocking counterpart of `EventSource`, for plain threads; create it with `connect_sync`.

    Iterate it in one thread; `close` may be called from any thread and ends that iteration
    (a blocked read is woken by shutting the socket down). Raises and ends as `EventSource` does.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        reconnect_delay: float = 3.0,
        max_reconnect_delay: float = 30.0,
        max_reconnects: int | None = None,
        jitter: float = 0.1,
        connect_timeout: float = 10.0,
        read_timeout: float | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        require_httpx()
        import httpx

        self._policy = Reconnection(
            url,
            headers,
            last_event_id,
            reconnect_delay,
            max_reconnect_delay,
            max_reconnects,
            jitter,
        )
        self._own_client = client is None
        self._client = client or httpx.Client(
            timeout=http_timeout(connect_timeout, read_timeout), follow_redirects=True
        )
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._wait: float | None = None
        self._woken = threading.Event()
        self._lock = threading.RLock()
        self._idle = threading.Event()
        self._idle.set()

    def _reconnection(self) -> Reconnection:
        return self._policy

    def __iter__(self) -> SyncEventSource:
        return self

    def __next__(self) -> Message:
        while True:
            message = self._policy.next_event()
            if message is not None:
                return message
            if self._policy.closed:
                self._release()
                raise StopIteration
            self._idle.clear()
            try:
                if self._response is None:
                    self._open()
                else:
                    self._read()
            except BaseException:
                self._policy.close()
                self._release()
                raise
            finally:
                self._idle.set()

    def _open(self) -> None:
        import httpx

        policy = self._policy
        if self._wait is not None:
            self._woken.wait(self._wait)
            self._wait = None
            if policy.closed:
                return
        request = self._client.build_request(
            "GET", policy.request_url(), headers=policy.encoded_headers()
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.LocalProtocolError as exc:
            raise UnsendableRequest(f"cannot send GET {policy.url}: {exc}") from exc
        except httpx.TransportError as exc:
            self._wait = wait_or_raise(policy.dropped(exc))
            return
        answer = policy.on_response(response.status_code, response.headers)
        if isinstance(answer, Stream):
            with self._lock:
                self._response = response
                self._chunks = response.iter_bytes()
            if policy.closed:  # closed by another thread since the answer came
                _shutdown_socket(response)
        elif isinstance(answer, Reject):
            raise answer.error(self._excerpt(response))
        else:
            response.close()
            self._wait = wait_or_raise(answer)

    @staticmethod
    def _excerpt(response: httpx.Response) -> bytes:
        body = b""
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= EXCERPT_BYTES:
                    break
        except Exception:
            pass  # the status is what matters; the body is only a hint
        finally:
            response.close()
        return body

    def _read(self) -> None:
        import httpx

        assert self._chunks is not None
        error: BaseException | None = None
        try:
            chunk = next(self._chunks)
        except StopIteration:
            pass  # the server ended the stream: reconnect, as a browser does
        except (httpx.TransportError, httpx.StreamError) as exc:
            error = exc
        else:
            self._policy.feed(chunk)
            return
        self._drop_response()
        self._wait = wait_or_raise(self._policy.dropped(error))

    def _drop_response(self) -> None:
        with self._lock:
            response, self._response, self._chunks = self._response, None, None
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()

    def _release(self) -> None:
        with self._lock:
            self._drop_response()
            if self._own_client and not self._client.is_closed:
                self._client.close()

    def close(self) -> None:
        """Close the stream and the connection; safe from any thread.

        An iteration blocked in another thread wakes up and ends (this waits up to 5 s for it).
        Events already received but not yet iterated are discarded.
        """
        self._policy.close()
        self._woken.set()
        with self._lock:
            _shutdown_socket(self._response)
        if not self._idle.wait(5.0):
            return  # the reader is stuck in a connect; it releases everything when it returns
        self._release()

    def __enter__(self) -> SyncEventSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect_sync(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    last_event_id: str | None = None,
    reconnect_delay: float = 3.0,
    max_reconnect_delay: float = 30.0,
    max_reconnects: int | None = None,
    jitter: float = 0.1,
    connect_timeout: float = 10.0,
    read_timeout: float | None = None,
    client: httpx.Client | None = None,
) -> SyncEventSource:
    """Open a blocking, reconnecting stream of `Message` from ``url`` (see `connect`).

    Takes the same arguments as `connect`, with an `httpx.Client` for ``client``.
    """
    return SyncEventSource(
        url,
        headers=headers,
        last_event_id=last_event_id,
        reconnect_delay=reconnect_delay,
        max_reconnect_delay=max_reconnect_delay,
        max_reconnects=max_reconnects,
        jitter=jitter,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        client=client,
    )
