"""Choose, on dev and by cross-validation, everything `route calibrate` leaves to `auto`:

1. the score (routers.fitting.select: signals, confidence or gain, question routers); on 1,000 dev
   questions or more, the gain router over the words of type, question and answer is the default,
   replaced only by a candidate that beats it by clear_margin paired bootstrap standard errors
   (routers that read the answer's words are offered from select.ANSWER_MIN_QUESTIONS on)
   (prefer_words: the best of forty cross-validated figures is partly luck);
2. the policy: a cascade on that score, pre-routing (a question-only score that won and is better
   than random), or two-stage: a question router sends the lowest `teacher_share` of the
   questions straight to the teacher and keeps the highest `student_share` with the student's
   first sample, the cascade decides the rest. The shares come from TWO_STAGE_GRID. A policy is
   judged by what the target asks, read off its out-of-fold curve with the runs' recorded
   latencies (operating_point): the accuracy at a share target, the mean latency at which an
   accuracy target is first reached, the best accuracy within a latency budget. A two-stage split
   replaces the plain policy only when it beats it by more than clear_margin paired bootstrap
   standard errors (so without recorded latencies, or with a question router no better than
   random, there is no pre-routing); APGR and the curve's mean latency are recorded beside;
3. per-type thresholds (routers.policies.pertype): per-type maps for types with at least 200 / 100 / 50
   dev questions (maps fitted on the other folds' out-of-fold scores), the size with the best
   cross-validated APGR among those that beat the plain score by more than clear_margin paired
   bootstrap standard errors; else one threshold. The extra layer must clearly earn its keep:
   with a few dozen student errors, cross-validated APGRs differ by a few hundredths by chance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

from tourney.errors import ConfigError, DataError
from tourney.harness.jsonl import json_safe
from tourney.routers.fitting.linear import CannotFit
from tourney.routers.evaluation.metrics import EPS, apgr, mean_curve, routing_curve, threshold_candidates
from tourney.routers.policies.pertype import MIN_QUESTIONS, TypeCalibration
from tourney.routers.policies.policy import CASCADE, POLICIES, PRE, TWO_STAGE, policy_view, thresholds_for_shares
from tourney.routers.evaluation.rundata import RoutingData
from tourney.routers.fitting.select import (
    CONFIDENCE, GAIN, Candidate, candidate_scores, chosen, fold_splits, nested_apgr, out_of_fold, select_signals,
)
from tourney.routers.features.signals import PRIOR_FEATURES
from tourney.routers.policies.target import Target

CLEAR_SE = 2.0  # an extra layer (per-type maps, a first stage) must win by at least this many standard errors
CLEAR_ALPHA = 0.05  # ... and by the one-sided z of this level shared among the challengers (clear_margin)
BOOTSTRAP = 200
TWO_STAGE_GRID = ((0.0, 0.0), (0.1, 0.0), (0.0, 0.1), (0.1, 0.1), (0.2, 0.0), (0.0, 0.2), (0.2, 0.2),
                  (0.3, 0.0), (0.0, 0.3), (0.3, 0.3))  # (teacher_share, student_share) pre-routed
FOLDS, REPEATS = 5, 3
# The default words router's penalty (one of routers.fitting.select.ANSWER_L2). Fixed, not chosen
# by cross-validation: on random 50/50 splits of the two recorded MMLU-Pro pairs, each used both
# ways, the penalty with the best cross-validated APGR on one half scored 0.608 and 0.595 on the
# other against the fixed 10's 0.609 and 0.591 (5 splits), 0.607 and 0.601 against 0.609 and
# 0.606 (3 others): no consistent gain (the three penalties' cross-validated APGRs differ by less
# than their noise; benchmarks/RESULTS.md, issue 23, "After issue 22's grader").
WORDS_L2 = 10.0


def clear_margin(challengers: int) -> float:
    """How many paired standard errors the best of `challengers` alternatives must beat the
    default by: CLEAR_SE, or the one-sided z of CLEAR_ALPHA / challengers when that is larger
    (Bonferroni). The best of many noisy cross-validated figures is chosen for being high, so
    one test at 2 standard errors lets luck through: on 5 random 50/50 splits of a recorded
    MMLU-Pro pair, `chosen_length` alone beat the words router by 2.2 standard errors among some
    forty candidates on one calibration half and scored 0.548 against its 0.622 on the other
    half; a two-stage split beat the cascade by 2.1 among nine and cost 0.026 held-out APGR
    (benchmarks/RESULTS.md, issue 23, "After issue 22's grader"). 9 challengers: 2.54; 40: 3.02."""
    return max(CLEAR_SE, NormalDist().inv_cdf(1.0 - CLEAR_ALPHA / max(1, challengers)))


@dataclass(frozen=True)
class PolicyScore:
    policy: str
    teacher_share: float = 0.0  # pre-routed to the teacher (two-stage)
    student_share: float = 0.0  # pre-routed to the student
    apgr: float = math.nan
    latency_s: float = math.nan  # mean latency per question averaged over teacher shares 0..1
    objective: float = math.nan  # the target's objective (operating_point), mean over repeats
    gain: float = 0.0  # objective over the plain policy's (repeat 0)
    se: float = 0.0  # paired bootstrap standard error of that gain

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"policy": self.policy, "teacher_share": self.teacher_share,
                          "student_share": self.student_share, "cv_apgr": self.apgr, "cv_latency_s": self.latency_s,
                          "cv_objective": self.objective, "gain": self.gain, "se": self.se})


@dataclass(frozen=True)
class PerTypeScore:
    min_questions: int | None  # None: the plain score, one threshold
    apgr: float  # cross-validated
    gain: float  # over the plain score
    se: float  # paired bootstrap standard error of the gain

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"min_questions": self.min_questions, "cv_apgr": self.apgr, "gain": self.gain,
                          "se": self.se})


@dataclass
class Choice:
    """What calibration fits: the score, the question router of a two-stage policy, the policy's
    pre-routed shares and the per-type setting, with every table that decided them."""

    score: Candidate
    policy: str
    question: Candidate | None = None  # the first stage of a two-stage policy
    teacher_share: float = 0.0
    student_share: float = 0.0
    per_type: int | None = None  # min_questions of the per-type maps; None: one threshold
    score_oof: np.ndarray | None = None  # the score's out-of-fold dev values (repeat 0)
    question_oof: np.ndarray | None = None  # the same of the question router
    candidates: list[Candidate] = field(default_factory=list)
    policies: list[PolicyScore] = field(default_factory=list)
    per_type_table: list["PerTypeScore"] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be done on this dev set, and why
    nested_apgr: float | None = None  # the choice itself cross-validated (routers.fitting.select.nested_apgr)

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "method": f"{FOLDS}-fold cross-validated APGR on dev, mean of {REPEATS} repeated stratified fold assignments",
            "chosen": self.score.name, "policy": self.policy, "nested_apgr": self.nested_apgr,
            "question_router": None if self.question is None else self.question.name,
            "pre_routed": {"teacher_share": self.teacher_share, "student_share": self.student_share},
            "per_type_min_questions": self.per_type,
            "candidates": [c.to_dict() for c in self.candidates],
            "policies": [p.to_dict() for p in self.policies],
            "per_type": [p.to_dict() for p in self.per_type_table],
            "notes": self.notes,
        })


def _latency_area(rank: np.ndarray, kept: np.ndarray, up: np.ndarray) -> float:
    order, counts, _ = threshold_candidates(rank)
    lat = mean_curve(order, counts, kept, up)
    x = counts / rank.size
    return float(np.sum(np.diff(x) * (lat[1:] + lat[:-1]) / 2))


def _apgr(dev: RoutingData, conf: np.ndarray) -> float:
    s, t = dev.student_correct, dev.teacher_correct
    return apgr(routing_curve(conf, s, t), float(s.mean()), float(t.mean()))


def operating_point(s: np.ndarray, t: np.ndarray, rank: np.ndarray, kept: np.ndarray, up: np.ndarray,
                    target: Target | None) -> float:
    """A policy's objective on one curve (the ranking `rank`, per-question latencies kept and
    escalated) at the target: for a share, the accuracy there; for an accuracy, minus the mean
    latency of the first share reaching it; for a latency budget, the best accuracy within it;
    -inf when the target is out of reach. Without a target: APGR."""
    if target is None:
        return apgr(routing_curve(rank, s, t), float(s.mean()), float(t.mean()))
    order, counts, _ = threshold_candidates(rank)
    share = counts / rank.size
    acc, lat = mean_curve(order, counts, s, t), mean_curve(order, counts, kept, up)
    if target.kind == "teacher_share":
        return float(np.interp(target.value, share, acc))
    if target.kind == "accuracy":
        goal = target.value * float(t.mean()) if target.relative else target.value
        ok = np.flatnonzero(acc >= goal - EPS)
        return -math.inf if ok.size == 0 else -float(lat[ok[0]])
    budget = lat
    if target.stat == "p95":
        sent = np.zeros(rank.size, dtype=bool)
        budget = np.empty(counts.size)
        for i, k in enumerate(counts):
            sent[order[:k]] = True
            budget[i] = np.percentile(np.where(sent, up, kept), 95)
    ok = np.flatnonzero(budget <= target.value + EPS)
    return -math.inf if ok.size == 0 else float(acc[ok].max())


def _objective_gain(dev: RoutingData, a, b, target: Target | None, seed: int) -> tuple[float, float]:
    """Objective of view a minus view b on dev, and its paired bootstrap standard error."""
    s, t = dev.student_correct, dev.teacher_correct
    point = lambda v, i: operating_point(s[i], t[i], v.rank[i], v.kept[i], v.up[i], target)  # noqa: E731
    every = np.arange(dev.n)
    gain = point(a, every) - point(b, every)
    rng = np.random.default_rng(seed)
    diffs = np.array([point(a, i) - point(b, i) for i in (rng.integers(0, dev.n, dev.n) for _ in range(BOOTSTRAP))])
    diffs = diffs[np.isfinite(diffs)]
    return float(gain), float(np.std(diffs)) if diffs.size > 1 else math.inf


def score_policies(dev: RoutingData, score: Candidate, score_oof: Sequence[np.ndarray],
                   question_oof: Sequence[np.ndarray] | None, target: Target | None = None,
                   grid=TWO_STAGE_GRID, seed: int = 0) -> list[PolicyScore]:
    """Cross-validated APGR, mean latency and target objective of the cascade (or pre-routing,
    for a question-only score) and of each two-stage split of the grid; for each split its
    objective's gain over the plain policy with the paired bootstrap standard error (repeat 0)."""
    lat = dict(student_first=dev.student_latency_first, student_used=dev.student_latency(score.signals),
               teacher=dev.teacher_latency)
    s, t = dev.student_correct, dev.teacher_correct
    base_name = PRE if score.question_only else CASCADE
    out, base_view = [], None
    for h, e in grid:
        if (h or e) and (question_oof is None or base_name == PRE):
            continue
        a, lt, obj, first = [], [], [], None
        for r, conf in enumerate(score_oof):
            if h or e:
                pre = question_oof[r % len(question_oof)]
                below, start = thresholds_for_shares(pre, h, e)
                view = policy_view(TWO_STAGE, conf, pre_score=pre, teacher_below=below, student_from=start,
                                   unread=dev.unread, **lat)
            else:
                view = policy_view(base_name, conf, unread=dev.unread, **lat)
            first = view if first is None else first
            a.append(_apgr(dev, view.rank))
            lt.append(_latency_area(view.rank, view.kept, view.up))
            obj.append(operating_point(s, t, view.rank, view.kept, view.up, target))
        gain, se = (0.0, 0.0) if base_view is None else _objective_gain(dev, first, base_view, target, seed)
        base_view = base_view or first
        out.append(PolicyScore(TWO_STAGE if h or e else base_name, h, e, float(np.mean(a)), float(np.mean(lt)),
                               float(np.mean(obj)), gain, se))
    return out


