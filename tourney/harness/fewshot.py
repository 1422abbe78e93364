"""Few-shot exemplars: where they come from, which ones each question gets, and the identity of
that choice.

Exemplars are questions with worked solutions, read from any question file the project reads
(`--fewshot FILE`, harness.questions), or the fixed ones a template ships (GSM8K's eight). Each
question gets `k` of them:

- by `type`: only exemplars of the question's own type (MMLU-Pro: five of the same category;
  "computer science" and "computer_science" are one type, see same_type);
  by `all`: from the whole pool;
- `first_n`: the first k in file order (the published MMLU-Pro and GSM8K-CoT prompts), or
  `random`: k drawn with a generator seeded by (seed, question id), so a question gets the same
  exemplars whatever its position, in a resumed run, or alone;
- never the question itself (same id or same text): a file that is also the test set still works.

Too few exemplars for a question is an error naming the type, before any model is loaded.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from tourney.errors import ConfigError, DataError
from tourney.harness.types import Question

By = Literal["type", "all"]
Sampler = Literal["first_n", "random"]


@dataclass(frozen=True)
class FewshotOptions:
    """The few-shot settings of a run, as given (None: the template's own)."""

    path: str | None = None  # exemplar file; None: the template's shipped samples
    k: int | None = None  # --num-fewshot
    by: By | None = None  # --fewshot-by
    multiturn: bool = False  # --fewshot-as-multiturn: exemplars as chat turns
    seed: int = 0  # the random sampler's seed


@dataclass(frozen=True)
class ExemplarPool:
    """Exemplars and the rule that picks each question's (module doc)."""

    exemplars: tuple[Question, ...]
    k: int
    by: By
    sampler: Sampler
    seed: int
    origin: str  # the file, or "template NAME", for error messages

    def choose(self, question: Question) -> list[Question]:
        if self.k == 0:
            return []
        pool = [e for e in self.exemplars if e.id != question.id and e.question != question.question
                and (self.by == "all" or same_type(e.type, question.type))]
        if len(pool) < self.k:
            which = f" of type {question.type!r}" if self.by == "type" else ""
            raise ConfigError(f"{self.origin}: {len(pool)} exemplar(s){which} for question {question.id!r}, "
                              f"{self.k} asked; add exemplars, lower --num-fewshot"
                              + (", or pass --fewshot-by all" if self.by == "type" else ""))
        if self.sampler == "first_n":
            return pool[: self.k]
        digest = hashlib.sha256(f"{self.seed}\x00{question.id}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big")).sample(pool, self.k)


def same_type(a: str, b: str) -> bool:
    """Type names as datasets spell them: MMLU-Pro's release says "computer science", files
    derived from it "computer_science"; case, "_" and "-" against a space do not make another type."""
    def key(t: str) -> str:
        return " ".join(t.replace("_", " ").replace("-", " ").casefold().split())
    return key(a) == key(b)


def check_exemplars(exemplars: Sequence[Question], origin: str, needs_solution: bool) -> None:
    """Exemplars shown with their worked solution must have one: a blank where the reasoning
    should be would teach the model to answer without any."""
    if not needs_solution:
        return
    for e in exemplars:
        if not (e.solution or "").strip():
            where = e.source or origin
            raise DataError(f"{where}: field 'solution': exemplar {e.id!r} has no worked solution; the template "
                            "shows each exemplar's solution (give a 'solution', or a GSM8K answer ending '#### N')")


def template_samples(name: str, samples: Sequence[Any]) -> tuple[Question, ...]:
    """A template's own exemplars (templates.FewshotSample) as Questions."""
    return tuple(Question(id=f"{name}-sample-{i + 1}", question=s.question, answer=s.answer, type=s.type,
                          choices=tuple(s.choices) if s.choices else None, solution=s.target,
                          source=f"template {name}, fewshot_config.samples[{i}]")
                 for i, s in enumerate(samples))


def mmlu_pro_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A record of MMLU-Pro's own release (TIGER-Lab/MMLU-Pro: `options`, `cot_content`,
    `category`, `question_id`) in the project's field names, its "N/A" padding options dropped as
    the benchmark's own preprocess does; other records pass unchanged."""
    if "options" not in raw or "choices" in raw:
        return raw
    out = {k: v for k, v in raw.items() if k not in ("options", "cot_content", "category", "question_id")}
    options = raw["options"]
    out["choices"] = [o for o in options if o != "N/A"] if isinstance(options, list) else options
    for theirs, ours in (("cot_content", "solution"), ("category", "type"), ("question_id", "id")):
        if theirs in raw and ours not in raw:
            out[ours] = raw[theirs]
    return out


def load_exemplars(path: str) -> tuple[Question, ...]:
    """An exemplar file: any question file (harness.questions), or MMLU-Pro's validation split as
    released (`hf:TIGER-Lab/MMLU-Pro:validation`, or a local copy); each keeps its file:line."""
    from tourney.harness.questions import load_questions

    return tuple(load_questions(path, adapt=mmlu_pro_record))

