"""``python -m bench`` fails (exit 1) when any run failed its delivery or parse check.

Figures from a hub that lost or garbled events are void: the bench says so on stderr, marks the
table, and exits 1, whether it measured them just now or reads them back with ``--from-json``.
The raw results kept in bench/results/ (behind BENCHMARKS.md) must all pass the same checks.
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

from bench.run import run_problems

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
