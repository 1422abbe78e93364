"""The miniature pair behind a real `tourney serve` process on 127.0.0.1 (integration tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import httpx
import pytest
from click.testing import CliRunner

from tests.serve.fakes import free_port
from tourney.cli.main import main
from tourney.harness.questions import load_questions

DEV = Path(__file__).resolve().parents[2] / "tourney" / "harness" / "data" / "mini" / "dev.jsonl"
N_DEV = 40  # calibration questions: enough for a threshold, few enough for a 2-core CPU
START_TIMEOUT_S = 300.0  # loading two models on a busy 2-core machine


def cli(*args) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="session")
def mini_router(tmp_path_factory, mini_student, mini_teacher) -> Path:
    """ROUTER.json for the shipped pair, calibrated to 40% teacher calls on 40 dev questions."""
    work = tmp_path_factory.mktemp("router")
    data = work / "dev.jsonl"
    data.write_text("".join(open_ended_lines()[:N_DEV]))
    cli("eval", "--model", "mini-student", "--data", data, "--logprobs", 0, "--out", work / "dev-student")
    cli("eval", "--model", "mini-teacher", "--data", data, "--out", work / "dev-teacher")
    cli("route", "calibrate", "--student", work / "dev-student", "--teacher", work / "dev-teacher",
        "--target", "share=0.4", "--signals", "mean_logprob", "--out", work / "router.json")
    return work / "router.json"


@dataclass
class Served:
    process: subprocess.Popen
    url: str  # http://127.0.0.1:PORT
    log_dir: Path
    out: Path

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def output(self) -> str:
        return self.out.read_text(errors="replace")[-3000:]


def start_serve(router: Path, work: Path, extra: Sequence[str] = (), env: dict | None = None) -> Served:
    port = free_port()
    out = work / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "tourney", "serve", "--router", str(router), "--port", str(port),
           "--log-dir", str(work / "log"), *extra]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with out.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)
    served = Served(proc, f"http://127.0.0.1:{port}", work / "log", out)
    end = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tourney serve exited with {proc.returncode}:\n{served.output()}")
        try:
            if httpx.get(served.url + "/health", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        if time.monotonic() > end:
            stop_serve(served)
            raise RuntimeError(f"tourney serve not ready after {START_TIMEOUT_S:g} s:\n{served.output()}")
        time.sleep(0.25)


def stop_serve(served: Served, timeout_s: float = 60) -> int:
    if served.process.poll() is None:
        served.process.terminate()
        try:
            served.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait(timeout_s)
    return served.process.returncode


@pytest.fixture(scope="module")
def mini_server(mini_router, tmp_path_factory) -> Iterator[Served]:
    served = start_serve(mini_router, tmp_path_factory.mktemp("serve"), ["--deadline-ms", "60000"])
    try:
        yield served
    finally:
        stop_serve(served)


def open_ended_lines() -> list[str]:
    """The arithmetic half of the mixed dev split: these tests send a question's text alone (no
    options), so multiple-choice questions would be asked without what they choose from."""
    return [line for line in DEV.read_text().splitlines(keepends=True) if "choices" not in json.loads(line)]


def dev_questions(n: int, offset: int = 0):
    return [q for q in load_questions(str(DEV)) if not q.choices][offset: offset + n]


def write_questions(path: Path, questions) -> Path:
    path.write_text("".join(json.dumps({"id": q.id, "question": q.question, "type": q.type}) + "\n" for q in questions))
    return path
