"""One pipeline from questions to scored samples, for every caller that asks a model questions:
`tourney eval` and the teacher's chain-of-thought (harness.runner), the cascade and timed
submissions (routers.runtime.cascade, routers.runtime.submit).

- Prompting: `Prompting(template, chat).render(questions)` picks each question's template (base or
  chat, multiple choice or not, unless one is named), renders it, and gives one stop list.
- Generation: `generate` (one call, in order) and `answer_all` (every question, answers handed over
  as they complete) dispatch on the backend's declared capabilities: recorded outputs are looked
  up by question, everything else is generated from the prompts.
- Scoring: `scored_rows` turns one question's samples into SampleResults; the answer is
  extracted once per sample, and `correct` is scored only when the question has a gold answer.

answer_all and durability. A server backend's requests run in its workers; each answer is
handed to the caller's thread, which scores and records it (the grader's timeouts need the main
thread) and writes whatever has arrived in one group, so one fsync covers many answers when they
come fast. The answer's slot starts no other request until it is recorded (`on_done` hands the
backend a future that the caller's thread settles after the write): an answer is never both
received and unrecorded for longer than its request was in flight, so a kill loses at most the
questions in flight. An in-process backend generates in the caller's thread (as
torch, llama.cpp and vLLM expect), and each batch's answers are recorded together.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tourney.errors import ConfigError
from tourney.harness.fewshot import ExemplarPool, FewshotOptions, check_exemplars, load_exemplars, template_samples
from tourney.harness.prompts import PromptTemplate, get_template, render, template_for, with_system
from tourney.harness.templates import FileTemplate, find_template_file, shipped_templates
from tourney.harness.questions import data_sha256
from tourney.harness.scoring import Score, extract_answer, read_option, score
from tourney.harness.types import Question, SampleResult
from tourney.models.types import Backend, GenConfig, Generation, Prompt, settle_once

TICK_S = 0.25  # how often progress is refreshed while no answer arrives


@dataclass(frozen=True)
class Prompting:
    """How questions become prompts: a named template for all, or one chosen per question; a
    template file (harness.templates) with its few-shot exemplars (harness.fewshot)."""

    template: str | None = None  # a built-in name, a shipped template's name, or a template file; None: per question
    chat: bool = False  # chat messages (instruct models) rather than raw text
    system: str | None = None  # system message before each question (chat templates only)
    stop: tuple[str, ...] | None = None  # stop sequences given by the user; None: the template's own
    fewshot: FewshotOptions | None = None  # few-shot settings given by the user; None: the template's

    def template_for(self, question: Question) -> PromptTemplate:
        chosen = get_template(self.template) if self.template else template_for(question, self.chat)
        return with_system(chosen, self.system)

    def file_template(self) -> FileTemplate | None:
        """The template file named by `template` (a shipped name or a path), else None."""
        return find_template_file(self.template) if self.template else None

    def render(self, questions: Sequence[Question]) -> tuple[list[Prompt], tuple[str, ...]]:
        """Each question's prompt, and one stop list for a call over all of them (the user's, else
        the union of their templates' stops: a list mixes templates only when the data mixes
        question kinds)."""
        file = self.file_template()
        if file is not None:
            pool = self.exemplar_pool(file)
            chat = self.chat or file.chat
            fs = self.fewshot or FewshotOptions()
            if fs.multiturn and not chat:
                raise ConfigError("--fewshot-as-multiturn puts exemplars in chat turns: add --chat "
                                  f"(or use a chat template; {file.name!r} is not one)")
            prompts: list[Prompt] = [file.render(q, pool.choose(q) if pool else (), chat=chat,
                                                 multiturn=fs.multiturn, system=self.system) for q in questions]
            return prompts, self.stop if self.stop is not None else file.stop
        if self.fewshot is not None and (self.fewshot.path or self.fewshot.k):
            raise ConfigError(f"few-shot exemplars need a template file that lays them out (--template "
                              f"{', '.join(shipped_templates()) or 'FILE'} or a .yaml/.toml file); "
                              f"{self.template or 'the built-in template'!r} has no exemplar layout")
        templates = [self.template_for(q) for q in questions]
        stop = tuple(dict.fromkeys(s for t in templates for s in t.stop))
        return [render(t, q) for t, q in zip(templates, questions)], self.stop if self.stop is not None else stop

    def exemplar_pool(self, file: FileTemplate) -> ExemplarPool | None:
        """The exemplars and the rule that picks them; None when the run is zero-shot."""
        fs = self.fewshot or FewshotOptions()
        k = fs.k if fs.k is not None else file.spec.num_fewshot
        if k == 0:
            return None
        if fs.path:
            exemplars, origin = load_exemplars(fs.path), fs.path
        elif file.spec.fewshot_config.samples:
            exemplars, origin = template_samples(file.name, file.spec.fewshot_config.samples), f"template {file.name}"
        else:
            raise ConfigError(f"template {file.name!r} shows {k} exemplar(s) before each question: give them with "
                              "--fewshot FILE (questions with worked solutions), or pass --num-fewshot 0")
        check_exemplars(exemplars, origin, "solution" in file.reads("doc_to_target"))
        return ExemplarPool(exemplars, k, fs.by or file.spec.fewshot_config.by, file.spec.fewshot_config.sampler,
                            fs.seed, origin)

    def identity(self) -> dict[str, Any]:
        """What, beyond the template's name, decides the prompts: the template file's bytes, the
        exemplars (file bytes, count, rule), the user's stop sequences. Only what is set, so
        runs recorded before these options existed still resume."""
        out: dict[str, Any] = {}
        file = self.file_template()
        if file is not None:
            out["template_sha256"] = file.sha256
            pool = self.exemplar_pool(file)
            if pool is not None:
                fs = self.fewshot or FewshotOptions()
                out["fewshot"] = {"file": fs.path or "template", "sha256": data_sha256(fs.path, pool.exemplars) if fs.path else None,
                                  "k": pool.k, "by": pool.by, "sampler": pool.sampler, "multiturn": fs.multiturn}
        if self.stop is not None:
            out["stop"] = list(self.stop)
        return out


def predict(question: Question, text: str) -> str | None:
    """The final answer in a model output (a choice letter for multiple choice), or None."""
    return read_answer(question, text).prediction


def read_answer(question: Question, text: str) -> Score:
    """The answer in a model output and how it was read (`status`), unscored (correct False)."""
    if question.is_multiple_choice:
        return read_option(question, text)
    return Score(extract_answer(text), False)


def scored_rows(question: Question, gens: Sequence[Generation]) -> list[SampleResult]:
    """One question's samples as SampleResults, sample 0 first. A failed request is a row with
    `error` set and no prediction; without a gold answer (tournament questions have none) the
    answer is only extracted and `correct` is False."""
    rows = []
    for s, g in enumerate(gens):
        prediction, correct, status = None, False, None
        if g.error is None:
            sc = score(question, g.text) if question.answer else read_answer(question, g.text)
            prediction, correct, status = sc.prediction, sc.correct, sc.status
        rows.append(SampleResult(
            id=question.id, question=question.question, type=question.type, sample=s, output=g.text,
            prediction=prediction, gold=question.answer, correct=correct,
            latency_s=round(g.latency_s, 6), ttft_s=None if g.ttft_s is None else round(g.ttft_s, 6),
            prompt_tokens=g.prompt_tokens, completion_tokens=g.completion_tokens, error=g.error,
            finish_reason=g.finish_reason, token_logprobs=g.token_logprobs, raw_output=g.raw_text, cut_at=g.cut_at,
            status=status, choices=list(question.choices) if question.choices else None,
        ))
    return rows


def generate(backend: Backend, questions: Sequence[Question], prompts: Sequence[Prompt],
             cfg: GenConfig) -> list[list[Generation]]:
    """One call: each question's samples, in order. Recorded outputs are matched by question,
    not by rendered prompt."""
    if backend.capabilities.recorded:
        return backend.generate_questions(list(questions), cfg)
    return backend.generate(list(prompts), cfg)


@dataclass
class Answered:
    """One question's samples, as they arrived."""

    index: int  # position in the list given to answer_all
    question: Question
    generations: list[Generation]
    _recorded: Future | None = field(default=None, repr=False)  # settled once written (server backends)


