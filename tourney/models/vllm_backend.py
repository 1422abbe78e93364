"""In-process vLLM on a GPU: `vllm:MODEL_ID_OR_PATH`. Install with `pip install 'tourney[vllm]'`.

vLLM is imported inside the constructor, so importing this module (and a CPU install) never
pulls it in. vLLM batches the whole list internally, continuously: each request's latency_s and
ttft_s come from its RequestOutput.metrics (vLLM V0's RequestMetrics or V1's RequestStateStats,
which V1 fills only with stats logging on, so the engine is built with disable_log_stats=False
unless the caller says otherwise), and the call's wall time is kept as batch_latency_s. Where an
installed version reports no metrics, latency_s falls back to that wall time.
"""
from __future__ import annotations

import time
from typing import Annotated, Any, Literal, Optional, Sequence

from pydantic import Field

from tourney.models.options import AtLeastOne, checked_options, unknown_passthrough
from tourney.models.types import Backend, BackendError, Capabilities, GenConfig, Generation, ModelSpec, Prompt


class VLLMBackend(Backend):
    @checked_options
    def __init__(
        self,
        spec: ModelSpec,
        *,
        tensor_parallel_size: AtLeastOne = 1,
        dtype: Literal["auto", "float32", "bfloat16", "float16", "half", "float"] = "auto",
        gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9,
        max_model_len: Optional[AtLeastOne] = None,
        chat: bool = False,
        **engine_kwargs: Any,  # handed on to vllm.LLM (its EngineArgs fields), checked against them
    ) -> None:
        self.spec = spec.raw
        self.model = spec.target
        self.chat = chat
        # The whole list at once: the engine schedules it continuously itself.
        self.capabilities = Capabilities(batch_size=None, choice_scoring=True)
        try:
            import vllm
        except ImportError as exc:
            raise BackendError(
                f"model spec {spec.raw!r} needs vLLM and a CUDA GPU: pip install 'tourney[vllm]' ({exc})"
            ) from exc
        if engine_kwargs:
            unknown_passthrough(engine_kwargs, _engine_fields(vllm), spec.raw, "vLLM")
        self._SamplingParams = vllm.SamplingParams
        kwargs: dict[str, Any] = dict(
            model=spec.target,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            **engine_kwargs,
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        kwargs.setdefault("disable_log_stats", False)  # V1 fills RequestOutput.metrics only then
        try:
            self._llm = vllm.LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types (OSError, ValueError, RuntimeError, CUDA)
            raise BackendError(f"vLLM could not load {spec.target!r}: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r}, chat={self.chat})"

    def close(self) -> None:
        # vLLM frees GPU memory when the engine is garbage collected; drop our reference.
        self.__dict__.pop("_llm", None)

    def _params(self, cfg: GenConfig) -> Any:
        return self._SamplingParams(
            n=cfg.n,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            stop=list(cfg.stop) or None,
            logprobs=cfg.logprobs,
            seed=cfg.seed,
        )

    def generate(self, prompts: Sequence[Prompt], cfg: GenConfig) -> list[list[Generation]]:
        params = self._params(cfg)
        texts = [(i, p) for i, p in enumerate(prompts) if isinstance(p, str) and not self.chat]
        convs = [(i, p) for i, p in enumerate(prompts) if not isinstance(p, str) or self.chat]
        results: list[list[Generation]] = [[] for _ in prompts]
        if texts:
            t0 = time.perf_counter()
            outs = self._llm.generate([p for _, p in texts], params, use_tqdm=False)
            wall = time.perf_counter() - t0
            for (i, _), out in zip(texts, outs):
                results[i] = _to_generations(out, cfg, wall)
        if convs:
            messages = [[{"role": "user", "content": p}] if isinstance(p, str) else [dict(m) for m in p] for _, p in convs]
            t0 = time.perf_counter()
            outs = self._llm.chat(messages, params, use_tqdm=False)
            wall = time.perf_counter() - t0
            for (i, _), out in zip(convs, outs):
                results[i] = _to_generations(out, cfg, wall)
        return results

    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]) -> list[list[float]]:
        """Sum of the choice tokens' logprobs after the prompt. Prompt and choice are tokenized
        apart and joined as ids, so the prompt/choice boundary is exact (as in lm-eval); a choice
        should carry its own leading space where the model's tokenizer expects one."""
        if len(prompts) != len(choices):
            raise BackendError(f"score_choices got {len(prompts)} prompts but {len(choices)} choice lists")
        tok = self._llm.get_tokenizer()
        requests: list[tuple[list[int], int]] = []  # (token ids, number of prompt tokens)
        for prompt, options in zip(prompts, choices):
            if isinstance(prompt, str):
                ctx = tok.encode(prompt)
            else:
                rendered = tok.apply_chat_template([dict(m) for m in prompt], add_generation_prompt=True, tokenize=False)
                ctx = tok.encode(rendered, add_special_tokens=False)
            for choice in options:
                cont = tok.encode(choice, add_special_tokens=False)
                if not cont:
                    raise BackendError(f"choice {choice!r} encodes to no tokens")
                requests.append((list(ctx) + list(cont), len(ctx)))
        # prompt_logprobs=1 as lm-eval uses: the actual token is always among the entries, and
        # some versions read 0 as "off".
        params = self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
        outs = self._llm.generate([{"prompt_token_ids": ids} for ids, _ in requests], params, use_tqdm=False)
        scores = []
        for (ids, n_ctx), out in zip(requests, outs):
            plp = out.prompt_logprobs
            if plp is None:
                raise BackendError("vLLM returned no prompt logprobs; cannot score choices")
            total = 0.0
            for pos in range(max(n_ctx, 1), len(ids)):  # position 0 has no logprob
                total += plp[pos][ids[pos]].logprob
            scores.append(total)
        it = iter(scores)
        return [[next(it) for _ in options] for options in choices]


