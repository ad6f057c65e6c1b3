"""The Hub: channels, publish and broadcast, replay, keep-alive and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from ssehub.backends.base import Backend, PublishResult
from ssehub.backends.memory import MemoryBackend
from ssehub.errors import (
    BackendUnavailable,
    BroadcastIncomplete,
    HubClosed,
    InvalidMessage,
    InvalidSelector,
    SubscriptionDenied,
    UnsupportedServer,
)
from ssehub.request import Request
from ssehub.resume import GAP_EVENT, Position, Replay, Resume
from ssehub.selectors import Selector, Selectors
from ssehub.subscription import CloseReason, Subscription, ThreadedSubscription
from ssehub.types import ASGICallable, WSGICallable
from ssehub.wire import Message, encode_comment, id_problem

__all__ = [
    "ADAPTERS",
    "BROADCAST_SLICE",
    "DEFAULT_EXIT_GRACE",
    "DEFAULT_HEADERS",
    "DEFAULT_HISTORY_BYTES",
    "DEFAULT_HISTORY_MEMORY",
    "EXIT_SIGNALS",
    "GAP_EVENT",
    "Access",
    "Channel",
    "Hub",
    "Selection",
    "as_selectors",
]

T = TypeVar("T")

ADAPTERS: dict[str, Callable[[Hub], Any]] = {}
"""The protocol adapters behind `Hub.asgi` and `Hub.wsgi`, by name, each a factory taking the
hub. `ssehub.asgi` and `ssehub.wsgi` register themselves here when imported (``import ssehub``
imports both), so the hub, a lower layer, never imports the adapters built on it."""

_KEEPALIVE = encode_comment("ping")

DEFAULT_HISTORY_BYTES = 16 * 1024 * 1024
"""History kept per channel by default, in bytes (16 MiB)."""

DEFAULT_HISTORY_MEMORY = 256 * 1024 * 1024
"""History kept for the whole hub by default, in bytes (256 MiB); the oldest events go first."""

BROADCAST_SLICE = 0.005
"""Seconds a broadcast may publish before it lets the event loop run other work. Short, since
a request that arrives meanwhile needs a few loop iterations (read, publish, write), and the
broadcast takes a slice in each."""

DEFAULT_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
)

EXIT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
"""The signals on which a hub ends its streams (see ``end_streams_on_signal`` on `Hub`)."""

ConnectHook = Callable[[Subscription], "Awaitable[None] | None"]
AuthorizeHook = Callable[..., Any]
"""``authorize(request)`` returning a bool, or ``authorize(request, channels)`` returning a
bool or the allowed subset of ``channels`` (a list of selectors); either may be async."""

Selection = str | Sequence[str] | Selectors
"""What a subscription reads: one channel name, or channel selectors (exact names, ``*``, URI
templates), as a sequence of str or a `Selectors`."""


@dataclass(frozen=True, slots=True)
class Access:
    """What an ``authorize`` hook grants a stream, when a bool says too little.

    ``channels``: the selectors the stream reads (None: those it asked for). ``private``: the
    channels whose private events it may read (None: public events only). ``expires``: the UNIX
    time at which the hub ends the stream (`CloseReason.EXPIRED`; a token's ``exp``), or None.
    ``payload``: any value to attach to the stream as `Subscription.payload` (a token's
    ``payload`` claim, shown by presence), or None.
    """

    channels: Sequence[str] | Selectors | None = None
    private: Sequence[str] | Selectors | None = None
    expires: float | None = None
    payload: Any = None


def _wants_channels(hook: Callable[..., Any]) -> bool:
    # Whether an authorize hook takes (request, channels) rather than (request).
    try:
        params = list(inspect.signature(hook).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def as_selectors(selection: Sequence[str] | Selectors) -> Selectors:
    """``selection`` as `Selectors` (raises `InvalidSelector` for a bad one)."""
    return selection if isinstance(selection, Selectors) else Selectors(selection)


def _green_threads() -> str | None:
    # The library that monkey-patched threads into green threads in this process, if any.
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return "gevent"
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread"):
        return "eventlet"
    return None


class Channel:
    """A channel's local subscribers and counters (created by its first subscriber)."""

    __slots__ = (
        "delivered",
        "holding",
        "name",
        "observers",
        "position",
        "subscribers",
        "trailing",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        """The channel's name (by default the request path, e.g. ``/events/news``)."""
        self.subscribers: dict[Subscription, None] = {}
        """The live subscribers, in arrival order."""
        self.holding: dict[Subscription, Resume] = {}
        """Subscribers still being replayed, each with the live events held for it."""
        self.delivered = 0
        """Events handed to this hub's subscribers of the channel (one per subscriber)."""
        self.position: Position | None = None
        """The position of the newest event the backend delivered here (None before one)."""
        self.trailing: dict[Subscription, Position] = {}
        """Resumed subscribers whose replay went past the feed: live events at or before the
        position are already theirs, and are not pushed to them again."""
        self.observers: dict[Subscription, None] = {}
        """Live streams that are not clients (the dashboard's watch): they get every live event
        and are counted nowhere (`Hub.subscribe` with ``observer=True``)."""

    def __len__(self) -> int:
        """The channel's clients (observers are not clients)."""
        return len(self.subscribers) + len(self.holding)

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} clients={len(self)}>"


def _may_read(sub: Subscription, names: tuple[str, ...]) -> bool:
    # Whether ``sub`` may read a private event published to ``names``.
    private = sub.private
    return private is not None and any(private.matches(name) for name in names)


def _covered(sub: Subscription, position: Position, until: Position) -> bool:
    # Whether a live event at ``position`` is already the resumed subscriber's (replayed or
    # before its id): compared within the channel, or by cross-channel order for a subscriber
    # reading several channels.
    if sub.selectors is not None:
        return position[-1] <= until[-1]
    return position <= until


SignalHandler = Callable[[int, FrameType | None], Any]


class _SignalLink:
    """A signal handler chained in front of the one it replaced: it asks its hub to end its
    streams, then calls the previous handler with the same arguments, so the server's own
    handling (uvicorn's, gunicorn's, Python's KeyboardInterrupt) runs exactly as before.

    It holds the hub weakly, and goes inert (a pure pass-through) once the hub shuts down or is
    collected, so a link that cannot be removed (another handler was chained on top of it) never
    keeps a hub alive or acts for it.
    """

    __slots__ = ("hub", "previous")

    def __init__(self, hub: Hub, previous: SignalHandler) -> None:
        self.hub: weakref.ref[Hub] | None = weakref.ref(hub)
        self.previous = previous

    @property
    def inert(self) -> bool:
        hub = self.hub() if self.hub is not None else None
        return hub is None or hub.closed

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        hub = self.hub() if self.hub is not None else None
        if hub is not None:
            hub._exit_signal()
        return self.previous(signum, frame)


DEFAULT_EXIT_GRACE = 1.0
"""Seconds a process whose SIGTERM action is the default (waitress, a plain script) lives on
after the signal, so that its hub's streams end cleanly before it ends as the default would."""


class _DefaultExit:
    """Stands for the default action of SIGTERM (the process ends at once) behind a
    `_SignalLink`: it ends the process the same way (by the signal, so its exit status is
    unchanged), once its hub's open streams have ended or `DEFAULT_EXIT_GRACE` seconds have
    passed. Installed only where no handler was (waitress sets none)."""

    __slots__ = ("hub",)

    def __init__(self, hub: Hub) -> None:
        self.hub = weakref.ref(hub)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        # In the main thread: a second signal meanwhile ends the process at once, as before.
        signal.signal(signum, signal.SIG_DFL)
        threading.Thread(target=self._end, args=(signum,), name="ssehub-exit", daemon=True).start()

    def _end(self, signum: int) -> None:
        deadline = time.monotonic() + DEFAULT_EXIT_GRACE
        while time.monotonic() < deadline:
            hub = self.hub()
            if hub is None or not (hub._clients or hub._streams):
                time.sleep(0.05)  # the server writes the streams' last bytes
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signum)


