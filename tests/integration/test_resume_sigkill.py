"""Kill `tourney eval` with SIGKILL mid-run, run the same command again, and compare with an
uninterrupted run: same rows, same report (timings aside)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tourney.harness.synthetic import MINI_TEST

pytestmark = pytest.mark.slow
TIMING = {"latency_s", "ttft_s", "latency_p50_s", "latency_p95_s", "latency_mean_s", "ttft_p50_s", "tokens_per_s",
          "started_at"}


def eval_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "tourney", "eval", "--model", "mini-student", "--data", str(MINI_TEST),
            "--limit", "60", "--batch-size", "6", "--max-tokens", "64", "--out", str(out)]


def strip_timing(obj):
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def rows(out: Path):
    return [strip_timing(json.loads(line)) for line in (out / "results.jsonl").read_text().splitlines()]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, mini_student):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(eval_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = killed / "results.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 12:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = results.read_text().count("\n")
    assert 12 <= partial < 60
    subprocess.run(eval_cmd(killed), env=env, check=True, capture_output=True, timeout=600)

    clean = tmp_path / "clean"
    subprocess.run(eval_cmd(clean), env=env, check=True, capture_output=True, timeout=600)
    assert rows(killed) == rows(clean)
    assert len(rows(killed)) == 60
    report = lambda d: strip_timing(json.loads((d / "report.json").read_text()))  # noqa: E731
    assert report(killed) == report(clean)
