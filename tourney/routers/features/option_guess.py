"""A guesser of multiple-choice answers that reads only the options, learnt from the dev
questions' gold letters; its agreement with the student's choice becomes tokens of the words
router's documents (routers.features.documents, `DocumentForm.guess`).

Benchmarks whose options were written by people or a model leave traces of how they were
written: MMLU-Pro padded its questions to ten options with generated distractors, and the right
option is often the longest, the one that shares words with the question, the middle number of
a spread, or worded like no other. A logistic model over each option's words and its place among
the others (by length, by value, by overlap with the question and with the other options) picks
the gold option of a held-out MMLU-Pro question about twice as often as chance (0.24 against
0.11 on Qwen1.5's dev half, 5-fold), without reading any model's output.

What the router learns from it is not the guess itself but how it meets the student's choice:
where the student picked what the options alone point to, it was right 0.45-0.50 of the time,
elsewhere 0.25-0.27 (Qwen1.5-7B), and the teacher's gain was half as large. The tokens are:
`g_rank0..3` (the chosen option's rank by the guesser's probability, 3 for 3rd and below),
`g_pc0..5` (its probability, tenths, capped), `g_pm0..5` (the guesser's largest probability: how
plain the options make the answer), `g_agree` (rank 0), or `g_nochoice` when the student named no
option.

On the dev questions the router is fitted on, each question's tokens come from a guesser that
did not see its gold letter (`out_of_fold_tokens`): a guesser that had seen it would agree with a
right student by construction, and the router would learn that agreement means "right" far more
than it does on new questions. The router keeps the guesser fitted on all dev questions for new
ones. Options and gold letters are data: parsed, never evaluated.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tourney.harness.types import SampleResult
from tourney.routers.features.option_checks import chosen_index
from tourney.routers.features.documents import type_word
from tourney.routers.fitting.linear import CannotFit, common_buckets, fit_logistic, hashed_ngrams

GUESS_FEATURES = 2 ** 18  # hash buckets of the option documents
GUESS_NGRAM_MAX = 2
GUESS_L2 = 0.3  # chosen on held-out guess accuracy and routing APGR (benchmarks/RESULTS.md, session 10)
GUESS_FOLDS = 5  # out-of-fold tokens on dev
GUESS_MIN_QUESTIONS = 100  # fewer multiple-choice dev questions with a gold letter: no guesser
MAX_OPTIONS = 26  # options are letters A-Z

_WORD = re.compile(r"\w\w+")
_NUMBER = re.compile(r"^\s*[-+]?\$?\s*(\d+(?:[.,]\d+)?)")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _number(option: str) -> float | None:
    m = _NUMBER.match(option)
    if m is None:
        return None
    try:
        return float(m.group(1).replace(",", ""))
    except ValueError:  # "1,2.5": a list, not a number
        return None


def option_documents(question: str, question_type: str, choices: Sequence[str]) -> list[str]:
    """One text per option: its words (`o_` prefixed) and tokens for its place among the others:
    position, count, rank by length (and by length within the type), overlap with the question's
    words and with the other options', rank among numeric options, and duplicates."""
    kind = type_word(question_type)
    n = len(choices)
    qwords = _words(question)
    by_length = np.argsort(np.argsort([-len(c) for c in choices], kind="stable"), kind="stable")
    numbers = [_number(c) for c in choices]
    numeric = sum(v is not None for v in numbers) >= 3
    values = sorted(v for v in numbers if v is not None)
    option_words = [_words(c) for c in choices]
    lowered = [c.strip().lower() for c in choices]
    out = []
    for i, choice in enumerate(choices):
        rank = f"zlr{min(int(by_length[i]), 3)}"
        last = "zlrlast" if by_length[i] == n - 1 else "zlrnl"
        tokens = [f"zpos{i}", f"zn{n}", rank, last]
        cover = len(option_words[i] & qwords) / max(1, len(option_words[i]))
        tokens.append(f"zqov{int(cover * 4)}")
        others = [len(option_words[i] & option_words[j]) / max(1, len(option_words[i] | option_words[j]))
                  for j in range(n) if j != i]
        tokens.append(f"zmed{int(4 * float(np.mean(others))) if others else 0}")
        if numeric and numbers[i] is not None:
            r = values.index(numbers[i])
            tokens.append("znmin" if r == 0 else "znmax" if r == len(values) - 1 else "zninner")
        if lowered.count(lowered[i]) > 1:
            tokens.append("zdup")
        body = " ".join("o_" + w for w in _WORD.findall(choice.lower()))
        out.append(f"{body} {' '.join(tokens)} ty_{kind} {rank}_{kind} {last}_{kind}")
    return out


def gold_index(row: SampleResult) -> int | None:
    """The gold option's index of a multiple-choice row (a single letter within its choices)."""
    g = row.gold.strip() if row.gold else ""
    if not row.choices or len(g) != 1 or not (g.isascii() and g.isalpha()):
        return None
    k = ord(g.upper()) - ord("A")
    return k if k < len(row.choices) else None


def _guessable(row: SampleResult) -> bool:
    return bool(row.choices) and 2 <= len(row.choices) <= MAX_OPTIONS


