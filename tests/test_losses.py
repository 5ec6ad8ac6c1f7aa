"""kd_loss and friends, tested by value, gradient, limits and properties."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from course_lib.losses import _counted, check_kd_inputs, entropy, kd_loss, soft_target_kl, softmax_with_temperature


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
    assert max(norms.values()) / min(norms.values()) < 2       # the margin notebook 02 asserts
    # and it approaches Hinton's high-temperature limit (eq. 4): (z_s - z_t) / (C T^2) for zero-mean logits,
    # i.e. T^2 times it is (z_s - z_t) / C
    zs, zt = s.detach() - s.detach().mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)
    z = zs.clone().requires_grad_()
    kd_loss(z, zt, None, 1e4, 1.0, reduction="sum").backward()       # corrections are O(z^2 / (C T))
    assert torch.allclose(z.grad, (zs - zt) / 10, rtol=0, atol=1e-3)
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


# --------------------------------------------------------------------------- bit-for-bit identity

def frozen_kd_loss(s, t, y, temperature, alpha, direction="forward", reduction="mean", label_smoothing=0.0):
    """kd_loss's computation before masks and check_kd_inputs (commit c41d5c6), validation left out.

    Written out in full, soft_target_kl of that commit included (the same float32 operations in the
    same order), so that it does not share a line with the code under test: a KL direction swapped
    inside course_lib.losses changes ``kd_loss`` and not this reference."""
    a = torch.as_tensor(alpha)
    if y is None:
        ce = torch.zeros(s.shape[:-1], dtype=s.dtype, device=s.device)
    else:
        eps = torch.as_tensor(label_smoothing)
        logp = F.log_softmax(s, dim=-1)
        ce = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        if bool((eps > 0).any()):
            e = label_smoothing.to(ce) if torch.is_tensor(label_smoothing) else float(label_smoothing)
            ce = (1 - e) * ce - e * logp.mean(-1)
    if bool((a > 0).any()):
        tc = temperature.to(s).unsqueeze(-1) if torch.is_tensor(temperature) and temperature.dim() > 0 \
            else float(temperature)
        log_ps, log_pt = F.log_softmax(s / tc, dim=-1), F.log_softmax(t.detach() / tc, dim=-1)
        if direction == "forward":                                   # KL(p_t || p_s) = sum p_t (log p_t - log p_s)
            kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
        else:                                                        # KL(p_s || p_t) = sum p_s (log p_s - log p_t)
            kl = (log_ps.exp() * (log_ps - log_pt)).sum(-1)
    else:
        kl = torch.zeros_like(ce)
    tt = temperature if not torch.is_tensor(temperature) else temperature.to(kl)
    a = alpha if not torch.is_tensor(alpha) else alpha.to(kl)
    loss = a * tt * tt * kl + (1 - a) * ce
    if reduction == "mean":
        loss, kl, ce = loss.mean(), kl.mean(), ce.mean()
    return loss, {"kl": kl, "ce": ce}


def kl64(s, t, temperature, direction):
    """Independent float64 reference: KL(p || q) = sum p (log p - log q) of tempered softmaxes written
    out by hand, p the teacher's for "forward" (Hinton's), the student's for "reverse"."""
    tc = torch.as_tensor(temperature, dtype=torch.float64)
    tc = tc.unsqueeze(-1) if tc.dim() > 0 else tc

    def log_softmax(z):
        z = z.detach().double() / tc
        z = z - z.max(-1, keepdim=True).values
        return z - z.exp().sum(-1, keepdim=True).log()
    log_ps, log_pt = log_softmax(s), log_softmax(t)
    log_p, log_q = (log_pt, log_ps) if direction == "forward" else (log_ps, log_pt)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def col(*values):
    """One value per stacked model, shape [N, 1]."""
    return torch.tensor([[v] for v in values])


