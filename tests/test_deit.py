"""DeiT: the distillation token is really in the sequence; the two losses by value; training through fit."""
import pytest
import torch
import torch.nn.functional as F

from course_lib.deit import ArticleDistilledViT, DeiT, deit_loss, deit_objective
from course_lib.engine import Execution, RunSpec, TrainConfig, cache_logits, evaluate, fit, prediction
from course_lib.models import ViT, count_parameters
from course_lib.stacking import can_stack, stack_models
from test_engine import toy_images

QUIET = Execution(device="cpu", progress=False)


def small(cls, **kw):
    torch.manual_seed(0)
    return cls(dim=32, depth=2, heads=2, **kw).eval()


def test_token_layout_and_parameters():
    vit, deit = small(ViT), small(DeiT)
    x = torch.randn(3, 1, 28, 28)
    assert vit.embed(x).shape == (3, 1 + 49, 32) and deit.embed(x).shape == (3, 2 + 49, 32)
    assert deit.pos_embed.shape == (1, 2 + 49, 32)          # its own position embedding
    # one token (32), one position (32) and one head (32 * 10 + 10) more than the ViT
    assert count_parameters(deit) - count_parameters(vit) == 32 + 32 + 32 * 10 + 10
    cls_logits, dist_logits = deit(x)
    assert cls_logits.shape == dist_logits.shape == (3, 10)


def test_our_token_is_in_the_sequence_the_articles_is_not():
    x = torch.randn(2, 1, 28, 28)
    deit, article = small(DeiT), small(ArticleDistilledViT)
    with torch.no_grad():
        before, article_before = deit(x), article(x)
        # a random change (a constant shift would be removed by the LayerNorm)
        deit.dist_token.add_(torch.randn(deit.dist_token.shape, generator=torch.Generator().manual_seed(3)))
        article.dist_token.add_(torch.randn(article.dist_token.shape, generator=torch.Generator().manual_seed(3)))
        after, article_after = deit(x), article(x)
    assert not torch.allclose(before[1], after[1])            # the distillation head reads the token
    assert not torch.allclose(before[0], after[0])            # and the class token attends to it
    assert torch.equal(article_before[1], article_after[1])   # the article's token changes nothing
    # the article's "distillation" output is the first patch token's, and its token gets no gradient
    article.zero_grad()
    article(x)[1].sum().backward()
    assert article.dist_token.grad is None
    deit.zero_grad()
    deit(x)[1].sum().backward()
    assert deit.dist_token.grad is not None and deit.dist_token.grad.abs().sum() > 0


def test_deit_loss_by_value_and_limits():
    g = torch.Generator().manual_seed(1)
    zc, zd, zt = (torch.randn(5, 10, generator=g) for _ in range(3))
    y = torch.randint(0, 10, (5,), generator=g)
    ce = F.cross_entropy(zc, y, reduction="none")
    hard = deit_loss(zc, zd, y, zt, alpha=0.5, hard=True)
    assert torch.allclose(hard, 0.5 * ce + 0.5 * F.cross_entropy(zd, zt.argmax(-1), reduction="none"))
    soft = deit_loss(zc, zd, y, zt, alpha=0.3, temperature=3.0, hard=False)
    # KL(p_t || p_dist) = sum p_t (log p_t - log p_dist) at tau = 3, by hand in float64 (not soft_target_kl,
    # which deit_loss calls: a direction swapped there must fail here)
    log_pd, log_pt = ((z.double() / 3.0) - (z.double() / 3.0).exp().sum(-1, keepdim=True).log() for z in (zd, zt))
    kl = (log_pt.exp() * (log_pt - log_pd)).sum(-1)
    assert torch.allclose(soft.double(), 0.7 * ce.double() + 0.3 * 9.0 * kl, rtol=1e-5, atol=1e-6)
    reverse = (log_pd.exp() * (log_pd - log_pt)).sum(-1)
    assert not torch.allclose(soft.double(), 0.7 * ce.double() + 0.3 * 9.0 * reverse, rtol=1e-3)
    assert torch.allclose(deit_loss(zc, zd, y, zt, alpha=0.0), ce)                 # alpha 0: labels only
    assert torch.allclose(deit_loss(zc, zt, y, zt, alpha=1.0, temperature=2.0, hard=False), torch.zeros(5), atol=1e-6)
    # per-model tensors broadcast like kd_loss's ([N, 1] against [N, B])
    per_model = deit_loss(zc.expand(2, 5, 10), zd.expand(2, 5, 10), y.expand(2, 5), zt.expand(2, 5, 10),
                          alpha=torch.tensor([[0.5], [0.3]]), temperature=torch.tensor([[1.0], [3.0]]), hard=False)
    assert torch.allclose(per_model[1], soft)
    with pytest.raises(ValueError, match="share a shape"):
        deit_loss(zc, zd[:, :5], y, zt)


