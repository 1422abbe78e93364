"""Hidden-state and attention distillation: closed forms, defaults, persistence, trainability."""
from __future__ import annotations

import pytest
import torch

from tourney.errors import DataError
from tourney.trainers.features import (
    PROJECTOR_FILE,
    FeatureKDConfig,
    FeatureProjector,
    attention_loss,
    default_layer_map,
    feature_loss,
    load_projector,
    save_projector,
)


def _hidden(n_layers: int, width: int, seed: int, b: int = 2, s: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, s, width, generator=g) for _ in range(n_layers + 1))


def _mask() -> torch.Tensor:
    return torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)


def test_default_layer_map():
    assert default_layer_map(2, 4) == {1: 2, 2: 4}
    assert default_layer_map(4, 4) == {1: 1, 2: 2, 3: 3, 4: 4}
    assert default_layer_map(3, 4) == {1: 1, 2: 3, 3: 4}
    assert default_layer_map(1, 7) == {1: 7}
    assert default_layer_map(4, 2) == {1: 1, 2: 1, 3: 2, 4: 2}
    with pytest.raises(ValueError):
        default_layer_map(0, 4)


def test_config_checks_and_resolution():
    assert FeatureKDConfig().resolve_layer_map(2, 4) == {1: 2, 2: 4}
    assert FeatureKDConfig(layer_map={2: 3}).resolve_layer_map(2, 4) == {2: 3}
    with pytest.raises(ValueError, match="loss"):
        FeatureKDConfig(loss="l1")
    with pytest.raises(ValueError, match="weight"):
        FeatureKDConfig(weight=-1.0)
    with pytest.raises(ValueError, match=r"layer_map\.1\.\[key\]|greater than or equal to 0"):
        FeatureKDConfig(layer_map={1: -2})
    with pytest.raises(ValueError, match="embeddings"):
        FeatureKDConfig(layer_map={0: 0}, attention=True)
    with pytest.raises(ValueError, match="goes past"):
        FeatureKDConfig(layer_map={3: 1}).resolve_layer_map(2, 4)


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_zero_loss_when_student_equals_teacher_under_identity_projector(loss):
    teacher = _hidden(4, 8, seed=0)
    layer_map = default_layer_map(2, 4)
    student = (teacher[0], teacher[2], teacher[4])  # student layer i reproduces teacher layer 2i
    projector = FeatureProjector(layer_map, 8, 8)  # equal widths start as the identity
    out = feature_loss(student, teacher, projector, FeatureKDConfig(loss=loss), _mask())
    assert abs(out.item()) < 1e-6


def test_mse_closed_form_and_mask():
    teacher = tuple(torch.zeros(2, 5, 4) for _ in range(3))
    student = tuple(torch.zeros(2, 5, 4) for _ in range(3))
    student[1][:] = 2.0  # every dimension off by 2 -> MSE 4 on layer 1, 0 on layer 2
    mask = _mask()
    student[2][~mask] = 100.0  # masked positions must not count
    projector = FeatureProjector({1: 1, 2: 2}, 4, 4)
    out = feature_loss(student, teacher, projector, FeatureKDConfig(), mask)
    assert out.item() == pytest.approx(2.0)  # mean over the two layers of (4, 0)


def test_cosine_loss_is_within_zero_and_two():
    teacher = _hidden(2, 6, seed=1)
    projector = FeatureProjector({1: 1, 2: 2}, 6, 6)
    cfg = FeatureKDConfig(loss="cosine")
    opposite = tuple(-h for h in teacher)
    assert feature_loss(opposite, teacher, projector, cfg, _mask()).item() == pytest.approx(2.0, abs=1e-6)
    rand = feature_loss(_hidden(2, 6, seed=2), teacher, projector, cfg, _mask()).item()
    assert 0.0 <= rand <= 2.0