IDENTITY_CASES = [   # (shape, temperature, alpha, label_smoothing, direction, with targets)
    ((16, 10), 4.0, 0.9, 0.0, "forward", True),
    ((16, 10), 2.5, 0.0, 0.1, "forward", True),
    ((16, 10), 3.0, 1.0, 0.0, "reverse", False),
    ((3, 16, 10), col(1.3, 2.7, 4.1), col(0.0, 0.55, 1.0), col(0.0, 0.1, 0.2), "forward", True),
    ((3, 16, 10), col(1.7, 3.3, 7.9), col(0.3, 0.65, 0.9), col(0.0, 0.0, 0.0), "reverse", True),
    ((2, 16, 10), col(4.0, 4.0), col(0.0, 0.0), col(0.1, 0.0), "forward", True),   # alpha 0 everywhere: no KL
    ((2, 4, 16, 10), torch.tensor([[[2.3]], [[5.1]]]), 0.7, 0.05, "forward", True),
]


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("case", range(len(IDENTITY_CASES)))
def test_bit_identical_to_the_previous_formula(case, reduction):
    """Notebook results must not move: on unmasked inputs the new kd_loss performs the same floating-point
    operations in the same order (torch.equal, not allclose), for the loss, its parts and the gradients."""
    shape, T, a, eps, direction, with_targets = IDENTITY_CASES[case]
    g = torch.Generator().manual_seed(100 + case)
    s, t = torch.randn(*shape, generator=g) * 3, torch.randn(*shape, generator=g) * 3
    y = torch.randint(0, shape[-1], shape[:-1], generator=g) if with_targets else None
    s_old, s_new = s.clone().requires_grad_(), s.clone().requires_grad_()
    old, old_parts = frozen_kd_loss(s_old, t, y, T, a, direction, reduction, eps)
    new, new_parts = kd_loss(s_new, t, y, T, a, direction, reduction, True, eps)
    assert torch.equal(new, old)
    assert torch.equal(new_parts["kl"], old_parts["kl"]) and torch.equal(new_parts["ce"], old_parts["ce"])
    if bool((torch.as_tensor(a) > 0).any()):      # and the KL is the named direction, by a float64 formula
        kl = kl64(s, t, T, direction)
        assert torch.allclose(new_parts["kl"].double(), kl if reduction == "none" else kl.mean(), rtol=1e-4, atol=1e-5)
    old.sum().backward()
    new.sum().backward()
    assert torch.equal(s_new.grad, s_old.grad)
    # the engine's sync-free call: flags from Python-level knowledge, no ignore_index check
    a_t, e_t = torch.as_tensor(a), torch.as_tensor(eps)
    fast, fast_parts = kd_loss(s, t, y, T, a, direction, reduction, True, eps, validate=False, ignore_index=None,
                               use_kl=bool((a_t > 0).any()), use_smoothing=with_targets and bool((e_t > 0).any()))
    assert torch.equal(fast, old.detach()) and torch.equal(fast_parts["kl"], old_parts["kl"].detach())
    if reduction == "none":   # with the default ignore_index the unvalidated path keeps "none" values exact too
        assert torch.equal(kd_loss(s, t, y, T, a, direction, reduction, label_smoothing=eps, validate=False),
                           old.detach())


def test_validated_plain_inputs_take_the_unmasked_path():
    """On a GPU a masked mean (sum / count) may differ in the last bit from .mean(): inputs with nothing
    to mask must go down the plain path. (On the CPU both agree, so the test above cannot see this.)"""
    y = torch.tensor([[1, 2], [0, 1]])
    assert _counted(y, None, -100, may_sync=True) is None
    assert _counted(y, torch.ones(2, 2), -100, may_sync=True) is None
    assert _counted(None, None, -100, may_sync=False) is None and _counted(y, None, None, may_sync=False) is None
    assert _counted(y, None, -100, may_sync=False) is not None            # unknown without reading values
    assert _counted(y.masked_fill(y == 0, -100), None, -100, may_sync=True).tolist() == [[True, True], [False, True]]


# --------------------------------------------------------------------------- masks and ignore_index

def tokens(seed, b=2, length=4, c=5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, length, c, generator=g), torch.randn(b, length, c, generator=g),
            torch.randint(0, c, (b, length), generator=g))


def test_masked_value_matches_hand_computation():
    s, t, y = tokens(10)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])          # 0/1 attention mask: 4 real tokens
    real = mask.bool()
    for T, a in [(1.0, 0.5), (4.0, 0.9)]:
        assert kd_loss(s, t, y, T, a, mask=mask).item() == pytest.approx(
            hand_kd(s[real], t[real], y[real], T, a), rel=1e-5)
        assert kd_loss(s, t, y, T, a, mask=mask, reduction="sum").item() == pytest.approx(
            4 * hand_kd(s[real], t[real], y[real], T, a), rel=1e-5)


