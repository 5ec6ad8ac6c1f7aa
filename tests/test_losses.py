"""kd_loss and friends, tested by value, gradient, limits and properties."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from course_lib.losses import entropy, kd_loss, soft_target_kl, softmax_with_temperature


def hand_kd(s, t, y, T, alpha):
    """Reference written out element by element, in float64."""
    s, t = s.double().tolist(), t.double().tolist()
    total = 0.0
    for zs, zt, label in zip(s, t, y.tolist()):
        ps = [math.exp(v / T) for v in zs]; ps = [v / sum(ps) for v in ps]
        pt = [math.exp(v / T) for v in zt]; pt = [v / sum(pt) for v in pt]
        kl = sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps))
        q = [math.exp(v) for v in zs]
        ce = -math.log(q[label] / sum(q))
        total += alpha * T * T * kl + (1 - alpha) * ce
    return total / len(s)


def test_value_matches_hand_computation():
    s = torch.tensor([[2.0, 1.0, 0.1], [0.5, 0.2, 3.0]])
    t = torch.tensor([[3.0, 0.5, -1.0], [0.0, 1.0, 2.0]])
    y = torch.tensor([0, 2])
    for T, a in [(1.0, 0.5), (4.0, 0.9), (2.5, 0.3)]:
        assert kd_loss(s, t, y, T, a).item() == pytest.approx(hand_kd(s, t, y, T, a), rel=1e-5)


def test_forward_kl_is_what_kldivloss_computes():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    ref = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / 3, -1), F.softmax(t / 3, -1))
    assert soft_target_kl(s, t, 3.0).mean().item() == pytest.approx(ref.item(), rel=1e-5)
    # KL(teacher||student) = sum p_t log(p_t/p_s): swap roles to get the reverse
    assert soft_target_kl(s, t, 3.0, "reverse").mean().item() == pytest.approx(
        soft_target_kl(t, s, 3.0).mean().item(), rel=1e-5)
    # on an asymmetric pair the two directions differ clearly: a confident teacher vs a flat student
    sharp, flat = torch.tensor([[8.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    fwd, rev = soft_target_kl(flat, sharp, 1.0).item(), soft_target_kl(flat, sharp, 1.0, "reverse").item()
    p_t = torch.softmax(sharp, -1)
    assert fwd == pytest.approx(math.log(3) - entropy(p_t).item(), rel=1e-5)  # KL(p_t || uniform)
    assert abs(fwd - rev) > 0.5


def test_limits():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(16, 10, generator=g); y = torch.randint(0, 10, (16,), generator=g)
    # student == teacher: the soft term vanishes
    _, parts = kd_loss(s, s.clone(), y, 4.0, 0.9, return_parts=True)
    assert parts["kl"].item() == pytest.approx(0.0, abs=1e-6)
    # alpha = 0 is plain cross-entropy
    assert kd_loss(s, torch.randn(16, 10, generator=g), y, 4.0, 0.0).item() == pytest.approx(
        F.cross_entropy(s, y).item(), rel=1e-6)
    # alpha = 1 needs no labels
    assert torch.isfinite(kd_loss(s, s + 1, None, 2.0, 1.0))
    # very high temperature: tempered softmax tends to uniform, entropy to log C
    p = softmax_with_temperature(s, 1e6)
    assert torch.allclose(p, torch.full_like(p, 0.1), atol=1e-5)
    assert entropy(p).mean().item() == pytest.approx(math.log(10), rel=1e-5)
    # very low temperature: one-hot on the argmax, entropy 0
    p = softmax_with_temperature(s, 1e-4)
    assert torch.equal(p.argmax(-1), s.argmax(-1)) and entropy(p).max().item() < 1e-4


def test_gradient_formula_and_t_squared_scaling():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(4, 10, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 10, generator=g, dtype=torch.float64) * 3
    T = 5.0
    soft_target_kl(s, t, T).sum().backward()
    expected = (F.softmax(s / T, -1) - F.softmax(t / T, -1)) / T
    assert torch.allclose(s.grad, expected.detach(), atol=1e-10)
    # with the T^2 factor the soft-gradient magnitude stays within a small band across T ...
    norms = {}
    for T in (2.0, 4.0, 8.0, 16.0):
        z = s.detach().clone().requires_grad_()
        kd_loss(z, t, None, T, 1.0).backward()
        norms[T] = z.grad.norm().item()
    assert max(norms.values()) / min(norms.values()) < 4
    # ... while without it the gradient falls roughly like 1/T^2 (here over 30x from T=2 to T=16)
    raw = []
    for T in (2.0, 16.0):
        z = s.detach().clone().requires_grad_()
        soft_target_kl(z, t, T).mean().backward()
        raw.append(z.grad.norm().item())
    assert raw[0] / raw[1] > 30


def test_per_model_temperature_and_alpha_broadcast():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(3, 5, 10, generator=g), torch.randn(3, 5, 10, generator=g)
    y = torch.randint(0, 10, (3, 5), generator=g)
    T = torch.tensor([[1.0], [2.0], [4.0]]); a = torch.tensor([[0.0], [0.5], [1.0]])
    per = kd_loss(s, t, y, T, a, reduction="none")
    for i in range(3):
        assert torch.allclose(per[i].mean(), kd_loss(s[i], t[i], y[i], float(T[i]), float(a[i])), atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(alpha=1.5), "alpha"), (dict(alpha=-0.1), "alpha"),
])
def test_bad_arguments(kwargs, match):
    s, t, y = torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=match):
        kd_loss(s, t, y, **{"temperature": 4.0, "alpha": 0.5, **kwargs})


def test_bad_shapes_and_values():
    s, y = torch.randn(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="shape"):
        kd_loss(s, torch.randn(2, 4), y)
    with pytest.raises(ValueError, match="targets"):
        kd_loss(s, torch.randn(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        kd_loss(s, torch.tensor([[0.0, float("nan"), 1.0]] * 2), y)
    with pytest.raises(ValueError, match="targets are required"):
        kd_loss(s, torch.randn(2, 3), None, alpha=0.5)
    with pytest.raises(ValueError, match="direction"):
        soft_target_kl(s, s, 1.0, "sideways")
    with pytest.raises(ValueError, match="temperature"):
        softmax_with_temperature(s, 0)


logit_arrays = st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=6, max_size=6)


@settings(max_examples=60, deadline=None)
@given(logit_arrays, logit_arrays, st.floats(0.05, 50.0), st.floats(0.0, 1.0), st.integers(0, 2))
def test_properties_nonnegative_and_finite(s, t, T, alpha, label):
    s = torch.tensor(s).view(2, 3); t = torch.tensor(t).view(2, 3)
    y = torch.tensor([label, (label + 1) % 3])
    loss, parts = kd_loss(s, t, y, T, alpha, return_parts=True)
    assert torch.isfinite(loss) and loss.item() >= -1e-4
    assert parts["kl"].item() >= -1e-4
    rev = soft_target_kl(s, t, T, "reverse")
    assert torch.isfinite(rev).all() and (rev >= -1e-4).all()


def test_label_smoothing_matches_torch_and_is_validated():
    g = torch.Generator().manual_seed(4)
    s, y = torch.randn(2, 6, 10, generator=g), torch.randint(0, 10, (2, 6), generator=g)
    per = kd_loss(s, s, y, 4.0, 0.0, label_smoothing=torch.tensor([[0.0], [0.2]]), reduction="none")
    assert per[0].mean().item() == pytest.approx(F.cross_entropy(s[0], y[0]).item(), rel=1e-5)
    assert per[1].mean().item() == pytest.approx(F.cross_entropy(s[1], y[1], label_smoothing=0.2).item(), rel=1e-5)
    with pytest.raises(ValueError, match="label_smoothing"):
        kd_loss(s, s, y, 4.0, 0.5, label_smoothing=1.5)


def test_no_gradient_reaches_the_teacher_and_alpha_zero_skips_kl():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    y = torch.randint(0, 10, (4,))
    kd_loss(s, t, y, 4.0, 0.9).backward()
    assert s.grad is not None and t.grad is None
    _, parts = kd_loss(s, t, y, 4.0, 0.0, return_parts=True)
    assert parts["kl"].item() == 0.0
