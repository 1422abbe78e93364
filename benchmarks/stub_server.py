"""A stub OpenAI-compatible server that behaves like a continuously batching one (vLLM, SGLang):
every request takes its own latency whatever the concurrency, and answers are known.

    python benchmarks/stub_server.py --data tourney/harness/data/mini/test.jsonl --port 8000

Latency of a request = base_s + per_token_s * (tokens - 1): the first token after base_s, each
further one per_token_s later; five times that (tail_factor) for one
question in twenty (tail_every, chosen by a hash of the question text, so the same questions are
slow on every run and for every client). The answer is the question's gold `solution` (or
"#### answer"), or with --system a recorded model's output (gsm8k-recorded's `systems`), cut at
max_tokens; its tokens are its whitespace-separated pieces. A streamed
response sends the first token alone, then chunks of `chunk_tokens` tokens, each when its last
token is due; a non-streamed one answers when the last token is due.

/v1/completions (streamed or not; `prompt` a string or a list of them, as lm-eval's
local-completions sends) and /v1/chat/completions (the last user message is the prompt);
GET /v1/models; GET /stats: requests received, most in flight at once, the answering span (first
arrival to last response) and per question how often it was asked (what
the kill-and-resume test counts); POST /stats/reset. Everything sleeps on one asyncio loop: no request waits for
another, which is what "independent of concurrency" means here.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_QUESTION = re.compile(r"Question: (.*?)\nAnswer:", re.DOTALL)


@dataclass(frozen=True)
class Timing:
    base_s: float = 0.2  # time to first token (prefill and queueing)
    per_token_s: float = 0.01  # each further token (decoding)
    tail_every: int = 20  # one question in this many is slow
    tail_factor: float = 5.0  # ... and takes this many times longer
    chunk_tokens: int = 4  # tokens per streamed chunk
    # Load (a continuously batching server past its knee): with n requests running, each further
    # token takes per_token_s * (1 + itl_slope * max(0, n - itl_knee)). inf: never slows (the
    # requests are then independent). A request counts from its arrival to its response's end.
    itl_knee: float = float("inf")
    itl_slope: float = 0.0


def load_answers(path: Path, system: str | None = None) -> dict[str, str]:
    """question text -> the answer the stub gives: the gold solution, or `system`'s recorded
    output (rows of ../shared/data/gsm8k-recorded carry several models' real outputs), or with
    system "replay:FILE" the output FILE records for the row's id (a replay: file, as
    ../shared/data/mmlupro-recorded's student.jsonl / teacher.jsonl)."""
    replayed = None
    if system and system.startswith("replay:"):
        rows = (json.loads(x) for x in Path(system[len("replay:"):]).read_text(encoding="utf-8").split("\n") if x.strip())
        replayed = {r["id"]: r["output"] for r in rows}
    out = {}
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            row = json.loads(line)
            if replayed is not None:
                if row["id"] in replayed:
                    out[row["question"]] = replayed[row["id"]]
            elif system:
                out[row["question"]] = row["systems"][system]["output"]
            else:
                out[row["question"]] = row.get("solution") or f"#### {row['answer']}"
    return out


def is_tail(question: str, every: int) -> bool:
    return every > 0 and int(hashlib.sha256(question.encode()).hexdigest(), 16) % every == 0


class Stub:
    def __init__(self, answers: dict[str, str], timing: Timing) -> None:
        self.answers, self.timing = answers, timing
        self.asked: Counter[str] = Counter()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.first_arrival: float | None = None  # wall clock of the first request since reset
        self.last_done: float | None = None  # ... and of the last response's end
        self.nominal_s = 0.0  # sum of the latencies the model above gives the requests
        self.served_s = 0.0  # sum of the times they really took here (more when the CPU is short)

    def reset(self) -> None:
        self.asked.clear()
        self.requests = self.in_flight = self.max_in_flight = 0
        self.first_arrival = self.last_done = None
        self.nominal_s = self.served_s = 0.0

    def arrive(self, nominal_s: float) -> float:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.nominal_s += nominal_s
        now = time.time()
        if self.first_arrival is None:
            self.first_arrival = now
        return now

    def leave(self, arrived: float) -> None:
        self.in_flight -= 1
        self.last_done = time.time()
        self.served_s += self.last_done - arrived

    def question_of(self, prompt: str) -> str:
        m = _QUESTION.search(prompt)
        if m:
            whole = m.group(1)
            for q in (whole, whole.split("\n", 1)[0]):  # ... or the line above a multiple-choice block
                if q in self.answers:
                    return q
        for q in self.answers:  # chat prompts and other templates: the question is inside
            if q in prompt:
                return q
        return prompt

    def plan(self, prompt: str, max_tokens: int) -> tuple[str, list[str], float, str]:
        """(question, token pieces, seconds per token scale, finish reason) for one request."""
        q = self.question_of(prompt)
        self.asked[q] += 1
        text = self.answers.get(q, "#### 0")
        pieces = re.findall(r"\s*\S+", text)
        finish = "stop"
        if len(pieces) > max_tokens:
            pieces, finish = pieces[:max_tokens], "length"
        scale = self.timing.tail_factor if is_tail(q, self.timing.tail_every) else 1.0
        return q, pieces, scale, finish

    def latency_s(self, n_tokens: int, scale: float) -> float:
        """When the n-th token is due, from the request's arrival."""
        return scale * (self.timing.base_s + self.timing.per_token_s * max(n_tokens - 1, 0))


class _Live:
    """One running request in the Decoder: tokens decoded after the first, and what it waits for."""

    def __init__(self, first_due: float, per_token_s: float) -> None:
        self.first_due, self.per_token_s = first_due, per_token_s
        self.done = 0.0
        self.target = 0.0
        self.reached = asyncio.Event()


class Decoder:
    """The load model of Timing.itl_knee/itl_slope, as a fluid model: between two arrivals or
    departures every running request decodes at 1 / (per_token_s * slowdown(n)) tokens a second
    (after its first token, due base_s after its arrival), and one loop wakes each request when
    the token it waits for is decoded."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.live: list[_Live] = []
        self.last = time.monotonic()
        self.changed = asyncio.Event()
        self.task: asyncio.Task | None = None

    def slowdown(self) -> float:
        return 1.0 + self.timing.itl_slope * max(0.0, len(self.live) - self.timing.itl_knee)

    def _advance(self) -> None:
        now, f = time.monotonic(), self.slowdown()
        for r in self.live:
            dt = now - max(self.last, r.first_due)
            if dt > 0:
                r.done += dt / (r.per_token_s * f)
        self.last = now

    def join(self, first_in_s: float, scale: float) -> _Live:
        self._advance()
        r = _Live(time.monotonic() + first_in_s, self.timing.per_token_s * scale)
        self.live.append(r)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._loop())
        self.changed.set()
        return r

    def leave(self, r: _Live) -> None:
        self._advance()
        if r in self.live:
            self.live.remove(r)
        self.changed.set()

    async def until(self, r: _Live, n_tokens: int) -> None:
        """Return when the n-th token of r is due (the first at first_due)."""
        r.target = max(0, n_tokens - 1)
        r.reached.clear()
        self.changed.set()
        await r.reached.wait()

    async def _loop(self) -> None:
        while True:
            self._advance()
            now, f = time.monotonic(), self.slowdown()
            wait = 3600.0
            for r in self.live:
                if r.reached.is_set():
                    continue
                if now >= r.first_due and r.done >= r.target - 1e-9:
                    r.reached.set()
                    continue
                wait = min(wait, max(r.first_due - now, 0.0) + (r.target - r.done) * r.per_token_s * f)
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=max(wait, 0.0))
            except asyncio.TimeoutError:
                pass


def build_app(stub: Stub) -> Starlette:
    t = stub.timing
    decoder = Decoder(t) if t.itl_knee != float("inf") else None

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    async def stats(request: Request) -> Response:
        if request.method == "POST":  # /stats/reset
            stub.reset()
        span = None if stub.first_arrival is None or stub.last_done is None else stub.last_done - stub.first_arrival
        return JSONResponse({"requests": stub.requests, "max_in_flight": stub.max_in_flight, "answering_s": span,
                             "nominal_s": stub.nominal_s, "served_s": stub.served_s, "asked": dict(stub.asked)})

    async def completions(request: Request) -> Response:
        body = await request.json()
        chat = request.url.path.endswith("/chat/completions")
        if chat:
            prompts = [next((m["content"] for m in reversed(body["messages"]) if m.get("role") == "user"), "")]
        else:
            raw = body.get("prompt", "")
            prompts = raw if isinstance(raw, list) else [raw]
        max_tokens = int(body.get("max_tokens") or body.get("max_gen_toks") or 256)
        plans = [stub.plan(str(p), max_tokens) for p in prompts]
        nominal = max(stub.latency_s(len(p[1]), p[2]) for p in plans)
        arrived = stub.arrive(nominal)
        if body.get("stream"):
            return StreamingResponse(stream(plans[0], chat, body, arrived), media_type="text/event-stream")
        live = decoder.join(t.base_s * plans[0][2], plans[0][2]) if decoder is not None else None
        try:
            if live is not None:
                await decoder.until(live, max((len(p[1]) for p in plans), default=1))
            else:
                await asyncio.sleep(nominal)
        finally:
            if live is not None:
                decoder.leave(live)
            stub.leave(arrived)
        choices = []
        for i, (_, pieces, _, finish) in enumerate(plans):
            text = "".join(pieces)
            choices.append({"index": i, "finish_reason": finish, "logprobs": None,
                            **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})})
        n_out = sum(len(p[1]) for p in plans)
        return JSONResponse({"id": "stub", "object": "chat.completion" if chat else "text_completion",
                             "created": int(time.time()), "model": body.get("model", "stub"), "choices": choices,
                             "usage": {"prompt_tokens": 0, "completion_tokens": n_out, "total_tokens": n_out}})

    async def stream(plan: tuple[str, list[str], float, str], chat: bool, body: dict[str, Any], arrived: float):
        _, pieces, scale, finish = plan
        live = decoder.join(t.base_s * scale, scale) if decoder is not None else None
        try:
            bounds = [0, *range(1, len(pieces), t.chunk_tokens), len(pieces)] if pieces else [0, 0]
            for k, last in zip(bounds, bounds[1:]):  # each chunk when its last token is due
                if live is not None:
                    await decoder.until(live, max(last, 1))
                else:
                    await asyncio.sleep(max(0.0, arrived + stub.latency_s(last, scale) - time.time()))
                text = "".join(pieces[k:last])
                done = last >= len(pieces)
                choice: dict[str, Any] = {"index": 0, "finish_reason": finish if done else None}
                choice.update({"delta": {"content": text}} if chat else {"text": text})
                yield f"data: {json.dumps({'choices': [choice]})}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 0, "completion_tokens": len(pieces), "total_tokens": len(pieces)}
                yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # also when the client goes away (its timeout): the server stops generating
            if live is not None:
                decoder.leave(live)
            stub.leave(arrived)

    return Starlette(routes=[
        Route("/v1/models", models), Route("/stats", stats), Route("/stats/reset", stats, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", completions, methods=["POST"]),
    ])


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="JSONL questions with question, answer, solution")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--system", default=None,
                    help="answer with this recorded system's outputs (gsm8k-recorded), or replay:FILE (by question id)")
    for name, value in vars(Timing()).items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = ap.parse_args()
    timing = Timing(**{k: getattr(args, k) for k in vars(Timing())})
    stub = Stub(load_answers(args.data, args.system), timing)
    uvicorn.run(build_app(stub), host=args.host, port=args.port, log_level="warning", access_log=False,
                backlog=4096, timeout_keep_alive=60)


if __name__ == "__main__":
    main()
