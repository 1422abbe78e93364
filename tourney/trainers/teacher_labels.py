"""Distillation rows from a teacher's evaluation run, and their encoding with the letter's position.

The teacher answers the distillation questions with `tourney eval --logprobs 0` (resumable, any
backend); its run records, per question, its output and, for multiple choice, its option
log-likelihoods where it commits to its letter (harness.option_scores). `rows_from_run` turns
that record into training rows for one recipe:

- multiple choice: the hard label is the teacher's answer, the soft label its option
  log-likelihoods where it committed to it; the text is the teacher's output with `cot` (its
  brief reason, when it wrote one, then the answer), else its answer alone as it wrote it
  ("Postia.", " B"). Without the reason the soft label still comes from the point where the
  teacher committed after reasoning: what a student answering at once has to match;
- open-ended: with `cot` the teacher's worked solution, else its final answer alone ("#### N").

A question whose teacher output has no readable answer gives no row; `LabelStats` counts them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pydantic import Field, model_validator

from tourney.harness.jsonl import iter_objects
from tourney.harness.option_scores import locate_answer
from tourney.harness.prompts import LETTERS
from tourney.harness.questions import load_questions
from tourney.harness.rundir import RESULTS_FILE, read_results
from tourney.harness.types import DataError
from tourney.schema import Lenient, parse
from tourney.trainers.pretrain import prompt_text


class DistillRow(Lenient):
    """One line of a distillation file."""

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    type: str = "default"
    choices: list[str] | None = None
    solution: str = Field(min_length=1)  # the text after "Answer:", as the teacher wrote it
    answer: str = Field(min_length=1)  # the hard label: a letter, or the final number
    teacher_choice_logliks: list[float] | None = None  # multiple choice: the soft label

    @model_validator(mode="after")
    def _letters_fit(self) -> "DistillRow":
        if self.choices is not None:
            if self.answer not in LETTERS[: len(self.choices)]:
                raise ValueError(f"answer {self.answer!r} is not one of the {len(self.choices)} option letters")
            if self.teacher_choice_logliks is not None and len(self.teacher_choice_logliks) != len(self.choices):
                raise ValueError(f"{len(self.teacher_choice_logliks)} teacher option scores for "
                                 f"{len(self.choices)} choices")
        return self


@dataclass(frozen=True)
class LabelStats:
    questions: int
    rows: int
    unreadable: int  # teacher outputs without an answer: no row
    multiple_choice: int


def rows_from_run(run_dir: str | Path, data: str | Path, *, cot: bool) -> tuple[list[DistillRow], LabelStats]:
    """Training rows for one recipe from the teacher's run on `data` (see the module doc)."""
    questions = {q.id: q for q in load_questions(str(data))}
    results = [r for r in read_results(Path(run_dir) / RESULTS_FILE) if r.sample == 0]
    rows, unreadable, mc = [], 0, 0
    for r in results:
        q = questions.get(r.id)
        if q is None:
            raise DataError(f"{run_dir}: question {r.id!r} is not in {data}; was the run made on other data?")
        if r.error is not None or r.prediction is None:
            unreadable += 1
            continue
        if q.is_multiple_choice:
            span = locate_answer(r.output, q.choices or ())
            if span is None:
                unreadable += 1
                continue
            if r.choice_logliks is None:
                raise DataError(f"{run_dir}: question {r.id!r} has no option scores; run the teacher with --logprobs 0")
            mc += 1
            # Without the reason: the answer as the teacher wrote it ("Postia.", " B").
            solution = r.output if cot else r.output[span.start:]
            soft = list(r.choice_logliks)
        else:
            solution = r.output if cot else f" #### {r.prediction}"
            soft = None
        rows.append(DistillRow(id=q.id, question=q.question, type=q.type, choices=list(q.choices) if q.choices else None,
                               solution=solution, answer=r.prediction, teacher_choice_logliks=soft))
    return rows, LabelStats(questions=len(results), rows=len(rows), unreadable=unreadable, multiple_choice=mc)


def write_rows(rows: Sequence[DistillRow], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r.model_dump(), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return path


def read_rows(path: str | Path) -> list[DistillRow]:
    """Every row of a distillation file; a bad line is a DataError naming file:line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a distillation JSONL file")
    rows = [parse(DistillRow, raw, where) for _, where, raw in iter_objects(path)]
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


# -- encoding ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    ids: list[int]  # prompt + answer + EOS
    start: int  # first answer token
    answer_at: int | None = None  # multiple choice: index in `ids` where the chosen option starts
    options: tuple[tuple[int, ...], ...] = ()  # each option's tokens as written at answer_at
    hard: int | None = None  # index of the hard label among the options
    soft: list[float] | None = None  # the teacher's option log-likelihoods


def encode_row(tokenizer, row: DistillRow, where: str = "") -> Example:
    """Tokens of "Question: ...\nAnswer:" + the row's solution + EOS, and where its answer is.

    The answer is located as harness.option_scores locates it in any output (its letter, or the
    option named by its text), and the solution is tokenized in three pieces: before the answer,
    the answer, after it. That must equal the tokenization of the whole text, or the student
    would learn a token split it never sees at inference (checked)."""
    prompt_ids = tokenizer(prompt_text(row.model_dump())).input_ids
    eos = [tokenizer.eos_token_id]
    enc = lambda text: tokenizer(text, add_special_tokens=False).input_ids if text else []  # noqa: E731
    if row.choices is None:
        return Example(prompt_ids + enc(row.solution) + eos, len(prompt_ids))
    span = locate_answer(row.solution, row.choices)
    if span is None or span.end == span.start:
        raise DataError(f"{where or row.id}: the solution {row.solution!r:.60} names no option; expected a "
                        "letter or an option's text as the answer")
    if LETTERS[span.choice] != row.answer:
        raise DataError(f"{where or row.id}: the solution answers {LETTERS[span.choice]} but the row's answer "
                        f"is {row.answer}")
    options = tuple(tuple(enc(c)) for c in span.continuations)
    head, tail = enc(row.solution[: span.start]), enc(row.solution[span.end:])
    answer = head + list(options[span.choice]) + tail
    if answer != enc(row.solution):
        raise DataError(f"{where or row.id}: the solution {row.solution!r:.60} does not tokenize with its answer "
                        "as separate tokens; expected the answer to stand alone ('B', 'Postia.')")
    return Example(prompt_ids + answer + eos, len(prompt_ids), len(prompt_ids) + len(head), options, span.choice,
                   row.teacher_choice_logliks)
