"""Scripted backends and hand-made run directories for the router tests (no model anywhere)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tourney.models.types import Backend, Capabilities, GenConfig, Generation


GATE_TIMEOUT_S = 120.0  # a gate never released (a failed test) still lets the call end


@dataclass
class ScriptedBackend(Backend):
    """Answers a prompt with the outputs scripted for the question text it contains.

    `outputs[q]` lists one output per sample (the last repeats when more are asked for);
    `logprobs[q]` is every sample's token_logprobs; `latency_s` is what each Generation reports;
    `sleep_s` really sleeps per call (a slow model); `gate`, when given, holds every call until
    it is set (a model busy for as long as a test needs, with no guessed length of time);
    `started` is set once a call has begun; `fail` holds questions whose request fails."""

    spec: str = "fake:scripted"
    outputs: dict[str, list[str]] = field(default_factory=dict)
    logprobs: dict[str, list[float]] = field(default_factory=dict)
    latency_s: float = 0.1
    sleep_s: float = 0.0
    gate: threading.Event | None = None
    started: threading.Event = field(default_factory=threading.Event)
    fail: set[str] = field(default_factory=set)
    choice_scores: dict[str, list[float]] = field(default_factory=dict)
    calls: list[tuple[list[str], GenConfig]] = field(default_factory=list)
    score_calls: list[list[str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    capabilities: Capabilities = Capabilities(batch_size=None, choice_scoring=True)  # in-process, any list

    def _key(self, prompt) -> str:
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        for q in self.outputs:
            if q in text:
                return q
        raise KeyError(f"no scripted output for prompt {text!r}")

    def generate(self, prompts: Sequence, cfg: GenConfig) -> list[list[Generation]]:
        keys = [self._key(p) for p in prompts]
        with self._lock:
            self.calls.append((keys, cfg))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(GATE_TIMEOUT_S)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        out = []
        for q in keys:
            if q in self.fail:
                out.append([Generation(text="", error="HTTP 503", finish_reason="error", latency_s=self.latency_s)] * cfg.n)
                continue
            texts = self.outputs[q]
            lp = self.logprobs.get(q) if cfg.logprobs is not None else None
            out.append([Generation(text=texts[min(s, len(texts) - 1)], token_logprobs=lp, finish_reason="stop",
                                   latency_s=self.latency_s, completion_tokens=5) for s in range(cfg.n)])
        return out

    def score_choices(self, prompts, choices):
        with self._lock:
            self.score_calls.append(list(prompts))
        return [list(self.choice_scores[self._key(p)])[: len(c)] for p, c in zip(prompts, choices)]

    def close(self) -> None:
        pass

    def asked(self) -> list[str]:
        """Every question asked, in call order."""
        return [k for keys, _ in self.calls for k in keys]


def write_run(path: Path, model: str, rows: list[dict], *, samples: int = 1, temperature: float = 0.0,
              logprobs: int | None = None, max_tokens: int = 256) -> Path:
    """A run directory as harness.runner writes it: run.json and results.jsonl."""
    path.mkdir(parents=True, exist_ok=True)
    meta = {"model": model, "data": "hand-made.jsonl", "data_sha256": "0" * 64,
            "generation": {"max_tokens": max_tokens, "temperature": temperature, "top_p": 1.0,
                           "samples": samples, "seed": 0, "logprobs": logprobs},
            "template": "auto", "package_version": "0.1.0", "started_at": "2024-01-01T00:00:00",
            "n_questions": len({r["id"] for r in rows}),
            "identity": {"model": model, "template": None, "chat": False, "samples": samples}}
    (path / "run.json").write_text(json.dumps(meta))
    full = []
    for r in rows:
        row = {"question": f"question {r['id']}?", "type": "default", "sample": 0, "output": "",
               "prediction": None, "gold": "1", "correct": False, "latency_s": 1.0, "ttft_s": None,
               "prompt_tokens": 10, "completion_tokens": 5, "error": None, "finish_reason": "stop",
               "token_logprobs": None}
        row.update(r)
        full.append(row)
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full))
    return path


def saved_words_router(path: Path, data, *, l2: float = 1.0):
    """The words router (type + question + answer documents) fitted on all of `data`, calibrated
    at a 0.5 teacher share and saved at `path`: (the fitted model, the file as JSON)."""
    import numpy as np

    from tourney.routers.fitting.select import GAIN, Candidate, candidate_scores
    from tourney.routers.policies.calibrate import calibrate

    c = Candidate((), kind=GAIN, text=True, answer=True, l2=l2)
    model = c.fit(data)
    router = calibrate(candidate_scores(c, data, np.arange(data.n), model), data.student_correct,
                       data.teacher_correct, kind="teacher_share", value=0.5, model=model)
    router.save(path)
    return model, json.loads(path.read_text())
