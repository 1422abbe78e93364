"""The evaluation run loop: questions in, scored samples appended to results.jsonl, reports out.

Resumption. Questions are cut into fixed chunks by their position in the data file. Each chunk's
rows are appended in one write and fsynced, so after a SIGKILL the file holds whole chunks and at
worst one torn last line, which is cut off on restart. A chunk with any missing or failed sample is
generated again whole, with the same composition: a backend then pads and seeds it exactly as an
uninterrupted run would, and greedy outputs come out identical. At the end the file is rewritten
in question order with one row per (id, sample), so a resumed run leaves the same file.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tourney.harness.jsonl import append_objects, cut_torn_tail
from tourney.harness.prompts import get_template, render, template_for, with_system
from tourney.harness.questions import data_sha256, load_questions
from tourney.harness.report import RESULTS_FILE, RUN_FILE, read_results, write_reports
from tourney.harness.scoring import score
from tourney.harness.types import DataError, Question, SampleResult
from tourney.models.registry import replays_recordings
from tourney.models.types import Backend, GenConfig, Generation


def _package_version() -> str:
    """The installed distribution's version (pyproject.toml is its one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tourney")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True)
class EvalConfig:
    """Everything one `tourney eval` run depends on. Fields that change outputs are recorded in
    run.json and must match when a run directory is resumed."""

    model: str  # model spec: hf:PATH, openai:MODEL@URL, gguf:PATH, vllm:ID, replay:FILE, or an alias
    data: str  # question file (.jsonl/.json/.csv/.parquet) or hf:NAME[:CONFIG][:SPLIT]
    out: str  # run directory
    limit: int | None = None  # first N questions only
    samples: int = 1  # samples per question (self-consistency, pass@k)
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    logprobs: int | None = None  # None: none; 0: chosen-token logprobs; k: also top-k
    template: str | None = None  # None: picked per question (base or chat, multiple choice or not)
    chat: bool = False  # send chat messages (instruct models) rather than raw text
    system_prompt: str | None = None  # system message before each question (chat templates only)
    chunk_size: int = 16  # questions per backend call; also the unit of resumption
    model_args: dict[str, Any] = field(default_factory=dict)  # backend options (concurrency, device...)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.samples > 1 and self.temperature == 0.0 and not replays_recordings(self.model):
            raise ValueError("samples > 1 with temperature 0 would repeat one greedy answer; set --temperature")
        if self.system_prompt is not None and not (self.chat or (self.template and get_template(self.template).chat)):
            raise ValueError("a system prompt is part of chat messages: add --chat (or a chat --template)")

    def gen_config(self, stop: tuple[str, ...]) -> GenConfig:
        return GenConfig(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                         stop=stop, n=self.samples, logprobs=self.logprobs, seed=self.seed)

    def identity(self) -> dict[str, Any]:
        """What must be equal for a directory's rows to belong to this run."""
        return {"model": self.model, "data": str(self.data), "limit": self.limit, "samples": self.samples,
                "max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "seed": self.seed, "logprobs": self.logprobs, "template": self.template, "chat": self.chat,
                "chunk_size": self.chunk_size,
                # Only when set, so runs recorded before the option existed still resume.
                **({"system_prompt": self.system_prompt} if self.system_prompt is not None else {})}


# -- results file ---------------------------------------------------------------------------

def _compact(path: Path, questions: Sequence[Question]) -> None:
    """Rewrite results.jsonl in question order, last row per (id, sample); atomic via rename."""
    latest = {(r.id, r.sample): r for r in read_results(path)}
    by_id: dict[str, list[SampleResult]] = {}
    for r in latest.values():
        by_id.setdefault(r.id, []).append(r)
    order = [r for q in questions for r in sorted(by_id.get(q.id, []), key=lambda r: r.sample)]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in order), encoding="utf-8")
    os.replace(tmp, path)


# -- run directory --------------------------------------------------------------------------

