"""Cascade execution: the student answers, its confidence decides, the teacher answers the rest.

Modes:
- "speed": the student alone, one sample (K=1, no logprobs: nothing is spent on confidence);
- "accuracy": the teacher alone;
- "balanced": the student answers with the samples and logprobs its calibration run used (the
  threshold only means something on confidences computed that way), the router computes the
  confidence from those rows, and the question goes to the teacher when `confidence < threshold`,
  when the confidence is missing, when the student's request failed, or when its answer cannot
  be read (`unreadable`: the same rule for a question a first stage kept with the student).

Whose answer stands: the teacher's when it was asked and gave a parsable answer; else the
student's (sample 0); else the fallback, "0" for a numeric question and "A" for multiple choice,
so that a submission never has an empty line. (A numeric answer is already the output's last
number when no "####"/"answer is" marker is found: harness.scoring.extract_answer.)

Latency accounting: a question's total is the student's latency plus the teacher's when it was
escalated (the two run one after the other). In `Cascade.answer` (batch) they are the latencies
the backends report per sample (for a batched in-process backend, the batch's wall time); when
the confidence reads several samples, the student's latency is the slowest of its K samples,
drawn together in one call, as in routers.evaluation.rundata (multi_sample="max"). routers.runtime.submit measures
wall-clock time per question instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from tourney.errors import ConfigError
from tourney.harness.pipeline import generate, predict, scored_rows
from tourney.harness.types import Question, SampleResult
from tourney.models.types import Backend, Generation, Prompt
from tourney.routers.runtime.bundle import CHOICE_SIGNALS, SAMPLE_SIGNALS, ModelSettings, RouterBundle, needs_logprobs, needs_samples
from tourney.routers.policies.calibrate import CalibratedRouter

MODES = ("speed", "accuracy", "balanced")
STUDENT, TEACHER, FALLBACK = "student", "teacher", "fallback"
FALLBACK_NUMBER, FALLBACK_CHOICE = "0", "A"


def fallback_answer(question: Question) -> str:
    return FALLBACK_CHOICE if question.is_multiple_choice else FALLBACK_NUMBER


@dataclass
class StudentOutcome:
    """The student's samples of one question and what the router made of them."""

    rows: list[SampleResult]
    confidence: float | None  # None in speed mode, or when the signals have nothing to read
    latency_s: float  # sample 0's, or the slowest sample's when the confidence reads them all
    escalate: bool  # balanced mode: the router sends this question to the teacher

    @property
    def prediction(self) -> str | None:
        return self.rows[0].prediction if self.rows else None

    @property
    def error(self) -> str | None:
        return self.rows[0].error if self.rows else "no sample returned"


