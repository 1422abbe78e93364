"""A server over scripted backends (no model), on 127.0.0.1 in a thread, for the logic tests."""
from __future__ import annotations

import socket
import threading
import time
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

# odd questions are confident (mean logprob -0.1), even ones are escalated (-3)
IDS = ["q1", "q2", "q3", "q4"]
IN_PROCESS, UPSTREAM = "replay:scripted.jsonl", "openai:scripted@http://127.0.0.1:9/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def models(teacher_sleep: float = 0.0, student_sleep: float = 0.0, teacher_fail: set[str] | None = None):
    student = ScriptedBackend(spec="fake:s", sleep_s=student_sleep,
                              outputs={i: [f" so #### {n}"] for n, i in enumerate(IDS, 1)},
                              logprobs={i: [-0.1 if n % 2 else -3.0] for n, i in enumerate(IDS, 1)})
    teacher = ScriptedBackend(spec="fake:t", sleep_s=teacher_sleep, fail=set(teacher_fail or ()),
                              outputs={i: [f" so #### {100 + n}"] for n, i in enumerate(IDS, 1)})
    return student, teacher


def bundle(student_spec: str = IN_PROCESS, teacher_spec: str = IN_PROCESS) -> RouterBundle:
    router = CalibratedRouter(target_kind="teacher_share", target_value=0.5, threshold=-1.0,
                              signals=["mean_logprob"], model="mean_logprob",
                              dev=CascadeFigures(n=4, teacher_share=0.5, accuracy=0.5))
    return RouterBundle(router, ModelSettings(spec=student_spec, logprobs=0, max_tokens=64),
                        ModelSettings(spec=teacher_spec, max_tokens=64))


@contextmanager
def serving(student, teacher, *, teacher_spec: str = IN_PROCESS, load_gate: threading.Event | None = None,
            **options) -> Iterator[str]:
    """A real uvicorn server over the scripted pair; yields its base URL (http://127.0.0.1:PORT)."""
    import uvicorn

    cfg = ServeConfig(router="unused.json", port=free_port(), **options)

    def load(_cfg):
        if load_gate is not None:
            load_gate.wait(30)
        return Pair(bundle(teacher_spec=teacher_spec), student, teacher)

    app = create_app(cfg, load_pair=load)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=cfg.port, log_level="error",
                                           lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{cfg.port}"
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            code = httpx.get(url + "/health", timeout=1).status_code
            if code == 200 or (load_gate is not None and code == 503):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    else:
        raise RuntimeError("the test server did not start")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def ask(url: str, model: str, question: str, endpoint: str = "completions", **body) -> httpx.Response:
    payload = {"model": model, **body}
    if endpoint == "completions":
        payload["prompt"] = question
    else:
        payload["messages"] = [{"role": "user", "content": question}]
    path = "completions" if endpoint == "completions" else "chat/completions"
    return httpx.post(f"{url}/v1/{path}", json=payload, timeout=30)