def _engine_fields(vllm: Any) -> set[str]:
    """The keyword arguments vllm.LLM takes: its own and its EngineArgs' fields."""
    import dataclasses
    import inspect

    names = set(inspect.signature(vllm.LLM.__init__).parameters) - {"self", "kwargs"}
    engine_args = getattr(vllm, "EngineArgs", None)
    if engine_args is not None and dataclasses.is_dataclass(engine_args):
        names |= {f.name for f in dataclasses.fields(engine_args)}
    return names


def request_timing(metrics: Any, batch_wall_s: float) -> tuple[float, float | None]:
    """(latency_s, ttft_s) of one request from its engine metrics; (batch wall time, None) without.

    V0's RequestMetrics has arrival_time, first_token_time and finished_time on one wall clock.
    V1's RequestStateStats has first_token_latency (seconds since arrival) and first_token_ts /
    last_token_ts on the engine core's monotonic clock, a different clock from its arrival_time,
    so only differences within each clock are used."""
    arrival = getattr(metrics, "arrival_time", None)
    finished = getattr(metrics, "finished_time", None)
    first = getattr(metrics, "first_token_time", None)
    if arrival is not None and finished is not None:  # V0
        return finished - arrival, (first - arrival if first is not None else None)
    ttft = getattr(metrics, "first_token_latency", None)
    first_ts, last_ts = getattr(metrics, "first_token_ts", None), getattr(metrics, "last_token_ts", None)
    if ttft and first_ts and last_ts:  # V1 (zeros until set)
        return ttft + (last_ts - first_ts), ttft
    return batch_wall_s, None


def _to_generations(out: Any, cfg: GenConfig, batch_wall_s: float) -> list[Generation]:
    """One vLLM RequestOutput -> its n Generations."""
    latency, ttft = request_timing(getattr(out, "metrics", None), batch_wall_s)
    prompt_tokens = len(out.prompt_token_ids or [])
    gens = []
    for o in out.outputs:
        token_lps: list[float] | None = None
        top_lps: list[dict[str, float]] | None = None
        if cfg.logprobs is not None and o.logprobs is not None:
            # o.logprobs: per generated position, {token_id: Logprob(logprob, rank, decoded_token)}
            # holding the sampled token plus the top-k alternatives.
            token_lps = [pos[tid].logprob for tid, pos in zip(o.token_ids, o.logprobs)]
            if cfg.logprobs > 0:
                top_lps = []
                for pos in o.logprobs:
                    best = sorted(pos.items(), key=lambda kv: kv[1].logprob, reverse=True)[: cfg.logprobs]
                    top_lps.append({(lp.decoded_token or str(tid)): lp.logprob for tid, lp in best})
        gens.append(
            Generation(
                text=o.text,
                token_logprobs=token_lps,
                top_logprobs=top_lps,
                finish_reason=o.finish_reason,
                latency_s=latency,
                ttft_s=ttft,
                prompt_tokens=prompt_tokens,
                completion_tokens=len(o.token_ids),
                batch_latency_s=batch_wall_s,
            )
        )
    return gens
