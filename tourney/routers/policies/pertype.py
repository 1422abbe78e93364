"""Per-type thresholds, as a per-type recalibration of the router's score.

One threshold for all questions treats a score of 0.4 on a short question like 0.4 on a long
one, but what a teacher call buys at that score can differ by type (on long questions the
teacher fails too). So each type with at least `min_questions` dev questions gets its own map
from score to the expected gain of escalating, E[t - s | score, type], fitted by isotonic
regression (scikit-learn; decreasing in the score) on out-of-fold dev scores; the other types
share one map fitted on all questions (the fallback). The new score is minus that expected gain,
plus a tie-breaker below STEP:

    score' = -gain_type(score) + STEP * squash(score),   squash increasing, in (0, 1)

Both terms grow with the score, so within a type the order of questions is exactly the order of
the original score: one global threshold on score' is one threshold per type on the original
score. Across types, questions are ordered by estimated gain. Whether this beats the plain score,
and from how many questions a type gets its own map, is chosen by cross-validated APGR
(routers.fitting.select), never by hand. A missing score (-inf: no evidence) stays -inf.
The maps are kept as their knots (x ascending, y), read back with linear interpolation, exactly
as scikit-learn's IsotonicRegression predicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

STEP = 1e-6  # far below any gain difference that matters; only orders equal estimates
MIN_QUESTIONS = (200, 100, 50)  # candidate sizes from which a type gets its own map


@dataclass(frozen=True)
class GainMap:
    """A decreasing piecewise-linear map from score to expected gain, flat outside its knots."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, score: np.ndarray) -> np.ndarray:
        return np.interp(score, self.x, self.y)

    @classmethod
    def fit(cls, score: np.ndarray, gain: np.ndarray) -> "GainMap":
        from sklearn.isotonic import IsotonicRegression

        ok = np.isfinite(score)
        if not ok.any():
            return cls((0.0,), (float(np.mean(gain)) if gain.size else 0.0,))
        iso = IsotonicRegression(increasing=False, y_min=-1.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(score[ok], gain[ok])
        return cls(tuple(float(v) for v in iso.X_thresholds_), tuple(float(v) for v in iso.y_thresholds_))

    def to_dict(self) -> dict[str, Any]:
        return {"x": list(self.x), "y": list(self.y)}


@dataclass
class TypeCalibration:
    all_types: GainMap  # for types with fewer than min_questions dev questions
    by_type: dict[str, GainMap] = field(default_factory=dict)
    min_questions: int = 100
    center: float = 0.0  # squash(score) = (1 + tanh((score - center) / spread)) / 2
    spread: float = 1.0

    @classmethod
    def fit(cls, score: Sequence[float], student_correct: Sequence[float], teacher_correct: Sequence[float],
            types: Sequence[str], min_questions: int) -> "TypeCalibration":
        """Maps fitted on dev scores that no model fitted on the same question produced
        (out-of-fold), so they describe the score as it behaves on new questions."""
        c = np.asarray(score, dtype=float)
        gain = np.asarray(teacher_correct, dtype=float) - np.asarray(student_correct, dtype=float)
        kinds = np.asarray(types, dtype=object)
        by_type = {}
        for name in sorted(set(types)):
            sel = kinds == name
            if sel.sum() >= min_questions:
                by_type[str(name)] = GainMap.fit(c[sel], gain[sel])
        finite = c[np.isfinite(c)]
        center = float(np.median(finite)) if finite.size else 0.0
        q75, q25 = (np.percentile(finite, [75, 25]) if finite.size else (1.0, 0.0))
        spread = float(q75 - q25) if q75 > q25 else 1.0
        return cls(GainMap.fit(c, gain), by_type, min_questions, center, spread)

    def transform(self, score: Sequence[float], types: Sequence[str]) -> np.ndarray:
        c = np.asarray(score, dtype=float)
        if c.size != len(types):
            raise ValueError(f"{len(types)} question types for {c.size} scores")
        gain = np.empty(c.size)
        kinds = np.asarray(types, dtype=object)
        rest = np.ones(c.size, dtype=bool)
        for name, m in self.by_type.items():
            sel = kinds == name
            gain[sel] = m(c[sel])
            rest &= ~sel
        gain[rest] = self.all_types(c[rest])
        with np.errstate(invalid="ignore"):
            squash = 0.5 * (1.0 + np.tanh((c - self.center) / self.spread))
        out = -gain + STEP * squash
        return np.where(np.isfinite(c), out, c)

    def transform_one(self, score: float, question_type: str) -> float:
        return float(self.transform([score], [question_type])[0])

    def to_dict(self) -> dict[str, Any]:
        return {"all_types": self.all_types.to_dict(), "by_type": {k: v.to_dict() for k, v in self.by_type.items()},
                "min_questions": self.min_questions, "center": self.center, "spread": self.spread}
