"""The benchmark harness keeps working: ``python -m bench --smoke`` runs every server end to end.

Speed is never asserted here (figures live in BENCHMARKS.md); this checks the harness itself:
it exits 0, every available server took part, and every server delivered every event it was
sent to every subscriber, as counted by the load generator and checked with ssehub's parser.
W5 (one stream, five channels) runs on the servers with channel selectors, and the others say
they skipped it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository, with ``src`` importable; asserts exit 0."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.timeout(120)
def test_bench_smoke_runs_every_server_and_delivers_every_event(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = run_bench("bench", "--smoke", "--json", str(out), timeout=110)
    report = json.loads(out.read_text())
    servers = {r["server"] for r in report["results"]}
    # Every server in bench/config.py is installed by the dev extras, so every one must run.
    durable = {"ssehub-data", "ssehub-data-always", "ssehub-data-off"}
    assert servers == {
        "ssehub",
        "ssehub-uvicorn",
        "ssehub-starlette",
        "sse-starlette",
        "bare",
        *durable,
    }
    assert {r["workload"] for r in report["results"]} == {"W1", "W2", "W3", "W4", "W5"}
    w5 = {r["server"] for r in report["results"] if r["workload"] == "W5" and r["runs"]}
    assert w5 == {"ssehub", "ssehub-uvicorn", "ssehub-starlette"}
    assert "W5 (one stream, several channels) against W1" in proc.stdout  # the ratio table
    assert "W1 on the durable hub (--data) against the in-memory hub" in proc.stdout
    for result in report["results"]:
        who = f"{result['workload']} {result['case']} on {result['server_name']}"
        assert result["error"] is None, who + ": " + str(result["error"])
        if result["server"] in durable and result["workload"] != "W1":
            assert result["skipped"] == "skipped: --data is measured on W1 only", who
            assert not result["runs"], who
            continue
        if result["server"] not in w5 and result["workload"] == "W5":
            assert result["skipped"] == "skipped: no channel selectors (GET /events?channel=)"
            assert not result["runs"], who
            continue
        assert result["skipped"] is None, who
        assert result["runs"], who + ": no run"
        for run in result["runs"]:
            if "received" in run:
                assert run["publish_errors"] == 0, who + f": {run['publish_first_error']}"
                assert run["expected"] > 0, who
                assert run["received"] == run["expected"], who
                assert run["verified"] is True, who + f": {run['verify_problems']}"
                if result["workload"] == "W5":
                    # Every subscriber got every shared event, and the own-channel trickle.
                    shared = run["events"] * result["param"]["subscribers"]
                    assert run["expected"] == shared + run["own_events"] > shared, who
                if result["workload"] == "W3":
                    # Every timed subscriber recorded a latency for every event it was sent.
                    per_subscriber = run["expected"] // result["param"]["subscribers"]
                    assert run["timed"] > 0, who
                    assert run["samples"] == run["timed"] * per_subscriber, who
            else:  # W2: idle connections
                assert run["connected"] > 0, who
                assert run["complete"], who


@pytest.mark.timeout(60)
def test_idle_latency_bench_measures_ssehub_and_bare_and_prints_the_ratio() -> None:
    proc = run_bench("bench.idle_latency", "--smoke", timeout=50)
    for n in (0, 1, 3):
        assert f"**One event at a time to {n} subscriber(s)**" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ssehub")]
    # Without subscribers: the answer's latency and the CPU per publish, each against bare;
    # with them, the deliveries' p50 and p99 too.
    assert [row.count("x |") for row in rows] == [2, 4, 4]
    assert all(float(row.split("|")[5]) > 0 for row in rows)  # server CPU per event
    assert proc.stdout.count("| bare asyncio baseline |") == 3


@pytest.mark.timeout(120)
def test_localbus_bench_counts_writes_per_delivery_and_the_sequencers_share() -> None:
    """``bench.localbus``, every part: every run complete, and the figures that split the
    2-worker cost (write system calls per delivery, the sequencer's CPU per event) measured,
    not left at zero."""
    proc = run_bench("bench.localbus", "--smoke", timeout=110)
    lines = proc.stdout.splitlines()
    # Part 1: 1 and 2 workers as fast as each goes, with a request per event and streaming.
    fast = [
        row
        for row in (line.split("|")[1:-1] for line in lines)
        if len(row) == 7 and row[0].strip() in ("a request per event", "streaming")
    ]
    assert [(row[0].strip(), row[1].strip()) for row in fast] == [
        ("a request per event", "1"),
        ("a request per event", "2"),
        ("streaming", "1"),
        ("streaming", "2"),
    ]
    for row in fast:
        assert row[6].strip() == "yes"
        assert float(row[5]) > 0  # writes per delivery, counted
    # Streaming writes fewer times per delivery than a request per event, on each setup.
    assert float(fast[2][5]) < float(fast[0][5])
    assert float(fast[3][5]) < float(fast[1][5])
    # Parts 2 and 3 (the streaming publish into one channel, and W4) complete too.
    assert "| streaming (NDJSON) |" in proc.stdout
    w4 = [line for line in lines if line.startswith(("| ssehub", "| bare asyncio baseline ("))]
    assert len(w4) == 4 and all(line.endswith("| yes |") for line in w4)
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| 150 |")]
    paced = [row for row in rows if len(row) == 8]  # part 1b: rate, workers, ..., complete
    bus = [row for row in rows if len(row) == 7]  # part 1c: one row per rate
    assert [row[1].strip() for row in paced] == ["1", "2"]
    for row in paced:
        assert row[7].strip() == "yes"  # every event reached every subscriber
        # About a write per subscriber per event at this rate, plus the answers and the bus's
        # frames (1.05 to 1.2 here); well above zero even if a stall makes a few events share.
        assert float(row[5]) >= 0.5
    assert len(bus) == 1
    sequencer = float(bus[0][3].strip().removesuffix(" us"))
    assert sequencer > 0  # the supervisor's CPU per event with 2 workers
