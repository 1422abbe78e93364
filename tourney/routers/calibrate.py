"""Choose the threshold on a development set, and keep it with its router in a JSON file.

The cascade sends a question to the teacher when `confidence < threshold`. Every threshold
function scans the thresholds that change the outcome (see metrics.threshold_candidates: one per
reachable teacher share, questions of equal confidence always escalated together) and returns
one of them, so the dev-set figures quoted with it are exactly what it does on the dev set.
Only the questions' ranking matters, so any confidence works: a probability, a logprob, a count.

Ties: a threshold cannot split questions of equal confidence, and discrete signals tie a lot
(five samples that all agree; solutions of the same length), so a teacher-share target inside a
tie would be unreachable. A router with `split_ties` adds TIE_EPS times a number in [0, 1) drawn
from a hash of the question text to every confidence: tied questions are then ordered
arbitrarily but reproducibly (the same question always gets the same nudge, on dev, held-out
and in `tourney submit`), and questions whose confidences differ by more than TIE_EPS keep
their order.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tourney.errors import ConfigError
from tourney.harness.jsonl import json_safe
from tourney.harness.types import DataError, SampleResult
from tourney.routers.combined import CombinedRouter
from tourney.routers.metrics import (
    EPS, ArrayLike, CascadeFigures, as_arrays, cascade_figures, mean_curve, threshold_candidates,
)
from tourney.routers.signals import FEATURE_NAMES, ChoiceLogliks, compute_signals, oriented

TARGET_KINDS = ("teacher_share", "accuracy", "latency")
LATENCY_STATS = ("mean", "p95")
TIE_EPS = 1e-9  # below any gap between confidences that mean something, above float resolution


def tie_jitter(question: str) -> float:
    """A number in [0, 1) fixed by the question text (see the module doc on ties)."""
    return int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_ties(conf: ArrayLike, questions: Sequence[str]) -> np.ndarray:
    """Confidences nudged by each question's jitter; -inf and NaN stay as they are."""
    (c,) = as_arrays(conf)
    if len(questions) != c.size:
        raise ValueError(f"{len(questions)} question texts for {c.size} confidences")
    jitter = np.array([tie_jitter(q) for q in questions])
    return np.where(np.isfinite(c), c + TIE_EPS * jitter, c)


def threshold_for_teacher_share(conf: ArrayLike, share: float) -> float:
    """The threshold that escalates the reachable teacher share nearest to `share`.

    The quantile, made exact: with distinct confidences it escalates share * n questions, rounded
    to the nearest whole question (a half rounds down).
    Ties cannot be split by a threshold, so a tie group straddling the quantile goes wholly to
    whichever side gives the share nearest the target; when both sides are equally near, the
    smaller share wins (fewer teacher calls).
    """
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"teacher share must be in [0, 1], got {share}")
    _, counts, thresholds = threshold_candidates(conf)
    dist = np.round(np.abs(counts / counts[-1] - share), 12)  # rounded so float noise cannot decide
    return float(thresholds[int(np.argmin(dist))])  # argmin takes the first: the smallest share


def threshold_for_accuracy(conf: ArrayLike, student_correct: ArrayLike, teacher_correct: ArrayLike,
                           target: float, *, relative: bool = False) -> float:
    """The threshold with the smallest teacher share whose cascade accuracy is >= target.

    relative=True reads `target` as a fraction of the teacher's accuracy (0.99: "99% of the
    teacher"). Accuracy need not rise with the share (escalating a question the student got right
    and the teacher got wrong lowers it); the first share to reach the target is returned.
    Raises ValueError when no share reaches it, naming the best the cascade can do.
    """
    c, s, t = as_arrays(conf, student_correct, teacher_correct)
    if target < 0 or (not relative and target > 1):
        raise ConfigError(f"accuracy target must be in [0, 1], got {target}")
    goal = target * float(t.mean()) if relative else target
    order, counts, thresholds = threshold_candidates(c)
    acc = mean_curve(order, counts, s, t)
    ok = np.flatnonzero(acc >= goal - EPS)
    if ok.size == 0:
        best = int(np.argmax(acc))
        raise ConfigError(f"accuracy target {goal:.4f} is out of reach on this dev set: the best "
                         f"cascade accuracy is {acc[best]:.4f}, at teacher share {counts[best] / c.size:.3f}")
    return float(thresholds[ok[0]])


