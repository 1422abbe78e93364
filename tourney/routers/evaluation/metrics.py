"""Routing metrics from per-question arrays: pure functions, no I/O.

Inputs are aligned arrays, one entry per question: `conf` (the router's confidence), whether the
student and the teacher answered it correctly, and optionally their latencies. The cascade sends
a question to the teacher when `conf < threshold`, so raising the threshold escalates the
lowest-confidence questions first.

Ties: questions with equal confidence cross any threshold together, so the curve has a point only
at the shares a threshold can reach (0, each boundary between distinct confidences, 1) and is a
straight line between them, which is the expected accuracy of breaking the tie at random. Areas
and crossings read the curve as that piecewise-linear function.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

from tourney.harness.metrics import percentile

ArrayLike = Sequence[float] | Sequence[bool] | np.ndarray
EPS = 1e-12  # float slack when comparing a curve with a target, so 0.1 + 0.2 reaches 0.3


class CurvePoint(NamedTuple):
    teacher_share: float  # fraction of questions sent to the teacher
    accuracy: float  # cascade accuracy at that share


@dataclass
class CascadeFigures:
    """What a cascade with one threshold does on one set of questions."""

    n: int
    teacher_share: float
    accuracy: float
    latency_mean_s: float | None = None  # None when latencies were not given
    latency_p95_s: float | None = None


def as_arrays(conf: ArrayLike, *others: ArrayLike | None) -> tuple[np.ndarray, ...]:
    """Float arrays of one common, non-zero length; `conf` may hold ±inf but never NaN."""
    c = np.asarray(conf, dtype=float)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"confidence must be a non-empty 1-D array, got shape {c.shape}")
    if np.isnan(c).any():
        raise ValueError(f"confidence of question {int(np.flatnonzero(np.isnan(c))[0])} is NaN")
    out = [c]
    for i, other in enumerate(others):
        if other is None:
            out.append(None)  # type: ignore[arg-type]
            continue
        a = np.asarray(other, dtype=float)
        if a.shape != c.shape:
            raise ValueError(f"array {i + 2} has shape {a.shape}, confidence has {c.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"array {i + 2} holds a NaN or infinite value")
        out.append(a)
    return tuple(out)


def threshold_candidates(conf: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, counts, thresholds): questions by ascending confidence (stable), every number of
    questions a threshold can escalate, and for each count the threshold that escalates exactly
    that many (the next confidence up; +inf to escalate all)."""
    (c,) = as_arrays(conf)
    order = np.argsort(c, kind="stable")
    s = c[order]
    boundaries = np.flatnonzero(s[1:] > s[:-1]) + 1
    counts = np.concatenate([[0], boundaries, [c.size]]).astype(int)
    thresholds = np.append(s, math.inf)[counts]
    return order, counts, thresholds


def mean_curve(order: np.ndarray, counts: np.ndarray, kept: np.ndarray, sent: np.ndarray) -> np.ndarray:
    """Mean per-question value when the first `count` questions of `order` take `sent` and the
    rest `kept`, for each count; prefix sums, so O(n) for all thresholds."""
    k, t = kept[order], sent[order]
    k_cum = np.concatenate([[0.0], np.cumsum(k)])
    t_cum = np.concatenate([[0.0], np.cumsum(t)])
    return (t_cum[counts] + k_cum[-1] - k_cum[counts]) / kept.size


def routing_curve(conf: ArrayLike, s_correct: ArrayLike, t_correct: ArrayLike) -> list[CurvePoint]:
    """Cascade accuracy at every reachable teacher share, from 0 to 1 inclusive."""
    c, s, t = as_arrays(conf, s_correct, t_correct)
    order, counts, _ = threshold_candidates(c)
    acc = mean_curve(order, counts, s, t)
    return [CurvePoint(n / c.size, float(a)) for n, a in zip(counts, acc)]


def random_router_curve(s_correct: ArrayLike, t_correct: ArrayLike) -> list[CurvePoint]:
    """Expected accuracy of escalating k random questions, k = 0..n: a straight line from the
    student's accuracy to the teacher's (each question is escalated with probability k/n)."""
    _, s, t = as_arrays(np.zeros(len(s_correct)), s_correct, t_correct)
    sa, ta, n = float(s.mean()), float(t.mean()), s.size
    return [CurvePoint(k / n, sa + k / n * (ta - sa)) for k in range(n + 1)]


