"""`--signals auto`: choose the router's score on the dev set by cross-validated APGR.

The candidates, all scored the same way:
- every single available signal (no fitting: its dev value is already out-of-fold);
- confidence routers (routers.fitting.combined: P(the student is right)) over natural groups of signals,
  and each discrete signal with its ties broken by a regression over the others;
- gain routers (routers.fitting.gain: P(teacher right) - P(student right)) over the same groups, and the
  discrete signals with their ties broken by the gain;
- question routers: the gain from question features and hashed question words alone, known
  before the student answers (pre-routing, and the first stage of a two-stage policy).

Each fitted candidate is scored by the APGR of its out-of-fold scores (scikit-learn's repeated
stratified K-fold, stratified by the pair of outcomes; the mean over the repeats: one split
alone is a noisy judge). The best eligible candidate wins; on a tie, the one with fewer signals.
A discrete signal alone is scored for reference but never chosen: a teacher-share target inside
one of its ties cannot be met (its tie-broken version keeps its order and can). A question router
is eligible only when it is better than random on this dev set, by a permutation test: its
cross-validated APGR must beat that of the same procedure on each of PERMUTATIONS copies of dev
whose outcomes are shuffled across questions (p < 0.05; it stops at the first copy that scores
as well, so a useless router costs a few fits). A bootstrap of the out-of-fold scores is not
enough: cross-validated APGRs of a router fitted on noise scatter more widely than resampling
one set of scores shows (on recorded GSM8K outputs a question router passed a bootstrap test on
one half and scored 0.49 on the other). Every candidate's scores are kept in ROUTER.json.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import numpy as np

from tourney.errors import ConfigError, DataError
from tourney.harness.jsonl import json_safe
from tourney.routers.fitting.combined import CannotFit, CombinedRouter
from tourney.routers.fitting.gain import GainRouter
from tourney.routers.evaluation.metrics import apgr, auroc, routing_curve
from tourney.routers.evaluation.rundata import RoutingData
from tourney.routers.fitting.scores import step_between
from tourney.routers.features.documents import FULL_DOCUMENT, QUESTION_TEXT, DocumentForm
from tourney.routers.features.signals import PRIOR_FEATURES, QUESTION_FEATURES
from tourney.routers.features.answer_features import ANSWER_SIGNALS
from tourney.routers.features.solution_features import SOLUTION_SIGNALS

# Natural groups; a combined candidate is made of the available members of each (if 2 or more).
SAMPLE_GROUP = ("answer_agreement", "self_consistency", "answer_agreement_entropy")
LOGPROB_GROUP = ("mean_logprob", "min_logprob", "answer_logprob_mean", "answer_logprob_min", "entropy_proxy")
CHOICE_GROUP = ("mc_probability", "mc_margin")
LENGTH_GROUP = ("length", "mean_length")
SOLUTION_GROUP = tuple(SOLUTION_SIGNALS)
ANSWER_GROUP = tuple(ANSWER_SIGNALS)
ANSWER_L2 = (3.0, 10.0, 30.0)  # penalties tried for the routers that read the answer's words
ANSWER_MIN_QUESTIONS = 1000  # dev questions from which those routers are offered
MAX_DISCRETE = 50  # a signal with at most this many distinct dev values is tried tie-broken
CONFIDENCE, GAIN, SIGNAL = "confidence", "gain", "signal"
PERMUTATIONS = 19  # beating all 19 shuffled copies: p < 0.05


@dataclass(frozen=True)
class Candidate:
    signals: tuple[str, ...]
    primary: str | None = None  # a tie-broken signal: the model over `signals` orders its ties
    kind: str = CONFIDENCE  # "confidence" (one signal alone, or P(student right)) | "gain"
    text: bool = False  # also reads the question's words (a question router)
    apgr: float = math.nan  # of the out-of-fold scores on dev (NaN when dev has no accuracy gap)
    auroc: float = math.nan  # same scores, for student correctness
    eligible: bool = True  # False for a discrete signal alone, or a question router no better than random
    permutations_beaten: int | None = None  # question routers: shuffled copies beaten (of PERMUTATIONS)
    answer: bool = False  # the n-grams read type, question and the student's answer (routers.features.documents)
    l2: float | None = None  # its own penalty (the many n-gram weights want more); None: calibration's

    @property
    def question_only(self) -> bool:
        return all(s in QUESTION_FEATURES for s in self.signals) and not self.answer

    @property
    def document_form(self) -> DocumentForm:
        """What its n-grams read: the documents routers are fitted on now, or the question text."""
        return FULL_DOCUMENT if self.answer else QUESTION_TEXT

    @property
    def name(self) -> str:
        words = "type+question+answer words" if self.answer else "question words" if self.text else ""
        if words and self.l2 is not None:
            words += f" (l2 {self.l2:g})"
        what = {CONFIDENCE: "", GAIN: "gain: "}[self.kind]
        if self.primary is not None:
            rest = "+".join([*([words] if words else []), *(s for s in self.signals if s != self.primary)])
            return f"{self.primary} (ties: {what}{rest})"
        return what + "+".join([*([words] if words else []), *self.signals])

    def to_dict(self) -> dict:
        return json_safe({"name": self.name, "kind": self.kind, "signals": list(self.signals), "primary": self.primary,
                          "text": self.text, "answer": self.answer, "l2": self.l2, "cv_apgr": self.apgr,
                          "cv_auroc": self.auroc, "eligible": self.eligible,
                          "permutations_beaten": self.permutations_beaten})

    def fit(self, dev: RoutingData, l2: float = 1.0) -> CombinedRouter | GainRouter | str:
        """This candidate's router fitted on all of `dev` (a signal's name when nothing is fitted),
        with the option guesser fitted on all of dev where its documents read the guesser's tokens
        (fitted on their out-of-fold ones: routers.features.option_guess)."""
        router = fit_candidate(self, dev, np.arange(dev.n), l2)
        if isinstance(router, GainRouter) and self.document_form.guess:
            router = replace(router, guesser=dev.option_guesser)
        return router


def candidates(dev: RoutingData) -> list[Candidate]:
    """Every single signal; each discrete one tie-broken by all the others (by confidence and by
    gain); confidence and gain routers over each group, the model's own signals and everything;
    the question router. Duplicates removed, order kept."""
    singles = dev.available_signals()
    avail = dev.regression_signals()
    prior = tuple(n for n in avail if n in PRIOR_FEATURES)
    if dev.prior_out_of_fold:
        # A prior for questions its runs have not seen enters only beside the words, through
        # policy_select.prefer_words' two-standard-error test: as one more feature of forty
        # candidates it only added chances for a lucky one (MMLU-Pro, 200 dev questions:
        # a tie-broken score reading it won and lost 0.017 held out, its share 0.35 for 0.5).
        avail = [n for n in avail if n not in PRIOR_FEATURES]
    pick = lambda names: tuple(n for n in avail if n in names)  # noqa: E731
    own = tuple(n for n in avail if n not in QUESTION_FEATURES)
    out: list[Candidate] = []
    for n in singles:
        if n in PRIOR_FEATURES:  # read inside a fitted router, which carries the prior it comes from
            continue
        values = dev.signal_confidence(n)
        discrete = np.unique(values[np.isfinite(values)]).size <= MAX_DISCRETE
        out.append(Candidate((n,), eligible=not discrete or len(avail) == 1))
        # A MIXED_SIGNALS score is never a regression feature, so no regression can break its ties
        if discrete and len(avail) >= 2 and n in avail:
            out.append(Candidate(tuple(avail), primary=n))
            if n in SAMPLE_GROUP:
                out.append(Candidate(tuple(avail), primary=n, kind=GAIN))
    groups = [pick(SAMPLE_GROUP), pick(LOGPROB_GROUP), pick(CHOICE_GROUP), pick(SAMPLE_GROUP + LENGTH_GROUP),
              pick(SAMPLE_GROUP + LOGPROB_GROUP), own, tuple(avail)]
    for group in groups:
        if len(group) >= 2:
            out.append(Candidate(group))
    for group in [pick(SAMPLE_GROUP + LENGTH_GROUP + SOLUTION_GROUP), *groups[1:]]:
        if len(group) >= 2 or (group and group[0] not in QUESTION_FEATURES):
            out.append(Candidate(group, kind=GAIN))
    out.append(Candidate(pick(QUESTION_FEATURES), kind=GAIN, text=True))
    # Gain routers that read the words of the type, the question and the student's answer, alone
    # or beside every dense signal: any question form, nothing assumed about arithmetic. Tens of
    # thousands of n-gram weights on a few thousand questions want a stronger penalty than a
    # dozen signals; which one is chosen by the same cross-validation (ANSWER_L2).
    # (with a difficulty prior from other pairs, also with its `prior_accuracy` beside the words:
    # routers.fitting.policy_select.prefer_words keeps it only where it helps). Offered from
    # ANSWER_MIN_QUESTIONS dev questions: below, the n-gram weights are fitted from too few
    # questions to carry over (a threshold set on their out-of-fold scores missed a 0.3 share by
    # 7.7 points on 600 miniature dev questions; on GSM8K's 327-question folds they cost APGR).
    for l2 in ANSWER_L2 if dev.n >= ANSWER_MIN_QUESTIONS else ():
        out.append(Candidate((), kind=GAIN, text=True, answer=True, l2=l2))
        out.append(Candidate(prior, kind=GAIN, text=True, answer=True, l2=l2))
        out.append(Candidate(tuple(avail), kind=GAIN, text=True, answer=True, l2=l2))
    seen: set = set()
    ident = lambda c: (c.kind, c.signals, c.primary, c.text, c.answer, c.l2)  # noqa: E731
    return [c for c in out if not (ident(c) in seen or seen.add(ident(c)))]


def fold_splits(dev: RoutingData, folds: int, repeats: int, seed: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(repeat, train, test) index arrays: repeated K-fold, stratified by the pair of outcomes
    when every pair has at least `folds` questions (else plain shuffled K-fold)."""
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    if dev.n < folds:
        raise CannotFit(f"{folds}-fold cross-validation needs at least {folds} dev questions, got {dev.n}")
    pair = (2 * dev.student_correct + dev.teacher_correct).astype(int)
    counts = np.bincount(pair, minlength=4)
    stratify = counts[counts > 0].min() >= folds
    split = (RepeatedStratifiedKFold if stratify else RepeatedKFold)(n_splits=folds, n_repeats=repeats,
                                                                       random_state=seed)
    for i, (train, test) in enumerate(split.split(np.zeros(dev.n), pair)):
        yield i // folds, train, test


