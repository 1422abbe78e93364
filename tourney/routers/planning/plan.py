"""`tourney route plan`: which mode (and threshold) to submit in, from dev runs of the pair.

For a deadline, a budget, a question count and a concurrency, every mode is replayed on the dev
runs' recorded answers and latencies by routers.plan_model (what `tourney submit` does, step by
step, with C questions in flight against servers that slow with load; its doc says what it
ignores): speed, accuracy, and with a ROUTER.json the balanced mode at the router's own threshold
and at the thresholds that send 0%, 10%, ..., 100% of the dev questions to the teacher.

Per option: accuracy with a 95% interval (a bootstrap over the dev questions: the uncertainty of
a plan is that of the questions it was made from, however many times a long plan replays them),
p50/p95 latency, the share of missed deadlines and of budget-limited answers, the teacher share
(questions whose teacher was asked) and request-seconds per 1,000 questions on each server (the
time requests spent on it, abandoned ones included: what a shared server is busy with).

The recommendation: among the options with at most 1% missed deadlines and no question answered
after the budget was spent, the most accurate (`best`), or the cheapest in request-seconds within
1 point of that accuracy (`cheapest`); none when no option meets the constraint.

A plan of N questions replays the dev questions in their order, then seeded permutations of
them, so a budget and a load are felt over N questions; accuracy is then each dev question's
mean outcome, weighted by how often it is replayed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tourney.errors import ConfigError
from tourney.harness.jsonl import json_safe
from tourney.harness.metrics import percentile
from tourney.harness.scoring import numbers_equal
from tourney.harness.types import DataError
from tourney.routers.runtime.cascade import FALLBACK_CHOICE, FALLBACK_NUMBER
from tourney.routers.planning.model import (
    ACCURACY, BALANCED, CASCADE, CASCADE_UP, KEEP, SPEED, UP, Call, PlanQuestion, ServerLoad, SimResult, simulate,
    stream_of,
)
from tourney.routers.runtime.submit import MAX_BUDGET_S, MAX_DEADLINE_MS, SERVER_CONCURRENCY

MAX_MISSED = 0.01  # the constraint: at most this share of missed deadlines
WITHIN = 0.01  # `cheapest`: within this much accuracy of the best
SHARES = tuple(round(0.1 * k, 1) for k in range(11))  # the balanced mode's threshold grid
BOOTSTRAP = 1000


class PlanConfig(BaseModel):
    """Everything one `tourney route plan` depends on."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    student: str = Field(min_length=1)  # dev student run directory
    teacher: str = Field(min_length=1)  # dev teacher run directory (same questions)
    router: str | None = None  # ROUTER.json: adds the balanced mode
    deadline_ms: float = Field(gt=0, le=MAX_DEADLINE_MS)  # per question, from when it is sent
    budget_s: float | None = Field(None, gt=0, le=MAX_BUDGET_S)  # the whole submission; None: unlimited
    questions: int | None = Field(None, ge=1, le=10_000_000)  # None: as many as the dev runs hold
    concurrency: int = Field(SERVER_CONCURRENCY, ge=1, le=100_000)  # questions in flight
    objective: Literal["best", "cheapest"] = "best"
    student_load: str | None = None  # "KNEE:SLOPE" (plan_model.ServerLoad); None: never slows
    teacher_load: str | None = None
    seed: int = 0

    @field_validator("student_load", "teacher_load")
    @classmethod
    def _load_ok(cls, v: str | None) -> str | None:
        if v is not None:
            parse_load(v)
        return v


def parse_load(text: str | None) -> ServerLoad:
    """"KNEE:SLOPE" (e.g. "16:0.02": above 16 running requests each one more adds 2% to the
    inter-token latency) to a ServerLoad; None: a server that never slows."""
    if text is None:
        return ServerLoad()
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        knee, slope = float(parts[0]), float(parts[1])
        return ServerLoad(knee, slope)
    except ValueError:
        raise ValueError(f"expected KNEE:SLOPE with KNEE >= 0 and a finite SLOPE >= 0 (e.g. 16:0.02), got {text!r}") from None


