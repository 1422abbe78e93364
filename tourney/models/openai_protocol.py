"""The OpenAI wire format, without the transport: spec targets, the retry schedule, what a
streamed (SSE) completion delivers chunk by chunk, and the logprobs of an echoed prompt.
models.openai_backend sends the requests; everything here is pure and tested on its own.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import httpx

from tourney.models.types import BackendError, GenConfig, Generation, ModelSpec, Prompt, clean_text

log = logging.getLogger("tourney.models.openai_backend")

MAX_RETRY_AFTER_S = 30.0  # a server asking for a longer pause gets this; a run cannot stall on it
MAX_BACKOFF_S = 30.0
CHECK_TIMEOUT_S = 5.0  # `check` answers quickly whether a server is there, not whether it is fast


def parse_target(spec: ModelSpec) -> tuple[str, str]:
    """`MODEL@BASE_URL` -> (model, base_url). Split on the last '@' that starts a URL, because
    model names may contain '@' themselves."""
    target = spec.target.strip()
    cut = max(target.rfind("@http://"), target.rfind("@https://"))
    model, url = target[:cut], target[cut + 1 :].rstrip("/")
    host = ""
    if cut > 0:
        try:
            host = httpx.URL(url).host
        except httpx.InvalidURL:
            host = ""
    if cut <= 0 or not model or not host:
        raise BackendError(
            f"model spec {spec.raw!r} must look like openai:MODEL@http://HOST:PORT/v1 "
            f"(e.g. openai:qwen3-30b@http://127.0.0.1:8000/v1)"
        )
    return model, url


def retry_delay(attempt: int, retry_after: str | None, backoff_s: float) -> float:
    """Seconds to wait before retry number `attempt + 1`: the server's Retry-After when it gives
    seconds (capped), else exponential backoff with up to 10% jitter so clients do not retry in
    lockstep."""
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S)
        except ValueError:
            pass  # an HTTP date; our own schedule is good enough
    base = min(backoff_s * 2**attempt, MAX_BACKOFF_S)
    return base + random.uniform(0.0, 0.1 * base)


def sum_choice_logprobs(logprobs: dict[str, Any] | None, prompt_len: int, full_len: int) -> float:
    """Sum the logprobs of the echoed tokens that cover text[prompt_len:full_len].

    `logprobs` is a completions-API logprobs object from an `echo: true` request. A token that
    straddles the prompt/choice boundary counts toward the choice, so the whole choice is scored.
    Tokens starting at or after `full_len` were generated (the max_tokens=1 fallback) and are
    ignored. Raises ValueError when the server did not echo the prompt's logprobs.
    """
    lp = logprobs or {}
    offsets = lp.get("text_offset") or []
    values = lp.get("token_logprobs") or []
    if not offsets or len(values) < len(offsets) or offsets[0] != 0:
        raise ValueError("no prompt logprobs in the response")
    if prompt_len > 0 and not any(o < prompt_len for o in offsets):
        raise ValueError("the response's logprobs do not cover the prompt")
    total = 0.0
    for k, (start, value) in enumerate(zip(offsets, values)):
        if start >= full_len:
            break
        end = offsets[k + 1] if k + 1 < len(offsets) else full_len
        if end <= prompt_len:
            continue  # wholly inside the prompt
        if value is None:
            if k == 0:
                continue  # the first token has no context, hence no logprob
            raise ValueError(f"no logprob for echoed token {k}")
        total += float(value)
    return total


@dataclass(frozen=True)
class Payload:
    """One generation request: the endpoint under the base URL, its JSON body, and whether it is
    a chat completion (what the streamed chunks look like)."""

    path: str  # "completions" or "chat/completions"
    body: dict[str, Any]
    chat: bool


def build_payload(model: str, prompt: Prompt, cfg: GenConfig, sample: int, *, chat: bool,
                  extra_body: dict[str, Any] | None = None) -> Payload:
    """The streamed request for sample `sample` of `prompt`: a chat completion when `chat` or
    the prompt is messages, else a text completion. `tourney serve` relays exactly this request
    for a live teacher, so the two never drift apart."""
    chat = chat or not isinstance(prompt, str)
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": cfg.max_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        **(extra_body or {}),
    }
    if cfg.stop:
        body["stop"] = list(cfg.stop)
    if cfg.seed is not None:
        body["seed"] = cfg.seed + sample  # distinct samples, still reproducible
    if not chat:
        body["prompt"] = prompt
        if cfg.logprobs is not None:
            body["logprobs"] = cfg.logprobs
        return Payload("completions", body, False)
    body["messages"] = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if cfg.logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = cfg.logprobs
    return Payload("chat/completions", body, True)


@dataclass(frozen=True)
class StreamRequest:
    """A generation request as another client (tourney serve's relay) sends it: full URL, body,
    headers (the API key included: never log them) and the backend's per-request timeout."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    chat: bool
    timeout_s: float


class Retryable(Exception):
    """A transient fault (connection, timeout, 429, 5xx, a garbled chunk): the request is sent again."""

    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class Fatal(Exception):
    """A fault retrying cannot fix (4xx), or the retries ran out."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass
class StreamedResponse:
    """What one streamed response has delivered so far."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    got_logprobs: bool = False
    finish_reason: str | None = None
    ttft_s: float | None = None
    text_chunks: int = 0
    usage: dict[str, Any] | None = None
    done: bool = False

    def absorb(self, chunk: dict[str, Any], chat: bool, elapsed: float) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices:
            return  # the trailing usage-only chunk
        choice = choices[0]
        if chat:
            delta = choice.get("delta") or {}
            piece = delta.get("content") or ""
            # vLLM/SGLang reasoning parsers split a thinking model's chain of thought out of
            # `content`; it is still generated text, and distillation needs it.
            thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
        else:
            piece, thought = choice.get("text") or "", ""
        if piece or thought:
            self.text_chunks += 1
            if self.ttft_s is None:
                self.ttft_s = elapsed
        self.content.append(piece)
        self.reasoning.append(thought)
        lp = choice.get("logprobs")
        if lp:
            self._absorb_logprobs(lp, chat)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _absorb_logprobs(self, lp: dict[str, Any], chat: bool) -> None:
        if chat:  # {"content": [{token, logprob, top_logprobs: [{token, logprob}]}]}
            for item in lp.get("content") or []:
                self.token_logprobs.append(float(item["logprob"]))
                tops = item.get("top_logprobs") or []
                self.top_logprobs.append({t["token"]: float(t["logprob"]) for t in tops})
                self.got_logprobs = True
        else:  # {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{tok: lp}, ...]}
            values = lp.get("token_logprobs") or []
            tops = lp.get("top_logprobs") or [None] * len(values)
            for value, top in zip(values, tops):
                self.token_logprobs.append(float(value))
                self.top_logprobs.append({k: float(v) for k, v in (top or {}).items()})
                self.got_logprobs = True

    def generation(self, latency_s: float) -> Generation:
        content, reasoning = "".join(self.content), "".join(self.reasoning)
        text, replaced = clean_text(f"<think>{reasoning}</think>{content}" if reasoning else content)
        if replaced:
            log.warning("replaced %d lone surrogate(s) in a streamed output with U+FFFD", replaced)
        usage = self.usage or {}
        return Generation(
            text=text,
            replaced_surrogates=replaced,
            token_logprobs=self.token_logprobs if self.got_logprobs else None,
            top_logprobs=self.top_logprobs if any(self.top_logprobs) else None,
            finish_reason=self.finish_reason,
            latency_s=latency_s,
            ttft_s=self.ttft_s,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            # without usage, one streamed chunk is about one token on the servers we target
            completion_tokens=int(usage.get("completion_tokens") or self.text_chunks),
        )
