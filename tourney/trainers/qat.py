"""Quantization-aware training: the student's forward pass sees its weights as llama.cpp will store them.

Each matrix is rounded, in the forward pass, exactly as ggml's reference quantizers round it
(the ones llama_model_quantize runs when no importance matrix is given), and dequantized back:

  Q4_0  blocks of 32 along a row; d = (the value of largest magnitude, with its sign) / -8;
        q = min(15, trunc(x / d + 8.5)); back: (q - 8) * fp16(d). The extreme value lands on q = 0,
        so a block spans [-8d, 7d] with the 16th level on the side of its largest value.
  Q5_0  the same with 32 levels: d = signed max / -16, q = min(31, trunc(x / d + 16.5)), (q - 16) * fp16(d).
  Q8_0  blocks of 32; d = max |x| / 127; q = round-half-away-from-zero(x / d); back: q * fp16(d).

d is computed in float32 for the rounding and stored in float16, so dequantization uses the
float16 d, as ggml does. Gradients pass straight through (w + (fq(w) - w).detach()), so the
optimizer keeps updating float32 "latent" weights; those are what checkpoints hold, and exporting
them with `export-gguf --dtype FORMAT` reproduces the trained forward pass bit for bit in the weights.

Which type each matrix gets is not guessed: `plan_types` quantizes the student once with llama.cpp
and reads the file's per-tensor types (llama.cpp gives the tied embedding / output matrix Q8_0 in
a Q4_0 file, for instance), so the fake quantization follows the file the run will ship.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tourney.errors import ConfigError
from tourney.models.gguf_export import GLOBAL_TENSORS, LAYER_TENSORS

BLOCK = 32
QAT_FORMATS = ("q4_0", "q8_0")


def _blocks(w: torch.Tensor) -> torch.Tensor:
    if w.shape[-1] % BLOCK:
        raise ConfigError(f"a row of {w.shape[-1]} values does not divide into blocks of {BLOCK}")
    return w.float().reshape(-1, BLOCK)


def _signed_max(b: torch.Tensor) -> torch.Tensor:
    # ggml keeps the first value of largest magnitude in a block, sign included
    idx = b.abs().argmax(dim=1, keepdim=True)
    return b.gather(1, idx)


def _inverse(d: torch.Tensor) -> torch.Tensor:
    return torch.where(d != 0, 1.0 / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))


def _fp16(d: torch.Tensor) -> torch.Tensor:
    return d.half().float()


def _offset_binary(w: torch.Tensor, levels: int) -> torch.Tensor:
    """Q4_0 (levels 16) and Q5_0 (levels 32): offset-binary codes around a signed-max scale."""
    b = _blocks(w)
    half = levels // 2
    d = _signed_max(b) / -half
    q = torch.clamp(torch.trunc(b * _inverse(d) + (half + 0.5)), max=levels - 1)
    return ((q - half) * _fp16(d)).reshape(w.shape).to(w.dtype)


def fake_q4_0(w: torch.Tensor) -> torch.Tensor:
    return _offset_binary(w, 16)


def fake_q5_0(w: torch.Tensor) -> torch.Tensor:
    return _offset_binary(w, 32)


def fake_q8_0(w: torch.Tensor) -> torch.Tensor:
    b = _blocks(w)
    d = b.abs().amax(dim=1, keepdim=True) / 127
    x = b * _inverse(d)
    q = torch.sign(x) * torch.floor(x.abs() + 0.5)  # C's roundf: halves away from zero
    return (q * _fp16(d)).reshape(w.shape).to(w.dtype)


def fake_f16(w: torch.Tensor) -> torch.Tensor:
    return w.half().to(w.dtype)


# ggml type name (as GGUFReader reports it) -> fake quantizer
FAKE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Q4_0": fake_q4_0, "Q5_0": fake_q5_0, "Q8_0": fake_q8_0, "F16": fake_f16, "F32": lambda w: w}


def straight_through(w: torch.Tensor, kind: str) -> torch.Tensor:
    """fq(w) in the forward pass, the identity in the backward pass."""
    if kind == "F32":
        return w
    return w + (FAKE[kind](w) - w).detach()


class QATLinear(nn.Linear):
    """nn.Linear whose weight is fake-quantized to `qat_type` in the forward pass. Its state dict
    is nn.Linear's, so checkpoints save and load as the plain model."""

    qat_type: str = "F32"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, straight_through(self.weight, self.qat_type), self.bias)


class QATEmbedding(nn.Embedding):
    qat_type: str = "F32"

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, straight_through(self.weight, self.qat_type), self.padding_idx, self.max_norm,
                           self.norm_type, self.scale_grad_by_freq, self.sparse)


def hf_to_gguf_names(n_layers: int) -> dict[str, str]:
    """HF module name (no `.weight`) -> GGUF tensor name, for the dense Qwen3 layout gguf_export writes."""
    out = {k.removesuffix(".weight"): v for k, v in GLOBAL_TENSORS.items()}
    for i in range(n_layers):
        for suffix, name in LAYER_TENSORS.items():
            out[f"model.layers.{i}.{suffix.removesuffix('.weight')}"] = f"blk.{i}.{name}"
    return out


def plan_types(checkpoint: str | Path, fmt: str) -> dict[str, str]:
    """GGUF tensor name -> the ggml type llama.cpp stores it as when the checkpoint is quantized to
    `fmt` (learnt by doing it once, in a temporary folder)."""
    from tourney.models.gguf_quantize import export_quantized

    if fmt not in QAT_FORMATS:
        raise ConfigError(f"qat must be one of {', '.join(QAT_FORMATS)}, got {fmt!r}")
    with tempfile.TemporaryDirectory(prefix="tourney-qat-") as tmp:
        return dict(export_quantized(checkpoint, Path(tmp) / f"plan-{fmt}.gguf", fmt).tensor_types)


def apply_qat(model: nn.Module, types: dict[str, str]) -> dict[str, str]:
    """Fake-quantize every Linear/Embedding of `model` (a Qwen3ForCausalLM) as `types` says, in
    place; returns HF module name -> type. A tied lm_head follows token_embd's type, as llama.cpp
    stores one matrix for both. Refuses a type with no fake quantizer rather than train against
    a rounding the file will not have."""
    n_layers = int(model.config.num_hidden_layers)
    names = hf_to_gguf_names(n_layers)
    if getattr(model.config, "tie_word_embeddings", False):
        names["lm_head"] = "token_embd.weight"
    done: dict[str, str] = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            continue
        gguf_name = names.get(name)
        if gguf_name is None or gguf_name not in types:
            raise ConfigError(f"module {name!r} has no tensor in the quantized plan; cannot train it quantization-aware")
        kind = types[gguf_name]
        if kind not in FAKE:
            raise ConfigError(f"llama.cpp stores {gguf_name} as {kind}, which has no fake quantizer here "
                              f"(have {', '.join(FAKE)})")
        module.__class__ = QATEmbedding if isinstance(module, nn.Embedding) else QATLinear
        module.qat_type = kind
        done[name] = kind
    return done


def remove_qat(model: nn.Module) -> None:
    """Back to plain nn.Linear / nn.Embedding (the latent weights untouched)."""
    for module in model.modules():
        if isinstance(module, QATLinear):
            module.__class__ = nn.Linear
        elif isinstance(module, QATEmbedding):
            module.__class__ = nn.Embedding
