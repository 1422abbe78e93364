"""Choose a threshold on a development set for a teacher share, an accuracy or a latency budget.

A question goes to the teacher when `score < threshold`. Every function scans the thresholds that
change the outcome (metrics.threshold_candidates: one per reachable teacher share, questions of
equal score always escalated together) and returns one of them, so the dev-set figures quoted
with it are exactly what it does on the dev set. Only the questions' ranking matters, so any
score works: a probability, a logprob, a count, minus an expected gain.

`route` (routers.policies.policy) marks questions a policy decides before the threshold can: ROUTE_UP
ones always go to the teacher, ROUTE_KEEP ones never; the threshold then moves over the rest,
and every figure is over all questions. `kept` / `up` are per-question latencies when kept and
when escalated (a cascade: student, and student + teacher).

Ties: a threshold cannot split questions of equal score, and discrete signals tie a lot (five
samples that all agree), so a teacher-share target inside a tie would be unreachable.
`split_ties` adds TIE_EPS times a number in [0, 1) drawn from a hash of the question text to every
score: tied questions are then ordered arbitrarily but reproducibly (the same question always
gets the same nudge, on dev, held-out and in `tourney submit`), and questions whose scores
differ by more than TIE_EPS keep their order.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from tourney.errors import ConfigError
from tourney.routers.evaluation.metrics import EPS, ArrayLike, as_arrays, mean_curve, threshold_candidates
from tourney.routers.policies.policy import ROUTE_CASCADE, ROUTE_KEEP, ROUTE_UP

LATENCY_STATS = ("mean", "p95")
TIE_EPS = 1e-9  # below any gap between scores that means something, above float resolution


def tie_jitter(question: str) -> float:
    """A number in [0, 1) fixed by the question text (see the module doc on ties)."""
    return int.from_bytes(hashlib.sha256(question.encode("utf-8", "surrogatepass")).digest()[:8], "big") / 2.0 ** 64


def split_ties(conf: ArrayLike, questions: Sequence[str]) -> np.ndarray:
    """Scores nudged by each question's jitter; -inf and NaN stay as they are."""
    (c,) = as_arrays(conf)
    if len(questions) != c.size:
        raise ValueError(f"{len(questions)} question texts for {c.size} confidences")
    jitter = np.array([tie_jitter(q) for q in questions])
    return np.where(np.isfinite(c), c + TIE_EPS * jitter, c)


class _Sweep:
    """The thresholds over the questions the threshold decides, and sums over the others."""

    def __init__(self, conf: ArrayLike, route: ArrayLike | None) -> None:
        (self.c,) = as_arrays(conf)
        self.n = self.c.size
        self.route = np.zeros(self.n, dtype=int) if route is None else np.asarray(route, dtype=int)
        if self.route.shape != self.c.shape:
            raise ValueError(f"{self.route.size} routes for {self.n} scores")
        self.mid = self.route == ROUTE_CASCADE
        self.forced_up = self.route == ROUTE_UP
        self.forced_keep = self.route == ROUTE_KEEP
        if self.mid.any():
            self.order, self.counts, self.thresholds = threshold_candidates(self.c[self.mid])
        else:  # nothing left for the threshold to decide: one outcome, any threshold
            self.order, self.counts, self.thresholds = np.zeros(0, int), np.zeros(1, int), np.array([np.inf])

    def shares(self) -> np.ndarray:
        return (self.forced_up.sum() + self.counts) / self.n

    def means(self, kept: np.ndarray, up: np.ndarray) -> np.ndarray:
        """Mean over all questions of `up` where escalated, `kept` elsewhere, per threshold."""
        fixed = up[self.forced_up].sum() + kept[self.forced_keep].sum()
        if not self.mid.any():
            return np.array([fixed / self.n])
        k, u = kept[self.mid], up[self.mid]
        return (fixed + mean_curve(self.order, self.counts, k, u) * k.size) / self.n

    def values(self, i: int, kept: np.ndarray, up: np.ndarray) -> np.ndarray:
        """Per-question values at candidate i."""
        sent = self.forced_up.copy()
        idx = np.flatnonzero(self.mid)[self.order[: self.counts[i]]]
        sent[idx] = True
        return np.where(sent, up, kept)


