"""Start benchmarks/stub_server.py (a stub continuously batching OpenAI-compatible server with
known answers) on 127.0.0.1 for a test, with a bounded wait, and always stop it after.

    with stub_server(data_path, base_s=0.05) as server:
        run("eval", "--model", server.spec, ...); server.stats()["asked"]
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx

from tests.llama_server import start_child, stop_child

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
    proc, base_url, log_path = start_child(
        lambda port: [sys.executable, str(STUB), "--data", str(data), "--port", str(port), *args],
        "stub server", timeout_s, prefix="stub-server-", poll_s=0.1, request_timeout_s=1.0)
    try:
        yield StubServer(proc, base_url, log_path)
    finally:
        stop_child(proc)