PARENT_EXIT_POLL = 0.1
"""Seconds between two looks at the exit flag of a server's parent process (see
`_parent_exit_flag`)."""


def _parent_exit_flag() -> Any | None:
    """The flag by which a server's parent process tells this worker process to exit, where
    no signal reaches the worker: hypercorn's default mode ignores SIGINT in its workers and
    sets a `multiprocessing` event instead (its workers poll it, so does the hub). None
    elsewhere, and whenever the worker's launch does not look as expected."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:  # a spawned worker has imported it: this process is no worker
        return None
    process = multiprocessing.current_process()
    target = getattr(process, "_target", None)
    kwargs = getattr(process, "_kwargs", None)
    if not isinstance(kwargs, dict):
        return None
    if not str(getattr(target, "__module__", "")).startswith("hypercorn."):
        return None
    flag = kwargs.get("shutdown_event")
    return flag if callable(getattr(flag, "is_set", None)) else None


def _publication(
    channel: str | Sequence[str], message: Message | object
) -> tuple[str | tuple[str, ...], Message]:
    """What `Hub.publish` hands its backend: the channel (or the distinct channels) and the
    message, checked (`InvalidMessage`)."""
    if not isinstance(message, Message):
        message = Message(message)
    elif message.id is not None and (problem := id_problem(message.id)) is not None:
        raise InvalidMessage(f"id {message.id!r} cannot be resumed from: {problem}")
    if isinstance(channel, str):
        return channel, message
    names = tuple(dict.fromkeys(channel))
    if not names or not all(isinstance(name, str) and name for name in names):
        raise InvalidMessage(f"channels must be non-empty names, got {channel!r}")
    return (names[0] if len(names) == 1 else names), message


class Hub:
    """A Server-Sent Events hub: isolated channels, broadcast and ``Last-Event-ID`` replay.

    Async methods run on the event loop the hub first runs on (it binds to it); from plain
    threads use `publish_threadsafe` and `broadcast_threadsafe`, which start a loop thread of the
    hub's own when no loop runs it yet. Mount `asgi` in any ASGI framework.

    Args:
        history: events kept per channel for replay (0 keeps none).
        history_ttl: seconds an event stays in history, when set.
        history_bytes: bytes of history kept per channel (None: no byte bound); the oldest
            events of the channel go first.
        history_memory: bytes of history kept for the whole hub (None: no bound); past it the
            hub's oldest retained events go first, whichever channel holds them, and a client
            resuming from one of them is sent the `GAP_EVENT`. Both byte bounds apply to
            in-process history (the default backend), not to Redis.
        retry: reconnection delay in milliseconds sent once when a stream opens.
        keepalive: seconds between ``:`` comments on idle streams (None disables them).
        headers: extra response headers (CORS); they override the defaults.
        channel_name: maps a `Request` to its channel (default: the request path).
        max_buffer: bytes a client may fall behind before it is dropped (it then resumes); also
            the largest event `publish` accepts once encoded (`EventTooLarge` past it).
        backend: where history lives and how events reach other hubs (default in-memory).
        on_connect: called with each new `Subscription` (may be async; may `send` to it).
        on_disconnect: called with each ended `Subscription` (may be async).
        authorize: called with the `Request` (or with the `Request` and the list of channel
            selectors asked for, when it takes two arguments); a false result refuses the
            stream with 403, a list (from the two-argument form) narrows the selectors to it,
            and an `Access` also grants private events and sets when the stream ends. It may
            raise `ssehub.InvalidToken` (answered 401).
        end_streams_on_signal: on SIGINT or SIGTERM (Ctrl+C, ``kill``), refuse new streams and
            end the open ones cleanly, so that the server can exit at once instead of waiting
            for the streams (uvicorn, hypercorn, gunicorn and waitress wait for open responses
            before they shut the app down). The hub chains a handler in front of the one the
            server installed and then calls it, so the server stops as it always does; it does
            so when it is made in the main thread or starts on the main thread's event loop,
            and only for signals that have a Python handler (an ignored signal is left alone).
            A SIGTERM with no handler at all (waitress installs none; its default ends the
            process at once and cuts every stream) still ends the process by the signal, but
            after the streams ended (at most `DEFAULT_EXIT_GRACE` seconds later). `shutdown`
            removes it. False leaves signals alone: call `shutdown` (or `restart`) yourself.
    """

    def __init__(
        self,
        *,
        history: int = 1000,
        history_ttl: float | None = None,
        history_bytes: int | None = DEFAULT_HISTORY_BYTES,
        history_memory: int | None = DEFAULT_HISTORY_MEMORY,
        retry: int | None = None,
        keepalive: float | None = 15.0,
        headers: Mapping[str, str] | None = None,
        channel_name: Callable[[Request], str] | None = None,
        max_buffer: int = 256 * 1024,
        backend: Backend | None = None,
        on_connect: ConnectHook | None = None,
        on_disconnect: ConnectHook | None = None,
        authorize: AuthorizeHook | None = None,
        end_streams_on_signal: bool = True,
    ) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be a non-negative int, got {history!r}")
        if history_ttl is not None and history_ttl <= 0:
            raise ValueError(f"history_ttl must be positive seconds, got {history_ttl!r}")
        for name, value in (("history_bytes", history_bytes), ("history_memory", history_memory)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ValueError(
                    f"{name} must be a positive number of bytes or None, got {value!r}"
                )
        if keepalive is not None and keepalive <= 0:
            raise ValueError(f"keepalive must be positive seconds or None, got {keepalive!r}")
        if max_buffer <= 0:
            raise ValueError(f"max_buffer must be a positive number of bytes, got {max_buffer!r}")
        self.history = history
        self.history_ttl = history_ttl
        self.history_bytes = history_bytes
        self.history_memory = history_memory
        self.keepalive = keepalive
        self.max_buffer = max_buffer
        self.retry = retry
        if retry is not None:
            Message(retry=retry)  # validated as a message's retry field is
        self._retry_bytes = f"retry: {retry}\n\n".encode() if retry is not None else b""
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        self.headers = self._merge_headers(headers or {})
        self._channel_name = channel_name
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._authorize = authorize
        self._authorize_channels = authorize is not None and _wants_channels(authorize)
        self._channels: dict[str, Channel] = {}
        # Subscriptions whose selectors are not all exact names (``*``, templates): they are in
        # no `Channel`; every delivered event is matched against their selectors.
        self._wild: dict[Subscription, Selectors] = {}
        # Wild subscriptions being resumed (live events held), and resumed ones whose replay
        # went past the feed (events up to that position are theirs already).
        self._wild_holding: dict[Subscription, Resume] = {}
        self._wild_trailing: dict[Subscription, Position] = {}
        # The channels each subscription reading several exact channels is registered in.
        self._members: dict[Subscription, tuple[str, ...]] = {}
        # The timers that end streams whose authorization expires (`Access.expires`).
        self._expiry: dict[Subscription, asyncio.TimerHandle] = {}
        # Per-request streams (EventStream) that read no channel but end with the hub.
        self._streams: dict[Subscription, None] = {}
        # Streams subscribed and not yet unsubscribed (being replayed or live), every channel.
        self._clients = 0
        self._observers = 0  # observer streams open (never counted as clients)
        self._published: dict[str, int] = {}
        self.published_total = 0
        """Events this hub has published, every channel (forgotten channels included)."""
        self.replayed = 0
        """Events sent from history to resuming clients."""
        self.dropped_slow = 0
        """Clients dropped for falling more than ``max_buffer`` behind."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Future[None] | None = None
        self._closed = False
        self._shutdown_done: asyncio.Event | None = None
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._adapters: dict[str, Any] = {}
        self.end_streams_on_signal = end_streams_on_signal
        # Set by a SIGINT/SIGTERM: new streams are refused, the open ones are being ended.
        self._draining = False
        self._signal_links: dict[int, _SignalLink] = {}
        self._parent_exit: asyncio.TimerHandle | None = None
        if end_streams_on_signal:
            self._link_signals()

    # -- configuration ----------------------------------------------------------------------

    @staticmethod
    def _merge_headers(extra: Mapping[str, str]) -> list[tuple[str, str]]:
        merged = {name: (name, value) for name, value in DEFAULT_HEADERS}
        for name, value in extra.items():
            if any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} may not contain CR, LF or NUL")
            merged[name.lower()] = (name, value)
        return list(merged.values())

    @property
    def asgi(self) -> ASGICallable:
        """The ASGI app that streams channels (mount it at a route, e.g. ``/events``).

        An `ssehub.asgi.ASGIApp`, made on first use."""
        return self._adapter("asgi")  # type: ignore[no-any-return]

    @property
    def wsgi(self) -> WSGICallable:
        """The WSGI app that streams channels from a threaded server (one thread per stream).

        An `ssehub.wsgi.WSGIApp`, made on first use."""
        return self._adapter("wsgi")  # type: ignore[no-any-return]

    def _adapter(self, name: str) -> Any:
        app = self._adapters.get(name)
        if app is None:
            app = self._adapters[name] = ADAPTERS[name](self)
        return app

    def channel_for(self, request: Request) -> str | list[str]:
        """What a request subscribes to: ``channel_name(request)`` (a channel name, or a list of
        selectors), else the ``channel`` query parameters when there are any (``?channel=a&
        channel=/rooms/{id}``: selectors), else the request's path."""
        if self._channel_name is not None:
            return self._channel_name(request)
        selectors = request.query_values("channel")
        if selectors:
            return selectors
        return request.path

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once `shutdown` has begun."""
        return self._closed

    @property
    def draining(self) -> bool:
        """True once the server received a signal to exit (see ``end_streams_on_signal``): new
        streams are refused and open ones are being ended; `shutdown` follows."""
        return self._draining

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the hub is bound to (None before its first use)."""
        return self._loop

    async def start(self) -> None:
        """Bind to the running loop and start the backend and keep-alive timer.

        Called for you on first use; call it at application start-up to fail early.
        """
        if self._starting is not None:
            await asyncio.shield(self._starting)
            return
        if self._closed:
            raise HubClosed("the hub is shut down")
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self.end_streams_on_signal:
            # On the main thread's loop the hub serves in a server's process; the server may
            # have installed its signal handlers since the hub was made.
            self._link_signals()
            self._watch_parent_exit()
        self._starting = loop.create_future()
        try:
            await self.backend.start(
                self._deliver,
                history=self.history,
                history_ttl=self.history_ttl,
                history_bytes=self.history_bytes,
                history_memory=self.history_memory,
                max_event=self.max_buffer,
                forget=self._history_forgotten,
            )
        except BaseException as exc:
            self._starting.set_exception(exc)
            self._starting.exception()  # mark retrieved
            self._starting = None
            raise
        self._starting.set_result(None)
        if self.keepalive is not None:
            self._keepalive_handle = loop.call_later(self.keepalive, self._keepalive_tick)

    async def _ready(self) -> None:
        if self._closed:
            raise HubClosed("the hub is shut down")
        starting = self._starting
        if starting is None or not starting.done():
            await self.start()
        elif self._loop is not asyncio.get_running_loop():
            self._wrong_loop()

    def _wrong_loop(self) -> None:
        own = " (a loop of its own, started by a *_threadsafe call)" if self._thread else ""
        raise RuntimeError(
            f"this hub is bound to another event loop{own}: a hub serves one loop; call its "
            "async methods there, and use publish_threadsafe() from other threads"
        )

    async def restart(self) -> None:
        """End every open stream (clients reconnect and resume); keep serving."""
        self._close_all(CloseReason.RESTART)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop gracefully: refuse new streams, end open ones cleanly, close the backend.

        Returns when the streams have ended (or after ``timeout`` seconds). Calling it again
        waits for the first call and is otherwise harmless.
        """
        if self._shutdown_done is not None:
            await self._shutdown_done.wait()
            return
        self._shutdown_done = asyncio.Event()
        self._closed = True
        try:
            self._close_all(CloseReason.SHUTDOWN)
            # Give writers the time to send what is queued and end their responses.
            deadline = asyncio.get_running_loop().time() + timeout
            while (self._channels or self._streams or self._wild) and (
                asyncio.get_running_loop().time() < deadline
            ):
                if all(
                    sub.pending_bytes == 0 and not sub.writing
                    for subs in (
                        *(list(ch.subscribers) for ch in self._channels.values()),
                        list(self._streams),
                        list(self._wild),
                    )
                    for sub in subs
                ):
                    await asyncio.sleep(0.01)  # a last turn for writers to end responses
                    break
                await asyncio.sleep(0.01)
            for ch in list(self._channels.values()):
                for sub in [*ch.subscribers, *ch.observers]:
                    self.unsubscribe(sub)
            for sub in list(self._wild):
                self.unsubscribe(sub)
            if self._keepalive_handle is not None:
                self._keepalive_handle.cancel()
                self._keepalive_handle = None
            if self._starting is not None:
                await self.backend.close()
        finally:
            self._unlink_signals()
            if self._parent_exit is not None:
                self._parent_exit.cancel()
                self._parent_exit = None
            self._shutdown_done.set()
            thread = self._thread
            loop = self._loop
            if thread is not None and loop is not None and threading.current_thread() is thread:
                loop.call_soon(loop.stop)

    def _close_all(self, reason: str) -> None:
        for channel in list(self._channels.values()):
            for sub in [*channel.subscribers, *channel.holding, *channel.observers]:
                sub.close(reason)
        for sub in list(self._streams):
            sub.close(reason)
        for sub in list(self._wild):
            sub.close(reason)

    def attach(self, sub: Subscription) -> None:
        """Have `shutdown` and `restart` end ``sub``, a stream that reads no channel (a
        per-request `ssehub.EventStream`). It never counts as a client of a channel.

        Called on the loop that writes the stream. A hub that serves only such streams never
        starts, so the first call binds it to that loop and, on the main thread's loop, chains
        its signal handlers (see ``end_streams_on_signal``): the server installed its own
        since the hub was made."""
        self._streams[sub] = None
        if self._loop is None and not self._closed:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            if self.end_streams_on_signal:
                self._link_signals()
                self._watch_parent_exit()

    def detach(self, sub: Subscription) -> None:
        """Forget a stream `attach` gave the hub (its writer calls this when it ends)."""
        self._streams.pop(sub, None)

    def _link_signals(self) -> None:
        # Chain a `_SignalLink` in front of each exit signal's Python handler, once per handler:
        # a link of this hub already in front is kept; inert links in front are dropped.
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set signal handlers
        for signum in EXIT_SIGNALS:
            current = signal.getsignal(signum)
            while isinstance(current, _SignalLink) and current.inert:
                current = current.previous
            if (
                isinstance(current, _SignalLink)
                and current.hub is not None
                and current.hub() is self
            ):
                continue
            if current == signal.SIG_DFL and signum == signal.SIGTERM:
                # No handler (waitress, a plain script): the default would cut every stream.
                current = _DefaultExit(self)
            elif not callable(current):
                continue  # SIG_IGN is meant, and SIGINT's default is Python's own: leave them
            link = _SignalLink(self, current)
            signal.signal(signum, link)
            self._signal_links[signum] = link

    def _watch_parent_exit(self) -> None:
        # In a worker process that hears of exit signals only from its parent (hypercorn's
        # default mode), look at the parent's exit flag on the hub's loop, as the server does.
        loop = self._loop
        if self._parent_exit is not None or loop is None:
            return
        flag = _parent_exit_flag()
        if flag is not None:
            self._parent_exit = loop.call_later(
                PARENT_EXIT_POLL, self._parent_exit_tick, flag, loop
            )

    def _parent_exit_tick(self, flag: Any, loop: asyncio.AbstractEventLoop) -> None:
        # Until the flag is set (then the streams end) or `shutdown` cancels the next look.
        if flag.is_set():
            self._parent_exit = None
            self._exit_signal()
        else:
            self._parent_exit = loop.call_later(
                PARENT_EXIT_POLL, self._parent_exit_tick, flag, loop
            )

    def _unlink_signals(self) -> None:
        # Put back the handlers this hub replaced where its link is still in front; a link
        # that another handler now wraps is made inert instead.
        links, self._signal_links = self._signal_links, {}
        main = threading.current_thread() is threading.main_thread()
        for signum, link in links.items():
            link.hub = None
            if main and signal.getsignal(signum) is link:
                previous = link.previous
                signal.signal(
                    signum, signal.SIG_DFL if isinstance(previous, _DefaultExit) else previous
                )

    def _exit_signal(self) -> None:
        # Called by a `_SignalLink`, in the main thread, between two bytecodes of whatever it was
        # running (maybe this hub's loop, maybe code holding a subscription's lock): only flag
        # and hand the work to the hub's loop through its thread-safe queue.
        if self._draining or self._closed:
            return
        self._draining = True  # WSGI per-request streams poll it (`draining`)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._close_all, CloseReason.SHUTDOWN)

    def _keepalive_tick(self) -> None:
        for channel in self._channels.values():
            for sub in channel.subscribers:
                if sub.selectors is None:  # one reading several channels is pinged below
                    sub.keepalive(_KEEPALIVE)
            for sub in channel.observers:
                sub.keepalive(_KEEPALIVE)
        for sub in self._wild:
            sub.keepalive(_KEEPALIVE)
        for sub in self._members:
            sub.keepalive(_KEEPALIVE)
        if self._loop is not None and self.keepalive is not None and not self._closed:
            self._keepalive_handle = self._loop.call_later(self.keepalive, self._keepalive_tick)

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self, channel: str | Sequence[str], message: Message | object, *, private: bool = False
    ) -> PublishResult:
        """Publish ``message`` to ``channel``; return its id.

        ``message`` is a `Message`, or the data of one: a str, or any value JSON can encode
        (``{"price": 42}`` is sent as ``data: {"price":42}``). ``channel`` may be a list of
        channel names: one event (one id) is then stored in each channel's history, and a
        subscriber reading several of them receives it once. A ``private`` event reaches only
        subscribers allowed to read the channel's private events (``private`` of `subscribe`),
        live and on replay.

        The id is a `PublishResult`: a str whose ``duplicate`` is True when the message's own
        id was already in the channel's retained history, in which case nothing was stored or
        delivered (a publisher may retry safely). Never waits on a subscriber. Raises
        `HubClosed` after shutdown, `EventTooLarge` when the encoded event is over
        ``max_buffer`` (nothing is stored or delivered), `BackendUnavailable` when the backend
        cannot store it, and `InvalidMessage` for an id no client could send back as
        ``Last-Event-ID`` (`ssehub.wire.id_problem`: leading or trailing whitespace, a control
        character).
        """
        if self._starting is None or self._closed:
            await self._ready()
        elif self._loop is not asyncio.get_running_loop():
            self._wrong_loop()
        target, message = _publication(channel, message)
        if private:
            result = await self.backend.publish(target, message, private=True)
        else:
            result = await self.backend.publish(target, message)
        if not isinstance(result, PublishResult):
            result = PublishResult(result)
        self._count_published(target, result)
        return result

    def publish_nowait(
        self, channel: str | Sequence[str], message: Message | object, *, private: bool = False
    ) -> PublishResult | None:
        """`publish` without awaiting, where the backend need not wait (the in-memory default;
        the durable backend for the events it writes at once, `Backend.publish_now`): the
        event's id, or None when it cannot be published at once, with nothing stored or
        delivered; then await `publish` (Redis always waits; the local bus of ``--workers``
        waits for a message with an id of its own, see
        `ssehub.backends.localbus.LocalBusBackend.publish_now`; so does a hub not started yet
        or shut down).

        For a caller that is not a coroutine, or on a hot path: it saves the coroutines of
        `publish`. Call it on the hub's event loop. Raises as `publish` does otherwise.
        """
        starting = self._starting
        if starting is None or not starting.done() or self._closed:
            return None
        if self._loop is not asyncio.get_running_loop():
            self._wrong_loop()
        target, message = _publication(channel, message)
        result = self.backend.publish_now(target, message, private=private)
        if result is not None:
            self._count_published(target, result)
        return result

    async def broadcast(
        self, message: Message | object, *, exclude: Collection[str] = ()
    ) -> dict[str, PublishResult]:
        """Publish ``message`` to every channel (with subscribers or history) but those in
        ``exclude`` (reserved channels, such as the standalone hub's presence channel); ids by
        channel.

        The backend stores the channels a batch at a time (``Backend.broadcast_batch``: a few
        round trips to Redis, not one per channel), the event loop runs other work every
        `BROADCAST_SLICE` seconds between two batches,
        so a broadcast over many channels never stalls the streams. Raises as `publish` does
        (`EventTooLarge` before any channel got the event), and `BroadcastIncomplete` (a
        `BackendUnavailable`, with the ids stored and the channels that failed) when the
        backend could store it on some channels only.
        """
        await self._ready()
        if not isinstance(message, Message):
            message = Message(message)
        elif message.id is not None and (problem := id_problem(message.id)) is not None:
            raise InvalidMessage(f"id {message.id!r} cannot be resumed from: {problem}")
        names = dict.fromkeys(self._channels)
        names.update(dict.fromkeys(await self.backend.channels()))
        for name in exclude:
            names.pop(name, None)
        ordered = list(names)
        ids: dict[str, PublishResult] = {}
        failed: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BROADCAST_SLICE
        size = max(1, self.backend.broadcast_batch)
        for start in range(0, len(ordered), size):
            batch = ordered[start : start + size]
            results = await self.backend.publish_each(batch, message)
            for name, result in zip(batch, results, strict=True):
                if isinstance(result, BackendUnavailable):
                    failed[name] = str(result)
                    continue
                ids[name] = result
                self._count_published(name, result)
            if loop.time() >= deadline:
                await asyncio.sleep(0)
                deadline = loop.time() + BROADCAST_SLICE
        if failed:
            if not ids:
                raise BackendUnavailable(next(iter(failed.values())))
            raise BroadcastIncomplete(dict(ids), failed)
        return ids

    def _count_published(self, target: str | tuple[str, ...], result: PublishResult) -> None:
        if not result.duplicate:
            self.published_total += 1
            # A channel's counter lives as long as its state: local subscribers or retained
            # history.
            for name in (target,) if isinstance(target, str) else target:
                if name in self._channels or self.backend.retains(name):
                    self._published[name] = self._published.get(name, 0) + 1

    def _deliver(
        self,
        channel: str | tuple[str, ...],
        event_id: str,
        data: bytes,
        position: Position | None = None,
        private: bool = False,
        /,
    ) -> None:
        if self._wild:
            self._deliver_wild(channel, event_id, data, position, private)
        if type(channel) is not str or private:
            self._deliver_selected(channel, event_id, data, position, private)
            return
        ch = self._channels.get(channel)
        if ch is None:
            return
        if position is not None:
            ch.position = position
        subscribers = ch.subscribers
        if ch.trailing:
            self._deliver_trailing(ch, data, position)
        else:
            for sub in subscribers:
                sub.push(data)
            ch.delivered += len(subscribers)
        if ch.holding:
            for resume in ch.holding.values():
                resume.hold(event_id, data, position)
        if ch.observers:
            for sub in ch.observers:
                sub.push(data)

    @staticmethod
    def _deliver_trailing(ch: Channel, data: bytes, position: Position | None) -> None:
        # The slow path, only while a resumed subscriber's replay is ahead of the feed.
        trailing = ch.trailing
        pushed = 0
        for sub in ch.subscribers:
            until = trailing.get(sub)
            if until is not None:
                if position is not None and _covered(sub, position, until):
                    continue  # replayed already, or before the resume id
                del trailing[sub]
            sub.push(data)
            pushed += 1
        ch.delivered += pushed

    def _deliver_selected(
        self,
        channel: str | tuple[str, ...],
        event_id: str,
        data: bytes,
        position: Position | None,
        private: bool,
    ) -> None:
        # An event of several channels, or a private one: each subscriber once, and a private
        # event only to those allowed to read one of its channels.
        names = (channel,) if isinstance(channel, str) else channel
        targets: dict[Subscription, Channel] = {}
        holding: dict[Subscription, Resume] = {}
        observers: dict[Subscription, None] = {}
        for name in names:
            ch = self._channels.get(name)
            if ch is None:
                continue
            if position is not None:
                ch.position = position
            for sub in ch.subscribers:
                if sub not in targets and (not private or _may_read(sub, names)):
                    targets[sub] = ch
            for sub, resume in ch.holding.items():
                if not private or _may_read(sub, names):
                    holding[sub] = resume
            if not private:
                observers.update(ch.observers)
        for sub, ch in targets.items():
            until = ch.trailing.get(sub) if ch.trailing else None
            if until is not None:
                if position is not None and _covered(sub, position, until):
                    continue
                for name in self._members.get(sub, (sub.channel,)):
                    member = self._channels.get(name)
                    if member is not None:
                        member.trailing.pop(sub, None)
            sub.push(data)
            ch.delivered += 1
        for resume in holding.values():
            resume.hold(event_id, data, position)
        for sub in observers:
            sub.push(data)

    def _deliver_wild(
        self,
        channel: str | tuple[str, ...],
        event_id: str,
        data: bytes,
        position: Position | None,
        private: bool,
    ) -> None:
        # Subscribers with ``*`` or templates among their selectors: match every event.
        names = (channel,) if isinstance(channel, str) else channel
        for sub, selectors in self._wild.items():
            if not any(selectors.matches(name) for name in names):
                continue
            if private and not _may_read(sub, names):
                continue
            resume = self._wild_holding.get(sub)
            if resume is not None:
                resume.hold(event_id, data, position)
                continue
            until = self._wild_trailing.get(sub)
            if until is not None:
                if position is not None and _covered(sub, position, until):
                    continue
                del self._wild_trailing[sub]
            sub.push(data)

    # -- threads -----------------------------------------------------------------------------

    def _thread_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                raise RuntimeError(
                    "called from the hub's own event loop: use the async method instead"
                )
            return loop
        if self._closed:
            # Shut down, and its loop (the hub's own thread, or the app's) no longer runs.
            raise HubClosed("the hub is shut down")
        if loop is not None and self._thread is None:
            raise RuntimeError("the hub's event loop is not running")
        green = _green_threads()
        if green is not None:
            # Its loop thread would be a green thread that every other green thread sees as
            # its own running loop, and the hub's thread-safe hand-offs would block the process.
            raise UnsupportedServer(
                f"ssehub's thread-based API (publish_threadsafe, the WSGI, Flask and Django "
                f"sync integrations) does not run under {green}'s monkey-patching (e.g. "
                f"gunicorn -k {green}): use threads (gunicorn -k gthread, waitress) or an "
                "ASGI server with the async integrations"
            )
        with self._thread_lock:
            if self._thread is None:
                new_loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(new_loop)
                    new_loop.call_soon(started.set)
                    try:
                        new_loop.run_forever()
                    finally:
                        new_loop.close()  # shutdown() stops it: free its selector and pipe

                self._thread = threading.Thread(target=run, name="ssehub-hub", daemon=True)
                self._thread.start()
                started.wait()
                asyncio.run_coroutine_threadsafe(self.start(), new_loop).result()
        assert self._loop is not None
        return self._loop

    def run_threadsafe(self, coro: Coroutine[Any, Any, T], timeout: float | None = 10.0) -> T:
        """Run ``coro`` on the hub's loop from another thread and return its result.

        Blocks the calling thread (up to ``timeout`` seconds). If no loop runs the hub yet, the
        hub starts one in a daemon thread of its own. Raises `UnsupportedServer` under gevent's
        or eventlet's monkey-patching (``gunicorn -k gevent``), where that thread cannot work.
        """
        try:
            loop = self._thread_loop()
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def publish_threadsafe(
        self, channel: str | Sequence[str], message: Message | object, timeout: float | None = 10.0
    ) -> PublishResult:
        """`publish` from a plain thread (a Flask or Django view): blocks until stored.

        ``channel`` is a channel name or a list of them (one event, several channels), as in
        `publish`."""
        return self.run_threadsafe(self.publish(channel, message), timeout)

    def broadcast_threadsafe(
        self, message: Message | object, timeout: float | None = 10.0
    ) -> dict[str, PublishResult]:
        """`broadcast` from a plain thread: blocks until stored."""
        return self.run_threadsafe(self.broadcast(message), timeout)

    # -- subscribing -------------------------------------------------------------------------

    async def open_stream(
        self,
        request: Request,
        *,
        threaded: bool = False,
        channel: Selection | None = None,
        private: Sequence[str] | Selectors | None = None,
        payload: Any = None,
    ) -> Subscription:
        """Turn a request into a subscription: authorize, pick the channel(s), resume, connect.

        ``channel`` overrides `channel_for` (an app that picks it in its own code, say per
        user): a channel name or a list of selectors. ``private`` selects the channels whose
        private events the subscriber may read, ``payload`` is the `Subscription.payload` (an
        `Access` from ``authorize`` may set both). Used by the adapters. Raises
        `SubscriptionDenied` when ``authorize`` refuses, `InvalidSelector` for a bad selector,
        and `HubClosed` after shutdown.
        """
        selection = self.channel_for(request) if channel is None else channel
        if self._authorize is not None:
            if self._authorize_channels:
                asked = (
                    [selection]
                    if isinstance(selection, str)
                    else [s.text if isinstance(s, Selector) else s for s in selection]
                )
                allowed = self._authorize(request, asked)
            else:
                allowed = self._authorize(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                raise SubscriptionDenied("the authorize hook refused this subscription")
            expires = None
            if isinstance(allowed, Access):
                if allowed.channels is not None:
                    selection = allowed.channels
                    if not selection:
                        raise SubscriptionDenied("the authorize hook allowed no channel")
                if allowed.private is not None:
                    private = allowed.private
                expires = allowed.expires
                if allowed.payload is not None:
                    payload = allowed.payload
            elif isinstance(allowed, Selectors):
                selection = allowed
            elif isinstance(allowed, list | tuple | set | frozenset):
                selection = list(allowed)
            if expires is not None:
                return await self.subscribe(
                    selection,
                    last_event_id=request.last_event_id,
                    request=request,
                    threaded=threaded,
                    private=private,
                    expires=expires,
                    payload=payload,
                )
        return await self.subscribe(
            selection,
            last_event_id=request.last_event_id,
            request=request,
            threaded=threaded,
            private=private,
            payload=payload,
        )

    async def subscribe(
        self,
        channel: Selection,
        *,
        last_event_id: str | None = None,
        request: Request | None = None,
        threaded: bool = False,
        observer: bool = False,
        private: Sequence[str] | Selectors | None = None,
        expires: float | None = None,
        payload: Any = None,
    ) -> Subscription:
        """Subscribe to ``channel``; resume after ``last_event_id`` when given.

        ``channel`` is a channel name, or a list of selectors (exact names, ``*`` for every
        channel, URI templates such as ``/rooms/{id}``) or a `Selectors`: one stream then reads
        every matching channel, each event once, in publish order, and one ``last_event_id``
        resumes all of them. ``private`` selects the channels whose private events this
        subscriber may read (None: public events only). At ``expires`` (a UNIX time: a token's
        ``exp``) the hub ends the stream as `CloseReason.EXPIRED`. ``payload`` is kept as the
        subscription's `Subscription.payload` (say, who the subscriber is, for presence).

        The subscription first holds the retained events after that id (preceded by a
        `GAP_EVENT` when history does not hold the id), then every live event, with no
        duplicate and no gap at the seam; `ssehub.resume.EARLIEST` as ``last_event_id`` asks
        for every retained event, without the notice. `Subscription.resumed` then says whether
        history held the id. End it with `unsubscribe`.
        ``threaded=True`` returns a `ThreadedSubscription` for a thread-based writer.
        ``observer=True`` makes a stream that is not a client (a dashboard watching the
        channel): it gets the live events only (``last_event_id`` is ignored), is not counted
        by `client_count` or the channel's length, and runs no ``on_connect`` hook.
        Raises `InvalidSelector` for a bad selector.
        """
        readable = None if private is None else as_selectors(private)
        if expires is not None:
            sub = await self.subscribe(
                channel,
                last_event_id=last_event_id,
                request=request,
                threaded=threaded,
                observer=observer,
                private=readable,
                payload=payload,
            )
            self._expire_at(sub, expires)
            return sub
        if not isinstance(channel, str):
            selectors = as_selectors(channel)
            if not selectors:
                raise InvalidSelector("subscribe to at least one channel selector")
            if selectors.exact_only and len(selectors.names) == 1 and not observer:
                channel = next(iter(selectors.names))
            else:
                return await self._subscribe_selected(
                    selectors, last_event_id, request, threaded, observer, readable, payload
                )
        await self._ready()
        if self._draining:
            raise HubClosed("the hub is shutting down: its server received a signal to exit")
        cls = ThreadedSubscription if threaded else Subscription
        if observer:
            last_event_id = None
        sub = cls(
            channel,
            max_buffer=self.max_buffer,
            last_event_id=last_event_id,
            request=request,
            private=readable,
        )
        sub.payload = payload
        sub.on_close = self._count_close
        if self._retry_bytes:
            sub.push(self._retry_bytes)
        ch = self._channel(channel)
        if observer:
            ch.observers[sub] = None
            self._observers += 1
            return sub
        self._clients += 1
        if last_event_id is None:
            ch.subscribers[sub] = None
        else:
            resume = ch.holding[sub] = Resume(last_event_id)
            try:
                if readable is not None and readable.matches(channel):
                    replay = await self.backend.replay(channel, last_event_id, private=True)
                else:
                    replay = await self.backend.replay(channel, last_event_id)
            except BaseException:
                del ch.holding[sub]
                self._clients -= 1
                self._forget(ch)
                raise
            del ch.holding[sub]
            self._push_seam(sub, resume, replay)
            ch.subscribers[sub] = None
            after = resume.after
            if after is not None and (ch.position is None or ch.position < after):
                # The replay read history past what the feed has delivered here so far.
                ch.trailing[sub] = after
        if self._on_connect is not None:
            await self._call_hook(self._on_connect, sub)
        return sub

    def _expire_at(self, sub: Subscription, expires: float) -> None:
        if sub.closed:
            return
        delay = expires - time.time()
        if delay <= 0:
            sub.close(CloseReason.EXPIRED)
            return
        loop = asyncio.get_running_loop()
        self._expiry[sub] = loop.call_later(delay, sub.close, CloseReason.EXPIRED)

    def _channel(self, name: str) -> Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = Channel(name)
            self.backend.watch(name)
        return ch

    def _push_seam(self, sub: Subscription, resume: Resume, replay: Replay) -> None:
        seam = resume.finish(replay)
        resume.after = seam.after
        sub.resumed = seam.gap is None
        if seam.gap is not None:
            sub.push(seam.gap)
        for data in seam.replayed:
            sub.push_replay(data)
        for data in seam.live:
            sub.push(data)
        self.replayed += len(seam.replayed)

    async def _subscribe_selected(
        self,
        selectors: Selectors,
        last_event_id: str | None,
        request: Request | None,
        threaded: bool,
        observer: bool,
        readable: Selectors | None,
        payload: Any = None,
    ) -> Subscription:
        # A subscription reading several channels: registered in each exact channel it names,
        # or, with ``*`` or a template among its selectors, matched against every event.
        await self._ready()
        if self._draining:
            raise HubClosed("the hub is shutting down: its server received a signal to exit")
        if observer:
            raise ValueError("an observer watches one channel")
        cls = ThreadedSubscription if threaded else Subscription
        sub = cls(
            " ".join(selector.text for selector in selectors),
            max_buffer=self.max_buffer,
            last_event_id=last_event_id,
            request=request,
            selectors=selectors,
            private=readable,
        )
        sub.payload = payload
        sub.on_close = self._count_close
        if self._retry_bytes:
            sub.push(self._retry_bytes)
        wild = not selectors.exact_only
        names: tuple[str, ...] = () if wild else tuple(sorted(selectors.names))
        channels = [self._channel(name) for name in names]
        self._clients += 1
        if wild:
            if not self._wild:
                self.backend.watch_all(True)
            self._wild[sub] = selectors
        else:
            self._members[sub] = names
        if last_event_id is None:
            for ch in channels:
                ch.subscribers[sub] = None
        else:
            resume = Resume(last_event_id, across=True)
            if wild:
                self._wild_holding[sub] = resume
            for ch in channels:
                ch.holding[sub] = resume
            try:
                replay = await self.backend.replay_selected(
                    selectors, last_event_id, private=readable
                )
            except BaseException:
                self._wild_holding.pop(sub, None)
                for ch in channels:
                    del ch.holding[sub]
                self._drop_selected(sub)
                raise
            self._wild_holding.pop(sub, None)
            for ch in channels:
                del ch.holding[sub]
            self._push_seam(sub, resume, replay)
            after = resume.after
            for ch in channels:
                ch.subscribers[sub] = None
                if after is not None and (ch.position is None or ch.position[-1] < after[-1]):
                    ch.trailing[sub] = after
            if wild and after is not None:
                self._wild_trailing[sub] = after
        if self._on_connect is not None:
            await self._call_hook(self._on_connect, sub)
        return sub

    def _drop_selected(self, sub: Subscription) -> bool:
        # Forget a subscription that reads several channels; False when it was not registered.
        selectors = self._wild.pop(sub, None)
        if selectors is not None:
            self._wild_holding.pop(sub, None)
            self._wild_trailing.pop(sub, None)
            if not self._wild:
                self.backend.watch_all(False)
        else:
            names = self._members.pop(sub, None)
            if names is None:
                return False
            for name in names:
                ch = self._channels.get(name)
                if ch is not None:
                    ch.subscribers.pop(sub, None)
                    ch.holding.pop(sub, None)
                    ch.trailing.pop(sub, None)
                    self._forget(ch)
        self._clients -= 1
        return True

    def unsubscribe(self, sub: Subscription) -> None:
        """End ``sub`` and forget it (adapters call this when the client's stream ends)."""
        sub.close(CloseReason.DISCONNECTED)
        if self._expiry:
            timer = self._expiry.pop(sub, None)
            if timer is not None:
                timer.cancel()
        if sub.selectors is not None:
            if self._drop_selected(sub):
                self._disconnected(sub)
            return
        ch = self._channels.get(sub.channel)
        if ch is None:
            return
        if sub in ch.observers:
            del ch.observers[sub]
            self._observers -= 1
            self._forget(ch)
            return
        if sub not in ch.subscribers:
            return
        del ch.subscribers[sub]
        self._clients -= 1
        ch.trailing.pop(sub, None)
        self._forget(ch)
        self._disconnected(sub)

    def _disconnected(self, sub: Subscription) -> None:
        if self._on_disconnect is not None:
            result = self._on_disconnect(sub)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _forget(self, ch: Channel) -> None:
        if not ch.subscribers and not ch.holding and not ch.observers:
            del self._channels[ch.name]
            self.backend.unwatch(ch.name)
            if not self.backend.retains(ch.name):
                self._published.pop(ch.name, None)

    def _history_forgotten(self, channel: str) -> None:
        # The backend's hook: it retains nothing of ``channel`` any more.
        if channel not in self._channels:
            self._published.pop(channel, None)

    def _count_close(self, sub: Subscription) -> None:
        if sub.close_reason == CloseReason.SLOW:
            self.dropped_slow += 1

    @staticmethod
    async def _call_hook(hook: ConnectHook, sub: Subscription) -> None:
        result = hook(sub)
        if inspect.isawaitable(result):
            await result

    # -- introspection -----------------------------------------------------------------------

    def channels(self) -> list[str]:
        """The names of the channels that have subscribers on this hub (observers alone do
        not make a channel listed)."""
        if not self._observers:
            return list(self._channels)
        return [name for name, ch in self._channels.items() if ch.subscribers or ch.holding]

    def has_channel(self, name: str) -> bool:
        """Whether ``name`` has subscribers on this hub."""
        ch = self._channels.get(name)
        return ch is not None and bool(ch.subscribers or ch.holding)

    def get_channel(self, name: str) -> Channel | None:
        """The `Channel` named ``name``, or None when it has no subscribers here (it may then
        still have observers)."""
        ch = self._channels.get(name)
        return ch if ch is not None and (ch.subscribers or ch.holding) else None

    def observer_count(self) -> int:
        """Observer streams open now (see `subscribe`); they are not clients."""
        return self._observers

    def client_count(self, channel: str | None = None) -> int:
        """Open streams on ``channel``, or on every channel when None.

        A stream counts for ``channel`` when it reads it by name, or through ``*`` or a template
        that matches it. O(1), plus one match per open stream that reads through ``*`` or a
        template."""
        if channel is not None:
            ch = self._channels.get(channel)
            count = len(ch) if ch is not None else 0
            if self._wild:
                count += sum(1 for selectors in self._wild.values() if selectors.matches(channel))
            return count
        return self._clients

    def published_count(self, channel: str) -> int:
        """Events this hub has published to ``channel`` (0 once the channel has neither
        subscribers here nor retained history: its state is then freed)."""
        return self._published.get(channel, 0)

    def published_counts(self) -> dict[str, int]:
        """Events this hub has published, by channel (a copy; for metrics and dashboards)."""
        return dict(self._published)

    async def close_channel(self, name: str) -> None:
        """End every stream of channel ``name`` (its history is kept)."""
        ch = self._channels.get(name)
        if ch is not None:
            for sub in [*ch.subscribers, *ch.holding, *ch.observers]:
                sub.close(CloseReason.CHANNEL_CLOSED)