class _Stopped(Exception):
    """Raised in a backend's worker once the caller has stopped: no further request is sent."""


_END = object()


def answer_all(backend: Backend, questions: Sequence[Question], prompts: Sequence[Prompt], cfg: GenConfig,
               record: Callable[[list[Answered]], None], tick: Callable[[], None] | None = None) -> None:
    """Ask for every question's samples and call `record(answers)` in this thread, in completion
    order, as they arrive (module doc). An exception from the backend or from `record` stops the
    generation and is raised here, after everything that arrived before it has been recorded."""
    if len(questions) != len(prompts):
        raise ValueError(f"answer_all got {len(questions)} questions but {len(prompts)} prompts")
    if backend.capabilities.server:
        _answer_from_server(backend, questions, prompts, cfg, record, tick)
    else:
        _answer_in_process(backend, questions, prompts, cfg, record, tick)


def _answer_in_process(backend: Backend, questions: Sequence[Question], prompts: Sequence[Prompt],
                       cfg: GenConfig, record: Callable[[list[Answered]], None],
                       tick: Callable[[], None] | None) -> None:
    """In-process models generate in this thread (as torch, llama.cpp and vLLM expect); a batch's
    answers arrive together and are recorded together, in one write."""
    caps = backend.capabilities
    size = caps.batch_size or max(len(questions), 1)
    buffer: list[Answered] = []

    def flush() -> None:
        if buffer:
            items = list(buffer)
            buffer.clear()
            record(items)
            if tick:
                tick()

    def on_done(i: int, gens: list[Generation]) -> None:
        buffer.append(Answered(i, questions[i], gens))
        if len(buffer) >= size:
            flush()

    try:
        if caps.recorded:
            for start in range(0, len(questions), size):
                chunk = list(questions[start: start + size])
                for k, gens in enumerate(backend.generate_questions(chunk, cfg)):
                    on_done(start + k, gens)
        else:
            backend.generate_each(prompts, cfg, on_done)
    finally:
        flush()  # what arrived before a failure is kept


