"""What happens at each epoch's end after the Trainer has saved its checkpoint: evaluate it with
the harness, optionally gate it against the previous epoch, and append one line to OUT/epochs.jsonl.

The evaluation reuses the model in memory (no reload) through HFBackend(model=, tokenizer=).
Under FSDP or DeepSpeed the model in memory is sharded, so the saved checkpoint is loaded from
disk instead (on every rank, onto its own device).

With several processes (torchrun / accelerate), the evaluation is sharded: the question file is
cut into the same chunks a single-process run makes (eval_batch_size questions each), rank r
answers chunks r, r + W, r + 2W, ... into eval/epoch-N/shards/rank-r/, and the rows travel to
rank 0 with one all_gather_object. Rank 0 writes the merged eval/epoch-N/ run (results in
question order, reports) and applies the gate; its verdict is broadcast so every process stops
together. Every rank works about 1/W of the evaluation and waits at most for the slowest shard,
where it used to wait in a collective for rank 0's whole evaluation, which could outlast
ddp_timeout. Chunks keep their single-process composition, so padding and therefore greedy
outputs are the same as an unsharded evaluation's.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import TrainerCallback

from tourney.trainers.distill_config import DistillTrainConfig

EPOCHS_FILE = "epochs.jsonl"


@dataclass(frozen=True)
class GateVerdict:
    baseline: str  # previous epoch's eval run directory
    failed: bool  # significantly worse overall or on a type (harness.regress's rule)
    delta: float  # overall accuracy change, candidate - baseline
    p_value: float  # overall exact McNemar p-value
    worse_types: list[str]  # types flagged significantly worse


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    step: int  # optimizer steps so far
    checkpoint: str  # checkpoint-N folder
    train_loss: float | None  # mean of the losses logged during this epoch
    accuracy: float | None = None  # overall accuracy of the eval run (None: no eval_data)
    eval_dir: str | None = None
    gate: GateVerdict | None = None
    stopped: bool = False  # training stopped here because the gate failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_epochs(out: str | Path) -> list[EpochRecord]:
    """OUT/epochs.jsonl, last record per epoch (a rerun epoch replaces its earlier line)."""
    path = Path(out) / EPOCHS_FILE
    if not path.exists():
        return []
    latest: dict[int, EpochRecord] = {}
    for line in path.read_text(encoding="utf-8").split("\n"):  # "\n" only: see harness.jsonl
        if line.strip():
            d = json.loads(line)
            d["gate"] = GateVerdict(**d["gate"]) if d.get("gate") else None
            latest[d["epoch"]] = EpochRecord(**d)
    return [latest[e] for e in sorted(latest)]


def _epoch_loss(log_history: list[dict[str, Any]], epoch: int) -> float | None:
    losses = [h["loss"] for h in log_history if "loss" in h and epoch - 1 < h.get("epoch", 0) <= epoch + 1e-6]
    return sum(losses) / len(losses) if losses else None


class EpochEndCallback(TrainerCallback):
    def __init__(self, cfg: DistillTrainConfig, say: Callable[[str], None] = print) -> None:
        self.cfg, self.say = cfg, say
        self.out = Path(cfg.out)

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_log = True  # so every epoch's losses end at its boundary in log_history
        return control

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        # A run killed between saving a checkpoint and recording it: the resumed model holds that
        # checkpoint's weights, so evaluate it now (the gate's verdict is recorded, not acted on).
        # Rank 0 decides, as only it is sure to see epochs.jsonl; every rank then evaluates its shard.
        epoch = round(state.epoch or 0)
        missing = bool(state.global_step) and state.is_world_process_zero and \
            epoch not in {r.epoch for r in read_epochs(self.out)}
        if _broadcast_from_main(missing):
            self._finish_epoch(args, state, model, processing_class)

    def on_save(self, args, state, control, model=None, processing_class=None, **kwargs):
        record = self._finish_epoch(args, state, model, processing_class)
        if _broadcast_from_main(record is not None and record.stopped):
            control.should_training_stop = True
        return control

    def _finish_epoch(self, args, state, model, tokenizer) -> EpochRecord | None:
        """Evaluate (every rank, its shard) and record the epoch (rank 0, which returns the record)."""
        epoch = round(state.epoch or 0)
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        accuracy = eval_dir = gate = None
        stopped = False
        if self.cfg.eval_data:
            eval_dir = self.out / "eval" / f"epoch-{epoch}"
            sharded = bool(args.fsdp) or bool(args.deepspeed)
            rank, world = _rank_world()
            accuracy = evaluate_checkpoint(self.cfg, ckpt, eval_dir, None if sharded else model, tokenizer,
                                           rank=rank, world=world)
        if not state.is_world_process_zero:
            return None
        if accuracy is not None:
            self.say(f"epoch {epoch}: accuracy {accuracy:.4f} on {self.cfg.eval_data} ({eval_dir})")
            previous = self.out / "eval" / f"epoch-{epoch - 1}"
            if self.cfg.gate and (previous / "report.json").exists():
                gate = gate_against(previous, eval_dir, self.cfg)
                stopped = gate.failed and self.cfg.gate_stop
                verdict = "significantly worse" if gate.failed else "not significantly worse"
                self.say(f"epoch {epoch}: {verdict} than epoch {epoch - 1} (delta {gate.delta:+.4f}, "
                         f"p {gate.p_value:.3g})" + ("; stopping" if stopped else ""))
        record = EpochRecord(epoch=epoch, step=state.global_step, checkpoint=str(ckpt),
                             train_loss=_epoch_loss(state.log_history, epoch), accuracy=accuracy,
                             eval_dir=None if eval_dir is None else str(eval_dir), gate=gate, stopped=stopped)
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / EPOCHS_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record.to_dict()) + "\n")
        return record


def evaluate_checkpoint(cfg: DistillTrainConfig, ckpt: Path, eval_dir: Path, model: Any = None,
                        tokenizer: Any = None, *, rank: int = 0, world: int = 1) -> float | None:
    """Run the harness on the checkpoint (`hf:` spec), with the in-memory model when given; returns
    overall accuracy on rank 0 (None on the others). With world > 1 every rank must call this: each
    answers its shard of the chunks (see the module docstring). Training state is left as found:
    train/eval mode, padding side, RNG."""
    from tourney.harness.questions import load_questions
    from tourney.harness.runner import EvalConfig, run_eval
    from tourney.models.hf_backend import HFBackend
    from tourney.models.registry import parse_spec

    spec = parse_spec(f"hf:{ckpt}")
    was_training = model.training if model is not None else False
    padding_side = getattr(tokenizer, "padding_side", None)
    cuda = torch.cuda.is_available()
    if model is not None:
        device = str(next(model.parameters()).device)
    else:  # each process on its own GPU, not all of them on cuda:0
        device = f"cuda:{torch.cuda.current_device()}" if cuda else "cpu"
    # batch_size in model_args: the forward batch pads, so it is part of the run's identity.
    ecfg = EvalConfig(model=spec.raw, data=cfg.eval_data, out=str(eval_dir), limit=cfg.eval_limit,
                      max_tokens=cfg.eval_max_tokens, chat=cfg.chat,
                      model_args={"device": device, "batch_size": cfg.eval_batch_size})
    questions = load_questions(cfg.eval_data, limit=cfg.eval_limit)
    if world > 1 and model is None:
        import torch.distributed as dist

        dist.barrier()  # the checkpoint every rank is about to load is complete on disk
    devices = [torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):  # generation must not shift the training RNG
        backend = HFBackend(spec, device=device, batch_size=cfg.eval_batch_size, model=model,
                            tokenizer=tokenizer if model is not None else None)
        try:
            if world == 1:
                report = run_eval(ecfg, backend, questions=questions)
            else:
                c = cfg.eval_batch_size
                chunks = [questions[i: i + c] for i in range(0, len(questions), c)]
                mine = [q for j, chunk in enumerate(chunks) if j % world == rank for q in chunk]
                shard = Path(eval_dir) / "shards" / f"rank-{rank}"
                rows = []
                if mine:
                    run_eval(ecfg.model_copy(update={"out": str(shard)}), backend, questions=mine)
                    rows = (shard / "results.jsonl").read_text(encoding="utf-8").split("\n")  # "\n" only: harness.jsonl
                gathered = _all_gather(rows, world)
                report = _merge_shards(ecfg, backend, questions, gathered) if rank == 0 else None
        finally:
            backend.close()
            if padding_side is not None:
                tokenizer.padding_side = padding_side
            if model is not None:
                model.train(was_training)
    return None if report is None else float(report["overall"]["accuracy"] or 0.0)


def _merge_shards(ecfg: Any, backend: Any, questions: Any, shard_lines: list[list[str]]) -> dict[str, Any]:
    """Rank 0: the shards' rows become the run's results.jsonl; run_eval then finds every chunk
    answered (it calls the backend only for rows a shard failed) and writes the reports."""
    import os

    from tourney.harness.runner import run_eval

    out = Path(ecfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.jsonl.tmp"
    tmp.write_text("".join(line + "\n" for lines in shard_lines for line in lines if line.strip()), encoding="utf-8")
    os.replace(tmp, out / "results.jsonl")
    return run_eval(ecfg, backend, questions=questions)


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(obj: Any, world: int) -> list[Any]:
    import torch.distributed as dist

    box: list[Any] = [None] * world
    dist.all_gather_object(box, obj)
    return box


def gate_against(baseline: Path, candidate: Path, cfg: DistillTrainConfig) -> GateVerdict:
    from tourney.harness.regress import RegressConfig, compare_runs

    result = compare_runs(baseline, candidate, RegressConfig(alpha=cfg.gate_alpha, min_delta=cfg.gate_min_delta))
    return GateVerdict(baseline=str(baseline), failed=result.failed, delta=result.overall.delta,
                       p_value=result.overall.p_value,
                       worse_types=[t for t, g in result.by_type.items() if g.significantly_worse])


def _broadcast_from_main(flag: bool) -> bool:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [flag]
        dist.broadcast_object_list(box, src=0)
        return bool(box[0])
    return flag
