"""Durable history on one machine: the memory backend, with every event also kept in SQLite.

Live delivery, replay and retention are the memory backend's own (`MemoryBackend`), so a
durable hub fans out and replays exactly as the in-memory one does. What this module adds:

- **Accepted means written.** `publish` returns (the HTTP API answers 200) only once the event
  is committed to the file; only then is it retained in memory and delivered. A hub killed with
  ``kill -9`` loses no event it answered for (each commit is in the operating system's hands).
  Whether a *power loss* keeps it too depends on ``fsync`` (`FSYNC_MODES`).
- **Group commit.** With ``fsync="batch"`` or ``"off"`` a commit runs on the loop and is a
  write to the OS (tens of microseconds; ``batch`` fsyncs the log from a thread of its own
  every `SqliteBackend.sync_interval`): the first `AT_ONCE` publishes of a loop turn are each
  written at once, so a publisher waits no loop turn, and the rest of the turn's publishes are
  written in one transaction by a callback that runs before the server writes the turn's
  deliveries (each socket still gets the turn's events in one write). A turn makes
  ``AT_ONCE + 1`` commits at most, however many publishes. With ``"always"`` a writer thread
  drains a queue and fsyncs each of its commits (everything queued meanwhile goes in the next
  one), so the loop never waits on the disk and publishers share each fsync. Deletions
  (retention) are written together about once a second, so a commit of small events is one
  page.
- **Ids continue.** The id prefix and the publish counter are kept in the file: after a restart
  ids keep counting up from where they were, and a client resuming with an id from before the
  restart is replayed exactly (no gap event) while its event is retained.
- **Bounded file.** An event leaving memory's history (count, bytes, age, hub-wide bound) is
  deleted from the file too (within a second, or 256 events); SQLite reuses the freed pages,
  and the write-ahead log is checkpointed every ~8 MiB and truncated back to `WAL_LIMIT`. The
  file holds the retained history, plus what SQLite keeps free for reuse, plus the log.
- **Refusals at start.** A file that is unreadable, damaged or not ssehub's raises
  `HistoryFileCorrupt` / `HistoryFileError`; a file another hub holds (an exclusive ``flock`` on
  ``<file>.lock``) raises `HistoryFileLocked`. Nothing starts with a silently empty history.

Why SQLite: it is in Python's standard library (no dependency, no server), its WAL mode gives
atomic, crash-safe commits that readers never block, and it is among the most tested storage
engines there are. Embedded key-value stores (LMDB, as Mercure uses Bolt) would need a C
extension, for no gain here: every read is served from memory, the file is only written to
and read back at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssehub.backends.base import Deliver, Forget, PublishResult
from ssehub.backends.memory import TOMBSTONES, Admitted, MemoryBackend
from ssehub.errors import (
    BackendUnavailable,
    HistoryFileCorrupt,
    HistoryFileError,
    HistoryFileLocked,
    HubClosed,
)
from ssehub.wire import Message

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "APPLICATION_ID",
    "AT_ONCE",
    "FSYNC_MODES",
    "SCHEMA_VERSION",
    "WAL_LIMIT",
    "SqliteBackend",
]

FSYNC_MODES = ("always", "batch", "off")
"""When the file is flushed to the disk (every mode survives ``kill -9`` of the hub):

- ``always``: every group commit is fsynced before its publishes are answered (SQLite's
  ``synchronous=FULL``): an answered event survives a power loss too. One fsync per commit.
- ``batch`` (the default): commits are written to the operating system at once and the log is
  fsynced by a thread at most `SqliteBackend.sync_interval` seconds later
  (``synchronous=NORMAL``; checkpoints fsync too): a power loss or OS crash may lose the
  events answered in that last interval, never the file.
- ``off``: no fsync at all (``synchronous=OFF``); the OS writes when it likes. A power loss
  may lose recent events and can damage the file (the hub then refuses to start on it).