def best_policy(table: Sequence[PolicyScore], want: str | None = None) -> PolicyScore:
    """The plain policy (the table's first) unless a two-stage split beats its target objective
    by more than clear_margin (of the splits compared) paired bootstrap standard errors; then
    the one that beats it most.
    With `want`, the best split of that policy by objective (the first on a tie)."""
    pool = [p for p in table if want is None or p.policy == want]
    if not pool:
        raise ConfigError(f"policy {want!r} cannot be built on this dev set")
    if want is not None:
        top = max(round(p.objective, 9) for p in pool)
        return next(p for p in pool if round(p.objective, 9) == top)
    margin = clear_margin(len(pool) - 1)
    clear = [p for p in pool[1:] if math.isfinite(p.gain) and p.gain > margin * p.se]
    return max(clear, key=lambda p: p.gain) if clear else pool[0]


def paired_se(dev: RoutingData, a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """Bootstrap standard error of APGR(a) - APGR(b) on the same questions (resampled together)."""
    rng = np.random.default_rng(seed)
    s, t = dev.student_correct, dev.teacher_correct
    diffs = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, dev.n, dev.n)
        sa, ta = float(s[i].mean()), float(t[i].mean())
        diffs.append(apgr(routing_curve(a[i], s[i], t[i]), sa, ta) - apgr(routing_curve(b[i], s[i], t[i]), sa, ta))
    d = np.array(diffs, dtype=float)
    return float(np.nanstd(d)) if np.isfinite(d).any() else math.inf


