"""Timed tournament submissions: every question answered, each within its deadline, resumably.

Flow. Questions flow continuously: `concurrency` workers each take the next question (or, for
in-process models, the next batch of `batch_size`) the moment they finish one, so against
servers C questions are in flight from the first to the last, and a question's teacher request
follows its own student answer at once, with no barrier between the student's and the teacher's
requests of different questions. The default concurrency is 8 when every model is a server and 1
otherwise; `batch_size` > 1 needs an in-process model (against servers a batch would only add a
barrier).

Deadline. Each question has `deadline_ms`, measured from the moment a worker starts it. Every
model call for it gets a timeout equal to the time left before that deadline: the student's
first, then the teacher's. With `batch_size` B > 1 a worker takes B questions at once (all known
up front, as in a tournament file): one student call over the B, then one teacher call over
those escalated, and every one of the B has its deadline counted from the batch's start; batched
generation is what makes the cascade pay on in-process models, which are overhead-bound one
question at a time. A call still running at the deadline is abandoned: the student's
answer stands when the teacher is late, the fallback ("0", or "A" for multiple choice) when the
student itself is late (or, in accuracy mode, the teacher: it runs alone), and `deadline_missed`
is recorded. The answer is therefore decided no
later than deadline + DEADLINE_MARGIN_S, the bookkeeping margin (thread wake-up, answer
extraction); `total_latency_s` is measured up to that decision, before the log write, and tests
check total_latency_s <= deadline + margin with a teacher that sleeps past the deadline.

Abandoning a call. In-process backends (hf, gguf, vllm, replay) run each call in a daemon worker
thread; at the deadline the thread is left behind and its compute CONTINUES IN THE BACKGROUND until
the backend returns (Python cannot kill a thread), slowing what runs next on the same CPU/GPU;
use --concurrency 1 with in-process models. Server models are built with a per-request timeout of
the deadline and no retries (routers.runtime.cascade.load_cascade), so a request is closed on the server
(a vLLM server stops generating) at the latest one deadline after it began; the backends keep
room for it beside the next question's request (routers.runtime.cascade.ABANDONED_ROOM), so it
never holds a connection that request waits for.

Budget. `budget_s` is wall-clock seconds for the whole submission, earlier (killed) sessions
included: each log row records the budget spent when it was written, and a restart resumes from
the largest (the time between the last row and the kill is not counted). While budget is left,
teacher calls are allowed and their timeout is also capped at the budget's end. Once it is
spent, the remaining questions are answered by the student alone (one sample, no confidence);
a student that cannot fit in the question's deadline leaves the fallback answer, as always.

Warm-up. Before the clock starts (deadlines, budget), each model the submission will call answers
the first batch of questions once (one question against a server), and the answers are thrown away:
a cold model's first call (a fresh process, kernels to compile, a connection to open) is several
times slower than the next ones (1.79 s against 0.32 s for the miniature student's first batch),
and without this every deadline miss fell in the first batch. Its time is reported (`warmup_s`) and
not counted in the budget; `warmup=False` (--no-warmup) skips it.

Scoring. When the question file carries gold answers, the summary scores the submitted answers
against them, overall and per type with intervals (routers.runtime.submit_grade), after every answer is
decided: the cascade is given the questions without their gold, so no grading (math-verify
included) ever runs inside a timed call.

Failed requests. A question whose model request failed (an error the backend returned, or raised,
before the deadline: not a deadline or budget miss) is logged with `request_failed` and the answer
that stood (the student's, or the fallback); a resumed run asks it again, as `tourney eval` retries
its failed rows, and the summary counts those left (`requests_failed`).

Resumption. log.jsonl gets one row per answered question (LogRow), appended and fsynced as soon
as the question is answered (answers that finish together share one write); after a kill a torn
last line is cut, answered ids are skipped, and the final files are rewritten from the log in
question order: submission.jsonl and submission.csv (id, answer), and summary.json. submit.json
records the identity of the submission (harness.rundir.check_same_run): the question file's and
the router's bytes, mode, deadline, budget, batch size, and the models as they run, spec
overrides and backend options included; resuming with anything else is refused (pass overwrite
to start again).
"""
from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tourney.errors import ConfigError
from tourney.harness.jsonl import append_objects, cut_torn_tail, iter_objects
from tourney.harness.metrics import percentile
from tourney.harness.questions import file_sha256, load_questions
from tourney.harness.rundir import check_same_run, make_dir, now_stamp, read_json_object, write_json_atomic
from tourney.harness.types import DataError, Question
from tourney.models.registry import output_options
from tourney.routers.runtime.cascade import FALLBACK, STUDENT, TEACHER, Cascade, CascadeRecord
from tourney.routers.runtime.deadline import (
    DEADLINE_MARGIN_S, WARMUP_MIN_S, answer_batch, frozen_heap, wait_abandoned, warm_up, without_gold,
)
from tourney.routers.runtime.submit_grade import Grading, grade_submission, render_grading
from tourney.schema import describe

