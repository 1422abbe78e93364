"""Regression gate: is a candidate run significantly worse than a baseline run on the same questions?

Two run directories (results.jsonl + run.json, as `tourney eval` writes them) are paired by
(id, sample). A question's score is its mean correctness over the paired samples, so K samples
per question work and K=1 gives plain 0/1 scores. Questions in only one run are counted, named
(the first few) and left out: comparing accuracies over different question sets would measure the
sets, not the models.

Decision rule, applied to all questions and to each type separately. A group is *significantly
worse* when all three hold:

1. delta = candidate accuracy - baseline accuracy < -min_delta (a drop big enough to care about);
2. the exact McNemar p-value < alpha (after Holm's adjustment across types, see below);
3. the paired bootstrap CI of delta at level 1 - alpha lies wholly below zero.

The test and the CI answer the same question in two ways (discordant counts; resampled questions);
requiring both keeps a gate from failing on the edge case where only one of them says so. With
K > 1 samples, b and c count questions whose mean score went down / up, which makes the test an
exact sign test on per-question scores; with K = 1 that is exactly McNemar's test. The test is
two-sided, so a drop flagged at alpha is significant at alpha / 2 one-sided: a conservative gate.

Per-type p-values are Holm-adjusted across the tested types: with ten types tested at 5% each,
pure noise would fail about four gates in ten. The overall comparison is one pre-planned test and
is not adjusted. The run fails when the overall group or any type is significantly worse.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from tourney.harness.metrics import is_correct, summarize_group
from tourney.harness.jsonl import json_safe
from tourney.harness.report import _md_table
from tourney.harness.rundir import RunDir, RunMeta
from tourney.harness.types import DataError, SampleResult

SHOW_IDS = 5  # unmatched question ids named in the report; the rest are only counted
OVERALL = "overall"


@pydantic_dataclass(config=ConfigDict(extra="forbid", allow_inf_nan=False))
class RegressConfig:
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the test; the bootstrap CI "
                                                       "is at level 1 - alpha.")
    min_delta: float = Field(0.0, ge=0, lt=1, description="Flag only drops larger than this, as a fraction "
                                                          "(0.02 = 2 points).")
    min_n: int = Field(1, ge=1, description="A group with fewer paired questions is reported but never flagged.")
    n_boot: int = Field(2000, ge=100, description="Bootstrap resamples (at least 100 for a usable percentile CI).")
    seed: int = Field(0, description="Bootstrap RNG seed: the same runs always give the same report.")
    adjust: Literal["holm", "none"] = Field("holm", description="Multiple-comparison adjustment across types.")


@dataclass
class GroupComparison:
    """Baseline vs candidate on the paired questions of one type (or all of them)."""

    type: str
    n: int  # paired questions
    baseline_accuracy: float  # mean per-question score
    candidate_accuracy: float
    delta: float  # candidate - baseline
    ci: tuple[float, float]  # paired bootstrap CI of delta at level 1 - alpha
    b: int  # questions the baseline scored higher on (right -> wrong when K = 1)
    c: int  # questions the candidate scored higher on (wrong -> right)
    p_value: float  # exact McNemar / sign test, two-sided
    p_adjusted: float  # Holm-adjusted across types; equal to p_value for "overall"
    tested: bool  # n >= min_n
    significantly_worse: bool  # the module docstring's rule
    # Speed over the paired samples (metrics conventions: errored samples excluded); None when
    # a side recorded no successful sample. Deltas are candidate - baseline.
    latency_p50_baseline_s: float | None
    latency_p50_candidate_s: float | None
    latency_p50_delta_s: float | None
    latency_p95_delta_s: float | None
    tokens_per_s_delta: float | None


@dataclass
class RegressResult:
    baseline: str  # run directories, as given
    candidate: str
    baseline_model: str | None  # from run.json
    candidate_model: str | None
    config: RegressConfig
    overall: GroupComparison
    by_type: dict[str, GroupComparison]  # keys sorted
    only_baseline: int  # questions (ids) in the baseline run only; excluded
    only_candidate: int
    only_baseline_ids: list[str]  # the first SHOW_IDS of them, sorted
    only_candidate_ids: list[str]
    unmatched_samples: int  # samples of paired questions whose (id, sample) is in one run only
    failed: bool
    notes: list[str] = field(default_factory=list)  # warnings worth reading (different data files)

    def groups(self) -> list[GroupComparison]:
        return [*self.by_type.values(), self.overall]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: floats rounded to 6 places (p-values to 6 significant digits,
        since a decisive p like 2e-9 would round to 0), nan as None."""
        out = json_safe(asdict(self))
        for g, d in zip(self.groups(), [*out["by_type"].values(), out["overall"]]):
            d["p_value"], d["p_adjusted"] = float(f"{g.p_value:.6g}"), float(f"{g.p_adjusted:.6g}")
        return out


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: under H0 each of the n = b + c
    discordant questions is equally likely to go either way, so min(b, c) ~ Binomial(n, 1/2) tail.

    p = min(1, 2 * P(X <= min(b, c))); b = c = 0 (no discordant pair) gives 1.0. Exact integer
    arithmetic via math.comb, so large n neither overflows nor loses the tail to round-off.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap_ci(base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray,
                        n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI at level 1 - alpha of mean(cand - base), resampling questions with
    replacement. Questions are resampled as pairs, so what the two runs share cancels out."""
    d = np.asarray(cand, dtype=float) - np.asarray(base, dtype=float)  # (n,)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"need two equal-length, non-empty 1-D score lists, got shape {d.shape}")
    rng = np.random.default_rng(seed)
    n = d.size
    # Chunks of resamples keep the (rows, n) index array near 32 MB however many questions.
    rows = max(1, 4_000_000 // n)
    means = np.concatenate([d[rng.integers(0, n, size=(min(rows, n_boot - i), n))].mean(axis=1)
                            for i in range(0, n_boot, rows)])  # (n_boot,)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order: the i-th smallest p is multiplied by
    (m - i), then made monotone, so "adjusted p < alpha" is Holm's procedure at level alpha."""
    m = len(p_values)
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def is_worse(delta: float, p: float, ci_high: float, cfg: RegressConfig) -> bool:
    """The decision rule of the module docstring, for one group."""
    return delta < -cfg.min_delta and p < cfg.alpha and ci_high < 0


def _load(run_dir: Path) -> tuple[RunMeta, list[SampleResult]]:
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: not a directory; expected an evaluation run directory")
    run = RunDir(run_dir)
    return run.meta(), run.rows()


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _compare_group(name: str, ids: list[str], base: dict[str, list[SampleResult]],
                   cand: dict[str, list[SampleResult]], cfg: RegressConfig) -> GroupComparison:
    b_scores = np.array([np.mean([is_correct(r) for r in base[i]]) for i in ids])  # (n,)
    c_scores = np.array([np.mean([is_correct(r) for r in cand[i]]) for i in ids])
    b = int(np.sum(b_scores > c_scores))
    c = int(np.sum(c_scores > b_scores))
    p = mcnemar_exact(b, c)
    delta = float(np.mean(c_scores - b_scores))
    ci = paired_bootstrap_ci(b_scores, c_scores, cfg.n_boot, cfg.seed, cfg.alpha)
    bs = summarize_group([r for i in ids for r in base[i]])
    cs = summarize_group([r for i in ids for r in cand[i]])
    return GroupComparison(
        type=name, n=len(ids), baseline_accuracy=float(b_scores.mean()),
        candidate_accuracy=float(c_scores.mean()), delta=delta, ci=ci, b=b, c=c, p_value=p,
        p_adjusted=p, tested=len(ids) >= cfg.min_n, significantly_worse=False,
        latency_p50_baseline_s=bs.latency_p50_s, latency_p50_candidate_s=cs.latency_p50_s,
        latency_p50_delta_s=_diff(bs.latency_p50_s, cs.latency_p50_s),
        latency_p95_delta_s=_diff(bs.latency_p95_s, cs.latency_p95_s),
        tokens_per_s_delta=_diff(bs.tokens_per_s, cs.tokens_per_s),
    )


def compare_runs(baseline_dir: str | Path, candidate_dir: str | Path,
                 cfg: RegressConfig | None = None) -> RegressResult:
    """Compare two run directories question by question; see the module docstring for the rule.

    A question's type is taken from the baseline run. Raises DataError when a directory is not a
    run or when no (id, sample) is in both runs.
    """
    cfg = cfg or RegressConfig()
    base_meta, base_rows = _load(Path(baseline_dir))
    cand_meta, cand_rows = _load(Path(candidate_dir))
    base_keys = {(r.id, r.sample): r for r in base_rows}
    cand_keys = {(r.id, r.sample): r for r in cand_rows}
    shared = base_keys.keys() & cand_keys.keys()
    if not shared:
        raise DataError(f"no question is in both {baseline_dir} and {candidate_dir} "
                        "(rows are paired by id and sample): nothing to compare")
    base: dict[str, list[SampleResult]] = {}
    cand: dict[str, list[SampleResult]] = {}
    for key in sorted(shared):  # sorted: the bootstrap sees questions in a fixed order
        base.setdefault(key[0], []).append(base_keys[key])
        cand.setdefault(key[0], []).append(cand_keys[key])
    only_base = sorted({r.id for r in base_rows} - base.keys())
    only_cand = sorted({r.id for r in cand_rows} - cand.keys())
    unmatched_samples = sum(1 for k in base_keys.keys() ^ cand_keys.keys() if k[0] in base)

    ids = sorted(base)
    by_type_ids: dict[str, list[str]] = {}
    for i in ids:
        by_type_ids.setdefault(base[i][0].type, []).append(i)
    overall = _compare_group(OVERALL, ids, base, cand, cfg)
    by_type = {t: _compare_group(t, by_type_ids[t], base, cand, cfg) for t in sorted(by_type_ids)}

    tested = [g for g in by_type.values() if g.tested]
    if cfg.adjust == "holm":
        for g, p in zip(tested, holm_adjust([g.p_value for g in tested])):
            g.p_adjusted = p
    for g in [*by_type.values(), overall]:
        g.significantly_worse = g.tested and is_worse(g.delta, g.p_adjusted, g.ci[1], cfg)

    notes: list[str] = []
    if base_meta.data_sha256 != cand_meta.data_sha256:
        notes.append("the runs read different data files (data_sha256 differs): check that "
                     "paired ids are the same questions")
    return RegressResult(
        baseline=str(baseline_dir), candidate=str(candidate_dir),
        baseline_model=base_meta.model, candidate_model=cand_meta.model, config=cfg,
        overall=overall, by_type=by_type, only_baseline=len(only_base),
        only_candidate=len(only_cand), only_baseline_ids=only_base[:SHOW_IDS],
        only_candidate_ids=only_cand[:SHOW_IDS], unmatched_samples=unmatched_samples,
        failed=any(g.significantly_worse for g in [*by_type.values(), overall]), notes=notes,
    )


# --- Markdown ---------------------------------------------------------------------------------

def _f(x: float | None, fmt: str = "{:+.3f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _verdict(g: GroupComparison, cfg: RegressConfig) -> str:
    if not g.tested:
        return f"untested (n < {cfg.min_n})"
    if g.significantly_worse:
        return "REGRESSION"
    # The mirror image of the rule, so an improvement is visible as such.
    if g.delta > cfg.min_delta and g.p_adjusted < cfg.alpha and g.ci[0] > 0:
        return "better"
    return "ok"


def _describe(g: GroupComparison) -> str:
    return (f"{g.type} {g.baseline_accuracy:.3f} -> {g.candidate_accuracy:.3f} "
            f"({g.delta:+.3f}, p={g.p_adjusted:.3g})")


def render_regression_markdown(result: RegressResult) -> str:
    """A headline (PASS or REGRESSION and why), the inputs, the rule and one row per type."""
    cfg = result.config
    groups = result.groups()
    worse = [g for g in groups if g.significantly_worse]
    if worse:
        headline = "**REGRESSION**: significantly worse on " + "; ".join(_describe(g) for g in worse)
    else:
        drops = [g for g in groups if g.delta < 0]
        largest = min(drops, key=lambda g: g.delta) if drops else None
        headline = "**PASS**: no group is significantly worse" + (
            f" (largest drop: {_describe(largest)})" if largest else " (no group dropped)")
    level = f"{1 - cfg.alpha:.0%}"

    def only(n: int, shown: list[str]) -> str:
        return f"{n}" + (f" ({', '.join(shown)}{', ...' if n > len(shown) else ''})" if n else "")

    out = [f"# Regression check: {result.candidate_model} vs {result.baseline_model}", "", headline, "",
           f"- **baseline**: {result.baseline} ({result.baseline_model})",
           f"- **candidate**: {result.candidate} ({result.candidate_model})",
           f"- **paired questions**: {result.overall.n}; only in baseline: "
           f"{only(result.only_baseline, result.only_baseline_ids)}; only in candidate: "
           f"{only(result.only_candidate, result.only_candidate_ids)}; unpaired samples: "
           f"{result.unmatched_samples}"]
    out += [f"- **note**: {n}" for n in result.notes]
    adjusted = ", Holm-adjusted across types" if cfg.adjust == "holm" else ""
    bound = f"-{cfg.min_delta:g}" if cfg.min_delta else "0"
    out += ["", f"Rule: REGRESSION when delta < {bound}, exact McNemar p < {cfg.alpha:g}"
                f"{adjusted}, and the {level} paired bootstrap CI of delta is below 0. b/c: questions "
                "the baseline/candidate did better on. Latency deltas are candidate - baseline.", ""]
    header = ["type", "n", "baseline acc", "candidate acc", f"delta [{level} CI]", "b/c", "p",
              "p50 delta s", "verdict"]
    rows = [[g.type, str(g.n), f"{g.baseline_accuracy:.3f}", f"{g.candidate_accuracy:.3f}",
             f"{g.delta:+.3f} [{g.ci[0]:+.3f}, {g.ci[1]:+.3f}]", f"{g.b}/{g.c}",
             _f(g.p_adjusted, "{:.3g}"), _f(g.latency_p50_delta_s), _verdict(g, cfg)] for g in groups]
    out.append(_md_table(header, rows))
    return "\n".join(out)
