"""The load generator: many SSE subscribers and a few publishers, in a process of their own.

Run by the driver as ``python -m bench.loadgen '<spec JSON>'``. It opens the subscribers (raw
asyncio protocols, HTTP/1.1 GET, chunked or close-delimited bodies), prints one JSON line
``{"ready": ...}``, waits for a line ``go`` on stdin, publishes (if the spec says so) over
keep-alive HTTP/1.1 connections, counts the events each subscriber receives, and prints one JSON
line with the counts, the times, the latencies and its own CPU seconds, then exits.

Counting is a byte-level count of ``data:`` lines in the de-chunked body (each benchmark event
has exactly one); once per run the stream of subscriber 0 is parsed with ``ssehub.wire`` to check
that the fast count and the real parse agree and that every event arrived exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import select
import sys
import time
from dataclasses import dataclass, field
from typing import Any

_HEAD, _BODY = 0, 1
_DATA = b"data:"


def raise_nofile_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    """User plus system CPU seconds used by this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def payload(seq: int, sent_ns: int, size: int) -> str:
    """The data of benchmark event ``seq``: its number, its publish time in ns, padding."""
    head = f"{seq:010d} {sent_ns:019d} "
    return head + "x" * (size - len(head))


@dataclass
class Tally:
    """What one loadgen process has seen, shared by all its subscribers."""

    pending: int = 0  # subscribers still short of their expected count
    received: int = 0
    last_event_ns: int = 0
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    hist: dict[int, int] = field(default_factory=dict)  # latency in 10 us bins -> count
    latency: bool = False
    paused: list[Subscriber] = field(default_factory=list)  # waiting for the next read tick


