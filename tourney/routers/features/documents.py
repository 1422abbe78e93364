"""The text a router's hashed n-grams read when it reads the student's answer too: the question's
type, the question, and the student's output, in one string for scikit-learn's HashingVectorizer
(routers.fitting.linear.HashedText).

Each part keeps its own n-grams: the type is one word `qtype_<type>` (a per-type offset that the
L2 penalty shrinks towards the mean, most for the types with few dev questions), the question's
words are as they are, and every word of the answer is prefixed `a_`, so "however" in the answer
and "however" in the question land in different buckets. Of a long output only its head and tail
are read (where the approach and the conclusion are), so a runaway output stays cheap.

For multiple choice the words of the option the student chose follow, each prefixed `c_`
(`DocumentForm.choice`): the question's text holds no options, and which option text a student settles
on says something its reasoning does not (MMLU-Pro's added distractors read alike). Measured on
the two recorded MMLU-Pro pairs, 5 random 50/50 splits each used both ways (benchmarks/RESULTS.md,
issue 23, "After issue 22's grader"), the gain router over these documents beat the one without
them in each of the 20 evaluations: +0.002 (Qwen1.5) and +0.004 (Mistral) held-out APGR on average. A router file
records whether its documents hold the chosen option (`DocumentForm.choice`, HashedText.form;
the file key `reads_choice`): files written before read their documents as they were fitted.

Last come the check tokens (`DocumentForm.checks`, routers.features.option_checks: `k_chosen_computed`,
`k_chosen_not_computed`, `k_longest`, ...): whether the student's reasoning wrote the number of
the option it chose, and where that option lies among the others. A hashed word cannot see that
"0.016" in the reasoning is option C's "0.016", nor that C is the longest option; these tokens
say it. Recorded as `DocumentForm.checks` (the file key `reads_checks`); files written before
read their documents without them.

After them, the option guesser's tokens (`DocumentForm.guess`, routers.features.option_guess:
`g_agree`, `g_rank1`, ...): whether the student chose what the options alone point to, by a
guesser learnt from the dev questions' gold letters. The guesser belongs to the router (a router
file keeps it beside its models), so the tokens are the caller's to give: `rows_document(...,
guess=...)`. Recorded as the file key `reads_guess`; files written before read their documents
without them.

`DocumentForm` names which of these a router's texts are, in one value: the bare question text
(QUESTION_TEXT), or a document with or without the chosen option, the check tokens and the
guesser's tokens (FULL_DOCUMENT: what routers are fitted on now).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from tourney.harness.types import SampleResult
from tourney.routers.features.option_checks import check_words, chosen_index

HEAD_CHARS, TAIL_CHARS = 400, 1200
_WORD = re.compile(r"\w\w+")


@dataclass(frozen=True)
class DocumentForm:
    """What a words router's texts are: the question's text alone (`answer` False), or documents
    of type, question and the student's answer (`answer`), which may also hold the chosen option's
    words (`choice`) and end with the check tokens (`checks`) and the option guesser's (`guess`). A
    router file records the four as `reads_answer`, `reads_choice`, `reads_checks` and
    `reads_guess` (routers.fitting.router_file), each absent in files written before it was read.
    The option, the checks and the guess are parts of a document: without the answer they are
    False, whatever was asked."""

    answer: bool = False
    choice: bool = False
    checks: bool = False
    guess: bool = False  # the option guesser's tokens (routers.features.option_guess)

    def __post_init__(self) -> None:
        if not self.answer:  # frozen: set through object
            object.__setattr__(self, "choice", False)
            object.__setattr__(self, "checks", False)
            object.__setattr__(self, "guess", False)

    @staticmethod
    def widest(forms: "Sequence[DocumentForm]") -> "DocumentForm":
        """The form that holds each part any of `forms` holds (a gain router's models are fitted
        on one form; a file that mixed them was read this way before the form was one value)."""
        return DocumentForm(any(f.answer for f in forms), any(f.choice for f in forms), any(f.checks for f in forms),
                            any(f.guess for f in forms))


QUESTION_TEXT = DocumentForm()  # the bare question text, as question routers read it
FULL_DOCUMENT = DocumentForm(answer=True, choice=True, checks=True, guess=True)  # what words routers are fitted on now


def type_word(question_type: str) -> str:
    """A question type as one token ("Computer Science" -> "computer_science")."""
    return "_".join(_WORD.findall(question_type.lower())) or "default"


def routing_document(question: str, question_type: str, output: str, chosen: str | None = None,
                     checks: Sequence[str] = (), guess: Sequence[str] = ()) -> str:
    """One question's document; `chosen`: the text of the option the student chose (None: no
    option read, or a document without it); `checks`: the check tokens (option_checks.check_words);
    `guess`: the option guesser's (option_guess.OptionGuesser.tokens)."""
    kind = type_word(question_type)
    text = output if len(output) <= HEAD_CHARS + TAIL_CHARS else output[:HEAD_CHARS] + " " + output[-TAIL_CHARS:]
    answer = " ".join("a_" + w for w in _WORD.findall(text.lower()))
    doc = f"qtype_{kind} {question} {answer}"
    if chosen:
        doc += " " + " ".join("c_" + w for w in _WORD.findall(chosen[:HEAD_CHARS].lower()))
    if checks:
        doc += " " + " ".join(checks)
    if guess:
        doc += " " + " ".join(guess)
    return doc


def chosen_option(row: SampleResult) -> str | None:
    """The text of the option a multiple-choice row's prediction names; None for an open
    question, a failed sample, or an answer that names no single option among the choices."""
    k = chosen_index(row)
    return None if k is None else row.choices[k]


def rows_document(rows: Sequence[SampleResult], question: str | None = None, question_type: str | None = None,
                  *, form: DocumentForm = FULL_DOCUMENT, guess: Sequence[str] = ()) -> str:
    """The document of one question from its student samples (the first sample's output; a
    failed sample reads as no answer); with the chosen option's words and the check tokens as far
    as `form` holds them (the documents of router files written before they were read hold
    neither or only the option). `guess`: the option guesser's tokens, read when `form.guess`
    (the caller's guesser gives them: routers.features.option_guess). It is a document whatever
    `form.answer` says: callers ask for one only for a form that reads the answer."""
    first = min(rows, key=lambda r: r.sample) if rows else None
    output = "" if first is None or first.error is not None else first.output
    text = question if question is not None else (first.question if first is not None else "")
    kind = question_type if question_type is not None else (first.type if first is not None else "default")
    chosen = chosen_option(first) if form.choice and first is not None else None
    checks = check_words(first) if form.checks and first is not None else []
    return routing_document(text, kind, output, chosen, checks, guess if form.guess else ())
