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
the deadline and no retries (routers.cascade.load_cascade), so a request is closed on the server
(a vLLM server stops generating) at the latest one deadline after it began.

Budget. `budget_s` is wall-clock seconds for the whole submission, earlier (killed) sessions
included: each log row records the budget spent when it was written, and a restart resumes from
the largest (the time between the last row and the kill is not counted). While budget is left,
teacher calls are allowed and their timeout is also capped at the budget's end. Once it is
spent, the remaining questions are answered by the student alone (one sample, no confidence);
a student that cannot fit in the question's deadline leaves the fallback answer, as always.

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
import threading
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
from tourney.routers.cascade import FALLBACK, STUDENT, TEACHER, Cascade, CascadeRecord, compose
from tourney.schema import describe

DEADLINE_MARGIN_S = 0.25  # answers are decided by deadline + this (see module doc)
LOG_FILE, META_FILE, SUMMARY_FILE = "log.jsonl", "submit.json", "summary.json"
SERVER_CONCURRENCY = 8  # default questions in flight when every model is a server (as `tourney eval`)


class SubmitConfig(BaseModel):
    """Everything one `tourney submit` depends on."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    questions: str = Field(min_length=1)  # question file; answers optional (tournament questions have none)
    out: str = Field(min_length=1)  # output directory (resumed if it holds a log)
    mode: Literal["speed", "accuracy", "balanced"] = "balanced"
    deadline_ms: float = Field(30_000.0, gt=0)  # per question, from when a worker starts it; finite
    budget_s: float | None = Field(None, gt=0)  # wall-clock budget of the whole submission; None: unlimited
    # Questions (or batches) in flight; None: SERVER_CONCURRENCY when every model is a server, else 1.
    concurrency: int | None = Field(None, ge=1)
    batch_size: int = Field(1, ge=1)  # questions answered together by in-process models (one call each)
    router: str | None = None  # ROUTER.json path; its bytes are part of the identity

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


# -- one question under a deadline ----------------------------------------------------------

@dataclass
class TimedCall:
    done: bool  # returned (or raised) before the timeout
    value: Any = None
    error: BaseException | None = None
    elapsed_s: float = 0.0


def call_with_timeout(fn: Callable[[], Any], timeout_s: float) -> TimedCall:
    """Run fn in a daemon thread and wait at most timeout_s; a late call is abandoned, not killed."""
    start = time.monotonic()
    if timeout_s <= 0:
        return TimedCall(done=False)
    box: dict[str, Any] = {}
    finished = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 -- reported to the caller, never lost
            box["error"] = e
        finally:
            finished.set()

    threading.Thread(target=target, daemon=True, name="tourney-call").start()
    done = finished.wait(timeout_s)
    return TimedCall(done=done, value=box.get("value"), error=box.get("error"), elapsed_s=time.monotonic() - start)


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


def answer_batch(cascade: Cascade, qs: Sequence[Question], *, deadline_s: float,
                 budget_end: float | None) -> list[CascadeRecord]:
    """Answer questions together, each within the deadline counted from the batch's start: one
    student call over the batch, one teacher call over those it escalates (module doc). Never raises."""
    t0 = time.monotonic()
    qs = list(qs)
    try:
        return _answer(cascade, qs, t0, t0 + deadline_s, budget_end)
    except Exception as e:  # noqa: BLE001 -- a submission answers every question, whatever failed
        total = time.monotonic() - t0
        return [compose(q, None, None, escalated=False, student_latency_s=0.0, teacher_latency_s=0.0,
                        total_latency_s=total, errors=[_describe(e)]) for q in qs]


def _answer(cascade: Cascade, qs: list[Question], t0: float, deadline: float,
            budget_end: float | None) -> list[CascadeRecord]:
    n = len(qs)
    errors: list[list[str]] = [[] for _ in qs]
    missed, asked = [False] * n, [False] * n
    exhausted = [budget_end is not None and t0 >= budget_end] * n
    students: list[Any] = [None] * n
    teachers: list[Any] = [None] * n
    s_lat, t_lat = [0.0] * n, [0.0] * n
    decided = [t0] * n  # when each answer was settled: total latency is measured to there
    teacher_end = deadline if budget_end is None else min(deadline, budget_end)

    def ask_teacher(idx: list[int]) -> None:
        left = teacher_end - time.monotonic()
        budget_first = budget_end is not None and budget_end < deadline
        if left <= 0:
            for i in idx:
                if budget_first:
                    exhausted[i] = True
                    errors[i].append("teacher: not asked, the budget is spent")
                else:
                    missed[i] = True
                    errors[i].append("teacher: no time left before the deadline")
            return
        for i in idx:
            asked[i] = True
        call = call_with_timeout(lambda: cascade.run_teacher([qs[i] for i in idx]), left)
        now = time.monotonic()
        for k, i in enumerate(idx):
            t_lat[i], decided[i] = call.elapsed_s, now
            if call.done and call.error is None:
                teachers[i] = call.value[k]
            elif call.done:
                errors[i].append(f"teacher: {_describe(call.error)}")
            elif budget_first:
                exhausted[i] = True
                errors[i].append("teacher: abandoned at the end of the budget; the student's answer stands")
            else:
                missed[i] = True
                errors[i].append(f"teacher: no answer within the deadline (abandoned after {call.elapsed_s:.3f} s)")

    if cascade.mode == "accuracy" and not exhausted[0]:
        ask_teacher(list(range(n)))
    elif cascade.student is not None:
        full = cascade.mode == "balanced" and not exhausted[0]
        call = call_with_timeout(lambda: cascade.run_student(qs, full=full), deadline - time.monotonic())
        now = time.monotonic()
        failed = call.done and call.error is not None
        for i in range(n):
            s_lat[i], decided[i] = call.elapsed_s, now
            if call.done and call.error is None:
                students[i] = call.value[i]
            elif call.done:
                errors[i].append(f"student: {_describe(call.error)}")
            else:
                missed[i] = True
                errors[i].append(f"student: no answer within the deadline (abandoned after {call.elapsed_s:.3f} s)")
        up = [i for i in range(n) if full and (failed or (students[i] is not None and students[i].escalate))]
        if up:
            ask_teacher(up)
    else:
        for e in errors:
            e.append("no student to answer once the budget is spent")
        decided = [time.monotonic()] * n
    return [compose(q, students[i], teachers[i], escalated=asked[i], student_latency_s=s_lat[i],
                    teacher_latency_s=t_lat[i], total_latency_s=decided[i] - t0, deadline_missed=missed[i],
                    budget_exhausted=exhausted[i], errors=errors[i]) for i, q in enumerate(qs)]


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LogRow(CascadeRecord):
    """One line of log.jsonl: an answered question, and the budget spent when it was written."""

    spent_s: float = Field(ge=0)


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


def summarize_submission(rows: Sequence[LogRow], cfg: SubmitConfig, n: int) -> SubmitSummary:
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
        mode=cfg.mode, deadline_ms=cfg.deadline_ms, budget_s=cfg.budget_s)


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
    if questions is None:
        questions = load_submit_questions(cfg.questions)
    out = _prepare(cfg, cascade, concurrency, overwrite)
    log = out / LOG_FILE
    cut_torn_tail(log)
    rows = read_log(log, {q.id for q in questions})
    prior = max((r.spent_s for r in rows.values()), default=0.0)
    start = time.monotonic()
    budget_end = None if cfg.budget_s is None else start + (cfg.budget_s - prior)
    todo = [q for q in questions if q.id not in rows]
    backends = [b for b in (cascade.student, cascade.teacher) if b is not None]

    def tick() -> None:
        if progress:
            in_flight = sum(b.requests_in_flight() for b in backends) if servers else None
            progress(len(rows), len(questions), in_flight)

    tick()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tourney-submit") as pool:
        pending = {pool.submit(answer_batch, cascade, todo[i: i + cfg.batch_size],
                               deadline_s=cfg.deadline_ms / 1000.0, budget_end=budget_end)
                   for i in range(0, len(todo), cfg.batch_size)}
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            spent = round(prior + time.monotonic() - start, 6)
            # Everything answered since the last write goes in one write: one fsync for many
            # answers when they come fast.
            done = [LogRow(**r.to_dict(), spent_s=spent) for fut in finished for r in fut.result()]
            try:
                append_objects(log, (r.to_dict() for r in done))
            except OSError as e:
                raise DataError(f"{log}: cannot write ({e.strerror or e})") from None
            rows.update((r.id, r) for r in done)
            tick()
    write_outputs(out, questions, rows)
    summary = summarize_submission(list(rows.values()), cfg, len(questions))
    write_json_atomic(out / SUMMARY_FILE, summary.to_dict())
    return summary


def render_summary(s: SubmitSummary) -> str:
    def sec(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f} s"
    return (f"answered {s.answered}/{s.n} (mode {s.mode}, deadline {s.deadline_ms:g} ms"
            f"{'' if s.budget_s is None else f', budget {s.budget_s:g} s'}); escalated {s.escalated} "
            f"({s.escalated_share:.1%}); answers from teacher {s.teacher_answers}, student {s.student_answers}, "
            f"fallback {s.fallbacks}; missed deadlines {s.deadline_missed}; budget-limited {s.budget_exhausted}; "
            f"total latency p50 {sec(s.latency_p50_s)}, p95 {sec(s.latency_p95_s)}, max {sec(s.latency_max_s)}; "
            f"budget spent {s.spent_s:.1f} s")
