"""One question through a mode, under its deadline: which model is asked, retries, fallbacks.

Modes (the request's `model`):
- router: the student answers with the router's samples and logprobs, its confidence decides,
  and below the threshold (or when the student failed) the teacher is asked; `tourney submit
  --mode balanced`.
- router-speed: the student alone, one sample, no confidence; `submit --mode speed`.
- router-accuracy: the teacher; `submit --mode accuracy`, plus a backup: the student answers
  alongside (one cheap sample) and its answer stands when the teacher fails or misses the deadline.
- student, teacher: the model directly. When it fails or misses the deadline the request gets an
  error (502 / 504) instead of a fallback answer.

Deadline. Every call gets the time left before the question's deadline; a call still running
then is abandoned (an in-process batch finishes in the background, an upstream request is cut by
its own timeout). An upstream call that fails with a 5xx, a 429, a timeout or a broken
connection is retried after a short doubling pause while time is left. In the router modes the
answer is then the student's when the teacher is late or failing (marked `fallback`, with
`deadline_fallback` when the cause was the deadline), and the fallback "0" / "A" when the
student itself is late, as in `tourney submit`.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from tourney.harness.types import Question
from tourney.models.types import Generation
from tourney.serve.adapter import Pair, Served, StudentOutcome, UpstreamRequest, compose_record, upstream_stream_state
from tourney.serve.config import ROUTER, ROUTER_ACCURACY, ROUTER_SPEED, STUDENT, TEACHER
from tourney.serve.lanes import Lane, LaneConfig
from tourney.serve.metrics import ServeMetrics

_HTTP = re.compile(r"^HTTP (\d{3})")
MIN_ATTEMPT_S = 0.005  # no retry is started with less time left than this


def retryable(error: str) -> bool:
    """Whether a failed call may succeed if made again: server errors, rate limits, timeouts,
    broken connections; not a 4xx refusal of the request itself."""
    m = _HTTP.match(error)
    if m:
        status = int(m.group(1))
        return status >= 500 or status in (408, 409, 429)
    return True


def error_kind(error: str) -> str:
    m = _HTTP.match(error)
    if m:
        return f"http_{m.group(1)}"
    low = error.lower()
    return "timeout" if "timeout" in low or "timed out" in low else "other"


@dataclass
class _Call:
    value: Any = None
    error: str | None = None
    late: bool = False  # abandoned at the deadline
    elapsed_s: float = 0.0  # waited for it: queue, batch, model
    model_s: float = 0.0  # of which inside the model call


@dataclass(frozen=True)
class Route:
    """The routing decision of one question, known before its answer (streamed first)."""

    id: str
    model: str  # the model that will answer: student | teacher
    escalated: bool
    confidence: float | None = None
    threshold: float | None = None


OnRoute = Callable[[Route], None]
OnText = Callable[[str], None]


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


class Engine:
    """The two lanes and the modes over them."""

    def __init__(self, pair: Pair, metrics: ServeMetrics, *, max_batch: int = 16, window_s: float = 0.005,
                 upstream_concurrency: int = 8, retry_backoff_s: float = 0.05,
                 crowd: Callable[[], int] | None = None) -> None:
        self.pair, self.metrics, self.backoff_s = pair, metrics, retry_backoff_s
        self.ready = {"student": True, "teacher": True}  # the app marks an unreachable upstream not ready
        self.upstream_concurrency = upstream_concurrency
        self._relay: tuple[Any, asyncio.Semaphore] | None = None  # (httpx.AsyncClient, bound), made in the loop
        self.lanes: dict[str, Lane] = {}
        for role, run in (("student", pair.run_student), ("teacher", pair.run_teacher)):
            lane_cfg = (LaneConfig(max_batch=max_batch, window_s=window_s, workers=1) if pair.in_process(role)
                        else LaneConfig(max_batch=1, window_s=0.0, workers=upstream_concurrency))
            self.lanes[role] = Lane(role, run, lane_cfg, on_batch=self._on_batch, on_depth=self._on_depth, crowd=crowd)

    def _on_batch(self, name: str, size: int, seconds: float) -> None:
        self.metrics.batch_size.labels(name).observe(size)

    def _on_depth(self, name: str, depth: int) -> None:
        self.metrics.queue_depth.labels(name).set(depth)

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()

    async def aclose(self) -> None:
        if self._relay is not None:
            await self._relay[0].aclose()
            self._relay = None

    # -- one call -----------------------------------------------------------------------------
    async def _call(self, role: str, key: tuple, q: Question, end: float) -> _Call:
        start = time.monotonic()
        left = end - start
        if left <= 0:
            return _Call(late=True)
        fut = self.lanes[role].submit(key, q)
        try:
            value = await asyncio.wait_for(asyncio.wrap_future(fut), left)
        except asyncio.TimeoutError:
            return _Call(late=True, elapsed_s=time.monotonic() - start)
        except Exception as e:  # noqa: BLE001 -- the backend raised: this question's error, not the server's
            self.metrics.upstream_errors.labels(role, "exception").inc()
            return _Call(error=_describe(e), elapsed_s=time.monotonic() - start)
        finally:
            self.metrics.model_latency.labels(role).observe(time.monotonic() - start)
        now = time.monotonic()
        if getattr(value, "error", None) is not None and now >= end:
            # A server request's own timeout is the deadline (adapter.load_pair): whichever timer
            # fires first, a request that failed once the deadline had passed was late.
            return _Call(late=True, elapsed_s=now - start)
        return _Call(value=value, elapsed_s=now - start, model_s=getattr(fut, "run_s", 0.0))

    async def _student(self, q: Question, full: bool, max_tokens: int | None, end: float) -> _Call:
        call = await self._call("student", (full, max_tokens), q, end)
        if call.value is not None and call.value.error:
            self.metrics.upstream_errors.labels("student", error_kind(call.value.error)).inc()
        return call

    async def teacher_answer(self, q: Question, max_tokens: int | None, end: float) -> tuple[_Call, int, list[str]]:
        """The teacher's answer, retried within the deadline. (last call, attempts, errors)."""
        attempts, errors, pause, model_s = 0, [], self.backoff_s, 0.0
        start = time.monotonic()

        def done(call: _Call) -> tuple[_Call, int, list[str]]:
            call.elapsed_s, call.model_s = time.monotonic() - start, model_s
            return call, attempts, errors

        while True:
            if not self.ready["teacher"]:
                errors.append("teacher: not ready (its server does not answer)")
                return done(_Call(error="not ready"))
            call = await self._call("teacher", (max_tokens,), q, end)
            attempts += 1
            model_s += call.model_s
            gen: Generation | None = call.value
            err = call.error or (gen.error if gen is not None else None)
            if call.late or err is None:
                return done(call)
            self.metrics.upstream_errors.labels("teacher", error_kind(err)).inc()
            errors.append(f"teacher attempt {attempts}: {err}")
            left = end - time.monotonic()
            if not retryable(err) or left < pause + MIN_ATTEMPT_S:
                return done(call)
            await asyncio.sleep(pause)
            pause *= 2

    async def teacher_relay(self, req: UpstreamRequest, end: float, on_text: OnText) -> tuple[_Call, int, list[str]]:
        """The teacher's answer from its upstream server, each piece passed to `on_text` as it
        arrives (streaming with the decision made before the teacher runs). Retried within the
        deadline while nothing has been relayed; a failure after that ends the answer there."""
        import httpx

        if self._relay is None:
            limits = httpx.Limits(max_connections=self.upstream_concurrency)
            self._relay = (httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(req.timeout_s)),
                           asyncio.Semaphore(self.upstream_concurrency))
        client, bound = self._relay
        attempts, errors, pause, start = 0, [], self.backoff_s, time.monotonic()
        relayed = [False]

        def emit(piece: str) -> None:
            if piece:
                relayed[0] = True
                on_text(piece)

        while True:
            if not self.ready["teacher"]:
                errors.append("teacher: not ready (its server does not answer)")
                return _Call(error="not ready", elapsed_s=time.monotonic() - start), attempts, errors
            attempts += 1
            call = await self._relay_once(client, bound, req, end, emit)
            call.elapsed_s = time.monotonic() - start
            err = call.error or (call.value.error if call.value is not None else None)
            if call.late or err is None:
                return call, attempts, errors
            self.metrics.upstream_errors.labels("teacher", error_kind(err)).inc()
            errors.append(f"teacher attempt {attempts}: {err}")
            if relayed[0] or not retryable(err) or end - time.monotonic() < pause + MIN_ATTEMPT_S:
                return call, attempts, errors
            await asyncio.sleep(pause)
            pause *= 2

    async def _relay_once(self, client: Any, bound: asyncio.Semaphore, req: UpstreamRequest, end: float,
                          emit: OnText) -> _Call:
        import httpx

        state, t0 = upstream_stream_state(), time.monotonic()
        thinking = [False]

        def absorb(chunk: dict[str, Any]) -> None:
            # the relayed text is laid out as the backend lays out the whole answer: <think>R</think>C
            n_content, n_reason = len(state.content), len(state.reasoning)
            state.absorb(chunk, req.chat, time.monotonic() - t0)
            thought, piece = "".join(state.reasoning[n_reason:]), "".join(state.content[n_content:])
            if thought:
                emit(("" if thinking[0] else "<think>") + thought)
                thinking[0] = True
            if piece:
                emit(("</think>" if thinking[0] else "") + piece)
                thinking[0] = False

        try:
            left = end - time.monotonic()
            if left <= 0:
                return _Call(late=True)
            async with asyncio.timeout(left), bound:
                async with client.stream("POST", req.url, json=req.body, headers=req.headers) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        return _Call(error=f"HTTP {resp.status_code}")
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            state.done = True
                            break
                        chunk = json.loads(data)
                        if "error" in chunk:
                            return _Call(error=f"server error in stream: {json.dumps(chunk['error'])[:200]}")
                        absorb(chunk)
        except TimeoutError:
            return _Call(late=True)
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as e:
            if isinstance(e, httpx.TimeoutException) and time.monotonic() >= end:
                return _Call(late=True)  # the client's timeout is the deadline too: either timer may fire first
            return _Call(error=_describe(e))
        finally:
            self.metrics.model_latency.labels("teacher").observe(time.monotonic() - t0)
        if thinking[0]:
            emit("</think>")
        if not state.done and state.finish_reason is None:
            return _Call(error="stream ended before the response was complete")
        gen = state.generation(latency_s=time.monotonic() - t0)
        return _Call(value=gen, model_s=gen.latency_s)

    # -- modes --------------------------------------------------------------------------------
    async def answer(self, q: Question, mode: str, received: float, deadline_s: float,
                     max_tokens: int | None = None, on_route: OnRoute | None = None,
                     on_text: OnText | None = None) -> Served:
        """Answer one question. `on_route(route)` is called as soon as it is known which model
        will answer (streaming sends it before the answer). With `on_text`, a teacher that is
        chosen before it runs (teacher, router-accuracy) and is an upstream server has its answer
        relayed piece by piece as generated; `served.relayed` then says so."""
        end = received + deadline_s
        if mode == TEACHER or mode == ROUTER_ACCURACY:
            served = await self._teacher_first(q, mode, received, end, max_tokens, on_route, on_text)
        else:
            served = await self._student_first(q, mode, received, end, max_tokens, on_route)
        served.deadline_s = deadline_s
        r = served.record
        outcome = r.routed_to if served.status == 200 else f"error_{served.status}"
        self.metrics.answered(mode, outcome, r.escalated and mode.startswith(ROUTER), r.total_latency_s)
        if served.fallback:
            self.metrics.fallbacks.labels(mode, "deadline" if served.deadline_fallback else "error").inc()
        return served

    async def _student_first(self, q: Question, mode: str, received: float, end: float,
                             max_tokens: int | None, on_route: OnRoute | None) -> Served:
        full = mode == ROUTER
        s = await self._student(q, full, max_tokens, end)
        s_decided = time.monotonic()
        outcome: StudentOutcome | None = s.value
        errors = ["student: no answer within the deadline"] if s.late else []
        if s.error:
            errors.append(f"student: {s.error}")
        t_call, attempts, t_errors = None, 0, []
        escalate = full and not s.late and (outcome is None or outcome.escalate)
        if on_route is not None:
            on_route(Route(id=q.id, model="teacher" if escalate else "student", escalated=escalate,
                           confidence=outcome.confidence if outcome is not None else None,
                           threshold=self.pair.threshold if full else None))
        if escalate:
            t_call, attempts, t_errors = await self.teacher_answer(q, max_tokens, end)
            if t_call.late:
                t_errors.append("teacher: no answer within the deadline; the student's answer stands")
        decided = time.monotonic()
        teacher: Generation | None = t_call.value if t_call is not None else None
        usable = teacher if teacher is None or teacher.error is None else None  # its error is in t_errors
        record = compose_record(
            q, outcome, usable, escalated=escalate, student_latency_s=s.elapsed_s,
            teacher_latency_s=t_call.elapsed_s if t_call else 0.0,
            total_latency_s=(decided if escalate else s_decided) - received,
            deadline_missed=s.late or bool(t_call and t_call.late), errors=errors + t_errors)
        teacher_missed = escalate and (teacher is None or teacher.error is not None or record.routed_to != "teacher")
        served = Served(question=q, mode=mode, record=record, student=outcome, student_full=full, teacher=teacher,
                        threshold=self.pair.threshold if mode == ROUTER else None, attempts=attempts,
                        model_s=s.model_s + (t_call.model_s if t_call else 0.0))
        if mode in (ROUTER, ROUTER_SPEED):
            served.fallback = s.late or teacher_missed or record.routed_to == "fallback"
            served.deadline_fallback = s.late or bool(t_call and t_call.late)
        elif mode == STUDENT and (s.late or s.error or (outcome is not None and outcome.error)):
            served.status = 504 if s.late else 502
        return served

    async def _teacher_first(self, q: Question, mode: str, received: float, end: float,
                             max_tokens: int | None, on_route: OnRoute | None, on_text: OnText | None) -> Served:
        if on_route is not None:
            on_route(Route(id=q.id, model="teacher", escalated=True))
        backup = asyncio.ensure_future(self._student(q, False, max_tokens, end)) if mode == ROUTER_ACCURACY else None
        req = self.pair.teacher_stream_request(q, max_tokens) if on_text is not None else None
        relay = req is not None
        relayed: list[str] = []
        if req is not None:
            def keep(piece: str) -> None:
                relayed.append(piece)
                on_text(piece)
            t_call, attempts, errors = await self.teacher_relay(req, end, keep)
        else:
            t_call, attempts, errors = await self.teacher_answer(q, max_tokens, end)
        teacher: Generation | None = t_call.value
        failed = t_call.late or t_call.error is not None or teacher is None or teacher.error is not None
        if t_call.late:
            errors.append("teacher: no answer within the deadline")
        elif t_call.error:
            errors.append(f"teacher: {t_call.error}")
        outcome: StudentOutcome | None = None
        s_elapsed = 0.0
        if backup is not None:
            if failed:
                s = await backup
                outcome, s_elapsed = s.value, s.elapsed_s
                if s.late:
                    errors.append("student backup: no answer within the deadline")
            else:
                backup.cancel()
        decided = time.monotonic()
        usable = teacher if teacher is None or teacher.error is None else None  # its error is in `errors`
        record = compose_record(q, outcome, usable,
                                escalated=True, student_latency_s=s_elapsed, teacher_latency_s=t_call.elapsed_s,
                                total_latency_s=decided - received, deadline_missed=t_call.late, errors=errors)
        served = Served(question=q, mode=mode, record=record, student=outcome, teacher=teacher, attempts=attempts,
                        model_s=t_call.model_s, relayed="".join(relayed) if relay else None)
        if mode == ROUTER_ACCURACY:
            served.fallback = failed
            served.deadline_fallback = t_call.late
        elif failed:
            served.status = 504 if t_call.late else 502
        return served