def test_deit_trains_through_fit_and_is_evaluated_per_head():
    data, test = toy_images(256, seed=1), toy_images(200, seed=2)
    torch.manual_seed(0)
    teacher_logits = F.one_hot(data.y, 10).float() * 5           # a perfect teacher
    make = lambda: DeiT(dim=32, depth=2, heads=2)
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, eval_every=0)
    runs = fit(make, [RunSpec("hard", 0, 1.0, 0.5), RunSpec("hard", 1, 1.0, 0.5)], data, cfg,
               teacher_logits=teacher_logits, objective=deit_objective(hard=True), test=test, execution=QUIET)
    assert can_stack([make(), make()])                            # trained as one vmap stack
    for r in runs:
        assert len(r.test_accuracy_heads) == 2 and r.history["loss"][-1] < r.history["loss"][0]
        assert r.test_accuracy == pytest.approx(evaluate(r.model, test))
        assert min(r.test_accuracy_heads) > 18                    # both heads beat chance (10%) clearly
    with pytest.raises(ValueError, match="teacher"):
        fit(make, [RunSpec("hard", 0, 1.0, 0.5)], data, cfg, objective=deit_objective(), execution=QUIET)


def test_prediction_averages_the_two_heads_and_stacks():
    models = [small(DeiT) for _ in range(2)]
    x = torch.randn(2, 3, 1, 28, 28)
    out = stack_models(models)(x)
    assert isinstance(out, tuple) and out[0].shape == (2, 3, 10)
    with torch.no_grad():
        c, d = models[1](x[1])
    assert torch.allclose(prediction(models[1](x[1])), (c + d) / 2)
    assert torch.allclose(out[1][1], d, atol=1e-5)
    assert cache_logits(models[0], x[0]).shape == (3, 10)


def test_hard_and_soft_runs_in_one_stack_equal_separate_runs():
    g = torch.Generator().manual_seed(4)
    zc, zd, zt = (torch.randn(2, 6, 10, generator=g) for _ in range(3))
    y = torch.randint(0, 10, (2, 6), generator=g)
    mixed = deit_loss(zc, zd, y, zt, alpha=0.5, temperature=3.0, hard=torch.tensor([[True], [False]]))
    assert torch.allclose(mixed[0], deit_loss(zc[0], zd[0], y[0], zt[0], alpha=0.5, hard=True))
    assert torch.allclose(mixed[1], deit_loss(zc[1], zd[1], y[1], zt[1], alpha=0.5, temperature=3.0, hard=False))
    # through fit: one stack of a hard and a soft run == each trained on its own
    data = toy_images(96, seed=1)
    teacher_logits = torch.randn(len(data), 10, generator=g)
    make = lambda: DeiT(dim=16, depth=1, heads=2)
    cfg = TrainConfig(epochs=2, batch_size=32, eval_every=0)
    specs = [RunSpec("DeiT hard", 0, 3.0, 0.5), RunSpec("DeiT soft", 0, 3.0, 0.5)]
    together = fit(make, specs, data, cfg, teacher_logits=teacher_logits, execution=QUIET,
                   objective=deit_objective(hard=lambda spec: spec.name == "DeiT hard"))
    for spec, run in zip(specs, together):
        [alone] = fit(make, [spec], data, cfg, teacher_logits=teacher_logits, execution=QUIET,
                      objective=deit_objective(hard=spec.name == "DeiT hard"))
        assert run.history["loss"] == pytest.approx(alone.history["loss"], rel=1e-4)


def test_token_attention_rows_are_distributions_and_see_the_tokens():
    from course_lib.deit import token_attention
    deit = small(DeiT)
    x = torch.randn(3, 1, 28, 28)
    att = token_attention(deit, x)
    assert att.shape == (3, 2 + 49, 2 + 49)
    assert torch.allclose(att.sum(-1), torch.ones(3, 51), atol=1e-5) and (att >= 0).all()
    # by value: block 0's attention from its own queries and keys, recomputed here
    block = deit.blocks[0]
    h = block.norm1(deit.embed(x))
    q, k, _ = block.attn.qkv(h).chunk(3, dim=-1)
    heads = block.attn.heads
    split = lambda t: t.view(3, 51, heads, -1).transpose(1, 2)
    expected = (split(q) @ split(k).transpose(-2, -1) / (32 // heads) ** 0.5).softmax(-1).mean(1)
    assert torch.allclose(token_attention(deit, x, layer=0), expected, atol=1e-6)
