"""Student SFT on the tiny random checkpoint: labels, epoch order, checkpoints, resumption, LoRA
merge, per-epoch evaluation and its gate, and the config's checks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, TrainerCallback

from tourney.harness.synthetic import SynthConfig, generate, write_jsonl
from tourney.harness.types import DataError
from tourney.trainers.distill import train
from tourney.trainers.distill_config import DistillTrainConfig, check_same_run, parse_layer_map
from tourney.trainers.epoch_eval import read_epochs
from tourney.trainers.sft import EpochOrderSampler, SFTCollator, SFTDataset, load_order_file, load_sft_data, merge_lora

# A tiny random model learns fast at this rate; 32 examples, 8 per step: 4 steps an epoch.
FAST = dict(epochs=2, batch_size=8, lr=3e-3, logging_steps=1)


def write_sft(path: Path, n: int = 32, seed: int = 11) -> Path:
    return write_jsonl(generate(SynthConfig(n=n, seed=seed)), path)


def epoch_losses(run: Path, epochs: int) -> list[float]:
    """Mean logged training loss per epoch, from the last checkpoint's trainer_state.json."""
    last = max(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    out = []
    for e in range(1, epochs + 1):
        losses = [h["loss"] for h in history if "loss" in h and e - 1 < h["epoch"] <= e]
        out.append(sum(losses) / len(losses))
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


class StopAfterEpoch(TrainerCallback):
    """Simulates a kill right after epoch `n`'s checkpoint is written."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, args, state, control, **kwargs):
        if round(state.epoch) >= self.n:
            control.should_training_stop = True
        return control


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> Path:
    return write_sft(tmp_path_factory.mktemp("sft") / "sft.jsonl")


@pytest.fixture(scope="module")
def full_run(tiny_checkpoint, sft_data, tmp_path_factory):
    """Full fine-tuning, 2 epochs, evaluated (and gated) after each epoch."""
    out = tmp_path_factory.mktemp("full") / "run"
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(sft_data), out=str(out),
                             eval_data=str(sft_data), eval_limit=4, eval_max_tokens=8, eval_batch_size=4,
                             gate=True, **FAST)
    return cfg, train(cfg, say=lambda _m: None)


def test_prompt_tokens_have_no_label(tiny_checkpoint, sft_data):
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(sft_data), out="unused", **FAST)
    data = load_sft_data(cfg, tok)
    batch = SFTCollator(tok.pad_token_id)([SFTDataset(data.examples)[i] for i in (0, 1)])
    for row, (ids, start) in enumerate(data.examples[:2]):
        prompt = tok(f"Question: {data.rows[row]['question']}\nAnswer:").input_ids
        assert start == len(prompt) and ids[:start] == prompt
        assert (batch["labels"][row, :start] == -100).all()  # the question is never learned
        assert batch["labels"][row, start: len(ids)].tolist() == ids[start:]  # the answer is
        assert (batch["labels"][row, len(ids):] == -100).all()  # nor is padding
        assert ids[-1] == tok.eos_token_id
    assert batch["example_index"].tolist() == [0, 1]


def test_too_long_prompt_is_an_error_naming_the_line(tiny_checkpoint, sft_data):
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(sft_data), out="unused", max_len=8)
    with pytest.raises(DataError, match=r"sft\.jsonl:1: the prompt alone"):
        load_sft_data(cfg, tok)


def test_trainer_follows_the_epoch_orders(tiny_checkpoint, sft_data, tmp_path):
    """Epoch e iterates order[e], batch by batch, as the curriculum asked."""
    from transformers import AutoModelForCausalLM

    from tourney.trainers.distill import training_arguments
    from tourney.trainers.kd_trainer import DistillTrainer

    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(sft_data), out=str(tmp_path), epochs=2,
                             batch_size=4)
    examples = load_sft_data(cfg, tok).examples[:8]
    orders = [[7, 6, 5, 4, 3, 2, 1, 0], [1, 3, 5, 7, 0, 2, 4, 6]]
    seen: list[list[int]] = []

    class Recording(SFTCollator):
        def __call__(self, features):
            seen.append([f["example_index"] for f in features])
            return super().__call__(features)

    args = training_arguments(cfg)
    args.save_strategy = "no"
    trainer = DistillTrainer(model=AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint)), args=args,
                             train_dataset=SFTDataset(examples), data_collator=Recording(tok.pad_token_id),
                             orders=orders)
    trainer.train()
    assert seen == [[7, 6, 5, 4], [3, 2, 1, 0], [1, 3, 5, 7], [0, 2, 4, 6]]


def test_order_file_checks(tmp_path):
    ids = ["a", "b", "c"]
    good = tmp_path / "order.json"
    good.write_text(json.dumps({"ids": ids, "epochs": [[2, 1, 0], [0, 0, 1], [1, 2, 0]]}))
    assert load_order_file(good, ids, 2) == [[2, 1, 0], [0, 0, 1]]
    (tmp_path / "bare.json").write_text("[[0, 1, 2]]")
    assert load_order_file(tmp_path / "bare.json", ids, 1) == [[0, 1, 2]]
    with pytest.raises(DataError, match="built for other data"):
        load_order_file(good, ["a", "b", "x"], 2)
    with pytest.raises(DataError, match="holds 1 epoch order"):
        load_order_file(tmp_path / "bare.json", ids, 2)
    (tmp_path / "bad.json").write_text("[[0, 1, 3]]")
    with pytest.raises(DataError, match=r"outside \[0, 3\)"):
        load_order_file(tmp_path / "bad.json", ids, 1)
    sampler = EpochOrderSampler([[2, 1, 0], [0, 1, 2]])
    sampler.set_epoch(1)
    assert list(sampler) == [0, 1, 2] and len(sampler) == 3


def test_full_sft_checkpoints_loss_eval_and_gate(full_run):
    cfg, result = full_run
    out = Path(cfg.out)
    assert [Path(c).name for c in result.checkpoints] == ["checkpoint-4", "checkpoint-8"]
    for c in result.checkpoints:  # Hugging Face layout, resumable
        for name in ("model.safetensors", "config.json", "tokenizer.json", "optimizer.pt", "trainer_state.json"):
            assert (Path(c) / name).exists(), f"{c}/{name}"
    first, second = epoch_losses(out, 2)
    assert second < first
    records = read_epochs(out)
    assert [r.epoch for r in records] == [1, 2]
    assert all(r.accuracy is not None and 0 <= r.accuracy <= 1 for r in records)
    assert all((out / "eval" / f"epoch-{e}" / "report.json").exists() for e in (1, 2))
    assert records[0].gate is None and records[1].gate is not None  # epoch 1 has nothing to compare with
    assert records[1].gate.baseline.endswith("epoch-1") and records[1].stopped == records[1].gate.failed
    run_meta = json.loads((out / "eval" / "epoch-2" / "run.json").read_text())
    assert run_meta["model"] == f"hf:{out / 'checkpoint-8'}"
    assert (out / "final" / "model.safetensors").exists() and result.merged is None


def test_resume_equals_uninterrupted(full_run, tiny_checkpoint, sft_data, tmp_path):
    """Stop after epoch 1 of 2, rerun: it resumes at epoch 2 and ends with the same weights as the
    uninterrupted (and evaluated: evaluation must not disturb the training RNG) run."""
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(sft_data), out=str(tmp_path / "run"), **FAST)
    first = train(cfg, callbacks=[StopAfterEpoch(1)], say=lambda _m: None)
    assert [Path(c).name for c in first.checkpoints] == ["checkpoint-4"]
    said: list[str] = []
    second = train(cfg, say=said.append)
    assert any("resuming from" in s and s.endswith("checkpoint-4") for s in said)
    assert [Path(c).name for c in second.checkpoints] == ["checkpoint-4", "checkpoint-8"]
    assert [r.epoch for r in second.epochs] == [1, 2]
    state = json.loads((tmp_path / "run" / "checkpoint-8" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == list(range(1, 9))
    resumed, uninterrupted = weights(tmp_path / "run" / "final"), weights(Path(full_run[1].final))
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_lora_adapters_per_epoch_and_merge(tiny_checkpoint, sft_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tourney.models.registry import load_backend
    from tourney.models.types import GenConfig

    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(sft_data), out=str(tmp_path / "run"),
                             lora=True, lora_r=8, lora_alpha=16, **{**FAST, "lr": 1e-2})
    result = train(cfg, say=lambda _m: None)
    for c in result.checkpoints:
        assert (Path(c) / "adapter_model.safetensors").exists() and not (Path(c) / "model.safetensors").exists()
    first, second = epoch_losses(tmp_path / "run", 2)
    assert second < first
    merged = Path(result.merged)
    assert merged == tmp_path / "run" / "merged" and (merged / "model.safetensors").exists()

    ids = torch.tensor([[5, 17, 42, 9, 100, 3]])
    load = lambda path: AutoModelForCausalLM.from_pretrained(str(path)).eval()  # noqa: E731
    with torch.no_grad():
        adapter_logits = PeftModel.from_pretrained(load(tiny_checkpoint), result.final).eval()(input_ids=ids).logits
        merged_logits = load(merged)(input_ids=ids).logits
        base_logits = load(tiny_checkpoint)(input_ids=ids).logits
    assert torch.allclose(adapter_logits, merged_logits, atol=1e-5)
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-4)  # training did move the adapters

    backend = load_backend(f"hf:{merged}", device="cpu")  # a plain checkpoint: hf: loads it as is
    out = backend.generate(["Question: Ava has 3 coins.\nAnswer:"], GenConfig(max_tokens=4))
    assert len(out) == 1 and out[0][0].completion_tokens >= 1

    again = merge_lora(result.final, tmp_path / "merged-again")  # the function on its own
    assert weights(again).keys() == weights(merged).keys()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error path")
def test_qlora_without_gpu_fails_before_loading(tiny_checkpoint, sft_data, tmp_path, monkeypatch):
    import transformers

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded before the QLoRA check")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_loading)
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(sft_data), out=str(tmp_path / "q"), qlora=True)
    with pytest.raises(ValueError, match="qlora .*CUDA GPU"):
        train(cfg)
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("bad, match", [
    (dict(method="kd"), "needs a teacher"),
    (dict(method="feature", teacher="t", topk=8), "applies to method kd only"),
    (dict(method="kd+feature", teacher="t", topk=8), "hidden states online"),
    (dict(attention=True), "attention matching"),
    (dict(gate=True), "needs eval_data"),
    (dict(alpha=1.5), "alpha"),
    (dict(kd_kind="kl"), "kd_kind"),
    (dict(lora_dropout=1.0), "lora_dropout"),
    (dict(epochs=0), "epochs"),
    (dict(method="feature", teacher="t", feature_layer_map={1: -1}), "layer_map"),
])
def test_config_ranges(bad, match):
    with pytest.raises(ValueError, match=match):
        DistillTrainConfig(student="s", data="d", out="o", **bad)


def test_layer_map_parsing():
    assert parse_layer_map("1:2, 2:4") == {1: 2, 2: 4} and parse_layer_map(None) is None
    with pytest.raises(ValueError, match="student:teacher"):
        parse_layer_map("1-2")


def test_resume_with_other_settings_is_refused(tmp_path):
    check_same_run(DistillTrainConfig(student="s", data="d", out=str(tmp_path), lr=5e-3))
    cfg = DistillTrainConfig(student="s", data="d", out=str(tmp_path), lr=1e-3)
    check_same_run(cfg)  # no checkpoint yet: a run that failed before training may be redone otherwise
    (tmp_path / "checkpoint-4").mkdir()
    check_same_run(DistillTrainConfig(student="s", data="d", out=str(tmp_path), lr=1e-3, eval_limit=5))
    with pytest.raises(ValueError, match="lr: recorded 0.001, now 0.002"):
        check_same_run(DistillTrainConfig(student="s", data="d", out=str(tmp_path), lr=2e-3))


def test_gate_stops_training_when_an_epoch_is_worse(tiny_checkpoint, sft_data, tmp_path, monkeypatch):
    """The callback's control flow: epoch 2 judged significantly worse stops a 3-epoch run there."""
    import tourney.trainers.epoch_eval as ee

    def fake_eval(cfg, ckpt, eval_dir, model=None, tokenizer=None, **_shard):
        eval_dir.mkdir(parents=True)
        (eval_dir / "report.json").write_text("{}")
        return 0.5

    def fake_gate(baseline, candidate, cfg):
        return ee.GateVerdict(baseline=str(baseline), failed=True, delta=-0.5, p_value=0.001, worse_types=["x"])

    monkeypatch.setattr(ee, "evaluate_checkpoint", fake_eval)
    monkeypatch.setattr(ee, "gate_against", fake_gate)
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(sft_data), out=str(tmp_path / "run"),
                             eval_data=str(sft_data), gate=True, **{**FAST, "epochs": 3})
    said: list[str] = []
    result = train(cfg, say=said.append)
    assert [Path(c).name for c in result.checkpoints] == ["checkpoint-4", "checkpoint-8"]
    assert result.stopped_early and [r.stopped for r in result.epochs] == [False, True]
    assert any("significantly worse than epoch 1" in s and "stopping" in s for s in said)


def test_cli_train_and_its_errors(tiny_checkpoint, sft_data, tmp_path):
    from click.testing import CliRunner

    from tourney.cli.main import main

    runner = CliRunner()
    base = ["distill", "train", "--student", str(tiny_checkpoint), "--data", str(sft_data)]
    res = runner.invoke(main, [*base, "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "16"])
    assert res.exit_code == 0, res.output
    assert "epoch 1: loss" in res.output and (tmp_path / "run" / "checkpoint-2" / "model.safetensors").exists()
    res = runner.invoke(main, [*base, "--out", str(tmp_path / "bad"), "--method", "kd"])
    assert res.exit_code == 2 and "error: method 'kd' needs a teacher" in res.output
    if not torch.cuda.is_available():
        res = runner.invoke(main, [*base, "--out", str(tmp_path / "q"), "--qlora"])
        assert res.exit_code == 2 and "error: qlora" in res.output
