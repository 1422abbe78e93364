"""Replay recorded outputs as if a model produced them: `replay:PATH.jsonl`.

This lets routers, metrics and reports be developed and tested against a real model's answers
without the model. Two line shapes are read:

- one line per question: `question` and/or `id`, plus `output` (str) or `outputs` (list of str);
- the project's own results.jsonl: one row per sample, `id`, `question`, `sample`, `output`.

Recorded timings, token counts and logprobs travel into the Generation, so speed and confidence
metrics computed on a replay match those of the original run.

Stop sequences (GenConfig.stop) are applied to the recorded text, so a raw generation that ran
on past its answer (a base model writing the next few-shot question) is read as a live run with
those stops would have returned it; the whole recording stays in `raw_text`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from tourney.models.options import checked_options
from tourney.models.types import (Backend, BackendError, Capabilities, GenConfig, Generation, ModelSpec, Prompt,
                                  clean_text, cut_at_stop)


class QuestionLike(Protocol):  # the harness's Question, without importing the harness
    id: str
    question: str


@dataclass
class _Entry:
    """Everything recorded for one question."""

    where: str  # "file:line" of its first line
    id: str | None
    question: str | None
    prompt: str | None
    samples: list[tuple[int, Generation]] = field(default_factory=list)  # (sort key, sample)
    explicit_samples: bool = False  # rows carried a `sample` index


def _number(row: dict[str, Any], name: str, where: str, kind: type, default: Any) -> Any:
    value = row.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise BackendError(f"{where}: field {name!r} must be a {kind.__name__}, got {value!r}")
    return kind(value)


def _logprob_list(value: Any, where: str, name: str) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise BackendError(f"{where}: field {name!r} must be a list of numbers")
    return [float(v) for v in value]


def _generations(row: dict[str, Any], where: str) -> list[Generation]:
    """The samples one line records, with its timings and logprobs."""
    if "outputs" in row:
        outputs = row["outputs"]
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
            raise BackendError(f"{where}: field 'outputs' must be a non-empty list of strings")
    elif "output" in row:
        if not isinstance(row["output"], str):
            raise BackendError(f"{where}: field 'output' must be a string")
        outputs = [row["output"]]
    else:
        raise BackendError(f"{where}: no 'output' (string) or 'outputs' (list of strings) field")

    # token_logprobs: one list per output; a flat list is accepted when there is one output.
    raw_lp = row.get("token_logprobs")
    per_output: list[Any]
    if raw_lp is None:
        per_output = [None] * len(outputs)
    elif len(outputs) == 1 and isinstance(raw_lp, list) and not any(isinstance(v, list) for v in raw_lp):
        per_output = [raw_lp]
    elif isinstance(raw_lp, list) and len(raw_lp) == len(outputs):
        per_output = raw_lp
    else:
        raise BackendError(f"{where}: field 'token_logprobs' must hold one list of numbers per output")

    error = row.get("error")
    finish = row.get("finish_reason")
    if (error is not None and not isinstance(error, str)) or (finish is not None and not isinstance(finish, str)):
        raise BackendError(f"{where}: fields 'error' and 'finish_reason' must be strings or null")
    ttft = row.get("ttft_s")
    cleaned = [clean_text(text) for text in outputs]  # a recorded "\ud800" escape would fail every write
    return [
        Generation(
            text=text,
            replaced_surrogates=replaced,
            token_logprobs=_logprob_list(lp, where, "token_logprobs"),
            finish_reason=finish,
            latency_s=_number(row, "latency_s", where, float, 0.0),
            ttft_s=None if ttft is None else _number(row, "ttft_s", where, float, None),
            prompt_tokens=_number(row, "prompt_tokens", where, int, 0),
            completion_tokens=_number(row, "completion_tokens", where, int, 0),
            error=error,
        )
        for (text, replaced), lp in zip(cleaned, per_output)
    ]


def load_replay_file(path: Path) -> list[_Entry]:
    """Read and validate every line; group rows of one question (same id, else same text)."""
    try:
        # "\n" only: str.splitlines() would also cut at U+2028/U+2029/U+0085 inside a JSON string.
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise BackendError(f"cannot read replay file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BackendError(f"{path}: not valid UTF-8 (byte offset {exc.start}); expected a JSONL text file") from None
    entries: dict[tuple[str, str], _Entry] = {}
    for lineno, line in enumerate(lines, start=1):
        where = f"{path}:{lineno}"
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BackendError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise BackendError(f"{where}: expected a JSON object")
        qid, question, prompt = row.get("id"), row.get("question"), row.get("prompt")
        if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
            raise BackendError(f"{where}: field 'id' must be a string")
        qid = None if qid is None else str(qid)
        for name, value in (("question", question), ("prompt", prompt)):
            if value is not None and not isinstance(value, str):
                raise BackendError(f"{where}: field {name!r} must be a string")
        if qid is None and question is None:
            raise BackendError(f"{where}: needs an 'id' or a 'question' field")
        gens = _generations(row, where)

        key = ("id", qid) if qid is not None else ("question", question or "")
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _Entry(where=where, id=qid, question=question, prompt=prompt)
        entry.question = entry.question or question
        entry.prompt = entry.prompt or prompt
        if "sample" in row:
            index = row["sample"]
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise BackendError(f"{where}: field 'sample' must be an integer >= 0")
            if entry.samples and not entry.explicit_samples:
                raise BackendError(f"{where}: 'sample' given here but not on {entry.where} for the same question")
            if any(k == index for k, _ in entry.samples):
                raise BackendError(f"{where}: sample {index} of this question is recorded twice")
            if len(gens) != 1:
                raise BackendError(f"{where}: a row with 'sample' must hold a single 'output'")
            entry.explicit_samples = True
            entry.samples.append((index, gens[0]))
        else:
            if entry.explicit_samples:
                raise BackendError(f"{where}: no 'sample' field, but {entry.where} numbers this question's samples")
            # Repeated lines for one question add samples in file order rather than replace.
            entry.samples.extend((len(entry.samples), g) for g in gens)
    for entry in entries.values():
        entry.samples.sort(key=lambda pair: pair[0])
    return list(entries.values())


def _stopped(gen: Generation, stop: Sequence[str]) -> Generation:
    """A recorded output as a live run with these stop sequences would have returned it: cut
    before the first stop, the whole recording kept in raw_text with the offset of the cut.
    A recording holds no token boundaries, so its token counts, logprobs and timings stay those
    of the whole output."""
    cut = cut_at_stop(gen.text, stop)
    if cut is None:
        return gen
    gen.raw_text, gen.cut_at = gen.text, cut
    gen.text, gen.finish_reason = gen.text[:cut], "stop"
    return gen


class ReplayBackend(Backend):
    """Answers from a JSONL file of recorded outputs; fails loudly on anything not recorded."""

    # One question per call: a question that is not recorded fails alone, after the others
    # before it have been written.
    capabilities = Capabilities(recorded=True, batch_size=1)

    @checked_options
    def __init__(self, spec: ModelSpec) -> None:  # no options: the file holds everything
        self.spec = spec.raw
        self.path = Path(spec.target).expanduser()
        entries = load_replay_file(self.path)
        self._count = len(entries)
        self._by_id = {e.id: e for e in entries if e.id is not None}
        self._by_question: dict[str, list[_Entry]] = {}
        self._by_prompt: dict[str, list[_Entry]] = {}
        for e in entries:
            if e.question is not None:
                self._by_question.setdefault(e.question, []).append(e)
            if e.prompt is not None:
                self._by_prompt.setdefault(e.prompt, []).append(e)

    def __repr__(self) -> str:
        return f"ReplayBackend(path={str(self.path)!r}, questions={self._count})"

    def check(self) -> None:
        """Nothing to reach: the file was read and validated by the constructor."""

    def close(self) -> None:
        pass

    def _unique(self, found: list[_Entry] | None, what: str) -> _Entry | None:
        if not found:
            return None
        if len(found) > 1:
            places = ", ".join(e.where for e in found)
            raise BackendError(f"{what} matches several recorded questions in {self.path} ({places})")
        return found[0]

    def _find(self, question: QuestionLike) -> _Entry | None:
        entry = self._by_id.get(str(question.id))
        if entry is not None:
            return entry
        # Text matching is for files without ids, or with ids from another naming scheme.
        return self._unique(self._by_question.get(question.question), f"question {question.id!r}")

    def samples_available(self, question: QuestionLike | str) -> int:
        """How many samples are recorded for a question (a Question-like object or its text)."""
        if isinstance(question, str):
            entry = self._unique(self._by_question.get(question) or self._by_prompt.get(question), "text")
        else:
            entry = self._find(question)
        return len(entry.samples) if entry else 0

    def _take(self, entry: _Entry, cfg: GenConfig, name: str) -> list[Generation]:
        n = cfg.n
        if n > len(entry.samples):
            raise BackendError(
                f"{name} has {len(entry.samples)} recorded sample(s) in {self.path} ({entry.where}) "
                f"but {n} were asked for"
            )
        # Fresh copies, so callers that annotate a Generation never alter the recording.
        return [_stopped(Generation(**g.to_dict()), cfg.stop) for _, g in entry.samples[:n]]

    def generate_questions(self, questions: Sequence[QuestionLike], cfg: GenConfig) -> list[list[Generation]]:
        out = []
        for q in questions:
            entry = self._find(q)
            if entry is None:
                raise BackendError(f"question {q.id!r} is not recorded in replay file {self.path}")
            out.append(self._take(entry, cfg, f"question {q.id!r}"))
        return out

    def generate(self, prompts: Sequence[Prompt], cfg: GenConfig) -> list[list[Generation]]:
        out = []
        for k, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise BackendError("replay backend matches text prompts only; it got chat messages")
            entry = self._unique(self._by_prompt.get(prompt), f"prompt {k}") or self._unique(
                self._by_question.get(prompt), f"prompt {k}"
            )
            if entry is None:
                raise BackendError(
                    f"prompt {k} ({prompt[:60]!r}) matches no recorded 'prompt' or 'question' in {self.path}"
                )
            out.append(self._take(entry, cfg, f"prompt {k}"))
        return out

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]) -> list[list[float]]:
        raise BackendError("replay backend cannot score choices")