class Subscriber(asyncio.Protocol):
    """One SSE client connection that counts the events it receives."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        expected: int,
        tally: Tally,
        sample: bool,
        sample_limit: int,
        timed: bool = False,
        batched: bool = False,
    ) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        ).encode()
        self.expected = expected
        self.tally = tally
        self.count = 0
        self.done = expected == 0
        self.state = _HEAD
        self.head = b""
        self.chunked = False
        self.chunk_left = 0  # body bytes left in the current chunk
        self.chunk_skip = 0  # CRLF bytes left after the current chunk
        self.chunk_buf = b""  # an incomplete chunk-size line
        self.line_buf = b""  # an incomplete line of the event stream
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.error: str | None = None
        self.sample: bytearray | None = bytearray() if sample else None
        self.sample_limit = sample_limit
        self.transport: asyncio.Transport | None = None
        # A timed subscriber reads each event's timestamp, hence the exact path (de-chunk, split
        # lines, parse); every other one counts raw bytes, and subscriber 0 (``sample``) checks
        # that count against the exact path. Only a few evenly spread subscribers are timed, so
        # the client's parsing does not become the bottleneck it would be on all of them.
        self.timed = timed
        self.fast = not timed
        # A batched subscriber stops reading after each read until the next tick of `read_ticks`
        # (the kernel keeps what arrives meanwhile), so it costs the client one read per tick
        # instead of one per event written; the server's work does not change.
        self.batched = batched and not timed and not sample
        self.tail = b""
        self.exact_count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the response: {exc}"))

    def data_received(self, data: bytes) -> None:
        if self.state == _HEAD:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            status = head.split(b"\r\n", 1)[0]
            if b" 200" not in status[:13]:
                self.error = status.decode("latin-1")
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(self.error))
                return
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.state = _BODY
            if not self.ready.done():
                self.ready.set_result(None)
            if not data:
                return
        if self.fast:
            self._count_raw(data)
            if self.batched and self.transport is not None:
                self.transport.pause_reading()
                self.tally.paused.append(self)
            if self.sample is None:
                return
        body = self._dechunk(data) if self.chunked else data
        if body:
            self._events(body)

    def _count_raw(self, data: bytes) -> None:
        # The fast count: ``data:`` occurrences in the raw bytes, chunk framing and all (a
        # chunk-size line never holds it), plus the one that may straddle two reads.
        n = data.count(_DATA)
        if self.tail:
            n += (self.tail + data[:4]).count(_DATA)
        self.tail = data[-4:]
        if not n:
            return
        self.count += n
        tally = self.tally
        tally.received += n
        tally.last_event_ns = time.time_ns()
        if not self.done and self.count >= self.expected:
            self.done = True
            tally.pending -= 1
            if tally.pending == 0:
                tally.all_in.set()

    def _dechunk(self, data: bytes) -> bytes:
        buf = self.chunk_buf + data if self.chunk_buf else data
        self.chunk_buf = b""
        n = len(buf)
        pos = 0
        out: list[bytes] = []
        while pos < n:
            if self.chunk_left:
                take = min(self.chunk_left, n - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self.chunk_left -= take
                if not self.chunk_left:
                    self.chunk_skip = 2
            elif self.chunk_skip:
                skip = min(self.chunk_skip, n - pos)
                pos += skip
                self.chunk_skip -= skip
            else:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self.chunk_buf = buf[pos:]
                    break
                size = int(buf[pos:end].split(b";", 1)[0], 16)
                pos = end + 2
                if size == 0:  # the last chunk: the server ended the stream
                    break
                self.chunk_left = size
        return out[0] if len(out) == 1 else b"".join(out)

    def _events(self, body: bytes) -> None:
        if self.sample is not None and len(self.sample) < self.sample_limit:
            self.sample += body
        buf = self.line_buf + body if self.line_buf else body
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            self.line_buf = buf
            return
        self.line_buf = buf[cut:]
        if cut != len(buf):
            buf = buf[:cut]
        n = buf.count(_DATA)
        if not n:
            return
        if self.fast:
            self.exact_count += n
            return
        tally = self.tally
        now = time.time_ns()
        if self.timed:
            hist = tally.hist
            pos = buf.find(_DATA)
            while pos >= 0:
                # "data: SSSSSSSSSS TTTTTTTTTTTTTTTTTTT ..."
                start = pos + 17 if buf[pos + 5] == 32 else pos + 16
                try:
                    sent = int(buf[start : start + 19])
                except ValueError:
                    sent = now
                b = (now - sent) // 10_000
                hist[b] = hist.get(b, 0) + 1
                pos = buf.find(_DATA, start)
        self.count += n
        tally.received += n
        tally.last_event_ns = now
        if not self.done and self.count >= self.expected:
            self.done = True
            tally.pending -= 1
            if tally.pending == 0:
                tally.all_in.set()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size + 2))
        return status, b"".join(p[:-2] for p in parts)
    return status, await reader.readexactly(length or 0)


@dataclass
class PublishStats:
    """What the publishers saw."""

    sent: int = 0
    errors: int = 0
    first_error: str | None = None
    start_ns: int = 0
    end_ns: int = 0
    clients_seen: list[int] = field(default_factory=list)


class Publisher:
    """Publishes benchmark events over one keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, size: int, batch: int, stats: PublishStats) -> None:
        self.host, self.port, self.size, self.batch, self.stats = host, port, size, batch, stats
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def post(self, path: str, seqs: list[int], at_ns: int | None = None) -> None:
        """POST the events numbered ``seqs`` to ``path`` and wait for the answer; ``at_ns`` is
        the publish time written in the events (default: now)."""
        assert self.reader is not None and self.writer is not None
        now = time.time_ns() if at_ns is None else at_ns
        items = [f'{{"data":"{payload(s, now, self.size)}"}}' for s in seqs]
        body = (items[0] if len(items) == 1 else "[" + ",".join(items) + "]").encode()
        self.writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        status, answer = await _read_response(self.reader)
        stats = self.stats
        if 200 <= status < 300:
            stats.sent += len(seqs)
            if len(stats.clients_seen) < 4:
                with contextlib.suppress(Exception):
                    stats.clients_seen.append(int(json.loads(answer).get("clients", -1)))
        else:
            stats.errors += len(seqs)
            if stats.first_error is None:
                stats.first_error = f"{status} {answer[:200]!r}"


