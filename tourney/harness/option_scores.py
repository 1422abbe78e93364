"""A model's log-likelihood of each option letter at the point where it commits to its answer.

The multiple-choice router signals (`mc_probability`, `mc_margin`), the calibration of option
probabilities and option-level distillation all read the same numbers: for a question with
options A-D and a sample's output, the log-likelihood of each letter as the continuation of

    prompt + the output up to its answer letter

so for an output " B" that is the letter right after "Answer:" (what lm-eval scores for MMLU),
and for "Pim lives in Zor. Zor is in Kulia. The answer is C." it is the letter after "The
answer is", given the model's own reasoning. The whitespace before the letter moves into the
continuations (" A", " B", ...), as lm-eval splits context and continuation, so the letters
tokenize as the model writes them. An output with no letter the scorer can read is scored right
after the prompt.

Only text prompts can be extended with the output (a chat prompt is rendered by the backend's
own template): for chat prompts nothing is scored and the signals that need it are unavailable.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

from tourney.harness.prompts import LETTERS
from tourney.harness.types import DataError, Question

# A capital letter standing alone (not inside a word or a number): where a letter is written.
_STANDALONE = r"(?<![A-Za-z0-9]){}(?![A-Za-z0-9'’])"


def commit_point(output: str, letter: str | None) -> tuple[str, str]:
    """(the output before the answer letter, the whitespace just before it).

    The answer letter is the last standalone occurrence of `letter` (answers come last; a
    reasoning model's thinking comes before). Without a letter: ("", " ")."""
    if letter:
        hits = list(re.finditer(_STANDALONE.format(re.escape(letter)), output))
        if hits:
            before = output[: hits[-1].start()]
            stripped = before.rstrip(" ")
            return stripped, before[len(stripped):]
    return "", " "


def option_request(prompt: str, output: str, prediction: str | None, n_choices: int) -> tuple[str, list[str]]:
    """The context and the continuations that score one sample's options."""
    before, space = commit_point(output, prediction)
    return prompt + before, [space + letter for letter in LETTERS[:n_choices]]


def score_options(backend, questions: Sequence[Question], prompts: Sequence, outputs: Sequence[Sequence[str]],
                  predictions: Sequence[Sequence[str | None]]) -> list[list[list[float] | None]]:
    """Per question, per sample: the option log-likelihoods, or None where there is nothing to
    score (not multiple choice, or a chat prompt). One `score_choices` call for the whole chunk."""
    contexts, continuations, where = [], [], []
    out: list[list[list[float] | None]] = [[None] * len(o) for o in outputs]
    for i, (q, prompt) in enumerate(zip(questions, prompts, strict=True)):
        if not q.is_multiple_choice or not isinstance(prompt, str):
            continue
        for s, (text, pred) in enumerate(zip(outputs[i], predictions[i], strict=True)):
            ctx, conts = option_request(prompt, text, pred, len(q.choices or ()))
            contexts.append(ctx)
            continuations.append(conts)
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
