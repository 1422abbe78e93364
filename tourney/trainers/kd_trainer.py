"""The distillation half: a Trainer that follows the curriculum and computes SFT, logit-KD and
feature-KD losses, plus the teacher (online, in memory) or its top-k store (offline, built once).

The teacher is never part of the trained module: it is held beside it, frozen and in eval mode,
so it is neither optimised, nor wrapped by DDP, nor saved in checkpoints. The feature projector
is trained with the student through an extra optimizer group and written into every checkpoint
as feature_projector.safetensors; ProjectorStep averages (under DDP), clips and clears its
gradients, which the Trainer does for the student's only.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from tourney.errors import ConfigError, DataError
from tourney.trainers.chunked_losses import TopKTeacher, chunked_ce, chunked_kd_loss
from tourney.trainers.distill_config import DistillTrainConfig
from tourney.trainers.features import FeatureProjector, attention_loss, feature_loss, save_projector
from tourney.trainers.losses import IGNORE_INDEX, kd_loss, shift_labels, sparse_kd_loss
from tourney.trainers.pretrain import make_batch
from tourney.trainers.sft import EpochOrderSampler

log = logging.getLogger(__name__)
STORE_SOURCE_FILE = "train_source.json"  # which data and max_len a top-k store was built from


def answer_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over unmasked positions: (B, S, V), (B, S) aligned targets -> scalar."""
    mask = targets != IGNORE_INDEX
    if not bool(mask.any()):
        return logits.sum() * 0
    return F.cross_entropy(logits[mask].float(), targets[mask])


class DistillLoss:
    """The per-batch loss of one method; returns (total, parts to log, student outputs).

    kd:       alpha * T^2 * D(teacher || student) + (1 - alpha) * CE   (losses.kd_loss / sparse_kd_loss,
              or chunked_losses.chunked_kd_loss with kd_chunk_size: the same value and gradient)
    feature:  CE + w_f * feature_loss [+ w_a * attention_loss]
    kd+feature: the kd total + the feature terms
    """

    def __init__(self, cfg: DistillTrainConfig, teacher: Any = None, projector: FeatureProjector | None = None) -> None:
        if cfg.uses_features and (teacher is None or projector is None):
            raise ValueError("feature KD needs an online teacher and a projector")
        if cfg.uses_kd and cfg.topk is None and teacher is None:
            raise ValueError("online KD needs a teacher model")
        self.cfg, self.teacher, self.projector = cfg, teacher, projector
        self.fcfg = cfg.feature_config()

    def __call__(self, model: Any, inputs: dict[str, torch.Tensor]):
        cfg = self.cfg
        topk_ids = inputs.pop("teacher_topk_ids", None)
        topk_logprobs = inputs.pop("teacher_topk_logprobs", None)
        targets = shift_labels(inputs["labels"])
        kw: dict[str, Any] = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        if cfg.uses_features:
            kw["output_hidden_states"] = True
        if cfg.attention:
            kw["output_attentions"] = True
        out = model(**kw)
        t_out = None
        if self.teacher is not None and (cfg.uses_features or topk_ids is None):
            with torch.no_grad():
                t_out = self.teacher(**kw)
        parts: dict[str, torch.Tensor] = {}
        if cfg.uses_kd:
            common = dict(temperature=cfg.kd_temperature, alpha=cfg.alpha, kind=cfg.kd_kind, beta=cfg.beta)
            if cfg.kd_chunk_size:
                teacher = TopKTeacher(topk_ids, topk_logprobs) if topk_ids is not None else t_out.logits
                r = chunked_kd_loss(out.logits, teacher, targets, chunk_size=cfg.kd_chunk_size, **common)
            elif topk_ids is not None:
                r = sparse_kd_loss(out.logits, topk_ids, topk_logprobs, targets, **common)
            else:
                r = kd_loss(out.logits, t_out.logits, targets, **common)
            total, parts["kd"], parts["ce"] = r.total, r.kd, r.ce
        elif cfg.kd_chunk_size:
            total = parts["ce"] = chunked_ce(out.logits, targets, chunk_size=cfg.kd_chunk_size)
        else:
            total = parts["ce"] = answer_ce(out.logits, targets)
        if cfg.uses_features:
            mask = inputs["attention_mask"]  # every real token: the prompt's states are teachable too
            parts["feature"] = feature_loss(out.hidden_states, t_out.hidden_states, self.projector, self.fcfg, mask)
            total = total + self.fcfg.weight * parts["feature"]
            if cfg.attention:
                parts["attention"] = attention_loss(out.attentions, t_out.attentions, self.projector.layer_map, mask)
                total = total + self.fcfg.attention_weight * parts["attention"]
        return total, {k: v.detach() for k, v in parts.items()}, out