@dataclass(frozen=True)
class PlanOption:
    """One mode (and threshold) as planned."""

    mode: str
    label: str  # "speed", "accuracy", "balanced router", "balanced share 0.3"
    threshold: float | None
    dev_share: float | None  # the dev teacher share the threshold was set at (None: the router's own)
    accuracy: float
    ci95: tuple[float, float]
    latency_p50_s: float
    latency_p95_s: float
    missed_share: float
    budget_share: float  # answered student-alone because the budget was spent
    teacher_share: float  # the teacher was asked
    student_s_per_1k: float  # request-seconds on each server per 1,000 questions
    teacher_s_per_1k: float
    makespan_s: float  # wall-clock seconds for the whole submission
    feasible: bool  # missed <= 1% and nothing budget-limited
    # 95% interval of the missed share, as ci95 (the dev questions resampled): where the deadline
    # falls inside the bulk of the latencies, which questions were drawn moves it by points
    missed_ci95: tuple[float, float] = (0.0, 0.0)

    @property
    def model_s_per_1k(self) -> float:
        return self.student_s_per_1k + self.teacher_s_per_1k


@dataclass
class Plan:
    config: dict[str, Any]
    dev_questions: int
    samples: int  # the student's samples per question in the balanced cascade
    options: list[PlanOption]
    recommended: int | None  # index into options
    reason: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, floats unrounded (a threshold must reproduce its routes): an infinite
        threshold (everything escalated) is the string "inf"."""
        return json_safe(self._dict(), None, "string")

    def _dict(self) -> dict[str, Any]:
        return {"config": self.config, "dev_questions": self.dev_questions, "samples": self.samples,
                "options": [{**asdict(o), "model_s_per_1k": o.model_s_per_1k} for o in self.options],
                "recommended": None if self.recommended is None else self.options[self.recommended].label,
                "reason": self.reason, "notes": self.notes}


# -- the dev runs --------------------------------------------------------------------------

@dataclass
class DevPair:
    questions: list[PlanQuestion]
    ids: list[str]
    data: Any  # routers.evaluation.rundata.RoutingData


def load_pair(student: str | Path, teacher: str | Path) -> DevPair:
    """The dev runs as plan questions; runs of different questions, or without latencies, are
    one-line errors."""
    from tourney.routers.evaluation.rundata import read_run_rows, routing_data

    data = routing_data(student, teacher)
    t_rows = read_run_rows(teacher)
    for run, lat in ((student, data.student_latency_first), (teacher, data.teacher_latency)):
        if data.n and not np.any(lat > 0):
            raise DataError(f"{run}: no latencies recorded (every row's latency_s is 0, as in a replay: run); "
                            "a plan needs the dev runs' real latencies")
    if data.n == 0:
        raise DataError(f"{student}: the run holds no questions")
    qs = []
    for i, qid in enumerate(data.ids):
        s_rows, t = data.student_rows[i], t_rows[qid][0]
        gold = s_rows[0].gold.strip()
        qs.append(PlanQuestion(
            student=tuple(Call.of(r.latency_s, r.ttft_s) for r in s_rows), teacher=Call.of(t.latency_s, t.ttft_s),
            student_correct=bool(data.student_correct[i]), teacher_correct=bool(data.teacher_correct[i]),
            teacher_parsed=t.prediction is not None and t.error is None,
            fallback_correct=gold.upper() == FALLBACK_CHOICE or _zero(gold),
            student_parsed=s_rows[0].prediction is not None and s_rows[0].error is None))
    return DevPair(qs, list(data.ids), data)


def _zero(gold: str) -> bool:
    """Whether the numeric fallback is right (a letter gold never equals a number)."""
    return numbers_equal(FALLBACK_NUMBER, gold)


# -- planning ------------------------------------------------------------------------------

def balanced_grid(pair: DevPair, router_path: str) -> tuple[list[tuple[str, float, float | None, list[str]]], int]:
    """(label, threshold, dev share, route per dev question) for the router's own threshold and
    the share grid; and the student's samples per question in the cascade."""
    from tourney.routers.runtime.bundle import RouterBundle
    from tourney.routers.policies.policy import PRE, ROUTE_KEEP, ROUTE_UP
    from tourney.routers.policies.thresholds import threshold_for_teacher_share

    bundle = RouterBundle.load(router_path)
    router = bundle.router
    have = min(len(r) for r in pair.data.student_rows)
    k = bundle.student.samples if bundle.student is not None else have
    if k > have:
        raise DataError(f"{router_path}: the router's student draws {k} samples per question, but "
                        f"{pair.data.student_run} holds {have} for some question; evaluate the dev run with --samples {k}")
    view = pair.data.policy_view(router)
    score, route = view.score, view.route
    # The view counts an unread student answer as escalated (route UP, score -inf), which is what
    # the teacher share needs; but at run time the student is asked first and its answer read
    # before the cascade escalates it (routers.runtime.cascade.unreadable): the student's call,
    # then the teacher's. Only a first stage's (pre-routing's) UP skips the student. Pre-routing
    # decides on the question-only score (scored again without the unread rule: PRE only).
    question_score = pair.data.router_confidence(router, unread_first=False) if router.policy == PRE else score

    def routes(thr: float) -> list[str]:
        below = score < thr
        if router.policy == PRE:  # an unread answer the first stage kept then escalates
            return [UP if b else KEEP for b in question_score < thr]
        if router.pre is None:  # a cascade: every question's student answers first
            return [CASCADE_UP if b else CASCADE for b in below]
        return [UP if r == ROUTE_UP else KEEP if r == ROUTE_KEEP else CASCADE_UP if b else CASCADE
                for r, b in zip(route, below)]

    grid = [("balanced router", router.threshold, None, routes(router.threshold))]
    seen = {router.threshold}
    for share in SHARES:
        thr = threshold_for_teacher_share(score, share, route=route if router.pre is not None else None)
        if thr not in seen:
            seen.add(thr)
            grid.append((f"balanced share {share:.1f}", thr, share, routes(thr)))
    return grid, k


