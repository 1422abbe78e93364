"""Chunked losses against the unchunked ones (values and gradients), and their memory bound."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tourney.trainers.chunked_losses import HeadInput, TopKTeacher, chunked_ce, chunked_kd_loss
from tourney.trainers.losses import kd_loss, sparse_kd_loss

CASES = [("forward", 0.5), ("reverse", 0.5), ("jsd", 0.3), ("jsd", 0.0), ("jsd", 1.0)]
CHUNKS = [1, 3, 1000]


def _case(seed: int = 0, b: int = 3, s: int = 7, v: int = 11, h: int = 5):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, s, h, generator=g)
    weight = torch.randn(v, h, generator=g)
    bias = torch.randn(v, generator=g)
    teacher = 2 * torch.randn(b, s, v, generator=g)
    labels = torch.randint(0, v, (b, s), generator=g)
    labels[0, :3] = -100  # prompt
    labels[2, -2:] = -100  # padding
    return hidden, weight, bias, teacher, labels


def _grad(fn, *leaves):
    leaves = [x.detach().clone().requires_grad_(True) for x in leaves]
    out = fn(*leaves)
    out.total.backward()
    return out, [x.grad for x in leaves]


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind,beta", CASES)
@pytest.mark.parametrize("chunk", CHUNKS)
def test_dense_equals_unchunked_value_and_gradient(kind, beta, chunk):
    hidden, weight, bias, teacher, labels = _case()
    logits = F.linear(hidden, weight, bias)
    kw = dict(temperature=2.0, alpha=0.6, kind=kind, beta=beta)
    ref, [g_ref] = _grad(lambda s: kd_loss(s, teacher, labels, **kw), logits)
    got, [g_got] = _grad(lambda s: chunked_kd_loss(s, teacher, labels, chunk_size=chunk, **kw), logits)
    _close(got.total, ref.total)
    _close(got.kd, ref.kd)
    _close(got.ce, ref.ce)
    _close(g_got, g_ref)
    assert g_got[labels == -100].abs().sum() == 0


@pytest.mark.parametrize("kind,beta", CASES)
@pytest.mark.parametrize("k", [3, 11])
def test_top_k_equals_sparse_kd_loss(kind, beta, k):
    _, _, _, teacher, labels = _case(1)
    student = torch.randn(3, 7, 11, generator=torch.Generator().manual_seed(5))
    vals, ids = F.log_softmax(teacher, -1).topk(k, dim=-1)
    kw = dict(temperature=1.5, alpha=0.7, kind=kind, beta=beta)
    ref, [g_ref] = _grad(lambda s: sparse_kd_loss(s, ids, vals, labels, **kw), student)
    got, [g_got] = _grad(lambda s: chunked_kd_loss(s, TopKTeacher(ids, vals), labels, chunk_size=4, **kw), student)
    _close(got.total, ref.total)
    _close(got.kd, ref.kd)
    _close(g_got, g_ref)


@pytest.mark.parametrize("kind,beta", CASES)
def test_head_input_equals_logits_path_for_every_gradient(kind, beta):
    """Hidden states + projection: same loss and same gradients for hidden, weight and bias as
    materialising the logits and using the unchunked loss; the teacher as a HeadInput too."""
    hidden, weight, bias, _, labels = _case(2)
    t_hidden, t_weight, _, _, _ = _case(3)
    kw = dict(temperature=2.0, alpha=0.5, kind=kind, beta=beta)
    t_logits = F.linear(t_hidden, t_weight)
    ref, g_ref = _grad(lambda h, w, b: kd_loss(F.linear(h, w, b), t_logits, labels, **kw), hidden, weight, bias)
    got, g_got = _grad(lambda h, w, b: chunked_kd_loss(HeadInput(h, w, b), HeadInput(t_hidden, t_weight), labels,
                                                       chunk_size=2, **kw), hidden, weight, bias)
    _close(got.total, ref.total)
    for a, b in zip(g_got, g_ref):
        _close(a, b)


def test_frozen_projection_gets_no_gradient_and_hidden_still_does():
    hidden, weight, _, teacher, labels = _case(4)
    h = hidden.clone().requires_grad_(True)
    out = chunked_kd_loss(HeadInput(h, weight), teacher, labels, temperature=1.0, alpha=0.5, chunk_size=4)
    out.total.backward()
    assert weight.grad is None and h.grad is not None and h.grad.abs().sum() > 0


def test_ce_alone_equals_cross_entropy():
    hidden, weight, bias, _, labels = _case(5)
    logits = F.linear(hidden, weight, bias)
    s = logits.clone().requires_grad_(True)
    want = F.cross_entropy(s.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    want.backward()
    s2 = logits.clone().requires_grad_(True)
    got = chunked_ce(s2, labels, chunk_size=5)
    got.backward()
    _close(got, want)
    _close(s2.grad, s.grad)


def test_bfloat16_logits_match_the_unchunked_loss_on_the_same_input():
    hidden, weight, bias, teacher, labels = _case(6)
    logits = F.linear(hidden, weight, bias).to(torch.bfloat16)
    kw = dict(temperature=2.0, alpha=0.5)
    ref, [g_ref] = _grad(lambda s: kd_loss(s, teacher.to(torch.bfloat16), labels, **kw), logits)
    got, [g_got] = _grad(lambda s: chunked_kd_loss(s, teacher.to(torch.bfloat16), labels, chunk_size=3, **kw),
                         logits)
    assert g_got.dtype == torch.bfloat16
    _close(got.total, ref.total)
    torch.testing.assert_close(g_got.float(), g_ref.float(), rtol=1e-2, atol=1e-4)  # bf16 grads, 8 bits


def test_scaled_and_combined_with_another_term():
    hidden, weight, bias, teacher, labels = _case(7)
    logits = F.linear(hidden, weight, bias)
    extra = lambda s: (s**2).mean()  # noqa: E731 -- any other term in the same graph
    _, [g_ref] = _grad(lambda s: _Total(3 * kd_loss(s, teacher, labels, temperature=1, alpha=0.5).total + extra(s)),
                       logits)
    _, [g_got] = _grad(lambda s: _Total(3 * chunked_kd_loss(s, teacher, labels, temperature=1, alpha=0.5,
                                                            chunk_size=2).total + extra(s)), logits)
    _close(g_got, g_ref)


class _Total:
    def __init__(self, total):
        self.total = total


def test_no_grad_all_masked_and_one_backward_only():
    hidden, weight, bias, teacher, labels = _case(8)
    logits = F.linear(hidden, weight, bias)
    with torch.no_grad():
        out = chunked_kd_loss(logits, teacher, labels, temperature=2.0, alpha=0.5)
    _close(out.total, kd_loss(logits, teacher, labels, temperature=2.0, alpha=0.5).total)
    s = logits.clone().requires_grad_(True)
    masked = chunked_kd_loss(s, teacher, torch.full_like(labels, -100), temperature=1.0, alpha=0.5)
    assert masked.total.item() == 0.0
    masked.total.backward()
    assert s.grad.abs().sum() == 0
    s = logits.clone().requires_grad_(True)
    twice = chunked_kd_loss(s, teacher, labels, temperature=1.0, alpha=0.5)
    twice.total.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward"):
        twice.total.backward()


def test_bad_arguments_are_refused():
    hidden, weight, bias, teacher, labels = _case(9)
    logits = F.linear(hidden, weight, bias)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_kd_loss(logits, teacher, labels, alpha=0.5, chunk_size=0)
    with pytest.raises(ValueError, match="no teacher"):
        chunked_kd_loss(logits, None, labels, alpha=0.5)
    with pytest.raises(ValueError, match="vocabulary"):
        chunked_kd_loss(logits, teacher[..., :-1], labels, alpha=0.5)
    ids = torch.full((3, 7, 2), 40)
    with pytest.raises(ValueError, match="vocabulary has 11"):
        chunked_kd_loss(logits, TopKTeacher(ids, torch.zeros(3, 7, 2)), labels, alpha=0.5)
    with pytest.raises(ValueError, match="labels"):
        chunked_kd_loss(logits, teacher, labels[:, :-1], alpha=0.5)


def _peak_bytes(fn) -> int:
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    with tracker:
        fn()
    return int(tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"])


def test_peak_memory_does_not_grow_with_the_sequence_beyond_one_chunk():
    """HeadInput with a frozen projection: 8x the positions adds only the hidden states' gradient
    (positions x H), never positions x V. The unchunked loss grows by several positions x V."""
    v, h, chunk = 2048, 16, 64
    weight = torch.randn(v, h)

    def run(seq: int, chunked: bool) -> int:
        g = torch.Generator().manual_seed(0)
        hidden = torch.randn(1, seq, h, generator=g, requires_grad=True)
        t_ids = torch.randint(0, v, (1, seq, 8), generator=g)
        t_lp = torch.randn(1, seq, 8, generator=g)
        labels = torch.randint(0, v, (1, seq), generator=g)

        def step():
            if chunked:
                loss = chunked_kd_loss(HeadInput(hidden, weight), TopKTeacher(t_ids, t_lp), labels, temperature=1.0,
                                       alpha=0.5, chunk_size=chunk).total
            else:
                loss = sparse_kd_loss(F.linear(hidden, weight), t_ids, t_lp, labels, temperature=1.0, alpha=0.5).total
            loss.backward()
        return _peak_bytes(step)

    short, long = 128, 512
    row = v * 4  # one position's fp32 logits
    growth = run(long, True) - run(short, True)
    assert growth <= (long - short) * h * 4 * 2 + row  # hidden grads, not logits
    assert run(long, False) - run(short, False) > 4 * (long - short) * row
