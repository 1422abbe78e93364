"""Timed tournament submissions: every question answered, each within its deadline, resumably.

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
use --concurrency 1 with in-process models. For an OpenAI-compatible server the teacher is also
built with a per-request timeout of the deadline and no retries, so the server side request is
closed (and a vLLM server stops generating) at the latest one deadline after it began.

Budget. `budget_s` is wall-clock seconds for the whole submission, earlier (killed) sessions
included: each log row records the budget spent when it was written, and a restart resumes from
the largest (the time between the last row and the kill is not counted). While budget is left,
teacher calls are allowed and their timeout is also capped at the budget's end. Once it is
spent, the remaining questions are answered by the student alone (one sample, no confidence);
a student that cannot fit in the question's deadline leaves the fallback answer, as always.

Resumption. log.jsonl gets one row per answered question, appended and fsynced as soon as the
question is answered; after a kill a torn last line is cut, answered ids are skipped, and the
final files are rewritten from the log in question order: submission.jsonl and submission.csv
(id, answer), and summary.json. submit.json records the settings; resuming with other settings
is refused (pass overwrite to start again).
"""
from __future__ import annotations

import csv
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tourney.harness.jsonl import append_objects, cut_torn_tail, iter_objects
from tourney.harness.metrics import percentile
from tourney.harness.questions import file_sha256, load_questions
from tourney.harness.types import DataError, Question
from tourney.routers.cascade import FALLBACK, MODES, STUDENT, TEACHER, Cascade, CascadeRecord, compose

DEADLINE_MARGIN_S = 0.25  # answers are decided by deadline + this (see module doc)
LOG_FILE, META_FILE, SUMMARY_FILE = "log.jsonl", "submit.json", "summary.json"


@dataclass(frozen=True)
class SubmitConfig:
    """Everything one `tourney submit` depends on."""

    questions: str  # question file; answers optional (tournament questions have none)
    out: str  # output directory (resumed if it holds a log)
    mode: str = "balanced"  # speed | accuracy | balanced
    deadline_ms: float = 30_000.0  # per question, from when a worker starts it
    budget_s: float | None = None  # wall-clock budget for the whole submission; None: unlimited
    concurrency: int = 1  # batches in flight
    batch_size: int = 1  # questions answered together (one student call, one teacher call)
    router: str | None = None  # ROUTER.json path; its hash is checked on resume

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.deadline_ms > 0:
            raise ValueError(f"deadline_ms must be > 0, got {self.deadline_ms}")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"budget_s must be > 0, got {self.budget_s}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def identity(self) -> dict[str, Any]:
        return {"questions_sha256": file_sha256(self.questions), "mode": self.mode,
                "deadline_ms": self.deadline_ms, "budget_s": self.budget_s,
                "router_sha256": file_sha256(self.router) if self.router else None}


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