def score_per_type(dev: RoutingData, score_oof: Sequence[np.ndarray], seed: int) -> list[PerTypeScore]:
    """Per candidate size: cross-validated APGR, its gain over the plain score, and the paired
    bootstrap standard error of that gain (the first row is the plain score itself)."""
    plain = float(np.mean([_apgr(dev, c) for c in score_oof]))
    out = [PerTypeScore(None, plain, 0.0, 0.0)]
    counts = {t: dev.types.count(t) for t in set(dev.types)}
    for m in MIN_QUESTIONS:
        if not any(c >= m for c in counts.values()):
            continue
        runs, first = [], None
        for r, conf in enumerate(score_oof):
            new = np.empty(dev.n)
            for _, train, test in fold_splits(dev, FOLDS, 1, seed + 100 + r):
                cal = TypeCalibration.fit(conf[train], dev.student_correct[train], dev.teacher_correct[train],
                                          [dev.types[i] for i in train], m)
                new[test] = cal.transform(conf[test], [dev.types[i] for i in test])
            runs.append(_apgr(dev, new))
            first = new if first is None else first
        gain = float(np.mean(runs)) - plain
        out.append(PerTypeScore(m, float(np.mean(runs)), gain, paired_se(dev, first, score_oof[0], seed)))
    return out