_FITTED: dict[tuple, CombinedRouter | GainRouter] = {}  # see fit_candidate


def fit_candidate(c: Candidate, dev: RoutingData, idx: np.ndarray, l2: float) -> CombinedRouter | GainRouter | str:
    """The candidate's router fitted on dev questions `idx` (a signal's name when nothing is
    fitted). Candidates that differ only in their primary share one regression: it is fitted
    once per training set and wrapped with each primary."""
    if len(c.signals) == 1 and c.kind == CONFIDENCE and not c.text:
        return c.signals[0]
    l2 = c.l2 if c.l2 is not None else l2
    rows = [dev.features[i] for i in idx]
    key = (dev.fingerprint, c.kind, c.signals, c.text, c.answer, l2, idx.tobytes())
    base = _FITTED.get(key)
    if base is None:
        if len(_FITTED) > 512:
            _FITTED.clear()
        source = dev.calibration_documents(c.document_form)
        texts = [source[i] for i in idx] if c.text else None
        if c.kind == GAIN:
            base = GainRouter.fit(rows, dev.student_correct[idx], dev.teacher_correct[idx], c.signals, l2=l2,
                                  texts=texts, document=c.document_form, split_gain=c.answer)
        else:
            base = CombinedRouter.fit(rows, dev.student_correct[idx].astype(bool), c.signals, l2=l2, texts=texts,
                                      document=c.document_form)
        if any(s in PRIOR_FEATURES for s in c.signals):
            base.prior = dev.prior
        _FITTED[key] = base
    if c.primary is None:
        return base
    if c.primary not in base.features:  # blank on every question of this training set (a fold, a split)
        raise CannotFit(f"primary signal {c.primary!r} has no value on these dev questions")
    step = step_between(rows, c.primary)
    if isinstance(base, GainRouter):
        return replace(base, primary=c.primary, primary_step=step)
    return CombinedRouter(base.linear, primary=c.primary, primary_step=step, prior=base.prior)


