"""The training entry point under torchrun: 2 CPU processes (gloo), unchanged command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tourney.harness.synthetic import SynthConfig, generate, write_jsonl


def _easy_rows(n: int) -> list[dict]:
    rows = [r for r in generate(SynthConfig(n=4 * n, seed=21)) if r["type"] == "one_step"]
    assert len(rows) >= n
    return rows[:n]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tourney.cli.distill", "train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "kd+feature"])
def test_torchrun_two_processes(tiny_checkpoint, tmp_path, method):
    data = write_jsonl(_easy_rows(64), tmp_path / "sft.jsonl")
    out = tmp_path / "run"
    args = ["--student", str(tiny_checkpoint), "--data", str(data), "--out", str(out), "--epochs", "3",
            "--batch-size", "8", "--lr", "3e-3", "--logging-steps", "1", "--method", method]
    if method != "sft":  # the student as its own teacher: exercises the teacher and projector paths
        args += ["--teacher", str(tiny_checkpoint), "--alpha", "0.5"]
    proc = _torchrun(args, Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-4000:]

    # 64 examples, 8 per process, 2 processes: 4 optimizer steps per epoch.
    ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in ckpts] == ["checkpoint-4", "checkpoint-8", "checkpoint-12"]
    assert (out / "final" / "model.safetensors").exists()
    history = json.loads((ckpts[-1] / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 12
    assert sum(losses[-4:]) < sum(losses[:4])  # last epoch below the first
    if method != "sft":
        assert all((p / "feature_projector.safetensors").exists() for p in ckpts)
    records = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]  # written once, by the main process


@pytest.mark.slow
def test_torchrun_evaluates_each_epoch_sharded_across_ranks(tiny_checkpoint, tmp_path):
    """Both ranks answer their chunks of the per-epoch evaluation (neither waits in a collective for
    the other's whole evaluation), and the merged run equals a single-process evaluation."""
    from tourney.harness.rundir import read_results
    from tourney.trainers.distill_config import DistillTrainConfig
    from tourney.trainers.epoch_eval import evaluate_checkpoint

    data = write_jsonl(_easy_rows(48), tmp_path / "sft.jsonl")
    out = tmp_path / "run"
    # 40 questions in chunks of 16 (eval_batch_size's default): rank 0 answers chunks 0 and 2, rank 1 chunk 1.
    args = ["--student", str(tiny_checkpoint), "--data", str(data), "--out", str(out), "--epochs", "1",
            "--batch-size", "8", "--lr", "3e-3", "--eval-data", str(data), "--eval-limit", "40",
            "--eval-max-tokens", "6"]
    proc = _torchrun(args, Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-4000:]
    epoch = out / "eval" / "epoch-1"
    shards = {r: read_results(epoch / "shards" / f"rank-{r}" / "results.jsonl") for r in (0, 1)}
    assert (len(shards[0]), len(shards[1])) == (24, 16)
    merged = read_results(epoch / "results.jsonl")
    ids = [r["id"] for r in map(json.loads, data.read_text().splitlines()[:40])]
    assert [r.id for r in merged] == ids  # question order
    assert (epoch / "report.json").exists()
    [record] = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert record["accuracy"] == json.loads((epoch / "report.json").read_text())["overall"]["accuracy"]

    ckpt = Path(record["checkpoint"])
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(data), out=str(tmp_path / "x"),
                             eval_data=str(data), eval_limit=40, eval_max_tokens=6)
    evaluate_checkpoint(cfg, ckpt, tmp_path / "alone")
    alone = read_results(tmp_path / "alone" / "results.jsonl")
    assert [r.output for r in alone] == [r.output for r in merged]
