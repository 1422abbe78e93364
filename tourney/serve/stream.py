"""`stream: true`: OpenAI server-sent events, the routing decision first.

Per question (choice index), in this order:
1. a chunk with the assistant role and the routing decision in `tourney` (which model answers,
   the confidence and the threshold), sent as soon as the router has decided, before the
   answering model has finished;
2. the answer text: as the teacher generates it when the teacher was chosen before it ran
   (`teacher`, `router-accuracy`) and is an upstream server that streams; otherwise line by line
   once the answering model has returned it (in-process backends return whole answers, and in
   `router` the decision needs the student's finished answer). A relayed answer is sent as
   generated, so the request's `stop` strings do not cut it;
3. a chunk with `finish_reason` and the full decision (latencies, fallbacks) in `tourney`.
With several prompts in one /v1/completions request their chunks interleave by index. Then one
chunk with `usage` and no choices when `stream_options.include_usage` was asked, and `[DONE]`.
A direct model that fails sends an `error` event (the OpenAI SDKs raise it) before `[DONE]`.
"""
from __future__ import annotations

import asyncio
import json
import math
from dataclasses import asdict
from typing import Any, AsyncIterator, Awaitable, Callable

from tourney.serve.adapter import Job, Served, content, decision, failure, usage
from tourney.serve.engine import Route

Answer = Callable[[int, Callable[[Route], None], Callable[[str], None]], Awaitable[Served]]


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str).encode() + b"\n\n"


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats (an infinite threshold) as null: SSE payloads are strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


class ChunkWriter:
    """Chunks in the shape of the endpoint: chat deltas or completion texts."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.chat = job.endpoint == "chat"
        self.kind = "chat.completion.chunk" if self.chat else "text_completion"

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return sse({"id": self.job.request_id, "object": self.kind, "created": self.job.created,
                    "model": self.job.mode, "choices": choices, **extra})

    def _choice(self, index: int, text: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else ({} if text is None else {"content": text})
            return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}

    def route(self, index: int, r: Route) -> bytes:
        return self._chunk([self._choice(index, None, None, role=True)], tourney=_clean(asdict(r)))

    def text(self, index: int, piece: str) -> bytes:
        return self._chunk([self._choice(index, piece, None)])

    def answer(self, index: int, s: Served) -> list[bytes]:
        text, sent = content(self.job, s), s.relayed or ""
        # what was relayed live stands; only a remainder is sent (e.g. the student's backup answer
        # after a teacher that failed before sending anything)
        rest = text if not sent else (text[len(sent):] if text.startswith(sent) else "")
        out = [self.text(index, piece) for piece in rest.splitlines(keepends=True)]
        out.append(self._chunk([self._choice(index, None if self.chat else "", s.standing()[2] or "stop")],
                               tourney=json.loads(decision(s).model_dump_json())))
        return out

    def usage(self, served: list[Served]) -> bytes:
        return self._chunk([], usage=usage(served).model_dump())


async def events(job: Job, answer: Answer) -> AsyncIterator[bytes]:
    """The SSE body of one streamed request; `answer(i, on_route)` answers question i."""
    writer = ChunkWriter(job)
    queue: asyncio.Queue = asyncio.Queue()
    tasks = []
    for i in range(len(job.questions)):
        task = asyncio.ensure_future(answer(i, lambda r, i=i: queue.put_nowait(("route", i, r)),
                                            lambda piece, i=i: queue.put_nowait(("text", i, piece))))
        task.add_done_callback(lambda t, i=i: queue.put_nowait(("done", i, t)))
        tasks.append(task)
    routed: set[int] = set()
    served: dict[int, Served] = {}
    while len(served) < len(tasks):
        kind, i, value = await queue.get()
        if kind == "route":
            routed.add(i)
            yield writer.route(i, value)
            continue
        if kind == "text":
            yield writer.text(i, value)
            continue
        s = value.result()  # answer() never raises for a model's failure: that is in the record
        served[i] = s
        problem = failure([s])
        if problem is not None:
            yield sse(problem.body())
            continue
        if i not in routed:
            yield writer._chunk([writer._choice(i, None, None, role=True)])
        for chunk in writer.answer(i, s):
            yield chunk
    if job.include_usage:
        yield writer.usage([served[i] for i in sorted(served)])
    yield b"data: [DONE]\n\n"
