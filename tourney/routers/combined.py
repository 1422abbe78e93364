"""A logistic regression over several signals: P(the student is right | signals) as confidence.

Fitted on a development set with numpy alone (Newton's method, i.e. IRLS, on the L2-penalised
log loss). It starts from zero and has no random step, so the same data give the same weights
bit for bit; no seed is needed.

Data conventions, each chosen so that a missing signal never silently fakes information:
- a signal that is None (or NaN/inf) for EVERY dev question is unavailable from this backend: it
  is dropped and listed in `unavailable`, and later values of it are ignored;
- a signal missing for SOME questions is imputed with its training mean, which after
  standardisation is 0, so a missing value moves the prediction neither way;
- features are standardised with the mean and standard deviation of their observed dev values
  (a constant feature keeps scale 1 and gets weight 0 from the penalty).

With a `primary` signal the regression only breaks that signal's ties: the confidence is the
primary's oriented value plus `primary_step` times the predicted probability, and primary_step is
half the smallest gap between the primary's distinct dev values, so the primary's order is kept
and the questions it cannot tell apart (five samples that all agree) are ordered by the rest.
A discrete signal alone cannot be calibrated to a teacher share that falls inside a tie (20% of
the questions at one value means 0% or 20%, nothing between); the tie-broken one can. Where the
primary is missing the confidence is -inf (no evidence: escalate), as for a single signal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from tourney.errors import DataError
from tourney.harness.types import SampleResult
from tourney.routers.signals import ChoiceLogliks, FEATURE_NAMES, check_names, compute_signals, oriented

KIND = "logistic_regression"


class CannotFit(DataError):
    """The dev data cannot fit a combined router (one class only, or none of the signals present).
    Signal selection skips such a candidate; anything else that goes wrong in a fit is a bug."""


def _value(x: Any) -> float:
    """A feature value as float; None and non-finite values become NaN (missing)."""
    if x is None:
        return math.nan
    v = float(x)
    return v if math.isfinite(v) else math.nan


def _objective(a: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> float:
    # log(1 + e^a) - y a, the log loss in its overflow-free form, plus the penalty on weights
    return float(np.sum(np.logaddexp(0.0, a) - y * a) + 0.5 * l2 * np.dot(w, w))


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # = 1 / (1 + e^-a), without overflow warnings


def fit_logistic(z: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 100,
                 tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """(weights, bias) minimising sum log-loss + l2/2 |weights|^2; the bias is not penalised.

    z: (n, d) standardised features; y: (n,) in {0, 1}. Newton steps with backtracking, so every
    step lowers the objective; the penalty keeps the Hessian positive definite and the weights
    finite even on separable data.
    """
    n, d = z.shape
    a_mat = np.hstack([np.ones((n, 1)), z])  # column 0 is the bias
    penalty = np.full(d + 1, float(l2))
    penalty[0] = 0.0
    theta = np.zeros(d + 1)
    f = _objective(a_mat @ theta, y, theta[1:], l2)
    for _ in range(max_iter):
        p = _sigmoid(a_mat @ theta)
        grad = a_mat.T @ (p - y) + penalty * theta
        if np.max(np.abs(grad)) < tol:
            break
        hess = a_mat.T @ (a_mat * (p * (1 - p))[:, None]) + np.diag(penalty)
        step = np.linalg.solve(hess + 1e-12 * np.eye(d + 1), grad)
        t = 1.0
        while t > 1e-10:  # Armijo backtracking: halve until the objective drops enough
            cand = theta - t * step
            f_new = _objective(a_mat @ cand, y, cand[1:], l2)
            if f_new <= f - 1e-4 * t * float(grad @ step):
                break
            t /= 2
        else:
            break  # no step lowers the objective: at the optimum up to float precision
        theta, f = cand, f_new
        if np.max(np.abs(t * step)) < tol:
            break
    return theta[1:], float(theta[0])


@dataclass
class CombinedRouter:
    """Logistic regression over `features` (signal or question-feature names, see signals.py)."""

    features: list[str]  # the features used, in weight order
    mean: list[float]  # training mean of each feature (also its imputed value)
    scale: list[float]  # training standard deviation (1 for a constant feature)
    weights: list[float]  # per standardised feature
    bias: float
    l2: float = 1.0
    unavailable: list[str] = field(default_factory=list)  # asked for, but absent on the dev set
    primary: str | None = None  # when set, the regression only breaks this signal's ties
    primary_step: float = 0.0  # < half the smallest gap between the primary's distinct dev values

    def __post_init__(self) -> None:
        check_names(self.features)
        if self.primary is not None and (self.primary not in self.features or not self.primary_step > 0):
            raise ValueError("field 'primary': must be one of the features, with primary_step > 0")
        d = len(self.features)
        for name in ("mean", "scale", "weights"):
            if len(getattr(self, name)) != d:
                raise ValueError(f"field {name!r}: expected {d} values, one per feature")
        if any(s <= 0 for s in self.scale):
            raise ValueError("field 'scale': every value must be positive")

    @classmethod
    def fit(cls, feature_rows: Sequence[Mapping[str, float | None]], correct: Sequence[bool],
            names: Sequence[str], *, l2: float = 1.0, max_iter: int = 100,
            primary: str | None = None) -> "CombinedRouter":
        """Fit on dev questions: one mapping of feature values per question (compute_signals gives
        it) and whether the student got that question right. With `primary`, the model breaks
        that signal's ties (module doc); it must be among `names` and available on dev."""
        check_names(names)
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0 (it keeps separable data finite), got {l2}")
        if len(feature_rows) != len(correct):
            raise ValueError(f"{len(feature_rows)} feature rows for {len(correct)} labels")
        y = np.asarray(correct, dtype=float)
        if y.size == 0 or y.min() == y.max():
            raise CannotFit("fitting a router needs dev questions the student got right AND wrong")
        raw = np.array([[_value(row.get(n)) for n in names] for row in feature_rows], dtype=float)
        raw = raw.reshape(len(feature_rows), len(names))
        present = ~np.isnan(raw).all(axis=0)
        used = [n for n, ok in zip(names, present) if ok]
        if not used:
            raise CannotFit(f"none of the signals {list(names)} is available on this dev set")
        x = raw[:, present]
        mean = np.nanmean(x, axis=0)
        scale = np.nanstd(x, axis=0)
        scale[~(scale > 0)] = 1.0
        z = np.nan_to_num((x - mean) / scale, nan=0.0)  # imputed with the mean: 0 once standardised
        w, b = fit_logistic(z, y, l2, max_iter)
        step = 0.0
        if primary is not None:
            if primary not in used:
                raise ValueError(f"primary signal {primary!r} is not among the available features {used}")
            values = np.unique([v for v in (_value(oriented(primary, row.get(primary))) for row in feature_rows)
                                if not math.isnan(v)])
            step = float(np.min(np.diff(values))) / 2 if values.size > 1 else 1.0
        return cls(features=used, mean=mean.tolist(), scale=scale.tolist(), weights=w.tolist(),
                   bias=b, l2=l2, unavailable=[n for n, ok in zip(names, present) if not ok],
                   primary=primary, primary_step=step)

    def predict(self, feature_rows: Sequence[Mapping[str, float | None]]) -> np.ndarray:
        """P(student right) for each mapping of feature values; missing ones take the mean."""
        x = np.array([[_value(row.get(n)) for n in self.features] for row in feature_rows], dtype=float)
        x = x.reshape(len(feature_rows), len(self.features))
        z = np.nan_to_num((x - np.asarray(self.mean)) / np.asarray(self.scale), nan=0.0)
        p = _sigmoid(self.bias + z @ np.asarray(self.weights))
        if self.primary is None:
            return p
        # 0.999: p may round to 1.0, which must stay below the next primary value, not reach it
        first = np.array([_value(oriented(self.primary, row.get(self.primary))) for row in feature_rows], dtype=float)
        return np.where(np.isnan(first), -np.inf, first + 0.999 * self.primary_step * p)

    def confidence_from_features(self, values: Mapping[str, float | None]) -> float:
        return float(self.predict([values])[0])

    def confidence(self, rows: Sequence[SampleResult], *, choice_logliks: ChoiceLogliks = None,
                   question_text: str | None = None) -> float:
        """P(student right) for one question's student samples."""
        values = compute_signals(rows, self.features, choice_logliks=choice_logliks,
                                 question_text=question_text)
        return self.confidence_from_features(values)

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": KIND, "features": list(self.features), "unavailable": list(self.unavailable),
             "mean": list(self.mean), "scale": list(self.scale), "weights": list(self.weights),
             "bias": self.bias, "l2": self.l2}
        if self.primary is not None:
            d.update(primary=self.primary, primary_step=self.primary_step)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "CombinedRouter":
        """Inverse of to_dict; a bad field raises ValueError naming it."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object for the model, got {type(d).__name__}")
        if d.get("kind") != KIND:
            raise ValueError(f"field 'kind': expected {KIND!r}, got {d.get('kind')!r}")

        def numbers(name: str) -> list[float]:
            v = d.get(name)
            if not isinstance(v, list) or not all(_is_number(x) for x in v):
                raise ValueError(f"field {name!r}: expected a list of numbers, got {v!r:.80}")
            return [float(x) for x in v]

        def names(name: str, default: list[str] | None = None) -> list[str]:
            v = d.get(name, default)
            ok = isinstance(v, list) and all(isinstance(x, str) and x in FEATURE_NAMES for x in v)
            if not ok or (default is None and not v):
                raise ValueError(f"field {name!r}: expected a list of signal names, got {v!r:.80}")
            return list(v)

        for name in ("bias", "l2") + (("primary_step",) if "primary" in d else ()):
            if not _is_number(d.get(name)):
                raise ValueError(f"field {name!r}: expected a number, got {d.get(name)!r:.80}")
        primary = d.get("primary")
        if primary is not None and primary not in FEATURE_NAMES:
            raise ValueError(f"field 'primary': expected a signal name, got {primary!r:.80}")
        return cls(features=names("features"), mean=numbers("mean"), scale=numbers("scale"),
                   weights=numbers("weights"), bias=float(d["bias"]), l2=float(d["l2"]),
                   unavailable=names("unavailable", []), primary=primary,
                   primary_step=float(d["primary_step"]) if primary is not None else 0.0)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
