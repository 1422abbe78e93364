"""Accuracy and speed metrics over scored samples: pure functions, no I/O.

Conventions used throughout:

- A sample whose `error` is set counts as *incorrect* for accuracy (whatever its `correct` field
  says) and is *excluded* from latency, TTFT and token statistics: a failed request's wall time
  measures the failure (timeout, refused connection), not the model.
- Sums use `math.fsum`, which is correctly rounded and so independent of row order: the same
  results in any order give the same numbers, and report.json stays byte-identical.
- "No value" is `None` for statistics of an empty set (no latency recorded) and `nan` for
  proportions over zero samples; `to_dict()` turns `nan` into `None` so the result is valid JSON.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from tourney.harness.jsonl import json_safe
from tourney.harness.types import SampleResult
from tourney.harness.votes import majority_vote


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (z=1.96: 95%).

    Chosen over the normal approximation because it stays inside [0, 1] and is sensible at k=0,
    k=n and small n, which per-type groups of a few dozen questions hit all the time.
    n=0 gives (nan, nan): there is no estimate, and reports render it as "n/a".
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    return _wilson(k / n, n, z)


def _wilson(p: float, n: float, z: float) -> tuple[float, float]:
    """The Wilson interval of a proportion p over a (possibly effective, non-integer) size n."""
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamp only against float round-off (e.g. k=n giving 1.0000000000000002).
    return (max(0.0, center - half), min(1.0, center + half))


CI_WILSON = "wilson"
CI_CLUSTERED = "wilson-clustered"  # Wilson at the design-effect sample size, clustered by question


def clustered_interval(correct_by_question: Sequence[Sequence[bool]], z: float = 1.96) -> tuple[float, float]:
    """95% interval for per-sample accuracy when each question contributes several samples.

    K samples of one question are not K independent trials: they agree far more often than
    samples of different questions, so a Wilson interval over all K x n samples is too narrow.
    The unit of sampling is the question. The accuracy p = sum(y_i) / sum(k_i) (y_i correct out of
    k_i samples of question i) is a ratio estimator; its cluster-robust variance over m questions is

        V = m / (m - 1) * sum_i (y_i - p k_i)^2 / (sum_i k_i)^2,

    and the interval is Wilson's at the effective size n_eff = p (1 - p) / V (the design effect
    n / n_eff is 1 + (K - 1) * intra-question correlation), kept within [1, n].
    At p = 0 or 1 there is no spread to measure: n_eff = m, as if every question's samples agreed.
    With one sample per question this is exactly the Wilson interval.
    """
    m = len(correct_by_question)
    sizes = [len(c) for c in correct_by_question]
    n = sum(sizes)
    if n == 0:
        return (math.nan, math.nan)
    if all(size == 1 for size in sizes):
        return wilson_interval(sum(bool(c[0]) for c in correct_by_question), n, z)
    k = sum(sum(bool(x) for x in c) for c in correct_by_question)
    p = k / n
    if m < 2 or p in (0.0, 1.0):
        return _wilson(p, float(max(m, 1)), z)
    resid = math.fsum((sum(bool(x) for x in c) - p * len(c)) ** 2 for c in correct_by_question)
    variance = m / (m - 1) * resid / (n * n)
    n_eff = p * (1 - p) / variance if variance > 0 else float(n)
    return _wilson(p, min(max(n_eff, 1.0), float(n)), z)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (q in [0, 100]) with linear interpolation, as numpy's default.

    The position is (n - 1) * q / 100 in the sorted values; between two values we interpolate.
    Empty input gives None rather than raising, since "no successful samples" is a normal case.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    return xs[lo] + (xs[hi] - xs[lo]) * frac


@dataclass
class GroupSummary:
    """Accuracy and speed of one group of samples (one question type, or all of them)."""

    n: int  # samples, errored ones included (they count as incorrect)
    n_questions: int  # distinct question ids
    accuracy: float  # mean per-sample correctness; nan when n == 0
    ci95: list[float]  # 95% interval [low, high] for `accuracy`; [nan, nan] when n == 0
    ci_method: str  # "wilson" (one sample per question) or "wilson-clustered" (see clustered_interval)
    # One vote per question over its samples' predictions; equals `accuracy` when K == 1.
    # See `majority_correct` for the exact rule.
    majority_accuracy: float
    latency_p50_s: float | None  # over successful samples; None when there are none
    latency_p95_s: float | None
    latency_mean_s: float | None
    ttft_p50_s: float | None  # None when no successful sample recorded a TTFT
    tokens_per_s: float | None  # sum completion tokens / sum latency, successful samples only
    completion_tokens_mean: float | None  # successful samples only
    errors: int  # samples whose `error` is set
    unparsed: int = 0  # samples answered (no error) in which the grader found no answer to score
    hedged: int = 0  # answered samples that named several options in one statement (never correct)
    conflicting: int = 0  # answered samples whose answer statements disagree (the first counted)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, with nan turned into None so that it is valid JSON."""
        return json_safe(asdict(self), digits=None)