class ProjectorStep(TrainerCallback):
    """The Trainer steps and zeroes only the student's gradients; this does the projector's part:
    average its gradients over processes (DDP reduces only the wrapped student's), clip them like
    the student's, and clear them after each optimizer step so they never pile up across steps."""

    def __init__(self, projector: FeatureProjector) -> None:
        self.projector = projector

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        import torch.distributed as dist

        params = [p for p in self.projector.parameters() if p.grad is not None]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for p in params:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()
        if args.max_grad_norm and args.max_grad_norm > 0 and params:
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.projector.zero_grad(set_to_none=True)


class DistillTrainer(Trainer):
    """transformers.Trainer with the curriculum's per-epoch order and the distillation loss.

    `distill_loss=None` is plain SFT through the model's own loss (answer-only labels)."""

    def __init__(self, *args: Any, orders: Sequence[Sequence[int]], distill_loss: DistillLoss | None = None,
                 projector: FeatureProjector | None = None, **kwargs: Any) -> None:
        self.orders, self.distill_loss, self.projector = orders, distill_loss, projector
        self._parts: dict[str, list[float]] = {}
        super().__init__(*args, **kwargs)
        if distill_loss is not None:
            self.loss_is_scaled_for_ga = False  # our loss is a per-micro-batch mean
        if projector is not None:
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                raise ConfigError("feature KD trains a projector beside the student, which DeepSpeed and FSDP "
                                 "do not shard; use DDP (plain torchrun / accelerate multi-GPU) for it")
            self.add_callback(ProjectorStep(projector))

    def _get_train_sampler(self, train_dataset=None):
        return EpochOrderSampler(self.orders)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = {k: v for k, v in inputs.items() if k != "example_index"}
        if self.distill_loss is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, parts, outputs = self.distill_loss(model, inputs)
        for name, value in parts.items():
            self._parts.setdefault(name, []).append(float(value))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._parts:  # the loss's parts, averaged over the same steps
            logs.update({k: round(sum(v) / len(v), 6) for k, v in self._parts.items()})
            self._parts.clear()
        super().log(logs, start_time)

    def create_optimizer(self, model=None):
        # transformers < 5.x's create_optimizer takes no model; newer ones may pass it.
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        if self.projector is not None and not getattr(self, "_projector_in_optimizer", False):
            optimizer.add_param_group({"params": list(self.projector.parameters()), "weight_decay": 0.0})
            self._projector_in_optimizer = True
        return optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.projector is not None and self.args.should_save:
            save_projector(self.projector, output_dir or self.args.output_dir)


# -- teacher --------------------------------------------------------------------------------

def load_teacher(path: str, device: torch.device | str, *, attn_implementation: str | None = None):
    """The teacher, frozen and in eval mode: bf16 on GPUs that support it, else fp32."""
    from transformers import AutoModelForCausalLM

    cuda = str(device).startswith("cuda")
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    teacher = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return teacher.to(device).eval().requires_grad_(False)


def _batches(examples: Sequence[tuple[list[int], int]], size: int, pad_id: int, device) -> Any:
    # In dataset order: the store's example i is dataset item i, whatever order training uses.
    for i in range(0, len(examples), size):
        yield {k: v.to(device) for k, v in make_batch(examples[i: i + size], pad_id).items()}


