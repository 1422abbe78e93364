"""The reference distillation recipe: it loads, it describes the reference pair, and it dry-runs
(everything built, one optimizer step) on the miniature pair through the same train() path, with
the teacher served by the vLLM-shaped server on 127.0.0.1."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.trainers.test_sft import write_sft
from tourney.errors import ConfigError
from tourney.models.reference import load_reference
from tourney.trainers.distill_recipe import REFERENCE_ACCELERATE, REFERENCE_DISTILL, load_recipe


def test_recipe_is_the_reference_setup():
    cfg = load_recipe()
    ref = load_reference()
    assert cfg.student == ref.student.model
    assert cfg.served_teacher and cfg.teacher == ref.teacher.spec  # the teacher vllm serves, at its URL
    assert cfg.method == "kd" and cfg.topk == 64 and cfg.kd_chunk_size
    assert cfg.uses_lora and not cfg.qlora and cfg.gradient_checkpointing and cfg.eval_data and cfg.gate
    launch = yaml.safe_load(REFERENCE_ACCELERATE.read_text())
    assert launch["distributed_type"] == "FSDP" and launch["num_processes"] == 8  # one node of 8 GPUs
    layer = launch["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"]
    from transformers.models.qwen3_moe import modeling_qwen3_moe  # Qwen3-30B-A3B's architecture

    assert hasattr(modeling_qwen3_moe, layer)
    assert cfg.batch_size * cfg.grad_accum * launch["num_processes"] == 128


def test_a_key_that_is_no_field_is_refused(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text('student = "s"\ndata = "d"\nout = "o"\nlearning_rat = 1e-4\n')
    with pytest.raises(ConfigError, match="unknown key 'learning_rat'"):
        load_recipe(bad)
    bad.write_text('student = "s"\ndata = "d"\nout = "o"\nlr = 7\n')
    with pytest.raises(ConfigError, match="key 'lr'"):
        load_recipe(bad)


def test_the_cli_reads_the_recipe_as_it_is(tmp_path, monkeypatch):
    """`distill train --config reference_distill.toml` builds the same config as load_recipe."""
    from click.testing import CliRunner

    import tourney.trainers.distill as distill
    from tourney.cli.main import main

    seen = []

    def fake_train(cfg, **kw):  # the configuration only: nothing is loaded or trained
        seen.append((cfg, kw))
        return distill.TrainResult(out=cfg.out, final="", merged=None, checkpoints=[], epochs=[], stopped_early=False)

    monkeypatch.setattr(distill, "train", fake_train)
    res = CliRunner().invoke(main, ["distill", "train", "--config", str(REFERENCE_DISTILL), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert seen[0][0] == load_recipe() and seen[0][1]["dry_run"] is True


def test_dry_run_flag_runs_one_step(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from tourney.cli.main import main

    data = write_sft(tmp_path / "sft.jsonl")
    res = CliRunner().invoke(main, ["distill", "train", "--student", str(tiny_checkpoint), "--data", str(data),
                                    "--out", str(tmp_path / "run"), "--batch-size", "4", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "dry run: 4 examples, 1 optimizer step(s)" in res.output
    assert [p.name for p in (tmp_path / "run" / "dry-run").glob("checkpoint-*")] == ["checkpoint-1"]
    assert not list((tmp_path / "run").glob("checkpoint-*"))  # the real run's folder stays empty
    again = CliRunner().invoke(main, ["distill", "train", "--student", str(tiny_checkpoint), "--data", str(data),
                                      "--out", str(tmp_path / "run"), "--batch-size", "2", "--dry-run"])
    assert again.exit_code == 0, again.output  # a changed config, run afresh: not refused, not resumed
    assert "dry run: 2 examples, 1 optimizer step(s)" in again.output


@pytest.mark.slow
@pytest.mark.integration
def test_reference_recipe_dry_runs_on_the_miniature_pair(mini_student, mini_teacher, tmp_path):
    from tests.vllm_shaped_server import vllm_shaped_server
    from tourney.harness.synthetic import SynthConfig, generate, write_jsonl
    from tourney.trainers.distill import train
    from tourney.trainers.offline_logits import TopKStore

    data = write_sft(tmp_path / "sft.jsonl", n=40)
    dev = write_jsonl(generate(SynthConfig(n=8, seed=3)), tmp_path / "dev.jsonl")
    with vllm_shaped_server(mini_teacher, alias="Qwen/Qwen3-235B-A22B", max_logprobs=64) as server:
        # The miniature pair and this machine in place of the reference ones; all else as written.
        cfg = load_recipe(student=str(mini_student), teacher=server.spec(), data=str(data), out=str(tmp_path / "run"),
                          eval_data=str(dev), eval_max_tokens=16, max_len=256, bf16=None)
        said: list[str] = []
        result = train(cfg, say=said.append, dry_run=True)
        served = server.stats()["requests"]
    out = Path(result.out)
    assert out == tmp_path / "run" / "dry-run"
    n = cfg.batch_size * cfg.grad_accum  # one optimizer step on one process: 16 sequences
    store = TopKStore.open(out / "topk-k64")
    assert store.num_examples == n and served >= n and store.k == 64
    assert json.loads((out / "topk-k64" / "meta.json").read_text())["source"]["tokenizer_check"] == "match"
    assert [Path(c).name for c in result.checkpoints] == ["checkpoint-1"]
    assert (Path(result.final) / "adapter_config.json").exists() and result.merged is not None  # LoRA, merged
    [epoch] = result.epochs
    assert epoch.step == 1 and epoch.accuracy is not None and epoch.train_loss is not None
    assert any(s.startswith(f"dry run: {n} examples, 1 optimizer step(s)") for s in said)
    assert not list((tmp_path / "run").glob("checkpoint-*"))
