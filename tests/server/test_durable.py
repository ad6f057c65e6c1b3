"""``ssehub serve --data DIR``: history that survives ``kill -9`` of the hub, exactly.

Each test runs real hub processes on one data directory: publish, ``kill -9``, start again on
the same directory, and resume as a browser would (``Last-Event-ID`` header, ``lastEventId``
query). What was answered 200 before the kill is replayed, with no gap event; what is refused
(a directory another hub holds, a damaged file) is refused in one line at start.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ssehub import GAP_EVENT
from tests._support.sse import open_sse
from tests.server.hub_process import HubFactory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def publish(url: str, channel: str, texts: list[str]) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        answers = [await client.post(channel, content=text) for text in texts]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [str(a.json()["id"]) for a in answers]


def counter(event_id: str) -> int:
    """The count in an id the hub assigned (``<prefix>-<n>``)."""
    return int(event_id.rpartition("-")[2])


async def test_a_hub_killed_and_restarted_replays_exactly_the_missed_events(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    channel = "/events/durable"
    first = start_hub("--data", data)
    ids = await publish(first.url, channel, [f"before {i}" for i in range(5)])
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = start_hub("--data", data)
    assert "event=history" in second.log() and "events=5 channels=1" in second.log()
    later = await publish(second.url, channel, ["after 0"])
    # Ids keep counting up across the restart: none is given twice.
    assert counter(later[0]) > counter(ids[-1]) and later[0].split("-")[0] == ids[0].split("-")[0]
    expected = [(ids[i], f"before {i}") for i in (2, 3, 4)] + [(later[0], "after 0")]
    for how in ("header", "query"):
        if how == "header":
            opened = open_sse(f"{second.url}{channel}", headers={"Last-Event-ID": ids[1]})
        else:
            opened = open_sse(f"{second.url}{channel}?lastEventId={ids[1]}")
        async with opened as stream:
            events = await stream.events(len(expected))
            assert [(e.id, e.data) for e in events] == expected, how
            assert all(e.event != GAP_EVENT for e in events)
            # Then the live stream, from the same place.
            fresh = await publish(second.url, channel, [f"live {how}"])
            (live,) = await stream.events(1)
            assert (live.id, live.data) == (fresh[0], f"live {how}")
            expected.append((fresh[0], f"live {how}"))


async def test_retention_by_count_holds_across_restarts(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    channel = "/events/bounded"
    first = start_hub("--data", data, "--history", "3")
    ids = await publish(first.url, channel, [f"m{i}" for i in range(10)])
    first.stop(signal.SIGKILL)

    second = start_hub("--data", data, "--history", "3")
    assert "events=3 channels=1" in second.log()
    # From the newest event trimmed away, nothing was missed: no gap.
    async with open_sse(f"{second.url}{channel}", headers={"Last-Event-ID": ids[6]}) as stream:
        events = await stream.events(3)
    assert [(e.id, e.event) for e in events] == [(i, None) for i in ids[7:]]
    # From an older one, the hub says events were lost, then replays what it has.
    async with open_sse(f"{second.url}{channel}", headers={"Last-Event-ID": ids[2]}) as stream:
        gap, *rest = await stream.events(4)
    assert gap.event == GAP_EVENT and [e.id for e in rest] == ids[7:]
    assert second.stop() == 0

    # A smaller bound on the next start trims the file too.
    third = start_hub("--data", data, "--history", "1")
    assert "events=1 channels=1" in third.log()
    third.stop(signal.SIGKILL)
    fourth = start_hub("--data", data, "--history", "3")
    assert "events=1 channels=1" in fourth.log()


@pytest.mark.parametrize("fsync", ["batch", "always", "off"])
def test_concurrent_publishers_lose_no_answered_event_when_the_hub_is_killed(
    start_hub: HubFactory, tmp_path: Path, fsync: str
) -> None:
    data = str(tmp_path / "data")
    channel = "/events/busy"
    first = start_hub("--data", data, "--history", "100000", "--fsync", fsync)
    (marker,) = asyncio.run(publish(first.url, channel, ["marker"]))
    answered: list[str] = []
    lock = threading.Lock()

    def publisher(n: int) -> None:
        with httpx.Client(base_url=first.url, timeout=5) as client:
            for i in range(100_000):
                try:
                    answer = client.post(channel, content=f"p{n} {i}")
                except httpx.HTTPError:
                    return  # the hub is gone
                if answer.status_code == 200:
                    with lock:
                        answered.append(str(answer.json()["id"]))

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(answered) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.stop(signal.SIGKILL)
    for thread in threads:
        thread.join(10)
    assert len(answered) >= 300

    second = start_hub("--data", data, "--history", "100000")

    async def replayed() -> list[str]:
        got: list[str] = []
        async with open_sse(f"{second.url}{channel}", headers={"Last-Event-ID": marker}) as stream:
            wanted = set(answered)
            while not wanted <= set(got):
                event = await stream.next_event(timeout=10)
                assert event.event != GAP_EVENT
                got.append(event.id or "")
        return got

    got = asyncio.run(replayed())
    assert set(answered) <= set(got)
    assert len(got) == len(set(got))  # each event once
    assert got == sorted(got, key=counter)  # in publish order


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ssehub", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_second_hub_on_the_same_directory_is_refused(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    first = start_hub("--data", data)
    refused = serve("--data", data)
    assert refused.returncode == 2
    assert "in use by another hub" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert first.stop() == 0
    # Once the first one stopped, the directory is free.
    start_hub("--data", data)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"this is not a database, just some text " * 200, "damaged or not an ssehub history file"),
        (b"", None),  # an empty file (a crash as it was made) is a new history
    ],
)
def test_a_damaged_history_file_is_refused_at_start_in_one_line(
    start_hub: HubFactory, tmp_path: Path, content: bytes, says: str | None
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.sqlite3").write_bytes(content)
    if says is None:
        start_hub("--data", str(data))
        return
    refused = serve("--data", str(data))
    assert refused.returncode == 2, refused.stderr
    assert says in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (data / "history.sqlite3").read_bytes() == content  # left as it was


def test_data_is_refused_with_redis_or_several_workers(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    with_redis = serve("--data", data, "--redis", "redis://127.0.0.1:1/0")
    assert with_redis.returncode == 2 and "not both" in with_redis.stderr
    workers = serve("--data", data, "--workers", "2")
    assert workers.returncode == 2 and "one hub process" in workers.stderr
