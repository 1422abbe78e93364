"""What several samples of one question say together: the one majority rule, and the one mean
token logprob. Every vote in the project (majority accuracy in reports, the self-consistency
router signal, the majority verifier of rejection sampling) goes through `majority_vote`.

The rule. Samples are taken in sample order; each sample with an answer votes for it. "No
answer" (an unparsed output, or a request that failed) never wins: it is not an answer to agree
on. It still counts in the total, so unanswered samples lower the winner's share. The answer with
the most votes wins; a tie goes to the answer that appears first (with the greedy sample first, a
tie falls back to the greedy answer). With no answered sample there is no winner.

    [None, None, "5", "5", <error>]  ->  "5", 2 votes of 5 (share 0.4)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Vote:
    answer: str | None  # the winning answer; None when no sample has one
    votes: int  # samples that gave the winning answer (0 when there is none)
    total: int  # every sample, unanswered and failed ones included
    first: int | None  # position, in the order given, of the first sample with the winning answer

    @property
    def share(self) -> float:
        """The winner's share of all samples; 0.0 when no sample has an answer."""
        return self.votes / self.total if self.total else 0.0


def majority_vote(answers: Sequence[str | None]) -> Vote:
    """The majority over answers given in sample order; None entries are "no answer"."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first.setdefault(answer, i)
    if not counts:
        return Vote(answer=None, votes=0, total=len(answers), first=None)
    # dicts keep first-seen order and max() returns the first maximum: that is the tie-break.
    winner = max(counts, key=lambda a: counts[a])
    return Vote(answer=winner, votes=counts[winner], total=len(answers), first=first[winner])


def answer_counts(answers: Sequence[str | None]) -> dict[str | None, int]:
    """Answer -> count in first-seen order, "no answer" (None) counted as one more answer: the
    distribution whose entropy measures disagreement."""
    counts: dict[str | None, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    return counts


def mean_logprob(token_logprobs: Sequence[float] | None) -> float | None:
    """Mean chosen-token logprob of one output; None when there are no logprobs.

    A -inf (a token the model gave zero probability, e.g. forced by a grammar or a stop string)
    makes the mean -inf: it is the least confident output there is, never a neutral one. NaN
    entries (a backend's missing value) are skipped.
    """
    if not token_logprobs:
        return None
    values = [float(x) for x in token_logprobs if not math.isnan(x)]
    if not values:
        return None
    if any(x == -math.inf for x in values):
        return -math.inf
    return math.fsum(values) / len(values)