class StreamPublisher:
    """Publishes benchmark events over one streaming POST (NDJSON, one line per event).

    ``post`` writes its lines and returns at once while fewer than ``window`` lines wait for
    their answer (pipelining); `close` waits for every answer. With ``path`` None the stream
    goes to ``POST /events`` and each line names its channel; else to ``path`` itself.
    """

    def __init__(
        self,
        host: str,
        port: int,
        size: int,
        stats: PublishStats,
        path: str | None,
        window: int = 512,
    ) -> None:
        self.host, self.port, self.size, self.stats = host, port, size, stats
        self.path = path
        self.window = window
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.outstanding = 0
        self.room = asyncio.Event()
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Open the connection and the streaming request."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(
            (
                f"POST {self.path or '/events'} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        self.task = asyncio.ensure_future(self._answers())

    async def _answers(self) -> None:
        assert self.reader is not None
        reader, stats = self.reader, self.stats
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                stats.errors += self.outstanding
                stats.first_error = stats.first_error or head[:200].decode(errors="replace")
                return
            held = b""
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    return
                held += (await reader.readexactly(size + 2))[:-2]
                *lines, held = held.split(b"\n")
                for line in lines:
                    if line.startswith(b'{"id"'):
                        stats.sent += 1
                    else:
                        stats.errors += 1
                        stats.first_error = stats.first_error or line[:200].decode()
                self.outstanding -= len(lines)
                if self.outstanding < self.window:
                    self.room.set()
                if self.outstanding == 0:
                    self.done.set()
        except (OSError, asyncio.IncompleteReadError) as exc:
            stats.errors += self.outstanding
            stats.first_error = stats.first_error or repr(exc)
        finally:
            self.room.set()
            self.done.set()

    async def post(self, path: str, seqs: list[int], at_ns: int | None = None) -> None:
        """Write the events numbered ``seqs`` (to ``path``); wait only for room in the window.
        ``at_ns`` is the publish time written in the events (default: now)."""
        assert self.writer is not None
        now = time.time_ns() if at_ns is None else at_ns
        if self.path is None:
            lines = [
                f'{{"channel":"{path}","data":"{payload(s, now, self.size)}"}}\n' for s in seqs
            ]
        else:
            lines = [f'{{"data":"{payload(s, now, self.size)}"}}\n' for s in seqs]
        body = "".join(lines).encode()
        self.outstanding += len(seqs)
        self.done.clear()
        self.writer.write(b"%x\r\n%b\r\n" % (len(body), body))
        while self.outstanding >= self.window and self.task is not None and not self.task.done():
            self.room.clear()
            await self.room.wait()

    async def close(self) -> None:
        """End the request once every answer is in, and close the connection."""
        if self.writer is None:
            return
        if self.outstanding and self.task is not None and not self.task.done():
            await self.done.wait()
        with contextlib.suppress(Exception):
            self.writer.write(b"0\r\n\r\n")
            if self.task is not None:
                await asyncio.wait_for(self.task, 10)
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def read_ticks(tally: Tally, interval: float) -> None:
    """Every ``interval`` seconds, let every paused (batched) subscriber read once more."""
    while True:
        await asyncio.sleep(interval)
        paused, tally.paused = tally.paused, []
        for sub in paused:
            if not sub.closed and sub.transport is not None:
                with contextlib.suppress(Exception):
                    sub.transport.resume_reading()


def timed_indices(count: int, timed: int) -> set[int]:
    """Which of ``count`` subscribers (in connection order) record latencies: ``timed`` of them,
    evenly spread from the first to the last, so early and late places in the fan-out both count.
    """
    if timed <= 0 or count <= 0:
        return set()
    if timed >= count:
        return set(range(count))
    if timed == 1:
        return {count - 1}
    return {round(k * (count - 1) / (timed - 1)) for k in range(timed)}


def random_channels(channels: int, events: int, seed: int) -> list[int]:
    """The channel index of each event in W4 (the same in every loadgen process)."""
    rng = random.Random(seed)
    return [rng.randrange(channels) for _ in range(events)]


def selector_plan(
    subscribers: int, shared_events: int, own_events: int, own_channels: int
) -> list[tuple[int, int] | None]:
    """Where each W5 event goes, in publish order (event ``seq`` is item ``seq``).

    None is the shared channel; ``(i, k)`` is own channel ``k`` of subscriber ``i``. The own
    events come in groups of ``own_channels``, one to each own channel of one subscriber, the
    groups' subscribers evenly spread from subscriber 0 (so the parse-checked stream of
    subscriber 0 reads all its selectors); they sit evenly spread among the shared events.
    """
    groups = -(-own_events // own_channels) if own_channels else 0
    total = shared_events + own_events
    own_at = {int((j + 0.5) * total / own_events): j for j in range(own_events)}
    plan: list[tuple[int, int] | None] = []
    for seq in range(total):
        j = own_at.get(seq)
        if j is None:
            plan.append(None)
        else:
            plan.append(((j // own_channels) * subscribers // groups, j % own_channels))
    return plan


def selector_path(shared: str, own_base: str, subscriber: int, own_channels: int) -> str:
    """W5's subscribe path: one stream of the shared channel and the subscriber's own ones."""
    own = "".join(f"&channel={own_base}{subscriber}/{k}" for k in range(own_channels))
    return f"/events?channel={shared}{own}"


async def _publish(spec: dict[str, Any], stats: PublishStats) -> None:
    pub = spec["publish"]
    host, port = spec["host"], spec["port"]
    size, batch = spec["event_bytes"], pub.get("batch", 1)
    conns: list[Publisher] | list[StreamPublisher]
    if pub.get("stream"):
        # One streaming POST per connection: to the one path of W1/W3, else to /events with
        # the channel in each line.
        route = pub.get("path") if pub["mode"] in ("paced", "fanout") else None
        conns = [StreamPublisher(host, port, size, stats, route) for _ in range(pub["connections"])]
    else:
        conns = [Publisher(host, port, size, batch, stats) for _ in range(pub["connections"])]
    await asyncio.gather(*(c.connect() for c in conns))
    events = pub["events"]
    stats.start_ns = time.time_ns()
    try:
        if pub["mode"] == "paced":
            rate = pub["rate"]
            loop = asyncio.get_running_loop()
            t0, wall0 = loop.time(), time.time_ns()
            for seq in range(events):
                delay = t0 + seq / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                # Stamped with the time it was due, not the time it went out: a server that
                # answers late delays the next publishes, and that wait is latency too (no
                # "coordinated omission"). A publisher on time stamps the same either way.
                await conns[0].post(pub["path"], [seq], wall0 + int(seq * 1e9 / rate))
        elif pub["mode"] == "fanout":
            path = pub["path"]

            async def run(k: int) -> None:
                mine = list(range(k, events, len(conns)))
                for i in range(0, len(mine), batch):
                    await conns[k].post(path, mine[i : i + batch])

            await asyncio.gather(*(run(k) for k in range(len(conns))))
        elif pub["mode"] == "selectors":
            plan = selector_plan(
                pub["subscribers"], pub["shared_events"], pub["own_events"], pub["own_channels"]
            )
            where = [pub["path"] if t is None else f"{pub['own_base']}{t[0]}/{t[1]}" for t in plan]

            async def run_plan(k: int) -> None:
                # As W1 (every len(conns)-th event, up to ``batch`` per POST), but one POST
                # never mixes channels.
                mine = list(range(k, len(where), len(conns)))
                i = 0
                while i < len(mine):
                    end = i + 1
                    while (
                        end < len(mine) and end - i < batch and where[mine[end]] == where[mine[i]]
                    ):
                        end += 1
                    await conns[k].post(where[mine[i]], mine[i:end])
                    i = end

            await asyncio.gather(*(run_plan(k) for k in range(len(conns))))
        else:  # random channels
            targets = random_channels(pub["channels"], events, pub["seed"])
            base = pub["base"]

            async def run_random(k: int) -> None:
                for seq in range(k, events, len(conns)):
                    await conns[k].post(f"{base}{targets[seq]}", [seq])

            await asyncio.gather(*(run_random(k) for k in range(len(conns))))
    finally:
        # A streaming publisher's events are in once answered: close (which waits) first.
        await asyncio.gather(*(c.close() for c in conns))
        stats.end_ns = time.time_ns()


def _verify(sub: Subscriber, expected_seqs: set[int] | None, size: int) -> dict[str, Any]:
    """Parse subscriber 0's stream with ssehub.wire and compare with the fast count."""
    try:
        from ssehub.wire import EventParser
    except ImportError:
        return {"verified": None, "why": "ssehub.wire is not importable"}
    assert sub.sample is not None
    if len(sub.sample) >= sub.sample_limit:
        return {"verified": None, "why": "sample larger than SAMPLE_BYTES"}
    events = EventParser().feed(bytes(sub.sample))
    problems = []
    if len(events) != sub.count:
        problems.append(f"parsed {len(events)} events, counted {sub.count}")
    if sub.fast and sub.exact_count != sub.count:
        problems.append(f"de-chunked count {sub.exact_count}, raw count {sub.count}")
    seqs = []
    for ev in events:
        if len(ev.data) != size:
            problems.append(f"event data of {len(ev.data)} bytes, expected {size}")
            break
        seqs.append(int(ev.data[:10]))
    if len(set(seqs)) != len(seqs):
        problems.append("duplicate events")
    if expected_seqs is not None and set(seqs) != expected_seqs:
        missing = len(expected_seqs - set(seqs))
        problems.append(f"{missing} events missing, {len(set(seqs) - expected_seqs)} unexpected")
    return {"verified": not problems, "why": "; ".join(problems), "parsed": len(events)}


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement as the spec says; return the report."""
    host, port = spec["host"], spec["port"]
    tally = Tally(latency=spec.get("latency", False))
    loop = asyncio.get_running_loop()
    subs_spec = spec["subscribe"]
    n = subs_spec["count"]
    pub = spec.get("publish")
    targets: list[int] | None = None
    plan: list[tuple[int, int] | None] | None = None
    if subs_spec["mode"] == "each":
        first = subs_spec["first"]
        paths = [f"{subs_spec['base']}{first + i}" for i in range(n)]
        targets = random_channels(subs_spec["channels"], subs_spec["events"], subs_spec["seed"])
        per_channel: dict[int, int] = {}
        for c in targets:
            per_channel[c] = per_channel.get(c, 0) + 1
        expected = [per_channel.get(first + i, 0) for i in range(n)]
    elif subs_spec["mode"] == "selectors":
        first = subs_spec["first"]
        own = subs_spec["own_channels"]
        paths = [
            selector_path(subs_spec["shared"], subs_spec["own_base"], first + i, own)
            for i in range(n)
        ]
        plan = selector_plan(
            subs_spec["subscribers"], subs_spec["shared_events"], subs_spec["own_events"], own
        )
        per_subscriber: dict[int, int] = {}
        for t in plan:
            if t is not None:
                per_subscriber[t[0]] = per_subscriber.get(t[0], 0) + 1
        expected = [subs_spec["shared_events"] + per_subscriber.get(first + i, 0) for i in range(n)]
    else:
        paths = [subs_spec["path"]] * n
        expected = [subs_spec["expect"]] * n
    tally.pending = sum(1 for e in expected if e > 0)
    timed = timed_indices(n, spec.get("timed", 0)) if tally.latency else set()
    interval = spec.get("read_interval", 0.0)
    ticker = asyncio.ensure_future(read_ticks(tally, interval)) if interval > 0 else None
    sem = asyncio.Semaphore(spec["connect_concurrency"])
    subscribers: list[Subscriber] = []
    failures: list[str] = []

    async def subscribe(i: int) -> None:
        async with sem:
            sub = Subscriber(
                host,
                port,
                paths[i],
                expected[i],
                tally,
                i == 0,
                spec["sample_bytes"],
                i in timed,
                ticker is not None,
            )
            subscribers.append(sub)
            try:
                await loop.create_connection(lambda: sub, host, port)
                await sub.ready
            except (OSError, ConnectionError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    t_connect = time.perf_counter()
    # "phases": connect in steps, each one on a line "next" from the driver, answered with a
    # line {"phase": k}; the driver uses it to interleave two processes' subscribers.
    phases = spec.get("phases") or [n]
    first = 0
    try:
        for k, size in enumerate(phases):
            if spec.get("phases"):
                step = await loop.run_in_executor(None, sys.stdin.readline)
                if step.strip() != "next":
                    return {"aborted": True}
            await asyncio.wait_for(
                asyncio.gather(*(subscribe(i) for i in range(first, first + size))),
                spec["connect_timeout"],
            )
            first += size
            if spec.get("phases"):
                print(json.dumps({"phase": k, "failures": failures[:3]}), flush=True)
    except TimeoutError:
        failures.append("timed out opening subscribers")
    connect_s = time.perf_counter() - t_connect
    print(json.dumps({"ready": n - len(failures), "failures": failures[:3]}), flush=True)
    go = await loop.run_in_executor(None, sys.stdin.readline)
    if go.strip() != "go":
        return {"aborted": True}

    await asyncio.sleep(spec["settle"])
    cpu0 = cpu_seconds()
    go_ns = time.time_ns()
    stats = PublishStats()
    pub_task = asyncio.ensure_future(_publish(spec, stats)) if pub else None
    deadline = loop.time() + spec["deadline"]
    if tally.pending:
        last = -1
        while loop.time() < deadline and not tally.all_in.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(tally.all_in.wait(), spec["stall"])
            if tally.received == last and (pub_task is None or pub_task.done()):
                break  # stalled: nothing more is coming
            last = tally.received
    elif spec.get("hold"):
        await asyncio.sleep(spec["hold"])
    pub_error = None
    if pub_task is not None:
        try:
            await asyncio.wait_for(pub_task, max(1.0, deadline - loop.time()))
        except Exception as exc:  # report it; the driver decides what it means
            pub_error = f"{type(exc).__name__}: {exc}"
    end_ns = tally.last_event_ns
    cpu = cpu_seconds() - cpu0
    if ticker is not None:
        ticker.cancel()

    verify: dict[str, Any] = {"verified": None, "why": "no sample"}
    if subscribers and subscribers[0].sample is not None and pub:
        s0 = subscribers[0]
        if subs_spec["mode"] == "each":
            assert targets is not None
            idx = subs_spec["first"]
            exp = {k for k, c in enumerate(targets) if c == idx}
        elif subs_spec["mode"] == "selectors":
            assert plan is not None
            idx = subs_spec["first"]
            exp = {k for k, t in enumerate(plan) if t is None or t[0] == idx}
        else:
            exp = set(range(subs_spec["expect"]))
        verify = _verify(s0, exp, spec["event_bytes"])
    counts = [s.count for s in subscribers]
    for s in subscribers:
        if s.transport is not None:
            s.transport.close()
    return {
        "subscribers": n,
        "connected": n - len(failures),
        "connect_failures": failures[:3],
        "connect_s": connect_s,
        "expected": sum(expected),
        "received": tally.received,
        "short": sum(1 for s, e in zip(subscribers, expected, strict=False) if s.count < e),
        "closed_early": sum(1 for s in subscribers if s.closed),
        "min_count": min(counts) if counts else 0,
        "go_ns": go_ns,
        "last_event_ns": end_ns,
        "publish": {
            "sent": stats.sent,
            "errors": stats.errors,
            "first_error": stats.first_error or pub_error,
            "start_ns": stats.start_ns,
            "end_ns": stats.end_ns,
            "clients_seen": stats.clients_seen,
        }
        if pub
        else None,
        "hist": {str(k): v for k, v in tally.hist.items()},
        "timed": len(timed),
        "cpu_s": cpu,
        "wall_s": (time.time_ns() - go_ns) / 1e9,
        "verify": verify,
    }


def run() -> None:
    """Entry point: ``python -m bench.loadgen '<spec JSON>'``."""
    raise_nofile_limit()
    spec = json.loads(sys.argv[1])
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None:
        result = uvloop.run(main(spec))
        loop_name = "uvloop"
    else:
        result = asyncio.run(main(spec))
        loop_name = "asyncio"
    result["loop"] = loop_name
    # The event loop may leave stdout non-blocking, and a result larger than the pipe (W3's
    # latency histogram: 590 KB when a saturated server's latencies spread over seconds) was
    # cut while the driver read another generator first, even after os.set_blocking. So write
    # it with os.write, waiting for room whenever the pipe is full.
    sys.stdout.flush()
    out = memoryview((json.dumps(result) + "\n").encode())
    fd = sys.stdout.fileno()
    while out:
        try:
            out = out[os.write(fd, out) :]
        except BlockingIOError:
            select.select([], [fd], [])


if __name__ == "__main__":
    run()