def candidate_scores(c: Candidate, dev: RoutingData, idx: np.ndarray, model, *, new: bool = False) -> np.ndarray:
    """Scores of dev questions `idx`; a cascade's score is -inf where the student's answer is
    unread (the cascade escalates those whatever the score, RoutingData.unread); a question
    router's is not: it is known before the student answers. `new`: `dev` holds questions the
    model was not fitted beside, whose guesser tokens come from the model's own guesser, as a
    routed question's do (else: the out-of-fold tokens of the questions it was fitted on)."""
    if isinstance(model, str):
        return dev.signal_confidence(model)[idx]
    source = (dev.documents_as(c.document_form, getattr(model, "guesser", None)) if new
              else dev.calibration_documents(c.document_form))
    out = model.predict([dev.features[i] for i in idx], [source[i] for i in idx])
    out = np.where(np.isnan(out), -np.inf, out)
    return out if c.question_only else dev.escalating_unread(out, idx)


def out_of_fold(dev: RoutingData, c: Candidate, *, folds: int = 5, repeats: int = 3, seed: int = 0,
                l2: float = 1.0) -> list[np.ndarray]:
    """Per repeat, each dev question's score from a model that did not see it."""
    if len(c.signals) == 1 and c.kind == CONFIDENCE and not c.text:
        return [dev.signal_confidence(c.signals[0])]
    out = [np.empty(dev.n) for _ in range(repeats)]
    for r, train, test in fold_splits(dev, folds, repeats, seed):
        out[r][test] = candidate_scores(c, dev, test, fit_candidate(c, dev, train, l2))
    return out


