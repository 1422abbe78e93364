"""A backend for any OpenAI-compatible server: `vllm serve`, llama.cpp's server, SGLang, OpenAI.

Every request streams, so time to first token is measured per request. `cfg.n` samples are `n`
requests, because many servers refuse n>1 together with streaming. A request that still fails
after bounded retries becomes a Generation with `error` set, so one bad request never loses a
batch. The API key lives only in the client's headers: every text that leaves this module goes
through `_redact`, because servers have been known to echo request headers in error bodies.
The wire format (targets, retry schedule, stream parsing, echo logprobs) is models.openai_protocol.

In flight. A server that batches continuously (vLLM, SGLang) answers more per second the more
requests it holds, so `generate_each` keeps exactly `concurrency` requests in flight from the
first to the last: that many workers take the (prompt, sample) requests in order, each starting
the next the moment its own ends, with no barrier between groups of prompts. The requests run
on one asyncio event loop (aiohttp) in a thread the backend owns; the blocking methods of the
contract (`generate`, `check`, `score_choices`, and `tourney submit`'s per-question calls from
its worker threads) hand their coroutines to that loop and wait. Why aiohttp on one loop: against
the stub server of benchmarks/eval_throughput.py on a loaded 2-core machine, 500 streamed requests
128 at a time took 2.7-3.9x the span of a perfect client (each request started the instant a slot
freed) with a pool of 128 threads on httpx, 1.5-1.6x with one aiohttp loop (httpx's own async
client was slower than the threads even at 32). `on_done` runs on the loop and returns at once;
the future it may hand back (the run loop settles it once the answer is on disk) is awaited there,
so the worker keeps its slot without a thread parked per slot to wait (RESULTS.md, the eval
throughput section, has what the helper threads this replaced cost).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Annotated, Any, Awaitable, Callable, Coroutine, Optional, Sequence, TypeVar

import aiohttp
from pydantic import Field

from tourney.models.openai_protocol import (  # noqa: F401 -- parse_target, retry_delay: part of this module's API
    CHECK_TIMEOUT_S, Fatal, Retryable, StreamedResponse, StreamRequest, build_payload, parse_target, retry_delay,
    sum_choice_logprobs,
)
from tourney.models.options import AtLeastOne, checked_options
from tourney.models.types import Backend, BackendError, Capabilities, GenConfig, Generation, ModelSpec, OnDone, Prompt

log = logging.getLogger(__name__)

T = TypeVar("T")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "Timeout: no complete response in time"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


class OpenAIBackend(Backend):
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
        api_key_env: Optional[str] = "OPENAI_API_KEY",
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
        self._api_key = (os.environ.get(api_key_env) or None) if api_key_env else None  # None: send no key
        self._headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._score_max_tokens = 0  # becomes 1 once the server rejects max_tokens=0
        self.capabilities = Capabilities(server=True, concurrency=concurrency, batch_size=None, choice_scoring=True)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # started on first use (module doc)
        self._session: aiohttp.ClientSession | None = None  # lives on that loop
        self._in_flight = 0  # changed on the loop only

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, chat={self.chat})"

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    # -- the loop -----------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the backend's loop and wait for it, from any thread but the loop's."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="tourney-openai", daemon=True).start()
                self._loop = loop
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # on the loop: aiohttp binds a session to the loop that made it
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self.concurrency, force_close=False),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(self.timeout_s, 10.0),
                                              sock_read=self.timeout_s),
            )
        return self._session

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    # -- public API -------------------------------------------------------------------------
    def check(self) -> None:
        """Raise BackendError unless the server answers GET /models."""
        try:
            status = self._run(self._get_status("models"))
        except (aiohttp.ClientError, OSError) as exc:
            # only our own words: an aiohttp error can carry the request, headers and key included
            raise BackendError(f"cannot reach OpenAI-compatible server at {self.base_url}: "
                               f"{self._redact(_describe(exc))}") from None
        if status >= 400:
            raise BackendError(
                f"cannot reach OpenAI-compatible server at {self.base_url}: GET /models gave HTTP {status}")

    def open_connections(self, n: int) -> int:
        """Open up to n of the pool's connections now (n GET /models at once), so that a timed run
        whose first n requests leave together does not connect them while their deadlines run.
        Best effort: returns how many answered; a failure here is met again by the timed call."""
        async def one() -> bool:
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    async with self._client().get(self._url("models")) as resp:
                        await resp.read()
                        return resp.status < 400
            except (aiohttp.ClientError, OSError, TimeoutError):
                return False

        async def every() -> list[bool]:
            return await asyncio.gather(*(one() for _ in range(max(0, min(n, self.concurrency)))))

        return sum(self._run(every()))

    def generate(self, prompts: Sequence[Prompt], cfg: GenConfig) -> list[list[Generation]]:
        self._check_prompts(prompts)
        return self._run(self._each(prompts, cfg, None)) if prompts else []

    def generate_each(self, prompts: Sequence[Prompt], cfg: GenConfig, on_done: OnDone) -> None:
        """Every (prompt, sample) request through `concurrency` workers (module doc); `on_done`
        runs as a prompt's last sample arrives, and its worker waits for it before the next request."""
        self._check_prompts(prompts)
        if prompts:
            self._run(self._each(prompts, cfg, on_done))

    @staticmethod
    def _check_prompts(prompts: Sequence[Prompt]) -> None:
        for k, prompt in enumerate(prompts):
            if not isinstance(prompt, str) and not (
                isinstance(prompt, Sequence) and all(isinstance(m, dict) for m in prompt)
            ):
                raise BackendError(f"prompt {k} is neither text nor a list of chat messages")

    def requests_in_flight(self) -> int:
        return self._in_flight

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]) -> list[list[float]]:
        if len(prompts) != len(choices):
            raise BackendError(f"score_choices got {len(prompts)} prompts but {len(choices)} choice lists")
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise BackendError("openai backend scores text prompts only: chat endpoints cannot echo the prompt")
        jobs = [(str(p), c) for p, cs in zip(prompts, choices) for c in cs]
        flat = iter(self._run(self._map([lambda j=j: self._score_one(*j) for j in jobs])))
        return [[next(flat) for _ in cs] for cs in choices]

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return

        async def shut() -> None:
            if self._session is not None:
                await self._session.close()
                self._session = None

        try:
            asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=5)
        except Exception:  # noqa: BLE001 -- closing must not fail a run that has finished
            pass
        loop.call_soon_threadsafe(loop.stop)

    # -- requests ---------------------------------------------------------------------------
    async def _each(self, prompts: Sequence[Prompt], cfg: GenConfig,
                    on_done: OnDone | None) -> list[list[Generation]]:
        """Every prompt's samples, in order; `on_done` (if any) as each prompt completes."""
        jobs = [(i, j) for i in range(len(prompts)) for j in range(cfg.n)]
        samples: list[list[Generation | None]] = [[None] * cfg.n for _ in prompts]
        left = [cfg.n] * len(prompts)
        n_workers = min(self.concurrency, len(jobs))
        next_job = iter(jobs)

        async def worker() -> None:
            for i, j in next_job:  # shared iterator: each job taken once, in order
                samples[i][j] = await self._sample(prompts[i], cfg, j)
                left[i] -= 1
                if left[i] == 0 and on_done is not None:
                    waiting = on_done(i, [g for g in samples[i] if g is not None])
                    if waiting is not None:  # the slot stays taken until the caller settles it
                        await _settled(waiting)

        tasks = [asyncio.ensure_future(worker()) for _ in range(n_workers)]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((t for t in done if t.exception() is not None), None)
        if failed is not None:  # a callback failed: stop, sending nothing more
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise failed.exception()  # type: ignore[misc]
        return [[g for g in gens if g is not None] for gens in samples]

    async def _map(self, makers: list[Callable[[], Awaitable[T]]]) -> list[T]:
        """Run the coroutines `makers` make with at most `concurrency` at once; results in order."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(make: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await make()

        return list(await asyncio.gather(*(one(m) for m in makers)))

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        tries = 0
        while True:
            try:
                return await attempt()
            except (aiohttp.ClientError, OSError) as exc:  # refused/reset connections, timeouts
                err = Retryable(self._redact(_describe(exc)))
            except Retryable as exc:
                err = exc
            if tries >= self.max_retries:
                raise Fatal(f"{err.reason} (after {tries + 1} attempts)")
            delay = retry_delay(tries, err.retry_after, self.backoff_s)
            log.warning("%s at %s failed (%s); retry %d/%d in %.2fs",
                        what, self.base_url, err.reason, tries + 1, self.max_retries, delay)
            await asyncio.sleep(delay)
            tries += 1

    async def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status < 400:
            return
        body = (await resp.read()).decode("utf-8", errors="replace")
        snippet = self._redact(" ".join(body.split())[:200])
        reason = f"HTTP {resp.status}" + (f": {snippet}" if snippet else "")
        if resp.status == 429 or resp.status >= 500:
            raise Retryable(reason, resp.headers.get("retry-after"))
        raise Fatal(reason, resp.status)

    async def _get_status(self, path: str) -> int:
        # A connection of its own: the requests' pool holds `concurrency` connections, and when
        # all are taken by slow answers a check waiting for one timed out and called a working
        # server unreachable (tourney serve then sent no request to it until the next check).
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            async with aiohttp.ClientSession(headers=self._headers) as session:
                async with session.get(self._url(path)) as resp:
                    return resp.status

    def stream_request(self, prompt: Prompt, cfg: GenConfig, sample: int = 0) -> StreamRequest:
        """The request `generate` sends for this sample, for a client that streams it itself
        (tourney serve relays a teacher's answer as it is generated); parse what comes back
        with openai_protocol.StreamedResponse, as this backend does."""
        p = build_payload(self.model, prompt, cfg, sample, chat=self.chat, extra_body=self.extra_body)
        return StreamRequest(url=self._url(p.path), body=p.body, headers=dict(self._headers), chat=p.chat,
                             timeout_s=self.timeout_s)

    async def _sample(self, prompt: Prompt, cfg: GenConfig, sample: int) -> Generation:
        p = build_payload(self.model, prompt, cfg, sample, chat=self.chat, extra_body=self.extra_body)
        path, body, chat = p.path, p.body, p.chat
        self._in_flight += 1
        # Times are measured from the first attempt: what the caller waited, retries included.
        t0 = time.perf_counter()
        try:
            stream = await self._with_retries(lambda: self._stream_once(path, body, chat, t0), f"POST /{path}")
        except Fatal as exc:
            return Generation(text="", finish_reason="error", latency_s=time.perf_counter() - t0, error=exc.reason)
        finally:
            self._in_flight -= 1
        return stream.generation(latency_s=time.perf_counter() - t0)

    async def _stream_once(self, path: str, body: dict[str, Any], chat: bool, t0: float) -> StreamedResponse:
        stream = StreamedResponse()
        async with asyncio.timeout(self.timeout_s):  # the whole attempt; sock_read bounds each read
            async with self._client().post(self._url(path), json=body) as resp:
                await self._raise_for_status(resp)
                pending = b""
                async for chunk in resp.content.iter_any():  # lines of any length, split here
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if self._absorb(line, stream, chat, t0):
                            return stream
        if pending.strip():
            self._absorb(pending, stream, chat, t0)
        if not stream.done and stream.finish_reason is None:
            raise Retryable("stream ended before the response was complete")
        return stream

    def _absorb(self, raw: bytes, stream: StreamedResponse, chat: bool, t0: float) -> bool:
        """One SSE line into `stream`; True at `data: [DONE]`."""
        if not raw.startswith(b"data:"):
            return False  # blank separators, SSE comments and keep-alives
        data = raw[5:].strip()
        if data == b"[DONE]":
            stream.done = True
            return True
        try:
            chunk = json.loads(data)
            if isinstance(chunk, dict) and "error" in chunk:
                raise Fatal(self._redact(f"server error in stream: {json.dumps(chunk['error'])[:200]}"))
            stream.absorb(chunk, chat, time.perf_counter() - t0)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # A chunk cut or garbled on the way (a proxy, a restarting server) is a transient
            # fault like a reset connection: the whole request is sent again.
            shown = self._redact(data[:120].decode("utf-8", errors="replace"))
            raise Retryable(f"malformed stream chunk ({type(exc).__name__}): {shown}") from None
        return False

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with asyncio.timeout(self.timeout_s):
            async with self._client().post(self._url(path), json=body) as resp:
                await self._raise_for_status(resp)
                try:
                    return json.loads(await resp.read())
                except ValueError:
                    raise Fatal(f"non-JSON response from {path}") from None

    async def _score_one(self, prompt: str, choice: str) -> float:
        full = prompt + choice
        body: dict[str, Any] = {
            "model": self.model, "prompt": full, "echo": True, "logprobs": 1,
            "max_tokens": self._score_max_tokens, "temperature": 0.0,
        }
        try:
            data = await self._with_retries(lambda: self._post_json("completions", body), "POST /completions")
        except Fatal as exc:
            if body["max_tokens"] == 0 and exc.status in (400, 422):
                # Some servers require at least one new token; the generated one is ignored.
                self._score_max_tokens = body["max_tokens"] = 1
                return await self._score_one(prompt, choice)
            raise BackendError(f"scoring a choice at {self.base_url} failed: {exc.reason}") from None
        try:
            choice0 = (data.get("choices") or [{}])[0]
            return sum_choice_logprobs(choice0.get("logprobs"), len(prompt), len(full))
        except (ValueError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"server at {self.base_url} did not return prompt logprobs for echo=true ({exc}); "
                "it cannot score choices"
            ) from None


async def _settled(waiting: Future) -> None:
    """Wait until the caller settles `waiting`, raising its exception. Unlike
    `asyncio.wrap_future`, cancelling this wait (a sibling worker failed and `_each` cancels the
    rest) leaves the caller's future alone: it belongs to the caller, who settles it exactly once
    (models.types.settle_once). wrap_future cancelled it from here, and a caller stopping at that
    moment met InvalidStateError instead of its own error."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake(_: Future) -> None:
        def set_woken() -> None:
            if not woken.done():
                woken.set_result(None)
        try:
            loop.call_soon_threadsafe(set_woken)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass

    waiting.add_done_callback(wake)
    await woken
    waiting.result()  # its exception, if the caller failed it
