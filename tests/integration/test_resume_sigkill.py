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

from tourney.harness.tournament import MINI_TEST

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


SERVER_C = 4


def unique_questions(path: Path, n: int = 60) -> Path:
    """The first n test questions with distinct texts: the stub server counts requests by text,
    and the mixed test set repeats a common question with other options."""
    seen, rows = set(), []
    for line in MINI_TEST.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["question"] not in seen and len(rows) < n:
            seen.add(row["question"])
            rows.append(line)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def server_eval_cmd(spec: str, out: Path) -> list[str]:
    data = unique_questions(out.parent / "questions.jsonl")
    return [sys.executable, "-m", "tourney", "eval", "--model", spec, "--data", str(data), "--limit", "60",
            "--concurrency", str(SERVER_C), "--max-tokens", "64", "--out", str(out)]


@pytest.mark.integration
def test_sigkill_against_a_server_asks_at_most_c_questions_again(tmp_path):
    """Per-question resumption against a (stub) server: rows are appended as each question's
    answer arrives, so a SIGKILL loses at most the C questions in flight; counted at the server."""
    from tests.stub_openai import missing_modules, stub_server

    if missing_modules():
        pytest.skip(f"the stub server needs {missing_modules()}")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    with stub_server(MINI_TEST, base_s=0.05, per_token_s=0.02) as server:
        proc = subprocess.Popen(server_eval_cmd(server.spec, killed), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = killed / "results.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if results.exists() and results.read_text().count("\n") >= 12:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = results.read_text().count("\n")
        assert 12 <= partial < 60
        before = server.stats()["asked"]
        subprocess.run(server_eval_cmd(server.spec, killed), env=env, check=True, capture_output=True, timeout=300)
        asked = server.stats()["asked"]
    assert len(asked) == 60 and all(n >= 1 for n in asked.values())
    again = [q for q, n in asked.items() if n > 1]
    # asked twice: the questions in flight at the kill, never those already written
    assert len(again) <= SERVER_C, again
    assert sum(before.values()) - partial <= SERVER_C  # in flight at the kill, unwritten
    with stub_server(MINI_TEST, base_s=0.05, per_token_s=0.02) as server:
        subprocess.run(server_eval_cmd(server.spec, clean), env=env, check=True, capture_output=True, timeout=300)
    assert rows(killed) == rows(clean) and len(rows(clean)) == 60
    # the same report, but for the model spec: the second server listens on another port
    report = lambda d: {k: v for k, v in strip_timing(json.loads((d / "report.json").read_text())).items()  # noqa: E731
                        if k != "model"}
    assert report(killed) == report(clean)
