"""Token-level LLM distillation losses: values against reference formulas, the GKD identities,
gradients, masks (never averaged over padding), vocabularies, top-k caches, clear errors, and the
one-peak-against-two toy (forward KL covers both modes, reverse KL picks one)."""
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.llm.losses import (align_vocab, shift_for_causal_lm, token_divergence, token_kd_loss,
                                   topk_divergence, topk_kd_loss, topk_mass, topk_teacher_logits)
from course_lib.llm.losses import fit_gaussian_student, gaussian_logits

DIVS = [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.2), ("jsd", 0.9)]


# --------------------------------------------------------------------------- reference formulas (float64)

def probs(z, T):
    e = torch.exp(z.double() / T)
    return e / e.sum(-1, keepdim=True)


def ref_kl(p, q):
    """KL(p || q) = sum p log(p / q), per position."""
    return (p * torch.log(p / q)).sum(-1)


def ref_divergence(s, t, divergence, beta, T):
    ps, pt = probs(s, T), probs(t, T)
    if divergence == "forward_kl" or (divergence == "jsd" and beta == 0):
        return ref_kl(pt, ps)
    if divergence == "reverse_kl" or (divergence == "jsd" and beta == 1):
        return ref_kl(ps, pt)
    m = beta * pt + (1 - beta) * ps                      # the mixture, in probability space
    return beta * ref_kl(pt, m) + (1 - beta) * ref_kl(ps, m)


def ref_ce(s, y):
    return -torch.log(probs(s, 1.0).gather(-1, y.unsqueeze(-1)).squeeze(-1))


def article_batchmean_kl(s, t, T):
    """The source article's LLM loss (GUIDE section 4, mistake 6): KLDivLoss(batchmean) over all B*S
    positions, padding included, i.e. the sum over every position divided by B*S. The WRONG answer."""
    V = s.shape[-1]
    return F.kl_div(F.log_softmax(s.reshape(-1, V) / T, -1), F.softmax(t.reshape(-1, V) / T, -1),
                    reduction="batchmean") * T * T


def batch(seed, b=2, s=5, v=7, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, s, v, generator=g, dtype=dtype) * 2, torch.randn(b, s, v, generator=g, dtype=dtype) * 2,
            torch.randint(0, v, (b, s), generator=g))


MASK = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])        # right padding: 6 real tokens of 10


# --------------------------------------------------------------------------- values

@pytest.mark.parametrize("divergence,beta", DIVS + [("jsd", 0.0), ("jsd", 1.0)])
@pytest.mark.parametrize("T", [1.0, 2.5])
def test_each_divergence_by_value(divergence, beta, T):
    s, t, y = batch(0)
    per = token_divergence(s, t, divergence, beta=beta, temperature=T)
    assert torch.allclose(per, ref_divergence(s, t, divergence, beta, T), rtol=1e-10, atol=1e-12)
    real = MASK.bool()
    expected = (T * T * ref_divergence(s, t, divergence, beta, T))[real].mean()
    loss = token_kd_loss(s, t, y, divergence=divergence, beta=beta, temperature=T, attention_mask=MASK)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)


def test_alpha_mixes_divergence_and_ce():
    s, t, y = batch(1)
    y[0, 1] = -100                                              # an ignored label inside the real tokens
    real = MASK.bool() & (y != -100)
    T, a = 2.0, 0.3
    for divergence, beta in DIVS:
        per = a * T * T * ref_divergence(s, t, divergence, beta, T) + (1 - a) * ref_ce(s, y.clamp_min(0))
        loss, parts = token_kd_loss(s, t, y, divergence=divergence, beta=beta, temperature=T, alpha=a,
                                    attention_mask=MASK, return_parts=True)
        assert loss.item() == pytest.approx(per[real].mean().item(), rel=1e-10)
        assert parts["divergence"].item() == pytest.approx(ref_divergence(s, t, divergence, beta, T)[real].mean().item(), rel=1e-10)
        assert parts["ce"].item() == pytest.approx(ref_ce(s, y.clamp_min(0))[real].mean().item(), rel=1e-10)
    # alpha = 0 is the masked cross-entropy, whatever the teacher
    assert token_kd_loss(s, t * 9, y, alpha=0.0, temperature=T, attention_mask=MASK).item() == pytest.approx(
        F.cross_entropy(s[real], y[real]).item(), rel=1e-12)
    # alpha = 1 needs no labels; alpha < 1 does
    assert torch.isfinite(token_kd_loss(s, t, None, attention_mask=MASK))
    with pytest.raises(ValueError, match="required unless alpha == 1"):
        token_kd_loss(s, t, None, alpha=0.5)


