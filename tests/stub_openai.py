"""Start benchmarks/stub_server.py (a stub continuously batching OpenAI-compatible server with
known answers) on 127.0.0.1 for a test, with a bounded wait, and always stop it after.

    with stub_server(data_path, base_s=0.05) as server:
        run("eval", "--model", server.spec, ...); server.stats()["asked"]
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx

from tests.llama_server import PORT_ATTEMPTS, PortTaken, free_port, wait_ready

STUB = Path(__file__).resolve().parents[1] / "benchmarks" / "stub_server.py"


def missing_modules() -> list[str]:
    return [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]


@dataclass
class StubServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def spec(self) -> str:
        return f"openai:stub@{self.base_url}"

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.base_url.removesuffix("/v1") + "/stats", timeout=5.0).json()


@contextmanager
def stub_server(data: str | Path, timeout_s: float = 30.0, system: str | None = None,
                **timing: float) -> Iterator[StubServer]:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in timing.items()] + ([f"--system={system}"] if system else [])
    for attempt in range(PORT_ATTEMPTS):  # again on a new port when another process took this one
        port = free_port()
        log_path = Path(tempfile.mkdtemp(prefix="stub-server-")) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, str(STUB), "--data", str(data), "--port", str(port), *args],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = StubServer(proc, f"http://127.0.0.1:{port}/v1", log_path)
        try:
            wait_ready(proc, server.base_url, timeout_s, "stub server", lambda: log_path.read_text()[-2000:],
                       poll_s=0.1, request_timeout_s=1.0)
            break
        except PortTaken:
            if attempt == PORT_ATTEMPTS - 1:
                raise
        except BaseException:
            _stop(proc)
            raise
    try:
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
