"""The evaluation run loop: questions in, scored samples appended to results.jsonl, reports out.

    questions -> Prompting.render -> backend (answer_all) -> scored_rows -> RunDir.append
              -> (all answered) RunDir.compact -> harness.report.write_reports

Flow. A server backend keeps `concurrency` requests in flight from the first question to the
last; an in-process backend gets its own batch size's worth of prompts per call (harness.pipeline).

Resumption, per question. Each question's rows are appended and fsynced as soon as all its
samples are in, in completion order, so a kill loses at most the questions in flight (and a torn
last line, cut off on restart). On restart, every question with a missing or failed sample is
asked again, except that for an in-process backend whose batches pad (capabilities.batch_size)
the whole batch that holds it is asked again, in its original composition: the backend then pads
and seeds it exactly as an uninterrupted run would, and greedy outputs come out identical.
Only rows not yet finished are written. At the end the file is rewritten in question order with
one row per (id, sample), so a resumed run leaves the same file as an uninterrupted one.
"""
from __future__ import annotations

import logging
from typing import Annotated, Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tourney.harness.pipeline import Answered, Prompting, answer_all, scored_rows
from tourney.harness.fewshot import FewshotOptions
from tourney.harness.templates import resolve_template
from tourney.harness.questions import data_sha256, load_questions
from tourney.harness.report import write_reports
from tourney.harness.rundir import GenerationMeta, RunDir, RunMeta, now_stamp, package_version
from tourney.harness.types import Question, SampleResult
from tourney.models.registry import output_options, replays_recordings
from tourney.models.types import Backend, Capabilities, GenConfig

log = logging.getLogger(__name__)

# progress(done, total, in_flight): questions recorded, questions to record, requests in flight
# (None where the backend does not count them).
Progress = Callable[[int, int, "int | None"], None]


class EvalConfig(BaseModel):
    """Everything one `tourney eval` run depends on. `identity()` (recorded in run.json) must
    match when a run directory is resumed."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1)  # model spec: hf:PATH, openai:MODEL@URL, gguf:PATH, vllm:ID, replay:FILE, alias
    data: str = Field(min_length=1)  # question file (.jsonl/.json/.csv/.parquet) or hf:NAME[:CONFIG][:SPLIT]
    out: str = Field(min_length=1)  # run directory
    limit: int | None = Field(None, ge=1)  # first N questions only
    samples: int = Field(1, ge=1)  # samples per question (self-consistency, pass@k)
    max_tokens: int = Field(512, ge=1)  # new tokens per sample
    temperature: float = Field(0.0, ge=0)  # 0 is greedy
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0  # per-request seed (sample s gets seed + s where the backend takes one)
    logprobs: int | None = Field(None, ge=0, le=20)  # None: none; 0: chosen-token logprobs; k: also top-k
    template: str | None = None  # prompt template: built-in or shipped name, or a file; None: picked per question
    chat: bool = False  # send chat messages (instruct models) rather than raw text
    system_prompt: str | None = None  # system message before each question (chat templates only)
    # Backend options the backend was built with (device, dtype, batch_size, concurrency, ...):
    # those that can change outputs are part of the identity (models.registry.output_options).
    model_args: dict[str, Any] = Field(default_factory=dict)
    # Stop sequences (lm-eval's `until`); None: the template's own.
    stop: tuple[Annotated[str, Field(min_length=1)], ...] | None = None
    fewshot: str | None = None  # exemplar file (questions with worked solutions); None: the template's
    num_fewshot: int | None = Field(None, ge=0, le=64)  # exemplars per question; None: the template's
    fewshot_by: Literal["type", "all"] | None = None  # pick exemplars of the question's type, or from all
    fewshot_as_multiturn: bool = False  # exemplars as user/assistant turns (chat)

    @model_validator(mode="after")
    def _consistent(self) -> "EvalConfig":
        if self.samples > 1 and self.temperature == 0.0 and not replays_recordings(self.model):
            raise ValueError("samples > 1 with temperature 0 would repeat one greedy answer; set --temperature")
        template = resolve_template(self.template) if self.template is not None else None  # unknown: listed
        if self.system_prompt is not None and not (self.chat or (template is not None and template.chat)):
            raise ValueError("a system prompt is part of chat messages: add --chat (or a chat --template)")
        return self

    def prompting(self) -> Prompting:
        return Prompting(template=self.template, chat=self.chat, system=self.system_prompt, stop=self.stop,
                         fewshot=FewshotOptions(path=self.fewshot, k=self.num_fewshot, by=self.fewshot_by,
                                                multiturn=self.fewshot_as_multiturn, seed=self.seed))

    def gen_config(self, stop: tuple[str, ...]) -> GenConfig:
        return GenConfig(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                         stop=stop, n=self.samples, logprobs=self.logprobs, seed=self.seed)

    def identity(self, data_sha: str) -> dict[str, Any]:
        """What must be equal for a directory's rows to belong to this run: every setting that
        can change an answer, the data's bytes, and the backend options that can (device, dtype,
        batch padding, chat template options, extra request fields)."""
        return {"model": self.model, "data": str(self.data), "data_sha256": data_sha, "limit": self.limit,
                "samples": self.samples, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "seed": self.seed, "logprobs": self.logprobs, "template": self.template,
                "chat": self.chat, "model_args": output_options(self.model_args),
                # Only when set, so runs recorded before the option existed still resume.
                **({"system_prompt": self.system_prompt} if self.system_prompt is not None else {}),
                **self.prompting().identity()}

    def run_meta(self, data_sha: str, n_questions: int) -> RunMeta:
        return RunMeta(
            model=self.model, data=str(self.data), data_sha256=data_sha,
            generation=GenerationMeta(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                                      samples=self.samples, seed=self.seed, logprobs=self.logprobs),
            template=self.template or ("auto-chat" if self.chat else "auto"), package_version=package_version(),
            started_at=now_stamp(), n_questions=n_questions, identity=self.identity(data_sha))


def pending_questions(questions: Sequence[Question], finished: set[tuple[str, int]], samples: int,
                      capabilities: Capabilities) -> list[Question]:
    """The questions to ask (module doc): those with a sample not finished, widened to whole
    batches of `capabilities.batch_size` for an in-process backend whose batches pad. The batches
    are cut at fixed positions of `questions`, and whole ones concatenated keep those cuts, so
    the backend forms exactly the batches of an uninterrupted run."""
    missing = [any((q.id, s) not in finished for s in range(samples)) for q in questions]
    unit = None if capabilities.server or capabilities.recorded else capabilities.batch_size
    if not unit or unit == 1:
        return [q for q, m in zip(questions, missing) if m]
    out: list[Question] = []
    for start in range(0, len(questions), unit):
        if any(missing[start: start + unit]):
            out.extend(questions[start: start + unit])
    return out


def prepare_run(cfg: EvalConfig, questions: Sequence[Question], overwrite: bool = False) -> RunDir:
    """Create cfg.out, or check that it holds this very run (harness.rundir.check_same_run).
    Commands call it before loading a model, so a wrong directory fails in a second."""
    data_sha = data_sha256(cfg.data, questions)
    cfg.prompting().render(questions)  # a template or exemplar problem fails here, before a model loads
    return RunDir.start(cfg.out, cfg.run_meta(data_sha, len(questions)), overwrite=overwrite)


def _add_option_scores(backend: Backend, chunk: Sequence[Question], prompts: list,
                       scored: list[list[SampleResult]]) -> None:
    """Multiple choice: each sample's option log-likelihoods where it commits to its letter."""
    from tourney.harness.option_scores import score_options

    outputs = [[r.output for r in rows] for rows in scored]
    for rows, logliks in zip(scored, score_options(backend, chunk, prompts, outputs)):
        for r, ll in zip(rows, logliks):
            r.choice_logliks = ll if r.error is None else None


