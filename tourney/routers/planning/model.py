"""What `tourney submit` would do, replayed on recorded latencies: a discrete-event model of C
questions in flight against two servers that slow down with load.

It follows routers.runtime.submit / routers.runtime.deadline step by step, per question:
- the deadline counts from when a worker takes the question; every call gets the time left;
- speed: the student's first sample; accuracy: the teacher alone; balanced: the route the
  router gives (UP: the teacher without the student, KEEP: the student's first sample alone,
  CASCADE: the student's K samples, then the teacher if the score is below the threshold; the
  two calls add);
- a call still running at the deadline is abandoned: the student's answer stands when the
  teacher is late, the fallback when the student is (or, in accuracy mode, the teacher), and the
  question counts as a missed deadline; a teacher whose answer has no prediction leaves the
  student's answer (the fallback in accuracy mode or when the teacher was asked first); in
  balanced mode a student's answer without one is escalated to the teacher whatever its score
  (routers.runtime.cascade.unreadable), and otherwise leaves the fallback (routers.runtime.cascade.compose);
- the budget counts from the first question: a question taken once it is spent is answered by
  the student's first sample alone; a teacher call is cut at the budget's end as at a deadline
  (the student's answer stands, or, when the teacher was asked first, the student is asked with
  the time left before the deadline);
- C workers take the questions in order, each the next one the moment its last is decided.

The servers (a continuously batching server such as vLLM): a request's recorded latency is
split into a fixed part (its recorded time to first token) and a decoding part (the rest). With
n requests running on its server, decoding proceeds at 1 / slowdown(n) of its recorded speed,
slowdown(n) = 1 + slope * max(0, n - knee) (ServerLoad), so while the load changes the rate
changes with it (a fluid model, exact between events). An abandoned request keeps its server
busy until it finishes or until its own timeout (the deadline, counted from when it was sent:
routers.runtime.cascade.load_cascade builds server backends that way).

What it ignores: prefill getting slower with load and queueing for a free batch slot (the fixed
part never changes); the recorded latencies' own load (they are read as the latency at or below
the knee); preemption when the KV cache is full; the client's own overhead beyond what the dev
run recorded; a failed request (nothing fails here); batch_size > 1 (in-process models).
"""
from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Generator, Sequence

import numpy as np

SPEED, BALANCED, ACCURACY = "speed", "balanced", "accuracy"
# Balanced-mode routes per question: the teacher first; the student alone; the cascade, whose
# score keeps the question (CASCADE) or escalates it after the student's samples (CASCADE_UP).
UP, KEEP, CASCADE, CASCADE_UP = "up", "keep", "cascade", "cascade-up"
_EPS = 1e-9


@dataclass(frozen=True)
class ServerLoad:
    """How a server's decoding slows with the requests it runs at once."""

    knee: float = math.inf  # requests running before decoding slows (inf: never)
    slope: float = 0.0  # per request above the knee, the inter-token latency grows by this fraction

    def __post_init__(self) -> None:
        if not self.knee >= 0 or not (self.slope >= 0 and math.isfinite(self.slope)):
            raise ValueError(f"a server load needs knee >= 0 and a finite slope >= 0, got {self.knee}, {self.slope}")

    def slowdown(self, running: int) -> float:
        return 1.0 + self.slope * max(0.0, running - self.knee)


@dataclass(frozen=True)
class Call:
    """One recorded request: its time to first token (fixed) and its decoding time (slowed by load)."""

    fixed_s: float
    decode_s: float

    @staticmethod
    def of(latency_s: float, ttft_s: float | None) -> "Call":
        fixed = min(latency_s, ttft_s) if ttft_s is not None else 0.0
        return Call(fixed, latency_s - fixed)


@dataclass(frozen=True)
class PlanQuestion:
    """One dev question as the model replays it."""

    student: tuple[Call, ...]  # the student's samples, sample 0 first (K of them)
    teacher: Call
    student_correct: bool  # sample 0's answer
    teacher_correct: bool
    teacher_parsed: bool  # the teacher's output has a prediction (else the student's answer stands)
    fallback_correct: bool  # the fallback answer ("0" / "A") equals the gold one
    student_parsed: bool = True  # sample 0's output has a prediction (else the fallback stands)


