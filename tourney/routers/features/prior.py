"""A question-difficulty prior learned from other pairs (`route calibrate --prior-runs DIR...`).

RouteLLM's observation is that what makes a question hard transfers between models: a question
that other students and teachers failed is likely hard for a new pair too. A team with recorded
runs of other models on the same or similar questions can therefore route a new pair well from
few dev questions of its own.

The prior is one logistic regression over hashed word n-grams of the question (routers.fitting.linear,
the same hashing as the question routers), fitted on the sample-0 outcomes of every given run
pooled (a question several runs answered counts once per run). Lightly penalised (PRIOR_L2), it
all but recalls a question it was fitted on (the same text: the same n-grams) and falls back on
similar wording for new ones. Its predicted accuracy is the question feature `prior_accuracy`
(larger = easier), read by fitted routers like any other signal and chosen or not by the same
cross-validation; without prior runs the feature has no value and is never offered. The fitted
prior is saved inside the router that reads it (ROUTER.json `prior`), so submit, serve and route
eval compute the same value from the question text alone.

Which value a dev question gets at calibration depends on the questions that will be routed
(`route calibrate --prior-covers`):
- `new` (the default: a tournament, whose questions no run has seen): a dev question the prior
  was fitted on gets the value of a prior fitted without it (`dev_accuracy`: PRIOR_FOLDS folds by
  question text, out of fold), as a new question will. A router fitted on recalled values learns to
  trust `prior_accuracy` as if every question had been seen, and over-trusts the similar-wording
  guess a new question gets: on the two recorded MMLU-Pro pairs, with the other pair's runs on the
  calibration half as prior, held-out APGR fell below no prior at all (benchmarks/RESULTS.md,
  issue 23, "A prior that covers the dev questions only");
- `seen` (the prior's runs cover the questions routed too: another team's records of the same
  public benchmark): dev questions get the recalled value, as the routed ones will, which is what
  lets few dev questions route well.
Routing always computes the same value (`accuracy`), so a router file is the same either way.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tourney.errors import ConfigError
from tourney.routers.fitting.linear import LinearModel

PRIOR_FEATURE = "prior_accuracy"
PRIOR_L2 = 0.1
PRIOR_FOLDS = 5


@dataclass
class DifficultyPrior:
    model: LinearModel  # text only: P(a model answers right | the question's words)
    n_rows: int  # question outcomes it was fitted on, over all runs
    runs: tuple[str, ...] = ()  # where they came from (for the record)
    # question text -> the accuracy a prior fitted without it predicts (fit only; never saved)
    out_of_fold: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def fit(cls, run_dirs: Sequence[str | Path], l2: float = PRIOR_L2) -> "DifficultyPrior":
        from tourney.harness.rundir import RunDir

        texts, y = [], []
        for run in run_dirs:
            for rows in RunDir(run).rows_by_question().values():
                first = rows[0]
                texts.append(first.question)
                y.append(float(bool(first.correct) and first.error is None))
        if not texts or min(y) == max(y):
            raise ConfigError(f"--prior-runs {', '.join(map(str, run_dirs))}: need questions answered both right "
                              "and wrong to learn a difficulty prior")
        y_all = np.asarray(y)
        model = LinearModel.fit([{}] * len(texts), y_all, [], l2=l2, texts=texts)
        return cls(model, len(texts), tuple(str(r) for r in run_dirs), _out_of_fold(texts, y_all, l2))

    def accuracy(self, texts: Sequence[str]) -> np.ndarray:
        """The prior's value for each question, as routing computes it (recalled where it was fitted on it)."""
        return self.model.predict([{}] * len(texts), list(texts))

    def dev_accuracy(self, texts: Sequence[str]) -> np.ndarray:
        """The value a router is fitted on: out of fold for the questions the prior was fitted on
        (module doc), as for any new question elsewhere."""
        acc = self.accuracy(texts)
        for i, t in enumerate(texts):
            if t in self.out_of_fold:
                acc[i] = self.out_of_fold[t]
        return acc

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "n_rows": self.n_rows, "runs": list(self.runs)}


def _out_of_fold(texts: list[str], y: np.ndarray, l2: float) -> dict[str, float]:
    """Each distinct text's predicted accuracy from a prior fitted on the folds without it. The
    fold is the text's hash: every run's row of one question lands in the same fold, and the same
    runs give the same folds everywhere."""
    fold = np.array([hashlib.sha1(t.encode("utf-8")).digest()[0] % PRIOR_FOLDS for t in texts])
    out: dict[str, float] = {}
    for k in range(PRIOR_FOLDS):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        if test.size == 0:
            continue
        yk = y[train]
        ask = list(dict.fromkeys(texts[i] for i in test))
        if yk.size == 0 or yk.min() == yk.max():  # too few runs to learn from the other folds
            pred = np.full(len(ask), float(LinearModel.constant(yk).predict([{}])[0]) if yk.size else 0.5)
        else:
            m = LinearModel.fit([{}] * train.size, yk, [], l2=l2, texts=[texts[i] for i in train])
            pred = m.predict([{}] * len(ask), ask)
        out.update(zip(ask, map(float, pred)))
    return out