def _option(mode: str, label: str, thr: float | None, share: float | None, res: SimResult, n_dev: int, seed: int) -> PlanOption:
    n = len(res.outcomes)
    correct = np.array([o.correct for o in res.outcomes], dtype=float)
    idx = np.array([o.index for o in res.outcomes])
    lat = [o.latency_s for o in res.outcomes]
    missed_flags = np.array([o.missed for o in res.outcomes], dtype=float)
    missed = float(missed_flags.mean())
    budget = sum(o.budget_exhausted for o in res.outcomes) / n
    return PlanOption(
        mode=mode, label=label, threshold=thr, dev_share=share, accuracy=float(correct.mean()),
        ci95=bootstrap_ci(correct, idx, n_dev, seed), latency_p50_s=float(percentile(lat, 50)),
        latency_p95_s=float(percentile(lat, 95)), missed_share=missed, budget_share=budget,
        teacher_share=sum(o.teacher_asked for o in res.outcomes) / n,
        student_s_per_1k=res.student_request_s / n * 1000, teacher_s_per_1k=res.teacher_request_s / n * 1000,
        makespan_s=res.makespan_s, feasible=missed <= MAX_MISSED + 1e-12 and budget == 0,
        missed_ci95=bootstrap_ci(missed_flags, idx, n_dev, seed))


