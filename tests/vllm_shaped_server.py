"""A small server with vLLM's OpenAI-compatible request and response shapes, serving a Hugging Face
checkpoint on CPU: what a vLLM teacher answers, without vLLM or a GPU. Test infrastructure only.

    python -m tests.vllm_shaped_server --model PATH --port 8123 [--alias NAME] [--max-logprobs 20] [--flaky N]

Endpoints, as vLLM has them (vllm/entrypoints/openai/completion/protocol.py and serving.py):
  GET  /v1/models        {"object": "list", "data": [{"id": alias, "object": "model", "root": path, ...}]}
  POST /v1/completions   prompt: text or token ids; max_tokens; prompt_logprobs: k; return_token_ids.
                         choices[0].prompt_logprobs: one entry per prompt token, null for the first,
                         else {"<id>": {"logprob", "rank", "decoded_token"}} with the k best tokens
                         and the prompt's own token (first, with its true rank) when it is not among
                         them; prompt_logprobs above --max-logprobs is a 400, as in vLLM.
  POST /tokenize         {"prompt", "add_special_tokens"} -> {"count", "max_model_len", "tokens"}
  GET  /stats            test hook: requests served, the most ever in flight at once
--flaky N answers every Nth completion request with 503 before doing any work (retry tests).
The model runs one request at a time (a lock), so concurrent clients queue as they would on a
busy server; requests waiting for the lock count as in flight.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx

from tests.llama_server import start_child, stop_child


def make_app(model_path: str, alias: str, max_logprobs: int = 20, flaky: int = 0):
    import torch
    from fastapi import FastAPI, HTTPException
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    app = FastAPI()
    lock, count_lock = threading.Lock(), threading.Lock()
    stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}

    def decoded(i: int) -> str:
        return tok.decode([i])

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": alias, "object": "model", "created": 0, "owned_by": "vllm",
                                            "root": model_path, "max_model_len": model.config.max_position_embeddings}]}

    @app.get("/stats")
    def get_stats() -> dict:
        return dict(stats)

    @app.post("/tokenize")
    def tokenize(body: dict) -> dict:
        ids = tok(body["prompt"], add_special_tokens=body.get("add_special_tokens", True)).input_ids
        return {"count": len(ids), "max_model_len": model.config.max_position_embeddings, "tokens": ids}

    @app.post("/v1/completions")
    def completions(body: dict) -> dict:
        with count_lock:
            stats["requests"] += 1
            n = stats["requests"]
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            if flaky and n % flaky == 0:
                raise HTTPException(503, "flaky by request")
            if body.get("model") not in (None, alias):
                raise HTTPException(404, f"The model `{body.get('model')}` does not exist.")
            k = body.get("prompt_logprobs")
            if k is not None and k > max_logprobs:
                raise HTTPException(400, f"Requested prompt logprobs of {k}, which is greater than max "
                                         f"allowed: {max_logprobs}")
            prompt = body["prompt"]
            ids = list(prompt) if isinstance(prompt, list) else tok(prompt).input_ids
            with lock:
                return _complete(ids, body, k)
        finally:
            with count_lock:
                stats["in_flight"] -= 1

    def _complete(ids: list[int], body: dict, k: int | None) -> dict:
        max_tokens = int(body.get("max_tokens") or 16)
        x = torch.tensor([ids])
        with torch.inference_mode():
            logits = model(input_ids=x).logits[0].float()  # (L, V)
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
        new = out[0, len(ids):].tolist()
        prompt_logprobs = None
        if k is not None:
            lp = logits.log_softmax(-1)
            prompt_logprobs = [None]
            for i in range(1, len(ids)):
                row = lp[i - 1]
                entry: dict[str, Any] = {}
                top = row.topk(k) if k > 0 else None
                own = ids[i]
                top_ids = [] if top is None else top.indices.tolist()
                if own not in top_ids:  # vLLM lists the prompt's own token first, with its true rank
                    entry[str(own)] = {"logprob": max(float(row[own]), -9999.0),
                                       "rank": int((row > row[own]).sum()) + 1, "decoded_token": decoded(own)}
                if top is not None:
                    for r, (v, t) in enumerate(zip(top.values.tolist(), top_ids), start=1):
                        entry[str(t)] = {"logprob": max(v, -9999.0), "rank": r, "decoded_token": decoded(t)}
                prompt_logprobs.append(entry)
        finish = "stop" if new and new[-1] == tok.eos_token_id else "length"
        choice = {"index": 0, "text": tok.decode(new, skip_special_tokens=True), "logprobs": None,
                  "finish_reason": finish, "stop_reason": None, "prompt_logprobs": prompt_logprobs,
                  "prompt_token_ids": ids if body.get("return_token_ids") else None,
                  "token_ids": new if body.get("return_token_ids") else None}
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": alias, "choices": [choice],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": len(new),
                          "total_tokens": len(ids) + len(new)}}

    return app


@dataclass
class ShapedServer:
    process: subprocess.Popen[bytes]
    base_url: str  # http://127.0.0.1:PORT/v1
    alias: str
    log_path: Path

    def spec(self) -> str:
        return f"openai:{self.alias}@{self.base_url}"

    def stats(self) -> dict:
        return httpx.get(self.base_url.removesuffix("/v1") + "/stats", timeout=5).json()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@contextmanager
def vllm_shaped_server(model_path: str | Path, *, alias: str = "teacher", max_logprobs: int = 20, flaky: int = 0,
                       timeout_s: float = 120.0) -> Iterator[ShapedServer]:
    """Start the server on 127.0.0.1, wait until /v1/models answers, stop it afterwards."""
    root = Path(__file__).resolve().parents[1]
    proc, base_url, log_path = start_child(
        lambda port: [sys.executable, "-m", "tests.vllm_shaped_server", "--model", str(model_path), "--port",
                      str(port), "--alias", alias, "--max-logprobs", str(max_logprobs), "--flaky", str(flaky)],
        "vLLM-shaped server", timeout_s, prefix="shaped-server-", cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        yield ShapedServer(proc, base_url, alias, log_path)
    finally:
        stop_child(proc)


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--alias", default="teacher")
    ap.add_argument("--max-logprobs", type=int, default=20)
    ap.add_argument("--flaky", type=int, default=0)
    args = ap.parse_args()
    app = make_app(args.model, args.alias, args.max_logprobs, args.flaky)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
