"""Confidence signals: one number per question, computed from the student's samples of it.

Every signal takes the SampleResult rows of ONE question (any order; "the first sample" is the one
with the lowest `sample` index, the greedy one in a K-sample run) and, for multiple choice, the
option log-likelihoods a backend's `score_choices` returned. It returns a float, or None when the
backend did not give what the signal needs (no token logprobs, a single sample, no option scores).
None is never replaced by a made-up value here: the combined router imputes, and says so.

Signs differ: for some signals larger means more confident (mean_logprob), for others less
(length, entropy). `ORIENTATION` records which, so a single signal can be used as a confidence
(`oriented`) where the cascade routes the LOWEST confidences to the teacher.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Mapping, Sequence

from tourney.harness.scoring import hashes_answer_span
from tourney.harness.types import SampleResult
from tourney.harness.votes import answer_counts, majority_vote
from tourney.harness.votes import mean_logprob as mean_of
from tourney.routers.features.answer_features import ANSWER_ORIENTATION, ANSWER_SIGNALS
from tourney.routers.features.solution_features import SOLUTION_ORIENTATION, SOLUTION_SIGNALS, first_sample

ChoiceLogliks = Sequence[float] | None
Signal = Callable[[Sequence[SampleResult], ChoiceLogliks], float | None]


def _logprobs(rows: Sequence[SampleResult]) -> list[float] | None:
    lp = first_sample(rows).token_logprobs
    return list(lp) if lp else None  # an empty list (zero tokens) carries no signal either


# --- whole-solution logprob signals -------------------------------------------------------------

def mean_logprob(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Mean token logprob of the first sample's whole output (tourney.harness.votes.mean_logprob:
    a -inf token makes it -inf, the least confident); None without logprobs."""
    return mean_of(_logprobs(rows))