class CascadeRecord(BaseModel):
    """One answered question (and the schema of a submission log row, routers.runtime.submit.LogRow)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: str
    answer: str = Field(min_length=1)  # what to submit: the standing prediction, or the fallback; never empty
    output: str  # the standing model output ("" when the fallback stands)
    prediction: str | None  # the answer extracted from `output`
    routed_to: Literal["student", "teacher", "fallback"]  # whose answer stands
    escalated: bool  # the teacher was asked
    confidence: Annotated[float, Field(allow_inf_nan=True)] | None  # -inf: no evidence at all
    student_latency_s: float = Field(ge=0)
    teacher_latency_s: float = Field(ge=0)
    total_latency_s: float = Field(ge=0)
    deadline_missed: bool = False  # a call was abandoned at the question's deadline
    budget_exhausted: bool = False  # answered student-only because the total budget was spent
    error: str | None = None  # failures on the way (a failed request, a missed deadline)
    student_prediction: str | None = None
    teacher_prediction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def compose(question: Question, student: StudentOutcome | None, teacher: Generation | None, *,
            escalated: bool, student_latency_s: float, teacher_latency_s: float, total_latency_s: float,
            deadline_missed: bool = False, budget_exhausted: bool = False,
            errors: Sequence[str] = ()) -> CascadeRecord:
    """The record of one question from whatever the two models returned (see module doc)."""
    errs = list(errors)
    s_pred = student.prediction if student is not None else None
    if student is not None and student.error:
        errs.append(f"student: {student.error}")
    t_pred = None
    if teacher is not None:
        if teacher.error:
            errs.append(f"teacher: {teacher.error}")
        else:
            t_pred = predict(question, teacher.text)
    if t_pred is not None:
        who, output, pred = TEACHER, teacher.text, t_pred
    elif s_pred is not None:
        who, output, pred = STUDENT, student.rows[0].output, s_pred
    else:
        who, output, pred = FALLBACK, "", None
    return CascadeRecord(
        id=question.id, answer=pred if pred else fallback_answer(question), output=output, prediction=pred,
        routed_to=who, escalated=escalated, confidence=None if student is None else student.confidence,
        student_latency_s=student_latency_s, teacher_latency_s=teacher_latency_s,
        total_latency_s=total_latency_s, deadline_missed=deadline_missed, budget_exhausted=budget_exhausted,
        error="; ".join(errs) or None, student_prediction=s_pred, teacher_prediction=t_pred)


class Cascade:
    """A student backend, a teacher backend and a calibrated router, run in one of MODES."""

    def __init__(self, student: Backend | None, teacher: Backend | None, router: CalibratedRouter | None,
                 mode: str = "balanced", *, student_settings: ModelSettings | None = None,
                 teacher_settings: ModelSettings | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != "accuracy" and student is None:
            raise ValueError(f"mode {mode!r} needs a student model")
        if mode != "speed" and teacher is None:
            raise ValueError(f"mode {mode!r} needs a teacher model")
        if mode == "balanced" and router is None:
            raise ValueError("mode 'balanced' needs a calibrated router")
        self.student, self.teacher, self.router, self.mode = student, teacher, router, mode
        self.student_settings = student_settings or ModelSettings(spec=getattr(student, "spec", "student"))
        self.teacher_settings = teacher_settings or ModelSettings(spec=getattr(teacher, "spec", "teacher"))
        self.signals = list(router.signals) if router is not None else []
        if mode == "balanced" and needs_samples(self.signals) and self.student_settings.samples < 2:
            raise ConfigError(f"the router reads {sorted(set(self.signals) & SAMPLE_SIGNALS)}, "
                             "which need several student samples, but the student's settings have samples=1")

    # -- the two calls ------------------------------------------------------------------------
    def _generate(self, backend: Backend, settings: ModelSettings, questions: Sequence[Question],
                  prompts: Sequence[Prompt] | None, stop: Sequence[str] | None, **cfg: Any) -> list[list[Generation]]:
        if prompts is not None:  # already rendered (lm-eval contexts): generate from them as they are
            gen = settings.gen_config(tuple(stop or ()), **cfg)
            return backend.generate(list(prompts), gen)
        rendered, template_stop = settings.prompting().render(questions)
        gen = settings.gen_config(tuple(stop) if stop is not None else template_stop, **cfg)
        return generate(backend, questions, rendered, gen)

    def first_decisions(self, questions: Sequence[Question]) -> list[str | None]:
        """Balanced mode with a pre-routing or two-stage router (routers.policies.policy): per question,
        "teacher" or "student" when the router decides before the student answers, else None."""
        if self.mode != "balanced" or self.router is None or self.router.policy == "cascade":
            return [None] * len(questions)
        return [self.router.decide_first(q.question, q.type) for q in questions]

    def run_student(self, questions: Sequence[Question], *, full: bool | None = None,
                    prompts: Sequence[Prompt] | None = None, stop: Sequence[str] | None = None,
                    max_tokens: int | None = None, kept: Sequence[bool] | None = None) -> list[StudentOutcome]:
        """The student's answers. full=True (the default in balanced mode) draws the samples and
        logprobs the router needs and computes the confidence; full=False draws one sample.
        `kept` marks questions the router already kept with the student (first_decisions): one
        sample each, never escalated unless the request fails."""
        if kept is not None and any(kept):
            light = [i for i, k in enumerate(kept) if k]
            heavy = [i for i, k in enumerate(kept) if not k]
            out: dict[int, StudentOutcome] = {}
            for idx, is_full in ((heavy, full), (light, False)):
                if not idx:
                    continue
                sub = self.run_student([questions[i] for i in idx], full=is_full, stop=stop, max_tokens=max_tokens,
                                       prompts=None if prompts is None else [prompts[i] for i in idx])
                out.update(zip(idx, sub))
            for i in light:
                o = out[i]
                o.escalate = self.mode == "balanced" and unreadable(o.rows)
            return [out[i] for i in range(len(questions))]
        full = self.mode == "balanced" if full is None else full
        s = self.student_settings
        if full:
            logprobs = s.logprobs if s.logprobs is not None else (0 if needs_logprobs(self.signals) else None)
            gens = self._generate(self.student, s, questions, prompts, stop, logprobs=logprobs, max_tokens=max_tokens)
        else:
            gens = self._generate(self.student, s, questions, prompts, stop, n=1, logprobs=None, max_tokens=max_tokens)
        all_rows = [scored_rows(q, g) for q, g in zip(questions, gens, strict=True)]
        if full and prompts is None and self.router is not None and choice_router_signals(self.router):
            self._score_options(questions, all_rows)
        out = []
        for q, g, rows in zip(questions, gens, all_rows, strict=True):
            conf = None
            if full and self.router is not None and rows:
                conf = self.router.confidence(rows, question_text=q.question)
            # The K samples of one call are drawn together (one batch, `n`, concurrent requests) and
            # each carries that shared wait: the question waited for the slowest, not their sum
            # (routers.evaluation.rundata's multi_sample="max", the same accounting).
            several = full and needs_samples(self.signals) and len(g) > 1
            latency = max(x.latency_s for x in g) if several else (g[0].latency_s if g else 0.0)
            escalate = self.mode == "balanced" and (unreadable(rows) or self.router.to_teacher(conf))
            out.append(StudentOutcome(rows=rows, confidence=conf, latency_s=latency, escalate=escalate))
        return out

    def _score_options(self, questions: Sequence[Question], all_rows: list[list[SampleResult]]) -> None:
        """The option scores mc_probability / mc_margin read, as `tourney eval --logprobs` records
        them (harness.option_scores); lm-eval contexts score their options in lm_eval_model."""
        from tourney.harness.option_scores import score_options

        rendered, _ = self.student_settings.prompting().render(questions)
        outputs = [[r.output for r in rows] for rows in all_rows]
        for rows, logliks in zip(all_rows, score_options(self.student, questions, rendered, outputs)):
            for r, ll in zip(rows, logliks):
                r.choice_logliks = ll if r.error is None else None

    def run_teacher(self, questions: Sequence[Question], *, prompts: Sequence[Prompt] | None = None,
                    stop: Sequence[str] | None = None, max_tokens: int | None = None) -> list[Generation]:
        """The teacher's answer (its sample 0) per question."""
        gens = self._generate(self.teacher, self.teacher_settings, questions, prompts, stop, n=1,
                              logprobs=None, max_tokens=max_tokens)
        return [g[0] if g else Generation(text="", error="no sample returned") for g in gens]

    # -- batch answering ----------------------------------------------------------------------
    def answer(self, questions: Sequence[Question], *, prompts: Sequence[Prompt] | None = None,
               stop: Sequence[str] | None = None, max_tokens: int | None = None) -> list[CascadeRecord]:
        """Answer a batch: one student call over all questions, one teacher call over those
        escalated. Latencies are the backends' own (see module doc); no deadlines here."""
        kw = dict(stop=stop, max_tokens=max_tokens)
        if self.mode == "accuracy":
            gens = self.run_teacher(questions, prompts=prompts, **kw)
            return [compose(q, None, g, escalated=True, student_latency_s=0.0, teacher_latency_s=g.latency_s,
                            total_latency_s=g.latency_s) for q, g in zip(questions, gens)]
        first = self.first_decisions(questions)
        rest = [i for i, d in enumerate(first) if d != TEACHER]  # the others go to the teacher directly
        outcomes: list[StudentOutcome | None] = [None] * len(questions)
        if rest:
            sub = self.run_student([questions[i] for i in rest], kept=[first[i] == STUDENT for i in rest],
                                   prompts=None if prompts is None else [prompts[i] for i in rest], **kw)
            for i, o in zip(rest, sub):
                outcomes[i] = o
        up = [i for i, o in enumerate(outcomes) if o is None or o.escalate]
        teacher: dict[int, Generation] = {}
        if up:
            sub_prompts = None if prompts is None else [prompts[i] for i in up]
            gens = self.run_teacher([questions[i] for i in up], prompts=sub_prompts, **kw)
            teacher = dict(zip(up, gens))
        records = []
        for i, (q, o) in enumerate(zip(questions, outcomes)):
            t = teacher.get(i)
            t_lat = t.latency_s if t is not None else 0.0
            s_lat = 0.0 if o is None else o.latency_s
            records.append(compose(q, o, t, escalated=t is not None, student_latency_s=s_lat,
                                   teacher_latency_s=t_lat, total_latency_s=s_lat + t_lat))
        return records