def test_t_squared_scaling():
    s, t, y = batch(2)
    for divergence, beta in DIVS:
        for T in (1.0, 2.0, 8.0):
            loss, parts = token_kd_loss(s, t, y, divergence=divergence, beta=beta, temperature=T, return_parts=True)
            assert loss.item() == pytest.approx(T * T * parts["divergence"].item(), rel=1e-12)
            assert parts["divergence"].item() == pytest.approx(token_divergence(s, t, divergence, beta=beta, temperature=T).mean().item(), rel=1e-12)


def test_forward_and_reverse_kl_by_hand_on_the_real_tokens():
    """In float32 (the course's dtype), against the float64 formulas above - not against
    soft_target_kl, which token_kd_loss calls: a direction swapped there must fail here."""
    s, t, y = batch(3, dtype=torch.float32)
    y[1, 0] = -100
    real = MASK.bool() & (y != -100)
    T = 3.0
    ps, pt = probs(s[real], T), probs(t[real], T)
    loss = token_kd_loss(s, t, y, temperature=T, attention_mask=MASK)
    assert loss.item() == pytest.approx((T * T * ref_kl(pt, ps)).mean().item(), rel=1e-5)   # KL(p_t || p_s)
    rev = token_kd_loss(s, t, y, divergence="reverse_kl", temperature=T, attention_mask=MASK)
    assert rev.item() == pytest.approx((T * T * ref_kl(ps, pt)).mean().item(), rel=1e-5)    # KL(p_s || p_t)
    assert abs(loss.item() - rev.item()) > 0.01 * loss.item()           # 3.6% apart: far beyond the tolerance


# --------------------------------------------------------------------------- identities (TRL's GKD convention)

def test_jsd_endpoints_are_the_forward_and_reverse_kl():
    s, t, _ = batch(4)
    fwd, rev = token_divergence(s, t, "forward_kl"), token_divergence(s, t, "reverse_kl")
    assert torch.equal(token_divergence(s, t, "jsd", beta=0.0), fwd)        # beta = 0: KL(teacher || student)
    assert torch.equal(token_divergence(s, t, "jsd", beta=1.0), rev)        # beta = 1: KL(student || teacher)
    assert torch.allclose(fwd, ref_kl(probs(t, 1), probs(s, 1)), rtol=1e-12)
    assert (fwd - rev).abs().max() > 0.1                                    # the two really differ here
    # why this is the natural choice: the endpoints are the limits of JSD/beta and JSD/(1 - beta)
    eps = 1e-6
    assert torch.allclose(token_divergence(s, t, "jsd", beta=eps) / eps, fwd, rtol=1e-3)
    assert torch.allclose(token_divergence(s, t, "jsd", beta=1 - eps) / eps, rev, rtol=1e-3)


