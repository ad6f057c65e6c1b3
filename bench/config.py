"""Every knob of the benchmark in one place: sizes, durations, timeouts and the servers under test.

Edit this file (or pass ``--servers``/``--workloads``/``--runs`` to ``python -m bench``) to re-run
with other figures; nothing else in bench/ hard-codes a size or a time.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
PEERS = Path(__file__).resolve().parent / "peers"
HOST = "127.0.0.1"  # every byte of benchmark traffic stays on loopback

# --- repetitions ---------------------------------------------------------------------------
RUNS = 3  # each figure is the median of RUNS runs, shown with min and max

# --- payload -------------------------------------------------------------------------------
EVENT_DATA_BYTES = 64  # length of each event's data field, as in issue 6
PUBLISH_BATCH = 1  # events per POST (1 = one JSON object per request; >1 = a JSON array)

# --- W1: fan-out on one channel, events published back to back --------------------------
W1_SUBSCRIBERS = (100, 1_000, 5_000)
W1_PUBLISHERS = (1, 4)  # concurrent keep-alive publisher connections
# Events published per run: enough for DELIVERIES deliveries, within [MIN, MAX] events.
W1_DELIVERIES = 400_000
W1_MIN_EVENTS = 100
W1_MAX_EVENTS = 4_000

# --- W2: idle connections, server memory per connection ---------------------------------
W2_SUBSCRIBERS = (1_000, 10_000)
W2_SETTLE_S = 2.0  # wait after the last subscriber is in, before reading RSS

# --- W3: publish-to-receive latency -----------------------------------------------------------
W3_SUBSCRIBERS = 1_000
W3_RATE = 200  # events per second, paced, from one publisher connection
# W3 at several rates (``--w3-rates``): the issue-18 check compares ssehub's p99 with the bare
# baseline's at the highest of these rates the baseline sustains (W3_SUSTAINED of it reached).
# Empty: W3_RATE only.
W3_RATES: tuple[int, ...] = ()
W3_SUSTAINED = 0.98
W3_SECONDS = 5.0
# Subscribers that read each event's publish time, evenly spread over the W3 subscribers in
# connection order; every subscriber counts its events, only these parse timestamps. Parsing
# all 1,000 (1,000,000 timestamps per run) saturated the load generator's core, so the figures
# measured the client's queue, not the server.
W3_TIMED = 50

# --- W4: many channels, one subscriber each, events to random channels --------------------
W4_CHANNELS = 10_000
W4_EVENTS = 20_000
W4_PUBLISHERS = 4
W4_SEED = 6

# --- W5: one stream, several channel selectors (GET /events?channel=...&channel=...) -------
# W5_SUBSCRIBERS clients, each on ONE stream with 1 + W5_OWN_CHANNELS selectors: the shared
# channel and W5_OWN_CHANNELS channels of its own. Events go to the shared channel back to back,
# as in W1 (same size, w1_events(W5_SUBSCRIBERS) of them, from each of W5_PUBLISHERS publisher
# connections), plus a trickle of W5_OWN_EVENTS events to own channels, spread among them.
W5_SUBSCRIBERS = 1_000
W5_PUBLISHERS = W1_PUBLISHERS
W5_OWN_CHANNELS = 4
W5_OWN_EVENTS = 40  # in groups of W5_OWN_CHANNELS: one to each own channel of a few subscribers
# The target of issue 13: W5's delivered events/s at least this fraction of W1's on one channel
# (same server, same subscribers and publishers, same run). A run below it fails the bench.
# None: print the ratio, check nothing (smoke sizes are too small to compare speeds).
W5_TARGET_RATIO: float | None = 0.7

# --- durable history (issue 15): W1 on `ssehub serve --data DIR` against the in-memory hub ---
# The servers compared (keys of SERVERS), measured alternately in the same run; the target is
# checked for DATA_SERVER (--fsync batch) at DATA_SUBSCRIBERS subscribers, for every W1
# publisher count; the ratio is printed for every --data server (ssehub-data-always and
# ssehub-data-off too) at every W1 size. None: print the ratios, check nothing (smoke sizes).
DATA_SERVER = "ssehub-data"
DATA_REFERENCE = "ssehub"
DATA_SUBSCRIBERS = 1_000
DATA_TARGET_RATIO: float | None = 0.8

# --- the load generator -------------------------------------------------------------------
SUBSCRIBERS_PER_LOADGEN = 5_000  # above this, subscribers are split over several processes
CONNECT_CONCURRENCY = 200  # subscribe requests in flight at once per loadgen process
CONNECT_TIMEOUT_S = 60.0  # all subscribers of one process must be in by then
SETTLE_S = 0.3  # pause after all subscribers are in, before publishing
STALL_S = 5.0  # a run ends when no event arrived for this long (lost events)
RUN_DEADLINE_S = 120.0  # hard bound on one measurement
# Subscribers that neither time events nor keep the verified sample read at most once per
# READ_INTERVAL_S (they pause after a read; the kernel buffers what arrives meanwhile). One
# read per event written per subscriber was what bounded the client in W1 (1,000,000 reads in
# W3); the server's writes are the same either way. The last receipt of a run, and so W1's and
# W4's events/s, can be late by up to one interval (under 1% of a W1 run). 0 = read at once.
READ_INTERVAL_S = 0.01
W3_READ_INTERVAL_S = 0.05  # W3's untimed subscribers only count, so they read less often
SAMPLE_BYTES = 4 << 20  # stream bytes kept from subscriber 0 to verify with ssehub.wire

# --- servers ---------------------------------------------------------------------------------
SERVER_START_TIMEOUT_S = 30.0
BETWEEN_RUNS_S = 0.5  # let the server drop the last run's connections

# --- smoke mode (CI): tiny sizes, one run, every server ---------------------------------
SMOKE = {
    "RUNS": 1,
    "W1_SUBSCRIBERS": (10,),
    "W1_PUBLISHERS": (1, 4),
    "W1_DELIVERIES": 2_000,
    "W1_MIN_EVENTS": 200,
    "W1_MAX_EVENTS": 200,
    "W2_SUBSCRIBERS": (10,),
    "W2_SETTLE_S": 0.2,
    "W3_SUBSCRIBERS": 10,
    "W3_RATE": 200,
    "W3_SECONDS": 0.5,
    "W3_TIMED": 5,
    "W4_CHANNELS": 20,
    "W4_EVENTS": 200,
    "W5_SUBSCRIBERS": 10,
    "W5_OWN_EVENTS": 8,
    "W5_TARGET_RATIO": None,
    "DATA_TARGET_RATIO": None,
    "STALL_S": 3.0,
    "RUN_DEADLINE_S": 20.0,
    "BETWEEN_RUNS_S": 0.1,
}


def apply_smoke() -> None:
    """Switch this module's knobs to the smoke sizes."""
    globals().update(SMOKE)


