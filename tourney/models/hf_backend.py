"""transformers backend: batched generation with left padding, logprobs, and choice scoring.

Batches are formed in the order the caller gives prompts, never re-sorted: the same batch always
pads the same way, so greedy outputs are bit-for-bit repeatable, which resumable runs rely on.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from tourney.models.options import AtLeastOne, Device, checked_options
from tourney.models.types import BackendError, GenConfig, Generation, ModelSpec, Prompt


def _pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # bf16 on GPUs (what the real pair is served in); fp32 on CPU where bf16 matmuls are slow.
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise BackendError(f"unknown dtype {dtype!r}: expected auto, float32, bfloat16 or float16") from None


class _FirstTokenClock:
    """A logits processor that notes when the first decoding step happens: prefill is done then,
    which is the time to first token of a batched, non-streaming generate."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, input_ids, scores):
        if self.first is None:
            self.first = time.perf_counter()
        return scores


class HFBackend:
    @checked_options
    def __init__(
        self,
        spec: ModelSpec,
        *,
        device: Device = "auto",
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
        batch_size: AtLeastOne = 16,
        chat: bool = False,
        chat_template_kwargs: Optional[dict[str, Any]] = None,
        trust_remote_code: bool = False,
        model: Any = None,  # an in-memory model (the trainers evaluate the one they hold)
        tokenizer: Any = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bar is the one users read
        self.spec = spec.raw
        self.batch_size = batch_size
        self.chat = chat
        self.chat_template_kwargs = chat_template_kwargs or {}
        self.device = _pick_device(device)
        path = spec.target
        if model is None and not Path(path).exists() and (path.startswith((".", "/")) or path.count("/") > 1):
            raise BackendError(f"model spec {spec.raw!r}: no checkpoint folder at {path}")
        try:
            # Already-loaded objects may be passed in (trainers evaluate the model they hold).
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.model = model or AutoModelForCausalLM.from_pretrained(
                path, dtype=_pick_dtype(dtype, self.device), trust_remote_code=trust_remote_code,
                use_safetensors=True,
            )
        except (OSError, ValueError) as exc:
            raise BackendError(f"model spec {spec.raw!r}: cannot load: {str(exc).splitlines()[0]}") from exc
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._torch = torch

    # -- prompts ---------------------------------------------------------------------------
    def _text(self, prompt: Prompt) -> str:
        if isinstance(prompt, str) and not self.chat:
            return prompt
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendError(f"{self.spec}: chat prompt given but the tokenizer has no chat template")
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
        )

    # -- generation ------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], cfg: GenConfig) -> list[list[Generation]]:
        texts = [self._text(p) for p in prompts]
        out: list[list[Generation]] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(self._generate_batch(texts[i : i + self.batch_size], cfg))
        return out

    def _generate_batch(self, texts: list[str], cfg: GenConfig) -> list[list[Generation]]:
        torch = self._torch
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        clock = _FirstTokenClock()
        kwargs: dict[str, Any] = dict(
            max_new_tokens=cfg.max_tokens,
            do_sample=not cfg.greedy,
            num_return_sequences=cfg.n,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=cfg.logprobs is not None,
            logits_processor=[clock],
        )
        if not cfg.greedy:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
        else:  # silence transformers' warnings about sampling settings in a greedy call
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if cfg.stop:
            kwargs.update(stop_strings=list(cfg.stop), tokenizer=self.tokenizer)
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        start = time.perf_counter()
        with torch.inference_mode():
            res = self.model.generate(**enc, **kwargs)
        latency = time.perf_counter() - start
        ttft = (clock.first - start) if clock.first is not None else None
        prompt_len = enc["input_ids"].shape[1]
        new_tokens = res.sequences[:, prompt_len:].tolist()
        logprobs = None
        if cfg.logprobs is not None:
            # logits are the raw model outputs per step; (steps, batch*n, vocab) -> log-softmax.
            logprobs = torch.stack(res.logits, dim=1).float().log_softmax(-1)
        prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
        eos = self.tokenizer.eos_token_id
        out: list[list[Generation]] = []
        for b in range(len(texts)):
            samples = []
            for s in range(cfg.n):
                row = b * cfg.n + s
                samples.append(self._to_generation(new_tokens[row], logprobs, row, cfg, eos,
                                                   latency, ttft, int(prompt_lengths[b])))
            out.append(samples)
        return out

    def _to_generation(self, ids, logprobs, row, cfg, eos, latency, ttft, prompt_tokens) -> Generation:
        # Cut at EOS / padding: everything after the first EOS is filler from the batch.
        n = len(ids)
        finish = "length"
        if eos in ids:
            n, finish = ids.index(eos), "stop"
        ids = ids[:n]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for stop in cfg.stop:
            cut = text.find(stop)
            if cut != -1:
                text, finish = text[:cut], "stop"
        gen = Generation(text=text, finish_reason=finish, latency_s=latency, ttft_s=ttft,
                         prompt_tokens=prompt_tokens, completion_tokens=len(ids))
        if logprobs is not None:
            lp = logprobs[row, : len(ids)]
            gen.token_logprobs = [float(lp[i, t]) for i, t in enumerate(ids)]
            if cfg.logprobs:
                top = lp.topk(cfg.logprobs, dim=-1)
                gen.top_logprobs = [
                    {self.tokenizer.decode([int(t)]): float(v) for v, t in zip(vals, idx)}
                    for vals, idx in zip(top.values.tolist(), top.indices.tolist())
                ]
        return gen

    # -- scoring ---------------------------------------------------------------------------
    def score_choices(self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]) -> list[list[float]]:
        """Sum of log p(choice tokens | prompt). Context and continuation are split as lm-eval does:
        encode(prompt + choice) minus the tokens of encode(prompt)."""
        torch = self._torch
        pairs = []
        for prompt, opts in zip(prompts, choices, strict=True):
            ctx = self._text(prompt)
            ctx_ids = self.tokenizer(ctx, add_special_tokens=False).input_ids
            for c in opts:
                whole = self.tokenizer(ctx + c, add_special_tokens=False).input_ids
                pairs.append((whole, max(1, min(len(ctx_ids), len(whole) - 1))))
        scores: list[float] = []
        pad = self.tokenizer.pad_token_id
        for i in range(0, len(pairs), self.batch_size):
            chunk = pairs[i : i + self.batch_size]
            width = max(len(w) for w, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, (w, _) in enumerate(chunk):  # right padding keeps positions aligned with tokens
                ids[j, : len(w)] = torch.tensor(w)
                mask[j, : len(w)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            lp = logits.float().log_softmax(-1).cpu()
            for j, (w, start) in enumerate(chunk):
                targets = torch.tensor(w[start:])
                scores.append(float(lp[j, start - 1 : len(w) - 1].gather(1, targets[:, None]).sum()))
        out, k = [], 0
        for opts in choices:
            out.append(scores[k : k + len(opts)])
            k += len(opts)
        return out

    def close(self) -> None:
        self.model = None