def routing_scores(dev: RoutingData, conf: np.ndarray) -> tuple[float, float]:
    s, t = dev.student_correct, dev.teacher_correct
    return apgr(routing_curve(conf, s, t), float(s.mean()), float(t.mean())), auroc(conf, s)


def beats_shuffled(dev: RoutingData, c: Candidate, *, folds: int = 3, seed: int, l2: float) -> int:
    """How many of PERMUTATIONS outcome-shuffled copies of dev this candidate's cross-validated
    APGR beats, in order, stopping at the first it does not beat (the permutation test of the
    module doc). Student and teacher outcomes move together, so their overlap is kept. The test
    statistic is one 3-fold cross-validation, for real and shuffled outcomes alike (the same
    procedure on both sides is what the test needs; 3 folds keep 20 of them affordable)."""
    real = routing_scores(dev, out_of_fold(dev, c, folds=folds, repeats=1, seed=seed, l2=l2)[0])[0]
    if not math.isfinite(real):
        return 0
    rng = np.random.default_rng(seed + 7919)
    for k in range(PERMUTATIONS):
        p = rng.permutation(dev.n)
        copy = replace(dev, student_correct=dev.student_correct[p], teacher_correct=dev.teacher_correct[p],
                       _fingerprint=None)
        try:
            null = routing_scores(copy, out_of_fold(copy, c, folds=folds, repeats=1, seed=seed, l2=l2)[0])[0]
        except CannotFit:  # a shuffled fold with one outcome: that copy cannot be scored
            continue
        if not null < real:
            return k
    return PERMUTATIONS


def score_candidate(dev: RoutingData, c: Candidate, *, folds: int, repeats: int, seed: int, l2: float) -> Candidate:
    runs = [routing_scores(dev, conf) for conf in out_of_fold(dev, c, folds=folds, repeats=repeats, seed=seed, l2=l2)]
    a, u = float(np.mean([x for x, _ in runs])), float(np.mean([y for _, y in runs]))
    eligible, beaten = c.eligible, None
    if c.question_only:
        beaten = beats_shuffled(dev, c, seed=seed, l2=l2)
        eligible = eligible and beaten == PERMUTATIONS
    return replace(c, apgr=a, auroc=u, eligible=eligible, permutations_beaten=beaten)