@dataclass
class Outcome:
    """What happened to one question of the stream."""

    index: int  # into the dev questions
    correct: bool = False
    latency_s: float = 0.0
    missed: bool = False
    budget_exhausted: bool = False
    teacher_asked: bool = False
    answer_from: str = "fallback"


@dataclass
class SimResult:
    outcomes: list[Outcome]
    makespan_s: float  # from the first question's start to the last decision
    student_request_s: float  # time requests spent on each server (abandoned ones included)
    teacher_request_s: float


@dataclass
class _Request:
    fixed_left: float
    work_left: float
    sent: float
    close_at: float
    done: Callable[[float], None] | None
    server: "_Server"
    finished: bool = False


@dataclass
class _Server:
    load: ServerLoad
    active: list[_Request] = field(default_factory=list)
    busy_s: float = 0.0

    def time_to_finish(self, r: _Request) -> float:
        return r.fixed_left + r.work_left * self.load.slowdown(len(self.active))

    def advance(self, dt: float) -> None:
        f = self.load.slowdown(len(self.active))
        for r in self.active:
            step = min(dt, r.fixed_left)
            r.fixed_left -= step
            r.work_left = max(0.0, r.work_left - (dt - step) / f)

    def remove(self, r: _Request, now: float) -> None:
        if not r.finished:
            r.finished = True
            self.active.remove(r)
            self.busy_s += now - r.sent


class _Wait:
    """A model call: requests sent together; resumes the question when all are done or at `until`."""

    def __init__(self, server: _Server, calls: Sequence[Call], until: float) -> None:
        self.server, self.calls, self.until = server, list(calls), until


Question = Generator[_Wait, "tuple[bool, float]", None]


class Simulation:
    """The event loop: servers, timers and the questions' generators."""

    def __init__(self, student: ServerLoad, teacher: ServerLoad, timeout_s: float) -> None:
        self.student, self.teacher = _Server(student), _Server(teacher)
        self.timeout_s = timeout_s  # each request's own timeout, from when it is sent
        self.now = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (t, next(self._seq), fn))

    def start(self, gen: Question) -> None:
        self._step(gen, None)

    def _step(self, gen: Question, value: tuple[bool, float] | None) -> None:
        try:
            wait = gen.send(value) if value is not None else next(gen)
        except StopIteration:
            return
        if wait.until <= self.now + _EPS or not wait.calls:
            self.at(self.now, lambda: self._step(gen, (not wait.calls, self.now)))
            return
        pending = {"left": len(wait.calls), "over": False}

        def resume(done: bool) -> None:
            if not pending["over"]:
                pending["over"] = True
                self._step(gen, (done, self.now))

        def one_done(_: float) -> None:
            pending["left"] -= 1
            if pending["left"] == 0:
                resume(True)

        for c in wait.calls:
            r = _Request(c.fixed_s, c.decode_s, self.now, self.now + self.timeout_s, one_done, wait.server)
            wait.server.active.append(r)
            self.at(r.close_at, lambda r=r: self._close(r))
        self.at(wait.until, lambda: resume(False))

    def _close(self, r: _Request) -> None:
        if not r.finished:
            r.server.remove(r, self.now)

    def run(self) -> None:
        servers = (self.student, self.teacher)
        while True:
            nxt, who = math.inf, None
            for s in servers:
                for r in s.active:
                    t = self.now + s.time_to_finish(r)
                    if t < nxt:
                        nxt, who = t, r
            if self._timers and self._timers[0][0] <= nxt:
                t, _, fn = heapq.heappop(self._timers)
                self._advance(t)
                fn()
            elif who is not None:
                self._advance(nxt)
                who.server.remove(who, self.now)
                if who.done is not None:
                    who.done(self.now)
            else:
                return

    def _advance(self, t: float) -> None:
        dt = max(0.0, t - self.now)
        if dt > 0:
            for s in (self.student, self.teacher):
                s.advance(dt)
            self.now = t