def threshold_for_latency(conf: ArrayLike, student_latency: ArrayLike, teacher_latency: ArrayLike,
                          budget: float, stat: str = "mean") -> float:
    """The threshold with the largest teacher share whose cascade latency stays within `budget`.

    Per question the student's latency is always paid (it answers first, and its confidence
    decides) and the teacher's is added when the question is escalated. `stat` is "mean" or "p95"
    (linear interpolation, as harness.metrics.percentile). Both only grow with the share, so the
    largest share within budget is the most accurate choice the budget allows. Raises ValueError
    when even the student alone exceeds the budget.
    """
    if stat not in LATENCY_STATS:
        raise ValueError(f"stat must be one of {LATENCY_STATS}, got {stat!r}")
    c, sl, tl = as_arrays(conf, student_latency, teacher_latency)
    if (sl < 0).any() or (tl < 0).any():
        raise ValueError("latencies must be >= 0")
    order, counts, thresholds = threshold_candidates(c)
    if stat == "mean":
        lat = mean_curve(order, counts, sl, sl + tl)
    else:
        lat = np.empty(counts.size)
        for i, k in enumerate(counts):
            sent = np.zeros(c.size, dtype=bool)
            sent[order[:k]] = True
            lat[i] = np.percentile(sl + np.where(sent, tl, 0.0), 95)
    ok = np.flatnonzero(lat <= budget + EPS)
    if ok.size == 0:
        raise ConfigError(f"latency budget {budget} s is below the student's own {stat} latency "
                         f"({lat[0]:.4f} s): no threshold meets it")
    return float(thresholds[ok[-1]])


@dataclass
class CalibratedRouter:
    """A confidence (one signal, or a CombinedRouter) plus the threshold chosen for a target."""

    target_kind: str  # "teacher_share" | "accuracy" | "latency"
    target_value: float  # the share, the accuracy, or the latency budget in seconds
    threshold: float  # escalate when confidence < threshold; +inf escalates everything
    signals: list[str]  # the signals the confidence reads
    model: dict[str, Any] | str  # CombinedRouter.to_dict(), or the name of a single signal
    dev: CascadeFigures  # what the threshold does on the dev set it was chosen on
    heldout: CascadeFigures | None = None  # set by evaluate() on questions not used to choose
    relative: bool = False  # accuracy target given as a fraction of the teacher's accuracy
    latency_stat: str = "mean"  # "mean" | "p95", for a latency target
    split_ties: bool = False  # confidences carry the question's tie jitter (module doc)
    _combined: CombinedRouter | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.target_kind not in TARGET_KINDS:
            raise ValueError(f"field 'target_kind': expected one of {TARGET_KINDS}, got {self.target_kind!r}")
        if self.latency_stat not in LATENCY_STATS:
            raise ValueError(f"field 'latency_stat': expected one of {LATENCY_STATS}, got {self.latency_stat!r}")
        if isinstance(self.model, str):
            if self.model not in FEATURE_NAMES:
                raise ValueError(f"field 'model': unknown signal {self.model!r}")
        else:
            try:
                self._combined = CombinedRouter.from_dict(self.model)
            except ValueError as e:
                raise ValueError(f"field 'model': {e}") from None

    def confidence(self, rows: Sequence[SampleResult], *, choice_logliks: ChoiceLogliks = None,
                   question_text: str | None = None) -> float | None:
        """The confidence of one question's student samples; None when a single signal is
        unavailable for it (to_teacher then escalates: no evidence, no trust)."""
        if self._combined is not None:
            conf = self._combined.confidence(rows, choice_logliks=choice_logliks, question_text=question_text)
        else:
            name = str(self.model)
            value = compute_signals(rows, [name], choice_logliks=choice_logliks, question_text=question_text)[name]
            conf = oriented(name, value)
        if conf is None or not self.split_ties or not math.isfinite(conf):
            return conf
        text = question_text if question_text is not None else min(rows, key=lambda r: r.sample).question
        return conf + TIE_EPS * tie_jitter(text)

    def to_teacher(self, confidence: float | None) -> bool:
        return confidence is None or confidence < self.threshold

    def evaluate(self, conf: ArrayLike, student_correct: ArrayLike, teacher_correct: ArrayLike,
                 student_latency: ArrayLike | None = None,
                 teacher_latency: ArrayLike | None = None) -> CascadeFigures:
        """Figures of this threshold on held-out questions; kept in `heldout`."""
        self.heldout = cascade_figures(conf, self.threshold, student_correct, teacher_correct,
                                       student_latency, teacher_latency)
        return self.heldout

    def to_dict(self) -> dict[str, Any]:
        return {"target_kind": self.target_kind, "target_value": self.target_value,
                "threshold": json_safe(self.threshold, None, "string"), "signals": list(self.signals),
                "model": self.model, "dev": asdict(self.dev),
                "heldout": None if self.heldout is None else asdict(self.heldout),
                "relative": self.relative, "latency_stat": self.latency_stat, "split_ties": self.split_ties}

    @classmethod
    def from_dict(cls, d: Any) -> "CalibratedRouter":
        """Inverse of to_dict; a bad field raises ValueError naming it."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")

        def get(name: str, types: tuple[type, ...], what: str, default: Any = ...) -> Any:
            if name not in d and default is not ...:
                return default
            v = d.get(name)
            if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
                raise ValueError(f"field {name!r}: expected {what}, got {v!r:.80}")
            return v

        threshold = get("threshold", (int, float, str), "a number, 'inf' or '-inf'")
        if isinstance(threshold, str) and threshold not in ("inf", "-inf"):
            raise ValueError(f"field 'threshold': expected a number, 'inf' or '-inf', got {threshold!r}")
        signals = get("signals", (list,), "a list of signal names")
        if not all(isinstance(s, str) and s in FEATURE_NAMES for s in signals):
            raise ValueError(f"field 'signals': expected known signal names, got {signals!r:.80}")
        heldout = get("heldout", (dict, type(None)), "an object or null", None)
        return cls(
            target_kind=get("target_kind", (str,), "a string"),
            target_value=float(get("target_value", (int, float), "a number")),
            threshold=float(threshold), signals=list(signals),
            model=get("model", (dict, str), "an object or a signal name"),
            dev=_figures(get("dev", (dict,), "an object"), "dev"),
            heldout=None if heldout is None else _figures(heldout, "heldout"),
            relative=get("relative", (bool,), "true or false", False),
            latency_stat=get("latency_stat", (str,), "a string", "mean"),
            split_ties=get("split_ties", (bool,), "true or false", False),
        )

    def save(self, path: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "CalibratedRouter":
        """Read a saved router; bad JSON or a bad field raises DataError naming file and field."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: router file not found") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        try:
            return cls.from_dict(raw)
        except (ValueError, TypeError) as e:
            raise DataError(f"{path}: {e}") from None


