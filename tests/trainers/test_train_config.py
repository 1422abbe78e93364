"""The training configuration is written once: every DistillTrainConfig field can be set from the
command line and from a recipe file, flags override the file, unknown keys are errors naming the
file and the key, and the fields that name a TrainingArguments field reach it."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tourney.trainers.distill as distill_mod
from tourney.cli.config_options import field_flags
from tourney.cli.distill import RUN_OPTIONS, TRAIN_SECTIONS
from tourney.cli.main import main
from tourney.errors import ConfigError
from tourney.trainers.distill_config import DistillTrainConfig, training_argument_fields
from tourney.trainers.recipe import build_config

FIELDS = DistillTrainConfig.__pydantic_fields__
BASE = {"student": "S", "data": "D.jsonl", "out": "runs/O", "teacher": "T"}

# A value other than the default for every field, and what else it needs to be valid.
SAMPLES: dict[str, tuple[Any, dict[str, Any]]] = {
    "student": ("mini-student", {}), "data": ("x.jsonl", {}), "out": ("runs/x", {}), "teacher": ("mini-teacher", {}),
    "method": ("kd", {}), "chat": (True, {}),
    "lora": (True, {}), "qlora": (True, {}), "lora_r": (4, {}), "lora_alpha": (8.0, {}), "lora_dropout": (0.1, {}),
    "lora_targets": (("q_proj", "v_proj"), {}),
    "epochs": (2, {}), "lr": (3e-3, {}), "batch_size": (4, {}), "grad_accum": (2, {}), "max_len": (128, {}),
    "warmup_ratio": (0.05, {}), "weight_decay": (0.01, {}), "lr_scheduler": ("linear", {}),
    "max_grad_norm": (0.5, {}),
    "alpha": (0.3, {}), "kd_temperature": (2.0, {}), "kd_kind": ("jsd", {}), "beta": (0.2, {}),
    "topk": (8, {"method": "kd"}), "topk_store": ("store", {}), "teacher_hash": ("abc", {}),
    "teacher_concurrency": (3, {}), "kd_chunk_size": (64, {}),
    "feature_layer_map": ({1: 2, 2: 4}, {}), "feature_loss": ("cosine", {}), "feature_weight": (0.1, {}),
    "attention": (True, {"method": "feature"}), "attention_weight": (0.5, {}),
    "seed": (7, {}), "order_file": ("order.json", {}),
    "eval_data": ("dev.jsonl", {}), "eval_limit": (5, {}), "eval_max_tokens": (32, {}), "eval_batch_size": (4, {}),
    "gate": (True, {"eval_data": "dev.jsonl"}), "gate_stop": (False, {}), "gate_alpha": (0.1, {}),
    "gate_min_delta": (0.02, {}),
    "logging_steps": (1, {}), "report_to": ("tensorboard", {}), "bf16": (False, {}),
    "gradient_checkpointing": (True, {}), "deterministic": (True, {}), "merge": (False, {}),
    "save_total_limit": (2, {}),
    "qat": ("q4_0", {}),
}


def _as_flags(values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, value in values.items():
        flag = field_flags(name, FIELDS[name])[0]
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            out += [flag, ",".join(value)]
        elif isinstance(value, dict):
            out += [flag, ",".join(f"{k}:{v}" for k, v in value.items())]
        else:
            out += [flag, str(value)]
    return out


@pytest.fixture
def captured(monkeypatch) -> list[DistillTrainConfig]:
    """`distill train` up to the config: train() records what it was given instead of training."""
    seen: list[DistillTrainConfig] = []

    def fake_train(cfg, **_kw):
        seen.append(cfg)
        return distill_mod.TrainResult(out=cfg.out, final="f", merged=None, checkpoints=[], epochs=[],
                                       stopped_early=False)

    monkeypatch.setattr(distill_mod, "train", fake_train)
    return seen


def _run(args: list[str]):
    return CliRunner().invoke(main, ["distill", "train", *args])


def test_samples_cover_every_field_with_a_non_default_value():
    assert set(SAMPLES) == set(FIELDS)
    defaults = DistillTrainConfig(**BASE)
    for name, (value, _) in SAMPLES.items():
        if name not in BASE:
            assert getattr(defaults, name) != value, name


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_field_is_settable_from_the_command_line(name, captured):
    value, needs = SAMPLES[name]
    values = {**{k: v for k, v in BASE.items() if k != name}, **needs, name: value}
    res = _run(_as_flags(values))
    assert res.exit_code == 0, res.output
    assert getattr(captured[-1], name) == value


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_field_is_settable_from_a_recipe_file(name, captured, tmp_path):
    import yaml

    value, needs = SAMPLES[name]
    values = {**BASE, **needs, name: list(value) if isinstance(value, tuple) else value}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(values))
    res = _run(["--config", str(recipe)])
    assert res.exit_code == 0, res.output
    assert getattr(captured[-1], name) == value


def test_flags_override_the_file_which_overrides_the_defaults(captured, tmp_path):
    recipe = tmp_path / "kd.toml"
    recipe.write_text('student = "S"\ndata = "D"\nout = "O"\nteacher = "T"\nmethod = "kd"\n'
                      'epochs = 5\nlearning_rate = 1e-3\nlora = true\n')
    res = _run(["--config", str(recipe), "--epochs", "2", "--no-lora"])
    assert res.exit_code == 0, res.output
    cfg = captured[-1]
    assert (cfg.epochs, cfg.lr, cfg.lora, cfg.method) == (2, 1e-3, False, "kd")  # flag, file, flag, file
    assert cfg.batch_size == 8 and cfg.kd_temperature == 1.0  # defaults where neither says


def test_unknown_key_is_an_error_naming_file_and_key(captured, tmp_path):
    recipe = tmp_path / "kd.yaml"
    recipe.write_text("student: S\ndata: D\nout: O\nepocs: 3\n")
    res = _run(["--config", str(recipe)])
    assert res.exit_code == 2 and not captured
    assert f"error: {recipe}: unknown key 'epocs'; valid keys: student, data" in res.output


@pytest.mark.parametrize("text, match", [
    ("student: S\ndata: D\nout: O\nepochs: 0\n", "key 'epochs': Input should be greater than or equal to 1"),
    ("student: S\ndata: D\nout: O\nlr: 1e-4\nlearning_rate: 1e-3\n", "'lr' and 'learning_rate' both set lr"),
    ("student: S\ndata: [oops\n", "not valid YAML"),
    ("- student\n", "expected a mapping"),
    ("data: D\nout: O\n", r"--student is required \(or 'student' in "),
])
def test_bad_recipe_files(text, match, tmp_path, captured):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    res = _run(["--config", str(recipe)])
    assert res.exit_code == 2 and not captured, res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1, res.output
    assert __import__("re").search(match, res.output), res.output


def test_bad_flags_name_the_flag(captured):
    res = _run([*_as_flags(BASE), "--lora-dropout", "1.5"])
    assert res.exit_code == 2 and "error: --lora-dropout: Input should be less than 1" in res.output
    res = _run([*_as_flags(BASE), "--layer-map", "1-2"])
    assert res.exit_code == 2 and "error: --feature-layer-map: layer map '1-2': expected student:teacher" in res.output
    res = _run([*_as_flags(BASE), "--method", "feature", "--attention", "--layer-map", "0:0"])
    assert res.exit_code == 2 and "cannot map layer 0" in res.output
    assert not captured


def test_kd_temperature_is_renamed_and_defaults_to_one(captured):
    assert FIELDS["kd_temperature"].default == 1.0
    res = _run([*_as_flags(BASE), "--temperature", "2"])
    assert res.exit_code == 2 and "No such option" in res.output and "--kd-temperature" in res.output  # click's hint


def test_training_argument_aliases_as_trl_spells_them(captured):
    res = _run([*_as_flags(BASE), "--learning_rate", "0.002", "--num_train_epochs", "4",
                "--per_device_train_batch_size", "2"])
    assert res.exit_code == 0, res.output
    assert (captured[-1].lr, captured[-1].epochs, captured[-1].batch_size) == (0.002, 4, 2)


def test_every_field_is_documented_and_in_one_help_section():
    listed = [n for names in TRAIN_SECTIONS.values() for n in names if n not in RUN_OPTIONS]
    assert sorted(listed) == sorted(FIELDS)  # each field exactly once
    assert all(info.description for info in FIELDS.values())
    res = CliRunner().invoke(main, ["distill", "train", "--help"])
    assert all(f"{title}:" in res.output for title in TRAIN_SECTIONS)


def test_mapped_fields_reach_training_arguments(tmp_path):
    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    mapping = training_argument_fields()
    spelled = {t: t if t in known else distill_mod.OLDER_NAMES.get(t) for ts in mapping.values() for t in ts}
    assert all(s in known for s in spelled.values()), spelled
    cfg = build_config(DistillTrainConfig, {"student": "S", "data": "D", "out": str(tmp_path), "lr": 2e-3, "epochs": 2,
                                            "batch_size": 3, "grad_accum": 2, "weight_decay": 0.1, "seed": 5,
                                            "lr_scheduler": "linear", "max_grad_norm": 0.3,
                                            "save_total_limit": 2, "warmup_ratio": 0.1, "report_to": "tensorboard",
                                            "deterministic": True, "logging_steps": 3})
    args = distill_mod.training_arguments(cfg)
    for name, targets in mapping.items():
        if name in ("bf16", "gradient_checkpointing"):
            continue  # resolved for the machine (auto bf16; QLoRA turns checkpointing on itself)
        want = [cfg.report_to] if name == "report_to" else getattr(cfg, name)
        for target in targets:
            got = getattr(args, spelled[target])
            assert getattr(got, "value", got) == want, (name, target, got, want)


def test_config_errors_are_config_errors():
    with pytest.raises(ConfigError, match="--epochs: Input should be greater than or equal to 1"):
        build_config(DistillTrainConfig, {**BASE, "epochs": 0})


def test_recorded_config_with_the_old_temperature_name_still_resumes(tmp_path):
    from tourney.trainers.distill_config import CONFIG_FILE, check_same_run

    cfg = DistillTrainConfig(**{**BASE, "out": str(tmp_path)})
    old = cfg.to_dict()
    old["temperature"] = old.pop("kd_temperature")
    (tmp_path / CONFIG_FILE).write_text(json.dumps(old))
    (tmp_path / "checkpoint-1").mkdir()
    check_same_run(cfg)  # no complaint: the old name reads as the new one
    with pytest.raises(ConfigError, match="kd_temperature: recorded 1.0, now 2.0"):
        (tmp_path / CONFIG_FILE).write_text(json.dumps(old))
        check_same_run(DistillTrainConfig(**{**BASE, "out": str(tmp_path), "kd_temperature": 2.0}))


def test_tensorboard_writer_and_one_progress_bar(tiny_checkpoint, tmp_path):
    """A real (tiny) run with --report-to tensorboard: the event file holds the loss, and the
    output is our one bar with loss and tokens/s, not the Trainer's printed dicts or tqdm."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.trainers.test_sft import write_sft

    data = write_sft(tmp_path / "sft.jsonl", n=16)
    out = tmp_path / "run"
    res = _run(["--student", str(tiny_checkpoint), "--data", str(data), "--out", str(out), "--epochs", "1",
                "--batch-size", "4", "--logging-steps", "1", "--lr", "3e-3", "--report-to", "tensorboard"])
    assert res.exit_code == 0, res.output
    assert "train" in res.output and "tok/s" in res.output and "loss " in res.output
    assert "{'loss'" not in res.output and "it/s]" not in res.output
    events = list(Path(out, "runs").rglob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert len(losses) == 4 and all(v > 0 for v in losses)


def test_config_names_match_the_trainer_and_the_cli_stays_light():
    import subprocess
    import sys

    from tourney.trainers.distill_config import KD_KINDS, LR_SCHEDULERS
    from tourney.trainers.losses import KINDS
    from transformers import SchedulerType

    assert KD_KINDS == KINDS
    assert set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}
    # Building the options imports no torch: `tourney --help` stays fast.
    code = "import sys, tourney.cli.main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"
