"""The supervised half of student training: data, epoch order, student loading (full, LoRA, QLoRA).

Examples are tokenised exactly as the miniature pair was pretrained (trainers.pretrain:
"Question: {q}\\nAnswer:" + " " + solution + EOS) and only answer tokens carry labels, so the
student learns the teacher's reasoning, not the questions. The order each epoch sees comes from
the curriculum (one index list per epoch) through EpochOrderSampler, which the Trainer's
dataloader calls set_epoch on: epoch e iterates order[e] whatever process or resume it runs in.
"""
from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from tourney.errors import ConfigError, DataError
from tourney.trainers.distill_config import DistillTrainConfig
from tourney.trainers.pretrain import encode_examples, make_batch

log = logging.getLogger(__name__)


def resolve_checkpoint(spec: str) -> str:
    """A model as the trainer loads it: mini aliases and `hf:` prefixes resolve to their target;
    an existing folder becomes absolute (LoRA adapters record it as their base)."""
    from tourney.models.registry import ALIASES

    target = ALIASES.get(spec.strip(), spec.strip()).removeprefix("hf:")
    return str(Path(target).resolve()) if Path(target).exists() else target


def check_environment(cfg: DistillTrainConfig) -> None:
    """Fail before anything is loaded when the run cannot work on this machine."""
    if cfg.qlora:
        if not torch.cuda.is_available():
            raise ConfigError("qlora quantises the student to 4 bits with bitsandbytes, which needs a CUDA GPU and "
                              "none is visible; use lora (a full-precision base) on this machine instead")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("qlora needs the bitsandbytes package, which is not installed "
                              "(pip install bitsandbytes); or use lora without quantisation")
    writer = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(cfg.report_to)
    if writer and importlib.util.find_spec(writer) is None and not (
            writer == "tensorboard" and importlib.util.find_spec("tensorboardX")):
        raise ConfigError(f"report_to {cfg.report_to} needs the {writer} package, which is not installed "
                          f"(pip install {writer}); or use --report-to none")


# -- data -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SFTData:
    rows: list[dict[str, Any]]  # read_sft_jsonl rows (id, question, solution, source, ...)
    examples: list[tuple[list[int], int]]  # (token ids, index of the first answer token) per row
    truncated: int  # examples cut to max_len


def load_sft_data(cfg: DistillTrainConfig, tokenizer: Any) -> SFTData:
    """Read and tokenise cfg.data; answers longer than max_len are cut, prompts that leave no
    room for a single answer token are an error naming the line."""
    from tourney.trainers.dataset import read_sft_jsonl

    rows = read_sft_jsonl(cfg.data)
    examples, truncated = [], 0
    for row, (ids, start) in zip(rows, encode_examples(tokenizer, rows, chat=cfg.chat)):
        if start >= cfg.max_len:
            raise DataError(f"{row['source']}: the prompt alone is {start} tokens, which leaves no answer token "
                            f"within max_len={cfg.max_len}; raise max_len or shorten the question")
        if len(ids) > cfg.max_len:
            ids, truncated = ids[: cfg.max_len], truncated + 1
        examples.append((ids, start))
    if truncated:
        log.warning("%d of %d examples were cut to max_len=%d tokens", truncated, len(rows), cfg.max_len)
    return SFTData(rows, examples, truncated)


