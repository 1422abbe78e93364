"""Distillation losses against closed forms and hand-computed values (tiny tensors only)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tourney.trainers.losses import (
    KDLoss,
    check_vocab_compatible,
    choice_distillation_loss,
    kd_loss,
    shift_labels,
    sparse_kd_loss,
)

KINDS = ["forward", "reverse", "jsd"]


def _case(seed: int = 0, b: int = 2, s: int = 5, v: int = 7):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(b, s, v, generator=g)
    teacher = torch.randn(b, s, v, generator=g) * 2
    labels = torch.randint(0, v, (b, s), generator=g)
    labels[0, :2] = -100  # prompt
    labels[1, -1] = -100  # padding
    return student, teacher, labels


def _three_token():
    """Student uniform, teacher (1/2, 1/4, 1/4): one position, one label."""
    student = torch.zeros(1, 1, 3)
    teacher = torch.log(torch.tensor([0.5, 0.25, 0.25])).view(1, 1, 3)
    return student, teacher, torch.tensor([[0]])


def test_forward_kl_hand_computed_three_tokens():
    student, teacher, labels = _three_token()
    out = kd_loss(student, teacher, labels, temperature=1.0, alpha=1.0, kind="forward")
    assert isinstance(out, KDLoss)
    # sum p log(p / (1/3)) = 0.5 ln 1.5 + 0.5 ln 0.75 = 0.5 ln 1.125
    assert out.kd.item() == pytest.approx(0.5 * math.log(1.125), abs=1e-6)
    assert out.total.item() == pytest.approx(out.kd.item(), abs=1e-7)
    assert out.ce.item() == pytest.approx(math.log(3), abs=1e-6)


def test_reverse_kl_hand_computed_and_is_forward_with_roles_swapped():
    student, teacher, labels = _three_token()
    rev = kd_loss(student, teacher, labels, temperature=1.0, alpha=1.0, kind="reverse").kd
    # sum (1/3) ln((1/3) / p) = (1/3) ln(32/27)
    assert rev.item() == pytest.approx(math.log(32 / 27) / 3, abs=1e-6)
    s, t, y = _case()
    for temp in (1.0, 2.5):
        r = kd_loss(s, t, y, temperature=temp, alpha=1.0, kind="reverse").kd
        f = kd_loss(t, s, y, temperature=temp, alpha=1.0, kind="forward").kd
        torch.testing.assert_close(r, f)


def test_jsd_half_hand_computed_and_symmetric():
    student, teacher, labels = _three_token()
    p, q = [0.5, 0.25, 0.25], [1 / 3] * 3
    m = [(a + b) / 2 for a, b in zip(p, q)]
    want = 0.5 * sum(a * math.log(a / c) for a, c in zip(p, m)) + 0.5 * sum(b * math.log(b / c) for b, c in zip(q, m))
    got = kd_loss(student, teacher, labels, temperature=1.0, alpha=1.0, kind="jsd", beta=0.5).kd
    assert got.item() == pytest.approx(want, abs=1e-6)
    s, t, y = _case(1)
    a = kd_loss(s, t, y, temperature=1.0, alpha=1.0, kind="jsd", beta=0.5).kd
    b = kd_loss(t, s, y, temperature=1.0, alpha=1.0, kind="jsd", beta=0.5).kd
    torch.testing.assert_close(a, b)
    assert 0 < a.item() <= math.log(2)


def test_jsd_endpoints_are_forward_and_reverse_kl():
    s, t, y = _case(2)
    kw = dict(temperature=1.5, alpha=1.0)
    torch.testing.assert_close(kd_loss(s, t, y, kind="jsd", beta=0.0, **kw).kd, kd_loss(s, t, y, kind="forward", **kw).kd)
    torch.testing.assert_close(kd_loss(s, t, y, kind="jsd", beta=1.0, **kw).kd, kd_loss(s, t, y, kind="reverse", **kw).kd)


def test_jsd_matches_trl_gkd():
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    s, t, y = _case(3)
    mask = y != -100
    for beta in (0.0, 0.3, 1.0):
        want = gkd.GKDTrainer.generalized_jsd_loss(s[mask][None], t[mask][None], beta=beta, temperature=2.0) / mask.sum()
        got = kd_loss(s, t, y, temperature=2.0, alpha=1.0, kind="jsd", beta=beta).kd
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_identical_logits_give_zero_kd(kind):
    s, _, y = _case()
    out = kd_loss(s, s.clone(), y, temperature=2.0, alpha=0.7, kind=kind)
    assert abs(out.kd.item()) < 1e-6
    assert out.total.item() == pytest.approx(0.3 * out.ce.item(), rel=1e-5)


def test_alpha_zero_is_plain_cross_entropy():
    s, t, y = _case()
    out = kd_loss(s, t, y, temperature=3.0, alpha=0.0)
    want = F.cross_entropy(s.reshape(-1, s.shape[-1]), y.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.total, want)
    torch.testing.assert_close(out.ce, want)


def test_temperature_squared_factor():
    s, t, y = _case()
    for kind in KINDS:
        out = kd_loss(s, t, y, temperature=2.0, alpha=1.0, kind=kind)
        torch.testing.assert_close(out.total, 4.0 * out.kd)
        # kd at T is the divergence of the logits divided by T
        torch.testing.assert_close(out.kd, kd_loss(s / 2, t / 2, y, temperature=1.0, alpha=1.0, kind=kind).kd)
    mixed = kd_loss(s, t, y, temperature=2.0, alpha=0.25)
    torch.testing.assert_close(mixed.total, 0.25 * 4.0 * mixed.kd + 0.75 * mixed.ce)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_positions_do_not_contribute(kind):
    s, t, y = _case()
    mask = y == -100
    s2, t2 = s.clone(), t.clone()
    s2[mask] = 100 * torch.randn_like(s2[mask])
    t2[mask] = -50.0
    a = kd_loss(s, t, y, temperature=1.5, alpha=0.5, kind=kind)
    b = kd_loss(s2, t2, y, temperature=1.5, alpha=0.5, kind=kind)
    torch.testing.assert_close(a.total, b.total)
    # and the mean is over unmasked tokens: equal to the loss on those tokens alone
    keep = ~mask
    c = kd_loss(s[keep][None], t[keep][None], y[keep][None], temperature=1.5, alpha=0.5, kind=kind)
    torch.testing.assert_close(a.total, c.total)


def test_all_masked_gives_zero_not_nan():
    s, t, y = _case()
    out = kd_loss(s, t, torch.full_like(y, -100), temperature=1.0, alpha=0.5)
    assert out.total.item() == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_student_only(kind):
    s, t, y = _case()
    s.requires_grad_(True)
    t.requires_grad_(True)
    kd_loss(s, t, y, temperature=2.0, alpha=0.5, kind=kind).total.backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert s.grad[y == -100].abs().sum() == 0  # masked positions get no gradient either


def _full_topk(teacher: torch.Tensor):
    logprobs = F.log_softmax(teacher, -1)
    vals, ids = logprobs.sort(-1, descending=True)
    return ids, vals


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_with_full_k_equals_dense(kind):
    s, t, y = _case(4)
    ids, lp = _full_topk(t)
    for temp in (1.0, 2.0):
        dense = kd_loss(s, t, y, temperature=temp, alpha=0.6, kind=kind, beta=0.3)
        sparse = sparse_kd_loss(s, ids, lp, y, temperature=temp, alpha=0.6, kind=kind, beta=0.3)
        torch.testing.assert_close(sparse.kd, dense.kd, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sparse.total, dense.total, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_top_k_is_nonnegative_and_zero_when_student_matches(kind):
    s, t, y = _case(5)
    ids, lp = _full_topk(t)
    ids, lp = ids[..., :3], lp[..., :3]
    out = sparse_kd_loss(s, ids, lp, y, temperature=1.0, alpha=1.0, kind=kind)
    assert out.kd.item() > 0
    # a student that puts all its mass on the top-3, in the teacher's proportions, scores 0
    student = torch.full_like(t, -1e4).scatter(-1, ids, lp)
    zero = sparse_kd_loss(student, ids, lp, y, temperature=1.0, alpha=1.0, kind=kind)
    assert abs(zero.kd.item()) < 1e-5


def test_sparse_gradients_reach_the_student_only():
    s, t, y = _case()
    ids, lp = _full_topk(t)
    lp = lp[..., :4].clone().requires_grad_(True)
    s.requires_grad_(True)
    sparse_kd_loss(s, ids[..., :4], lp, y, temperature=2.0, alpha=0.5, kind="forward").total.backward()
    assert lp.grad is None and s.grad.abs().sum() > 0


def test_sparse_rejects_ids_outside_the_vocabulary():
    s, t, y = _case()
    ids, lp = _full_topk(t)
    with pytest.raises(ValueError, match="vocabulary"):
        sparse_kd_loss(s, ids + 100, lp, y, temperature=1.0, alpha=0.5)


def test_bad_arguments_are_refused():
    s, t, y = _case()
    with pytest.raises(ValueError, match="alpha"):
        kd_loss(s, t, y, temperature=1.0, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, y, temperature=0.0, alpha=0.5)
    with pytest.raises(ValueError, match="kind"):
        kd_loss(s, t, y, temperature=1.0, alpha=0.5, kind="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocabulary"):
        kd_loss(s, t[..., :-1], y, temperature=1.0, alpha=0.5)


def test_shift_labels_aligns_with_hf_loss():
    labels = torch.tensor([[-100, -100, 5, 6, 7]])
    assert shift_labels(labels).tolist() == [[-100, 5, 6, 7, -100]]


def test_choice_distillation_closed_form_and_mask():
    student = torch.zeros(1, 3)  # uniform over 3 options
    teacher = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    got = choice_distillation_loss(student, teacher, temperature=1.0)
    assert got.item() == pytest.approx(0.5 * math.log(1.125), abs=1e-6)
    assert choice_distillation_loss(teacher, teacher.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-7)
    # T^2 scaling
    t2 = choice_distillation_loss(student, teacher, temperature=2.0)
    torch.testing.assert_close(t2, 4.0 * choice_distillation_loss(student / 2, teacher / 2, 1.0))
    # a padded fourth option changes nothing
    pad_s = torch.cat([student, torch.tensor([[7.0]])], 1)
    pad_t = torch.cat([teacher, torch.tensor([[-3.0]])], 1)
    mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(choice_distillation_loss(pad_s, pad_t, 1.0, mask), got)
    s = torch.zeros(1, 3, requires_grad=True)
    tt = teacher.clone().requires_grad_(True)
    choice_distillation_loss(s, tt, 1.0).backward()
    assert tt.grad is None and s.grad.abs().sum() > 0


class _Tok:
    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)


def test_check_vocab_compatible():
    base = {"a": 0, "b": 1, "c": 2}
    check_vocab_compatible(_Tok(base), _Tok(dict(base)))
    with pytest.raises(ValueError, match="sizes differ.*choice-level"):
        check_vocab_compatible(_Tok(base), _Tok({**base, "d": 3}))
    with pytest.raises(ValueError, match="different ids.*'a'.*sequence-level"):
        check_vocab_compatible(_Tok(base), _Tok({"a": 1, "b": 0, "c": 2}))
