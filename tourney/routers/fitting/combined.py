"""A logistic regression over several signals: P(the student is right | signals) as confidence.

The fitting and the saved numbers are routers.fitting.linear's (scikit-learn's L2-penalised logistic
regression, exported as means, scales and weights; missing values imputed with the training
mean, signals absent on the whole dev set dropped and listed in `unavailable`).

With a `primary` signal the regression only breaks that signal's ties: the confidence is the
primary's oriented value plus `primary_step` times the predicted probability, and primary_step is
half the smallest gap between the primary's distinct dev values, so the primary's order is kept
and the questions it cannot tell apart (five samples that all agree) are ordered by the rest.
A discrete signal alone cannot be calibrated to a teacher share that falls inside a tie (20% of
the questions at one value means 0% or 20%, nothing between); the tie-broken one can. Where the
primary is missing the confidence is -inf (no evidence: escalate), as for a single signal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from tourney.harness.types import SampleResult
from tourney.routers.features.documents import QUESTION_TEXT, DocumentForm
from tourney.routers.fitting.linear import CannotFit, FeatureRows, LinearModel  # noqa: F401 -- CannotFit re-exported
from tourney.routers.fitting.scores import score_question, step_between, tie_broken
from tourney.routers.features.signals import ChoiceLogliks, check_names

KIND = "logistic_regression"


@dataclass
class CombinedRouter:
    """P(student right) from a logistic regression over signal and question-feature names."""

    linear: LinearModel
    primary: str | None = None  # when set, the regression only breaks this signal's ties
    primary_step: float = 0.0  # < half the smallest gap between the primary's distinct dev values
    prior: Any = None  # routers.features.prior.DifficultyPrior, when it reads `prior_accuracy`
    kind = KIND

    def __post_init__(self) -> None:
        check_names(self.linear.features)
        if self.primary is not None and (self.primary not in self.features or not self.primary_step > 0):
            raise ValueError("field 'primary': must be one of the features, with primary_step > 0")

    # the regression's numbers, as the saved file names them
    features = property(lambda self: self.linear.features)
    mean = property(lambda self: self.linear.mean)
    scale = property(lambda self: self.linear.scale)
    weights = property(lambda self: self.linear.weights)
    bias = property(lambda self: self.linear.bias)
    l2 = property(lambda self: self.linear.l2)
    unavailable = property(lambda self: self.linear.unavailable)
    reads_text = property(lambda self: self.linear.text is not None)
    document_form = property(lambda self: self.linear.document_form)

    @classmethod
    def fit(cls, feature_rows: FeatureRows, correct: Sequence[bool], names: Sequence[str], *,
            l2: float = 1.0, primary: str | None = None, texts: Sequence[str] | None = None,
            document: DocumentForm = QUESTION_TEXT) -> "CombinedRouter":
        """Fit on dev questions: one mapping of feature values per question (compute_signals gives
        it) and whether the student got that question right. With `primary`, the model breaks
        that signal's ties (module doc); it must be among `names` and available on dev."""
        check_names(names)
        linear = LinearModel.fit(feature_rows, np.asarray(correct, dtype=float), names, l2=l2, texts=texts,
                                 document=document)
        step = 0.0
        if primary is not None:
            if primary not in linear.features:
                raise ValueError(f"primary signal {primary!r} is not among the available features {linear.features}")
            step = step_between(feature_rows, primary)
        return cls(linear, primary=primary, primary_step=step)

    def predict(self, feature_rows: FeatureRows, texts: Sequence[str] | None = None) -> np.ndarray:
        """P(student right) for each mapping of feature values (or its tie-broken primary)."""
        p = self.linear.predict(feature_rows, texts)
        return p if self.primary is None else tie_broken(feature_rows, self.primary, self.primary_step, p)

    def confidence_from_features(self, values: Mapping[str, float | None]) -> float:
        return float(self.predict([values])[0])

    def confidence(self, rows: Sequence[SampleResult], *, choice_logliks: ChoiceLogliks = None,
                   question_text: str | None = None) -> float:
        """P(student right) for one question's student samples."""
        return score_question(self, rows, choice_logliks=choice_logliks, question_text=question_text)

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": KIND, **self.linear.to_dict()}
        if self.primary is not None:
            d.update(primary=self.primary, primary_step=self.primary_step)
        if self.prior is not None:
            d["prior"] = self.prior.to_dict()
        return d