def test_projector_round_trips_through_safetensors(tmp_path):
    torch.manual_seed(0)
    projector = FeatureProjector({1: 2, 2: 4}, 6, 10)
    path = save_projector(projector, tmp_path)
    assert path == tmp_path / PROJECTOR_FILE
    loaded = load_projector(tmp_path)
    assert loaded.layer_map == {1: 2, 2: 4}
    assert (loaded.student_width, loaded.teacher_width) == (6, 10)
    for k, v in projector.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(DataError, match="not found"):
        load_projector(tmp_path / "missing")


def test_optimising_the_projector_reduces_the_loss():
    g = torch.Generator().manual_seed(0)
    student = _hidden(2, 6, seed=3)
    true_map = torch.randn(6, 10, generator=g)
    teacher = (torch.zeros(2, 5, 10),) + tuple(h @ true_map for h in student[1:])
    projector = FeatureProjector({1: 1, 2: 2}, 6, 10)
    opt = torch.optim.Adam(projector.parameters(), lr=0.05)
    cfg, mask = FeatureKDConfig(), _mask()
    losses = []
    for _ in range(30):
        loss = feature_loss(student, teacher, projector, cfg, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_mismatched_inputs_are_refused():
    projector = FeatureProjector({1: 2, 2: 4}, 6, 6)
    with pytest.raises(ValueError, match="output_hidden_states"):
        feature_loss(_hidden(2, 6, 0), _hidden(2, 6, 1), projector, FeatureKDConfig(), _mask())
    with pytest.raises(ValueError, match="differs from the projector"):
        feature_loss(_hidden(2, 6, 0), _hidden(4, 6, 1), projector, FeatureKDConfig(layer_map={1: 1}), _mask())


def _attn(n_layers: int, heads: int, seed: int, b: int = 2, s: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    causal = torch.ones(s, s).tril().bool()
    maps = []
    for _ in range(n_layers):
        scores = torch.randn(b, heads, s, s, generator=g).masked_fill(~causal, float("-inf"))
        maps.append(scores.softmax(-1))
    return tuple(maps)


def test_attention_loss_averages_heads_first():
    teacher = _attn(4, heads=4, seed=0)
    # a 2-head student whose heads average to the teacher's mean map: zero loss
    student = tuple(t.mean(1, keepdim=True).expand(-1, 2, -1, -1) for t in (teacher[1], teacher[3]))
    assert attention_loss(student, teacher, {1: 2, 2: 4}, _mask()).item() == pytest.approx(0.0, abs=1e-7)
    other = attention_loss(_attn(2, heads=2, seed=1), teacher, {1: 2, 2: 4}, _mask())
    assert other.item() > 0
    with pytest.raises(ValueError, match="embeddings"):
        attention_loss(student, teacher, {0: 0}, _mask())
    with pytest.raises(ValueError, match="output_attentions"):
        attention_loss(student, teacher, {3: 4}, _mask())


def test_feature_kd_on_tiny_qwen3_models_trains_student_and_projector_only():
    from tourney.models.mini.arch import MiniArch, build_model

    torch.manual_seed(0)
    student = build_model(MiniArch(32, 64, 2, 2, 1, 16), vocab_size=40, eos_id=0)
    teacher = build_model(MiniArch(48, 64, 4, 2, 1, 16), vocab_size=40, eos_id=0)
    for m in (student, teacher):
        m.set_attn_implementation("eager")  # SDPA never materialises the attention maps
    ids = torch.randint(1, 40, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    s_out = student(input_ids=ids, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        t_out = teacher(input_ids=ids, output_hidden_states=True, output_attentions=True)
    cfg = FeatureKDConfig(attention=True)
    layer_map = cfg.resolve_layer_map(2, 4)
    projector = FeatureProjector(layer_map, 32, 48)
    loss = feature_loss(s_out.hidden_states, t_out.hidden_states, projector, cfg, mask)
    loss = cfg.weight * loss + cfg.attention_weight * attention_loss(s_out.attentions, t_out.attentions, layer_map, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in teacher.parameters())
    assert student.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in projector.parameters())
