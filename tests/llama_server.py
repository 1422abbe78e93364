"""Test helpers for llama.cpp: a tiny random Qwen3 checkpoint, a free port, and llama-cpp-python's
OpenAI-compatible server started on 127.0.0.1 with a bounded wait and always stopped after.

Reusable by any test: `with llama_server(gguf_path) as server: load_backend(server.spec("mini"))`.
"""
from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import httpx

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "pydantic_settings", "starlette_context")


def missing_server_modules() -> list[str]:
    """Modules `python -m llama_cpp.server` needs that are not importable here (empty: all there)."""
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


class PortTaken(RuntimeError):
    """The child server could not bind its port: another process took it after free_port."""


PORT_ATTEMPTS = 5  # a child server that lost its port to another process is started again this often


def free_port() -> int:
    """A port free on 127.0.0.1 right now, for a child server that takes a port number (llama.cpp's
    server cannot bind port 0 and say which it got). Another process can take it before the child
    binds: wait_ready then raises PortTaken, and the starters below try again on a new port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    base_url: str  # e.g. http://127.0.0.1:PORT/v1
    log_path: Path

    def spec(self, model: str = "mini") -> str:
        """A spec string for models.registry.load_backend."""
        return f"openai:{model}@{self.base_url}"

    def log_tail(self, n_chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""


def start_llama_server(
    model_path: str | Path,
    *,
    n_ctx: int = 512,
    alias: str = "mini",
    timeout_s: float = 60.0,
    extra_args: Sequence[str] = (),
    log_dir: str | Path | None = None,
) -> LlamaServer:
    """Start the server and return once GET /v1/models answers 200; raise RuntimeError with the
    server's log tail if it exits or does not answer within `timeout_s`."""
    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
            "--model_alias", alias,
            # By default llama-cpp-python's server cuts off a streaming response when another request
            # arrives, and the cut stream still ends cleanly: concurrent clients get silently
            # truncated text. Queueing instead is what an OpenAI-compatible client expects.
            "--interrupt_requests", "False",
            *extra_args,
        ]
    process, base_url, log_path = start_child(command, "llama.cpp server", timeout_s, log_dir=log_dir,
                                              prefix="llama-server-")
    return LlamaServer(process, base_url, log_path)


def start_child(command: Callable[[int], list[str]], what: str, timeout_s: float, *,
                log_dir: str | Path | None = None, prefix: str = "server-", cwd: str | Path | None = None,
                env: dict | None = None, poll_s: float = 0.25,
                request_timeout_s: float = 2.0) -> tuple[subprocess.Popen, str, Path]:
    """Start a server child on a free port (`command(port)`), wait until it answers, and return
    (process, base URL ending in /v1, its log). When another process took the port first, start
    it again on another (PORT_ATTEMPTS in all); any other failure stops the child and raises."""
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        log_path = Path(log_dir or tempfile.mkdtemp(prefix=prefix)) / f"server-{port}.log"
        with log_path.open("wb") as log:  # the child keeps its own handle; ours can close
            process = subprocess.Popen(command(port), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            wait_ready(process, base_url, timeout_s, what, lambda: _tail(log_path), poll_s, request_timeout_s)
            return process, base_url, log_path
        except PortTaken:
            if attempt == PORT_ATTEMPTS - 1:
                raise
        except BaseException:
            stop_child(process)  # not ready in time, or interrupted: do not leave it running
            raise
    raise AssertionError("unreachable")


def _tail(path: Path, n_chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n_chars:]
    except OSError:
        return ""


def stop_child(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


def wait_ready(process: subprocess.Popen, base_url: str, timeout_s: float, what: str,
               log_tail: Callable[[], str], poll_s: float = 0.25, request_timeout_s: float = 2.0) -> None:
    """Wait until a server child answers GET {base_url}/models; raise with its log's tail if it
    exits or is not ready within timeout_s (every test server of ours starts this way)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = log_tail()
            if "address already in use" in tail.lower():
                raise PortTaken(f"{what} could not bind its port:\n{tail}")
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base_url}/models", timeout=request_timeout_s).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout_s:g}s:\n{log_tail()}")
        time.sleep(poll_s)


def stop_llama_server(server: LlamaServer, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    stop_child(server.process, timeout_s)


@contextmanager
def llama_server(model_path: str | Path, **kwargs: object) -> Iterator[LlamaServer]:
    server = start_llama_server(model_path, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        stop_llama_server(server)


def build_tiny_qwen3(out_dir: str | Path, *, tie_word_embeddings: bool = True, seed: int = 0) -> Path:
    """A random-weight Qwen3ForCausalLM + project tokenizer saved in `out_dir`, built in seconds.

    Weights are redrawn larger than transformers' init (std 0.02), so logits spread over several
    units and greedy choices have clear margins; norm weights are drawn around 1, so swapping two
    norms in an export changes the logits instead of hiding behind all-ones vectors.
    """
    import torch

    from tourney.harness.synthetic import SynthConfig, generate
    from tourney.models.mini.arch import MiniArch, build_model
    from tourney.models.mini.tokenizer import train_tokenizer

    out = Path(out_dir)
    rows = generate(SynthConfig(n=150, seed=seed))
    texts = [f"Question: {r['question']}\nAnswer: {r['solution']}" for r in rows]
    tok = train_tokenizer(texts, out, vocab_size=400)
    arch = MiniArch(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512)
    model = build_model(arch, vocab_size=len(tok), eos_id=tok.eos_token_id)
    if not tie_word_embeddings:
        from transformers import Qwen3ForCausalLM

        config = model.config
        config.tie_word_embeddings = False
        model = Qwen3ForCausalLM(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            else:
                std = 0.5 if "embed_tokens" in name or "lm_head" in name else 0.2
                p.copy_(std * torch.randn(p.shape, generator=gen))
    model.save_pretrained(str(out))
    return out