def run_eval(
    cfg: EvalConfig,
    backend: Backend,
    questions: Sequence[Question] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate `backend` on the questions of `cfg.data`; resume what `cfg.out` already holds.
    Returns the report dict (also written as report.json/.md/.html)."""
    if questions is None:
        questions = load_questions(cfg.data, limit=cfg.limit)
    run = prepare_run(cfg, questions, overwrite)
    finished = run.finished()
    todo = pending_questions(questions, finished, cfg.samples, backend.capabilities)
    total = len(questions)
    done_ids = {q.id for q in questions} - {q.id for q in todo}
    state = {"done": len(done_ids), "replaced": 0}
    counting = backend.capabilities.server

    def tick() -> None:
        if progress:
            progress(state["done"], total, backend.requests_in_flight() if counting else None)

    prompt_of: dict[str, Any] = {}

    def record(answers: list[Answered]) -> None:
        scored = [scored_rows(a.question, a.generations) for a in answers]
        if cfg.logprobs is not None and not replays_recordings(cfg.model):
            _add_option_scores(backend, [a.question for a in answers], [prompt_of[a.question.id] for a in answers],
                               scored)
        rows = [r for rows in scored for r in rows if (r.id, r.sample) not in finished]
        run.append(rows)
        state["done"] += sum(1 for a in answers if a.question.id not in done_ids)
        state["replaced"] += sum(g.replaced_surrogates for a in answers for g in a.generations)

    tick()
    if todo:
        prompts, stop = cfg.prompting().render(todo)
        prompt_of.update((q.id, p) for q, p in zip(todo, prompts))
        answer_all(backend, todo, prompts, cfg.gen_config(stop), record, tick)
    if state["replaced"]:
        log.warning("%d lone surrogate(s) in model output were replaced by U+FFFD", state["replaced"])
    run.compact([q.id for q in questions])
    return write_reports(run.path)
