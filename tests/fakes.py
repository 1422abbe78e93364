"""A deterministic fake backend for pure unit tests of the run loop's logic (no model)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from tourney.models.types import Backend, Capabilities, GenConfig, Generation


@dataclass
class EchoMathBackend(Backend):
    """Answers "Question: X has N ... " prompts by echoing the first number, so answers are right
    exactly when the gold is the first number in the question. `fail_on` makes prompts that
    contain those strings fail with an error Generation, as a server would after its retries.
    In-process, batching `batch_size` prompts per call (None: the whole list)."""

    spec: str = "fake:echo"
    fail_on: set[str] = field(default_factory=set)
    calls: list[list[str]] = field(default_factory=list)
    batch_size: int | None = 16

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(batch_size=self.batch_size, choice_scoring=True)

    def generate(self, prompts: Sequence, cfg: GenConfig) -> list[list[Generation]]:
        self.calls.append([str(p) for p in prompts])
        out = []
        for p in prompts:
            text = p if isinstance(p, str) else p[-1]["content"]
            if any(f in text for f in self.fail_on):
                out.append([Generation(text="", error="HTTP 503 after 4 retries", finish_reason="error")] * cfg.n)
                continue
            first = re.search(r"\d+", text)
            answer = first.group(0) if first else "0"
            out.append([Generation(text=f" {answer}\n#### {answer}", finish_reason="stop", latency_s=0.01,
                                   ttft_s=0.005, prompt_tokens=10, completion_tokens=4) for _ in range(cfg.n)])
        return out

    def score_choices(self, prompts, choices):
        return [[0.0] * len(c) for c in choices]

    def close(self) -> None:
        pass
