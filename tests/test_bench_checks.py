"""``python -m bench`` fails (exit 1) when any run failed its delivery or parse check.

Figures from a hub that lost or garbled events are void: the bench says so on stderr, marks the
table, and exits 1, whether it measured them just now or reads them back with ``--from-json``.
The raw results kept in bench/results/ (behind BENCHMARKS.md) must all pass the same checks.
So must issue 13's target: W5 (one stream, five channels) at least 0.7x W1 (one channel) on the
same server in the same run.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import config as C
from bench.run import RATE, Case, Record, cases, failures, latency_table, run_problems

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"

GOOD_RUN: dict[str, Any] = {
    "rate": 1000.0,
    "received": 500,
    "expected": 500,
    "complete": True,
    "publish_errors": 0,
    "publish_first_error": None,
    "server_cpu_s": 1.0,
    "loadgen_cpu_s": 1.0,
    "loadgen_wall_s": 1.0,
    "verified": True,
    "verify_problems": [],
}


def w5_report(w1_rate: float, w5_rate: float, target: float | None = 0.7) -> dict[str, Any]:
    """One run's W1 and W5 at 1,000 subscribers, 1 publisher, on the standalone hub."""

    def result(workload: str, case: str, rate: float, **param: Any) -> dict[str, Any]:
        return {
            "workload": workload,
            "case": case,
            "param": {"subscribers": 1000, "publishers": 1, **param},
            "server": "ssehub",
            "server_name": "ssehub (native)",
            "error": None,
            "skipped": None,
            "runs": [{**GOOD_RUN, "rate": rate}],
        }

    return {
        "machine": "test",
        "runs": 1,
        "results": [
            result("W1", "1000 subs, 1 pub", w1_rate),
            result("W5", "1000 subs x 5 channels, 1 pub", w5_rate, target_ratio=target),
            {
                **result("W5", "1000 subs x 5 channels, 1 pub", 0.0),
                "server": "bare",
                "server_name": "bare asyncio baseline",
                "skipped": "skipped: no channel selectors (GET /events?channel=)",
                "runs": [],
            },
        ],
    }


def w5_records(w1_rate: float | None, w5_rate: float, target: float | None) -> list[Record]:
    spec = C.ServerSpec("ssehub", "ssehub (native)", (), selectors=True)
    param = {"subscribers": 1000, "publishers": 1}
    records = []
    if w1_rate is not None:
        w1 = Case("W1", "1000 subs, 1 pub", param, lambda s: {}, RATE)
        records.append(Record(w1, spec, [{**GOOD_RUN, "rate": w1_rate}]))
    w5 = Case(
        "W5", "1000 subs x 5 channels, 1 pub", {**param, "target_ratio": target}, lambda s: {}, RATE
    )
    records.append(Record(w5, spec, [{**GOOD_RUN, "rate": w5_rate}]))
    return records


def report(*runs: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": "test",
        "runs": len(runs),
        "results": [
            {
                "workload": "W1",
                "case": "5 subs, 1 pub",
                "param": {"subscribers": 5, "publishers": 1},
                "server": "ssehub",
                "server_name": "ssehub (native)",
                "error": None,
                "runs": list(runs),
            }
        ],
    }


def bench_from_json(*paths: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    return subprocess.run(
        [sys.executable, "-m", "bench", "--from-json", *map(str, paths)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_run_that_passed_every_check_has_no_problems() -> None:
    assert run_problems(GOOD_RUN) == []
    assert run_problems({"connected": 10, "complete": True, "kib_per_conn": 5.0}) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"verified": False, "verify_problems": ["event 7 garbled"]}, "parse check failed"),
        ({"verified": None}, "parse check failed"),
        ({"received": 499}, "delivered 499 of 500"),
        ({"publish_errors": 2, "publish_first_error": "503"}, "2 publish errors"),
    ],
)
def test_each_failed_check_is_a_problem(change: dict[str, Any], problem: str) -> None:
    run = {**copy.deepcopy(GOOD_RUN), **change}
    assert any(problem in p for p in run_problems(run)), run_problems(run)


