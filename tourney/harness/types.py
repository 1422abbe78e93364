"""Result types that cross module boundaries: a question, and one scored sample of one question."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from tourney.errors import DataError  # noqa: F401 -- re-exported: the harness's error for bad data


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str  # the gold final answer: a number as text ("18", "0.5") or a choice letter ("B")
    type: str = "default"  # question type, for per-type metrics and routing
    choices: tuple[str, ...] | None = None  # multiple choice options, in letter order A, B, ...
    solution: str | None = None  # worked gold solution when the source has one (GSM8K, miniature)
    source: str = ""  # "file:line" where this question was read, for error messages

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.choices)


class SampleResult(BaseModel):
    """One line of results.jsonl: one sample of one question, scored.

    The schema of a results row as well as the in-memory type: a row read from a file is
    validated field by field, strictly (`from_dict`: no "1" for 1, no true for a number;
    harness.rundir turns a failure into one line naming file:line and field), while code may
    build one from numpy values. Numbers are finite except token logprobs (a token can have
    probability 0), and unknown fields are ignored, so files written by a newer version still read.
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: str
    question: str
    type: str
    sample: int = Field(ge=0)
    output: str
    prediction: str | None
    gold: str
    correct: bool
    latency_s: float = Field(ge=0)
    ttft_s: float | None = Field(ge=0)
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    error: str | None = None
    finish_reason: str | None = None
    # kept so routers can compute confidence offline; -inf is a real logprob
    token_logprobs: list[Annotated[float, Field(allow_inf_nan=True)]] | None = None
    # Multiple choice, when logprobs were asked: each option letter's log-likelihood where the
    # output commits to its answer (harness.option_scores), in letter order.
    choice_logliks: list[float] | None = None
    # Where a recorded output was cut at a stop sequence (a replay, models.replay_backend): the
    # whole output, and the character offset in it where `output` ends. Absent when not cut.
    raw_output: str | None = None
    cut_at: int | None = Field(None, ge=0)
    # How the grader read the output (harness.grading_choice): "answered", "unparsed", "hedge"
    # (several options named: no prediction, never correct) or "conflicting" (statements disagree:
    # the first counts). None for a failed request, and in rows written before it was recorded.
    status: Literal["answered", "unparsed", "hedge", "conflicting"] | None = None
    # Multiple choice: the options as asked, so routers can read the chosen one's text offline.
    choices: list[str] | None = None

    def to_dict(self) -> dict:
        # The cut fields only where a cut happened, the options only for multiple choice: rows of
        # uncut open-ended runs stay as they always were.
        drop = {name for name in ("raw_output", "cut_at", "choices") if getattr(self, name) is None}
        return self.model_dump(exclude=drop or None)

    @classmethod
    def from_dict(cls, row: dict) -> "SampleResult":
        """Validate a file's row, strictly (ValidationError on a bad field); unknown fields are dropped."""
        return cls.model_validate(row, strict=True)
