"""Shared fixtures: a tiny random-weight Qwen3 checkpoint built on the spot, and the shipped pair."""
from __future__ import annotations

from pathlib import Path

import pytest

from tourney.models.registry import MINI_DIR

SHARED_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real Hugging Face checkpoint folder (safetensors, config, tokenizer) with random weights:
    enough to test backends' mechanics without depending on the shipped models."""
    import torch

    from tourney.harness.synthetic import SynthConfig, generate
    from tourney.models.mini.arch import MiniArch, build_model
    from tourney.models.mini.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tiny")
    rows = generate(SynthConfig(n=300, seed=5))
    tok = train_tokenizer([f"Question: {r['question']}\nAnswer: {r['solution']}" for r in rows], out, vocab_size=300)
    torch.manual_seed(0)
    model = build_model(MiniArch(32, 64, 2, 2, 1, 16), vocab_size=len(tok), eos_id=tok.eos_token_id)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def _shipped(name: str) -> Path:
    path = MINI_DIR / name
    if not (path / "model.safetensors").exists():
        pytest.skip(f"shipped miniature checkpoint {name} is absent (run `tourney mini train`)")
    return path


@pytest.fixture(scope="session")
def mini_student() -> Path:
    return _shipped("student")


@pytest.fixture(scope="session")
def mini_teacher() -> Path:
    return _shipped("teacher")


@pytest.fixture(scope="session")
def tiny_mc_checkpoint(tmp_path_factory) -> Path:
    """Like tiny_checkpoint, with a tokenizer that has also seen the miniature tournament's
    multiple-choice prompts (so " A".." D" are single tokens, as in the shipped pair's)."""
    import torch

    from tourney.harness.knowledge import WorldConfig, build_world, knowledge_questions
    from tourney.harness.synthetic import SynthConfig, generate
    from tourney.models.mini.arch import MiniArch, build_model
    from tourney.models.mini.tokenizer import train_tokenizer
    from tourney.trainers.pretrain import prompt_text

    out = tmp_path_factory.mktemp("tiny-mc")
    rows = knowledge_questions(build_world(WorldConfig()), 300, seed=5) + generate(SynthConfig(n=200, seed=5))
    tok = train_tokenizer([prompt_text(r) + " " + r["solution"] for r in rows], out, vocab_size=400)
    torch.manual_seed(0)
    model = build_model(MiniArch(32, 64, 2, 2, 1, 16), vocab_size=len(tok), eos_id=tok.eos_token_id)
    model.save_pretrained(str(out), safe_serialization=True)
    return out
