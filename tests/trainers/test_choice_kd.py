"""Option-level KD against closed forms: alpha 0 is CE, equal distributions give 0, a hand KL,
the gradient T * (q_student - p_teacher), invariance to the teacher's normalisation."""
import math

import pytest
import torch

from tourney.trainers.choice_kd import gather_option_logits, letter_token_ids, option_kd_loss


def test_alpha_zero_is_cross_entropy_on_the_hard_label():
    s = torch.tensor([[2.0, 0.5, -1.0, 0.0]])
    r = option_kd_loss(s, torch.randn(1, 4), torch.tensor([1]), temperature=3.0, alpha=0.0)
    assert float(r.total) == pytest.approx(-float(s.log_softmax(-1)[0, 1]))
    assert float(r.total) == pytest.approx(float(r.ce))


def test_same_distribution_gives_zero_kl_and_a_hand_computed_kl():
    s = torch.tensor([[1.0, -2.0, 0.3, 0.0]])
    assert float(option_kd_loss(s, s.clone(), torch.tensor([0]), temperature=2.0).kd) == pytest.approx(0.0, abs=1e-7)
    # teacher p = (0.8, 0.2), student uniform: KL = 0.8 ln(0.8/0.5) + 0.2 ln(0.2/0.5) = 0.19274
    t = torch.tensor([[math.log(0.8), math.log(0.2)]])
    r = option_kd_loss(torch.zeros(1, 2), t, torch.tensor([0]), temperature=1.0, alpha=1.0)
    assert float(r.kd) == pytest.approx(0.8 * math.log(1.6) + 0.2 * math.log(0.4))
    assert float(r.total) == pytest.approx(float(r.kd))


def test_gradient_is_t_times_student_minus_teacher_probabilities():
    torch.manual_seed(0)
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4)
    temp = 2.5
    option_kd_loss(s, t, torch.tensor([0, 1, 2]), temperature=temp, alpha=1.0).total.backward()
    expected = temp * ((s.detach() / temp).softmax(-1) - (t / temp).softmax(-1)) / 3
    assert torch.allclose(s.grad, expected, atol=1e-6)


def test_teacher_log_likelihoods_need_no_normalisation_and_the_mix_is_linear():
    s, t, hard = torch.randn(2, 4), torch.randn(2, 4), torch.tensor([3, 0])
    a = option_kd_loss(s, t, hard, temperature=2.0, alpha=0.3)
    b = option_kd_loss(s, t - 7.0, hard, temperature=2.0, alpha=0.3)  # summed logliks shift per row
    assert float(a.total) == pytest.approx(float(b.total))
    assert float(a.total) == pytest.approx(0.3 * 4.0 * float(a.kd) + 0.7 * float(a.ce))


def test_bad_arguments():
    s = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="temperature"):
        option_kd_loss(s, s, torch.tensor([0, 0]), temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        option_kd_loss(s, s, torch.tensor([0, 0]), alpha=1.5)
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        option_kd_loss(s, torch.zeros(2, 3), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="hard labels"):
        option_kd_loss(s, s, torch.tensor([0]))


def test_gather_and_letter_ids():
    logits = torch.arange(2 * 3 * 5, dtype=torch.float).reshape(2, 3, 5)
    out = gather_option_logits(logits, torch.tensor([2, 0]), [4, 1])
    assert out.tolist() == [[14.0, 11.0], [19.0, 16.0]]

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return type("E", (), {"input_ids": [ord(c) for c in text.strip()] if text != " D" else [1, 2]})()

    assert letter_token_ids(Tok(), "ABC") == [65, 66, 67]
    with pytest.raises(ValueError, match="one token"):
        letter_token_ids(Tok(), "ABCD")
