"""Do two backends give the same greedy answers? Used to check a GGUF export against the
transformers checkpoint it came from, or vLLM against transformers, on the same prompts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from tourney.harness.prompts import render, template_for
from tourney.harness.scoring import extract_answer
from tourney.harness.types import Question
from tourney.models.types import Backend, GenConfig


@dataclass
class Agreement:
    n: int
    same_text: int  # identical completions
    same_answer: int  # identical extracted final answers
    disagreements: list[dict] = field(default_factory=list)  # the first few, for reading

    @property
    def text_rate(self) -> float:
        return self.same_text / self.n if self.n else float("nan")

    @property
    def answer_rate(self) -> float:
        return self.same_answer / self.n if self.n else float("nan")


def compare_backends(a: Backend, b: Backend, questions: Sequence[Question], max_tokens: int = 96,
                     chunk: int = 50, keep: int = 5) -> Agreement:
    result = Agreement(n=len(questions), same_text=0, same_answer=0)
    for i in range(0, len(questions), chunk):
        part = questions[i : i + chunk]
        templates = [template_for(q, chat=False) for q in part]
        prompts = [render(t, q) for t, q in zip(templates, part)]
        cfg = GenConfig(max_tokens=max_tokens, stop=templates[0].stop)
        outs_a, outs_b = a.generate(prompts, cfg), b.generate(prompts, cfg)
        for q, [ga], [gb] in zip(part, outs_a, outs_b):
            ta, tb = ga.text.strip(), gb.text.strip()
            result.same_text += ta == tb
            same = extract_answer(ta) == extract_answer(tb)
            result.same_answer += same
            if not same and len(result.disagreements) < keep:
                result.disagreements.append({"id": q.id, "a": ta, "b": tb})
    return result
