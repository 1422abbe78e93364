"""The FastAPI app: /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics.

Every refusal is an OpenAI-shaped error with its status, never a traceback: 400 a body that is
not JSON or not a valid request (the message names the field), 401 a missing or wrong key when
the server has one (--api-key-env; /health and /metrics stay open, as probes and scrapers
expect), 404 an unknown model or route, 413 a body over --max-body-bytes, 429 more than
--max-inflight requests at once (with Retry-After), 503 while the models load or when the model
a mode needs is unreachable, 502/504 when a directly asked model fails or misses the deadline.

Models load in a thread after the server is listening, so /health can say "loading" (503)
meanwhile; an upstream model that does not answer its GET /models is re-checked every few
seconds, and until it answers the router's escalations keep the student's answer (marked).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tourney.errors import ConfigError
from tourney.schema import describe
from tourney.serve import adapter
from tourney.serve.config import ROUTER, ROUTER_ACCURACY, SERVE_MODES, TEACHER, ServeConfig
from tourney.serve.engine import Engine, Route
from tourney.serve.metrics import ServeMetrics
from tourney.serve.requestlog import RequestLog
from tourney.serve.schemas import ChatRequest, CompletionRequest, Problem
from tourney.serve.stream import events

log = logging.getLogger("tourney.serve")
RECHECK_S = 3.0  # how often an unreachable upstream model is asked again


class State:
    """What the routes share: the models once loaded, the engine, the log, the counters."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.metrics = ServeMetrics()
        self.pair: adapter.Pair | None = None
        self.engine: Engine | None = None
        self.log: RequestLog | None = None
        self.load_error: str | None = None
        self.inflight = 0
        self.background: set[asyncio.Task] = set()
        self.key: str | None = None
        if cfg.api_key_env:
            self.key = os.environ.get(cfg.api_key_env) or None
            if self.key is None:
                raise ConfigError(f"--api-key-env {cfg.api_key_env}: the variable is unset or empty")

    def load(self, load_pair: Callable[[ServeConfig], adapter.Pair]) -> None:
        cfg = self.cfg
        try:
            pair = load_pair(cfg)
        except Exception as e:  # noqa: BLE001 -- reported by /health and every request, one line
            self.load_error = f"{type(e).__name__}: {e}".splitlines()[0]
            log.error("tourney serve: cannot load the models: %s", self.load_error)
            return
        engine = Engine(pair, self.metrics, max_batch=cfg.max_batch, window_s=cfg.batch_window_ms / 1000.0,
                        upstream_concurrency=cfg.upstream_concurrency, retry_backoff_s=cfg.retry_backoff_ms / 1000.0,
                        crowd=lambda: self.inflight)
        for role in ("student", "teacher"):
            engine.ready[role] = self.check(pair, role)
        if cfg.log_dir:
            self.log = RequestLog(cfg.log_dir, pair.settings("student"), pair.settings("teacher"),
                                  log_questions=cfg.log_questions)
        self.pair, self.engine = pair, engine

    @staticmethod
    def check(pair: adapter.Pair, role: str) -> bool:
        try:
            pair.check(role)
            return True
        except Exception as e:  # noqa: BLE001
            log.warning("tourney serve: %s not ready: %s", role, str(e).splitlines()[0])
            return False

    def needs(self, mode: str) -> None:
        """503 unless the models the mode needs are loaded and reachable."""
        if self.engine is None:
            msg = f"the models failed to load: {self.load_error}" if self.load_error else "the models are loading"
            raise Problem(503, msg, code="not_ready", headers={"Retry-After": "5"})
        ready = self.engine.ready
        # the router modes fall back to the student when the teacher is down; router-accuracy needs one of the two
        need = {TEACHER: ["teacher"], ROUTER_ACCURACY: ["teacher", "student"]}.get(mode, ["student"])
        if not any(ready[role] for role in need):
            raise Problem(503, f"the {' and the '.join(need)} model{'s are' if len(need) > 1 else ' is'} not reachable",
                          code="not_ready", headers={"Retry-After": "5"})


