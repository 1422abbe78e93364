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
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tourney.errors import ConfigError
from tourney.routers.fitting.linear import LinearModel

PRIOR_FEATURE = "prior_accuracy"
PRIOR_L2 = 0.1


@dataclass
class DifficultyPrior:
    model: LinearModel  # text only: P(a model answers right | the question's words)
    n_rows: int  # question outcomes it was fitted on, over all runs
    runs: tuple[str, ...] = ()  # where they came from (for the record)

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
        model = LinearModel.fit([{}] * len(texts), np.asarray(y), [], l2=l2, texts=texts)
        return cls(model, len(texts), tuple(str(r) for r in run_dirs))

    def accuracy(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict([{}] * len(texts), list(texts))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "n_rows": self.n_rows, "runs": list(self.runs)}
