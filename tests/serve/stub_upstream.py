"""A small OpenAI-compatible upstream of our own that misbehaves on purpose, by question:
its answer is always "#### 42", and

- a question about eggs gets HTTP 500 every time,
- a question about coins stalls (nothing is sent for `stall_s`), past any test deadline,
- a question about pens fails its first attempt with HTTP 503 and succeeds on the next,
- a question about stamps takes `slow_s` and then answers (a slow but working teacher),
- a question about shells streams its answer in two pieces `slow_s` apart, noting when it
  sent the last one (`marks[text]`, time.monotonic()): a relay must pass the first on before.

It streams as vLLM and llama.cpp do (SSE chunks, a usage chunk, [DONE]), since the openai backend
always streams. Runs under uvicorn in a thread of the test process."""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tests.serve.fakes import uvicorn_thread


def make_stub(stall_s: float = 5.0, slow_s: float = 1.0) -> tuple[FastAPI, Counter, dict]:
    app = FastAPI()
    seen: Counter = Counter()
    marks: dict[str, float] = {}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "stub", "object": "model"}]}

    async def answer(request: Request, chat: bool):
        body = await request.json()
        text = body["messages"][-1]["content"] if chat else body["prompt"]
        seen[text] += 1
        if "eggs" in text:
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if "pens" in text and seen[text] == 1:
            return JSONResponse({"error": {"message": "busy"}}, status_code=503)
        if "coins" in text:
            await asyncio.sleep(stall_s)
        if "stamps" in text:
            await asyncio.sleep(slow_s)

        def piece_chunk(piece: str) -> str:
            choice = ({"index": 0, "delta": {"content": piece}, "finish_reason": None} if chat
                      else {"index": 0, "text": piece, "finish_reason": None})
            return f"data: {json.dumps({'choices': [choice]})}\n\n"

        async def events():
            if "shells" in text:
                yield piece_chunk(" counting shells")
                await asyncio.sleep(slow_s)
                marks[text] = time.monotonic()
                yield piece_chunk("\n#### 42")
            else:
                yield piece_chunk(" the stub says\n#### 42")
            end = {"index": 0, "delta": {}, "finish_reason": "stop"} if chat else {"index": 0, "text": "", "finish_reason": "stop"}
            yield f"data: {json.dumps({'choices': [end]})}\n\n"
            yield f"data: {json.dumps({'choices': [], 'usage': {'prompt_tokens': 9, 'completion_tokens': 4}})}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await answer(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await answer(request, chat=True)

    return app, seen, marks


@contextmanager
def stub_upstream(**kw) -> Iterator[tuple[str, Counter, dict]]:
    """(base URL ending in /v1, the count of requests per prompt, when the shells answers ended)."""
    app, seen, marks = make_stub(**kw)
    with uvicorn_thread(app, lifespan="off") as (url, _):
        yield url + "/v1", seen, marks
