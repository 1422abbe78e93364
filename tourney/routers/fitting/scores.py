"""A fitted router's score: one number per question, read from its features (and, for question
routers, its text). Larger means "keep with the student"; the cascade escalates the lowest.

Two kinds implement `Scorer`: routers.fitting.combined (P(the student is right)) and routers.fitting.gain
(minus the expected gain of asking the teacher). Both may break the ties of one discrete
`primary` signal instead of ranking on their own (see `tie_broken`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from tourney.harness.types import SampleResult
from tourney.routers.features.documents import QUESTION_TEXT, DocumentForm, rows_document
from tourney.routers.fitting.linear import FeatureRows, value
from tourney.routers.features.signals import ChoiceLogliks, QUESTION_FEATURES, compute_signals, oriented


class Scorer(Protocol):
    kind: str

    @property
    def features(self) -> list[str]: ...  # the signals and question features it reads

    @property
    def reads_text(self) -> bool: ...  # it reads the question's words

    @property
    def document_form(self) -> DocumentForm: ...  # its texts: the question's, or routers.features.documents

    def predict(self, rows: FeatureRows, texts: Sequence[str] | None = None) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


def question_only(scorer: Scorer) -> bool:
    """Whether the score is known before the student answers (question features and text only)."""
    return all(f in QUESTION_FEATURES for f in scorer.features) and not document_form(scorer).answer


def document_form(scorer: Scorer) -> DocumentForm:
    """What its texts are (routers.features.documents.DocumentForm); the question's text for a
    scorer without one."""
    return getattr(scorer, "document_form", QUESTION_TEXT)


def scorer_texts(scorer: Scorer, texts: Sequence[str],
                 documents: Callable[[DocumentForm, Any], Sequence[str]]) -> list[str]:
    """What the scorer's hashed n-grams read: the question texts, or the documents
    (routers.features.documents) in the form it was fitted on: `documents(form, guesser)` gives
    them, the option guesser's tokens from the scorer's own guesser."""
    form = document_form(scorer)
    return list(documents(form, getattr(scorer, "guesser", None))) if form.answer else list(texts)


def score_question(scorer: Scorer, rows: Sequence[SampleResult], *, choice_logliks: ChoiceLogliks = None,
                   question_text: str | None = None) -> float:
    """The score of one question from its student samples (none needed for a question-only
    scorer: pass `question_text`)."""
    text = question_text if question_text is not None else min(rows, key=lambda r: r.sample).question
    prior = getattr(scorer, "prior", None)
    if rows:
        values: Mapping[str, float | None] = compute_signals(rows, scorer.features, choice_logliks=choice_logliks,
                                                             question_text=text, prior=prior)
    else:
        values = compute_signals([], [f for f in scorer.features if f in QUESTION_FEATURES], question_text=text,
                                 prior=prior)
    form = document_form(scorer)
    if form.answer:
        guesser = getattr(scorer, "guesser", None)
        guess = guesser.tokens(min(rows, key=lambda r: r.sample)) if form.guess and guesser and rows else ()
        text = rows_document(rows, text, form=form, guess=guess)
    return float(scorer.predict([values], [text])[0])


def step_between(rows: FeatureRows, primary: str) -> float:
    """Half the smallest gap between the primary signal's distinct oriented values (1 with one
    value): a tie-breaker scaled below it can never reorder two of its values."""
    values = np.unique([v for v in (value(oriented(primary, r.get(primary))) for r in rows) if not math.isnan(v)])
    return float(np.min(np.diff(values))) / 2 if values.size > 1 else 1.0


def tie_broken(rows: FeatureRows, primary: str, step: float, u: np.ndarray) -> np.ndarray:
    """The primary signal's oriented value plus `step` times u in [0, 1]: the primary's order
    is kept and u orders its ties. 0.999 keeps u = 1 strictly below the next primary value.
    Where the primary is missing: -inf (no evidence, escalate), as for a single signal."""
    first = np.array([value(oriented(primary, r.get(primary))) for r in rows], dtype=float)
    return np.where(np.isnan(first), -np.inf, first + 0.999 * step * u)
