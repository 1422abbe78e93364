"""Logit and feature distillation on tiny random checkpoints: online teacher, offline top-k store
built once, vocabulary check, and a wider teacher matched through the projector."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from tests.trainers.test_sft import FAST, StopAfterEpoch, epoch_losses, write_sft
from tourney.trainers.distill import train
from tourney.trainers.distill_config import DistillTrainConfig
from tourney.trainers.features import PROJECTOR_FILE, load_projector


def _save_model(out: Path, tokenizer, arch, seed: int) -> Path:
    from tourney.models.mini.arch import build_model

    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    torch.manual_seed(seed)
    build_model(arch, vocab_size=len(tokenizer), eos_id=tokenizer.eos_token_id).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def teacher_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """Wider and deeper than the student (48 vs 32, 4 vs 2 layers), same tokenizer."""
    from tourney.models.mini.arch import MiniArch

    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    return _save_model(tmp_path_factory.mktemp("teacher"), tok, MiniArch(48, 96, 4, 2, 1, 24), seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_sft(tmp_path_factory.mktemp("kd") / "sft.jsonl")


def _cfg(student, teacher, data, out, **kw) -> DistillTrainConfig:
    return DistillTrainConfig(student=str(student), teacher=str(teacher), data=str(data), out=str(out),
                              **{**FAST, **kw})


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_kd_loss_is_zero_against_itself(tiny_checkpoint, data):
    from tourney.trainers.kd_trainer import DistillLoss
    from tourney.trainers.pretrain import encode_examples, make_batch
    from tourney.trainers.dataset import read_sft_jsonl

    student = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    batch = make_batch(encode_examples(tok, read_sft_jsonl(data)[:3]), tok.pad_token_id)
    cfg = _cfg(tiny_checkpoint, tiny_checkpoint, data, "unused", method="kd", alpha=1.0)
    total, parts, _ = DistillLoss(cfg, teacher=copy.deepcopy(student))(student, dict(batch))
    assert parts["kd"].abs() < 1e-6 and total.abs() < 1e-5 and parts["ce"] > 0


def test_online_kd_trains(tiny_checkpoint, teacher_checkpoint, data, tmp_path):
    result = train(_cfg(tiny_checkpoint, teacher_checkpoint, data, tmp_path / "run", method="kd", kd_kind="jsd"),
                   say=lambda _m: None)
    assert len(result.checkpoints) == 2
    first, second = epoch_losses(tmp_path / "run", 2)
    assert torch.isfinite(torch.tensor([first, second])).all() and second < first
    teacher_files = {p.name for p in teacher_checkpoint.iterdir()}
    assert "model.safetensors" in teacher_files
    # The teacher is not saved with the student: the checkpoint has the student's shapes.
    saved = AutoModelForCausalLM.from_pretrained(result.final)
    assert saved.config.hidden_size == 32


def test_offline_store_is_built_once_and_reused(tiny_checkpoint, teacher_checkpoint, data, tmp_path, monkeypatch):
    store_dir = tmp_path / "store"
    stamps: list[dict[str, int]] = []

    class Stamp(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            stamps.append(_mtimes(store_dir))

    cfg = _cfg(tiny_checkpoint, teacher_checkpoint, data, tmp_path / "a", method="kd", topk=8,
               topk_store=str(store_dir))
    train(cfg, callbacks=[Stamp()], say=lambda _m: None)
    stamps.append(_mtimes(store_dir))
    assert len(stamps) == 3 and stamps[0] == stamps[1] == stamps[2]  # not rebuilt between epochs
    first, second = epoch_losses(tmp_path / "a", 2)
    assert second < first

    # A second run on the same data reuses the store without even loading the teacher.
    import tourney.trainers.kd_trainer as kd

    monkeypatch.setattr(kd, "load_teacher", lambda *a, **k: pytest.fail("the teacher was loaded again"))
    said: list[str] = []
    train(_cfg(tiny_checkpoint, teacher_checkpoint, data, tmp_path / "b", method="kd", topk=8,
               topk_store=str(store_dir), epochs=1), say=said.append)
    assert _mtimes(store_dir) == stamps[0]
    assert any("reusing 32 examples" in s for s in said)


def test_store_rows_follow_the_dataset_index(tiny_checkpoint, teacher_checkpoint, data, tmp_path):
    """Example i of the store is dataset item i, whatever order training visits it in."""
    from tourney.trainers.kd_trainer import prepare_store
    from tourney.trainers.offline_logits import compute_topk
    from tourney.trainers.pretrain import make_batch
    from tourney.trainers.sft import load_sft_data

    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    cfg = _cfg(tiny_checkpoint, teacher_checkpoint, data, tmp_path / "run", method="kd", topk=4, batch_size=5)
    examples = load_sft_data(cfg, tok).examples
    store = prepare_store(cfg, examples, teacher_path=str(teacher_checkpoint), pad_id=tok.pad_token_id,
                          device="cpu", source={"test": 1}, say=lambda _m: None)
    assert store.num_examples == 32 and store.k == 4
    teacher = AutoModelForCausalLM.from_pretrained(str(teacher_checkpoint))
    for i in (0, 7, 31):
        alone = next(compute_topk(teacher, [make_batch([examples[i]], tok.pad_token_id)], 4))
        stored = store.get(i)
        assert torch.equal(stored.positions, alone.positions)
        assert torch.equal(stored.ids[:, 0], alone.ids[:, 0])


def test_vocab_mismatch_is_a_clear_error(tiny_checkpoint, data, tmp_path):
    from tourney.harness.synthetic import SynthConfig, generate
    from tourney.models.mini.arch import MiniArch
    from tourney.models.mini.tokenizer import train_tokenizer

    folder = tmp_path / "other"
    rows = generate(SynthConfig(n=100, seed=99))
    tok = train_tokenizer([r["solution"] for r in rows], folder, vocab_size=120)
    _save_model(folder, tok, MiniArch(32, 64, 2, 2, 1, 16), seed=2)
    with pytest.raises(ValueError, match="incompatible for token-level distillation"):
        train(_cfg(tiny_checkpoint, folder, data, tmp_path / "run", method="kd"), say=lambda _m: None)
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_feature_kd_with_wider_teacher_saves_and_resumes_the_projector(tiny_checkpoint, teacher_checkpoint,
                                                                       tmp_path):
    data = write_sft(tmp_path / "sft.jsonl", n=16)  # 2 steps an epoch: three runs below
    cfg = _cfg(tiny_checkpoint, teacher_checkpoint, data, tmp_path / "run", method="kd+feature",
               feature_layer_map={1: 2, 2: 4}, attention=True, feature_loss="cosine")
    result = train(cfg, say=lambda _m: None)
    for folder in [*result.checkpoints, result.final]:
        assert (Path(folder) / PROJECTOR_FILE).exists(), folder
    proj = load_projector(result.final)
    assert proj.layer_map == {1: 2, 2: 4} and (proj.student_width, proj.teacher_width) == (32, 48)
    p1, p2 = load_projector(result.checkpoints[0]), load_projector(result.checkpoints[1])
    assert not torch.equal(p1.proj["1"].weight, p2.proj["1"].weight)  # trained jointly with the student
    first, second = epoch_losses(tmp_path / "run", 2)
    assert second < first

    # Stopped after epoch 1 and resumed: the projector comes back from the checkpoint too.
    again = DistillTrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "resumed")})
    train(again, callbacks=[StopAfterEpoch(1)], say=lambda _m: None)
    resumed = train(again, say=lambda _m: None)
    a, b = load_projector(resumed.final).state_dict(), proj.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    sa = AutoModelForCausalLM.from_pretrained(resumed.final).state_dict()
    sb = AutoModelForCausalLM.from_pretrained(result.final).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sb)