def pick_per_type(table: Sequence[PerTypeScore]) -> int | None:
    """The size with the largest gain among those clearly better than the plain score (gain above
    clear_margin standard errors, of the sizes compared); None (one threshold) when none is."""
    clear = [p for p in table if p.min_questions is not None and math.isfinite(p.gain)
             and p.gain > clear_margin(len(table) - 1) * p.se]
    return max(clear, key=lambda p: p.gain).min_questions if clear else None


def prefer_words(dev: RoutingData, table: Sequence[Candidate], best: Candidate, *, seed: int, l2: float,
                 notes: list[str]) -> Candidate:
    """The default score on a large dev set: the gain router over the words of type, question and
    answer (routers.features.documents, penalty WORDS_L2), unless the candidate with the best
    cross-validated APGR beats it by more than clear_margin paired bootstrap standard errors (of
    the eligible candidates compared with it).

    Why a default: among some forty candidates the best cross-validated APGR is partly luck. On
    MMLU-Pro's Mistral pair the best on the calibration half was `chosen_length` alone (0.543
    against the words router's 0.529), and on the held-out half the two scored 0.583 and 0.617;
    on both recorded multiple-choice pairs the words router was at or near the top. A candidate
    that is clearly better (on GSM8K, the sample-agreement gain routers beat it by 0.1 and more)
    still wins.

    With a difficulty prior (routers.features.prior) for questions its runs have not seen
    (`--prior-covers new`), the default is the words router with `prior_accuracy` beside the words
    only where that beats the words alone by two paired standard errors (one comparison): the
    prior's guess from similar wording added noise on the recorded MMLU-Pro pairs
    (benchmarks/RESULTS.md, issue 23, "A prior that covers the dev questions only"), and a prior
    should cost nothing there. For questions its runs have seen, the prior is in the default."""
    words = _words_default(dev, table, seed=seed, l2=l2, notes=notes)
    if words is None or words is best or not math.isfinite(words.apgr):
        return best
    if not math.isfinite(best.apgr):
        return words
    se = _candidates_se(dev, best, words, seed=seed, l2=l2)
    margin = clear_margin(sum(1 for c in table if c.eligible and c is not words and math.isfinite(c.apgr)))
    if best.apgr - words.apgr > margin * se:
        return best
    notes.append(f"{best.name} (cross-validated APGR {best.apgr:.3f}) does not beat the words router "
                 f"({words.apgr:.3f}) by {margin:.2f} standard errors ({se:.3f} each): the words router is used")
    return words


def _candidates_se(dev: RoutingData, a: Candidate, b: Candidate, *, seed: int, l2: float) -> float:
    """The paired bootstrap standard error of two candidates' APGR difference, from their
    out-of-fold scores on one fold assignment."""
    return paired_se(dev, out_of_fold(dev, a, folds=FOLDS, repeats=1, seed=seed, l2=l2)[0],
                     out_of_fold(dev, b, folds=FOLDS, repeats=1, seed=seed, l2=l2)[0], seed)


def _words_default(dev: RoutingData, table: Sequence[Candidate], *, seed: int, l2: float,
                   notes: list[str]) -> Candidate | None:
    """The words router at WORDS_L2: with the prior's feature where it clearly helps (prefer_words)."""
    found = {c.signals: c for c in table if c.answer and all(s in PRIOR_FEATURES for s in c.signals)
             and c.l2 == WORDS_L2 and c.eligible}
    plain, prior = found.get(()), next((c for k, c in found.items() if k), None)
    if prior is not None and not dev.prior_out_of_fold:  # its recall is what routing will see
        return prior
    if plain is None or prior is None or not math.isfinite(prior.apgr):
        return plain or prior
    if not math.isfinite(plain.apgr):
        return prior
    se = _candidates_se(dev, prior, plain, seed=seed, l2=l2)
    if prior.apgr - plain.apgr > 2.0 * se:
        return prior
    notes.append(f"the words router with the difficulty prior (cross-validated APGR {prior.apgr:.3f}) does not beat "
                 f"it without ({plain.apgr:.3f}) by 2 standard errors ({se:.3f} each): the prior is left out")
    return plain