def simulate(questions: Sequence[PlanQuestion], stream: Sequence[int], *, mode: str, routes: Sequence[str] | None,
             deadline_s: float, budget_s: float | None, concurrency: int,
             student_load: ServerLoad = ServerLoad(), teacher_load: ServerLoad = ServerLoad()) -> SimResult:
    """Replay a submission of the questions `stream` (indices into `questions`, in order) in one mode.
    `routes` (balanced mode): per dev question, UP, KEEP, CASCADE or CASCADE_UP."""
    if mode not in (SPEED, BALANCED, ACCURACY):
        raise ValueError(f"unknown mode {mode!r}")
    if mode == BALANCED and routes is None:
        raise ValueError("balanced mode needs each question's route")
    sim = Simulation(student_load, teacher_load, deadline_s)
    budget_end = math.inf if budget_s is None else budget_s
    outcomes = [Outcome(index=i) for i in stream]
    queue = iter(range(len(stream)))
    last = {"t": 0.0}

    def question(k: int) -> Question:
        o = outcomes[k]
        q = questions[o.index]
        t0 = sim.now
        deadline = t0 + deadline_s
        teacher_end = min(deadline, budget_end)
        budget_first = budget_end < deadline
        s_ans = t_ans = False  # an answer came back in time
        o.budget_exhausted = t0 >= budget_end

        def teacher_call() -> Generator[_Wait, tuple[bool, float], bool]:
            nonlocal t_ans
            if teacher_end - sim.now <= _EPS:
                o.budget_exhausted, o.missed = (True, o.missed) if budget_first else (o.budget_exhausted, True)
                return False
            o.teacher_asked = True
            done, _ = yield _Wait(sim.teacher, [q.teacher], teacher_end)
            if done:
                t_ans = True
            elif budget_first:
                o.budget_exhausted = True
            else:
                o.missed = True
            return done

        def student_call(k_samples: int) -> Generator[_Wait, tuple[bool, float], bool]:
            nonlocal s_ans
            done, _ = yield _Wait(sim.student, q.student[:k_samples], deadline)
            s_ans = done
            if not done:
                o.missed = True
            return done

        route = routes[o.index] if routes is not None else None
        if mode == ACCURACY and not o.budget_exhausted:
            yield from teacher_call()
        elif mode == BALANCED and not o.budget_exhausted and route == UP:
            done = yield from teacher_call()
            if not done:  # the student still answers if time is left before the deadline
                yield from student_call(1)
        elif mode == BALANCED and not o.budget_exhausted and route in (CASCADE, CASCADE_UP):
            # an answer the grader cannot read goes to the teacher whatever its score
            # (routers.runtime.cascade.unreadable)
            if (yield from student_call(len(q.student))) and (route == CASCADE_UP or not q.student_parsed):
                yield from teacher_call()
        elif mode == BALANCED and not o.budget_exhausted:  # KEEP: the first stage kept the student
            if (yield from student_call(1)) and not q.student_parsed:
                yield from teacher_call()
        else:  # speed mode, or the budget spent: the student's first sample
            yield from student_call(1)
        o.latency_s = sim.now - t0
        if t_ans and q.teacher_parsed:
            o.correct, o.answer_from = q.teacher_correct, "teacher"
        elif s_ans and q.student_parsed:
            o.correct, o.answer_from = q.student_correct, "student"
        else:
            o.correct, o.answer_from = q.fallback_correct, "fallback"
        last["t"] = max(last["t"], sim.now)
        nxt = next(queue, None)
        if nxt is not None:
            sim.start(question(nxt))

    for _ in range(min(concurrency, len(stream))):
        sim.start(question(next(queue)))
    sim.run()
    return SimResult(outcomes, last["t"], sim.student.busy_s, sim.teacher.busy_s)



def stream_of(n_dev: int, n: int, seed: int = 0) -> np.ndarray:
    """The dev questions a plan of n questions replays: the dev order first, then seeded
    permutations of it until n (a plan of fewer questions than dev takes the first n)."""
    rng = np.random.default_rng(seed)
    parts, total = [np.arange(n_dev)], n_dev
    while total < n:
        parts.append(rng.permutation(n_dev))
        total += n_dev
    return np.concatenate(parts)[:n]