def prepare_store(cfg: DistillTrainConfig, examples: Sequence[tuple[list[int], int]], *, teacher_path: str | None,
                  pad_id: int, device, source: dict[str, Any], say: Callable[[str], None] = print,
                  tokenizer: Any = None, vocab_size: int | None = None):
    """Open the top-k store, building (or finishing) it with the teacher only when it lacks examples:
    an in-process teacher (teacher_path), or a served one (cfg.teacher = openai:MODEL@URL, whose
    store has the student's vocab_size).

    `source` identifies the data (sha256, max_len, count); a store built from other data is an
    error rather than silently misaligned rows, and so is a store built with another tokenizer than
    the student's (`tokenizer`). Call under main_process_first so one process builds.
    """
    from tourney.trainers.offline_logits import TopKStore, fill_store, model_fingerprint
    from tourney.trainers.served_logits import (ServedTeacherConfig, check_server_tokenizer,
                                                fill_store_from_server, tokenizer_hash)

    folder = cfg.store_dir()
    _check_source(folder, source)
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    tok_hash = tokenizer_hash(tokenizer) if tokenizer is not None else ""
    if meta.get("tokenizer_hash") and tok_hash and meta["tokenizer_hash"] != tok_hash:
        raise ConfigError(f"top-k store {folder} was built with tokenizer {meta['tokenizer_hash']}, but the student's "
                          f"tokenizer is {tok_hash}: its token ids would not be the student's; use another "
                          "topk_store folder")
    served = ServedTeacherConfig.from_spec(cfg.teacher, k=cfg.topk, concurrency=cfg.teacher_concurrency) \
        if cfg.served_teacher else None
    if store_is_complete(cfg, len(examples), teacher_path):
        say(f"top-k store {folder}: reusing {len(examples)} examples (k={cfg.topk})")
    elif served is not None:
        if vocab_size is None or tokenizer is None:
            raise ValueError("a served teacher's store needs the student's tokenizer and vocab_size")
        check = check_server_tokenizer(served, tokenizer)
        if check == "unavailable":
            say(f"note: {served.base_url} has no /tokenize; its tokenizer cannot be checked (ids are sent as the "
                "student's tokenizer makes them)")
        store = TopKStore(folder, k=cfg.topk, vocab_size=vocab_size, teacher=served.model,
                          teacher_hash=cfg.teacher_hash or "", tokenizer_hash=tok_hash,
                          source={"server": served.base_url, "model": served.model, "tokenizer_check": check})
        _write_source(folder, source)
        written = fill_store_from_server(store, examples, served, progress=lambda d, n: say(
            f"top-k store {folder}: {d}/{n} examples from {served.base_url}"))
        say(f"top-k store {folder}: wrote {written} examples (k={cfg.topk}) from {served.model} at {served.base_url}")
    else:
        teacher = load_teacher(teacher_path, device)
        digest = cfg.teacher_hash or model_fingerprint(teacher)
        store = TopKStore(folder, k=cfg.topk, vocab_size=teacher.config.vocab_size, teacher=teacher_path,
                          teacher_hash=digest, tokenizer_hash=tok_hash, source={"model": teacher_path})
        _write_source(folder, source)
        written = fill_store(store, teacher, _batches(examples, cfg.batch_size, pad_id, device))
        say(f"top-k store {folder}: wrote {written} examples (k={cfg.topk})")
        del teacher
    return TopKStore.open(folder)


def store_is_complete(cfg: DistillTrainConfig, n_examples: int, teacher_path: str | None) -> bool:
    """Whether cfg's top-k store already holds all n_examples from this teacher (nothing to ask)."""
    from tourney.trainers.served_logits import ServedTeacherConfig

    meta_path = cfg.store_dir() / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    name = ServedTeacherConfig.from_spec(cfg.teacher, k=cfg.topk).model if cfg.served_teacher else teacher_path
    return (meta.get("num_examples") == n_examples and meta.get("k") == cfg.topk and meta.get("teacher") == name
            and (cfg.teacher_hash is None or meta.get("teacher_hash") == cfg.teacher_hash))


def _check_source(folder: Path, source: dict[str, Any]) -> None:
    path = folder / STORE_SOURCE_FILE
    if path.exists():
        old = json.loads(path.read_text())
        if old != source:
            differ = ", ".join(k for k in sorted(set(old) | set(source)) if old.get(k) != source.get(k))
            raise DataError(f"top-k store {folder} was built from other training data ({differ} differ); "
                             "delete it or pass another topk_store folder")


def _write_source(folder: Path, source: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STORE_SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
