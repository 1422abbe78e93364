"""Answering questions under a deadline: timed calls that are abandoned (never killed) when late,
one batch's answers through the cascade, and the warm-up before the clock starts.

The rules (what a deadline counts from, what stands when a call is late, what a failed request
is) are routers.runtime.submit's module doc; this module is their mechanics.
"""
from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

from tourney.harness.types import Question
from tourney.routers.runtime.cascade import FALLBACK, TEACHER, Cascade, CascadeRecord, compose

DEADLINE_MARGIN_S = 0.25  # answers are decided by deadline + this (see routers.runtime.submit's doc)
WARMUP_MIN_S = 60.0  # a warm-up call is abandoned after max(this, 5 deadlines)

# Calls abandoned at a deadline that may still be running (an in-process model keeps generating).
_abandoned: set[threading.Thread] = set()
_abandoned_lock = threading.Lock()


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

    thread = threading.Thread(target=target, daemon=True, name="tourney-call")
    thread.start()
    done = finished.wait(timeout_s)
    if not done:
        with _abandoned_lock:
            _abandoned.add(thread)
    return TimedCall(done=done, value=box.get("value"), error=box.get("error"), elapsed_s=time.monotonic() - start)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """While answers are timed, leave what already exists out of the garbage collector.

    A full collection walks every object the process holds (a loaded model, its tokenizer, the
    questions: millions of them) with the GIL held, pausing every worker thread at once: a
    deadline is then missed by the collection's length, whatever the models do. Frozen, the
    objects made before the clock are never scanned; collections see only what answering makes."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def wait_abandoned(timeout_s: float) -> int:
    """Wait up to timeout_s for abandoned calls to end; return how many still run.

    A submission waits here once every answer is decided and written, before its models are
    closed: an in-process model left generating in a daemon thread while the interpreter exits
    aborts the process (torch's C++ side: "terminate called without an active exception")."""
    end = time.monotonic() + timeout_s
    with _abandoned_lock:
        threads = list(_abandoned)
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    with _abandoned_lock:
        _abandoned.difference_update(t for t in threads if not t.is_alive())
        return sum(1 for t in _abandoned if t.is_alive())


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:300]


@dataclass(frozen=True)
class Answer:
    """One question's record, and whether a model request failed where its answer was wanted."""

    record: CascadeRecord
    request_failed: bool = False


def answer_batch(cascade: Cascade, qs: Sequence[Question], *, deadline_s: float,
                 budget_end: float | None) -> list[Answer]:
    """Answer questions together, each within the deadline counted from the batch's start: one
    student call over the batch, one teacher call over those it escalates (module doc). Never raises."""
    t0 = time.monotonic()
    qs = list(qs)
    try:
        return _answer(cascade, qs, t0, t0 + deadline_s, budget_end)
    except Exception as e:  # noqa: BLE001 -- a submission answers every question, whatever failed
        total = time.monotonic() - t0
        return [Answer(compose(q, None, None, escalated=False, student_latency_s=0.0, teacher_latency_s=0.0,
                               total_latency_s=total, errors=[_describe(e)]), request_failed=True) for q in qs]


