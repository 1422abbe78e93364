"""A backend for any OpenAI-compatible server: `vllm serve`, llama.cpp's server, SGLang, OpenAI.

Every request streams, so time to first token is measured per request. `cfg.n` samples are `n`
requests, because many servers refuse n>1 together with streaming. A request that still fails
after bounded retries becomes a Generation with `error` set, so one bad request never loses a
batch. The API key lives only in the client's headers: every text that leaves this module goes
through `_redact`, because servers have been known to echo request headers in error bodies.
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Optional, Sequence, TypeVar

import httpx
from pydantic import Field

from tourney.models.options import AtLeastOne, checked_options
from tourney.models.types import BackendError, GenConfig, Generation, ModelSpec, Prompt

log = logging.getLogger(__name__)

T = TypeVar("T")

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


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class _Fatal(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass
class _Stream:
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
        text = f"<think>{reasoning}</think>{content}" if reasoning else content
        usage = self.usage or {}
        return Generation(
            text=text,
            token_logprobs=self.token_logprobs if self.got_logprobs else None,
            top_logprobs=self.top_logprobs if any(self.top_logprobs) else None,
            finish_reason=self.finish_reason,
            latency_s=latency_s,
            ttft_s=self.ttft_s,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            # without usage, one streamed chunk is about one token on the servers we target
            completion_tokens=int(usage.get("completion_tokens") or self.text_chunks),
        )


class OpenAIBackend:
    """Spec `openai:MODEL@BASE_URL`. The constructor never touches the network; call `check`."""

    @checked_options
    def __init__(
        self,
        spec: ModelSpec,
        *,
        concurrency: AtLeastOne = 8,
        timeout_s: Annotated[float, Field(gt=0)] = 120.0,
        max_retries: Annotated[int, Field(ge=0)] = 4,
        backoff_s: Annotated[float, Field(ge=0)] = 0.5,
        api_key_env: str = "OPENAI_API_KEY",
        chat: bool = False,
        extra_body: Optional[dict[str, Any]] = None,  # merged into every request (e.g. {"repeat_penalty": 1.0})
    ) -> None:
        if concurrency < 1:
            raise BackendError(f"concurrency must be >= 1, got {concurrency}")
        if timeout_s <= 0:
            raise BackendError(f"timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0 or backoff_s < 0:
            raise BackendError("max_retries and backoff_s must be >= 0")
        self.spec = spec.raw
        self.model, self.base_url = parse_target(spec)
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.max_retries, self.backoff_s, self.chat = max_retries, backoff_s, chat
        # Server-specific fields sent with every generation request, as the OpenAI SDK's extra_body:
        # e.g. {"repeat_penalty": 1.0} makes llama.cpp's server decode greedily like everyone else.
        self.extra_body = dict(extra_body or {})
        self._api_key = os.environ.get(api_key_env) or None
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._score_max_tokens = 0  # becomes 1 once the server rejects max_tokens=0

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, chat={self.chat})"

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    # -- public API -------------------------------------------------------------------------

    def check(self) -> None:
        """Raise BackendError unless the server answers GET /models."""
        try:
            resp = self._client.get("models", timeout=CHECK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            reason = self._redact(f"{type(exc).__name__}: {exc}")
            # `from None`: the httpx exception carries the request, headers and key included
            raise BackendError(f"cannot reach OpenAI-compatible server at {self.base_url}: {reason}") from None
        if resp.status_code >= 400:
            raise BackendError(
                f"cannot reach OpenAI-compatible server at {self.base_url}: GET /models gave HTTP {resp.status_code}"
            )

    def generate(self, prompts: Sequence[Prompt], cfg: GenConfig) -> list[list[Generation]]:
        for k, prompt in enumerate(prompts):
            if not isinstance(prompt, str) and not (
                isinstance(prompt, Sequence) and all(isinstance(m, dict) for m in prompt)
            ):
                raise BackendError(f"prompt {k} is neither text nor a list of chat messages")
        jobs = [(i, j) for i in range(len(prompts)) for j in range(cfg.n)]
        flat = self._map(lambda job: self._sample(prompts[job[0]], cfg, job[1]), jobs)
        out: list[list[Generation]] = [[] for _ in prompts]
        for (i, _), gen in zip(jobs, flat):
            out[i].append(gen)
        return out

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]) -> list[list[float]]:
        if len(prompts) != len(choices):
            raise BackendError(f"score_choices got {len(prompts)} prompts but {len(choices)} choice lists")
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise BackendError("openai backend scores text prompts only: chat endpoints cannot echo the prompt")
        jobs = [(str(p), c) for p, cs in zip(prompts, choices) for c in cs]
        flat = iter(self._map(lambda job: self._score_one(*job), jobs))
        return [[next(flat) for _ in cs] for cs in choices]

    def close(self) -> None:
        self._client.close()

    # -- requests ---------------------------------------------------------------------------

    def _map(self, fn: Callable[[Any], T], jobs: list[Any]) -> list[T]:
        """Run `fn` over jobs with at most `concurrency` in flight; results in job order."""
        if not jobs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            return list(pool.map(fn, jobs))

    def _with_retries(self, fn: Callable[[], T], what: str) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except httpx.TransportError as exc:  # connection refused/reset, timeouts
                err = _Retryable(self._redact(f"{type(exc).__name__}: {exc}".rstrip(": ")))
            except _Retryable as exc:
                err = exc
            if attempt >= self.max_retries:
                raise _Fatal(f"{err.reason} (after {attempt + 1} attempts)")
            delay = retry_delay(attempt, err.retry_after, self.backoff_s)
            log.warning(
                "%s at %s failed (%s); retry %d/%d in %.2fs",
                what, self.base_url, err.reason, attempt + 1, self.max_retries, delay,
            )
            time.sleep(delay)
            attempt += 1

    def _raise_for_status(self, resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        resp.read()
        snippet = self._redact(" ".join(resp.text.split())[:200])
        reason = f"HTTP {resp.status_code}" + (f": {snippet}" if snippet else "")
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(reason, resp.headers.get("retry-after"))
        raise _Fatal(reason, resp.status_code)

    def _payload(self, prompt: Prompt, cfg: GenConfig, sample: int) -> tuple[str, dict[str, Any], bool]:
        chat = self.chat or not isinstance(prompt, str)
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            **self.extra_body,
        }
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.seed is not None:
            body["seed"] = cfg.seed + sample  # distinct samples, still reproducible
        if not chat:
            body["prompt"] = prompt
            if cfg.logprobs is not None:
                body["logprobs"] = cfg.logprobs
            return "completions", body, False
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
        body["messages"] = messages
        if cfg.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = cfg.logprobs
        return "chat/completions", body, True

    def _sample(self, prompt: Prompt, cfg: GenConfig, sample: int) -> Generation:
        path, body, chat = self._payload(prompt, cfg, sample)
        # Times are measured from the first attempt: what the caller waited, retries included.
        t0 = time.perf_counter()
        try:
            stream = self._with_retries(lambda: self._stream_once(path, body, chat, t0), f"POST /{path}")
        except _Fatal as exc:
            return Generation(text="", finish_reason="error", latency_s=time.perf_counter() - t0, error=exc.reason)
        return stream.generation(latency_s=time.perf_counter() - t0)

    def _stream_once(self, path: str, body: dict[str, Any], chat: bool, t0: float) -> _Stream:
        deadline = time.perf_counter() + self.timeout_s  # httpx only bounds each read
        stream = _Stream()
        with self._client.stream("POST", path, json=body) as resp:
            self._raise_for_status(resp)
            for line in resp.iter_lines():
                if time.perf_counter() > deadline:
                    raise _Retryable(f"request took longer than {self.timeout_s:g}s")
                if not line.startswith("data:"):
                    continue  # blank separators, SSE comments and keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    stream.done = True
                    break
                try:
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise _Fatal(self._redact(f"server error in stream: {json.dumps(chunk['error'])[:200]}"))
                    stream.absorb(chunk, chat, time.perf_counter() - t0)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise _Fatal(f"malformed stream chunk ({type(exc).__name__}): {self._redact(data[:120])}") from None
        if not stream.done and stream.finish_reason is None:
            raise _Retryable("stream ended before the response was complete")
        return stream

    def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self._client.post(path, json=body)
        self._raise_for_status(resp)
        try:
            return resp.json()
        except ValueError:
            raise _Fatal(f"non-JSON response from {path}") from None

    def _score_one(self, prompt: str, choice: str) -> float:
        full = prompt + choice
        body: dict[str, Any] = {
            "model": self.model, "prompt": full, "echo": True, "logprobs": 1,
            "max_tokens": self._score_max_tokens, "temperature": 0.0,
        }
        try:
            data = self._with_retries(lambda: self._post_json("completions", body), "POST /completions")
        except _Fatal as exc:
            if body["max_tokens"] == 0 and exc.status in (400, 422):
                # Some servers require at least one new token; the generated one is ignored.
                self._score_max_tokens = body["max_tokens"] = 1
                return self._score_one(prompt, choice)
            raise BackendError(f"scoring a choice at {self.base_url} failed: {exc.reason}") from None
        try:
            choice0 = (data.get("choices") or [{}])[0]
            return sum_choice_logprobs(choice0.get("logprobs"), len(prompt), len(full))
        except (ValueError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"server at {self.base_url} did not return prompt logprobs for echo=true ({exc}); "
                "it cannot score choices"
            ) from None
