"""Result types that cross module boundaries: a question, and one scored sample of one question."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

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


@dataclass
class SampleResult:
    """One line of results.jsonl: one sample of one question, scored."""

    id: str
    question: str
    type: str
    sample: int
    output: str
    prediction: str | None
    gold: str
    correct: bool
    latency_s: float
    ttft_s: float | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    finish_reason: str | None = None
    token_logprobs: list[float] | None = None  # kept so routers can compute confidence offline

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> "SampleResult":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})
