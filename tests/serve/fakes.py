"""A server over scripted backends (no model), on 127.0.0.1 in a thread, for the logic tests."""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from typing import Iterator

import httpx

from tourney.routers.runtime.bundle import ModelSettings, RouterBundle
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.evaluation.metrics import CascadeFigures
from tourney.serve.adapter import Pair
from tourney.serve.app import create_app
from tourney.serve.config import ServeConfig

from tests.routers.fakes import ScriptedBackend
from tests.waiting import wait_until

# odd questions are confident (mean logprob -0.1), even ones are escalated (-3)
IDS = ["q1", "q2", "q3", "q4"]
IN_PROCESS, UPSTREAM = "replay:scripted.jsonl", "openai:scripted@http://127.0.0.1:9/v1"


def models(teacher_sleep: float = 0.0, student_sleep: float = 0.0, teacher_fail: set[str] | None = None,
           teacher_gate: threading.Event | None = None, student_gate: threading.Event | None = None):
    student = ScriptedBackend(spec="fake:s", sleep_s=student_sleep, gate=student_gate,
                              outputs={i: [f" so #### {n}"] for n, i in enumerate(IDS, 1)},
                              logprobs={i: [-0.1 if n % 2 else -3.0] for n, i in enumerate(IDS, 1)})
    teacher = ScriptedBackend(spec="fake:t", sleep_s=teacher_sleep, gate=teacher_gate, fail=set(teacher_fail or ()),
                              outputs={i: [f" so #### {100 + n}"] for n, i in enumerate(IDS, 1)})
    return student, teacher


def bundle(student_spec: str = IN_PROCESS, teacher_spec: str = IN_PROCESS) -> RouterBundle:
    router = CalibratedRouter(target_kind="teacher_share", target_value=0.5, threshold=-1.0,
                              signals=["mean_logprob"], model="mean_logprob",
                              dev=CascadeFigures(n=4, teacher_share=0.5, accuracy=0.5))
    return RouterBundle(router, ModelSettings(spec=student_spec, logprobs=0, max_tokens=64),
                        ModelSettings(spec=teacher_spec, max_tokens=64))


def bound_socket() -> socket.socket:
    """A listening socket on 127.0.0.1, port 0: the kernel picks a free port and it stays ours (a
    port looked up, closed and passed on could be taken by another process in between)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextmanager
def uvicorn_thread(app, lifespan: str = "on") -> Iterator[tuple[str, object]]:
    """A real uvicorn server for `app` in a thread on a socket bound to port 0; yields (base URL
    http://127.0.0.1:PORT, the uvicorn.Server) once it has started."""
    import uvicorn

    sock = bound_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan=lifespan, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "the test server to start")
        if not server.started:
            raise RuntimeError("the test server did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def serving(student, teacher, *, teacher_spec: str = IN_PROCESS, load_gate: threading.Event | None = None,
            **options) -> Iterator[str]:
    """tourney serve's app over the scripted pair in a real uvicorn server; yields its base URL."""
    cfg = ServeConfig(router="unused.json", **options)

    def load(_cfg):
        if load_gate is not None:
            load_gate.wait(120)
        return Pair(bundle(teacher_spec=teacher_spec), student, teacher)

    with uvicorn_thread(create_app(cfg, load_pair=load)) as (url, _):
        if load_gate is None:  # the models load after start-up: wait until they answer
            wait_until(lambda: _health(url) == 200, "the scripted models to load")
        yield url


def _health(url: str) -> int:
    try:
        return httpx.get(url + "/health", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def ask(url: str, model: str, question: str, endpoint: str = "completions", **body) -> httpx.Response:
    payload = {"model": model, **body}
    if endpoint == "completions":
        payload["prompt"] = question
    else:
        payload["messages"] = [{"role": "user", "content": question}]
    path = "completions" if endpoint == "completions" else "chat/completions"
    return httpx.post(f"{url}/v1/{path}", json=payload, timeout=30)