def test_jsd_half_is_symmetric_and_bounded():
    s, t, _ = batch(5)
    assert torch.allclose(token_divergence(s, t, "jsd", beta=0.5), token_divergence(t, s, "jsd", beta=0.5), rtol=1e-12)
    # near-disjoint distributions approach the bound: JSD_beta <= h(beta), log 2 at beta = 0.5
    far_s = torch.tensor([[[60.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    far_t = torch.tensor([[[0.0, 0.0, 0.0, 60.0]]], dtype=torch.float64)
    for beta in (0.1, 0.3, 0.5, 0.9):
        h = -beta * math.log(beta) - (1 - beta) * math.log(1 - beta)
        for a, b in ((s, t), (far_s, far_t), (s * 50, -t * 50)):
            assert token_divergence(a, b, "jsd", beta=beta).max().item() <= h + 1e-12
        assert token_divergence(far_s, far_t, "jsd", beta=beta).item() == pytest.approx(h, rel=1e-6)
    assert token_divergence(far_s, far_t, "jsd", beta=0.5).item() == pytest.approx(math.log(2), rel=1e-6)
    # not symmetric for beta != 0.5
    assert not torch.allclose(token_divergence(s, t, "jsd", beta=0.2), token_divergence(t, s, "jsd", beta=0.2))


@pytest.mark.parametrize("divergence,beta", DIVS + [("jsd", 0.0), ("jsd", 1.0)])
def test_zero_when_student_equals_teacher(divergence, beta):
    s, _, y = batch(6)
    assert token_divergence(s, s.clone(), divergence, beta=beta, temperature=2.0).abs().max().item() < 1e-14
    assert token_kd_loss(s, s.clone(), y, divergence=divergence, beta=beta, attention_mask=MASK).item() == pytest.approx(0, abs=1e-14)
    assert (token_divergence(s, s.flip(-1), divergence, beta=beta) > 0).all()


# --------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("divergence,beta", DIVS + [("jsd", 0.0), ("jsd", 1.0)])
def test_gradcheck(divergence, beta):
    s, t, y = batch(7, b=2, s=3, v=4)
    s.requires_grad_(), t.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: token_divergence(a, b, divergence, beta=beta, temperature=1.7), (s, t))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.autograd.gradcheck(
        lambda a: token_kd_loss(a, t, y, divergence=divergence, beta=beta, temperature=1.7, alpha=0.6,
                                attention_mask=mask), (s,))
    # the teacher is detached by the loss
    token_kd_loss(s, t, y, divergence=divergence, beta=beta).backward()
    assert t.grad is None and s.grad is not None


def test_gradcheck_topk():
    s, t, y = batch(8, b=2, s=3, v=6)
    values, indices = topk_teacher_logits(t, 3)
    s.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: topk_kd_loss(a, values, indices, y, temperature=1.5, alpha=0.7), (s,))


# --------------------------------------------------------------------------- masks: never average over padding

@pytest.mark.parametrize("divergence,beta", DIVS)
def test_padding_and_ignored_positions_change_nothing(divergence, beta):
    s, t, y = batch(9)
    y[0, 2] = -100
    real = MASK.bool() & (y != -100)
    def run(s, t, y):
        z = s.clone().requires_grad_()
        loss = token_kd_loss(z, t, y, divergence=divergence, beta=beta, temperature=2.0, alpha=0.8, attention_mask=MASK)
        loss.backward()
        return loss, z.grad
    loss, grad = run(s, t, y)
    s2, t2, y2 = s.clone(), t.clone(), y.clone()
    s2[~real] = torch.randn(int((~real).sum()), 7, dtype=torch.float64) * 40
    t2[~real] = -t2[~real] * 5 + 3
    y2[~MASK.bool()] = 123456                                   # junk labels under the attention mask: not read
    loss2, grad2 = run(s2, t2, y2)
    assert torch.equal(loss, loss2)
    assert torch.equal(grad[real], grad2[real])
    assert torch.equal(grad[~real], torch.zeros_like(grad[~real]))


def test_mean_is_over_real_tokens_not_batchmean_over_b_times_s():
    s, t, y = batch(10, dtype=torch.float32)
    T = 2.0
    per = token_kd_loss(s, t, y, temperature=T, attention_mask=MASK, reduction="none")
    real = MASK.bool()
    assert per.shape == (2, 5) and torch.equal(per[~real], torch.zeros(4))
    ours = token_kd_loss(s, t, y, temperature=T, attention_mask=MASK)
    assert ours.item() == pytest.approx(per[real].mean().item(), rel=1e-6)                       # / 6 real tokens
    assert token_kd_loss(s, t, y, temperature=T, attention_mask=MASK, reduction="sum").item() == pytest.approx(
        per.sum().item(), rel=1e-6)
    assert ours.item() != pytest.approx((per.sum() / per.numel()).item(), rel=1e-3)            # not sum / (B*S)
    # the article's formula averages over every position, padding included: a different number
    wrong = article_batchmean_kl(s, t, T)
    unmasked = token_kd_loss(s, t, y, temperature=T)                       # no mask: it IS the article's value
    assert wrong.item() == pytest.approx(unmasked.item(), rel=1e-5)
    assert abs(wrong.item() - ours.item()) > 0.05 * ours.item()
    # and with padding masked to zero but still divided by B*S, it is diluted by the share of real tokens
    assert (per.sum() / per.numel()).item() == pytest.approx(ours.item() * 6 / 10, rel=1e-6)


def test_mask_and_ignore_index_combine():
    s, t, y = batch(11, dtype=torch.float32)
    y[0, 0] = y[1, 4] = -100                                     # (1, 4) is padding as well
    both = MASK.bool() & (y != -100)
    loss = token_kd_loss(s, t, y, temperature=2.0, alpha=0.5, attention_mask=MASK, divergence="jsd")
    ref = token_kd_loss(s[both][None], t[both][None], y[both][None], temperature=2.0, alpha=0.5, divergence="jsd")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    # a boolean mask works as the 0/1 one
    assert torch.equal(loss, token_kd_loss(s, t, y, temperature=2.0, alpha=0.5, attention_mask=MASK.bool(), divergence="jsd"))


def test_no_real_token_is_an_error_not_nan():
    s, t, y = batch(12)
    with pytest.raises(ValueError, match="no real token.*0 of 10"):
        token_kd_loss(s, t, y, attention_mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="no real token"):
        token_kd_loss(s, t, torch.full_like(y, -100), divergence="jsd")
    with pytest.raises(ValueError, match="no real token"):
        topk_kd_loss(s, *topk_teacher_logits(t, 2), torch.full_like(y, -100))
    # validate=False (no GPU sync): a defined 0 with zero gradient
    z = s.clone().requires_grad_()
    loss = token_kd_loss(z, t, y, attention_mask=torch.zeros(2, 5), validate=False)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))


