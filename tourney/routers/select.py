"""`--signals auto`: choose the router's signals on the dev set by cross-validated APGR.

A logistic regression over every available signal predicts "the student is right" best in log
loss, but that is not what routing needs: question features that flag hard questions flag them for
the teacher too, and one noisy feature can reorder the confident end of the ranking. So the set of
signals is itself chosen on dev, the way a user would choose it, but without looking at held-out
data: every single available signal, and combined routers over natural groups of them, are scored
by the APGR of their out-of-fold confidences (K folds, seeded, averaged over a few fold
assignments; a single signal needs no fitting, so its dev confidence is already out-of-fold).
A discrete signal (self-consistency over five samples takes six values) is also tried with its
ties broken by a regression over the others (CombinedRouter's `primary`). The best candidate
wins; on a tie, the one with fewer signals. A discrete signal alone is scored for reference but
never chosen: a teacher-share target that falls inside one of its ties cannot be met (its
tie-broken version keeps its order and can).
The table of every candidate's score is kept in ROUTER.json.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tourney.errors import DataError
from tourney.harness.jsonl import json_safe
from tourney.routers.combined import CannotFit, CombinedRouter
from tourney.routers.metrics import apgr, auroc, routing_curve
from tourney.routers.rundata import RoutingData
from tourney.routers.signals import QUESTION_FEATURES

# Natural groups; a combined candidate is made of the available members of each (if 2 or more).
SAMPLE_GROUP = ("answer_agreement", "self_consistency", "answer_agreement_entropy")
LOGPROB_GROUP = ("mean_logprob", "min_logprob", "answer_logprob_mean", "answer_logprob_min", "entropy_proxy")
CHOICE_GROUP = ("mc_probability", "mc_margin")
LENGTH_GROUP = ("length", "mean_length")
MAX_DISCRETE = 50  # a signal with at most this many distinct dev values is tried tie-broken


@dataclass(frozen=True)
class Candidate:
    signals: tuple[str, ...]
    primary: str | None = None  # a tie-broken signal: the regression over `signals` orders its ties
    apgr: float = math.nan  # of the out-of-fold confidences on dev (NaN when dev has no accuracy gap)
    auroc: float = math.nan  # same confidences, for student correctness
    eligible: bool = True  # False for a discrete signal alone (reference only; see module doc)

    @property
    def name(self) -> str:
        if self.primary is not None:
            return f"{self.primary} (ties: {'+'.join(s for s in self.signals if s != self.primary)})"
        return "+".join(self.signals)

    def to_dict(self) -> dict:
        return json_safe({"signals": list(self.signals), "primary": self.primary, "cv_apgr": self.apgr,
                          "cv_auroc": self.auroc, "eligible": self.eligible})


def candidates(dev: RoutingData) -> list[Candidate]:
    """Every single signal; each discrete one with its ties broken by all the others; then
    combined sets: each group, the agreement group with length and with logprobs, the model's
    own signals (no question features), and everything. Duplicates removed, order kept."""
    avail = dev.available_signals()
    pick = lambda names: tuple(n for n in avail if n in names)  # noqa: E731
    own = tuple(n for n in avail if n not in QUESTION_FEATURES)
    out: list[Candidate] = []
    for n in avail:
        values = dev.signal_confidence(n)
        discrete = np.unique(values[np.isfinite(values)]).size <= MAX_DISCRETE
        out.append(Candidate((n,), eligible=not discrete or len(avail) == 1))
        if discrete and len(avail) >= 2:
            out.append(Candidate(tuple(avail), primary=n))
    for group in (pick(SAMPLE_GROUP), pick(LOGPROB_GROUP), pick(CHOICE_GROUP),
                  pick(SAMPLE_GROUP + LENGTH_GROUP), pick(SAMPLE_GROUP + LOGPROB_GROUP), own, tuple(avail)):
        if len(group) >= 2:
            out.append(Candidate(group))
    seen: set = set()
    return [c for c in out if not ((c.signals, c.primary) in seen or seen.add((c.signals, c.primary)))]


def out_of_fold(dev: RoutingData, names: Sequence[str], *, folds: int, seed: int, l2: float,
                primary: str | None = None) -> np.ndarray:
    """Confidence of each dev question from a router that did not see it (folds by `seed`)."""
    if len(names) == 1:
        return dev.signal_confidence(names[0])
    y = dev.student_correct.astype(bool)
    fold = np.empty(dev.n, dtype=int)
    fold[np.random.default_rng(seed).permutation(dev.n)] = np.arange(dev.n) % folds
    conf = np.empty(dev.n)
    for k in range(folds):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        model = CombinedRouter.fit([dev.features[i] for i in train], y[train], names, l2=l2, primary=primary)
        conf[test] = model.predict([dev.features[i] for i in test])
    return conf


def routing_scores(dev: RoutingData, conf: np.ndarray) -> tuple[float, float]:
    s, t = dev.student_correct, dev.teacher_correct
    curve = routing_curve(conf, s, t)
    return apgr(curve, float(s.mean()), float(t.mean())), auroc(conf, s)


def select_signals(dev: RoutingData, *, folds: int = 5, repeats: int = 3, seed: int = 0,
                   l2: float = 1.0) -> list[Candidate]:
    """Every candidate with its cross-validated scores, best first; the first eligible one is
    the choice (`chosen`)."""
    if not dev.available_signals():
        raise DataError(f"no signal has a value on the dev run {dev.student_run}")
    y = dev.student_correct
    if dev.n < 2 * folds or y.min() == y.max():
        raise DataError(f"choosing signals by {folds}-fold cross-validation needs at least {2 * folds} dev "
                         "questions, some answered right by the student and some wrong; pass --signals")
    scored = []
    for c in candidates(dev):
        try:  # the mean over `repeats` fold assignments: one split alone is a noisy judge
            runs = [routing_scores(dev, out_of_fold(dev, c.signals, folds=folds, seed=seed + r, l2=l2, primary=c.primary))
                    for r in range(repeats if len(c.signals) > 1 else 1)]
        except CannotFit:  # a training fold with one class only: this set cannot be fitted
            continue
        scored.append(Candidate(c.signals, c.primary, float(np.mean([a for a, _ in runs])),
                                float(np.mean([u for _, u in runs])), eligible=c.eligible))

    def key(c: Candidate):
        # APGR first; AUROC where dev has no gap (APGR NaN); fewer signals on a tie.
        main = c.apgr if math.isfinite(c.apgr) else -math.inf
        second = c.auroc if math.isfinite(c.auroc) else -math.inf
        return (-round(main, 9), -round(second, 9), len(c.signals))

    scored.sort(key=key)
    return scored


def chosen(table: Sequence[Candidate]) -> Candidate:
    """The best eligible candidate; the best of all when no combined set could be fitted (every
    fold held one class only), so a discrete signal alone is still better than nothing."""
    return next((c for c in table if c.eligible), table[0])
