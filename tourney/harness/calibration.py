"""Calibration of a model's option probabilities on multiple-choice questions.

The confidence is the top option probability, the softmax of the option log-likelihoods a run
records with `--logprobs` (harness.option_scores): exactly what the router's `mc_probability`
reads. It is compared with whether the submitted answer (sample 0) was right:

- reliability bins: equal-width confidence bins [0, 0.1), ..., [0.9, 1.0]; per bin the number of
  questions, their mean confidence and their accuracy;
- expected calibration error, ECE = sum over bins of (n_bin / n) * |accuracy_bin - confidence_bin|
  (Guo et al. 2017, with 10 equal-width bins): 0 for a perfectly calibrated model; a model that
  says 90% and is right 60% of the time has ECE 0.3.

A router's threshold on mc_probability is a quantile, so it survives a monotone miscalibration;
what calibration adds is that "90%" means 90%, which is what a per-type threshold or a
human reading the report leans on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from tourney.harness.option_scores import option_probabilities
from tourney.harness.types import SampleResult

N_BINS = 10


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    confidence: float | None  # mean confidence in the bin; None when empty
    accuracy: float | None


@dataclass(frozen=True)
class Calibration:
    n: int  # questions with option scores
    ece: float
    mean_confidence: float
    accuracy: float
    bins: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(confidence: Sequence[float], correct: Sequence[bool], n_bins: int) -> None:
    if len(confidence) != len(correct):
        raise ValueError(f"{len(confidence)} confidences but {len(correct)} outcomes")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if any(not 0.0 <= c <= 1.0 for c in confidence):
        raise ValueError("confidences must lie in [0, 1]")


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]; a confidence of exactly 1.0 falls in the last bin."""
    _check(confidence, correct, n_bins)
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(confidence):
        members[min(int(c * n_bins), n_bins - 1)].append(i)
    out = []
    for b, idx in enumerate(members):
        conf = sum(confidence[i] for i in idx) / len(idx) if idx else None
        acc = sum(bool(correct[i]) for i in idx) / len(idx) if idx else None
        out.append(ReliabilityBin(low=b / n_bins, high=(b + 1) / n_bins, n=len(idx), confidence=conf, accuracy=acc))
    return out


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> float:
    """ECE over equal-width bins (module doc); 0.0 for no questions."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = len(confidence)
    return sum(b.n / n * abs(b.accuracy - b.confidence) for b in bins if b.n) if n else 0.0


def calibrate(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> Calibration:
    n = len(confidence)
    return Calibration(
        n=n, ece=expected_calibration_error(confidence, correct, n_bins),
        mean_confidence=sum(confidence) / n if n else 0.0,
        accuracy=sum(bool(c) for c in correct) / n if n else 0.0,
        bins=tuple(reliability_bins(confidence, correct, n_bins)))


def top_probability(row: SampleResult) -> float:
    """The confidence of one scored multiple-choice row: its top option probability."""
    assert row.choice_logliks is not None
    return max(option_probabilities(row.choice_logliks, where=f"question {row.id!r}: choice_logliks"))


def calibration_by_type(rows: Sequence[SampleResult], n_bins: int = N_BINS) -> dict[str, Calibration]:
    """Per question type (and "overall"), over each question's sample 0 that has option scores
    and no error. Types without any such question are left out; {} when there are none at all."""
    first: dict[str, SampleResult] = {}
    for r in rows:
        if r.choice_logliks is not None and r.error is None and (r.id not in first or r.sample < first[r.id].sample):
            first[r.id] = r
    by_type: dict[str, list[SampleResult]] = {}
    for r in first.values():
        by_type.setdefault(r.type, []).append(r)
    if not by_type:
        return {}
    out = {}
    everything: list[SampleResult] = []
    for t in sorted(by_type):
        group = by_type[t]
        everything += group
        out[t] = calibrate([top_probability(r) for r in group], [r.correct for r in group], n_bins)
    out["overall"] = calibrate([top_probability(r) for r in everything], [r.correct for r in everything], n_bins)
    return out


# -- the report's section ------------------------------------------------------------------------

def calibration_section(rows: Sequence[SampleResult]) -> dict[str, Any]:
    """{"calibration": {type: Calibration dict}} for report.json, or {} when no row has option scores."""
    cal = calibration_by_type(rows)
    return {"calibration": {t: c.to_dict() for t, c in cal.items()}} if cal else {}


def calibration_markdown(report: dict[str, Any]) -> list[str]:
    """report.md lines: ECE, mean confidence and accuracy per type; [] without a calibration section."""
    cal = report.get("calibration")
    if not cal:
        return []
    lines = ["", "## Calibration of option probabilities", "",
             "Confidence = top option probability (what `mc_probability` reads), sample 0; ECE over "
             f"{N_BINS} equal-width bins.", "",
             "| type | n | ECE | mean confidence | accuracy |", "|---|---|---|---|---|"]
    for t, c in cal.items():
        lines.append(f"| {t} | {c['n']} | {c['ece']:.3f} | {c['mean_confidence']:.3f} | {c['accuracy']:.3f} |")
    return lines


def reliability_plot(report: dict[str, Any], png) -> list[tuple[str, bytes]]:
    """The reliability diagram, one line per type, as [(title, png bytes)]; [] without calibration.
    `png(fig)` renders a matplotlib Figure to bytes (the report's own renderer)."""
    cal = report.get("calibration")
    if not cal:
        return []
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect")
    for t, c in cal.items():
        pts = [(b["confidence"], b["accuracy"]) for b in c["bins"] if b["n"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                linewidth=2 if t == "overall" else 1, label=f"{t} (ECE {c['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top option probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability of option probabilities")
    ax.legend(fontsize=7)
    return [("Reliability of option probabilities", png(fig))]