def bootstrap_ci(correct: np.ndarray, index: np.ndarray, n_dev: int, seed: int) -> tuple[float, float]:
    """95% interval of a share (accuracy, missed deadlines), resampling the dev questions (each
    question's mean outcome over its replays, weighted by how often it is replayed)."""
    counts = np.bincount(index, minlength=n_dev).astype(float)
    sums = np.bincount(index, weights=correct, minlength=n_dev)
    used = np.flatnonzero(counts)
    if used.size < 2:
        v = float(correct.mean())
        return (v, v)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, used.size, size=(BOOTSTRAP, used.size))
    picked = used[draw]
    acc = sums[picked].sum(axis=1) / counts[picked].sum(axis=1)
    lo, hi = np.percentile(acc, [2.5, 97.5])
    return (float(lo), float(hi))


def recommend(options: Sequence[PlanOption], objective: str) -> tuple[int | None, str]:
    """The option to submit with, and why (module doc)."""
    ok = [i for i, o in enumerate(options) if o.feasible]
    if not ok:
        fewest = min(range(len(options)), key=lambda i: (options[i].missed_share, options[i].budget_share))
        o = options[fewest]
        return None, (f"no option keeps missed deadlines <= {MAX_MISSED:.0%} within the budget; the closest is "
                      f"{o.label} ({o.missed_share:.1%} missed, {o.budget_share:.1%} budget-limited): raise the "
                      "deadline or the budget, or lower the concurrency")
    best = max(ok, key=lambda i: (options[i].accuracy, -options[i].model_s_per_1k))
    if objective == "best":
        return best, (f"the most accurate option with <= {MAX_MISSED:.0%} missed deadlines within the budget")
    near = [i for i in ok if options[i].accuracy >= options[best].accuracy - WITHIN - 1e-12]
    cheap = min(near, key=lambda i: (options[i].model_s_per_1k, -options[i].accuracy))
    return cheap, (f"the cheapest option (request-seconds) within {WITHIN * 100:.0f} point of the best "
                   f"({options[best].label}, {options[best].accuracy:.1%}) with <= {MAX_MISSED:.0%} missed "
                   "deadlines within the budget")


def make_plan(cfg: PlanConfig) -> Plan:
    pair = load_pair(cfg.student, cfg.teacher)
    n_dev = len(pair.questions)
    n = cfg.questions or n_dev
    stream = stream_of(n_dev, n, cfg.seed)
    kw = dict(deadline_s=cfg.deadline_ms / 1000.0, budget_s=cfg.budget_s, concurrency=cfg.concurrency,
              student_load=parse_load(cfg.student_load), teacher_load=parse_load(cfg.teacher_load))
    options = []
    for mode in (SPEED, ACCURACY):
        res = simulate(pair.questions, stream, mode=mode, routes=None, **kw)
        options.append(_option(mode, mode, None, None, res, n_dev, cfg.seed))
    samples = 1
    if cfg.router:
        grid, samples = balanced_grid(pair, cfg.router)
        for label, thr, share, routes in grid:
            # The cascade draws the router's K samples, not all the run holds.
            qs = [replace(q, student=q.student[:samples]) for q in pair.questions]
            res = simulate(qs, stream, mode=BALANCED, routes=routes, **kw)
            options.append(_option(BALANCED, label, thr, share, res, n_dev, cfg.seed))
    rec, reason = recommend(options, cfg.objective)
    notes = []
    if n > n_dev:
        notes.append(f"{n} questions replay the {n_dev} dev questions (intervals are those of {n_dev} questions)")
    if cfg.student_load is None and cfg.teacher_load is None:
        notes.append("no --student-load/--teacher-load: latencies stay as recorded at every concurrency "
                     "(a server below its knee)")
    return Plan(config=cfg.model_dump(), dev_questions=n_dev, samples=samples, options=options, recommended=rec,
                reason=reason, notes=notes)


def check_plan_config(**options: Any) -> PlanConfig:
    from tourney.schema import parse_option

    try:
        return parse_option(PlanConfig, options, "route plan")
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