def choose(dev: RoutingData, *, signals: str = "auto", policy: str = "auto", per_type: str = "auto",
           seed: int = 0, l2: float = 1.0, fixed: Candidate | None = None, target: Target | None = None) -> Choice:
    """Everything `route calibrate` chooses on dev (module doc). `signals`: auto (every kind),
    confidence, gain; `fixed`: a score given by hand (no selection of it)."""
    if policy not in ("auto", *POLICIES):
        raise ConfigError(f"policy must be auto or one of {POLICIES}, got {policy!r}")
    allowed = {"auto": (CONFIDENCE, GAIN), "confidence": (CONFIDENCE,), "gain": (GAIN,)}[signals]
    table: list[Candidate] = []
    notes: list[str] = []
    nested = None
    if fixed is None:
        table = select_signals(dev, seed=seed, l2=l2, allowed=allowed)
        words_rule = policy in ("auto", CASCADE) and GAIN in allowed

        def pick(inner: RoutingData, inner_table: list[Candidate]) -> Candidate:
            best = chosen(inner_table)
            return prefer_words(inner, inner_table, best, seed=seed, l2=l2, notes=[]) if words_rule else best

        try:
            nested = nested_apgr(dev, allowed=allowed, seed=seed, l2=l2,
                                 question_routers=chosen(table).question_only, pick=pick)
        except (CannotFit, DataError):  # an outer fold too small to choose on
            notes.append("no nested estimate: dev is too small to repeat the choice inside its folds")
    elif policy in ("auto", TWO_STAGE):  # the score is given: look for a first stage only
        try:
            table = select_signals(dev, seed=seed, l2=l2, allowed=(GAIN,), only_question=True)
        except DataError:  # too few dev questions (or one outcome only) to cross-validate
            if policy == TWO_STAGE:
                raise
            notes.append("no question router: dev is too small to cross-validate one")
    if fixed is not None:
        score = fixed
    elif policy == PRE:
        score = chosen(table, question_only=True)
    elif policy in (CASCADE, TWO_STAGE) or signals != "auto":
        score = chosen(table, question_only=False)
    else:
        score = chosen(table)
    if fixed is None and policy in ("auto", CASCADE) and GAIN in allowed:
        score = prefer_words(dev, table, score, seed=seed, l2=l2, notes=notes)
    try:
        score_oof = out_of_fold(dev, score, folds=FOLDS, repeats=REPEATS, seed=seed, l2=l2)
    except CannotFit:  # a fold with one outcome only: too few dev questions to hold any out
        score_oof = [candidate_scores(score, dev, np.arange(dev.n), score.fit(dev, l2))]
        notes.append("thresholds on in-sample scores: dev is too small for out-of-fold ones")
    question, question_oof = None, None
    if policy in ("auto", TWO_STAGE) and not score.question_only:
        pool = [c for c in table if c.question_only and c.kind == GAIN and (c.eligible or policy == TWO_STAGE)]
        if pool:
            question = pool[0]
            question_oof = out_of_fold(dev, question, folds=FOLDS, repeats=REPEATS, seed=seed, l2=l2)
    policies = score_policies(dev, score, score_oof, question_oof, target, seed=seed)
    best = best_policy(policies, None if policy == "auto" else policy)
    choice = Choice(score=score, policy=best.policy, question=question if best.policy == TWO_STAGE else None,
                    teacher_share=best.teacher_share, student_share=best.student_share, score_oof=score_oof[0],
                    question_oof=None if question_oof is None else question_oof[0],
                    candidates=table, policies=policies, notes=notes, nested_apgr=nested)
    if per_type == "auto" and not (isinstance(score, Candidate) and score.question_only):
        try:
            choice.per_type_table = score_per_type(dev, score_oof, seed)
        except CannotFit:  # a fold with one outcome only
            notes.append("no per-type thresholds: dev is too small to cross-validate them")
        choice.per_type = pick_per_type(choice.per_type_table)
    elif per_type not in ("auto", "off"):
        raise ConfigError(f"per_type must be auto or off, got {per_type!r}")
    return choice