def read_log(path: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Answered rows by id (the last row of an id wins); a bad row raises DataError naming it."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for _, where, row in iter_objects(path):
        if not isinstance(row.get("id"), str):
            raise DataError(f"{where}: expected an object with a string 'id'")
        if not isinstance(row.get("answer"), str) or not row["answer"]:
            raise DataError(f"{where}: field 'answer': expected a non-empty string")
        if row["id"] not in ids:
            raise DataError(f"{where}: id {row['id']!r} is not in the question file; is this another submission's log?")
        rows[row["id"]] = row
    return rows


def _prepare(cfg: SubmitConfig, overwrite: bool) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / META_FILE
    ident = cfg.identity()
    if meta_path.exists() and not overwrite:
        old = json.loads(meta_path.read_text(encoding="utf-8")).get("identity", {})
        differs = [k for k, v in ident.items() if old.get(k) != v]
        if differs:
            raise DataError(f"{meta_path}: this directory holds a submission with other settings "
                            f"({', '.join(differs)} differ); use another --out or pass --overwrite")
    else:
        if overwrite:  # a log without submit.json is kept and resumed: its rows are checked on reading
            for name in (LOG_FILE, SUMMARY_FILE, "submission.jsonl", "submission.csv"):
                (out / name).unlink(missing_ok=True)
        meta = {"identity": ident, "questions": cfg.questions, "router": cfg.router,
                "concurrency": cfg.concurrency, "batch_size": cfg.batch_size, "margin_s": DEADLINE_MARGIN_S,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def summarize_submission(rows: Sequence[dict[str, Any]], cfg: SubmitConfig, n: int) -> SubmitSummary:
    lat = [float(r.get("total_latency_s") or 0.0) for r in rows]
    count = lambda pred: sum(1 for r in rows if pred(r))  # noqa: E731
    esc = count(lambda r: r.get("escalated"))
    return SubmitSummary(
        n=n, answered=len(rows), escalated=esc, escalated_share=esc / len(rows) if rows else 0.0,
        teacher_answers=count(lambda r: r.get("routed_to") == TEACHER),
        student_answers=count(lambda r: r.get("routed_to") == STUDENT),
        fallbacks=count(lambda r: r.get("routed_to") == FALLBACK),
        deadline_missed=count(lambda r: r.get("deadline_missed")),
        budget_exhausted=count(lambda r: r.get("budget_exhausted")), errors=count(lambda r: r.get("error")),
        latency_p50_s=percentile(lat, 50), latency_p95_s=percentile(lat, 95), latency_max_s=max(lat, default=None),
        spent_s=max((float(r.get("spent_s") or 0.0) for r in rows), default=0.0),
        mode=cfg.mode, deadline_ms=cfg.deadline_ms, budget_s=cfg.budget_s)


def write_outputs(out: Path, questions: Sequence[Question], rows: dict[str, dict[str, Any]]) -> None:
    """submission.jsonl and submission.csv, one line per question in question order."""
    ordered = [(q.id, rows[q.id]["answer"]) for q in questions]
    (out / "submission.jsonl").write_text(
        "".join(json.dumps({"id": i, "answer": a}, ensure_ascii=False) + "\n" for i, a in ordered), encoding="utf-8")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "answer"])
    writer.writerows(ordered)
    (out / "submission.csv").write_text(buf.getvalue(), encoding="utf-8")


def run_submission(cfg: SubmitConfig, cascade: Cascade, questions: Sequence[Question] | None = None, *,
                   overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> SubmitSummary:
    """Answer every question of cfg.questions not yet in the log; write the submission files."""
    if cascade.mode != cfg.mode:
        raise ValueError(f"the cascade runs mode {cascade.mode!r} but the config says {cfg.mode!r}")
    if questions is None:
        questions = load_submit_questions(cfg.questions)
    out = _prepare(cfg, overwrite)
    log = out / LOG_FILE
    cut_torn_tail(log)
    rows = read_log(log, {q.id for q in questions})
    prior = max((float(r.get("spent_s") or 0.0) for r in rows.values()), default=0.0)
    start = time.monotonic()
    budget_end = None if cfg.budget_s is None else start + (cfg.budget_s - prior)
    todo = [q for q in questions if q.id not in rows]
    if progress:
        progress(len(rows), len(questions))
    with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="tourney-submit") as pool:
        futures = [pool.submit(answer_batch, cascade, todo[i: i + cfg.batch_size],
                               deadline_s=cfg.deadline_ms / 1000.0, budget_end=budget_end)
                   for i in range(0, len(todo), cfg.batch_size)]
        for fut in as_completed(futures):
            done = [r.to_dict() for r in fut.result()]
            for row in done:
                row["spent_s"] = round(prior + time.monotonic() - start, 6)
            append_objects(log, done)
            rows.update((row["id"], row) for row in done)
            if progress:
                progress(len(rows), len(questions))
    write_outputs(out, questions, rows)
    summary = summarize_submission(list(rows.values()), cfg, len(questions))
    (out / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
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