def _figures(d: dict[str, Any], where: str) -> CascadeFigures:
    def num(name: str, optional: bool = False) -> Any:
        v = d.get(name)
        if optional and v is None:
            return None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ValueError(f"field '{where}.{name}': expected a number, got {v!r:.80}")
        return v
    return CascadeFigures(n=int(num("n")), teacher_share=float(num("teacher_share")),
                          accuracy=float(num("accuracy")),
                          latency_mean_s=num("latency_mean_s", True), latency_p95_s=num("latency_p95_s", True))


def calibrate(conf: ArrayLike, student_correct: ArrayLike, teacher_correct: ArrayLike, *,
              kind: str, value: float, model: CombinedRouter | dict[str, Any] | str,
              student_latency: ArrayLike | None = None, teacher_latency: ArrayLike | None = None,
              relative: bool = False, stat: str = "mean", questions: Sequence[str] | None = None) -> CalibratedRouter:
    """Choose the threshold for one target on dev-set confidences and record the dev figures.

    `conf` must come from `model` (its oriented value for a single signal): the threshold is only
    meaningful on the scale it was chosen on. With `questions` (the dev question texts, in
    order) the router splits ties (module doc).
    """
    if questions is not None:
        conf = split_ties(conf, questions)
    if kind == "teacher_share":
        threshold = threshold_for_teacher_share(conf, value)
    elif kind == "accuracy":
        threshold = threshold_for_accuracy(conf, student_correct, teacher_correct, value, relative=relative)
    elif kind == "latency":
        if student_latency is None or teacher_latency is None:
            raise ValueError("a latency target needs student and teacher latencies")
        threshold = threshold_for_latency(conf, student_latency, teacher_latency, value, stat)
    else:
        raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")
    if isinstance(model, CombinedRouter):
        model = model.to_dict()
    signals = [model] if isinstance(model, str) else list(model.get("features", []))
    dev = cascade_figures(conf, threshold, student_correct, teacher_correct, student_latency, teacher_latency)
    return CalibratedRouter(target_kind=kind, target_value=float(value), threshold=threshold,
                            signals=signals, model=model, dev=dev, relative=relative, latency_stat=stat,
                            split_ties=questions is not None)
