"""From two evaluation runs (student, teacher) on the same questions to per-question routing arrays.

Per question, in the student run's question order:
- student_correct: whether the student's sample 0 is right (the answer a cascade would give);
- teacher_correct: the teacher's sample 0;
- student latency: sample 0's latency; but when the confidence reads several samples
  (self_consistency, answer_agreement, ...: bundle.SAMPLE_SIGNALS) all K samples had to be made first,
  so the latency is that of the slowest sample (`multi_sample="max"`, the default): every backend
  here draws the K samples together (one batch in transformers, `n` in vLLM, concurrent requests
  to a server), and each sample records that shared wait. `multi_sample="sum"` is for samples
  drawn one after another;
- teacher latency: the teacher's sample 0;
- every signal of routers.features.signals and every question feature, computed once from the student's
  rows (multiple-choice signals read the option scores a run records with `--logprobs`).

A signal's confidence is its oriented value (routers.features.signals.oriented); where it is None for a
question, the confidence is -inf: the cascade escalates questions it has no evidence about
(CalibratedRouter.to_teacher does the same with None), so the arrays describe what a cascade does.
So is every score where the student's first answer cannot be read (`unread`: a failed request,
an empty output, no option named, a hedge the grader leaves unparsed): the cascade escalates
those whatever the score (routers.runtime.cascade.unreadable), and the offline figures must agree.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tourney.errors import ConfigError
from tourney.harness.rundir import RunDir
from tourney.harness.types import DataError, SampleResult
from tourney.routers.runtime.bundle import needs_samples
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.runtime.cascade import unreadable
from tourney.routers.features.documents import FULL_DOCUMENT, DocumentForm, rows_document
from tourney.routers.features.option_guess import OptionGuesser, out_of_fold_tokens
from tourney.routers.policies.policy import TWO_STAGE, PolicyView, policy_view
from tourney.routers.fitting.scores import scorer_texts
from tourney.routers.features.solution_features import first_sample
from tourney.routers.features.signals import FEATURE_NAMES, MIXED_SIGNALS, PRIOR_FEATURES, compute_signals, oriented

MULTI_SAMPLE = ("sum", "max")


def read_run_rows(run_dir: str | Path) -> dict[str, list[SampleResult]]:
    """id -> that question's rows sorted by sample, in the file's (question) order."""
    return RunDir(run_dir).rows_by_question()


@dataclass
class RoutingData:
    """Aligned per-question arrays of one student run and one teacher run."""

    ids: list[str]
    types: list[str]
    student_rows: list[list[SampleResult]]  # each question's student samples, sample 0 first
    student_correct: np.ndarray  # (n,) float 0/1
    teacher_correct: np.ndarray
    student_latency_first: np.ndarray  # sample 0 alone
    student_latency_all: np.ndarray  # all samples (sum or max, see multi_sample)
    teacher_latency: np.ndarray
    features: list[dict[str, float | None]]  # every FEATURE_NAMES value per question
    student_run: str = ""
    teacher_run: str = ""
    multi_sample: str = "max"
    prior: Any = None  # routers.features.prior.DifficultyPrior whose `prior_accuracy` the features hold (with_prior)
    prior_out_of_fold: bool = False  # those values are out of fold where the prior saw a question (with_prior dev)
    _avail: list[str] | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False, compare=False)
    _texts: list[str] | None = field(default=None, repr=False, compare=False)
    _documents: dict[tuple, list[str]] = field(default_factory=dict, repr=False, compare=False)
    _guess_tokens: list[list[str]] | None = field(default=None, repr=False, compare=False)
    _guesser: list = field(default_factory=list, repr=False, compare=False)  # [] until fitted: [OptionGuesser | None]

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def samples(self) -> int:
        return max(len(r) for r in self.student_rows)

    def student_latency(self, signals: Sequence[str]) -> np.ndarray:
        """The student's latency per question when routing reads `signals` (see module doc)."""
        return self.student_latency_all if needs_samples(signals) else self.student_latency_first

    @property
    def fingerprint(self) -> str:
        """A hash of the questions, their features and both models' outcomes: equal data, equal
        fingerprint (what a cache of fitted models may key on; an object's id() may be reused)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(json.dumps([self.ids, self.texts, self.features, self.types], sort_keys=True,
                                default=repr).encode("utf-8", "surrogatepass"))
            h.update(self.student_correct.tobytes())
            h.update(self.teacher_correct.tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def available_signals(self) -> list[str]:
        """Signals and features with a value for at least one question, in FEATURE_NAMES order."""
        if self._avail is None:
            avail = [n for n in FEATURE_NAMES if any(f[n] is not None for f in self.features)]
            mixed = (any(f["mc_probability"] is not None for f in self.features)
                     and any(f["mc_probability"] is None and f["min_logprob"] is not None for f in self.features))
            self._avail = [n for n in avail if mixed or n not in MIXED_SIGNALS]
        return list(self._avail)

    def regression_signals(self) -> list[str]:
        """The available signals a fitted router may read as features: all but MIXED_SIGNALS,
        which repeat others and are read only as scores of their own."""
        return [n for n in self.available_signals() if n not in MIXED_SIGNALS]

    @property
    def unread(self) -> np.ndarray:
        """(n,) bool: the student's first answer cannot be read (routers.runtime.cascade.unreadable),
        so the cascade escalates the question whatever its score."""
        return np.array([unreadable(rows) for rows in self.student_rows], dtype=bool)

    def escalating_unread(self, score: np.ndarray, index: Sequence[int] | None = None) -> np.ndarray:
        """`score` (of all questions, or of those at `index`) with -inf where the answer is unread."""
        unread = self.unread if index is None else self.unread[np.asarray(index, dtype=int)]
        return np.where(unread, -math.inf, score)

    def signal_confidence(self, name: str) -> np.ndarray:
        """One signal as a confidence (oriented); -inf where it is missing or the answer is unread."""
        out = [oriented(name, f[name]) for f in self.features]
        conf = np.array([-math.inf if v is None or not math.isfinite(v) else v for v in out], dtype=float)
        return self.escalating_unread(conf)

    @property
    def texts(self) -> list[str]:
        """Each question's text, as the student run recorded it (computed once)."""
        if self._texts is None:
            self._texts = [rows[0].question for rows in self.student_rows]
        return self._texts

    def documents_as(self, form: DocumentForm = FULL_DOCUMENT, guesser: OptionGuesser | None = None) -> list[str]:
        """Each question's document (routers.features.documents) in one form: type, text and
        student answer, with the chosen option's words, the check tokens and the option guesser's
        tokens or without (what router files written before each was read). The guesser's tokens
        come from `guesser`, a fitted router's (none without one): never from these questions'
        own gold letters, which a router that routes them must not have seen. A form that does
        not read the answer gives the question texts."""
        if not form.answer:
            return self.texts
        if not (form.guess and guesser is not None):
            return self._documents_with(DocumentForm(form.answer, form.choice, form.checks), None)
        tokens = guesser.tokens_of([first_sample(rows) for rows in self.student_rows])
        return [rows_document(rows, form=form, guess=g) for rows, g in zip(self.student_rows, tokens)]

    def calibration_documents(self, form: DocumentForm = FULL_DOCUMENT) -> list[str]:
        """The documents a router is fitted on from these (dev) questions: as `documents_as`, but
        each question's guesser tokens come from a guesser fitted on the other folds' gold
        letters (routers.features.option_guess.out_of_fold_tokens; computed once)."""
        if not (form.answer and form.guess):
            return self.documents_as(form)
        return self._documents_with(form, "out_of_fold")

    def _documents_with(self, form: DocumentForm, guess: str | None) -> list[str]:
        key = (form, guess)
        if key not in self._documents:
            tokens = self.guess_tokens if guess else [()] * self.n
            self._documents[key] = [rows_document(rows, form=form, guess=g)
                                    for rows, g in zip(self.student_rows, tokens)]
        return self._documents[key]

    @property
    def guess_tokens(self) -> list[list[str]]:
        """Out-of-fold option guesser tokens of each question (see calibration_documents)."""
        if self._guess_tokens is None:
            self._guess_tokens = out_of_fold_tokens([first_sample(rows) for rows in self.student_rows])
        return self._guess_tokens

    @property
    def option_guesser(self) -> OptionGuesser | None:
        """The option guesser fitted on all these questions' gold letters, for a router fitted on
        them to tokenise new questions; None when the out-of-fold tokens are blank (too few
        multiple-choice questions with a gold letter), so the router reads none either."""
        if not self._guesser:
            fitted = OptionGuesser.fit([first_sample(rows) for rows in self.student_rows]) if any(self.guess_tokens) else None
            self._guesser.append(fitted)
        return self._guesser[0]

    @property
    def documents(self) -> list[str]:
        """The documents routers are fitted on now: with the chosen option and the check tokens."""
        return self.documents_as()

    @property
    def plain_documents(self) -> list[str]:
        """The documents without the chosen option or the checks (as the words were first measured)."""
        return self.documents_as(DocumentForm(answer=True))

    def router_confidence(self, router: CalibratedRouter, *, unread_first: bool = True) -> np.ndarray:
        """A calibrated router's score per question (what its threshold applies to: per-type
        maps and tie jitter included); -inf where it has none, and (unread_first) where the
        student's answer is unread."""
        texts = (self.texts if isinstance(router.model, str)
                 else scorer_texts(router.model, self.texts, self.documents_as))
        prior = getattr(router.model, "prior", None)
        data = self if prior is None or prior is self.prior else self.with_prior(prior)
        out = router.finish(router.raw_scores(data.features, texts), self.types, self.texts)
        out = np.where(np.isfinite(out), out, -math.inf)
        return self.escalating_unread(out) if unread_first else out

    def policy_view(self, router: CalibratedRouter) -> PolicyView:
        """The router's policy on these questions: routes, scores and recorded latencies."""
        lat = dict(student_first=self.student_latency_first, student_used=self.student_latency(router.signals),
                   teacher=self.teacher_latency)
        score = self.router_confidence(router)
        if router.pre is None:
            return policy_view(router.policy, score, unread=self.unread, **lat)
        pre = router.pre.scores(self.texts)
        return policy_view(TWO_STAGE, score, pre_score=np.where(np.isnan(pre), -math.inf, pre),
                           teacher_below=router.pre.teacher_below, student_from=router.pre.student_from,
                           unread=self.unread, **lat)

    def with_prior(self, prior: Any, *, dev: bool = False) -> "RoutingData":
        """These questions with `prior_accuracy` filled from a difficulty prior (routers.features.prior):
        as routing computes it, or (dev) as a router is fitted on it (out of fold where the prior saw them)."""
        acc = prior.dev_accuracy(self.texts) if dev else prior.accuracy(self.texts)
        features = [{**f, **{name: float(a) for name in PRIOR_FEATURES}} for f, a in zip(self.features, acc)]
        return replace(self, features=features, prior=prior, prior_out_of_fold=dev, _avail=None, _fingerprint=None)

    def subset(self, index: Sequence[int]) -> "RoutingData":
        idx = list(index)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return RoutingData(
            ids=pick(self.ids), types=pick(self.types), student_rows=pick(self.student_rows),
            student_correct=self.student_correct[idx], teacher_correct=self.teacher_correct[idx],
            student_latency_first=self.student_latency_first[idx],
            student_latency_all=self.student_latency_all[idx], teacher_latency=self.teacher_latency[idx],
            features=pick(self.features), student_run=self.student_run, teacher_run=self.teacher_run,
            multi_sample=self.multi_sample, prior=self.prior, prior_out_of_fold=self.prior_out_of_fold,
        )


