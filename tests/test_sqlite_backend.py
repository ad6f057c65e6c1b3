"""`SqliteBackend`: history kept in a file, as the memory backend keeps it, across restarts.

In-process tests: a "restart" is a new backend on the same file. (``kill -9`` of a real hub is
in tests/server/test_durable.py; the whole hub contract runs on this backend too, in
tests/test_hub_contract.py.)
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ssehub import (
    BackendUnavailable,
    HistoryFileCorrupt,
    HistoryFileError,
    HistoryFileLocked,
    Message,
    SqliteBackend,
)
from ssehub.backends.sqlite import AT_ONCE, FSYNC_MODES, WAL_LIMIT
from ssehub.selectors import Selectors

Delivered = list[tuple[Any, str, bytes]]


@asynccontextmanager
async def running(
    path: Path, delivered: Delivered | None = None, **settings: Any
) -> AsyncIterator[SqliteBackend]:
    """A started backend on ``path`` (history 1000, no TTL unless given); closed at the end."""
    fsync = settings.pop("fsync", "batch")
    backend = SqliteBackend(path, fsync=fsync)
    sink: Delivered = [] if delivered is None else delivered

    def deliver(channel: Any, event_id: str, data: bytes, *rest: Any) -> None:
        sink.append((channel, event_id, data))

    settings = {"history": 1000, "history_ttl": None, **settings}
    await backend.start(deliver, **settings)
    try:
        yield backend
    finally:
        await backend.close()


def counter(event_id: str) -> int:
    return int(event_id.rpartition("-")[2])


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
    db.close()
    return count


@pytest.mark.parametrize("fsync", FSYNC_MODES)
async def test_ids_continue_and_replay_is_exact_after_a_restart(tmp_path: Path, fsync: str) -> None:
    path = tmp_path / "h.sqlite3"
    async with running(path, fsync=fsync) as backend:
        ids = [await backend.publish("/a", Message(f"m{i}")) for i in range(5)]
    delivered: Delivered = []
    async with running(path, delivered, fsync=fsync) as backend:
        replay = await backend.replay("/a", ids[1])
        assert replay.found
        assert [event_id for event_id, _ in replay.events] == ids[2:]
        assert replay.events[0][1] == b"id: " + ids[2].encode() + b"\ndata: m2\n\n"
        later = await backend.publish("/a", Message("after"))
        assert counter(later) == counter(ids[-1]) + 1
        assert later.split("-")[0] == ids[0].split("-")[0]
        assert delivered == [("/a", later, b"id: " + later.encode() + b"\ndata: after\n\n")]
        # Across channels too: the id from before the restart is placed.
        selected = await backend.replay_selected(Selectors(["/a", "/b"]), ids[3])
        assert selected.found and [e for e, _ in selected.events] == [ids[4], later]


async def test_private_several_channel_and_own_id_events_survive_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite3"
    async with running(path) as backend:
        first = await backend.publish("/a", Message("start"))
        both = await backend.publish(("/a", "/b"), Message("both"))
        secret = await backend.publish("/a", Message("secret"), private=True)
        own = await backend.publish("/b", Message("mine", id="order-42"))
    assert own == "order-42"
    async with running(path) as backend:
        public = await backend.replay("/a", first)
        assert [e for e, _ in public.events] == [both]
        private = await backend.replay("/a", first, private=True)
        assert [e for e, _ in private.events] == [both, secret]
        assert [e for e, _ in (await backend.replay("/b", both)).events] == ["order-42"]
        again = await backend.publish("/b", Message("mine", id="order-42"))
        assert again.duplicate
        assert await backend.channels() == ["/a", "/b"]


async def test_retention_by_count_bytes_and_age_holds_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    async with running(path, history=3) as backend:
        ids = [await backend.publish("/a", Message(f"m{i}")) for i in range(10)]
    assert rows(path) == 3
    async with running(path, history=3) as backend:
        assert backend.retained("/a")[0] == 3
        trimmed = await backend.replay("/a", ids[6])  # the newest trimmed: nothing missed
        assert trimmed.found and [e for e, _ in trimmed.events] == ids[7:]
        assert not (await backend.replay("/a", ids[5])).found
    async with running(path, history=2) as backend:  # a smaller bound trims the file
        assert backend.retained("/a")[0] == 2
    assert rows(path) == 2
    async with running(path, history=1000, history_bytes=3 * 300) as backend:
        for i in range(10):
            await backend.publish("/big", Message("x" * 100 + str(i)))
        kept = backend.retained("/big")[0]
        assert 1 <= kept < 10
    async with running(path, history=1000, history_bytes=3 * 300) as backend:
        assert backend.retained("/big")[0] == kept
    await asyncio.sleep(0.3)
    async with running(path, history=1000, history_ttl=0.2) as backend:
        assert backend.retained("/a") == backend.retained("/big") == (0, 0)  # too old now
        await backend.publish("/fresh", Message("soon old"))
        assert backend.retained("/fresh")[0] == 1
    await asyncio.sleep(0.3)
    async with running(path, history=1000, history_ttl=0.2) as backend:
        assert await backend.channels() == []
    async with running(path) as backend:
        await asyncio.sleep(0.05)
    assert rows(path) == 0


async def test_the_file_stays_bounded_when_history_is(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    wal = Path(f"{path}-wal")
    payload = "x" * 2000

    def size() -> int:
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    async with running(path, history=50) as backend:
        sizes = []
        for _ in range(3):
            for _batch in range(20):
                await asyncio.gather(
                    *(backend.publish(f"/c{i % 4}", Message(payload)) for i in range(100))
                )
            await asyncio.sleep(0.05)
            sizes.append(size())
        assert backend.written == 3 * 2000
    # 12 MB published, 200 events (400 KB) retained, deletions written in groups of at most
    # 256 events: the file reuses its space, the log is cut back after each checkpoint.
    assert max(sizes) < 2 * WAL_LIMIT, sizes
    assert sizes[2] <= sizes[0] + 256 * 1024, sizes
    assert rows(path) == 200
    assert not wal.exists() or wal.stat().st_size == 0  # closed cleanly: log checkpointed


async def test_concurrent_publishes_share_commits(tmp_path: Path) -> None:
    async with running(tmp_path / "h.sqlite3") as backend:
        ids = await asyncio.gather(*(backend.publish("/a", Message(str(i))) for i in range(500)))
        assert [counter(i) for i in ids] == list(range(1, 501))
        assert backend.written == 500
        assert backend.commits < 250  # grouped, never one per event


async def test_a_failed_write_is_refused_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    delivered: Delivered = []
    async with running(path, delivered) as backend:
        first = await backend.publish("/a", Message("kept"))
        # A full disk, as SQLite sees one: the file may not grow.
        with sqlite3.connect(path) as probe:
            pages = probe.execute("PRAGMA page_count").fetchone()[0]
        probe.close()
        full: Callable[[str], Any] = backend._db.execute  # type: ignore[union-attr]
        full(f"PRAGMA max_page_count={pages}")
        with pytest.raises(BackendUnavailable, match="could not be written"):
            await backend.publish("/a", Message("x" * 200_000))
        assert [d[1] for d in delivered] == [first]
        assert [e for e, _ in (await backend.replay("/a", first)).events] == []
        full("PRAGMA max_page_count=1073741823")
        after = await backend.publish("/a", Message("after"))
        assert [e for e, _ in (await backend.replay("/a", first)).events] == [after]
    async with running(path) as backend:
        assert [e for e, _ in (await backend.replay("/a", first)).events] == [after]


async def test_two_backends_on_one_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    async with running(path):
        second = SqliteBackend(path)
        with pytest.raises(HistoryFileLocked, match=f"process {os.getpid()}"):
            second.open()
    async with running(path):  # free again once the first is closed
        pass


async def test_unusable_files_are_refused_at_start_and_left_alone(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01 not sqlite " * 500)
    with pytest.raises(HistoryFileCorrupt, match="damaged or not an ssehub history file"):
        SqliteBackend(garbage).open()
    assert garbage.read_bytes() == b"\x00\x01 not sqlite " * 500

    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    with pytest.raises(HistoryFileCorrupt, match="not an ssehub history file"):
        SqliteBackend(foreign).open()

    newer = tmp_path / "newer.sqlite3"
    async with running(newer):
        pass
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(HistoryFileCorrupt, match="format 99"):
        SqliteBackend(newer).open()

    damaged = tmp_path / "damaged.sqlite3"
    async with running(damaged) as backend:
        for i in range(200):
            await backend.publish(f"/c{i}", Message("y" * 500))
    content = bytearray(damaged.read_bytes())
    content[4096 * 2 : 4096 * 4] = b"\xff" * 8192  # two pages of the tables overwritten
    damaged.write_bytes(bytes(content))
    with pytest.raises(HistoryFileCorrupt, match="damaged"):
        SqliteBackend(damaged).open()

    with pytest.raises(HistoryFileError, match="is not a file"):
        SqliteBackend(tmp_path).open()
    with pytest.raises(HistoryFileError):
        SqliteBackend(tmp_path / "missing" / "h.sqlite3").open()


def test_bad_settings_are_refused_with_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync must be one of always, batch, off"):
        SqliteBackend(tmp_path / "h", fsync="sometimes")
    with pytest.raises(ValueError, match="sync_interval must be positive"):
        SqliteBackend(tmp_path / "h", sync_interval=0)


async def test_over_http_a_failed_write_is_answered_503_with_a_json_reason(tmp_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    from ssehub import Hub
    from ssehub.server.app import HubServer

    path = tmp_path / "h.sqlite3"
    backend = SqliteBackend(path)
    app = HubServer(Hub(backend=backend, keepalive=None))
    await app.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            kept = await client.post("/events/a", content="kept")
            assert kept.status_code == 200
            with sqlite3.connect(path) as probe:
                pages = probe.execute("PRAGMA page_count").fetchone()[0]
            probe.close()
            backend._db.execute(f"PRAGMA max_page_count={pages}")  # type: ignore[union-attr]
            refused = await client.post("/events/a", content="x" * 200_000)
            assert refused.status_code == 503
            assert "could not be written" in refused.json()["error"]
        replay = await backend.replay("/events/a", kept.json()["id"])
        assert replay.found and replay.events == ()
    finally:
        await app.close()


async def test_publish_nowait_answers_once_written_and_declines_what_would_wait(
    tmp_path: Path,
) -> None:
    """`Hub.publish_nowait` on the durable backend: the id once the event is committed (the
    first AT_ONCE publishes of a loop turn are each written as they come); past them, and with
    fsync always (a writer thread), None with nothing published: publish awaits the write."""
    from ssehub import Hub

    path = tmp_path / "h.sqlite3"
    hub = Hub(backend=SqliteBackend(path), keepalive=None)
    await hub.start()
    try:
        ids = [hub.publish_nowait("/a", f"now {i}") for i in range(AT_ONCE)]
        assert None not in ids
        assert rows(path) == AT_ONCE  # each committed before its id was returned
        assert hub.publish_nowait("/a", "one too many this turn") is None
        await asyncio.sleep(0)  # the next loop turn
        assert hub.publish_nowait("/a", "next turn") is not None
        assert hub.published_count("/a") == AT_ONCE + 1
    finally:
        await hub.shutdown()
    assert rows(path) == AT_ONCE + 1
    threaded = Hub(backend=SqliteBackend(tmp_path / "t.sqlite3", fsync="always"), keepalive=None)
    await threaded.start()
    try:
        assert threaded.publish_nowait("/a", "not now") is None
        assert threaded.published_count("/a") == 0
    finally:
        await threaded.shutdown()


async def test_without_history_nothing_is_written_and_ids_never_repeat(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    async with running(path, history=0) as backend:
        first = await backend.publish("/a", Message("gone"))
        assert backend.written == 0
    await asyncio.sleep(0.002)  # the next run's prefix is its start time, in milliseconds
    async with running(path, history=0) as backend:
        second = await backend.publish("/a", Message("gone too"))
    assert first != second and rows(path) == 0


async def test_batch_fsyncs_the_log_within_its_interval_and_only_after_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    backend = SqliteBackend(tmp_path / "h.sqlite3", fsync="batch", sync_interval=0.05)
    await backend.start(lambda *args: None, history=10, history_ttl=None)
    try:
        await asyncio.sleep(0.2)
        assert synced == []  # nothing written, nothing to fsync
        await backend.publish("/a", Message("x"))
        for _ in range(200):  # up to 2 s on a loaded machine
            if synced:
                break
            await asyncio.sleep(0.01)
        assert synced
    finally:
        await backend.close()


async def test_a_resume_of_several_channels_after_a_restart_gets_the_replay_then_live_events(
    tmp_path: Path,
) -> None:
    from ssehub import EventParser, Hub

    path = tmp_path / "h.sqlite3"
    first = Hub(backend=SqliteBackend(path), keepalive=None, end_streams_on_signal=False)
    ids = [await first.publish(f"/r/{i % 2}", f"m{i}") for i in range(4)]
    await first.shutdown(timeout=0.1)
    hub = Hub(backend=SqliteBackend(path), keepalive=None, end_streams_on_signal=False)
    try:
        # Before anything is published in this run: the replay's head is the restored history's.
        sub = await hub.subscribe(["/r/{id}"], last_event_id=ids[1])
        later = await hub.publish("/r/1", "live")
        received = EventParser().feed(sub.take() or b"")
        assert [(m.id, m.data) for m in received] == [
            (ids[2], "m2"),
            (ids[3], "m3"),
            (later, "live"),
        ]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_every_tombstone_survives_a_restart_beside_channels_with_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TOMBSTONES made small (the rule is the same for 3 as for 10 000): exactly that many
    # channels freed, and one that trimmed its oldest event but keeps history.
    from ssehub.backends import memory, sqlite

    monkeypatch.setattr(memory, "TOMBSTONES", 3)
    monkeypatch.setattr(sqlite, "TOMBSTONES", 3)
    path = tmp_path / "h.sqlite3"
    async with running(path, history_bytes=300) as backend:
        start = await backend.publish("/keep", Message("k0"))
        gone = [await backend.publish(f"/g{n}", Message("x" * 400)) for n in range(3)]
        trimmed = await backend.publish("/keep", Message("k1"))
        kept = await backend.publish("/keep", Message("k2"))  # k0 and k1 are trimmed
        assert backend.retained("/keep")[0] == 1
    async with running(path, history_bytes=300) as backend:
        # A client resuming from the last event of each freed channel has missed nothing...
        for n, event_id in enumerate(gone):
            replay = await backend.replay(f"/g{n}", event_id)
            assert (replay.events, replay.found) == ((), True), n
        # ...nor one resuming from the newest event /keep trimmed; from before it, one has.
        replay = await backend.replay("/keep", trimmed)
        assert replay.found and [e for e, _ in replay.events] == [kept]
        selected = await backend.replay_selected(Selectors(["/g0", "/keep"]), trimmed)
        assert selected.found and [e for e, _ in selected.events] == [kept]
        assert not (await backend.replay_selected(Selectors(["/g0", "/keep"]), gone[0])).found
        assert not (await backend.replay("/keep", start)).found
        # A fourth freed channel: the oldest tombstone is forgotten, as it would be in memory.
        await backend.publish("/g3", Message("x" * 400))
        assert not (await backend.replay("/g0", gone[0])).found
        assert (await backend.replay("/g1", gone[1])).found
        assert not (await backend.replay_selected(Selectors(["/g1", "/keep"]), start)).found