def min_logprob(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """The least likely token of the first sample: one shaky step can sink a solution."""
    lp = _logprobs(rows)
    return min(lp) if lp else None


def entropy_proxy(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Mean of -logprob of the chosen tokens (larger = less confident).

    The true per-step entropy needs the whole next-token distribution; with only the chosen
    token's logprob, its surprise is the usual stand-in (its expectation IS the entropy).
    """
    lp = _logprobs(rows)
    return -math.fsum(lp) / len(lp) if lp else None


# --- final-answer logprob signals ---------------------------------------------------------------

# Without a `#### N` line, the last of these marks where the final answer starts (extract_answer
# also reads the last \boxed{} and the last "answer is").
_ANSWER_MARKER = re.compile(r"\banswer\s+is\b:?|\\boxed\s*\{", re.IGNORECASE)


def _answer_logprobs(rows: Sequence[SampleResult]) -> list[float] | None:
    """Logprobs of the tokens that (approximately) spell the final answer of the first sample.

    APPROXIMATION: rows keep per-token logprobs but not the token texts, so token boundaries are
    unknown. The answer's character span (the `#### N` line the grader scores, the first one it
    accepts; without one, from the last 'answer is' / '\\boxed{' marker to the end of that
    line) is mapped to token positions by its share of the output's characters: tokens
    [floor(start/len * n), ceil(end/len * n)), at least one token. This is right on average and
    off by a token or two at the edges; tokens are short near numbers (Qwen tokenises digits one
    by one), so the window may cover less than the whole answer.
    None when there are no logprobs or no marker (no final answer to score).
    """
    lp = _logprobs(rows)
    text = first_sample(rows).output
    if not lp or not text:
        return None
    span = hashes_answer_span(text)  # the grader's first accepted "#### N" line
    if span is not None:
        start, end = span
    else:
        marks = list(_ANSWER_MARKER.finditer(text))
        if not marks:
            return None
        start = marks[-1].end()
        while start < len(text) and text[start].isspace():  # the answer may start on the next line
            start += 1
        if start >= len(text):
            return None
        end = text.find("\n", start)
        end = len(text) if end == -1 else end
    n = len(lp)
    t0 = min(n - 1, math.floor(start * n / len(text)))
    t1 = min(n, max(t0 + 1, math.ceil(end * n / len(text))))
    return lp[t0:t1]


def answer_logprob_mean(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Mean logprob over the final answer's tokens (approximate span: see _answer_logprobs)."""
    lp = _answer_logprobs(rows)
    return math.fsum(lp) / len(lp) if lp else None


def answer_logprob_min(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Least likely token of the final answer (approximate span: see _answer_logprobs)."""
    lp = _answer_logprobs(rows)
    return min(lp) if lp else None


# --- agreement between samples ------------------------------------------------------------------

def _answers(rows: Sequence[SampleResult]) -> list[str | None]:
    """Each sample's answer in sample order; an errored or unparsed sample has none (None)."""
    return [None if r.error is not None else r.prediction for r in sorted(rows, key=lambda r: r.sample)]


def self_consistency(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Share of ALL samples that give the majority answer (tourney.harness.votes: "no answer"
    never wins but stays in the denominator, so unparsable samples lower the confidence; all
    unparsable gives 0.0); None with fewer than 2 samples."""
    if len(rows) < 2:
        return None
    return majority_vote(_answers(rows)).share


def answer_agreement(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Share of the OTHER samples whose answer equals the first sample's; None with fewer than 2.

    The first sample's answer is the one a cascade submits and the one routing is judged on;
    self_consistency measures the majority's share, which says nothing about the first answer
    when it is not the majority's (5 samples 3-1-1 with the first in a minority read 0.6 there,
    and 0.0 here). A first sample with no answer (unparsed or failed) gives 0.0.
    """
    if len(rows) < 2:
        return None
    ordered = sorted(rows, key=lambda r: r.sample)
    first = None if ordered[0].error is not None else ordered[0].prediction
    if first is None:
        return 0.0
    same = sum(1 for r in ordered[1:] if r.error is None and r.prediction == first)
    return same / (len(ordered) - 1)


def answer_agreement_entropy(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Shannon entropy (nats) of the answer distribution over samples, "no answer" counted as one
    more answer; 0 when all agree (larger = less confident). None with fewer than 2 samples."""
    if len(rows) < 2:
        return None
    n = len(rows)
    return 0.0 - math.fsum(c / n * math.log(c / n) for c in answer_counts(_answers(rows)).values())


# --- length -------------------------------------------------------------------------------------

def length(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Completion tokens of the first sample, or its characters when the backend counted no tokens
    (larger = less confident: long solutions are the ones a model struggles with).
    None for a failed request, whose length measures the failure."""
    first = first_sample(rows)
    if first.error is not None:
        return None
    return float(first.completion_tokens if first.completion_tokens > 0 else len(first.output))


def mean_length(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Mean length (tokens, else characters, as `length`) over the samples that did not fail:
    less noisy than one sample's; None with fewer than 2 samples or none that succeeded."""
    if len(rows) < 2:
        return None
    ok = [r for r in rows if r.error is None]
    if not ok:
        return None
    return math.fsum(float(r.completion_tokens if r.completion_tokens > 0 else len(r.output)) for r in ok) / len(ok)


# --- multiple choice ----------------------------------------------------------------------------

def _choice_probs(choice_logliks: ChoiceLogliks) -> list[float] | None:
    if not choice_logliks:
        return None
    top = max(choice_logliks)
    if not math.isfinite(top):
        return None  # every option impossible (all -inf) or a broken score: nothing to read
    exp = [math.exp(x - top) for x in choice_logliks]  # shifted by the max so exp never overflows
    total = math.fsum(exp)
    return sorted((e / total for e in exp), reverse=True)


def mc_probability(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Softmax probability of the best option, from the option log-likelihoods."""
    probs = _choice_probs(choice_logliks)
    return probs[0] if probs else None


def mc_margin(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """Top probability minus the runner-up's (the top one alone when there is a single option)."""
    probs = _choice_probs(choice_logliks)
    if not probs:
        return None
    return probs[0] - (probs[1] if len(probs) > 1 else 0.0)


def option_or_token_probability(rows: Sequence[SampleResult], choice_logliks: ChoiceLogliks = None) -> float | None:
    """The best option's probability where the question has option scores, else the probability
    of the first sample's least likely token (exp of min_logprob). For a set that mixes multiple
    choice with open questions: mc_probability says nothing about an open question, and over a
    mixed dev set that blank made the token signal win for every question, the multiple-choice
    ones included (RESULTS.md, routing the distilled student and the teacher). Both are
    probabilities of the weakest committed choice; a per-type map (routers.policies.pertype) puts the two
    kinds on one scale of expected gain. Offered only for sets holding both kinds (rundata)."""
    p = mc_probability(rows, choice_logliks)
    if p is not None:
        return p
    low = min_logprob(rows)
    return math.exp(low) if low is not None else None


# --- model-free question features ---------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
# Words that ask for an arithmetic step; a rough count of the steps a question needs.
OP_WORDS = frozenset(
    "total sum altogether each per every more less fewer than times twice double triple half "
    "third quarter percent percentage remaining left average difference ratio split share "
    "divided multiplied add subtract spend spent earn earns cost costs profit discount".split()
)
QUESTION_FEATURES = ("question_numbers", "question_words", "question_op_words", "prior_accuracy")
# Computed by a difficulty prior learned from other pairs (routers.features.prior), when a router holds one.
PRIOR_FEATURES = ("prior_accuracy",)


def question_features(question_text: str) -> dict[str, float]:
    """Features of the question text alone, usable without any model (more = harder)."""
    words = [w.strip(".,;:!?()\"'$%").lower() for w in question_text.split()]
    return {
        "question_numbers": float(len(_NUMBER.findall(question_text))),
        "question_words": float(len(question_text.split())),
        "question_op_words": float(sum(1 for w in words if w in OP_WORDS)),
    }


# --- registry -----------------------------------------------------------------------------------

SIGNALS: dict[str, Signal] = {
    "mean_logprob": mean_logprob,
    "min_logprob": min_logprob,
    "answer_logprob_mean": answer_logprob_mean,
    "answer_logprob_min": answer_logprob_min,
    "entropy_proxy": entropy_proxy,
    "self_consistency": self_consistency,
    "answer_agreement": answer_agreement,
    "answer_agreement_entropy": answer_agreement_entropy,
    "length": length,
    "mean_length": mean_length,
    "mc_probability": mc_probability,
    "mc_margin": mc_margin,
    "option_or_token_probability": option_or_token_probability,
    **SOLUTION_SIGNALS,
    **ANSWER_SIGNALS,
}
# +1: larger means the student is more likely right; -1: larger means less likely.
ORIENTATION: dict[str, int] = {
    "mean_logprob": 1, "min_logprob": 1, "answer_logprob_mean": 1, "answer_logprob_min": 1,
    "entropy_proxy": -1, "self_consistency": 1, "answer_agreement": 1, "answer_agreement_entropy": -1,
    "length": -1, "mean_length": -1,
    "mc_probability": 1, "mc_margin": 1, "option_or_token_probability": 1,
    "question_numbers": -1, "question_words": -1, "question_op_words": -1, "prior_accuracy": 1,
    **SOLUTION_ORIENTATION,
    **ANSWER_ORIENTATION,
}
FEATURE_NAMES = (*SIGNALS, *QUESTION_FEATURES)
# What a signal needs from the student's call: token logprobs of the first sample, several
# samples, or option scores. The cascade draws exactly what the router reads.
LOGPROB_SIGNALS = frozenset({"mean_logprob", "min_logprob", "answer_logprob_mean",
                             "answer_logprob_min", "entropy_proxy", "option_or_token_probability"})
SAMPLE_SIGNALS = frozenset({"self_consistency", "answer_agreement", "answer_agreement_entropy", "mean_length",
                            "mean_question_number_coverage"})
CHOICE_SIGNALS = frozenset({"mc_probability", "mc_margin", "option_or_token_probability"})
# Read by a router as a single score, never as a regression feature (it repeats mc_probability
# and min_logprob), and offered only where a set mixes questions with and without options.
MIXED_SIGNALS = frozenset({"option_or_token_probability"})


def check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ValueError(f"unknown signal(s) {unknown}; known: {', '.join(FEATURE_NAMES)}")


def compute_signals(
    rows: Sequence[SampleResult],
    names: Sequence[str],
    *,
    choice_logliks: ChoiceLogliks = None,
    question_text: str | None = None,
    prior=None,
) -> dict[str, float | None]:
    """The named signals and question features for one question's samples.

    Question features read `question_text`, or the question stored in the first row; option
    log-likelihoods are `choice_logliks`, or those the first row recorded (harness.option_scores);
    `prior_accuracy` is the `prior`'s (routers.features.prior.DifficultyPrior), None without one.
    """
    check_names(names)
    if choice_logliks is None and rows:
        choice_logliks = first_sample(rows).choice_logliks
    out: dict[str, float | None] = {}
    qf: Mapping[str, float] | None = None
    for name in names:
        if name in SIGNALS:
            out[name] = SIGNALS[name](rows, choice_logliks)
        elif name in PRIOR_FEATURES:
            text = question_text if question_text is not None else first_sample(rows).question
            out[name] = None if prior is None else float(prior.accuracy([text])[0])
        else:
            if qf is None:
                qf = question_features(question_text if question_text is not None else first_sample(rows).question)
            out[name] = qf[name]
    return out


def oriented(name: str, value: float | None) -> float | None:
    """A single signal as a confidence: flipped when larger means less confident."""
    check_names([name])
    return None if value is None else ORIENTATION[name] * value
