"""A model's log-likelihood of each option at the point where its output commits to its answer.

The multiple-choice router signals (`mc_probability`, `mc_margin`), the calibration of option
probabilities and option-level distillation all read the same numbers: for a question with
options and a sample's output, the log-likelihood of each option as the continuation of

    prompt + the output up to where it names its answer

An output that answers with a letter ("B", "The answer is C.") is scored letter by letter at
that letter: for " B" that is the letter right after "Answer:", what lm-eval scores for MMLU.
An output that names its option by text (the miniature pair, too small to bind an answer to a
letter: "Postia.", "Zor. Postia.", read by harness.scoring.extract_choice_text) is scored option
text by option text there, as lm-eval scores ARC. Either way the whitespace before the answer
moves into the continuations (" A", " Postia"), as lm-eval splits context and continuation, so
they tokenize as the model writes them. An output with no readable answer commits to nothing:
no scores (None), and the router treats the question as one it knows nothing about.

Only text prompts can be extended with the output (a chat prompt is rendered by the backend's
own template): for chat prompts nothing is scored and the signals that need it are unavailable.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from tourney.harness.prompts import LETTERS
from tourney.harness.scoring import extract_choice, extract_choice_text
from tourney.harness.types import DataError, Question

# A capital letter standing alone (not inside a word or a number): where a letter is written.
_STANDALONE = r"(?<![A-Za-z0-9]){}(?![A-Za-z0-9'’])"


@dataclass(frozen=True)
class AnswerSpan:
    """Where an output names its answer: output[start:end] is the chosen continuation."""

    start: int  # the answer's whitespace starts here: output[:start] is the context part
    end: int
    choice: int  # index of the chosen option
    continuations: tuple[str, ...]  # every option as it would be written there (" A" or " Postia")


def commit_point(output: str, answer: str) -> tuple[str, str]:
    """(the output before its answer, the whitespace just before it), or ("", " ") when the
    answer is not found. The answer (a letter, or an option's text, in any case) is its last
    standalone occurrence: answers come last, a reasoning model's thinking comes before."""
    hits = list(re.finditer(_STANDALONE.format(re.escape(answer)), output, flags=re.IGNORECASE))
    if hits:
        before = output[: hits[-1].start()]
        stripped = before.rstrip(" ")
        return stripped, before[len(stripped):]
    return "", " "


def locate_answer(output: str, choices: Sequence[str]) -> AnswerSpan | None:
    """The answer an output commits to, by letter or else by option text; None without one."""
    letter = extract_choice(output, len(choices))
    if letter is not None:
        index, written, options = LETTERS.index(letter), letter, list(LETTERS[: len(choices)])
    else:
        named = extract_choice_text(output, choices)
        if named is None:
            return None
        index = LETTERS.index(named)
        written, options = choices[index], list(choices)
    before, space = commit_point(output, written)
    start = len(before)
    found = output[start + len(space): start + len(space) + len(written)]
    end = start + len(space) + len(written) if found.lower() == written.lower() else start
    return AnswerSpan(start=start, end=end, choice=index, continuations=tuple(space + o for o in options))


def option_request(prompt: str, output: str, choices: Sequence[str]) -> tuple[str, list[str]] | None:
    """The context and the continuations that score one sample's options; None without an answer."""
    span = locate_answer(output, choices)
    if span is None:
        return None
    return prompt + output[: span.start], list(span.continuations)


def score_options(backend, questions: Sequence[Question], prompts: Sequence,
                  outputs: Sequence[Sequence[str]]) -> list[list[list[float] | None]]:
    """Per question, per sample: the option log-likelihoods, or None where there is nothing to
    score (not multiple choice, a chat prompt, no readable answer). One `score_choices` call."""
    contexts, continuations, where = [], [], []
    out: list[list[list[float] | None]] = [[None] * len(o) for o in outputs]
    for i, (q, prompt) in enumerate(zip(questions, prompts, strict=True)):
        if not q.is_multiple_choice or not isinstance(prompt, str):
            continue
        for s, text in enumerate(outputs[i]):
            request = option_request(prompt, text, q.choices or ())
            if request is not None:
                contexts.append(request[0])
                continuations.append(request[1])
                where.append((i, s))
    if contexts:
        for (i, s), scores in zip(where, backend.score_choices(contexts, continuations), strict=True):
            out[i][s] = [float(x) for x in scores]
    return out


def option_probabilities(logliks: Sequence[float], where: str = "choice_logliks") -> list[float]:
    """Softmax of option log-likelihoods, in letter order. A non-numeric or non-finite value is
    bad data (DataError naming `where`), never a silently invented probability."""
    if not logliks or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                              for x in logliks):
        raise DataError(f"{where}: expected a non-empty list of finite numbers, got {list(logliks)!r:.80}")
    top = max(logliks)
    exp = [math.exp(x - top) for x in logliks]
    total = math.fsum(exp)
    return [e / total for e in exp]