def test_an_idle_run_that_did_not_connect_everyone_is_a_problem() -> None:
    assert run_problems({"connected": 9, "complete": False, "kib_per_conn": 5.0})


def test_bench_exits_1_and_says_why_when_a_run_failed_its_parse_check(tmp_path: Path) -> None:
    bad = {**GOOD_RUN, "verified": False, "verify_problems": ["event 7 garbled"]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(report(GOOD_RUN, bad)))
    proc = bench_from_json(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BENCH FAILED" in proc.stderr
    assert "run 2: parse check failed: ['event 7 garbled']" in proc.stderr
    assert "100.0% CHECK FAILED" in proc.stdout  # the table cannot pass for a good figure


def test_bench_exits_0_when_every_run_passed(tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text(json.dumps(report(GOOD_RUN, GOOD_RUN)))
    proc = bench_from_json(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" not in proc.stdout + proc.stderr


def test_every_kept_raw_result_passed_its_checks() -> None:
    kept = sorted(RESULTS.glob("*.json"))
    assert kept, "bench/results/ keeps no raw results"
    for path in kept:
        data = json.loads(path.read_text())
        assert {"machine", "date", "runs", "results"} <= set(data), path
    proc = bench_from_json(*kept)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_w5_at_or_above_07x_w1_in_the_same_run_passes() -> None:
    assert failures(w5_records(100_000.0, 70_000.0, 0.7)) == []
    assert failures(w5_records(100_000.0, 95_000.0, 0.7)) == []


def test_w5_below_07x_w1_in_the_same_run_fails_the_bench() -> None:
    (problem,) = failures(w5_records(100_000.0, 69_000.0, 0.7))
    assert "W5 1000 subs, 1 pub on ssehub (native)" in problem
    assert "0.69x W1's 100,000" in problem
    assert "below the target of 0.70x" in problem


def test_w5_without_w1_at_its_size_in_the_same_run_fails_the_bench() -> None:
    (problem,) = failures(w5_records(None, 90_000.0, 0.7))
    assert "no W1 figure at 1000 subs in the same run" in problem


def test_w5_is_not_held_to_the_target_at_smoke_sizes() -> None:
    assert failures(w5_records(100_000.0, 10_000.0, None)) == []
    assert failures(w5_records(None, 10_000.0, None)) == []


def test_w5_is_never_compared_with_w1_from_another_run() -> None:
    w1, w5 = w5_records(100_000.0, 90_000.0, 0.7)
    w1.source = "bench/results/earlier.json"
    (problem,) = failures([w1, w5])
    assert "no W1 figure" in problem


def test_bench_exits_1_when_w5_misses_07x_w1_and_shows_the_ratio(tmp_path: Path) -> None:
    path = tmp_path / "w5.json"
    path.write_text(json.dumps(w5_report(w1_rate=200_000.0, w5_rate=120_000.0)))
    proc = bench_from_json(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BENCH FAILED: 1 checked target(s) missed" in proc.stderr
    assert "void" not in proc.stderr  # every event arrived: the figures stand, the target fails
    assert "120,000 events/s is 0.60x W1's 200,000" in proc.stderr
    assert (
        "| ssehub (standalone hub) | 1000 | 1 | 120,000 | 200,000 | 0.60x | ≥ 0.70x: MISSED"
        in proc.stdout
    )
    # A server without selectors says so in the table, and that is no failure.
    assert "| bare asyncio baseline | delivered events/s | skipped: no channel selectors" in (
        proc.stdout
    )
    assert "bare" not in proc.stderr


def test_bench_exits_0_when_w5_meets_07x_w1(tmp_path: Path) -> None:
    path = tmp_path / "w5.json"
    path.write_text(json.dumps(w5_report(w1_rate=200_000.0, w5_rate=180_000.0)))
    proc = bench_from_json(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "| ssehub (standalone hub) | 1000 | 1 | 180,000 | 200,000 | 0.90x | ≥ 0.70x: met |"
        in proc.stdout
    )


def test_w5_is_measured_alternately_with_w1_at_its_size_and_w1_runs_there_once() -> None:
    planned = list(cases(["W1", "W5"]))
    w5 = [c for c in planned if c.workload == "W5"]
    assert [c.param["publishers"] for c in w5] == list(C.W5_PUBLISHERS)
    for case in w5:
        assert case.reference is not None
        assert case.reference.workload == "W1"
        assert case.reference.param == {
            "subscribers": C.W5_SUBSCRIBERS,
            "publishers": case.param["publishers"],
        }
    w1 = [(c.param["subscribers"], c.param["publishers"]) for c in planned if c.workload == "W1"]
    assert (C.W5_SUBSCRIBERS, C.W5_PUBLISHERS[0]) not in w1  # not twice: only as W5's reference
    assert len(w1) + len(w5) == len(C.W1_SUBSCRIBERS) * len(C.W1_PUBLISHERS)
    # Asked for alone, W5 still brings its W1 reference.
    assert all(c.reference is not None for c in cases(["W5"]))


def data_records(memory_rate: float | None, data_rate: float, subscribers: int) -> list[Record]:
    memory = C.ServerSpec(C.DATA_REFERENCE, "ssehub (native)", (), selectors=True)
    durable = C.ServerSpec(C.DATA_SERVER, "ssehub --data", (), selectors=True, data=True)
    param = {"subscribers": subscribers, "publishers": 4}
    case = Case("W1", f"{subscribers} subs, 4 pub", param, lambda s: {}, RATE)
    records = []
    if memory_rate is not None:
        records.append(Record(case, memory, [{**GOOD_RUN, "rate": memory_rate}]))
    records.append(Record(case, durable, [{**GOOD_RUN, "rate": data_rate, "data_bytes": 4096}]))
    return records


def test_data_at_or_above_08x_memory_in_the_same_run_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(C, "DATA_TARGET_RATIO", 0.8)
    assert failures(data_records(100_000.0, 80_000.0, C.DATA_SUBSCRIBERS)) == []


def test_data_below_08x_memory_fails_the_bench_at_the_checked_size_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(C, "DATA_TARGET_RATIO", 0.8)
    (problem,) = failures(data_records(100_000.0, 79_000.0, C.DATA_SUBSCRIBERS))
    assert f"W1 {C.DATA_SUBSCRIBERS} subs, 4 pub on ssehub --data" in problem
    assert "0.79x the in-memory hub's 100,000" in problem
    assert failures(data_records(100_000.0, 50_000.0, 100)) == []  # printed, not checked
    (missing,) = failures(data_records(None, 79_000.0, C.DATA_SUBSCRIBERS))
    assert "no in-memory figure" in missing


def w3_record(server: str, rate: int, published: float, p99: float) -> Record:
    """One W3 run at ``rate``/s that published ``published``/s with that p99."""
    case = Case(
        "W3", f"1000 subs, {rate}/s x 5s", {"subscribers": 1000, "rate": rate}, lambda s: {}, ()
    )
    spec = C.ServerSpec(server, server, ())
    run = {**GOOD_RUN, "publish_rate": published, "p50_ms": p99 / 3, "p99_ms": p99}
    return Record(case, spec, [run])


def test_w3_latency_is_compared_at_the_highest_rate_bare_sustains() -> None:
    """Issue 18's W3 reading: bare sustains 250/s (not 300/s: it published 210/s), so every
    server's p99 is compared with bare's at 250/s, and the verdict follows the comparison."""
    records = [
        w3_record("bare", 200, 200.0, 20.0),
        w3_record("ssehub", 200, 200.0, 30.0),
        w3_record("bare", 250, 249.0, 40.0),
        w3_record("ssehub", 250, 250.0, 12.0),
        w3_record("bare", 300, 210.0, 2000.0),
        w3_record("ssehub", 300, 300.0, 15.0),
    ]
    text = latency_table(records)
    assert "Highest rate the bare baseline sustains here: 250/s (p99 40.0 ms)" in text
    assert "- ssehub: p99 12.0 ms, 0.30x bare, no worse than bare: met" in text
    assert "| 300 | bare | 210.0 | no |" in text
    records[3] = w3_record("ssehub", 250, 250.0, 41.0)
    assert "1.02x bare, worse than bare: missed" in latency_table(records)
    assert latency_table(records[:2]) == ""  # one rate: nothing to compare across rates