def test_validate_false_same_values_and_no_host_sync(monkeypatch):
    s, t, y = batch(13, dtype=torch.float32)
    y[0, 1] = -100
    values, indices = topk_teacher_logits(t, 3)
    kwargs = dict(temperature=2.0, alpha=0.7, attention_mask=MASK)
    checked = [token_kd_loss(s, t, y, divergence=d, beta=b, **kwargs) for d, b in DIVS]
    checked.append(topk_kd_loss(s, values, indices.int(), y, **kwargs))
    def sync(*_):
        raise AssertionError("device-to-host sync with validate=False")
    for name in ("__bool__", "item", "__float__", "__int__", "__index__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    fast = [token_kd_loss(s, t, y, divergence=d, beta=b, validate=False, **kwargs) for d, b in DIVS]
    fast.append(topk_kd_loss(s, values, indices.int(), y, validate=False, **kwargs))
    monkeypatch.undo()
    for a, b in zip(fast, checked):
        assert torch.allclose(a, b, rtol=1e-6, atol=0)


def test_shift_for_causal_lm():
    g = torch.Generator().manual_seed(14)
    logits, ids = torch.randn(2, 6, 9, generator=g), torch.randint(0, 9, (2, 6), generator=g)
    shifted, labels = shift_for_causal_lm(logits, ids)
    assert torch.equal(shifted, logits[:, :-1]) and torch.equal(labels, ids[:, 1:])
    # what Hugging Face's causal-LM loss computes on unpadded inputs: CE of logits[i] against ids[i + 1]
    assert token_kd_loss(shifted, shifted, labels, alpha=0.0).item() == pytest.approx(
        F.cross_entropy(logits[:, :-1].reshape(-1, 9), ids[:, 1:].reshape(-1)).item(), rel=1e-6)
    right = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    _, yr = shift_for_causal_lm(logits, ids, right)
    _, yl = shift_for_causal_lm(logits, ids, left)
    assert (yr != -100).tolist() == [[True, True, True, False, False], [True] * 5]
    # left padding: the first real token is not predicted from a padding position
    assert (yl != -100).tolist() == [[False, False, True, True, True], [True] * 5]
    with pytest.raises(ValueError, match=r"\[B, S, V\]"):
        shift_for_causal_lm(logits[0], ids)


# --------------------------------------------------------------------------- vocabularies

def test_mismatched_vocabularies_are_refused_with_both_sizes():
    s, t, y = batch(15)
    t_padded = torch.cat([t, torch.randn(2, 5, 3, dtype=torch.float64)], -1)      # teacher padded to 10
    with pytest.raises(ValueError, match="student_logits has 7 entries, teacher_logits 10.*vocab_size"):
        token_kd_loss(s, t_padded, y)
    with pytest.raises(ValueError, match="7.*10"):
        align_vocab(s, t_padded)
    with pytest.raises(ValueError, match="vocab_size=8 is larger than student_logits's vocabulary \\(7\\)"):
        align_vocab(s, t_padded, 8)
    with pytest.raises(ValueError, match="positive int"):
        align_vocab(s, t_padded, 0)


def test_trimming_a_padded_vocabulary_is_explicit():
    s, t, y = batch(16)
    t_padded = torch.cat([t, torch.full((2, 5, 3), 5.0, dtype=torch.float64)], -1)   # padded rows with real mass
    s_padded = torch.cat([s, torch.zeros(2, 5, 1, dtype=torch.float64)], -1)
    a, b = align_vocab(s, t_padded, 7)
    assert torch.equal(a, s) and torch.equal(b, t)
    for div in ("forward_kl", "jsd"):
        ref = token_kd_loss(s, t, y, divergence=div, alpha=0.5, attention_mask=MASK)
        assert torch.equal(token_kd_loss(s, t_padded, y, divergence=div, alpha=0.5, attention_mask=MASK, vocab_size=7), ref)
        assert torch.equal(token_kd_loss(s_padded, t_padded, y, divergence=div, alpha=0.5, attention_mask=MASK, vocab_size=7), ref)
    # a label beyond the shared vocabulary is an error after trimming
    y[0, 0] = 8
    with pytest.raises(ValueError, match=r"\[0, 7\).*found 8"):
        token_kd_loss(s_padded, t_padded, y, vocab_size=7, alpha=0.5)
    # top-k: the cache never points into the padding once trimmed, and the student is trimmed alike
    _, idx = topk_teacher_logits(t_padded, 4)
    assert (idx >= 7).any()                                     # untrimmed, the padded rows win
    values, idx = topk_teacher_logits(t_padded, 4, vocab_size=7)
    assert (idx < 7).all()
    assert torch.equal(topk_kd_loss(s_padded, values, idx, vocab_size=7), topk_kd_loss(s, values, idx))


# --------------------------------------------------------------------------- top-k teacher caches

def test_topk_with_k_equal_v_is_the_full_forward_kl():
    s, t, y = batch(17)
    values, indices = topk_teacher_logits(t, 7)
    for T, a in ((1.0, 1.0), (2.5, 0.6)):
        full = token_kd_loss(s, t, y, temperature=T, alpha=a, attention_mask=MASK)
        assert topk_kd_loss(s, values, indices, y, temperature=T, alpha=a, attention_mask=MASK).item() == pytest.approx(full.item(), rel=1e-10)
    assert torch.allclose(topk_mass(t, 7), torch.ones(2, 5, dtype=torch.float64), rtol=0, atol=1e-12)


def test_topk_computes_kl_from_the_renormalised_teacher():
    """KL(q_t || p_s) = KL(q_t || q_s) - log m_s, q = renormalised over the teacher's top-k."""
    s, t, _ = batch(18)
    k, T = 3, 1.5
    values, indices = topk_teacher_logits(t, k)
    ps, pt = probs(s, T), probs(t, T)
    q_t = pt.gather(-1, indices); q_t = q_t / q_t.sum(-1, keepdim=True)
    p_s_on_k = ps.gather(-1, indices)
    m_s = p_s_on_k.sum(-1)
    per = topk_divergence(s, values, indices, temperature=T)
    assert torch.allclose(per, (q_t * torch.log(q_t / p_s_on_k)).sum(-1), rtol=1e-10)
    assert torch.allclose(per, ref_kl(q_t, p_s_on_k / m_s[..., None]) - torch.log(m_s), rtol=1e-10)
    # it is not the full forward KL when k < V; raw logits as values give the same (shift invariance)
    assert not torch.allclose(per, ref_kl(pt, ps), rtol=1e-2)
    assert torch.allclose(topk_divergence(s, t.gather(-1, indices), indices, temperature=T), per, rtol=1e-10)
    # the top-k minimiser is the renormalised teacher: a student equal to q_t on K (and ~0 elsewhere) scores 0
    student = torch.full_like(t, -1e4).scatter(-1, indices, values)
    assert topk_divergence(student, values, indices).abs().max().item() < 1e-12
    # a float16 / int32 cache works
    assert torch.allclose(topk_divergence(s, values.half(), indices.int(), temperature=T), per, rtol=1e-2)


def test_topk_mass():
    s, t, _ = batch(19, v=12)
    masses = torch.stack([topk_mass(t, k) for k in range(1, 13)])
    assert (masses[1:] > masses[:-1]).all()                     # increasing in k
    assert torch.allclose(masses[-1], torch.ones(2, 5, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(masses[0], probs(t, 1).max(-1).values, rtol=1e-12)
    values, _ = topk_teacher_logits(t, 4)
    assert torch.allclose(values.exp().sum(-1), masses[3], rtol=1e-12)   # the cache knows its own mass (T = 1)
    hot = topk_mass(t, 4, temperature=4.0)                     # a flatter teacher keeps less in its top-4
    assert (hot < masses[3]).all()
    assert torch.allclose(hot, probs(t, 4.0).topk(4).values.sum(-1), rtol=1e-12)


# --------------------------------------------------------------------------- clear errors

@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=-2.0), "temperature"),
    (dict(divergence="jsd", beta=1.5), "beta"), (dict(divergence="jsd", beta=-0.1), "beta"),
    (dict(beta=float("nan")), "beta"), (dict(beta=torch.tensor(0.5)), "beta"),
    (dict(divergence="kl"), "divergence must be one of"), (dict(alpha=1.2), "alpha"),
    (dict(reduction="batchmean"), "reduction"),
])
def test_bad_arguments(kwargs, match):
    s, t, y = batch(20)
    with pytest.raises(ValueError, match=match):
        token_kd_loss(s, t, y, **kwargs)