def _labelled(row: SampleResult) -> bool:
    """A row a guesser can learn from: options and a gold letter among them."""
    return _guessable(row) and gold_index(row) is not None


@dataclass(frozen=True)
class OptionGuesser:
    """The fitted guesser: `weights[i]` on hash bucket `buckets[i]` of the option documents;
    P(option) is the softmax of the options' scores within the question."""

    buckets: tuple[int, ...]
    weights: tuple[float, ...]
    n_features: int = GUESS_FEATURES
    questions: int = 0  # dev questions it was fitted on

    def __post_init__(self) -> None:
        if len(self.buckets) != len(self.weights):
            raise ValueError("field 'guesser': expected one weight per bucket")
        if any(not 0 <= b < self.n_features for b in self.buckets):
            raise ValueError(f"field 'guesser': buckets must lie in [0, {self.n_features})")

    @classmethod
    def fit(cls, rows: Sequence[SampleResult]) -> "OptionGuesser | None":
        """Fitted on the rows (one per question) that have options and a gold letter; None when
        fewer than GUESS_MIN_QUESTIONS do."""
        usable = [r for r in rows if _labelled(r)]
        if len(usable) < GUESS_MIN_QUESTIONS:
            return None
        texts, labels = [], []
        for r in usable:
            g = gold_index(r)
            docs = option_documents(r.question, r.type, r.choices or [])
            texts += docs
            labels += [1.0 if i == g else 0.0 for i in range(len(docs))]
        m = hashed_ngrams(texts, GUESS_FEATURES, GUESS_NGRAM_MAX)  # cached per text: the folds share rows
        keep = common_buckets(m)
        try:
            w, _ = fit_logistic(m[:, keep], np.asarray(labels), GUESS_L2)
        except CannotFit:
            return None
        nz = np.flatnonzero(w != 0.0)
        return cls(buckets=tuple(int(keep[i]) for i in nz), weights=tuple(float(w[i]) for i in nz),
                   questions=len(usable))

    def probabilities(self, rows: Sequence[SampleResult]) -> list[np.ndarray | None]:
        """P(each option is the gold one) for each row, from its options alone (one vectorising
        pass for all rows); None for a row without options."""
        docs, owner = [], []
        for k, r in enumerate(rows):
            if _guessable(r):
                d = option_documents(r.question, r.type, r.choices or [])
                docs += d
                owner += [k] * len(d)
        out: list[np.ndarray | None] = [None] * len(rows)
        if not docs:
            return out
        m = hashed_ngrams(docs, self.n_features, GUESS_NGRAM_MAX)[:, list(self.buckets)]
        z = np.asarray(m @ np.asarray(self.weights, dtype=float)).ravel()
        owner_a = np.asarray(owner)
        starts = np.flatnonzero(np.r_[True, owner_a[1:] != owner_a[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], owner_a.size]):
            e = np.exp(z[lo:hi] - z[lo:hi].max())
            out[int(owner_a[lo])] = e / e.sum()
        return out

    def tokens(self, row: SampleResult) -> list[str]:
        """The document tokens of one row (none for an open question or a failed sample)."""
        return self.tokens_of([row])[0]

    def tokens_of(self, rows: Sequence[SampleResult]) -> list[list[str]]:
        """The document tokens of each row (as `tokens`, in one pass)."""
        probs = self.probabilities(rows)
        return [[] if p is None or r.error is not None else guess_tokens(p, chosen_index(r))
                for r, p in zip(rows, probs)]

    def to_dict(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "buckets": list(self.buckets), "weights": list(self.weights),
                "questions": self.questions}


def guess_tokens(p: np.ndarray, chosen: int | None) -> list[str]:
    """Tokens for how the student's choice meets the guesser's probabilities (module doc)."""
    if chosen is None:
        return ["g_nochoice"]
    rank = int((p > p[chosen]).sum())
    out = [f"g_rank{min(rank, 3)}", f"g_pc{min(int(p[chosen] * 10), 5)}", f"g_pm{min(int(p.max() * 10), 5)}"]
    return out + (["g_agree"] if rank == 0 else [])


def out_of_fold_tokens(rows: Sequence[SampleResult], *, folds: int = GUESS_FOLDS, seed: int = 0) -> list[list[str]]:
    """Each row's tokens from a guesser fitted on the other folds' rows (module doc); no tokens
    anywhere when the rows cannot fit a guesser (too few with options and a gold letter)."""
    n = len(rows)
    out: list[list[str]] = [[] for _ in range(n)]
    if sum(1 for r in rows if _labelled(r)) < GUESS_MIN_QUESTIONS:
        return out
    order = np.random.default_rng(seed).permutation(n)
    for held in np.array_split(order, folds):
        held_set = set(int(i) for i in held)
        guesser = OptionGuesser.fit([rows[i] for i in range(n) if i not in held_set])
        if guesser is None:  # a fold short of questions: blank everywhere, as the router then reads
            return [[] for _ in range(n)]
        for i, tokens in zip(held, guesser.tokens_of([rows[int(i)] for i in held])):
            out[int(i)] = tokens
    return out