"""

SCHEMA_VERSION = 1
"""The layout of the history file (SQLite's ``user_version``); a newer one is refused."""

APPLICATION_ID = 0x53534548
"""Marks an SQLite file as an ssehub history file (``PRAGMA application_id``, "SSEH")."""

WAL_LIMIT = 8 * 1024 * 1024
"""Bytes the write-ahead log is truncated back to after a checkpoint (``journal_size_limit``)."""

AT_ONCE = 8
"""Publishes of one loop turn written each at once, with ``fsync="batch"`` or ``"off"`` (a
commit is then a write to the OS, tens of µs): the rest of the turn's publishes wait for one
group commit at the turn's end. So a commit costs no publisher a loop turn until publishes
crowd, and a turn never makes more than ``AT_ONCE + 1`` commits."""

_MAX_GROUP = 4096  # operations the writer thread writes in one transaction at most
_REMOVE_DELAY = 1.0  # seconds deletions wait, to be written together (on the loop)...
_REMOVE_BATCH = 256  # ... or until this many are due: then they go with the next events
# SQLite's automatic checkpoint, in WAL pages (of 4 KiB): it fsyncs (with fsync="batch"), so
# not too often; a commit of small events is one page.
_CHECKPOINT_PAGES = 2000

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE events (
    channel TEXT NOT NULL,
    ord INTEGER NOT NULL,
    id TEXT NOT NULL,
    data BLOB NOT NULL,
    time REAL NOT NULL,
    private INTEGER NOT NULL,
    PRIMARY KEY (channel, ord)
) WITHOUT ROWID;
CREATE TABLE channels (
    name TEXT PRIMARY KEY,
    trimmed_id TEXT NOT NULL,
    trimmed_ord INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass(slots=True)
class _Write:
    event: Admitted
    time: float  # wall clock, for history_ttl across restarts
    future: asyncio.Future[PublishResult]


@dataclass(slots=True)
class _Remove:
    channel: str
    event_id: str
    order: int


_Op = _Write | _Remove | None  # None stops the writer


class SqliteBackend(MemoryBackend):
    """History kept in an SQLite file as well as in memory: a single hub that restarts
    (``kill -9``, deploy, reboot) without losing or forgetting an event it accepted.

    ``path`` is the file (created with its ``.lock`` beside it; its directory must exist).
    ``fsync`` is one of `FSYNC_MODES`. One process only: a second backend on the same file is
    refused at start with `HistoryFileLocked`. The file is opened by `open` (called by the
    hub's start), which raises `HistoryFileError` (or a subclass) when it cannot be used.
    `publish` raises `ssehub.BackendUnavailable`, storing and delivering nothing, when the
    event cannot be written.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: str = "batch", sync_interval: float = 1.0
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_MODES)}, got {fsync!r}")
        if not sync_interval > 0:
            raise ValueError(f"sync_interval must be positive seconds, got {sync_interval!r}")
        super().__init__()
        self.path = Path(path)
        """The history file."""
        self.fsync = fsync
        """One of `FSYNC_MODES`."""
        self.sync_interval = sync_interval
        """Seconds between fsyncs with ``fsync="batch"`` (a power loss may lose this much)."""
        self.commits = 0
        """Group commits written so far (each holds one or more events)."""
        self.written = 0
        """Events written so far."""
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        # fsync="always" commits on a writer thread (the fsync must not stall the loop); the
        # other modes commit on the loop, once per loop turn, and "batch" fsyncs the log from a
        # thread of its own every sync_interval.
        self._threaded = fsync == "always"
        self._ops: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._pending: list[_Write] = []
        self._pending_removes: list[_Remove] = []
        self._flush_handle: asyncio.Handle | None = None  # writes the events, next loop turn
        self._remove_handle: asyncio.Handle | None = None  # writes the deletions, later
        self._removes_due = False  # enough deletions wait: write them with the next events
        self._at_once = 0  # publishes of this loop turn written at once
        self._syncer: threading.Thread | None = None
        self._syncer_stop = threading.Event()
        self._unsynced = False
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keeps_history = True
        self._writing: dict[tuple[str, str], asyncio.Future[PublishResult]] = {}
        self._stopped = False
        self.on_remove = self._removed

    # -- opening --------------------------------------------------------------------------

    def open(self) -> None:
        """Take the file's lock, open it (creating it if missing) and check it; blocking,
        idempotent. Raises `HistoryFileLocked`, `HistoryFileCorrupt` or `HistoryFileError`.

        The hub's start calls it; call it earlier to fail before serving (``ssehub serve``
        does)."""
        if self._db is not None:
            return
        if self._stopped:
            raise HubClosed(f"the history file {self.path} was closed")
        self._lock()
        try:
            self._db = self._connect()
        except BaseException:
            self._unlock()
            raise

    def _lock(self) -> None:
        lock_path = f"{self.path}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HistoryFileError(
                f"cannot open the lock file {lock_path}: {exc.strerror or exc}"
            ) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip()
                os.close(fd)
                by = f" (process {holder})" if holder.isdigit() else ""
                raise HistoryFileLocked(
                    f"{self.path} is in use by another hub{by}: two hubs cannot share one "
                    "history file (stop the other one, or give this one its own --data)"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        if path.exists() and not path.is_file():
            raise HistoryFileError(f"{path} is not a file (a history file is expected there)")
        fresh = not path.exists() or path.stat().st_size == 0
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise HistoryFileError(f"cannot open the history file {path}: {exc}") from None
        try:
            if fresh:
                self._create(db)
            else:
                self._check(db)
            db.execute("PRAGMA journal_mode=WAL")
            synchronous = {"always": "FULL", "batch": "NORMAL", "off": "OFF"}[self.fsync]
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
        except HistoryFileError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            raise HistoryFileCorrupt(
                f"{path} is damaged or not an ssehub history file ({exc}); restore it from a "
                "backup, or move it away to start with an empty history"
            ) from None
        return db

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        db.executescript(
            f"BEGIN;\n{_SCHEMA}PRAGMA application_id={APPLICATION_ID};\n"
            f"PRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;"
        )

    def _check(self, db: sqlite3.Connection) -> None:
        path = self.path
        app = db.execute("PRAGMA application_id").fetchone()[0]
        if app != APPLICATION_ID:
            raise HistoryFileCorrupt(
                f"{path} is not an ssehub history file (an SQLite file of another program, or "
                "no SQLite file at all); move it away or give another --data directory"
            )
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise HistoryFileCorrupt(
                f"{path} has history format {version}; this ssehub reads format "
                f"{SCHEMA_VERSION} (was it written by a newer ssehub?)"
            )
        problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise HistoryFileCorrupt(
                f"the history file {path} is damaged ({'; '.join(problems)}); restore it from "
                "a backup or move it away to start with an empty history"
            )

    # -- the Backend interface ------------------------------------------------------------

    async def start(
        self,
        deliver: Deliver,
        *,
        history: int,
        history_ttl: float | None,
        history_bytes: int | None = None,
        history_memory: int | None = None,
        max_event: int | None = None,
        forget: Forget | None = None,
    ) -> None:
        """Open the file (`open`), load the history it retains into memory, and start the
        writer. Raises `HistoryFileError` (or a subclass) when the file cannot be used."""
        self.open()
        await super().start(
            deliver,
            history=history,
            history_ttl=history_ttl,
            history_bytes=history_bytes,
            history_memory=history_memory,
            max_event=max_event,
            forget=forget,
        )
        self._keeps_history = history > 0
        self._loop = asyncio.get_running_loop()
        try:
            self._load()
        except sqlite3.Error as exc:
            self.release()
            raise HistoryFileCorrupt(f"cannot read the history file {self.path}: {exc}") from None
        if self._threaded:
            self._writer = threading.Thread(
                target=self._write_loop, name=f"ssehub-sqlite-{self.path.name}", daemon=True
            )
            self._writer.start()
        else:
            if self.fsync == "batch":
                self._syncer = threading.Thread(
                    target=self._sync_loop, name=f"ssehub-fsync-{self.path.name}", daemon=True
                )
                self._syncer.start()
            if self._pending_removes:
                self._flush(removes=True)  # what retention removed from the restored history
        self._running = True

    def _load(self) -> None:
        db = self._db
        assert db is not None
        meta = dict(db.execute("SELECT key, value FROM meta"))
        prefix = meta.get("prefix")
        if not isinstance(prefix, str) or not self._keeps_history:
            # Without history (``history=0``) nothing is written, so the counter cannot be
            # kept: a fresh prefix then keeps this run's ids apart from the earlier ones.
            prefix = self.id_prefix
            db.execute("INSERT OR REPLACE INTO meta VALUES ('prefix', ?)", (prefix,))
        newest = db.execute("SELECT max(ord) FROM events").fetchone()[0] or 0
        deleted = db.execute("SELECT max(trimmed_ord) FROM channels").fetchone()[0] or 0
        forgotten = int(meta.get("forgotten") or 0)
        order = max(newest, deleted, forgotten)
        with_events = {row[0] for row in db.execute("SELECT DISTINCT channel FROM events")}
        # Channels holding events last, so that the cut below drops the oldest emptied ones only
        # (a channel holding events takes its tombstone into the history its events make).
        trimmed = sorted(
            db.execute("SELECT name, trimmed_id, trimmed_ord FROM channels"),
            key=lambda row: (row[0] in with_events, row[2]),
        )
        # The newest TOMBSTONES of the emptied channels are remembered (as in memory); the
        # others are forgotten here too, so the table stays as small as memory's.
        emptied = sum(1 for row in trimmed if row[0] not in with_events)
        cut = max(0, emptied - TOMBSTONES)
        dropped, trimmed = trimmed[:cut], trimmed[cut:]
        if dropped:
            forgotten = max(forgotten, *(row[2] for row in dropped))
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM channels WHERE name = ?", [(row[0],) for row in dropped])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('forgotten', ?)", (forgotten,))
            db.execute("COMMIT")
        for name, event_id, trimmed_order in trimmed:
            self.restore_tombstone(name, event_id, trimmed_order)
        self.restore_counter(prefix, order, forgotten)
        now = time.time()
        rows = db.execute(
            "SELECT channel, id, data, ord, private, time FROM events ORDER BY ord, channel"
        )
        for channel, event_id, data, event_order, private, when in rows:
            self.restore(channel, event_id, data, event_order, bool(private), max(0.0, now - when))

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        """Write the event to the file (in the next group commit), then retain and deliver it;
        return its id once written. Raises `ssehub.BackendUnavailable` (nothing stored or
        delivered) when the write fails, and as `MemoryBackend.publish` does otherwise."""
        loop = self._loop
        if loop is None or not self._running:
            raise HubClosed("the durable backend is not running (start it, or it was closed)")
        names = (channel,) if isinstance(channel, str) else channel
        if message.id is not None:
            # The same id in flight: its fate decides whether this one is a duplicate.
            for name in names:
                earlier = self._writing.get((name, message.id))
                if earlier is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(earlier)
        admitted = self.admit(channel, message, private=private)
        if isinstance(admitted, PublishResult):
            return admitted
        if not self._keeps_history:
            return self.accept(admitted)  # nothing is retained, so nothing is written
        future: asyncio.Future[PublishResult] = loop.create_future()
        keys = [(name, admitted.event_id) for name in names] if message.id is not None else []
        for key in keys:
            self._writing[key] = future
        self._submit(_Write(admitted, time.time(), future), loop)
        if future.done():
            for key in keys:
                if self._writing.get(key) is future:
                    del self._writing[key]
            return future.result()
        try:
            # Shielded: a publisher that gives up does not take back an event being written.
            return await asyncio.shield(future)
        finally:
            for key in keys:
                if self._writing.get(key) is future:
                    del self._writing[key]

    def publish_now(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult | None:
        """`publish` where it completes without waiting: the event's id once written, or None
        (nothing done; await `publish`).

        It does for the first `AT_ONCE` publishes of a loop turn, each written in a commit of
        its own as it comes (with ``fsync`` ``"batch"`` or ``"off"``; ``"always"`` writes in a
        thread), unless an event of the same id is being written. Raises as `publish` does.
        """
        loop = self._loop
        if (
            loop is None
            or not self._running
            or self._threaded
            or self._pending
            or (self._flush_handle is not None and self._at_once >= AT_ONCE)
        ):
            return None
        if message.id is not None:
            names = (channel,) if isinstance(channel, str) else channel
            if any((name, message.id) in self._writing for name in names):
                return None  # its fate decides whether this one is a duplicate: publish waits
        admitted = self.admit(channel, message, private=private)
        if isinstance(admitted, PublishResult):
            return admitted
        if not self._keeps_history:
            return self.accept(admitted)
        future: asyncio.Future[PublishResult] = loop.create_future()
        self._submit(_Write(admitted, time.time(), future), loop)
        return future.result()  # written at once (or raises BackendUnavailable)

    def _submit(self, write: _Write, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``write`` for the writer thread, or for this loop turn's group commit; the
        first `AT_ONCE` of a turn are written at once when nothing of the turn waits before."""
        if self._threaded:
            self._ops.put(write)
            return
        self._pending.append(write)
        if self._flush_handle is None:
            # The first publish of a loop turn schedules the turn's group commit first, so
            # that it runs before the server's write pass that the deliveries schedule: the
            # turn's events reach each socket in one write, however they were committed.
            self._flush_handle = loop.call_soon(self._flush_writes)
            self._at_once = 0
        if self._at_once < AT_ONCE and len(self._pending) == 1:
            # Written at once, as memory would deliver it (nothing of this turn waits
            # before it): the publisher is answered without waiting a loop turn.
            self._at_once += 1
            self._flush(removes=self._removes_due)

    def _removed(self, channel: str, event_id: str, order: int) -> None:
        if self._stopped:
            return
        remove = _Remove(channel, event_id, order)
        if self._threaded or self._loop is None:
            self._ops.put(remove)  # at start-up (restoring), the queue waits for the writer
            return
        self._pending_removes.append(remove)
        if len(self._pending_removes) >= _REMOVE_BATCH:
            self._removes_due = True
        if self._remove_handle is None:
            # Deletions need no hurry (a restart applies retention again): written together
            # once a second, they touch each page once, and commits of events stay one page.
            self._remove_handle = self._loop.call_later(_REMOVE_DELAY, self._flush_removes)

    def _flush_writes(self) -> None:
        self._flush_handle = None
        self._flush(removes=self._removes_due)

    def _flush_removes(self) -> None:
        self._remove_handle = None
        self._flush(removes=True)

    def _flush(self, *, removes: bool) -> None:
        # On the loop: one transaction for every event published since the last loop turn
        # (and the deletions due).
        db = self._db
        writes, self._pending = self._pending, []
        gone: list[_Remove] = []
        if removes:
            gone, self._pending_removes = self._pending_removes, []
            self._removes_due = False
        if db is None or not (writes or gone):
            return
        error: sqlite3.Error | None = None
        try:
            self._commit(db, writes, gone)
            self._unsynced = True
        except sqlite3.Error as exc:
            error = exc
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        self._committed(writes, error)

    async def close(self) -> None:
        """Write what is queued, stop the writer, checkpoint and close the file, release the
        lock."""
        await super().close()
        self._running = False
        for handle in (self._flush_handle, self._remove_handle):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._remove_handle = None
        if not self._threaded:
            self._flush(removes=True)
        writer = self._writer
        if writer is not None and writer.is_alive():
            self._ops.put(None)
            await asyncio.to_thread(writer.join)
            await asyncio.sleep(0)  # let the last commits' publishes be answered
        self.release()

    def release(self) -> None:
        """Stop the writer and close the file now (blocking; what `close` ends with). For a
        process that exits without shutting its hub down; the backend cannot be used after.
        Events not yet written are dropped (their publishers were never answered)."""
        self._stopped = True
        self._running = False
        for handle in (self._flush_handle, self._remove_handle):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._remove_handle = None
        self._pending = []
        writer = self._writer
        if writer is not None and writer.is_alive() and writer is not threading.current_thread():
            self._ops.put(None)
            writer.join()
        syncer = self._syncer
        if syncer is not None and syncer.is_alive():
            self._syncer_stop.set()
            syncer.join()
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
        self._unlock()

    async def health(self) -> dict[str, Any]:
        """``{"ok": ..., "backend": "SqliteBackend", "path": ..., "fsync": ...}`` plus counters."""
        return {
            "ok": self._db is not None and not self._stopped,
            "backend": type(self).__name__,
            "path": str(self.path),
            "fsync": self.fsync,
            "commits": self.commits,
            "written": self.written,
        }

    # -- the writer thread ----------------------------------------------------------------

    def _sync_loop(self) -> None:
        # fsync="batch": the log is fsynced every sync_interval when something was written.
        # fsync is per file, so a descriptor of our own makes SQLite's writes durable; SQLite's
        # own checkpoints still fsync the log and the database as they copy one to the other.
        wal = f"{self.path}-wal"
        fd: int | None = None
        try:
            while not self._syncer_stop.wait(self.sync_interval):
                if not self._unsynced:
                    continue
                self._unsynced = False
                try:
                    if fd is None:
                        fd = os.open(wal, os.O_RDONLY)
                    os.fsync(fd)
                except OSError:
                    self._unsynced = True  # tried again next time
        finally:
            if fd is not None:
                os.close(fd)

    def _write_loop(self) -> None:
        # fsync="always": every commit is fsynced (synchronous=FULL) off the loop.
        db = self._db
        assert db is not None
        ops = self._ops
        running = True
        while running:
            group: list[_Op] = [ops.get()]
            while len(group) < _MAX_GROUP:
                try:
                    group.append(ops.get_nowait())
                except queue.Empty:
                    break
            running = None not in group
            writes = [item for item in group if isinstance(item, _Write)]
            removes = [item for item in group if isinstance(item, _Remove)]
            error: sqlite3.Error | None = None
            if writes or removes:
                try:
                    self._commit(db, writes, removes)
                except sqlite3.Error as exc:
                    error = exc
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
            if writes:
                self._answer(writes, error)

    def _commit(self, db: sqlite3.Connection, writes: list[_Write], removes: list[_Remove]) -> None:
        rows = []
        for write in writes:
            event = write.event
            names = (event.channel,) if isinstance(event.channel, str) else event.channel
            for name in names:
                rows.append(
                    (name, event.order, event.event_id, event.data, write.time, event.private)
                )
        # Removals come oldest first per channel: the newest one bounds what goes.
        trimmed: dict[str, tuple[str, int]] = {}
        for remove in removes:
            trimmed[remove.channel] = (remove.event_id, remove.order)
        # The publish counter is not written apart: the newest order is in ``events``, or in
        # ``channels`` once deleted (one page per commit, most often, for a small event).
        if len(rows) == 1 and not trimmed:
            # One row (the usual commit, written at once): one statement is its own
            # transaction, without the two statements around it.
            db.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)", rows[0])
            self.commits += 1
            self.written += len(writes)
            return
        db.execute("BEGIN IMMEDIATE")
        if rows:
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
        for channel, (event_id, order) in trimmed.items():
            db.execute("DELETE FROM events WHERE channel = ? AND ord <= ?", (channel, order))
            db.execute(
                "INSERT OR REPLACE INTO channels VALUES (?, ?, ?)", (channel, event_id, order)
            )
        db.execute("COMMIT")
        self.commits += 1
        self.written += len(writes)

    def _answer(self, writes: list[_Write], error: sqlite3.Error | None) -> None:
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._committed, writes, error)

    def _committed(self, writes: list[_Write], error: sqlite3.Error | None) -> None:
        # On the loop, in commit order: answer each publisher, then retain and deliver, with no
        # await between (the publishers run after the delivery). Answering first puts their
        # responses ahead of the subscribers' writes that the delivery schedules.
        for write in writes:
            if error is None:
                if not write.future.done():
                    write.future.set_result(PublishResult(write.event.event_id))
                self.accept(write.event)
            elif not write.future.done():
                write.future.set_exception(
                    BackendUnavailable(f"the event could not be written to {self.path}: {error}")
                )
