"""Route by what a teacher call buys: the expected gain P(teacher right) - P(student right).

Escalating question i changes the cascade's accuracy by t_i - s_i (1 when only the teacher is
right, -1 when only the student is). Its expectation given what is known at routing time is

    E[t - s] = P(t, not s) - P(s, not t) = P(t) - P(s),

whatever the dependence between the two models' errors, so it needs two ordinary classifiers:
one for the student's correctness and one for the teacher's, both fitted on dev questions that
both models answered, from the same features (question features, the student's samples and its
written solution: routers.features.signals). Ranking by this gain, largest first, is the order the oracle
uses (routers.evaluation.metrics.oracle_curve) with estimates in place of the truth. A router that predicts
"the student is wrong" alone escalates questions on which the teacher fails too; on real pairs
those are many (hard questions are hard for both).

The score kept is the negated gain (in [-1, 1]; larger = keep with the student), so the cascade's
rule `score < threshold` and every calibration work on it unchanged. With `primary`, the gain
only orders the ties of one discrete signal (routers.fitting.scores.tie_broken). With question texts the
two models also read hashed word n-grams (routers.fitting.linear): fitted on question features and text
alone, this is the pre-router, known before the student answers (routers.fitting.scores.question_only).

A router that reads the student's answer (`split_gain`) averages this estimate with a second one
of the same quantity, written through the questions where routing matters:

    E[t - s] = P(t != s) * (2 P(t | t != s) - 1),

a model of whether the two disagree and one of which of them is right when they do, fitted on the
disagreeing dev questions alone (a third to a half of them on the MMLU-Pro pairs). The second
model spends its weights on what tells a teacher win from a student win, which the two
marginal models learn only through their difference; the two estimates err differently, and
their mean ranked better. Measured on recorded MMLU-Pro outputs over random 50/50 splits used
both ways (benchmarks/RESULTS.md, issue 23, "the gain estimated twice"), held-out APGR against the
marginal estimate alone: +0.006 and +0.008 on Mistral-7B -> Mixtral (better in 19 of 20
evaluations), -0.001 and -0.002 on Qwen1.5-7B -> 72B (two seeds), and on the two crossed pairs
nothing was tuned on +0.000 and +0.007. A file without the two models scores as it was fitted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tourney.harness.types import SampleResult
from tourney.routers.features.documents import QUESTION_TEXT, DocumentForm
from tourney.routers.fitting.linear import FeatureRows, LinearModel
from tourney.routers.fitting.scores import score_question, step_between, tie_broken
from tourney.routers.features.signals import ChoiceLogliks, check_names

KIND = "expected_gain"
SPLIT_L2 = 3.0  # the disagreement and winner models' penalty (their labels are fewer and cleaner)


@dataclass
class GainRouter:
    """-(P(teacher right) - P(student right)) from two logistic regressions."""

    student: LinearModel  # P(student right)
    teacher: LinearModel  # P(teacher right)
    primary: str | None = None
    primary_step: float = 0.0
    prior: Any = None  # routers.features.prior.DifficultyPrior, when it reads `prior_accuracy`
    discord: LinearModel | None = None  # P(teacher and student disagree) (split_gain)
    winner: LinearModel | None = None  # P(teacher right | they disagree) (split_gain)
    # routers.features.option_guess.OptionGuesser: gives new questions' documents their `g_`
    # tokens (the dev documents it was fitted beside had out-of-fold ones); None: no such tokens
    guesser: Any = None
    kind = KIND

    def __post_init__(self) -> None:
        check_names(self.features)
        if self.primary is not None and (self.primary not in self.features or not self.primary_step > 0):
            raise ValueError("field 'primary': must be one of the features, with primary_step > 0")
        if (self.discord is None) != (self.winner is None):
            raise ValueError("fields 'discord' and 'winner': both or neither")

    @property
    def models(self) -> list[LinearModel]:
        return [m for m in (self.student, self.teacher, self.discord, self.winner) if m is not None]

    @property
    def features(self) -> list[str]:
        return list(dict.fromkeys(f for m in self.models for f in m.features))

    @property
    def reads_text(self) -> bool:
        return any(m.text is not None for m in self.models)

    @property
    def document_form(self) -> DocumentForm:
        """What its texts are: the question's, or routers.features.documents in one form."""
        return DocumentForm.widest([m.document_form for m in self.models])

    @classmethod
    def fit(cls, feature_rows: FeatureRows, student_correct: Sequence[bool], teacher_correct: Sequence[bool],
            names: Sequence[str], *, l2: float = 1.0, texts: Sequence[str] | None = None,
            primary: str | None = None, document: DocumentForm = QUESTION_TEXT,
            split_gain: bool = False) -> "GainRouter":
        """Fit both models on the same dev questions and features (texts: the question texts, or
        documents in the `document` form, for a model that reads n-grams too); with `split_gain`,
        the disagreement and winner models too (module doc)."""
        check_names(names)

        def one(y: np.ndarray, idx: np.ndarray | None = None, penalty: float = l2) -> LinearModel:
            if idx is not None and idx.size == 0:  # never disagree on dev: the winner is a coin
                return LinearModel.constant(np.array([0.0, 1.0]), names)
            rows = feature_rows if idx is None else [feature_rows[i] for i in idx]
            txt = texts if idx is None or texts is None else [texts[i] for i in idx]
            y = y if idx is None else y[idx]
            if y.size and y.min() == y.max():  # e.g. a teacher right on every dev question
                return LinearModel.constant(y, names)
            return LinearModel.fit(rows, y, names, l2=penalty, texts=txt, document=document)

        sy, ty = np.asarray(student_correct, dtype=float), np.asarray(teacher_correct, dtype=float)
        s, t = one(sy), one(ty)
        discord = winner = None
        if split_gain:
            apart = sy != ty
            discord = one(apart.astype(float), penalty=SPLIT_L2)
            winner = one(ty, np.flatnonzero(apart), penalty=SPLIT_L2)
        step = 0.0
        if primary is not None:
            if primary not in s.features + t.features:
                raise ValueError(f"primary signal {primary!r} is not among the available features {s.features}")
            step = step_between(feature_rows, primary)
        return cls(s, t, primary=primary, primary_step=step, discord=discord, winner=winner)

    def expected_gain(self, feature_rows: FeatureRows, texts: Sequence[str] | None = None) -> np.ndarray:
        gain = self.teacher.predict(feature_rows, texts) - self.student.predict(feature_rows, texts)
        if self.discord is None or self.winner is None:
            return gain
        split = self.discord.predict(feature_rows, texts) * (2.0 * self.winner.predict(feature_rows, texts) - 1.0)
        return 0.5 * (gain + split)

    def predict(self, feature_rows: FeatureRows, texts: Sequence[str] | None = None) -> np.ndarray:
        score = -self.expected_gain(feature_rows, texts)
        if self.primary is None:
            return score
        return tie_broken(feature_rows, self.primary, self.primary_step, (score + 1.0) / 2.0)

    def confidence(self, rows: Sequence[SampleResult], *, choice_logliks: ChoiceLogliks = None,
                   question_text: str | None = None) -> float:
        return score_question(self, rows, choice_logliks=choice_logliks, question_text=question_text)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": KIND, "student": self.student.to_dict(), "teacher": self.teacher.to_dict()}
        if self.primary is not None:
            d.update(primary=self.primary, primary_step=self.primary_step)
        if self.prior is not None:
            d["prior"] = self.prior.to_dict()
        if self.discord is not None and self.winner is not None:
            d.update(discord=self.discord.to_dict(), winner=self.winner.to_dict())
        if self.guesser is not None:
            d["guesser"] = self.guesser.to_dict()
        return d
