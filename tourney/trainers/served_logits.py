"""Teacher top-k logits from an OpenAI-compatible server into the offline store (offline_logits).

A 235B teacher lives behind `vllm serve` (tensor parallel 8), not in the trainer's process. vLLM's
completions endpoint scores a prompt's own tokens: one request per training example,

    POST {base_url}/completions
    {"model": M, "prompt": [token ids], "max_tokens": 1, "temperature": 0,
     "prompt_logprobs": k, "return_token_ids": true}

answers choices[0].prompt_logprobs, one entry per prompt token: null for the first, then
{"<token id>": {"logprob": float, "rank": int, "decoded_token": str}, ...} with the k most likely
tokens at that position plus the prompt's own token when it is not among them (vLLM writes -inf as
-9999.0). Entry i is the distribution of token i given the tokens before it, i.e. of the logits at
position i - 1: the store's row for position t is entry t + 1, sorted best first and cut to k.
vLLM's logprobs are raw (T = 1, before any sampling settings), like compute_topk's. The server must
allow k: `vllm serve ... --max-logprobs K` (its default is 20).

The prompt goes as token ids made by the student's tokenizer, so the teacher scores exactly the
tokens the student trains on; the store records that tokenizer's hash (and refuses another), and
before the first request the server's own tokenizer is checked against it on a probe text through
vLLM's /tokenize. Requests run `concurrency` at a time over one httpx client; results are written
in example order as whole shards, so a killed run resumes after its last shard and ends with the
same rows as an uninterrupted one. Every response is validated (shape, ids inside the vocabulary,
finite log-probabilities, the prompt echoed back) before anything is stored.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import httpx
import torch
from pydantic import Field

from tourney.errors import BackendError, ConfigError
from tourney.schema import Lenient, parse
from tourney.trainers.offline_logits import TopKExample, TopKStore

log = logging.getLogger(__name__)
PROBE = "Question: Ava has 12 coins. She finds 3 more.\nAnswer: 12 + 3 = 15\n#### 15"
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class ServedTeacherConfig:
    """Where the teacher is served and how hard to press it."""

    model: str  # served model name (vllm serve --served-model-name, or the model path)
    base_url: str  # http(s)://HOST:PORT/v1
    k: int  # top-k per position, 1 <= k <= the server's --max-logprobs
    concurrency: int = 8  # requests in flight, >= 1 (a continuously batching server wants several)
    timeout_s: float = 600.0  # per request, > 0 (an 8k-token prompt with k = 64 is a 30 MB answer)
    max_retries: int = 4  # per request, on connection errors, timeouts, 429 and 5xx; >= 0
    backoff_s: float = 1.0  # first retry delay, doubled each time, > 0
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key, if the server wants one

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"top-k must be >= 1, got {self.k}")
        if self.concurrency < 1:
            raise ConfigError(f"teacher concurrency must be >= 1, got {self.concurrency}")
        if not self.timeout_s > 0 or not self.backoff_s > 0 or self.max_retries < 0:
            raise ConfigError("timeout_s and backoff_s must be > 0 and max_retries >= 0")

    @classmethod
    def from_spec(cls, spec: str, k: int, **kw: Any) -> ServedTeacherConfig:
        """`openai:MODEL@http://HOST:PORT/v1`, the project's spec for a served model."""
        from tourney.models.openai_backend import parse_target
        from tourney.models.registry import parse_spec

        parsed = parse_spec(spec)
        if parsed.kind != "openai":
            raise ConfigError(f"a served teacher is given as openai:MODEL@URL, got {spec!r}")
        model, url = parse_target(parsed)
        return cls(model=model, base_url=url, k=k, **kw)

    @property
    def root_url(self) -> str:
        return self.base_url.rstrip("/").removesuffix("/v1")


