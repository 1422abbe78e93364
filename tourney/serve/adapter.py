"""The adapter between HTTP and today's routers API; the only serve module that calls into routers.

Request to job. A request becomes a `Job`: these questions, in this mode, within this deadline.
- /v1/chat/completions: the question is the text of the LAST user message. System messages and
  earlier turns are not sent to the models: the router's threshold holds only for prompts built
  the way its calibration run built them, so the server renders each question with ROUTER.json's
  template (exactly as `tourney submit` does), which is also why answers equal submit's.
- /v1/completions: the prompt is the question text; a list of prompts is a list of questions,
  answered together and returned as choices 0..n-1.
- Multiple choice, ids, question types and gold answers come in the extension object `tourney`.
- Decoding (samples, temperature, template) follows ROUTER.json; `temperature`, `top_p` and
  `seed` are accepted and ignored. `max_tokens` below the router's budget lowers it (answers may
  then differ from submit's); `stop` strings cut the returned text, not the generation, so the
  confidence is computed on what the calibration run would have generated.

Record to reply. A `Served` (one question answered) becomes a `Decision` (the `tourney` object
and x-tourney-* headers) and an OpenAI choice whose content is the standing model's output.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

from tourney.errors import ConfigError
from tourney.harness.pipeline import scored_rows
from tourney.harness.types import Question, SampleResult
from tourney.models.registry import parse_spec
from tourney.models.types import Backend, Generation
from tourney.routers.runtime.bundle import ModelSettings, RouterBundle
from tourney.routers.policies.calibrate import tie_jitter
from tourney.routers.runtime.cascade import Cascade, CascadeRecord, StudentOutcome, backend_options, compose
from tourney.serve.config import SERVE_MODES, ServeConfig
from tourney.serve.schemas import (
    ChatChoice, ChatRequest, ChatResponse, CompletionRequest, CompletionResponse, Decision, Extension, Problem,
    QuestionMeta, TextChoice, Usage,
)

IN_PROCESS_KINDS = ("hf", "gguf", "vllm", "replay")  # batched in the server's own process


# -- request to job ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """Answer these questions in this mode within this deadline."""

    request_id: str
    endpoint: str  # "chat" | "completions"
    mode: str
    questions: list[Question]
    deadline_s: float
    max_tokens: int | None  # a cap below the router's token budget, or None (the router's own)
    stop: tuple[str, ...]  # cut from the returned text
    stream: bool
    include_usage: bool
    received: float  # time.monotonic() when the request reached the route: deadlines count from here
    created: int = field(default_factory=lambda: int(time.time()))


def _question(text: str, meta: QuestionMeta | None, fallback_id: str) -> Question:
    meta = meta or QuestionMeta()
    return Question(id=meta.id or fallback_id, question=text, answer=meta.answer or "",
                    type=meta.type or "default", choices=tuple(meta.choices) if meta.choices else None)


def _common(req: ChatRequest | CompletionRequest, cfg: ServeConfig, budget: int) -> tuple[str, float, int | None]:
    if req.model not in SERVE_MODES:
        raise Problem(404, f"model {req.model!r} does not exist; this server offers {', '.join(SERVE_MODES)}",
                      code="model_not_found", param="model")
    ext = req.tourney or Extension()
    deadline_ms = min(ext.deadline_ms or cfg.deadline_ms, cfg.deadline_ms)
    cap = req.token_cap()
    return req.model, deadline_ms / 1000.0, cap if cap is not None and cap < budget else None


def job_from_chat(req: ChatRequest, cfg: ServeConfig, budget: int, received: float) -> Job:
    mode, deadline_s, cap = _common(req, cfg, budget)
    users = [m for m in req.messages if m.role == "user"]
    if not users or not users[-1].text().strip():
        raise Problem(400, "messages: expected a user message holding the question", param="messages")
    rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    if req.tourney and req.tourney.questions:
        raise Problem(400, "tourney.questions: a chat request holds one question; put its fields in tourney",
                      param="tourney.questions")
    q = _question(users[-1].text(), req.tourney, rid)
    return Job(rid, "chat", mode, [q], deadline_s, cap, tuple(req.stop or ()), req.stream,
               bool(req.stream_options and req.stream_options.include_usage), received)


def job_from_completion(req: CompletionRequest, cfg: ServeConfig, budget: int, received: float) -> Job:
    mode, deadline_s, cap = _common(req, cfg, budget)
    texts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
    if len(texts) > cfg.max_questions:
        raise Problem(400, f"prompt: at most {cfg.max_questions} prompts in one request, got {len(texts)}",
                      param="prompt")
    if any(not t.strip() for t in texts):
        raise Problem(400, "prompt: every prompt must hold a question", param="prompt")
    rid = f"cmpl-{uuid.uuid4().hex[:24]}"
    ext = req.tourney or Extension()
    metas: Sequence[QuestionMeta | None]
    if ext.questions is not None:
        if len(ext.questions) != len(texts):
            raise Problem(400, f"tourney.questions: {len(ext.questions)} entries for {len(texts)} prompts",
                          param="tourney.questions")
        metas = ext.questions
    elif len(texts) == 1:
        metas = [ext]
    else:
        metas = [None] * len(texts)
    qs = [_question(t, m, rid if len(texts) == 1 else f"{rid}-{i}") for i, (t, m) in enumerate(zip(texts, metas))]
    if len({q.id for q in qs}) != len(qs):
        raise Problem(400, "tourney.questions: ids must differ", param="tourney.questions")
    return Job(rid, "completions", mode, qs, deadline_s, cap, tuple(req.stop or ()), req.stream,
               bool(req.stream_options and req.stream_options.include_usage), received)


# -- the pair, as routers runs it -------------------------------------------------------------

class Pair:
    """The student, the teacher and the calibrated router, called in batches the lanes form.

    A student key is (full, max_tokens): full draws the samples and logprobs the router's
    calibration used and computes the confidence (routers.runtime.cascade.Cascade.run_student); a
    teacher key is (max_tokens,)."""

    def __init__(self, bundle: RouterBundle, student: Backend, teacher: Backend) -> None:
        self.bundle = bundle
        self.cascade = Cascade(student, teacher, bundle.router, "balanced",
                               student_settings=bundle.student, teacher_settings=bundle.teacher)
        self.threshold = float(bundle.router.threshold)

    def settings(self, role: str) -> ModelSettings:
        return self.cascade.student_settings if role == "student" else self.cascade.teacher_settings

    def in_process(self, role: str) -> bool:
        return parse_spec(self.settings(role).spec).kind in IN_PROCESS_KINDS

    def budget(self) -> int:
        """The token budget a request's max_tokens may lower (the smaller of the two models')."""
        return min(self.cascade.student_settings.max_tokens, self.cascade.teacher_settings.max_tokens)

    def run_student(self, key: Hashable, questions: Sequence[Question]) -> list[StudentOutcome]:
        full, max_tokens = key  # type: ignore[misc]
        return self.cascade.run_student(list(questions), full=full, max_tokens=max_tokens)

    def run_teacher(self, key: Hashable, questions: Sequence[Question]) -> list[Generation]:
        (max_tokens,) = key  # type: ignore[misc]
        return self.cascade.run_teacher(list(questions), max_tokens=max_tokens)

    def teacher_stream_request(self, question: Question, max_tokens: int | None) -> "UpstreamRequest | None":
        """The streaming request the teacher's openai backend would send for this question (its
        prompt, settings, URL and key), for relaying the answer as it is generated; None when the
        teacher is not an upstream server. The backend builds it (OpenAIBackend.stream_request), so
        it is exactly the request `generate` sends."""
        from tourney.models.openai_backend import OpenAIBackend

        backend = self.cascade.teacher
        if not isinstance(backend, OpenAIBackend):
            return None
        s = self.cascade.teacher_settings
        prompts, stop = s.prompting().render([question])
        cfg = s.gen_config(stop, n=1, logprobs=None, max_tokens=max_tokens)
        r = backend.stream_request(prompts[0], cfg, 0)
        return UpstreamRequest(url=r.url, body=r.body, headers=r.headers, chat=r.chat, timeout_s=r.timeout_s)

    def check(self, role: str) -> None:
        """Raise unless the model answers (an upstream's GET /models; in-process: loaded)."""
        backend = self.cascade.student if role == "student" else self.cascade.teacher
        if hasattr(backend, "check"):
            backend.check()

    def close(self) -> None:
        for b in (self.cascade.student, self.cascade.teacher):
            if b is not None:
                b.close()


@dataclass(frozen=True)
class UpstreamRequest:
    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    chat: bool
    timeout_s: float


def upstream_stream_state() -> Any:
    """The openai backend's own accumulator of streamed chunks, so that a relayed answer ends as
    the same Generation (text, reasoning, usage) that `generate` would have returned."""
    from tourney.models.openai_protocol import StreamedResponse

    return StreamedResponse()


def load_pair(cfg: ServeConfig) -> Pair:
    """Build both backends ROUTER.json names. An upstream model gets a per-request timeout of the
    deadline (so a stalled request frees its slot by then) and no retries of its own: the engine
    retries within each question's deadline."""
    bundle = RouterBundle.load(cfg.router).with_specs(cfg.student_spec, cfg.teacher_spec)
    for role in ("student", "teacher"):
        if getattr(bundle, role) is None:
            raise ConfigError(f"{cfg.router}: the router file names no {role} model; give --{role}")
    timeout = cfg.deadline_ms / 1000.0
    opts = [backend_options(s, concurrency=cfg.upstream_concurrency, batch_size=cfg.max_batch, request_timeout_s=timeout)
            for s in (bundle.student, bundle.teacher)]
    student = bundle.load_model("student", **opts[0])
    try:
        teacher = bundle.load_model("teacher", **opts[1])
    except Exception:
        student.close()
        raise
    return Pair(bundle, student, teacher)


def student_rows(question: Question, outcome: StudentOutcome | None) -> list[SampleResult]:
    return list(outcome.rows) if outcome is not None else []


def teacher_rows(question: Question, gen: Generation | None) -> list[SampleResult]:
    return scored_rows(question, [gen]) if gen is not None else []


# -- record to reply --------------------------------------------------------------------------

@dataclass
class Served:
    """One question answered (or failed, for a direct model), with everything the reply, the
    metrics and the log need."""

    question: Question
    mode: str
    record: CascadeRecord
    student: StudentOutcome | None = None  # the student's samples, when it ran
    student_full: bool = False  # drawn with the router's settings (its confidence is meaningful)
    teacher: Generation | None = None  # the teacher's answer, when it returned one
    threshold: float | None = None
    deadline_s: float = 0.0
    fallback: bool = False
    deadline_fallback: bool = False
    attempts: int = 0
    status: int = 200  # direct models: 502 (the model failed) or 504 (deadline) instead of an answer
    model_s: float = 0.0  # time inside model calls (the batches it was in), for Server-Timing
    relayed: str | None = None  # text already streamed to the client as the teacher generated it
    wall_received: float = field(default_factory=time.time)

    def standing(self) -> tuple[int, int, str | None]:
        """(prompt tokens, completion tokens, finish reason) of the answer that stands."""
        r = self.record
        if r.routed_to == "teacher" and self.teacher is not None:
            return self.teacher.prompt_tokens, self.teacher.completion_tokens, self.teacher.finish_reason
        if r.routed_to == "student" and self.student is not None and self.student.rows:
            row = self.student.rows[0]
            return row.prompt_tokens, row.completion_tokens, row.finish_reason
        return 0, 0, "stop"


def decision(s: Served) -> Decision:
    r = s.record
    return Decision(id=r.id, mode=s.mode, model=r.routed_to, answer=r.answer, confidence=r.confidence,
                    threshold=s.threshold, escalated=r.escalated, deadline_fallback=s.deadline_fallback,
                    fallback=s.fallback, student_latency_ms=round(r.student_latency_s * 1000, 3),
                    teacher_latency_ms=round(r.teacher_latency_s * 1000, 3),
                    total_latency_ms=round(r.total_latency_s * 1000, 3), deadline_ms=round(s.deadline_s * 1000, 3),
                    attempts=s.attempts, error=r.error)


def cut(text: str, stop: Sequence[str]) -> str:
    for s in stop:
        i = text.find(s)
        if i != -1:
            text = text[:i]
    return text


def content(job: Job, s: Served) -> str:
    return cut(s.record.output, job.stop)


def usage(served: Sequence[Served]) -> Usage:
    p = sum(s.standing()[0] for s in served)
    c = sum(s.standing()[1] for s in served)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


def chat_response(job: Job, s: Served) -> ChatResponse:
    return ChatResponse(id=job.request_id, created=job.created, model=job.mode, usage=usage([s]), tourney=decision(s),
                        choices=[ChatChoice(index=0, message={"role": "assistant", "content": content(job, s)},
                                            finish_reason=s.standing()[2])])


def completion_response(job: Job, served: Sequence[Served]) -> CompletionResponse:
    decisions = [decision(s) for s in served]
    return CompletionResponse(
        id=job.request_id, created=job.created, model=job.mode, usage=usage(served),
        tourney=decisions[0] if len(decisions) == 1 else decisions,
        choices=[TextChoice(index=i, text=content(job, s), finish_reason=s.standing()[2]) for i, s in enumerate(served)])


def headers(served: Sequence[Served]) -> dict[str, str]:
    """x-tourney-* headers; with several questions each holds their values, comma-separated."""
    ds = [decision(s) for s in served]

    def join(values: list[Any]) -> str:
        return ",".join("" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in values)

    return {"x-tourney-model": join([d.model for d in ds]), "x-tourney-mode": ds[0].mode if ds else "",
            "x-tourney-confidence": join([None if d.confidence is None else f"{d.confidence:.6g}" for d in ds]),
            "x-tourney-threshold": join([None if d.threshold is None else f"{d.threshold:.6g}" for d in ds]),
            "x-tourney-escalated": join([d.escalated for d in ds]),
            "x-tourney-student-latency-ms": join([d.student_latency_ms for d in ds]),
            "x-tourney-teacher-latency-ms": join([d.teacher_latency_ms for d in ds]),
            "x-tourney-deadline-fallback": join([d.deadline_fallback for d in ds]),
            "x-tourney-fallback": join([d.fallback for d in ds])}


def failure(served: Sequence[Served]) -> Problem | None:
    """The error a direct-model request ends with, when its model did not answer."""
    bad = [s for s in served if s.status != 200]
    if not bad:
        return None
    s = bad[0]
    what = "did not answer within the deadline" if s.status == 504 else "failed"
    return Problem(s.status, f"{s.mode} {what}: {s.record.error or 'no answer'}",
                   code="deadline_exceeded" if s.status == 504 else "model_error")


def compose_record(question: Question, student: StudentOutcome | None, teacher: Generation | None, **kw: Any) -> CascadeRecord:
    return compose(question, student, teacher, **kw)


def shadow_pick(question: Question, share: float) -> bool:
    """Whether a confident answer is also sent to the teacher (--shadow-share): decided by a hash of
    the question text, so the same question is always in or out, on every server."""
    return tie_jitter(question.question) < share