def oracle_curve(s_correct: ArrayLike, t_correct: ArrayLike) -> list[CurvePoint]:
    """The best any router can do, k = 0..n: escalate student-wrong-teacher-right questions
    first, then those where both agree, and student-right-teacher-wrong ones last."""
    _, s, t = as_arrays(np.zeros(len(s_correct)), s_correct, t_correct)
    gain = np.sort(t - s, kind="stable")[::-1]  # sorted gains: every prefix sum is the largest
    acc = (s.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / s.size
    return [CurvePoint(k / s.size, float(a)) for k, a in enumerate(acc)]


def _xy(curve: Sequence[CurvePoint]) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([p[0] for p in curve], dtype=float)
    y = np.array([p[1] for p in curve], dtype=float)
    if x.size < 2 or x[0] != 0.0 or x[-1] != 1.0 or (np.diff(x) < 0).any():
        raise ValueError("a routing curve must run over teacher share from 0 to 1, ascending")
    return x, y


def apgr(curve: Sequence[CurvePoint], student_acc: float, teacher_acc: float) -> float:
    """Average performance gap recovered: (AUC - student_acc) / (teacher_acc - student_acc), with
    AUC the trapezoid area under accuracy over teacher share in [0, 1].

    A random router's expected curve is the straight line between the two accuracies, so it
    scores 0.5 exactly; a perfect ranking scores more (it can exceed 1 when the cascade beats
    the teacher). NaN when the two models are equally accurate (no gap to recover). When the
    teacher is the weaker model the gap is negative and so is the scale: compare routers by AUC
    (apgr(curve, 0, 1)) there.
    """
    x, y = _xy(curve)
    gap = teacher_acc - student_acc
    if gap == 0:
        return math.nan
    auc = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))
    return (auc - student_acc) / gap