def is_served(spec: str | None) -> bool:
    return bool(spec) and str(spec).strip().startswith("openai:")


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 of the id -> token map (added tokens included): what token-level KD depends on."""
    h = hashlib.sha256()
    for token, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        h.update(f"{i}\x1f{token}\x1e".encode("utf-8", "surrogatepass"))
    h.update(f"len={len(tokenizer)}".encode())
    return h.hexdigest()[:16]


def answer_positions(example: tuple[Sequence[int], int]) -> range:
    """Positions t whose next token is an answer token (losses.shift_labels of make_batch's labels)."""
    ids, start = example
    return range(max(start - 1, 0), len(ids) - 1)


# -- responses ----------------------------------------------------------------------------------

class _Logprob(Lenient):
    logprob: float = Field(le=1e-3)  # a log-probability; vLLM's -inf arrives as -9999.0
    rank: int | None = None
    decoded_token: str | None = None


class _Choice(Lenient):
    prompt_logprobs: list[dict[int, _Logprob] | None] | None = None
    prompt_token_ids: list[int] | None = None


class _Completion(Lenient):
    choices: list[_Choice] = Field(min_length=1)


def parse_prompt_logprobs(body: Any, example: tuple[Sequence[int], int], k: int, vocab_size: int,
                          where: str) -> TopKExample:
    """One completion response -> the store's rows for the example's answer positions."""
    ids = list(example[0])
    choice = parse(_Completion, body, where, error=BackendError).choices[0]
    plp = choice.prompt_logprobs
    if plp is None:
        raise BackendError(f"{where}: no prompt_logprobs in the response; the server must accept vLLM's "
                           "prompt_logprobs (llama.cpp's server, for one, does not)")
    if len(plp) != len(ids):
        raise BackendError(f"{where}: prompt_logprobs has {len(plp)} entries for a {len(ids)}-token prompt")
    if choice.prompt_token_ids is not None and list(choice.prompt_token_ids) != ids:
        raise BackendError(f"{where}: the server scored other tokens than it was sent (prompt_token_ids differ)")
    positions = list(answer_positions(example))
    out_ids = torch.empty(len(positions), k, dtype=torch.int32)
    out_lp = torch.empty(len(positions), k, dtype=torch.float32)
    for row, t in enumerate(positions):
        entry = plp[t + 1]
        if entry is None or len(entry) < k:
            raise BackendError(f"{where}: position {t + 1} has {0 if entry is None else len(entry)} logprobs, "
                               f"fewer than k={k} (is the server's --max-logprobs below k?)")
        if ids[t + 1] not in entry:  # vLLM always lists the prompt's own token
            raise BackendError(f"{where}: position {t + 1} lacks the prompt's own token {ids[t + 1]}; "
                               "not vLLM's prompt_logprobs shape")
        best = sorted(entry.items(), key=lambda kv: -kv[1].logprob)[:k]
        bad = [i for i, _ in best if not 0 <= i < vocab_size]
        if bad:
            raise BackendError(f"{where}: token id {bad[0]} at position {t + 1} is outside the student's "
                               f"vocabulary of {vocab_size}; teacher and student tokenizers differ")
        out_ids[row] = torch.tensor([i for i, _ in best], dtype=torch.int32)
        out_lp[row] = torch.tensor([lp.logprob for _, lp in best], dtype=torch.float32)
    return TopKExample(out_ids, out_lp.to(torch.float16), torch.tensor(positions, dtype=torch.int32))


# -- client -------------------------------------------------------------------------------------

class _Client:
    """POST with bounded retries; fatal answers (4xx) are raised at once with the server's words."""

    def __init__(self, cfg: ServedTeacherConfig) -> None:
        self.cfg = cfg
        headers = {}
        key = os.environ.get(cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        self.http = httpx.Client(timeout=cfg.timeout_s, headers=headers, limits=limits)

    def post(self, url: str, body: dict, where: str) -> Any:
        from tourney.models.openai_backend import retry_delay

        reason = ""
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = None
            try:
                r = self.http.post(url, json=body)
                if r.status_code == 200:
                    try:
                        return r.json()
                    except ValueError:
                        reason = "answer is not JSON"
                elif r.status_code in RETRY_STATUS:
                    reason, retry_after = f"HTTP {r.status_code}", r.headers.get("retry-after")
                else:
                    raise BackendError(f"{where}: {url} answered HTTP {r.status_code}: {r.text[:300]}")
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self.cfg.max_retries:
                time.sleep(retry_delay(attempt, retry_after, self.cfg.backoff_s))
        raise BackendError(f"{where}: {url} failed after {self.cfg.max_retries + 1} attempts ({reason})")

    def close(self) -> None:
        self.http.close()


def check_server_tokenizer(cfg: ServedTeacherConfig, tokenizer: Any, client: _Client | None = None) -> str:
    """Compare the server's tokenization of a probe text with ours (vLLM's POST /tokenize).
    Returns "match" or "unavailable" (no such endpoint); raises ConfigError on a mismatch."""
    own = client or _Client(cfg)
    try:
        r = own.http.post(f"{cfg.root_url}/tokenize", json={"model": cfg.model, "prompt": PROBE,
                                                            "add_special_tokens": False})
    except httpx.HTTPError as exc:
        raise BackendError(f"teacher server {cfg.base_url} cannot be reached: {exc}") from None
    finally:
        if client is None:
            own.close()
    if r.status_code in (404, 405):
        return "unavailable"
    tokens = r.json().get("tokens") if r.status_code == 200 else None
    ours = tokenizer(PROBE, add_special_tokens=False).input_ids
    if tokens != ours:
        raise ConfigError(f"teacher server {cfg.base_url} tokenizes differently from the student "
                          f"({str(tokens)[:60]} vs {str(ours)[:60]}); token-level KD needs one tokenizer")
    return "match"


def fill_store_from_server(
    store: TopKStore,
    examples: Sequence[tuple[Sequence[int], int]],
    cfg: ServedTeacherConfig,
    *,
    chunk_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Append the rows of every example the store lacks, asking the server; returns how many were
    written now. Examples are (token ids, index of the first answer token), in dataset order."""
    if cfg.k != store.k:
        raise ConfigError(f"the store keeps top-{store.k} but top-{cfg.k} was asked of the server")
    done = store.num_examples
    if done > len(examples):
        raise ConfigError(f"top-k store {store.folder} holds {done} examples, more than the {len(examples)} given")
    client = _Client(cfg)
    url = f"{cfg.base_url.rstrip('/')}/completions"

    def fetch(i: int) -> TopKExample:
        ids = [int(x) for x in examples[i][0]]
        body = {"model": cfg.model, "prompt": ids, "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": cfg.k, "return_token_ids": True}
        where = f"teacher {cfg.model} at {cfg.base_url}, example {i}"
        return parse_prompt_logprobs(client.post(url, body, where), examples[i], cfg.k, store.vocab_size, where)

    window = 4 * cfg.concurrency  # results held at most: bounded memory when one request is slow
    futures: dict[int, Future] = {}
    pending: list[TopKExample] = []
    written, next_submit, next_write = 0, done, done
    try:
        with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="teacher") as pool:
            try:
                while next_write < len(examples):
                    while next_submit < len(examples) and next_submit - next_write < window:
                        futures[next_submit] = pool.submit(fetch, next_submit)
                        next_submit += 1
                    pending.append(futures.pop(next_write).result())  # the others keep running meanwhile
                    next_write += 1
                    if len(pending) >= chunk_size:
                        store.append(pending)
                        written, pending = written + len(pending), []
                        if progress:
                            progress(next_write, len(examples))
            finally:
                for f in futures.values():
                    f.cancel()
            store.append(pending)  # also after an error: the rows before it are complete and in order
            written += len(pending)
            pending = []
    finally:
        if pending:
            store.append(pending)
        client.close()
    if progress:
        progress(len(examples), len(examples))
    return written
