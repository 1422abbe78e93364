"""Offline teacher logits: run the teacher once, keep its top-k log-probs, reuse them every epoch.

Only answer positions are kept: position t is stored when the *next* token (labels[t + 1] in the
Hugging Face layout of trainers.pretrain.make_batch) is an answer token, i.e. exactly the positions
that losses.shift_labels leaves unmasked, so the stored rows line up with sparse_kd_loss's.
At k = 64 that is 64 * (4 + 2) bytes per answer token instead of 4 * V (600 kB for Qwen3's 150k).

Layout of a store folder:
  meta.json                    k, vocab size, teacher name and hash, the tokenizer's hash, where the
                               numbers came from (source: an in-process model or a server), count
  shard-000000000.safetensors  per chunk: ids (N, k) int32, logprobs (N, k) float16,
                               positions (N,) int32, offsets (n + 1,) int64 into the N rows;
                               metadata {"start", "count"} = first example index and count
Each shard is written to a temporary name and renamed, so a killed run leaves either a whole
shard or none; reopening counts the shards and the run resumes after the last one.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from tourney.trainers.losses import IGNORE_INDEX, shift_labels

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TopKExample:
    ids: torch.Tensor  # (P, k) int32 token ids, best first
    logprobs: torch.Tensor  # (P, k) float16 log-probabilities at T = 1 over the full vocabulary
    positions: torch.Tensor  # (P,) int32 sequence index of each row's logits


@torch.no_grad()
def compute_topk(model: Any, batches: Iterable[dict[str, torch.Tensor]], k: int) -> Iterator[TopKExample]:
    """One TopKExample per example of each batch (input_ids, attention_mask, labels: B x S)."""
    model.eval()
    for batch in batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        if not 1 <= k <= logits.shape[-1]:
            raise ValueError(f"k must be in [1, {logits.shape[-1]}] (the vocabulary), got {k}")
        targets = shift_labels(batch["labels"])  # (B, S)
        for row in range(logits.shape[0]):
            pos = (targets[row] != IGNORE_INDEX).nonzero().squeeze(-1)  # (P,)
            sel = logits[row, pos].float()  # (P, V)
            # top-k of the logits minus logsumexp = top-k of the log-softmax, without building it.
            vals, ids = sel.topk(k, dim=-1)
            logprobs = vals - torch.logsumexp(sel, dim=-1, keepdim=True)
            yield TopKExample(ids.to(torch.int32), logprobs.to(torch.float16), pos.to(torch.int32))


def model_fingerprint(model: Any) -> str:
    """sha256 over the config and every parameter's bytes: identifies the exact teacher weights.

    It reads every weight once, which takes seconds for the miniature models and far longer for a
    235B teacher; there, pass a checkpoint revision or file hash as teacher_hash instead.
    """
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class TopKStore:
    """A folder of top-k shards for one teacher, k and vocabulary; see the module docstring.

    Constructing it creates the folder, or reopens it after checking that it was built with the
    same teacher, teacher_hash, k and vocab_size (raising ValueError otherwise, since distilling
    from another teacher's numbers would be silent corruption). TopKStore.open reads any store.
    """

    def __init__(
        self, folder: str | Path, *, k: int, vocab_size: int, teacher: str, teacher_hash: str = "",
        tokenizer_hash: str = "", source: dict[str, Any] | None = None,
    ) -> None:
        if not 1 <= k <= vocab_size:
            raise ValueError(f"k must be in [1, vocab_size={vocab_size}], got {k}")
        self.folder = Path(folder)
        self.meta = {"format": FORMAT_VERSION, "k": k, "vocab_size": vocab_size,
                     "teacher": teacher, "teacher_hash": teacher_hash, "tokenizer_hash": tokenizer_hash}
        meta_path = self.folder / "meta.json"
        if meta_path.exists():
            old = json.loads(meta_path.read_text())
            # A store written before tokenizer hashes were recorded has none: unknown, not different.
            diff = {key: (old.get(key), want) for key, want in self.meta.items()
                    if old.get(key) != want and not (key == "tokenizer_hash" and not (old.get(key) and want))}
            if diff:
                shown = "; ".join(f"{key}: stored {a!r}, asked {b!r}" for key, (a, b) in diff.items())
                raise ValueError(
                    f"top-k store {self.folder} was built for another setup ({shown}); "
                    "use another folder, or delete this one to rebuild it"
                )
        self.source = (json.loads(meta_path.read_text()).get("source") if meta_path.exists() else None) or source
        self.folder.mkdir(parents=True, exist_ok=True)
        self._scan()
        if not meta_path.exists() or json.loads(meta_path.read_text()).get("num_examples") != self._count:
            self._write_meta()  # new store, or the count a kill left stale

    @classmethod
    def open(cls, folder: str | Path) -> TopKStore:
        """Open an existing store with whatever meta it has (for training, not for writing)."""
        meta_path = Path(folder) / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found: {folder} is not a top-k store")
        m = json.loads(meta_path.read_text())
        return cls(folder, k=m["k"], vocab_size=m["vocab_size"], teacher=m["teacher"],
                   teacher_hash=m["teacher_hash"], tokenizer_hash=m.get("tokenizer_hash", ""))

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def tokenizer_hash(self) -> str:
        return str(self.meta.get("tokenizer_hash") or "")

    @property
    def num_examples(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    def _scan(self) -> None:
        """Index the complete shards; drop what a killed write left behind."""
        from safetensors import safe_open

        for tmp in self.folder.glob("*.tmp"):
            tmp.unlink()
        self._starts: list[int] = []
        self._paths: list[Path] = []
        self._offsets: list[torch.Tensor] = []
        self._handles: dict[int, Any] = {}
        count = 0
        for path in sorted(self.folder.glob("shard-*.safetensors")):
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                offsets = f.get_tensor("offsets")
            start, n = int(meta.get("start", -1)), int(meta.get("count", -1))
            if start != count or n != offsets.numel() - 1:
                raise ValueError(f"{path}: shard starts at example {start} with {n} examples, expected "
                                 f"start {count}; the store is inconsistent, rebuild it")
            self._starts.append(start)
            self._paths.append(path)
            self._offsets.append(offsets)
            count += n
        self._count = count

    def _write_meta(self) -> None:
        meta = dict(self.meta, source=self.source, num_examples=self._count)
        tmp = self.folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, self.folder / "meta.json")

    def append(self, examples: Sequence[TopKExample]) -> None:
        """Write one chunk as one shard; a kill mid-write loses this chunk only."""
        from safetensors.torch import save_file

        if not examples:
            return
        for e in examples:
            if e.ids.ndim != 2 or e.ids.shape[1] != self.k or e.ids.shape != e.logprobs.shape:
                raise ValueError(f"expected (positions, k={self.k}) ids and logprobs, got "
                                 f"{tuple(e.ids.shape)} and {tuple(e.logprobs.shape)}")
        rows = torch.tensor([0] + [e.ids.shape[0] for e in examples], dtype=torch.int64)
        tensors = {
            "ids": torch.cat([e.ids.to(torch.int32) for e in examples]).contiguous(),
            "logprobs": torch.cat([e.logprobs.to(torch.float16) for e in examples]).contiguous(),
            "positions": torch.cat([e.positions.to(torch.int32) for e in examples]).contiguous(),
            "offsets": rows.cumsum(0),
        }
        start = self._count
        path = self.folder / f"shard-{start:09d}.safetensors"
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"start": str(start), "count": str(len(examples))})
        os.replace(tmp, path)  # atomic: the shard is either complete or absent
        self._starts.append(start)
        self._paths.append(path)
        self._offsets.append(tensors["offsets"])
        self._count += len(examples)
        self._write_meta()

    def get(self, example_index: int) -> TopKExample:
        """The stored rows of one example, read lazily from its shard (memory-mapped)."""
        from safetensors import safe_open

        if not 0 <= example_index < self._count:
            raise IndexError(f"example {example_index} not in store of {self._count}")
        s = bisect.bisect_right(self._starts, example_index) - 1
        if s not in self._handles:
            self._handles[s] = safe_open(str(self._paths[s]), framework="pt")
        f, offsets = self._handles[s], self._offsets[s]
        i = example_index - self._starts[s]
        a, b = int(offsets[i]), int(offsets[i + 1])
        return TopKExample(f.get_slice("ids")[a:b], f.get_slice("logprobs")[a:b], f.get_slice("positions")[a:b])


def fill_store(
    store: TopKStore, model: Any, batches: Iterable[dict[str, torch.Tensor]], *, chunk_size: int = 256
) -> int:
    """Append the top-k of every example the store lacks; returns how many were written now.

    `batches` must yield the same examples in the same order on every run; whole batches already
    stored are skipped without running the teacher.
    """
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab is not None and vocab != store.vocab_size:
        raise ValueError(f"model vocab_size {vocab} differs from the store's {store.vocab_size}")
    done, seen, written = store.num_examples, 0, 0
    pending: list[TopKExample] = []
    for batch in batches:
        n = int(batch["input_ids"].shape[0])
        if seen + n <= done:
            seen += n
            continue
        for example in compute_topk(model, [batch], store.k):
            if seen >= done:
                pending.append(example)
            seen += 1
        if len(pending) >= chunk_size:
            store.append(pending)
            written, pending = written + len(pending), []
    store.append(pending)
    return written + len(pending)


@dataclass(frozen=True)
class TopKBatch:
    ids: torch.Tensor  # (B, S, k) int64, zeros at positions without a stored row
    logprobs: torch.Tensor  # (B, S, k) float32, zeros at positions without a stored row


def collate_topk(examples: Sequence[TopKExample], labels: torch.Tensor, k: int) -> TopKBatch:
    """Place stored rows at their positions in a (B, S) batch with HF-style (unshifted) labels.

    Checks that the stored positions are exactly the batch's answer positions, so a changed
    tokenizer, prompt or padding side is an error rather than a misaligned teacher.
    """
    targets = shift_labels(labels)
    bsz, seq = labels.shape
    if len(examples) != bsz:
        raise ValueError(f"{len(examples)} stored examples for a batch of {bsz}")
    ids = torch.zeros(bsz, seq, k, dtype=torch.int64)
    logprobs = torch.zeros(bsz, seq, k, dtype=torch.float32)
    for row, e in enumerate(examples):
        want = (targets[row] != IGNORE_INDEX).nonzero().squeeze(-1)
        got = e.positions.to(torch.int64)
        if not torch.equal(want, got):
            raise ValueError(f"batch row {row}: stored positions {got.tolist()[:8]}... do not match "
                             f"the batch's answer positions {want.tolist()[:8]}...; rebuild the store")
        ids[row, got] = e.ids.to(torch.int64)
        logprobs[row, got] = e.logprobs.float()
    return TopKBatch(ids, logprobs)
