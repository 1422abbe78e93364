"""transformers backend: batched generation with left padding, logprobs, and choice scoring.

Batches are formed in the order the caller gives prompts, never re-sorted: the same batch always
pads the same way, so greedy outputs are bit-for-bit repeatable, which resumable runs rely on.

Timing inside a batch. A static batch runs one decoding step for every row at once, but a
sequence is done at the step that emits its end (EOS, or the token that completes a stop string);
a continuously batching server would return it then. Each Generation's latency_s is that step's
time since the batch started, ttft_s the first step's, and batch_latency_s the whole batch's wall
time (which the slowest row sets). On CUDA the steps are timed with CUDA events, so timing adds
no synchronisation to decoding.

Logprobs are gathered step by step (a forward hook keeps the newest step's log-softmax, the
stopping-criteria call after sampling reads the chosen token from it), never by stacking every
step's (rows x vocabulary) logits: at Qwen3's 151,936 tokens that stack is 0.6 GB per sequence
per 1,000 steps, before its log-softmax copy.

Sampling seeds: a batch draws from a generator seeded with (seed, batch position in the call,
prompt texts) inside torch.random.fork_rng, so a rerun (or a resumed run, which rebuilds the same
chunks) samples the same tokens, different batches sample different streams, and the caller's
global RNG (a trainer's) is left as it was.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from tourney.models.options import AtLeastOne, Device, checked_options
from tourney.models.types import (Backend, BackendError, Capabilities, GenConfig, Generation, ModelSpec, Prompt,
                                  cut_at_stop)


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


def batch_seed(seed: int, batch_index: int, texts: Sequence[str]) -> int:
    """The seed of one batch's sampling: reproducible from its inputs, different between batches."""
    h = hashlib.sha256(f"{seed}\x1e{batch_index}\x1e".encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\x1f")
    return int.from_bytes(h.digest()[:8], "big") & (2**63 - 1)


class _StepRecorder:
    """A stopping criterion that never stops: generate calls it after every new token, so it
    timestamps each step and, with logprobs asked, reads the chosen token's logprob (and top-k)
    from the step's log-softmax that `capture` (a forward hook on the model) left behind."""

    def __init__(self, logprobs: int | None, cuda: bool) -> None:
        import torch

        self._torch, self.k, self.cuda = torch, logprobs, cuda
        self.pending = None  # (rows, V) log-softmax of the newest step
        self.chosen: list[Any] = []  # per step: (rows,) logprob of the sampled token
        self.top: list[tuple[Any, Any]] = []  # per step: (rows, k) values and ids
        self._events: list[Any] = []
        self._times: list[float] = []

    def start(self) -> None:
        self._t0 = time.perf_counter()
        if self.cuda:
            self._e0 = self._event()

    def _event(self):
        e = self._torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def capture(self, _module, _args, output) -> None:
        logits = output.logits if hasattr(output, "logits") else output[0]
        self.pending = logits[:, -1].float().log_softmax(-1)

    def __call__(self, input_ids, scores, **_: Any):
        torch = self._torch
        if self.cuda:
            self._events.append(self._event())
        else:
            self._times.append(time.perf_counter() - self._t0)
        if self.pending is not None:
            tok = input_ids[:, -1:]
            self.chosen.append(self.pending.gather(-1, tok).squeeze(-1))
            if self.k:
                top = self.pending.topk(self.k, dim=-1)
                self.top.append((top.values, top.indices))
            self.pending = None
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def finish(self) -> tuple[list[float], float]:
        """(seconds from start to the end of each step, wall seconds of the whole batch)."""
        if self.cuda:
            end = self._event()
            end.synchronize()
            steps = [self._e0.elapsed_time(e) / 1000 for e in self._events]
            return steps, self._e0.elapsed_time(end) / 1000
        return self._times, time.perf_counter() - self._t0


class HFBackend(Backend):
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
        self.capabilities = Capabilities(batch_size=batch_size, choice_scoring=True)
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
        for k, i in enumerate(range(0, len(texts), self.batch_size)):
            out.extend(self._generate_batch(texts[i : i + self.batch_size], cfg, k))
        return out

    def _generate_batch(self, texts: list[str], cfg: GenConfig, batch_index: int) -> list[list[Generation]]:
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch = self._torch
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        cuda = self.device.startswith("cuda")
        rec = _StepRecorder(cfg.logprobs, cuda)
        StoppingCriteria.register(type(rec))  # an ABC: generate checks isinstance
        kwargs: dict[str, Any] = dict(
            max_new_tokens=cfg.max_tokens,
            do_sample=not cfg.greedy,
            num_return_sequences=cfg.n,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            stopping_criteria=StoppingCriteriaList([rec]),
        )
        if not cfg.greedy:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p)
        else:  # silence transformers' warnings about sampling settings in a greedy call
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if cfg.stop:
            kwargs.update(stop_strings=list(cfg.stop), tokenizer=self.tokenizer)
        hook = self.model.register_forward_hook(rec.capture) if cfg.logprobs is not None else None
        devices = [torch.cuda.current_device()] if cuda else []
        try:
            with torch.random.fork_rng(devices=devices, enabled=cfg.seed is not None):
                if cfg.seed is not None:
                    torch.manual_seed(batch_seed(cfg.seed, batch_index, texts))
                rec.start()
                with torch.inference_mode():
                    res = self.model.generate(**enc, **kwargs)
                steps, wall = rec.finish()
        finally:
            if hook is not None:
                hook.remove()
        prompt_len = enc["input_ids"].shape[1]
        new_tokens = res.sequences[:, prompt_len:].tolist()
        chosen = torch.stack(rec.chosen, dim=1).cpu() if rec.chosen else None  # (rows, steps)
        top = None
        if rec.top:
            top = (torch.stack([v for v, _ in rec.top], 1).cpu(), torch.stack([i for _, i in rec.top], 1).cpu())
        prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
        out: list[list[Generation]] = []
        for b in range(len(texts)):
            samples = []
            for s in range(cfg.n):
                row = b * cfg.n + s
                gen = self._to_generation(new_tokens[row], cfg, steps, int(prompt_lengths[b]))
                gen.batch_latency_s = wall
                if chosen is not None:
                    gen.token_logprobs = [float(x) for x in chosen[row, : gen.completion_tokens]]
                if top is not None:
                    vals, ids = top[0][row, : gen.completion_tokens], top[1][row, : gen.completion_tokens]
                    gen.top_logprobs = [
                        {self.tokenizer.decode([int(t)]): float(v) for v, t in zip(vs, ts)}
                        for vs, ts in zip(vals.tolist(), ids.tolist())
                    ]
                samples.append(gen)
            out.append(samples)
        return out

    def _to_generation(self, ids: list[int], cfg: GenConfig, steps: list[float], prompt_tokens: int) -> Generation:
        # A row ends at its first EOS; generate fills it with padding after that, and after a stop
        # string (which leaves no EOS). Everything from there on is filler from the batch.
        enders = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        n = next((i for i, t in enumerate(ids) if t in enders), len(ids))
        finish = "stop" if n < len(ids) else "length"
        emitted_end = n < len(ids)  # the EOS at position n is this row's own last step
        ids = ids[:n]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = cut_at_stop(text, cfg.stop)
        if cut is not None:
            # The token completing the stop string (position n - 1) ended the row; what follows
            # is padding.
            text, finish, emitted_end = text[:cut], "stop", False
        end_step = n if emitted_end else n - 1
        end_step = min(max(end_step, 0), len(steps) - 1) if steps else -1
        return Generation(text=text, finish_reason=finish, latency_s=steps[end_step] if steps else 0.0,
                          ttft_s=steps[0] if steps else None, prompt_tokens=prompt_tokens,
                          completion_tokens=len(ids))

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