def cpt(curve: Sequence[CurvePoint], student_acc: float, teacher_acc: float, fraction: float) -> float:
    """Call-performance threshold: the smallest teacher share at which the (piecewise-linear)
    curve reaches student_acc + fraction * (teacher_acc - student_acc). CPT(0.5) and CPT(0.8)
    are the usual ones. 0 when the teacher is no better; NaN when the curve never gets there."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    x, y = _xy(curve)
    goal = student_acc + fraction * (teacher_acc - student_acc)
    if y[0] >= goal - EPS:
        return float(x[0])
    for i in range(1, x.size):
        if y[i] >= goal - EPS:  # the first crossing lies on segment (i-1, i): y[i-1] < goal
            frac = min(1.0, (goal - y[i - 1]) / (y[i] - y[i - 1]))
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return math.nan


def auroc(conf: ArrayLike, s_correct: ArrayLike) -> float:
    """P(a question the student got right has higher confidence than one it got wrong), ties
    counting one half: the Mann-Whitney U statistic over average ranks. NaN without both kinds."""
    c, s = as_arrays(conf, s_correct)
    pos = s > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(c, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    ranks = (ends - (counts - 1) / 2)[inverse]  # a tie group shares its average rank
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def figures_of(sent: ArrayLike, s_correct: ArrayLike, t_correct: ArrayLike,
               kept: ArrayLike | None = None, up: ArrayLike | None = None) -> CascadeFigures:
    """Teacher share, accuracy and (with per-question latencies when kept / when escalated)
    latency of one set of routing decisions (`sent`: escalated)."""
    _, s, t, k, u = as_arrays(np.zeros(len(s_correct)), s_correct, t_correct, kept, up)
    sent_a = np.asarray(sent, dtype=bool)
    if sent_a.shape != s.shape:
        raise ValueError(f"{sent_a.size} decisions for {s.size} questions")
    fig = CascadeFigures(n=s.size, teacher_share=float(sent_a.mean()), accuracy=float(np.where(sent_a, t, s).mean()))
    if (k is None) != (u is None):
        raise ValueError("give latencies both when kept and when escalated, or neither")
    if k is not None:
        lat = np.where(sent_a, u, k)
        fig.latency_mean_s = float(lat.mean())
        fig.latency_p95_s = percentile(lat.tolist(), 95)
    return fig


def cascade_figures(
    conf: ArrayLike, threshold: float, s_correct: ArrayLike, t_correct: ArrayLike,
    s_latency: ArrayLike | None = None, t_latency: ArrayLike | None = None,
) -> CascadeFigures:
    """Teacher share, accuracy and (when latencies are given) latency of one threshold: the
    student always runs, the teacher only when escalated."""
    c, s, t, sl, tl = as_arrays(conf, s_correct, t_correct, s_latency, t_latency)
    if (sl is None) != (tl is None):
        raise ValueError("give both student and teacher latencies, or neither")
    return figures_of(c < threshold, s, t, sl, None if sl is None else sl + tl)


@dataclass
class RoutingMetrics:
    """How well one confidence ranks one set of questions, with reference values beside it."""

    n: int
    student_accuracy: float
    teacher_accuracy: float
    apgr: float
    cpt50: float  # teacher share needed to recover 50% of the accuracy gap
    cpt80: float
    auroc: float  # how well confidence separates the student's right answers from its wrong ones
    random_apgr: float  # 0.5 by construction (NaN without a gap); here so tables show the baseline
    oracle_apgr: float
    oracle_cpt50: float
    oracle_cpt80: float
    latency_mean_at_cpt50_s: float | None = None  # cascade mean latency at that share, if given
    latency_mean_at_cpt80_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with NaN turned into None, so it is valid JSON."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}


@dataclass
class RoutingReport:
    overall: RoutingMetrics
    by_type: dict[str, RoutingMetrics] = field(default_factory=dict)  # keys sorted by type name

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.to_dict(), "by_type": {k: v.to_dict() for k, v in self.by_type.items()}}


def routing_metrics(
    conf: ArrayLike, s_correct: ArrayLike, t_correct: ArrayLike,
    s_latency: ArrayLike | None = None, t_latency: ArrayLike | None = None,
    *, kept: ArrayLike | None = None, up: ArrayLike | None = None,
) -> RoutingMetrics:
    """All routing metrics of one set of questions. Latencies: a cascade's (student always,
    teacher when escalated), or a policy's own per-question `kept` / `up` (routers.policies.policy)."""
    c, s, t, sl, tl = as_arrays(conf, s_correct, t_correct, s_latency, t_latency)
    if kept is not None or up is not None:
        _, sl, up_a = as_arrays(c, kept, up)
        tl = None if up_a is None else up_a - sl
    sa, ta = float(s.mean()), float(t.mean())
    curve, oracle = routing_curve(c, s, t), oracle_curve(s, t)
    m = RoutingMetrics(
        n=c.size, student_accuracy=sa, teacher_accuracy=ta,
        apgr=apgr(curve, sa, ta), cpt50=cpt(curve, sa, ta, 0.5), cpt80=cpt(curve, sa, ta, 0.8),
        auroc=auroc(c, s), random_apgr=apgr(random_router_curve(s, t), sa, ta),
        oracle_apgr=apgr(oracle, sa, ta), oracle_cpt50=cpt(oracle, sa, ta, 0.5),
        oracle_cpt80=cpt(oracle, sa, ta, 0.8),
    )
    if (sl is None) != (tl is None):
        raise ValueError("give both student and teacher latencies, or neither")
    if sl is not None:
        order, counts, _ = threshold_candidates(c)
        shares, lat = counts / c.size, mean_curve(order, counts, sl, sl + tl)
        # read off the latency curve the way CPT reads the accuracy curve: piecewise linear
        m.latency_mean_at_cpt50_s, m.latency_mean_at_cpt80_s = (
            None if math.isnan(x) else float(np.interp(x, shares, lat)) for x in (m.cpt50, m.cpt80)
        )
    return m


def routing_report(
    conf: ArrayLike, s_correct: ArrayLike, t_correct: ArrayLike, types: Sequence[str],
    s_latency: ArrayLike | None = None, t_latency: ArrayLike | None = None,
    *, kept: ArrayLike | None = None, up: ArrayLike | None = None,
) -> RoutingReport:
    """Routing metrics over all questions and for each question type separately (latencies as
    routing_metrics)."""
    if kept is not None or up is not None:
        _, s_latency, up_a = as_arrays(conf, kept, up)
        t_latency = None if up_a is None else up_a - s_latency
    c, s, t, sl, tl = as_arrays(conf, s_correct, t_correct, s_latency, t_latency)
    if len(types) != c.size:
        raise ValueError(f"{len(types)} question types for {c.size} questions")
    kinds = np.asarray(types, dtype=object)
    by_type = {}
    for name in sorted(set(types)):
        sel = kinds == name
        by_type[name] = routing_metrics(
            c[sel], s[sel], t[sel], None if sl is None else sl[sel], None if tl is None else tl[sel]
        )
    return RoutingReport(routing_metrics(c, s, t, sl, tl), by_type)