def select_signals(dev: RoutingData, *, folds: int = 5, repeats: int = 3, seed: int = 0, l2: float = 1.0,
                   allowed: Sequence[str] = (CONFIDENCE, GAIN), only_question: bool = False,
                   question_routers: bool = True) -> list[Candidate]:
    """Every candidate of the `allowed` kinds (question routers only, with `only_question`) with
    its cross-validated scores, best first; the first eligible one is the choice (`chosen`)."""
    if not dev.available_signals():
        raise DataError(f"no signal has a value on the dev run {dev.student_run}")
    y = dev.student_correct
    if dev.n < 2 * folds or y.min() == y.max():
        raise DataError(f"choosing signals by {folds}-fold cross-validation needs at least {2 * folds} dev "
                         "questions, some answered right by the student and some wrong; pass --signals")
    scored = []
    for c in candidates(dev):
        if c.kind not in allowed or (only_question and not c.question_only) or (c.question_only and not question_routers):
            continue
        try:
            scored.append(score_candidate(dev, c, folds=folds, repeats=repeats, seed=seed, l2=l2))
        except CannotFit:  # a training fold with one outcome only: this candidate cannot be fitted
            continue

    def key(c: Candidate):
        # APGR first; AUROC where dev has no gap (APGR NaN); fewer signals on a tie.
        main = c.apgr if math.isfinite(c.apgr) else -math.inf
        second = c.auroc if math.isfinite(c.auroc) else -math.inf
        return (-round(main, 9), -round(second, 9), len(c.signals) + c.text + c.answer)

    scored.sort(key=key)
    return scored


def chosen(table: Sequence[Candidate], *, question_only: bool | None = None) -> Candidate:
    """The best eligible candidate (of those question-only or not, when asked); the best of all
    when none is eligible (every fold held one class only), so a discrete signal alone is still
    better than nothing."""
    pool = [c for c in table if question_only is None or c.question_only == question_only]
    if not pool:
        raise ConfigError("no candidate router of the kind asked for could be fitted on this dev set")
    return next((c for c in pool if c.eligible), pool[0])


NESTED_FOLDS = 3


def nested_apgr(dev: RoutingData, *, allowed: Sequence[str] = (CONFIDENCE, GAIN), seed: int = 0, l2: float = 1.0,
                question_routers: bool = False,
                pick: Callable[[RoutingData, list[Candidate]], Candidate] | None = None) -> float:
    """An honest estimate of what choosing by cross-validation gives on new questions: the
    cross-validated APGR of the chosen candidate is the best of many noisy figures, so it is
    biased upwards. Here each of NESTED_FOLDS outer folds repeats the whole choice on the other
    folds (inner NESTED_FOLDS-fold cross-validation, one repeat), fits the chosen candidate there
    and scores it on the held-out fold; the estimate is the mean APGR over the outer folds.
    Question routers take part only with `question_routers` (their permutation test is twenty
    fits each; the outer choice decides whether one was eligible at all). `pick(inner, table)` is the
    rule that makes the choice from an inner table (default: `chosen`)."""
    runs = []
    for _, train, test in fold_splits(dev, NESTED_FOLDS, 1, seed + 31):
        inner = dev.subset(train)
        table = select_signals(inner, folds=NESTED_FOLDS, repeats=1, seed=seed, l2=l2, allowed=allowed,
                               question_routers=question_routers)
        best = chosen(table) if pick is None else pick(inner, table)
        model = best.fit(inner, l2)
        held = dev.subset(test)
        runs.append(routing_scores(held, candidate_scores(best, held, np.arange(held.n), model, new=True))[0])
    ok = [a for a in runs if math.isfinite(a)]
    return float(np.mean(ok)) if ok else math.nan