def w1_events(subscribers: int) -> int:
    """Events to publish in one W1 run for that many subscribers."""
    return max(W1_MIN_EVENTS, min(W1_MAX_EVENTS, W1_DELIVERIES // subscribers))


@dataclass(frozen=True)
class ServerSpec:
    """A server under test: how to start it, and what must be importable for it to run."""

    key: str
    name: str
    argv: tuple[str, ...]  # "{port}" and "{host}" are substituted
    requires: tuple[str, ...] = ()  # modules that must import (else the server is skipped)
    env: dict[str, str] = field(default_factory=dict)
    # Answers ``GET /events?channel=A&channel=B`` with one stream of every named channel (W5).
    selectors: bool = False
    # Started with ``--data DIR``, DIR a fresh temporary directory each time (durable history).
    data: bool = False
    # The load generator publishes over streaming POSTs (NDJSON, one per publisher connection)
    # instead of one request per event.
    stream_publish: bool = False
    # Measured only when named in ``--servers`` (a variant of another server, not a peer).
    opt_in: bool = False

    def command(self, port: int) -> list[str]:
        """The command line that starts this server on ``port``."""
        return [a.format(port=port, host=HOST, python=sys.executable) for a in self.argv]


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        "ssehub",
        "ssehub (standalone hub)",
        ("{python}", "-m", "ssehub", "serve", "--host", "{host}", "--port", "{port}"),
        requires=("ssehub.server",),
        selectors=True,
    ),
    *(
        ServerSpec(
            DATA_SERVER if fsync == "batch" else f"{DATA_SERVER}-{fsync}",
            f"ssehub --data (durable, fsync {fsync})",
            (
                "{python}",
                "-m",
                "ssehub",
                "serve",
                "--fsync",
                fsync,
                "--host",
                "{host}",
                "--port",
                "{port}",
            ),
            requires=("ssehub.server", "ssehub.backends.sqlite"),
            selectors=True,
            data=True,
        )
        for fsync in ("batch", "always", "off")
    ),
    ServerSpec(
        "ssehub-stream",
        "ssehub, streaming publish (NDJSON POST)",
        ("{python}", "-m", "ssehub", "serve", "--host", "{host}", "--port", "{port}"),
        requires=("ssehub.server",),
        selectors=True,
        stream_publish=True,
        opt_in=True,
    ),
    ServerSpec(
        "ssehub-workers2",
        "ssehub --workers 2 (in memory, local bus)",
        (
            "{python}",
            "-m",
            "ssehub",
            "serve",
            "--workers",
            "2",
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        requires=("ssehub.server",),
        selectors=True,
        opt_in=True,
    ),
    ServerSpec(
        "ssehub-uvicorn",
        "ssehub (standalone hub on uvicorn)",
        (
            "{python}",
            "-m",
            "ssehub",
            "serve",
            "--http",
            "uvicorn",
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        requires=("ssehub.server", "uvicorn"),
        selectors=True,
    ),
    ServerSpec(
        "ssehub-starlette",
        "ssehub (Starlette + uvicorn)",
        ("{python}", str(PEERS / "ssehub_starlette.py"), "--host", "{host}", "--port", "{port}"),
        requires=("ssehub.hub", "ssehub.asgi", "starlette", "uvicorn"),
        selectors=True,
    ),
    ServerSpec(
        "sse-starlette",
        "sse-starlette (uvicorn)",
        ("{python}", str(PEERS / "sse_starlette_app.py"), "--host", "{host}", "--port", "{port}"),
        requires=("sse_starlette", "starlette", "uvicorn"),
    ),
    ServerSpec(
        "bare",
        "bare asyncio baseline",
        ("{python}", str(PEERS / "bare.py"), "--host", "{host}", "--port", "{port}"),
    ),
)
REFERENCES = ("sse-starlette", "bare")  # ratio columns in the table are against these

WORKLOADS = ("W1", "W2", "W3", "W4", "W5")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the processes the driver starts: ``src`` importable, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env