def create_app(cfg: ServeConfig, load_pair: Callable[[ServeConfig], adapter.Pair] = adapter.load_pair,
               on_load_failure: Callable[[str], None] | None = None) -> FastAPI:
    """The app; `on_load_failure(message)` is called when the models cannot be loaded (the command
    line stops the server then; without it the server stays up and answers 503 naming the cause)."""
    state = State(cfg)

    def load() -> None:
        state.load(load_pair)
        if state.load_error and on_load_failure is not None:
            on_load_failure(state.load_error)

    async def recheck() -> None:
        while True:
            await asyncio.sleep(RECHECK_S)
            if state.engine is None or state.pair is None:
                continue
            for role, ok in state.engine.ready.items():
                if not ok or not state.pair.in_process(role):
                    state.engine.ready[role] = await asyncio.to_thread(state.check, state.pair, role)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.ensure_future(asyncio.to_thread(load))
        checker = asyncio.ensure_future(recheck())
        yield
        # uvicorn has drained the in-flight requests by now (timeout_graceful_shutdown)
        checker.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        if state.background:
            await asyncio.wait(state.background, timeout=cfg.drain_s)
        if state.engine is not None:
            state.engine.close()
            await state.engine.aclose()
        if state.log is not None:
            state.log.close()
        if state.pair is not None:
            state.pair.close()

    app = FastAPI(title="tourney serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tourney = state

    def problem_response(p: Problem) -> JSONResponse:
        state.metrics.rejected.labels(str(p.status)).inc()
        return JSONResponse(p.body(), status_code=p.status, headers=p.headers)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(Problem(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("tourney serve: internal error")  # the traceback stays in the server's log
        return problem_response(Problem(500, f"internal error: {type(exc).__name__}", code="internal_error"))

    def authorize(request: Request) -> None:
        if state.key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), state.key.encode()):
            raise Problem(401, "a valid API key is needed (Authorization: Bearer KEY)", code="invalid_api_key")

    async def read_body(request: Request) -> bytes:
        limit = cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Problem(413, f"the body is larger than {limit} bytes", code="body_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem(413, f"the body is larger than {limit} bytes", code="body_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    async def parse(request: Request, model: type) -> Any:
        body = await read_body(request)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise Problem(400, f"the body is not valid JSON ({str(e).splitlines()[0][:120]})", code="invalid_json")
        if not isinstance(data, dict):
            raise Problem(400, "the body must be a JSON object", code="invalid_json")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            raise Problem(400, describe(e), code="invalid_request", param=param)

    async def answer_job(request: Request, model: type, to_job: Callable) -> Response:
        entered = time.monotonic()  # the question's deadline counts from here, body reading included
        authorize(request)
        req = await parse(request, model)
        if state.inflight >= cfg.max_inflight:
            raise Problem(429, f"the server is answering {state.inflight} requests; retry shortly",
                          code="queue_full", headers={"Retry-After": "1"})
        if req.model not in SERVE_MODES:
            raise Problem(404, f"model {req.model!r} does not exist; this server offers {', '.join(SERVE_MODES)}",
                          code="model_not_found", param="model")
        state.needs(req.model)
        job = to_job(req, cfg, state.pair.budget(), entered)
        state.inflight += 1
        state.metrics.inflight.set(state.inflight)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                state.inflight -= 1
                state.metrics.inflight.set(state.inflight)

        async def one(i: int, on_route: Callable[[Route], None] | None = None,
                      on_text: Callable[[str], None] | None = None) -> adapter.Served:
            s = await state.engine.answer(job.questions[i], job.mode, job.received, job.deadline_s,
                                          job.max_tokens, on_route, on_text)
            if state.log is not None:
                state.log.write(s, job.endpoint, job.request_id)
            shadow(s)
            return s

        if job.stream:
            async def body():
                try:
                    async for chunk in events(job, one):
                        yield chunk
                finally:
                    release()
            return StreamingResponse(body(), media_type="text/event-stream",
                                     headers={"x-tourney-mode": job.mode, "cache-control": "no-cache"})
        try:
            served = list(await asyncio.gather(*(one(i) for i in range(len(job.questions)))))
        finally:
            release()
        problem = adapter.failure(served)
        if problem is not None:  # counted in tourney_requests_total as error_<status>, not as a refusal
            return JSONResponse(problem.body(), status_code=problem.status, headers=adapter.headers(served))
        resp = adapter.chat_response(job, served[0]) if job.endpoint == "chat" else adapter.completion_response(job, served)
        text = resp.model_dump_json()
        return Response(text, media_type="application/json",
                        headers={**adapter.headers(served), "server-timing": server_timing(entered, served)})

    def server_timing(entered: float, served: list[adapter.Served]) -> str:
        """Server-Timing: `total` from the route's entry to the reply's body, `models` inside model
        calls (the slowest question's), `server` the rest: what the server itself adds."""
        total = (time.monotonic() - entered) * 1000
        models = max(s.model_s for s in served) * 1000
        return f"total;dur={total:.3f}, models;dur={models:.3f}, server;dur={max(total - models, 0.0):.3f}"

    def shadow(s: adapter.Served) -> None:
        """For route eval: a share of confident router answers also goes to the teacher, after the
        reply, without a deadline; the pair is logged."""
        share = cfg.shadow_share
        if share <= 0 or state.log is None or s.mode != ROUTER or s.record.escalated or not s.student_full:
            return
        if not adapter.shadow_pick(s.question, share):
            return

        async def ask() -> None:
            call, _, _ = await state.engine.teacher_answer(s.question, None, time.monotonic() + cfg.deadline_ms / 1000)
            if call.value is not None and call.value.error is None and state.log is not None:
                state.log.write_pair(s, call.value)

        task = asyncio.ensure_future(ask())
        state.background.add(task)
        task.add_done_callback(state.background.discard)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await answer_job(request, ChatRequest, adapter.job_from_chat)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer_job(request, CompletionRequest, adapter.job_from_completion)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "tourney"}
                                           for m in SERVE_MODES]}

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.engine is None or state.pair is None:
            status = "failed" if state.load_error else "loading"
            return JSONResponse({"status": status, "error": state.load_error}, status_code=503)
        ready = dict(state.engine.ready)
        body = {"status": "ok" if all(ready.values()) else "degraded", "inflight": state.inflight,
                "models": {role: {"spec": state.pair.settings(role).spec, "ready": ok,
                                  "queue": state.engine.lanes[role].depth} for role, ok in ready.items()}}
        return JSONResponse(body, status_code=200 if ready["student"] else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=ServeMetrics.content_type)

    return app