def unreadable(rows: Sequence[SampleResult]) -> bool:
    """The student gave no answer the grader can read: no sample, a failed request, or an output
    with no answer in it (empty, names no option, a hedge the grader leaves unparsed). Such an
    answer is escalated whatever the router's score says (a confident-looking empty output is
    still no answer): the fallback stands only when the teacher cannot answer in time. The
    offline figures (routers.evaluation.rundata.RoutingData.unread) count these questions the same way."""
    return not rows or rows[0].error is not None or rows[0].prediction is None


def choice_router_signals(router: CalibratedRouter) -> bool:
    """Whether the router reads option scores (it can route multiple-choice log-likelihoods)."""
    return any(s in CHOICE_SIGNALS for s in router.signals)


def backend_options(settings: ModelSettings, *, concurrency: int = 8, batch_size: int = 16,
                    request_timeout_s: float | None = None) -> dict[str, Any]:
    """Backend options for a model, as `tourney eval` picks them. An OpenAI-compatible server gets
    a per-request timeout and no retries when request_timeout_s is given (a deadline to keep)."""
    from tourney.models.registry import default_options, parse_spec

    opts = default_options(settings.spec, chat=settings.chat, batch_size=batch_size, concurrency=concurrency)
    opts.update(settings.model_args)
    if parse_spec(settings.spec).kind == "openai" and not settings.send_api_key:
        opts["api_key_env"] = None  # a server named by a router file gets no key (routers.runtime.trust)
    if parse_spec(settings.spec).kind == "openai" and request_timeout_s is not None:
        opts.setdefault("timeout_s", request_timeout_s)
        opts.setdefault("max_retries", 0)
    return opts


