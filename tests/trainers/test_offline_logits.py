"""Offline top-k teacher logits on a tiny random Qwen3: fidelity, resumption, and meta checks."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tourney.models.mini.arch import MiniArch, build_model
from tourney.trainers.losses import kd_loss, shift_labels, sparse_kd_loss
from tourney.trainers.offline_logits import (
    TopKStore,
    collate_topk,
    compute_topk,
    fill_store,
    model_fingerprint,
)
from tourney.trainers.pretrain import make_batch

VOCAB = 40


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_model(MiniArch(32, 64, 2, 2, 1, 16), vocab_size=VOCAB, eos_id=0).eval()


@pytest.fixture(scope="module")
def batches():
    g = torch.Generator().manual_seed(1)
    examples = []
    for n, start in [(7, 3), (5, 2), (8, 4), (4, 1), (6, 5), (6, 3)]:  # (length, first answer token)
        examples.append((torch.randint(1, VOCAB, (n,), generator=g).tolist(), start))
    return [make_batch(examples[i : i + 2], pad_id=0) for i in range(0, len(examples), 2)]


def _store(path, teacher, k=VOCAB, **kw):
    return TopKStore(path, k=k, vocab_size=VOCAB, teacher="tiny", teacher_hash=model_fingerprint(teacher), **kw)


def test_full_k_reproduces_the_teachers_log_softmax(tmp_path, teacher, batches):
    store = _store(tmp_path, teacher)
    assert fill_store(store, teacher, batches, chunk_size=3) == 6
    assert len(store) == 6 and json.loads((tmp_path / "meta.json").read_text())["num_examples"] == 6
    i = 0
    for batch in batches:
        with torch.no_grad():
            ref = F.log_softmax(teacher(**batch).logits, -1)  # (B, S, V)
        targets = shift_labels(batch["labels"])
        for row in range(ref.shape[0]):
            got = store.get(i)
            want_pos = (targets[row] != -100).nonzero().squeeze(-1)
            assert got.ids.dtype == torch.int32 and got.logprobs.dtype == torch.float16
            assert torch.equal(got.positions.long(), want_pos)
            dense = torch.full((len(want_pos), VOCAB), float("nan")).scatter(-1, got.ids.long(), got.logprobs.float())
            torch.testing.assert_close(dense, ref[row, want_pos], rtol=1e-3, atol=2e-3)
            assert (got.logprobs[:, :-1] >= got.logprobs[:, 1:]).all()  # best first
            i += 1


def test_stored_topk_drives_sparse_kd_like_live_logits(tmp_path, teacher, batches):
    store = _store(tmp_path, teacher)
    fill_store(store, teacher, batches)
    torch.manual_seed(3)
    student = build_model(MiniArch(32, 64, 1, 2, 1, 16), vocab_size=VOCAB, eos_id=0)
    batch = batches[1]
    out = student(**batch)
    with torch.no_grad():
        live = teacher(**batch).logits
    topk = collate_topk([store.get(2), store.get(3)], batch["labels"], store.k)
    targets = shift_labels(batch["labels"])
    dense = kd_loss(out.logits, live, targets, temperature=2.0, alpha=0.5)
    sparse = sparse_kd_loss(out.logits, topk.ids, topk.logprobs, targets, temperature=2.0, alpha=0.5)
    torch.testing.assert_close(sparse.total, dense.total, rtol=1e-3, atol=1e-3)
    # the label alignment is the model's own: CE here equals the HF loss
    torch.testing.assert_close(dense.ce, out.loss, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="positions"):
        collate_topk([store.get(3), store.get(2)], batch["labels"], store.k)


def test_resume_after_a_killed_write(tmp_path, teacher, batches):
    one_shot = _store(tmp_path / "ref", teacher, k=5)
    fill_store(one_shot, teacher, batches, chunk_size=2)

    store = _store(tmp_path / "run", teacher, k=5)
    fill_store(store, teacher, batches[:2], chunk_size=2)  # 4 examples, then "killed"
    # what a kill mid-shard leaves: a partial temporary file, and meta.json's count may lag
    (tmp_path / "run" / "shard-000000004.safetensors.tmp").write_bytes(b"\x00partial")
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    (tmp_path / "run" / "meta.json").write_text(json.dumps({**meta, "num_examples": 2}))

    calls: list[int] = []
    hook = teacher.register_forward_hook(lambda *_: calls.append(1))
    try:
        resumed = _store(tmp_path / "run", teacher, k=5)
        assert resumed.num_examples == 4
        assert not list((tmp_path / "run").glob("*.tmp"))
        assert json.loads((tmp_path / "run" / "meta.json").read_text())["num_examples"] == 4
        assert fill_store(resumed, teacher, batches, chunk_size=2) == 2
    finally:
        hook.remove()
    assert len(calls) == 1  # the two stored batches were skipped, not recomputed
    for i in range(6):
        a, b = one_shot.get(i), resumed.get(i)
        assert torch.equal(a.ids, b.ids) and torch.equal(a.logprobs, b.logprobs) and torch.equal(a.positions, b.positions)


def test_resume_in_the_middle_of_a_batch(tmp_path, teacher, batches):
    store = _store(tmp_path, teacher, k=3)
    store.append(list(compute_topk(teacher, batches, 3))[:3])
    assert fill_store(TopKStore.open(tmp_path), teacher, batches) == 3
    reopened = TopKStore.open(tmp_path)
    assert len(reopened) == 6
    direct = list(compute_topk(teacher, batches, 3))
    for i in range(6):
        assert torch.equal(reopened.get(i).ids, direct[i].ids)


def test_a_store_from_another_setup_is_refused(tmp_path, teacher, batches):
    _store(tmp_path, teacher, k=4).append(list(compute_topk(teacher, batches[:1], 4)))
    with pytest.raises(ValueError, match="k: stored 4, asked 5"):
        _store(tmp_path, teacher, k=5)
    with pytest.raises(ValueError, match="teacher_hash"):
        TopKStore(tmp_path, k=4, vocab_size=VOCAB, teacher="tiny", teacher_hash="other")
    with pytest.raises(ValueError, match="vocab_size"):
        TopKStore(tmp_path, k=4, vocab_size=VOCAB + 1, teacher="tiny", teacher_hash=model_fingerprint(teacher))
    with pytest.raises(ValueError, match="k must be"):
        list(compute_topk(teacher, batches[:1], VOCAB + 1))
    with pytest.raises(IndexError):
        _store(tmp_path, teacher, k=4).get(2)


def test_fingerprint_tracks_the_weights(teacher):
    torch.manual_seed(0)
    twin = build_model(MiniArch(32, 64, 2, 2, 1, 16), vocab_size=VOCAB, eos_id=0)
    assert model_fingerprint(twin) == model_fingerprint(teacher)
    with torch.no_grad():
        twin.lm_head.weight[0, 0] += 1.0
    assert model_fingerprint(twin) != model_fingerprint(teacher)
