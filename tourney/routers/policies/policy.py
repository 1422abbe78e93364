"""Routing policies: when a question is decided, and what each decision costs in time.

- cascade: the student answers (with the samples its score reads), the score decides, the
  teacher answers the questions escalated. Escalated: student time + teacher time; kept:
  student time.
- pre-routing: a question-only score (routers.fitting.gain fitted on question features and text)
  decides before anyone answers. Escalated: teacher time only; kept: the student's first sample.
- two-stage: the question-only score first sends the clearly hard questions (pre-score below
  `teacher_below`) straight to the teacher and keeps the clearly easy ones (at or above
  `student_from`) with the student's first sample; the cascade decides the rest.

Per question a policy gives a route (UP: teacher without the student, KEEP: student alone,
CASCADE) and two costs, `kept` and `up`, so that the figures of any threshold and the whole
accuracy / teacher-share / mean-latency curve come from the same prefix sums as a cascade's
(routers.evaluation.metrics.mean_curve). For curves, a two-stage policy ranks its UP questions first (by
pre-score), then the cascade's (by score), then its KEEP questions (by pre-score): sweeping a
threshold over that order gives the curve; the policy's own operating point is one point of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tourney.routers.fitting.gain import GainRouter

CASCADE, PRE, TWO_STAGE = "cascade", "pre-routing", "two-stage"
POLICIES = (CASCADE, PRE, TWO_STAGE)
ROUTE_CASCADE, ROUTE_UP, ROUTE_KEEP = 0, 1, 2
TEACHER, STUDENT = "teacher", "student"


@dataclass
class PreRouting:
    """The first stage of a two-stage policy: decisions from the question alone."""

    model: GainRouter  # question-only: its score is minus the expected gain, from the question
    teacher_below: float  # pre-score below this: straight to the teacher (-inf: never)
    student_from: float  # pre-score at or above this: the student alone (+inf: never)
    teacher_share: float = 0.0  # the dev fractions the two thresholds were set at
    student_share: float = 0.0

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        from tourney.routers.features.signals import PRIOR_FEATURES, question_features

        rows = [question_features(t) for t in texts]
        if self.model.prior is not None:
            for r, p in zip(rows, self.model.prior.accuracy(texts)):
                r.update({f: float(p) for f in PRIOR_FEATURES})
        return self.model.predict(rows, list(texts))

    def routes(self, texts: Sequence[str]) -> np.ndarray:
        return routes_of(self.scores(texts), self.teacher_below, self.student_from)

    def decide(self, text: str) -> str | None:
        """"teacher", "student", or None (the cascade decides)."""
        r = int(self.routes([text])[0])
        return TEACHER if r == ROUTE_UP else STUDENT if r == ROUTE_KEEP else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "teacher_below": self.teacher_below, "student_from": self.student_from,
                "teacher_share": self.teacher_share, "student_share": self.student_share}


def routes_of(pre_score: np.ndarray, teacher_below: float, student_from: float) -> np.ndarray:
    r = np.full(pre_score.size, ROUTE_CASCADE, dtype=int)
    r[pre_score < teacher_below] = ROUTE_UP
    r[(pre_score >= student_from) & (r == ROUTE_CASCADE)] = ROUTE_KEEP
    return r


def thresholds_for_shares(pre_score: np.ndarray, teacher_share: float, student_share: float) -> tuple[float, float]:
    """Pre-score thresholds that send the lowest `teacher_share` of the dev questions to the
    teacher and keep the highest `student_share` with the student (whole questions, ties whole)."""
    if teacher_share < 0 or student_share < 0 or teacher_share + student_share > 1:
        raise ValueError(f"pre-routed shares {teacher_share} + {student_share} must lie in [0, 1]")
    s = np.sort(pre_score)
    n = s.size
    k_up, k_keep = int(round(teacher_share * n)), int(round(student_share * n))
    below = -np.inf if k_up == 0 else float(s[k_up]) if k_up < n else np.inf
    start = np.inf if k_keep == 0 else float(s[n - k_keep])
    return below, max(start, below)


@dataclass
class PolicyView:
    """Per-question arrays of one policy on one set of questions."""

    name: str
    rank: np.ndarray  # the curve's order key: lower = escalated first
    route: np.ndarray  # ROUTE_* per question
    score: np.ndarray  # the cascade's score (meaningful where route is CASCADE)
    kept: np.ndarray  # latency per question when not escalated
    up: np.ndarray  # latency when escalated

    def sent(self, threshold: float) -> np.ndarray:
        """Escalated at one threshold of the cascade score."""
        return (self.route == ROUTE_UP) | ((self.route == ROUTE_CASCADE) & (self.score < threshold))


def composite_rank(route: np.ndarray, score: np.ndarray, pre_score: np.ndarray | None) -> np.ndarray:
    """UP questions first (lowest pre-score first), then the cascade's by score, then KEEP ones."""
    p = np.zeros(route.size) if pre_score is None else pre_score
    group = np.where(route == ROUTE_UP, 0, np.where(route == ROUTE_CASCADE, 1, 2))
    within = np.where(group == 1, score, p)
    within = np.where(np.isneginf(within), -np.finfo(float).max, within)  # -inf first in its group
    order = np.lexsort((within, group))
    rank = np.empty(route.size)
    rank[order] = np.arange(route.size, dtype=float)
    return rank


def policy_view(name: str, score: np.ndarray, *, student_first: np.ndarray, student_used: np.ndarray,
                teacher: np.ndarray, pre_score: np.ndarray | None = None,
                teacher_below: float = -np.inf, student_from: float = np.inf,
                unread: np.ndarray | None = None) -> PolicyView:
    """A policy's arrays from its scores and the recorded latencies (student's first sample,
    student's call as the score needs it, teacher's).

    `unread` marks questions whose student answer cannot be read: the cascade escalates them
    whatever the score (routers.runtime.cascade.unreadable), so their score is -inf; one a first stage
    kept with the student is escalated after its student sample (student's first sample plus
    the teacher). Under pre-routing they count as escalated up front (the teacher's time only:
    an approximation where the pre-score would have kept them)."""
    if unread is not None:
        unread = np.asarray(unread, dtype=bool)
        score = np.where(unread, -np.inf, score)
    # An unread answer is escalated at every threshold, -inf included (the cascade does not ask the
    # score): its route is decided, not left to the threshold. Its `up` stays the policy's own.
    decided = np.full(score.size, ROUTE_CASCADE, dtype=int) if unread is None else np.where(
        unread, ROUTE_UP, ROUTE_CASCADE)
    if name == CASCADE:
        return PolicyView(name, score, decided, score, student_used, student_used + teacher)
    if name == PRE:  # the score itself is question-only: every decision is made up front
        return PolicyView(name, score, decided, score, student_first, teacher)
    if name != TWO_STAGE or pre_score is None:
        raise ValueError(f"policy must be one of {POLICIES} (two-stage with a pre-score), got {name!r}")
    route = routes_of(pre_score, teacher_below, student_from)
    up = np.where(route == ROUTE_CASCADE, student_used + teacher, teacher)
    if unread is not None:  # kept by the first stage, then escalated: the cascade's -inf
        up = np.where(unread & (route == ROUTE_KEEP), student_first + teacher, up)
        route = np.where(unread & (route == ROUTE_KEEP), ROUTE_CASCADE, route)
    middle = route == ROUTE_CASCADE
    kept = np.where(middle, student_used, student_first)
    return PolicyView(name, composite_rank(route, score, pre_score), route, score, kept, up)