def test_padded_positions_change_nothing():
    s, t, y = tokens(11)
    mask = torch.tensor([[True, True, False, False], [True, True, True, False]])
    def run(s, t):
        z = s.clone().requires_grad_()
        loss = kd_loss(z, t, y, 2.0, 0.7, mask=mask, label_smoothing=0.1)
        loss.backward()
        return loss, z.grad
    loss, grad = run(s, t)
    s2, t2 = s.clone(), t.clone()
    s2[~mask] = torch.randn(int((~mask).sum()), 5) * 50
    t2[~mask] = -t2[~mask] + 7
    loss2, grad2 = run(s2, t2)
    assert torch.equal(loss, loss2)
    assert torch.equal(grad[mask], grad2[mask])
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))   # padding gets no gradient at all


def test_ignore_index_targets_equal_the_loss_on_kept_positions():
    s, t, y = tokens(12)
    y[0, 3] = y[1, 0] = y[1, 2] = -100                          # 5 of 8 positions kept
    kept = y != -100
    loss, parts = kd_loss(s, t, y, 3.0, 0.6, return_parts=True)  # no crash in gather
    ref, ref_parts = kd_loss(s[kept], t[kept], y[kept], 3.0, 0.6, return_parts=True)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for k in ("kl", "ce"):                                      # ignored positions are padding: no KL either
        assert parts[k].item() == pytest.approx(ref_parts[k].item(), rel=1e-6)
    # with a mask as well, a position counts iff mask is true AND its target is kept
    mask = torch.ones_like(y, dtype=torch.bool)
    mask[0, 0] = False
    both = kept & mask
    assert kd_loss(s, t, y, 3.0, 0.6, mask=mask).item() == pytest.approx(
        kd_loss(s[both], t[both], y[both], 3.0, 0.6).item(), rel=1e-6)
    # a custom ignore_index, and ignore_index=None: -100 is then an error, not padding
    y2 = y.masked_fill(~kept, 4)
    assert kd_loss(s, t, y2, 3.0, 0.6, ignore_index=4).item() == pytest.approx(
        kd_loss(s[y2 != 4], t[y2 != 4], y2[y2 != 4], 3.0, 0.6).item(), rel=1e-6)
    with pytest.raises(ValueError, match="-100"):
        kd_loss(s, t, y, 3.0, 0.6, ignore_index=None)


def test_mean_is_over_real_tokens_only():
    s, t, y = tokens(13, b=1, length=8)
    mask = torch.tensor([[0, 1, 0, 0, 1, 0, 1, 0]]).bool()     # 3 real of 8
    per = kd_loss(s, t, y, 2.0, 0.5, mask=mask, reduction="none")
    assert per.shape == (1, 8) and torch.equal(per[~mask], torch.zeros(5))   # exactly 0 where masked
    unmasked = kd_loss(s, t, y, 2.0, 0.5, reduction="none")
    assert torch.equal(per[mask], unmasked[mask])
    assert kd_loss(s, t, y, 2.0, 0.5, mask=mask).item() == pytest.approx(unmasked[mask].mean().item(), rel=1e-6)
    assert kd_loss(s, t, y, 2.0, 0.5, mask=mask, reduction="sum").item() == pytest.approx(
        unmasked[mask].sum().item(), rel=1e-6)


@pytest.mark.parametrize("validate", [True, False])
def test_all_masked_is_a_defined_zero(validate):
    """No position counts (e.g. a batch of padding): the loss is 0 with zero gradient, not NaN."""
    s, t, y = tokens(14)
    z = s.clone().requires_grad_()
    loss, parts = kd_loss(z, t, y, 2.0, 0.5, mask=torch.zeros(2, 4, dtype=torch.bool), return_parts=True,
                          validate=validate)
    loss.backward()
    assert loss.item() == 0.0 and parts["kl"].item() == 0.0 and parts["ce"].item() == 0.0
    assert torch.equal(z.grad, torch.zeros_like(z))
    assert kd_loss(s, t, torch.full_like(y, -100), 2.0, 0.5, validate=validate).item() == 0.0