def send_order(questions: Sequence[Question]) -> list[int]:
    """The order a server's requests go in: longest question first. A long question tends to have
    a long answer, and one started last would hold the end of the run while the other slots sit
    idle. The question's own text, not the rendered prompt (what lm-eval sorts by): a
    multiple-choice prompt is long for its options, whose answer is short, and sorting on it sent
    a mixed set's long worked problems last (benchmarks/eval_throughput.py, RESULTS.md). Ties keep
    question order. Rows are still written in question order, so the order changes no result."""
    return sorted(range(len(questions)), key=lambda i: -len(questions[i].question))


def _answer_from_server(backend: Backend, questions: Sequence[Question], prompts: Sequence[Prompt],
                        cfg: GenConfig, record: Callable[[list[Answered]], None],
                        tick: Callable[[], None] | None) -> None:
    """A server's requests run in its workers; answers are handed to this thread (module doc)."""
    inbox: queue.Queue = queue.Queue()
    lock = threading.Lock()
    stopped = False
    unsettled: set[Future] = set()  # handed to the backend, not yet settled
    failure: list[BaseException] = []

    def on_done(i: int, gens: list[Generation]) -> Future:
        recorded: Future = Future()
        with lock:  # with the stop below: every future handed out is settled, none twice
            if stopped:
                raise _Stopped()
            unsettled.add(recorded)
        inbox.put(Answered(i, questions[i], gens, recorded))
        return recorded

    def settle(answers: list[Answered]) -> None:
        with lock:
            for a in answers:
                unsettled.discard(a._recorded)
        for a in answers:
            settle_once(a._recorded)

    sent = send_order(questions)

    def produce() -> None:
        try:
            backend.generate_each([prompts[i] for i in sent], cfg, lambda k, gens: on_done(sent[k], gens))
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 -- handed to the caller's thread, never lost
            failure.append(e)
        finally:
            inbox.put(_END)

    worker = threading.Thread(target=produce, name="tourney-generate", daemon=True)
    worker.start()
    ended = False
    try:
        while not ended:
            try:
                items = [inbox.get(timeout=TICK_S)]
            except queue.Empty:
                if tick:
                    tick()
                continue
            while True:  # everything that has arrived: one record, one write
                try:
                    items.append(inbox.get_nowait())
                except queue.Empty:
                    break
            ended = any(x is _END for x in items)
            answers = [x for x in items if x is not _END]
            if answers:
                record(answers)
                settle(answers)
            if tick:
                tick()
    finally:
        if not ended:  # record failed or we were interrupted: the waiting workers stop
            with lock:
                stopped = True
                left = list(unsettled)
                unsettled.clear()
            for f in left:  # one a worker's cancellation settled first stays as it is
                settle_once(f, _Stopped())
    worker.join()
    if failure:
        raise failure[0]