def test_bad_shapes_and_labels():
    s, t, y = batch(21)
    with pytest.raises(ValueError, match=r"student_logits must be \[batch, seq, vocab\].*\(10, 7\)"):
        token_kd_loss(s.reshape(10, 7), t.reshape(10, 7), y.reshape(10))
    with pytest.raises(ValueError, match=r"labels must be \[batch, seq\] = \(2, 5\).*\(2, 5, 7\)"):
        token_kd_loss(s, t, s.argmax(-1, keepdim=True).expand(2, 5, 7))
    with pytest.raises(ValueError, match=r"labels must be \[batch, seq\] = \(2, 5\).*\(2, 4\)"):
        token_kd_loss(s, t, y[:, :4])
    with pytest.raises(ValueError, match=r"attention_mask must be \[batch, seq\]"):
        token_kd_loss(s, t, y, attention_mask=MASK[:, :4])
    with pytest.raises(ValueError, match=r"teacher_logits has batch and sequence \(2, 4\)"):
        token_kd_loss(s, t[:, :4], y)
    with pytest.raises(ValueError, match=r"\[0, 7\).*found 7"):
        token_kd_loss(s, t, y.masked_fill(y == y[0, 0], 7), alpha=0.5)
    with pytest.raises(ValueError, match="found -3"):
        token_kd_loss(s, t, y.masked_fill(y == y[0, 0], -3), alpha=0.5)
    with pytest.raises(ValueError, match="0 and 1"):
        token_kd_loss(s, t, y, attention_mask=torch.full((2, 5), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        token_kd_loss(s, t.masked_fill(t > 2, float("nan")), y)


def test_topk_bad_inputs():
    s, t, y = batch(22)
    values, indices = topk_teacher_logits(t, 3)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 7\]"):
        topk_teacher_logits(t, 8)
    with pytest.raises(ValueError, match="k must be"):
        topk_mass(t, 0)
    with pytest.raises(ValueError, match=r"topk_indices must lie in \[0, 5\)"):
        topk_kd_loss(s[..., :5], values, indices.clamp_min(5))
    with pytest.raises(ValueError, match="differ in shape"):
        topk_kd_loss(s, values, indices[..., :2])
    with pytest.raises(TypeError, match="integer token ids"):
        topk_kd_loss(s, values, indices.double())
    with pytest.raises(ValueError, match=r"topk_values must be \[batch, seq, k\]"):
        topk_kd_loss(s, values[0], indices[0])
    with pytest.raises(ValueError, match="temperature"):
        topk_kd_loss(s, values, indices, temperature=0.0)


@pytest.mark.parametrize("divergence,beta", [("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.2)])
def test_topk_reverse_and_jsd_are_over_the_top_k_and_equal_the_full_ones_at_k_equal_v(divergence, beta):
    g = torch.Generator().manual_seed(41)
    s, t = torch.randn(2, 5, 12, generator=g, dtype=torch.float64), torch.randn(2, 5, 12, generator=g,
                                                                               dtype=torch.float64)
    values, indices = topk_teacher_logits(t, 12)
    full = topk_divergence(s, values, indices, divergence=divergence, beta=beta, temperature=1.5)
    assert torch.allclose(full, token_divergence(s, t, divergence, beta=beta, temperature=1.5), atol=1e-10)
    values, indices = topk_teacher_logits(t, 4)          # k < V: both renormalised over the teacher's top 4
    got = topk_divergence(s, values, indices, divergence=divergence, beta=beta)
    expected = token_divergence(s.gather(-1, indices), t.gather(-1, indices), divergence, beta=beta)
    assert torch.allclose(got, expected, atol=1e-10)
    s[..., 0] += 100.0 * (indices != 0).all(-1)          # the student's mass off the top-k is not seen
    assert torch.allclose(topk_divergence(s, values, indices, divergence=divergence, beta=beta), expected, atol=1e-10)


# --------------------------------------------------------------------------- the toy: one peak against two

@pytest.mark.parametrize("offset", [0.4, -0.4])              # the mode at 15 higher, then the one at 42
def test_one_peak_fit_forward_covers_reverse_picks(offset):
    """Notebook 06's figure: forward KL spreads one peak over both modes, reverse KL (and the JSD at
    beta 0.5) sits on one mode with its width; gradient descent from one broad start does not get there."""
    positions = torch.arange(60.0)
    teacher = torch.logsumexp(torch.stack([gaussian_logits(positions, 15.0, 3.0),
                                           gaussian_logits(positions, 42.0, 3.0) - offset]), 0)
    forward = fit_gaussian_student(teacher, "forward_kl")
    assert 15 + 3 < forward.mean < 42 - 3 and forward.width > 10, forward
    higher = 15.0 if offset > 0 else 42.0
    for divergence in ("reverse_kl", "jsd"):
        fit = fit_gaussian_student(teacher, divergence)
        assert abs(fit.mean - higher) < 0.5 and abs(fit.width - 3.0) < 0.3, (divergence, fit)
        assert fit.width < 0.5 * forward.width
        assert math.isclose(fit.value, float(token_divergence(fit.logits, teacher, divergence)), rel_tol=1e-5)
        naive = fit_gaussian_student(teacher, divergence, start=(28.0, 7.4), steps=400)
        assert fit.value <= naive.value + 1e-6                   # the grid's answer is at least as good
        if divergence == "reverse_kl":                           # one broad start: a broad local minimum
            assert naive.width > 10 and naive.value > fit.value + 1.0, naive
    with pytest.raises(ValueError, match=r"\[V\]"):
        fit_gaussian_student(teacher[None])
    with pytest.raises(ValueError, match="divergence"):
        fit_gaussian_student(teacher, "kl")