def test_validate_false_gives_the_same_values():
    s, t, y = tokens(15, b=3, length=6, c=7)
    y[0, :2] = -100
    mask = torch.ones(3, 6)
    mask[2, 4:] = 0
    T, a, eps = col(1.0, 2.0, 4.0), col(0.0, 0.5, 1.0), col(0.1, 0.0, 0.0)
    for reduction in ("none", "sum", "mean"):
        checked, cp = kd_loss(s, t, y, T, a, reduction=reduction, return_parts=True, label_smoothing=eps, mask=mask)
        for flags in ({}, {"use_kl": True, "use_smoothing": True}):
            fast, fp = kd_loss(s, t, y, T, a, reduction=reduction, return_parts=True, label_smoothing=eps, mask=mask,
                               validate=False, **flags)
            assert torch.allclose(fast, checked, rtol=1e-6, atol=0)
            assert torch.allclose(fp["kl"], cp["kl"], rtol=1e-6, atol=0)
            assert torch.allclose(fp["ce"], cp["ce"], rtol=1e-6, atol=0)
    # floats: alpha == 0 / label_smoothing == 0 are known without the checks, and the KL is skipped
    _, parts = kd_loss(s, t, y, 2.0, 0.0, return_parts=True, validate=False)
    assert parts["kl"].item() == 0.0


def test_validate_false_never_reads_tensor_values(monkeypatch):
    """bool(tensor), .item(), float(tensor), ... each wait for the GPU; the unvalidated path has none."""
    s, t, y = tokens(16, b=3, length=6, c=7)
    y[0, 0] = -100
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 5] = False
    def sync(*_):
        raise AssertionError("device-to-host sync in kd_loss(validate=False)")
    for name in ("__bool__", "item", "__float__", "__int__", "__index__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    z = s.clone().requires_grad_()
    for reduction in ("mean", "sum", "none"):
        loss, _ = kd_loss(z, t, y, col(1.0, 2.0, 4.0), col(0.0, 0.5, 1.0), reduction=reduction, return_parts=True,
                          label_smoothing=col(0.1, 0.0, 0.0), mask=mask, validate=False, use_kl=True,
                          use_smoothing=True)
        loss.sum().backward()
    kd_loss(z, t, y, 4.0, 0.9, mask=mask, validate=False)
    with pytest.raises(AssertionError, match="sync"):           # the checks do read values
        kd_loss(z, t, y, 4.0, 0.9, mask=mask)


def test_gradient_flows_to_the_student_only():
    s, t, y = tokens(17)
    s.requires_grad_()
    t.requires_grad_()
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    y[1, 3] = -100
    for validate in (True, False):
        s.grad = None
        kd_loss(s, t, y, 4.0, 0.9, mask=mask, validate=validate).backward()
        assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


# --------------------------------------------------------------------------- clear errors

def test_bad_targets_raise_clear_errors():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    with pytest.raises(ValueError, match=r"\[0, 10\).*10 classes.*found 10"):
        kd_loss(s, t, torch.tensor([0, 10, 3, 2]))
    with pytest.raises(ValueError, match="found -3"):
        kd_loss(s, t, torch.tensor([0, -3, 3, 2]))
    with pytest.raises(TypeError, match="integer class indices.*teacher_logits"):
        kd_loss(s, t, torch.tensor([0.0, 1.0, 3.0, 2.0]))
    with pytest.raises(TypeError, match="integer class indices"):
        kd_loss(s, t, torch.softmax(t, -1).argmax(-1) == 1)    # bool is not a class index
    # an out-of-range target at a masked-out position is padding, not an error; int32 works too
    y = torch.tensor([0, 10, 3, 2], dtype=torch.int32)
    assert torch.isfinite(kd_loss(s, t, y, mask=torch.tensor([1, 0, 1, 1])))


def test_bad_mask_reduction_and_flags_raise_clear_errors():
    s, t, y = tokens(18)
    with pytest.raises(ValueError, match="mask must be a tensor of shape \\(2, 4\\)"):
        kd_loss(s, t, y, mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="0 and 1"):
        kd_loss(s, t, y, mask=torch.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="reduction"):
        kd_loss(s, t, y, reduction="batchmean")
    with pytest.raises(ValueError, match="use_kl=False"):
        kd_loss(s, t, y, alpha=0.5, use_kl=False)
    with pytest.raises(ValueError, match="use_smoothing=False"):
        kd_loss(s, t, y, label_smoothing=0.1, use_smoothing=False)
    with pytest.raises(ValueError, match="direction"):
        kd_loss(s, t, y, alpha=0.0, direction="sideways")


def test_check_kd_inputs_reports_which_terms_are_needed():
    s, t, y = tokens(19, b=2)
    assert check_kd_inputs(s, t, y, 4.0, 0.9) == (True, False)
    assert check_kd_inputs(s, t, y, col(1.0, 2.0), col(0.0, 0.0), label_smoothing=col(0.0, 0.1)) == (False, True)
    assert check_kd_inputs(s, t, None, 4.0, 1.0, label_smoothing=0.1) == (True, False)   # no targets: no CE