def threshold_for_teacher_share(conf: ArrayLike, share: float, *, route: ArrayLike | None = None) -> float:
    """The threshold that escalates the reachable teacher share nearest to `share`.

    The quantile, made exact: with distinct scores it escalates share * n questions, rounded to
    the nearest whole question (a half rounds down). Ties cannot be split by a threshold, so a
    tie group straddling the quantile goes wholly to whichever side gives the share nearest the
    target; when both sides are equally near, the smaller share wins (fewer teacher calls).
    """
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"teacher share must be in [0, 1], got {share}")
    sweep = _Sweep(conf, route)
    dist = np.round(np.abs(sweep.shares() - share), 12)  # rounded so float noise cannot decide
    return float(sweep.thresholds[int(np.argmin(dist))])  # argmin takes the first: the smallest share


def threshold_for_accuracy(conf: ArrayLike, student_correct: ArrayLike, teacher_correct: ArrayLike,
                           target: float, *, relative: bool = False, route: ArrayLike | None = None) -> float:
    """The threshold with the smallest teacher share whose accuracy is >= target.

    relative=True reads `target` as a fraction of the teacher's accuracy (0.99: "99% of the
    teacher"). Accuracy need not rise with the share (escalating a question the student got right
    and the teacher got wrong lowers it); the first share to reach the target is returned.
    Raises ConfigError when no share reaches it, naming the best that can be done.
    """
    c, s, t = as_arrays(conf, student_correct, teacher_correct)
    if target < 0 or (not relative and target > 1):
        raise ConfigError(f"accuracy target must be in [0, 1], got {target}")
    goal = target * float(t.mean()) if relative else target
    sweep = _Sweep(c, route)
    acc = sweep.means(s, t)
    ok = np.flatnonzero(acc >= goal - EPS)
    if ok.size == 0:
        best = int(np.argmax(acc))
        raise ConfigError(f"accuracy target {goal:.4f} is out of reach on this dev set: the best "
                         f"accuracy is {acc[best]:.4f}, at teacher share {sweep.shares()[best]:.3f}")
    return float(sweep.thresholds[ok[0]])


def threshold_for_latency(conf: ArrayLike, student_latency: ArrayLike | None, teacher_latency: ArrayLike | None,
                          budget: float, stat: str = "mean", *, kept: ArrayLike | None = None,
                          up: ArrayLike | None = None, route: ArrayLike | None = None) -> float:
    """The threshold with the largest teacher share whose latency stays within `budget`.

    Per question a cascade always pays the student (it answers first, and its score decides) and
    adds the teacher when the question is escalated; a policy that decides some questions up
    front gives its own `kept` and `up` latencies. `stat` is "mean" or "p95" (linear
    interpolation, as harness.metrics.percentile). Both grow with the share when escalating adds
    time, so the largest share within budget is the most accurate choice the budget allows.
    Raises ConfigError when even the smallest share exceeds the budget.
    """
    if stat not in LATENCY_STATS:
        raise ValueError(f"stat must be one of {LATENCY_STATS}, got {stat!r}")
    if kept is None or up is None:
        c, sl, tl = as_arrays(conf, student_latency, teacher_latency)
        if (sl < 0).any() or (tl < 0).any():
            raise ValueError("latencies must be >= 0")
        kept_a, up_a = sl, sl + tl
    else:
        c, kept_a, up_a = as_arrays(conf, kept, up)
        if (kept_a < 0).any() or (up_a < 0).any():
            raise ValueError("latencies must be >= 0")
    sweep = _Sweep(c, route)
    if stat == "mean":
        lat = sweep.means(kept_a, up_a)
    else:
        lat = np.array([np.percentile(sweep.values(i, kept_a, up_a), 95) for i in range(sweep.counts.size)])
    ok = np.flatnonzero(lat <= budget + EPS)
    if ok.size == 0:
        raise ConfigError(f"latency budget {budget} s is below the smallest {stat} latency this router can "
                         f"reach ({lat.min():.4f} s, the student's own when nothing is escalated)")
    return float(sweep.thresholds[ok[-1]])