@dataclass
class Report:
    """Summary of a whole run: all samples, and each question type separately."""

    overall: GroupSummary
    by_type: dict[str, GroupSummary] = field(default_factory=dict)  # keys sorted by type name

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_dict(),
            "by_type": {t: g.to_dict() for t, g in self.by_type.items()},
        }


def is_correct(row: SampleResult) -> bool:
    """Correctness for accuracy: an errored sample is wrong whatever `correct` says."""
    return row.error is None and bool(row.correct)


def majority_correct(samples: Sequence[SampleResult]) -> bool:
    """Whether the majority vote over one question's samples is correct (the rule of
    tourney.harness.votes: "no answer" never wins). The vote is correct when the first sample
    carrying the winning answer is correct; with K=1 this is that sample's correctness, so
    majority accuracy equals accuracy. No answered sample: not correct."""
    if not samples:
        raise ValueError("majority vote over no samples")
    ordered = sorted(samples, key=lambda r: r.sample)
    vote = majority_vote([None if r.error is not None else r.prediction for r in ordered])
    return vote.first is not None and is_correct(ordered[vote.first])


def summarize_group(rows: Sequence[SampleResult]) -> GroupSummary:
    """Summary of one group of samples; see the module docstring for error handling."""
    n = len(rows)
    k = sum(1 for r in rows if is_correct(r))
    by_question: dict[str, list[SampleResult]] = {}
    for r in rows:
        by_question.setdefault(r.id, []).append(r)
    n_q = len(by_question)
    majority = sum(1 for s in by_question.values() if majority_correct(s))

    ok = [r for r in rows if r.error is None]
    latencies = [float(r.latency_s) for r in ok]
    ttfts = [float(r.ttft_s) for r in ok if r.ttft_s is not None]
    total_latency = math.fsum(latencies)
    total_tokens = sum(r.completion_tokens for r in ok)
    low, high = clustered_interval([[is_correct(r) for r in s] for s in by_question.values()])
    return GroupSummary(
        n=n,
        n_questions=n_q,
        accuracy=k / n if n else math.nan,
        ci95=[low, high],
        ci_method=CI_WILSON if n == n_q else CI_CLUSTERED,
        majority_accuracy=majority / n_q if n_q else math.nan,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        latency_mean_s=total_latency / len(ok) if ok else None,
        ttft_p50_s=percentile(ttfts, 50),
        # Zero total latency (a replay backend, say) has no meaningful rate: None, not inf.
        tokens_per_s=total_tokens / total_latency if total_latency > 0 else None,
        completion_tokens_mean=total_tokens / len(ok) if ok else None,
        errors=n - len(ok),
        unparsed=sum(1 for r in ok if r.prediction is None and r.status != "hedge"),
        hedged=sum(1 for r in ok if r.status == "hedge"),
        conflicting=sum(1 for r in ok if r.status == "conflicting"),
    )


def summarize_results(rows: Sequence[SampleResult]) -> Report:
    """Overall and per-type summaries of a run's samples (K samples per question allowed).

    `accuracy` is over all samples (mean per-sample correctness); `majority_accuracy` is over
    questions, one majority vote each. Rows are taken as given: de-duplicating retried rows is
    the reader's job (`harness.report.read_results`).
    """
    groups: dict[str, list[SampleResult]] = {}
    for r in rows:
        groups.setdefault(r.type, []).append(r)
    return Report(
        overall=summarize_group(rows),
        by_type={t: summarize_group(groups[t]) for t in sorted(groups)},
    )