def _missing(ids: Sequence[str]) -> str:
    shown = ", ".join(list(ids)[:5])
    return f"{len(ids)} question(s) ({shown}{', ...' if len(ids) > 5 else ''})"


def routing_data(student_run: str | Path, teacher_run: str | Path, *, multi_sample: str = "max") -> RoutingData:
    """Read both runs and align them by question id. Both must hold the same questions: a
    question only one of them answered is an error (never silently dropped)."""
    if multi_sample not in MULTI_SAMPLE:
        raise ConfigError(f"multi_sample must be one of {MULTI_SAMPLE}, got {multi_sample!r}")
    student = read_run_rows(student_run)
    teacher = read_run_rows(teacher_run)
    only_s = [i for i in student if i not in teacher]
    only_t = [i for i in teacher if i not in student]
    if only_s or only_t:
        parts = []
        if only_s:
            parts.append(f"{_missing(only_s)} in the student run are missing from the teacher run")
        if only_t:
            parts.append(f"{_missing(only_t)} in the teacher run are missing from the student run")
        raise DataError(f"{student_run} and {teacher_run} must hold the same questions: " + "; ".join(parts))
    ids = list(student)
    s_rows = [student[i] for i in ids]
    t_first = [teacher[i][0] for i in ids]
    combine = sum if multi_sample == "sum" else max
    return RoutingData(
        ids=ids, types=[rows[0].type for rows in s_rows], student_rows=s_rows,
        student_correct=np.array([_right(rows[0]) for rows in s_rows], dtype=float),
        teacher_correct=np.array([_right(r) for r in t_first], dtype=float),
        student_latency_first=np.array([rows[0].latency_s for rows in s_rows], dtype=float),
        student_latency_all=np.array([combine(r.latency_s for r in rows) for rows in s_rows], dtype=float),
        teacher_latency=np.array([r.latency_s for r in t_first], dtype=float),
        features=[compute_signals(rows, FEATURE_NAMES) for rows in s_rows],
        student_run=str(student_run), teacher_run=str(teacher_run), multi_sample=multi_sample,
    )


def _right(row: SampleResult) -> bool:
    """An errored sample counts as wrong, as in harness.metrics."""
    return bool(row.correct) and row.error is None
