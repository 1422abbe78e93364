"""Quantization-aware training: the fake quantizers round as ggml does, the fake-quantized torch
forward of the miniature is llama.cpp's quantized forward, and `distill train --qat` trains through
it and ships exactly that format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tourney.errors import ConfigError
from tourney.trainers.qat import (FAKE, QATEmbedding, QATLinear, apply_qat, fake_q4_0, fake_q5_0, fake_q8_0,
                                  hf_to_gguf_names, remove_qat, straight_through)

gguf = pytest.importorskip("gguf")


def test_q4_0_block_by_hand() -> None:
    # signed max -2 -> d = 0.25; x/d + 8.5 = -8+8.5 .. truncated, clamped at 15
    block = torch.tensor([-2.0, 1.9, 0.3, -0.13, 0.0] + [0.0] * 27)
    got = fake_q4_0(block)[:5]
    # codes: trunc(0.5)=0, min(15, trunc(16.1))=15, trunc(9.7)=9, trunc(7.98)=7, trunc(8.5)=8
    assert torch.equal(got, torch.tensor([-8, 7, 1, -1, 0]) * 0.25)
    # mirrored: d = -0.25, the largest value is still exact and the other side stops at 7 levels
    assert torch.equal(fake_q4_0(-block)[:2], torch.tensor([2.0, -1.75]))


def test_q8_0_block_by_hand() -> None:
    block = torch.tensor([1.27, -0.635, 0.005, 0.015] + [0.0] * 28)
    # d = 0.01; 0.5 rounds away from zero (C's roundf), 1.5 too
    got = fake_q8_0(block)[:4] / torch.tensor(0.01).half().float()
    assert torch.allclose(got, torch.tensor([127.0, -64.0, 1.0, 2.0]), atol=1e-3)


@pytest.mark.parametrize("kind, fake", [("Q4_0", fake_q4_0), ("Q5_0", fake_q5_0), ("Q8_0", fake_q8_0)])
def test_fake_quantizers_equal_the_gguf_package_reference(kind, fake) -> None:
    """gguf-py's numpy port of ggml's reference quantizers is a second, independent implementation."""
    qtype = gguf.GGMLQuantizationType[kind]
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 128)) * rng.uniform(0.001, 3, (64, 1))).astype(np.float32)
    w[0, :32] = 0.0  # an all-zero block: d = 0
    w[1, 5] = 40.0  # an outlier owning its block's scale
    ref = gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)
    np.testing.assert_array_equal(fake(torch.from_numpy(w)).numpy(), ref)


def test_straight_through_gradient_is_the_identity() -> None:
    w = torch.randn(4, 64, requires_grad=True)
    out = straight_through(w, "Q4_0")
    assert torch.equal(out.detach(), fake_q4_0(w.detach()))
    (out * torch.arange(64.0)).sum().backward()
    assert torch.equal(w.grad, torch.arange(64.0).expand(4, 64))


def test_rows_that_do_not_fit_blocks_are_refused() -> None:
    with pytest.raises(ConfigError, match="row of 48 values"):
        fake_q4_0(torch.zeros(2, 48))


def _mini(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def test_apply_qat_keeps_the_state_dict_and_refuses_unknown_types(mini_student: Path) -> None:
    model = _mini(mini_student)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = {name: "Q4_0" for name in hf_to_gguf_names(model.config.num_hidden_layers).values()}
    types["token_embd.weight"] = "Q8_0"
    done = apply_qat(model, types)
    assert done["lm_head"] == done["model.embed_tokens"] == "Q8_0"  # tied: one matrix in the file
    assert isinstance(model.model.embed_tokens, QATEmbedding) and isinstance(model.lm_head, QATLinear)
    assert model.state_dict().keys() == before.keys()
    remove_qat(model)
    assert type(model.lm_head) is torch.nn.Linear and type(model.model.embed_tokens) is torch.nn.Embedding
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="Q6_K"):
        apply_qat(_mini(mini_student), {**types, "blk.0.attn_q.weight": "Q6_K"})


# -- the fake-quantized torch forward against llama.cpp's quantized forward --------------------

PROMPT = "Question: Ava has 12 shells. She finds 305 more shells. How many shells does she have?\nAnswer:"


@pytest.mark.parametrize("fmt", ["q4_0", "q8_0"])
def test_fake_quantized_forward_is_llamacpp_forward(fmt: str, mini_student: Path, tmp_path: Path) -> None:
    """Weights: bit for bit what llama.cpp stored. Logits: within activation rounding.

    llama.cpp multiplies Q4_0/Q8_0 weights with activations it has itself rounded to Q8_0 (blocks
    of 32, 8 bits: up to 1/254 of a block's largest value per entry), while torch keeps them in
    float32. Through the miniature's two layers that moves logits by about 0.03 on average
    (their spread is about 6), so the bound is a mean of 0.1 and a maximum of 0.6. The check that
    the fake quantization is what matters: the float32 forward is several times further off."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoTokenizer

    from tourney.models.gguf_quantize import export_quantized

    result = export_quantized(mini_student, tmp_path / f"s-{fmt}.gguf", fmt)
    model = _mini(mini_student)
    sd = model.state_dict()
    hf_name = {v: k for k, v in hf_to_gguf_names(model.config.num_hidden_layers).items()}
    for t in gguf.GGUFReader(str(result.path)).tensors:
        if len(t.shape) == 2:
            stored = gguf.quants.dequantize(t.data, t.tensor_type)
            ours = FAKE[t.tensor_type.name](sd[hf_name[t.name] + ".weight"]).numpy()
            np.testing.assert_array_equal(ours, stored, err_msg=t.name)

    ids = AutoTokenizer.from_pretrained(str(mini_student))(PROMPT)["input_ids"]
    with torch.no_grad():
        full = model(torch.tensor([ids])).logits[0].numpy()
        apply_qat(model, result.tensor_types)
        fake = model(torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(model_path=str(result.path), n_ctx=256, n_threads=1, logits_all=True, verbose=False,
                          type_k=0, type_v=0)  # f32 KV cache: no f16 rounding of keys and values
    try:
        llm.eval(ids)
        ref = np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
    gap, full_gap = np.abs(fake - ref), np.abs(full - ref)
    assert gap.mean() < 0.1 and gap.max() < 0.6, (gap.mean(), gap.max())
    assert (fake.argmax(-1) == ref.argmax(-1)).mean() >= 0.95
    if fmt == "q4_0":  # at 4 bits the weights' rounding dwarfs the activations'
        assert full_gap.mean() > 5 * gap.mean(), (full_gap.mean(), gap.mean())


# -- distill train --qat ------------------------------------------------------------------------


def test_kd_with_qat_trains_through_the_quantizer_and_ships_that_format(tiny_checkpoint, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from tests.trainers.test_sft import FAST, write_sft
    from tourney.models.gguf_quantize import tensor_types
    from tourney.trainers.distill import train
    from tourney.trainers.distill_config import DistillTrainConfig

    data = write_sft(tmp_path / "sft.jsonl", n=16)
    said: list[str] = []
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), teacher=str(tiny_checkpoint), data=str(data),
                             out=str(tmp_path / "run"), method="kd", qat="q4_0", **{**FAST, "epochs": 1})
    result = train(cfg, say=said.append)
    assert result.quantized == str(tmp_path / "run" / "final-q4_0.gguf")
    types = tensor_types(result.quantized)
    assert {v for k, v in types.items() if k.startswith("blk.") and not k.endswith("norm.weight")} == {"Q4_0"}
    assert any(line.startswith("quantization-aware training for q4_0:") for line in said)
    assert any(line.startswith(f"wrote {result.quantized}") for line in said)
    # the checkpoint holds the latent float32 weights as a plain model (no QAT classes saved)
    from transformers import AutoModelForCausalLM

    final = AutoModelForCausalLM.from_pretrained(result.final)
    assert type(final.lm_head) is torch.nn.Linear
    before = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint)).state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in final.state_dict().items())  # it trained


def test_qat_config_is_checked() -> None:
    from pydantic import ValidationError

    from tourney.trainers.distill_config import DistillTrainConfig

    with pytest.raises(ValidationError, match="q4_0"):
        DistillTrainConfig(student="s", data="d", out="o", qat="q3_k")
    with pytest.raises(ValidationError, match="lora"):
        DistillTrainConfig(student="s", teacher="t", data="d", out="o", method="kd", qat="q4_0", lora=True)
