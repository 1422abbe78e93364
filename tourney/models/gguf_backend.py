"""A backend running a GGUF file in-process with llama.cpp (llama-cpp-python): spec `gguf:PATH`.

Requests go through llama-cpp-python's own OpenAI-style `create_completion` /
`create_chat_completion`, streamed so that time to first token is measured, which keeps results
comparable with the same model behind llama.cpp's server and OpenAIBackend. Sampling is made
OpenAI-like (no top-k, no min-p, no repeat penalty unless asked), so temperature 0 is pure argmax.

Requests run one after another (llama-cpp-python's Llama is one sequence at a time), so each
Generation's latency_s is its own request's wall time, ttft_s its first streamed token, and
batch_latency_s stays None: no batch is shared.

llama.cpp keeps logits of every position only when the model is loaded with `logits_all=True`;
pass `logprobs=True` to the constructor for logprobs and `score_choices`.
"""
from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional, Sequence

import numpy as np
from pydantic import Field

from tourney.models.options import AtLeastOne, checked_options, unknown_passthrough
from tourney.models.types import Backend, BackendError, Capabilities, GenConfig, Generation, ModelSpec, Prompt

INSTALL_HINT = "pip install 'tourney[llamacpp]'"


class GGUFBackend(Backend):
    """llama.cpp in this process. Not thread-safe: requests run one after another."""

    @checked_options
    def __init__(
        self,
        spec: ModelSpec,
        *,
        n_ctx: AtLeastOne = 512,
        n_threads: Optional[AtLeastOne] = None,
        seed: int = 0,
        chat: bool = False,
        logprobs: bool = False,
        repeat_penalty: Annotated[float, Field(gt=0)] = 1.0,
        verbose: bool = False,
        **kwargs: Any,  # handed on to llama_cpp.Llama (n_gpu_layers, n_batch, ...), checked against it
    ) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendError(f"model spec {spec.raw!r} needs llama-cpp-python ({exc}); {INSTALL_HINT}") from None
        unknown_passthrough(kwargs, set(inspect.signature(llama_cpp.Llama.__init__).parameters) - {"self", "kwargs"},
                            spec.raw, "llama_cpp.Llama")
        if n_ctx < 1:
            raise BackendError(f"n_ctx must be >= 1, got {n_ctx}")
        if repeat_penalty <= 0:
            raise BackendError(f"repeat_penalty must be > 0, got {repeat_penalty}")
        path = Path(spec.target).expanduser()
        if not path.is_file():
            raise BackendError(f"model spec {spec.raw!r}: no GGUF file at {path}")
        self.spec, self.path, self.chat, self.seed = spec.raw, path, chat, seed
        # 1.0 is plain greedy/OpenAI semantics; llama-cpp-python's server defaults to 1.1, so a
        # caller comparing against that server passes 1.1 here.
        self.repeat_penalty = repeat_penalty
        self._lib = llama_cpp
        # llama-cpp-python evaluates prompts with n_threads_batch = every core unless told; on a
        # shared machine that thread barrier waits on busy cores (0.45 s vs 2 ms per prompt here).
        if n_threads is not None:
            kwargs.setdefault("n_threads_batch", n_threads)
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, seed=seed,
                logits_all=logprobs, verbose=verbose, **kwargs,
            )
        except (ValueError, RuntimeError) as exc:  # llama.cpp reports a bad file as ValueError
            raise BackendError(f"llama.cpp could not load {path} for spec {spec.raw!r}: {exc}") from None
        self._logits_all = logprobs
        # One prompt at a time (not thread-safe): each call is one question, so a run resumes per question.
        self.capabilities = Capabilities(batch_size=1, choice_scoring=logprobs)
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._add_bos = bool(self._llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true")
        # create_completion reports no usage when streaming, so count what it samples: it pulls
        # tokens from self._llm.generate, which we wrap on this instance only.
        self._sampled: list[int] = []
        self._prompt_len = 0
        inner = self._llm.generate

        def counting_generate(tokens: Sequence[int], *args: Any, **kw: Any) -> Iterator[int]:
            self._prompt_len, self._sampled = len(tokens), []
            for token in inner(tokens, *args, **kw):
                self._sampled.append(int(token))
                yield token

        self._llm.generate = counting_generate  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"GGUFBackend(path={str(self.path)!r}, chat={self.chat}, logprobs={self._logits_all})"

    # -- public API -------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], cfg: GenConfig) -> list[list[Generation]]:
        if cfg.logprobs is not None and not self._logits_all:
            raise BackendError(
                f"{self.spec}: logprobs need the model loaded with logits_all; "
                "construct the backend with logprobs=True"
            )
        for k, prompt in enumerate(prompts):
            if not isinstance(prompt, str) and not (
                isinstance(prompt, Sequence) and all(isinstance(m, dict) for m in prompt)
            ):
                raise BackendError(f"prompt {k} is neither text nor a list of chat messages")
        return [[self._sample(prompt, cfg, i) for i in range(cfg.n)] for prompt in prompts]

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]) -> list[list[float]]:
        if len(prompts) != len(choices):
            raise BackendError(f"score_choices got {len(prompts)} prompts but {len(choices)} choice lists")
        if not self._logits_all:
            raise BackendError(f"{self.spec}: score_choices needs logits_all; construct the backend with logprobs=True")
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise BackendError("gguf backend scores text prompts only")
        return [[self._score_one(str(p), c) for c in cs] for p, cs in zip(prompts, choices)]

    def close(self) -> None:
        # Explicit, because llama-cpp-python's __del__ fails noisily at interpreter shutdown.
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()

    # -- generation -------------------------------------------------------------------------

    def _sample(self, prompt: Prompt, cfg: GenConfig, sample: int) -> Generation:
        llm = self._require_open()
        chat = self.chat or not isinstance(prompt, str)
        opts: dict[str, Any] = dict(
            max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
            top_k=0, min_p=0.0, repeat_penalty=self.repeat_penalty, stop=list(cfg.stop),
            seed=None if cfg.seed is None else cfg.seed + sample, stream=True,
        )
        t0 = time.perf_counter()
        self._sampled, self._prompt_len = [], 0
        try:
            if chat:
                messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
                if cfg.logprobs is not None:
                    opts.update(logprobs=True, top_logprobs=cfg.logprobs)
                chunks = llm.create_chat_completion(messages=messages, **opts)
            else:
                chunks = llm.create_completion(prompt, logprobs=cfg.logprobs, **opts)
            stream = _Stream(chat, cfg.logprobs)
            for chunk in chunks:  # type: ignore[union-attr]
                stream.absorb(chunk, time.perf_counter() - t0)
        except (ValueError, RuntimeError) as exc:  # e.g. the prompt does not fit n_ctx
            return Generation(text="", finish_reason="error", latency_s=time.perf_counter() - t0,
                              error=f"{type(exc).__name__}: {exc}")
        # llama-cpp-python stops on an end-of-generation token without counting it as output.
        completion = [t for t in self._sampled if not self._lib.llama_vocab_is_eog(self._vocab, t)]
        return stream.generation(time.perf_counter() - t0, self._prompt_len, len(completion))

    # -- scoring ----------------------------------------------------------------------------

    def _score_one(self, prompt: str, choice: str) -> float:
        """Summed logprob of the tokens covering `choice` in tokenize(prompt + choice).

        Tokenizing the joint text is what the model sees; a token straddling the boundary counts
        toward the choice (as in OpenAIBackend), so every byte of the choice is scored.
        """
        llm = self._require_open()
        ids = llm.tokenize((prompt + choice).encode("utf-8"), add_bos=self._add_bos, special=True)
        if len(ids) > llm.n_ctx():
            raise BackendError(f"{self.spec}: prompt+choice is {len(ids)} tokens, over n_ctx={llm.n_ctx()}")
        prompt_bytes, end, first = len(prompt.encode("utf-8")), 0, len(ids)
        for k, token in enumerate(ids):
            end += len(llm.detokenize([token]))  # control tokens (BOS) detokenize to b""
            if end > prompt_bytes:
                first = k
                break
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        total = 0.0
        for k in range(max(first, 1), len(ids)):  # position 0 has no context to predict it from
            row = logits[k - 1]
            top = row.max()
            total += float(row[ids[k]] - top - math.log(np.exp(row - top).sum()))
        return total

    def _require_open(self) -> Any:
        if self._llm is None:
            raise BackendError(f"{self.spec}: backend is closed")
        return self._llm