ABANDONED_ROOM = 2  # a submission's server backends: requests per question in flight (load_cascade)


def load_cascade(bundle: RouterBundle, mode: str, *, concurrency: int = 8, batch_size: int = 16,
                 request_timeout_s: float | None = None, student_backup: bool = True) -> Cascade:
    """Build the backends a router file names and the cascade over them. The student is loaded in
    accuracy mode too when student_backup (it answers once a submission's budget is spent).

    `concurrency` is the number of questions in flight: a server student gets room for all of
    their samples at once. With `request_timeout_s` (a submission's deadline) a server request
    never outlives its question by more than the deadline: one attempt, closed at the timeout
    counted from when it was sent; and each server backend gets room for twice the requests in
    flight (ABANDONED_ROOM), because a request abandoned at its question's deadline holds its
    connection until then: without the room, the next question's request waited for that
    connection while its own deadline ran (measured on the simulated reference pair: 2 points
    more missed deadlines in balanced mode at a deadline among the teacher's latencies)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    want_student = mode != "accuracy" or student_backup
    want_teacher = mode != "speed"
    for role, settings, wanted in (("student", bundle.student, want_student), ("teacher", bundle.teacher, want_teacher)):
        if wanted and settings is None and not (role == "student" and mode == "accuracy"):
            raise ConfigError(f"the router file names no {role} model; give its spec (--{role})")
    student = teacher = None
    # A question's calls on one server are sequential and an abandoned one closes one deadline
    # after it was sent, so each question in flight has at most one abandoned request beside
    # its current one on a server.
    room = ABANDONED_ROOM if request_timeout_s is not None else 1
    try:
        if want_student and bundle.student is not None:
            student = bundle.load_model("student", **backend_options(
                bundle.student, concurrency=room * concurrency * bundle.student.samples, batch_size=batch_size,
                request_timeout_s=request_timeout_s))
        if want_teacher:
            teacher = bundle.load_model("teacher", **backend_options(
                bundle.teacher, concurrency=room * concurrency, batch_size=batch_size,
                request_timeout_s=request_timeout_s))
    except Exception:
        for b in (student, teacher):
            if b is not None:
                b.close()
        raise
    return Cascade(student, teacher, bundle.router, mode, student_settings=bundle.student,
                   teacher_settings=bundle.teacher)