LOG_FILE, META_FILE, SUMMARY_FILE = "log.jsonl", "submit.json", "summary.json"
SERVER_CONCURRENCY = 8  # default questions in flight when every model is a server (as `tourney eval`)
# Bounds that keep every timeout a number the OS can wait on (1e300 ms overflows a thread wait).
MAX_DEADLINE_MS = 86_400_000.0  # one day per question
MAX_BUDGET_S = 31_536_000.0  # one year for the whole submission


class SubmitConfig(BaseModel):
    """Everything one `tourney submit` depends on."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    questions: str = Field(min_length=1)  # question file; answers optional (tournament questions have none)
    out: str = Field(min_length=1)  # output directory (resumed if it holds a log)
    mode: Literal["speed", "accuracy", "balanced"] = "balanced"
    deadline_ms: float = Field(30_000.0, gt=0, le=MAX_DEADLINE_MS)  # per question, from when a worker starts it
    budget_s: float | None = Field(None, gt=0, le=MAX_BUDGET_S)  # wall-clock budget of the whole submission; None: unlimited
    # Questions (or batches) in flight; None: SERVER_CONCURRENCY when every model is a server, else 1.
    concurrency: int | None = Field(None, ge=1)
    batch_size: int = Field(1, ge=1)  # questions answered together by in-process models (one call each)
    router: str | None = None  # ROUTER.json path; its bytes are part of the identity
    limit: int | None = Field(None, ge=1)  # answer the first N questions only (a later, larger limit resumes)
    warmup: bool = True  # one untimed call per model before the clock starts (module doc)

    def concurrency_for(self, cascade: Cascade) -> int:
        if self.concurrency is not None:
            return self.concurrency
        return SERVER_CONCURRENCY if all_servers(cascade) else 1


def all_servers(cascade: Cascade) -> bool:
    """Whether every model the cascade holds answers from a server (requests are independent)."""
    backends = [b for b in (cascade.student, cascade.teacher) if b is not None]
    return bool(backends) and all(b.capabilities.server for b in backends)


def submission_identity(cfg: SubmitConfig, cascade: Cascade) -> dict[str, Any]:
    """What must be equal for a log's answers to belong to this submission (module doc): the
    models as they run, --student/--teacher overrides and backend options included."""
    def model(settings: Any, backend: Any) -> dict[str, Any] | None:
        if backend is None:
            return None
        d = settings.to_dict()
        d["model_args"] = output_options(dict(d.get("model_args") or {}))
        return d
    return {"questions_sha256": file_sha256(cfg.questions), "mode": cfg.mode, "deadline_ms": cfg.deadline_ms,
            "budget_s": cfg.budget_s, "batch_size": cfg.batch_size,
            "router_sha256": file_sha256(cfg.router) if cfg.router else None,
            "student": model(cascade.student_settings, cascade.student),
            "teacher": model(cascade.teacher_settings, cascade.teacher)}


def load_submit_questions(path: str | Path, limit: int | None = None) -> list[Question]:
    """Tournament questions: as the harness reads them, but with no gold needed (answer "")."""
    return load_questions(str(path), limit=limit, allow_unlabeled=True)


# -- the submission ------------------------------------------------------------------------

@dataclass
class SubmitSummary:
    n: int
    answered: int
    escalated: int  # the teacher was asked
    escalated_share: float
    teacher_answers: int  # the teacher's answer stands
    student_answers: int
    fallbacks: int
    deadline_missed: int
    budget_exhausted: int
    errors: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_max_s: float | None
    spent_s: float  # wall-clock budget used, all sessions
    mode: str
    deadline_ms: float
    budget_s: float | None
    margin_s: float = DEADLINE_MARGIN_S
    requests_failed: int = 0  # questions whose request failed for good (resuming asks them again)
    warmup_s: float | None = None  # this session's warm-up, outside the clock; None: none ran
    warmup_error: str | None = None  # the warm-up failed or was abandoned (the run went on)
    scored: Grading | None = None  # against the gold answers, when the question file has some

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scored"] = None if self.scored is None else self.scored.to_dict()
        return d


class LogRow(CascadeRecord):
    """One line of log.jsonl: an answered question, and the budget spent when it was written."""

    spent_s: float = Field(ge=0)
    request_failed: bool = False  # a model request failed where its answer was wanted (module doc)


def read_log(path: Path, ids: set[str]) -> dict[str, LogRow]:
    """Answered rows by id (the last row of an id wins); a bad row raises DataError naming its
    line and field."""
    rows: dict[str, LogRow] = {}
    if not path.exists():
        return rows
    for _, where, raw in iter_objects(path):
        try:
            row = LogRow.model_validate(raw, strict=True)
        except ValidationError as e:
            raise DataError(f"{where}: {describe(e)}") from None
        if row.id not in ids:
            raise DataError(f"{where}: id {row.id!r} is not in the question file; is this another submission's log?")
        rows[row.id] = row
    return rows


def _prepare(cfg: SubmitConfig, cascade: Cascade, concurrency: int, overwrite: bool) -> Path:
    out = make_dir(Path(cfg.out), "the submission directory")
    meta_path = out / META_FILE
    ident = submission_identity(cfg, cascade)
    if meta_path.exists() and not overwrite:
        recorded = read_json_object(meta_path, "a submission's settings (submit.json)").get("identity")
        if not isinstance(recorded, dict):
            raise DataError(f"{meta_path}: field 'identity': expected an object; is this a submission directory?")
        check_same_run(meta_path, recorded, ident)
    else:
        if overwrite:  # a log without submit.json is kept and resumed: its rows are checked on reading
            for name in (LOG_FILE, SUMMARY_FILE, "submission.jsonl", "submission.csv"):
                (out / name).unlink(missing_ok=True)
        write_json_atomic(meta_path, {"identity": ident, "questions": cfg.questions, "router": cfg.router,
                                      "concurrency": concurrency, "batch_size": cfg.batch_size,
                                      "margin_s": DEADLINE_MARGIN_S, "started_at": now_stamp()})
    return out


def summarize_submission(rows: Sequence[LogRow], cfg: SubmitConfig, n: int, **extra: Any) -> SubmitSummary:
    lat = [r.total_latency_s for r in rows]
    count = lambda pred: sum(1 for r in rows if pred(r))  # noqa: E731
    esc = count(lambda r: r.escalated)
    return SubmitSummary(
        n=n, answered=len(rows), escalated=esc, escalated_share=esc / len(rows) if rows else 0.0,
        teacher_answers=count(lambda r: r.routed_to == TEACHER),
        student_answers=count(lambda r: r.routed_to == STUDENT),
        fallbacks=count(lambda r: r.routed_to == FALLBACK),
        deadline_missed=count(lambda r: r.deadline_missed),
        budget_exhausted=count(lambda r: r.budget_exhausted), errors=count(lambda r: r.error),
        latency_p50_s=percentile(lat, 50), latency_p95_s=percentile(lat, 95), latency_max_s=max(lat, default=None),
        spent_s=max((r.spent_s for r in rows), default=0.0),
        mode=cfg.mode, deadline_ms=cfg.deadline_ms, budget_s=cfg.budget_s,
        requests_failed=count(lambda r: r.request_failed), **extra)


def write_outputs(out: Path, questions: Sequence[Question], rows: dict[str, LogRow]) -> None:
    """submission.jsonl and submission.csv, one line per question in question order."""
    ordered = [(q.id, rows[q.id].answer) for q in questions]
    (out / "submission.jsonl").write_text(
        "".join(json.dumps({"id": i, "answer": a}, ensure_ascii=False) + "\n" for i, a in ordered), encoding="utf-8")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "answer"])
    writer.writerows(ordered)
    (out / "submission.csv").write_text(buf.getvalue(), encoding="utf-8")


Progress = Callable[[int, int, "int | None"], None]  # (answered, questions, requests in flight or None)


def run_submission(cfg: SubmitConfig, cascade: Cascade, questions: Sequence[Question] | None = None, *,
                   overwrite: bool = False, progress: Progress | None = None) -> SubmitSummary:
    """Answer every question of cfg.questions not yet in the log; write the submission files."""
    if cascade.mode != cfg.mode:
        raise ConfigError(f"the cascade runs mode {cascade.mode!r} but the config says {cfg.mode!r}")
    servers = all_servers(cascade)
    if servers and cfg.batch_size > 1:
        raise ConfigError(f"--batch-size {cfg.batch_size} batches in-process models; against servers each "
                          "question is sent alone with --concurrency in flight (a batch would only add a barrier)")
    concurrency = cfg.concurrency_for(cascade)
    every = list(questions) if questions is not None else load_submit_questions(cfg.questions)
    questions = every[: cfg.limit]  # a log may hold more (an earlier, larger --limit): kept, not shown
    out = _prepare(cfg, cascade, concurrency, overwrite)
    log = out / LOG_FILE
    cut_torn_tail(log)
    rows = read_log(log, {q.id for q in every})
    prior = max((r.spent_s for r in rows.values()), default=0.0)
    # Failed requests are asked again, as `tourney eval` retries its failed rows.
    todo = [q for q in questions if q.id not in rows or rows[q.id].request_failed]
    deadline_s = cfg.deadline_ms / 1000.0
    warm = warm_up(cascade, todo, batch_size=cfg.batch_size, servers=servers, deadline_s=deadline_s,
                   in_flight=concurrency) if cfg.warmup and todo else None
    # The collector's pass over what loading made runs here, before the clock (frozen_heap).
    with frozen_heap():
        start = time.monotonic()  # the clock starts after the warm-up
        budget_end = None if cfg.budget_s is None else start + (cfg.budget_s - prior)
        backends = [b for b in (cascade.student, cascade.teacher) if b is not None]
        asked = without_gold(todo)

        def tick() -> None:
            if progress:
                in_flight = sum(b.requests_in_flight() for b in backends) if servers else None
                progress(sum(1 for q in questions if q.id in rows), len(questions), in_flight)

        tick()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tourney-submit") as pool:
            pending = {pool.submit(answer_batch, cascade, asked[i: i + cfg.batch_size],
                                   deadline_s=deadline_s, budget_end=budget_end)
                       for i in range(0, len(asked), cfg.batch_size)}
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                spent = round(prior + time.monotonic() - start, 6)
                # Everything answered since the last write goes in one write: one fsync for many
                # answers when they come fast.
                done = [LogRow(**a.record.to_dict(), spent_s=spent, request_failed=a.request_failed)
                        for fut in finished for a in fut.result()]
                try:
                    append_objects(log, (r.to_dict() for r in done))
                except OSError as e:
                    raise DataError(f"{log}: cannot write ({e.strerror or e})") from None
                rows.update((r.id, r) for r in done)
                tick()
    write_outputs(out, questions, rows)
    shown = {q.id: rows[q.id] for q in questions}
    # Graded only now, every answer decided and logged (module doc), with the file's gold answers.
    summary = summarize_submission(list(shown.values()), cfg, len(questions),
                                   warmup_s=None if warm is None else round(warm.seconds, 3),
                                   warmup_error=None if warm is None else warm.error,
                                   scored=grade_submission(questions, shown))
    write_json_atomic(out / SUMMARY_FILE, summary.to_dict())
    # Everything is written; let calls abandoned at their deadline finish before the models close.
    wait_abandoned(max(WARMUP_MIN_S, 5 * deadline_s))
    return summary


def render_summary(s: SubmitSummary) -> str:
    def sec(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f} s"
    return (f"answered {s.answered}/{s.n} (mode {s.mode}, deadline {s.deadline_ms:g} ms"
            f"{'' if s.budget_s is None else f', budget {s.budget_s:g} s'}); escalated {s.escalated} "
            f"({s.escalated_share:.1%}); answers from teacher {s.teacher_answers}, student {s.student_answers}, "
            f"fallback {s.fallbacks}; missed deadlines {s.deadline_missed}; budget-limited {s.budget_exhausted}; "
            f"total latency p50 {sec(s.latency_p50_s)}, p95 {sec(s.latency_p95_s)}, max {sec(s.latency_max_s)}; "
            f"budget spent {s.spent_s:.1f} s"
            + ("" if s.warmup_s is None else f" (warm-up {s.warmup_s:.1f} s before the clock)")
            + ("" if s.warmup_error is None else f"\nwarm-up: {s.warmup_error}")
            + ("" if s.scored is None else "\n" + render_grading(s.scored)))


def failed_line(s: SubmitSummary, out: str | Path) -> str | None:
    """The closing line of a submission with requests that failed for good, or None."""
    if not s.requests_failed:
        return None
    return (f"error: {s.requests_failed} question(s) had a request that failed for good (their answer is the "
            f"student's or the fallback; rows with \"request_failed\": true in {Path(out) / LOG_FILE}); "
            "run the same command again to ask only those again")
