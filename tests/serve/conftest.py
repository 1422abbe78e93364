"""The miniature pair behind a real `tourney serve` process on 127.0.0.1 (integration tests)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import httpx
import pytest
from click.testing import CliRunner

from tests.waiting import wait_until
from tourney.cli.main import main
from tourney.harness.questions import load_questions

DEV = Path(__file__).resolve().parents[2] / "tourney" / "harness" / "data" / "mini" / "dev.jsonl"
N_DEV = 40  # calibration questions: enough for a threshold, few enough for a 2-core CPU
START_TIMEOUT_S = 300.0  # loading two models on a busy 2-core machine
LISTENING = re.compile(r"tourney serve: listening on (http://\S+)")


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
    """`tourney serve --port 0` in a child process: the kernel picks the port, and the URL is read
    from the line the server prints once it listens (no port looked up first that another process
    could take)."""
    out = work / f"serve-{len(list(work.glob('serve-*.log')))}.log"
    cmd = [sys.executable, "-m", "tourney", "serve", "--router", str(router), "--port", "0",
           "--log-dir", str(work / "log"), *extra]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with out.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)
    served = Served(proc, "", work / "log", out)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"tourney serve exited with {proc.returncode}:\n{served.output()}")
        if not served.url:
            found = LISTENING.search(out.read_text(errors="replace"))
            if not found:
                return False
            served.url = found.group(1).removesuffix("/v1")
        try:
            return httpx.get(served.url + "/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, "tourney serve to answer /health", timeout_s=START_TIMEOUT_S)
    except AssertionError:
        stop_serve(served)
        raise RuntimeError(f"tourney serve not ready after {START_TIMEOUT_S:g} s:\n{served.output()}") from None
    return served


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