def _answer(cascade: Cascade, qs: list[Question], t0: float, deadline: float,
            budget_end: float | None) -> list[Answer]:
    n = len(qs)
    errors: list[list[str]] = [[] for _ in qs]
    missed, asked = [False] * n, [False] * n
    s_fail, t_fail = [False] * n, [False] * n  # a request failed with time left (not a deadline miss)
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
                if teachers[i].error:
                    t_fail[i], missed[i] = _failed_or_late(now, deadline, missed[i])
            elif call.done:
                errors[i].append(f"teacher: {_describe(call.error)}")
                t_fail[i] = True
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
        # A pre-routing / two-stage router decides some questions before the student answers:
        # those sent to the teacher go first and skip the student (routers.policies.policy).
        first = cascade.first_decisions(qs) if full else [None] * n
        direct = [i for i in range(n) if first[i] == "teacher"]
        if direct:
            ask_teacher(direct)
        # the student still answers a pre-routed question the teacher did not, if time is left
        rest = [i for i in range(n) if first[i] != "teacher" or teachers[i] is None or teachers[i].error]
        call = call_with_timeout(lambda: cascade.run_student([qs[i] for i in rest], full=full,
                                                             kept=[first[i] is not None for i in rest]),
                                 deadline - time.monotonic())
        now = time.monotonic()
        failed = call.done and call.error is not None
        for k, i in enumerate(rest):
            s_lat[i], decided[i] = call.elapsed_s, now
            if call.done and call.error is None:
                students[i] = call.value[k]
                if students[i].error:
                    s_fail[i], missed[i] = _failed_or_late(now, deadline, missed[i])
            elif call.done:
                errors[i].append(f"student: {_describe(call.error)}")
                s_fail[i] = True
            else:
                missed[i] = True
                errors[i].append(f"student: no answer within the deadline (abandoned after {call.elapsed_s:.3f} s)")
        # a question the first stage kept escalates only when its student request failed (run_student)
        up = [i for i in rest if full and first[i] != "teacher"
              and (failed or (students[i] is not None and students[i].escalate))]
        if up:
            ask_teacher(up)
    else:
        for e in errors:
            e.append("no student to answer once the budget is spent")
        decided = [time.monotonic()] * n
    out = []
    for i, q in enumerate(qs):
        rec = compose(q, students[i], teachers[i], escalated=asked[i], student_latency_s=s_lat[i],
                      teacher_latency_s=t_lat[i], total_latency_s=decided[i] - t0, deadline_missed=missed[i],
                      budget_exhausted=exhausted[i], errors=errors[i])
        # Failed for good where it mattered: the teacher's answer was wanted and is not what stands,
        # or the student's was and nothing but the fallback stands.
        failed = (t_fail[i] and rec.routed_to != TEACHER) or (s_fail[i] and rec.routed_to == FALLBACK)
        out.append(Answer(rec, request_failed=failed))
    return out


def _failed_or_late(now: float, deadline: float, missed: bool) -> tuple[bool, bool]:
    """(failed, missed) for a request that came back with an error: a server request times out at
    the deadline (it is built with the deadline as its timeout), which is a miss, not a failure."""
    if now >= deadline - DEADLINE_MARGIN_S:
        return False, True
    return True, missed


def without_gold(qs: Sequence[Question]) -> list[Question]:
    """The questions as the cascade gets them: no gold answer, so nothing is graded in a timed call."""
    return [replace(q, answer="") for q in qs]


@dataclass(frozen=True)
class WarmUp:
    seconds: float
    error: str | None = None


def warm_up(cascade: Cascade, qs: Sequence[Question], *, batch_size: int, servers: bool,
            deadline_s: float, in_flight: int = 1) -> WarmUp:
    """One untimed call per model the submission will use, on its first batch (one question
    against a server); the answers are discarded. A failure or a call past max(WARMUP_MIN_S,
    5 deadlines) is reported and the submission goes on: the timed calls handle what follows.
    A server backend then opens the connections `in_flight` questions will use at once (their
    samples' too): at C 64 the first 64 questions, sent together, were 18-20 ms slower than the
    rest of a simulated submission."""
    batch = without_gold(qs[: 1 if servers else batch_size])
    calls: list[tuple[str, Callable[[], Any]]] = []
    if cascade.student is not None and cascade.mode != "accuracy":
        calls.append(("student", lambda: cascade.run_student(batch)))
    elif cascade.student is not None:  # accuracy mode: the student answers once the budget is spent
        calls.append(("student", lambda: cascade.run_student(batch, full=False)))
    if cascade.teacher is not None and cascade.mode != "speed":
        calls.append(("teacher", lambda: cascade.run_teacher(batch)))
    start = time.monotonic()
    limit = max(WARMUP_MIN_S, 5 * deadline_s)
    for name, fn in calls if batch else []:
        call = call_with_timeout(fn, limit)
        if not call.done:
            return WarmUp(time.monotonic() - start, f"{name}: warm-up abandoned after {limit:g} s")
        if call.error is not None:
            return WarmUp(time.monotonic() - start, f"{name}: {_describe(call.error)}")
    for backend, n in ((cascade.student, in_flight * cascade.student_settings.samples), (cascade.teacher, in_flight)):
        opener = getattr(backend, "open_connections", None)  # a server backend's
        if opener is not None and n > 1:
            opener(n)
    return WarmUp(time.monotonic() - start)