class SFTDataset(torch.utils.data.Dataset):
    """Item i is example i; its index travels with it so offline teacher rows can be found."""

    def __init__(self, examples: Sequence[tuple[list[int], int]]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids, start = self.examples[i]
        return {"input_ids": ids, "start": start, "example_index": i}


@dataclass
class SFTCollator:
    """make_batch's right-padded batch plus `example_index` (B,), and the teacher's top-k rows
    (teacher_topk_ids / teacher_topk_logprobs, B x S x k) when an offline store is given."""

    pad_id: int
    store: Any = None  # trainers.offline_logits.TopKStore, read by example index

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = make_batch([(f["input_ids"], f["start"]) for f in features], self.pad_id)
        index = [int(f["example_index"]) for f in features]
        batch["example_index"] = torch.tensor(index, dtype=torch.long)
        if self.store is not None:
            from tourney.trainers.offline_logits import collate_topk

            top = collate_topk([self.store.get(i) for i in index], batch["labels"], self.store.k)
            batch["teacher_topk_ids"], batch["teacher_topk_logprobs"] = top.ids, top.logprobs
        return batch


# -- epoch order ----------------------------------------------------------------------------

def epoch_orders(cfg: DistillTrainConfig, rows: Sequence[dict[str, Any]]) -> list[list[int]]:
    """One index list per epoch: from cfg.order_file, else a seeded shuffle per epoch."""
    from tourney.trainers.curriculum import CurriculumConfig, order_examples

    if cfg.order_file is None:
        return order_examples(rows, CurriculumConfig(order="random", seed=cfg.seed), cfg.epochs)
    return load_order_file(cfg.order_file, [str(r["id"]) for r in rows], cfg.epochs)


def load_order_file(path: str | Path, ids: Sequence[str], epochs: int) -> list[list[int]]:
    """Read `tourney distill curriculum`'s JSON ({"ids", "epochs", ...}) or a bare list of lists."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: order file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e.msg} at line {e.lineno}); expected a curriculum order file") from None
    if isinstance(raw, dict):
        if "ids" in raw and [str(i) for i in raw["ids"]] != list(ids):
            raise DataError(f"{path}: built for other data (its example ids differ from the training file's); "
                            "rerun `tourney distill curriculum` on this data")
        raw = raw.get("epochs")
    n = len(ids)
    if not isinstance(raw, list) or not raw or not all(isinstance(e, list) for e in raw):
        raise DataError(f"{path}: expected a list of per-epoch index lists (or an object with 'epochs')")
    if len(raw) < epochs:
        raise DataError(f"{path}: holds {len(raw)} epoch order(s) but training runs {epochs} epochs; "
                        f"rerun the curriculum with --epochs {epochs}")
    orders = raw[:epochs]
    for e, order in enumerate(orders):
        bad = [i for i in order if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n]
        if bad:
            raise DataError(f"{path}: epoch {e} has indices outside [0, {n}) of the data, e.g. {bad[:3]}")
        if len(order) != len(orders[0]):
            raise DataError(f"{path}: epoch {e} has {len(order)} indices but epoch 0 has {len(orders[0])}; "
                            "every epoch must be the same length (the Trainer counts steps once)")
    return orders


class EpochOrderSampler(torch.utils.data.Sampler[int]):
    """Yields orders[epoch]; accelerate forwards the Trainer's set_epoch here (DDP shards batches
    of this one sequence, so every process must hold the same orders, which they do)."""

    def __init__(self, orders: Sequence[Sequence[int]]) -> None:
        if not orders or any(len(o) != len(orders[0]) for o in orders):
            raise ValueError("epoch orders must be non-empty and of equal length")
        self.orders = [list(o) for o in orders]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if not 0 <= epoch < len(self.orders):
            raise ValueError(f"epoch {epoch} asked but orders cover {len(self.orders)} epochs")
        self.epoch = epoch

    def __iter__(self):
        return iter(self.orders[self.epoch])

    def __len__(self) -> int:
        return len(self.orders[0])


# -- models ---------------------------------------------------------------------------------

def load_student(cfg: DistillTrainConfig, path: str, *, attn_implementation: str | None = None,
                 local_device: int | None = None):
    """The student, ready to train: all weights, LoRA adapters on a full-precision base, or LoRA
    on a 4-bit base (QLoRA). Call check_environment first for a clear QLoRA error."""
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    # Full fine-tuning keeps fp32 master weights (bf16 autocast does the maths); a frozen LoRA base
    # needs no master copy, so it is loaded in bf16 on GPUs to halve its memory.
    kwargs["dtype"] = torch.bfloat16 if cfg.uses_lora and cuda and torch.cuda.is_bf16_supported() else torch.float32
    if cfg.qlora:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": local_device if local_device is not None else 0}  # one GPU per process
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if not cfg.uses_lora:
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in cfg.lora_targets if t in names]
    if not targets:
        raise ConfigError(f"none of lora_targets {list(cfg.lora_targets)} is a module of {path}")
    if cfg.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings would otherwise cut the graph
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def merge_lora(adapter_dir: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    """Fold LoRA adapters into their base and write a plain checkpoint that `hf:` loads.

    The base is the one the adapters record (adapter_config.json) unless `base` is given; it is
    loaded in its stored precision, also after QLoRA (adapters trained on a 4-bit base then act on
    the full-precision weights, the usual practice, at a small numeric mismatch)."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise DataError(f"{adapter_dir}/adapter_config.json not found: not a LoRA adapter folder")
    base_path = base or PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    tok_src = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else base_path
    AutoTokenizer.from_pretrained(str(tok_src)).save_pretrained(str(out_dir))
    return out_dir