def _prepare_dir(cfg: EvalConfig, data_sha: str, n_questions: int, overwrite: bool) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / RUN_FILE
    identity = cfg.identity()
    if run_file.exists() and not overwrite:
        old = json.loads(run_file.read_text())
        differs = [k for k, v in identity.items() if old.get("identity", {}).get(k) != v]
        if old.get("data_sha256") != data_sha:
            differs.append("data file contents")
        if differs:
            raise DataError(f"{run_file}: this directory holds a different run ({', '.join(differs)} differ); "
                            "use another --out or pass --overwrite")
        return out
    if overwrite:
        for name in (RESULTS_FILE, "report.json", "report.md", "report.html"):
            (out / name).unlink(missing_ok=True)
    meta = {
        "model": cfg.model,
        "data": str(cfg.data),
        "data_sha256": data_sha,
        "generation": {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
                       "samples": cfg.samples, "seed": cfg.seed, "logprobs": cfg.logprobs},
        "template": cfg.template or ("auto-chat" if cfg.chat else "auto"),
        "package_version": _package_version(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n_questions": n_questions,
        "identity": identity,
    }
    run_file.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


# -- generation -----------------------------------------------------------------------------

def _generate(backend: Backend, chunk: Sequence[Question], prompts: list, gen: GenConfig) -> list[list[Generation]]:
    # Recorded outputs are matched by question, not by rendered prompt.
    if hasattr(backend, "generate_questions"):
        return backend.generate_questions(chunk, gen)
    return backend.generate(prompts, gen)


def _rows_for(q: Question, gens: Sequence[Generation]) -> list[SampleResult]:
    rows = []
    for s, g in enumerate(gens):
        sc = score(q, g.text) if g.error is None else None
        rows.append(SampleResult(
            id=q.id, question=q.question, type=q.type, sample=s, output=g.text,
            prediction=sc.prediction if sc else None, gold=q.answer, correct=bool(sc and sc.correct),
            latency_s=round(g.latency_s, 6), ttft_s=None if g.ttft_s is None else round(g.ttft_s, 6),
            prompt_tokens=g.prompt_tokens, completion_tokens=g.completion_tokens, error=g.error,
            finish_reason=g.finish_reason, token_logprobs=g.token_logprobs,
        ))
    return rows


def run_eval(
    cfg: EvalConfig,
    backend: Backend,
    questions: Sequence[Question] | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate `backend` on the questions of `cfg.data`; resume what `cfg.out` already holds.
    Returns the report dict (also written as report.json/.md/.html)."""
    if questions is None:
        questions = load_questions(cfg.data, limit=cfg.limit)
    data_sha = data_sha256(cfg.data, questions)
    out = _prepare_dir(cfg, data_sha, len(questions), overwrite)
    results = out / RESULTS_FILE
    cut_torn_tail(results)
    done = {(r.id, r.sample) for r in read_results(results) if r.error is None} if results.exists() else set()

    chunks = [questions[i : i + cfg.chunk_size] for i in range(0, len(questions), cfg.chunk_size)]
    finished = 0
    for chunk in chunks:
        if all((q.id, s) in done for q in chunk for s in range(cfg.samples)):
            finished += len(chunk)
            if progress:
                progress(finished, len(questions))
            continue
        templates = [with_system(get_template(cfg.template) if cfg.template else template_for(q, cfg.chat),
                                 cfg.system_prompt) for q in chunk]
        # One stop list per call; a chunk mixes templates only when the data mixes question kinds.
        stop = tuple(dict.fromkeys(s for t in templates for s in t.stop))
        prompts = [render(t, q) for t, q in zip(templates, chunk)]
        gens = _generate(backend, chunk, prompts, cfg.gen_config(stop))
        new_rows = [row for q, g in zip(chunk, gens, strict=True) for row in _rows_for(q, g)
                    if (row.id, row.sample) not in done]
        append_objects(results, (r.to_dict() for r in new_rows))
        finished += len(chunk)
        if progress:
            progress(finished, len(questions))
    _compact(results, questions)
    return write_reports(out)