class _Stream:
    """Accumulates one streamed response (completion or chat chunks) into a Generation."""

    def __init__(self, chat: bool, logprobs: int | None) -> None:
        self.chat, self.k = chat, logprobs
        self.text: list[str] = []
        self.token_logprobs: list[float] = []
        self.top_logprobs: list[dict[str, float]] = []
        self.finish_reason: str | None = None
        self.ttft_s: float | None = None

    def absorb(self, chunk: dict[str, Any], elapsed: float) -> None:
        choice = (chunk.get("choices") or [{}])[0]
        piece = ((choice.get("delta") or {}).get("content") if self.chat else choice.get("text")) or ""
        if piece and self.ttft_s is None:
            self.ttft_s = elapsed
        self.text.append(piece)
        lp = choice.get("logprobs")
        if lp and self.chat:  # {"content": [{token, logprob, top_logprobs: [{token, logprob}]}]}
            for item in lp.get("content") or []:
                self._add(float(item["logprob"]), {t["token"]: t["logprob"] for t in item.get("top_logprobs") or []})
        elif lp:  # {"token_logprobs": [...], "top_logprobs": [{token: logprob}]}
            tops = lp.get("top_logprobs") or [None] * len(lp.get("token_logprobs") or [])
            for value, top in zip(lp.get("token_logprobs") or [], tops):
                self._add(float(value), top or {})
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _add(self, value: float, top: dict[str, float]) -> None:
        self.token_logprobs.append(value)
        # llama-cpp-python adds the chosen token to the top-k dict; keep exactly the k best.
        best = sorted(top.items(), key=lambda kv: -kv[1])[: self.k or 0]
        self.top_logprobs.append({t: float(v) for t, v in best})

    def generation(self, latency_s: float, prompt_tokens: int, completion_tokens: int) -> Generation:
        want = self.k is not None
        return Generation(
            text="".join(self.text),
            token_logprobs=self.token_logprobs if want else None,
            top_logprobs=self.top_logprobs if want and self.k else None,
            finish_reason=self.finish_reason,
            latency_s=latency_s,
            ttft_s=self.ttft_s,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
