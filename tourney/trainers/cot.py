"""Teacher chain-of-thought: the teacher answers a question set with its reasoning, once or N times.

The run loop is the harness's own `run_eval`, so generation is batched or concurrent inside the
backend, resumable after a kill, and its raw record is the run directory's `results.jsonl`. From
that record this module derives `cot.jsonl`, one `CoTSample` per (question, sample), rewritten
whole (atomically) at the end of every call, so a resumed run leaves the same file.

Thinking models write `<think>...</think>` before their answer. `output` keeps the thinking, since
that is what the student is trained to produce; `answer_text` is the output without it, and the
harness scores only that part (`strip_thinking` runs before any answer is extracted).

Questions without a gold answer (an unlabeled practice set) are accepted here, unlike in
`tourney eval`: their rows carry `gold=None` and `correct=None`, and rejection sampling verifies
them by majority vote instead (see trainers.rejection). The run's report counts them as wrong.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from tourney.harness.jsonl import iter_objects
from tourney.harness.prompts import strip_thinking
from tourney.harness.votes import mean_logprob
from tourney.harness.questions import load_questions, parse_choices
from tourney.harness.rundir import RunDir
from tourney.harness.runner import EvalConfig, run_eval
from tourney.harness.types import DataError, Question
from tourney.models.types import Backend

COT_FILE = "cot.jsonl"


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))
class CoTConfig:
    """One teacher CoT generation run. Fields that change outputs must match when `out` resumes."""

    model: str = Field(description="Teacher spec: hf:PATH, openai:MODEL@URL, vllm:ID, gguf:PATH, replay:FILE, alias.")
    data: str = Field(description="Question file (.jsonl/.json/.csv/.parquet) or hf:NAME; answers may be missing.")
    out: str = Field(description="Run directory: run.json, results.jsonl (raw record), cot.jsonl, report.*.")
    samples: int = Field(1, ge=1, description="Samples per question; > 1 (with temperature > 0) for rejection sampling.")
    temperature: float = Field(0.0, ge=0, description="0 is greedy; rejection sampling wants about 0.6-1.0.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(1024, ge=1, description="Reasoning is long: a cut-off solution is rarely accepted.")
    logprobs: Optional[int] = Field(0, ge=0, le=20, description="0: chosen-token logprobs (curriculum "
                                                                "confidence); None: do not ask.")
    chat: bool = Field(False, description="Chat messages (instruct/thinking teachers) rather than the base template.")
    template: Optional[str] = Field(None, description="Prompt template name; None picks one per question.")
    limit: Optional[int] = Field(None, ge=1, description="First N questions only.")
    batch_size: int = Field(16, ge=1, description="Prompts per forward batch of an in-process teacher (the CLI passes it in model_args); servers ignore it.")
    seed: int = Field(0, description="Sampling seed.")
    model_args: dict[str, Any] = Field(default_factory=dict, description="Backend options; those that change outputs are in the run's identity.")

    def __post_init__(self) -> None:
        self.eval_config()  # EvalConfig checks samples > 1 needing a temperature, and the template

    def eval_config(self) -> EvalConfig:
        return EvalConfig(model=self.model, data=self.data, out=self.out, limit=self.limit, samples=self.samples,
                          max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                          seed=self.seed, logprobs=self.logprobs, template=self.template, chat=self.chat,
                          model_args=self.model_args)


@dataclass
class CoTSample:
    """One line of cot.jsonl: one teacher sample for one question."""

    id: str
    question: str
    type: str
    gold: str | None  # None when the question has no gold answer
    output: str  # the teacher's full text, thinking kept
    answer_text: str  # the output without <think> blocks: what is scored
    prediction: str | None  # the answer the harness extracted from answer_text
    correct: bool | None  # None without gold
    prompt_tokens: int
    completion_tokens: int
    mean_logprob: float | None  # mean chosen-token logprob; None when the backend gave none
    sample: int
    error: str | None = None  # the request failed after its retries; the row is not a solution
    # A multiple-choice question's options: the student must learn to answer with them listed, as
    # it is asked at evaluation (the prompt lists them), not from the bare question.
    choices: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["choices"] is None:
            del d["choices"]  # open-ended rows stay as they were
        return d


_COT_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "question": (str,), "type": (str,), "gold": (str, type(None)), "output": (str,),
    "answer_text": (str,), "prediction": (str, type(None)), "correct": (bool, type(None)),
    "prompt_tokens": (int,), "completion_tokens": (int,), "mean_logprob": (int, float, type(None)),
    "sample": (int,), "error": (str, type(None)), "choices": (list, type(None)),
}
_COT_OPTIONAL = {"error", "mean_logprob", "choices"}


def load_cot_questions(path: str, limit: int | None = None) -> list[Question]:
    """Questions for the teacher: as the harness reads them, but unlabeled ones are kept (answer "")
    because the teacher can reason about questions that have no gold."""
    return load_questions(path, limit=limit, allow_unlabeled=True)



def generate_cot(
    cfg: CoTConfig,
    backend: Backend,
    questions: Sequence[Question] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Run the teacher over `cfg.data` (resuming `cfg.out`), then write and return cot.jsonl."""
    if questions is None:
        questions = load_cot_questions(cfg.data, limit=cfg.limit)
    run_eval(cfg.eval_config(), backend, questions=questions, overwrite=overwrite, progress=progress)
    out = Path(cfg.out)
    wanted = {q.id for q in questions}
    choices = {q.id: list(q.choices) for q in questions if q.choices}
    rows = [_to_cot(r, choices.get(r.id)) for r in RunDir(out).rows() if r.id in wanted]
    path = out / COT_FILE
    write_cot(rows, path)
    return path


def _to_cot(r: Any, choices: list[str] | None = None) -> CoTSample:
    labeled = bool(r.gold)
    return CoTSample(
        id=r.id, question=r.question, type=r.type, gold=r.gold if labeled else None, output=r.output,
        answer_text=strip_thinking(r.output), prediction=r.prediction,
        correct=r.correct if labeled else None,  # a failed request was scored False by the run loop
        prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
        mean_logprob=mean_logprob(r.token_logprobs), sample=r.sample, error=r.error, choices=choices,
    )


def write_cot(rows: Sequence[CoTSample], path: str | Path) -> None:
    """Write cot.jsonl through a temporary file, so a kill never leaves half of it."""
    path = Path(path)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def read_cot(path: str | Path) -> list[CoTSample]:
    """Read cot.jsonl; a bad line raises DataError naming file:line and the field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a cot.jsonl written by `tourney distill generate`")
    names = {f.name for f in fields(CoTSample)}
    out = []
    for _, where, row in iter_objects(path):
        # Rows written by other tools may leave out what can be derived or is only informative.
        row.setdefault("answer_text", strip_thinking(str(row.get("output", ""))))
        row.setdefault("prompt_tokens", 0)
        for name, types in _COT_TYPES.items():
            if name not in row:
                if name in _COT_OPTIONAL:
                    continue
                raise DataError(f"{where}: field {name!r}: missing")
            value = row[name]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise DataError(f"{where}: field {name!r}: expected {expected}, got {value!r:.80}")
        if row.get("choices") is not None:
            row["choices"] = list(parse_choices(row["choices"], where) or ()) or None
        sample = CoTSample(**{k: v for k, v in row.items() if k in names})
        if sample.mean_logprob is not None:
            sample.mean_logprob = float(sample.mean_logprob)
        out.append(sample)
    return out
