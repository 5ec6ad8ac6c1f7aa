"""Feature distillation (course_lib.features): FitNets hints, attention transfer, relational KD.

Losses are tested by value on hand-computed cases, by their limits (zero when the student matches
the teacher) and by equivalence (stacked [N, B, ...] equals model by model; the authors' formulas);
the engine factories by training stacked StudentCNNs and one model alone.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.engine import GroupContext, RunSpec, Step, TrainConfig, cache_logits, fit
from course_lib.features import (ArticleFeatureLoss, HintLoss, TEACHER_CNN_PAIRS, attention_map, attention_objective,
                                 attention_transfer_loss, cache_features, hint_loss, hint_objective, rkd_angle_loss,
                                 rkd_distance_loss, rkd_loss, rkd_objective)
from course_lib.hooks import FeatureCapture, resize
from course_lib.models import StudentCNN, TeacherCNN
from course_lib.stacking import stack_models
from test_engine import ONE_BY_ONE, QUIET, toy_images

CFG = TrainConfig(epochs=2, batch_size=32, eval_every=0)
SPECS = [RunSpec("a", 0), RunSpec("b", 1)]


@pytest.fixture(scope="module")
def data():
    return toy_images(96)


@pytest.fixture(scope="module")
def tables(data):
    torch.manual_seed(0)
    return cache_features(TeacherCNN().eval(), data, list(TEACHER_CNN_PAIRS.values()))


# ---- resize and cache_features -------------------------------------------------------------------

def test_resize_pools_down_and_interpolates_up():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(resize(x, (2, 2)), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert resize(x, (4, 4)) is x
    up = resize(torch.ones(3, 5, 2, 2), (7, 7))
    assert up.shape == (3, 5, 7, 7) and torch.allclose(up, torch.ones(()))


def test_cache_features_equals_a_live_teacher_and_pools(data):
    torch.manual_seed(0)
    teacher = TeacherCNN().eval()
    cached = cache_features(teacher, data, ["features.3", "features.7"], batch_size=40)
    assert cached["features.3"].shape == (96, 32, 14, 14) and cached["features.7"].shape == (96, 64, 7, 7)
    with FeatureCapture(teacher, ["features.7"]) as cap, torch.no_grad():
        teacher(data.x)
    assert torch.allclose(cached["features.7"], cap.features["features.7"], atol=1e-5)
    assert not teacher.features[7]._forward_hooks
    pooled = cache_features(teacher, data, "features.3", pool_to=7, dtype=torch.float16)["features.3"]
    assert pooled.shape == (96, 32, 7, 7) and pooled.dtype == torch.float16
    assert torch.allclose(pooled.float(), F.avg_pool2d(cached["features.3"], 2), atol=1e-2, rtol=1e-2)


# ---- FitNets hints -------------------------------------------------------------------------------

def test_hint_loss_by_value():
    u = torch.zeros(2, 1, 1, 2)
    u[..., 0] = 1.0                                               # every sample (1, 0)
    r = torch.zeros(2, 1, 1, 2)
    r[..., 1] = 3.0                                               # every sample (0, 3)
    assert hint_loss(r, u, normalize=None).item() == pytest.approx((9 + 1) / 2)     # mean of squares
    assert hint_loss(r, u, normalize="l2").item() == pytest.approx(2.0)             # 2 (1 - cos 90 deg)
    assert hint_loss(-u, u, normalize="standardize").item() == pytest.approx(4.0)   # 2 (1 - (-1))
    assert hint_loss(2 * u + 3, u, normalize="standardize").item() == pytest.approx(0.0, abs=1e-6)
    assert hint_loss(5 * u, u, normalize="l2").item() == pytest.approx(0.0, abs=1e-6)


def test_hint_loss_limits_resizing_and_stacking():
    t = torch.randn(3, 4, 8, 5, 5)                                # [N, B, C, H, W]
    for normalize in (None, "l2", "standardize"):
        assert torch.equal(hint_loss(t, t, normalize=normalize), torch.zeros(3))
    big = t.repeat_interleave(2, -1).repeat_interleave(2, -2)      # each pixel as a 2x2 block
    assert torch.allclose(hint_loss(big, t), torch.zeros(3), atol=1e-6)
    s = torch.randn(3, 4, 8, 10, 10)
    stacked = hint_loss(s, t, normalize="standardize")
    assert stacked.shape == (3,)
    assert torch.allclose(stacked, torch.stack([hint_loss(s[i], t[i], normalize="standardize") for i in range(3)]))


def test_hint_loss_validates():
    with pytest.raises(ValueError, match="regressor"):
        hint_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="leading"):
        hint_loss(torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4))
    with pytest.raises(ValueError, match="at least 4 dims"):
        hint_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="normalize"):
        hint_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), normalize="bn")
    with pytest.raises(ValueError, match="non-empty dict"):
        hint_objective({})
    with pytest.raises(ValueError, match="row counts"):
        hint_objective({"conv1": torch.randn(5, 3, 4, 4), "conv2": torch.randn(6, 3, 4, 4)})
    with pytest.raises(ValueError, match=r"\[n_train, C, H, W\]"):
        hint_objective({"conv2": torch.randn(5, 3)})


def _step(group, specs, data, idx, read=None):
    """A training step of a stacked group on rows ``idx``, whose ``step.idx`` says ``read`` (default: idx)."""
    return Step(1, group, True, specs, data.x[idx], data.y[idx], idx if read is None else read, group(data.x[idx]), None)


def test_hint_module_reads_rows_by_index_and_is_zero_on_the_teachers_features(data):
    """Two identical students, the teacher's table = their own conv2 features, identity regressors."""
    torch.manual_seed(3)
    model = StudentCNN()
    group = stack_models([model, model])
    with FeatureCapture(model, "conv2", detach=True) as cap, torch.no_grad():
        model(data.x)
    specs = [RunSpec("a", 0), RunSpec("b", 0)]
    hints = HintLoss(GroupContext(group, specs, True, torch.device("cpu")), {"conv2": cap.features["conv2"]})
    with torch.no_grad():
        hints.regressors[0].weight.copy_(torch.eye(32).repeat(2, 1)[..., None, None])
        hints.regressors[0].bias.zero_()
    idx = torch.stack([torch.arange(10), torch.arange(20, 30)])
    assert torch.allclose(hints(_step(group, specs, data, idx)), torch.zeros(2), atol=1e-6)
    wrong = torch.stack([torch.arange(10), torch.arange(20, 30).flip(0)])     # model 1 reads the wrong rows
    loss = hints(_step(group, specs, data, idx, read=wrong))
    assert loss[0].abs() < 1e-6 and loss[1] > 0.01
    hints.close()
    assert not group.conv2._forward_hooks


def test_hint_regressors_are_one_per_student_with_own_gradient():
    group = stack_models([StudentCNN(), StudentCNN()])
    hints = HintLoss(GroupContext(group, SPECS, True, torch.device("cpu")),
                     {"conv1": torch.randn(50, 32, 14, 14), "conv2": torch.randn(50, 64, 3, 3)}, kernel_size=3)
    w = hints.regressors[1].weight
    assert w.shape == (2 * 64, 32, 3, 3)
    idx = torch.arange(8).view(2, 4)
    x = torch.randn(50, 1, 28, 28)
    out = group(x[idx])
    loss = hints(Step(1, group, True, SPECS, x[idx], None, idx, out, None))
    (grad,) = torch.autograd.grad(loss[0], w)
    assert grad[:64].abs().sum() > 0 and torch.equal(grad[64:], torch.zeros_like(grad[64:]))
    single = hints.regressors[1].unstack()
    assert [tuple(c.weight.shape) for c in single] == [(64, 32, 3, 3)] * 2
    hints.close()
    torch.randn(100)                                              # whatever the global RNG did since
    alone = HintLoss(GroupContext(StudentCNN(), SPECS[1:], False, torch.device("cpu")),
                     {"conv1": torch.randn(50, 32, 14, 14), "conv2": torch.randn(50, 64, 3, 3)}, kernel_size=3)
    assert torch.equal(alone.regressors[1].weight, single[1].weight), "a regressor's init comes from its run's seed"
    alone.close()


def test_hint_training_stacked_equals_one_by_one_and_trains_the_regressors(data, tables):
    built = []

    def factory(ctx):
        module = hint_objective({"conv2": tables["features.7"]})(ctx)
        built.append((module, module.regressors[0].weight.detach().clone()))
        return module

    stacked = fit(StudentCNN, SPECS, data, CFG, execution=QUIET, extra_loss=factory)
    single = fit(StudentCNN, SPECS, data, CFG, execution=ONE_BY_ONE, extra_loss=factory)
    assert len(built) == 3                                        # one stacked group, then two groups of one
    for module, before in built:
        assert not torch.allclose(module.regressors[0].weight, before), "the regressor was never trained"
        assert not module.capture._handles, "hooks left behind"
    assert torch.allclose(built[0][0].regressors[0].weight,
                          torch.cat([m.regressors[0].weight for m, _ in built[1:]]), atol=2e-4)
    for a, b in zip(stacked, single):
        assert a.history["extra"][-1] < a.history["extra"][0]
        assert a.history["extra"] == pytest.approx(b.history["extra"], rel=1e-4)
        for pa, pb in zip(a.model.parameters(), b.model.parameters()):
            assert torch.allclose(pa, pb, atol=2e-4)


def test_regressors_change_after_one_step_but_the_articles_adapters_do_not(data, tables):
    """The article's bug: adapters in the loss, teacher -> student, not given to the optimizer."""
    one_step = TrainConfig(epochs=1, batch_size=len(data), eval_every=0)
    built = []

    def factory(ctx):
        built.append(hint_objective({"conv2": tables["features.7"]})(ctx))
        built.append(built[-1].regressors[0].weight.detach().clone())
        return built[-2]

    fit(StudentCNN, [RunSpec("a", 0)], data, one_step, execution=QUIET, extra_loss=factory)
    assert not torch.allclose(built[0].regressors[0].weight, built[1])

    torch.manual_seed(0)
    student, article = StudentCNN(), ArticleFeatureLoss([32], [64])
    before = [p.detach().clone() for p in article.parameters()]
    student_before = student.conv2.weight.detach().clone()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)        # as in the article: the student's only
    with FeatureCapture(student, ["conv2"]) as cap:
        loss = F.cross_entropy(student(data.x), data.y)
        loss = loss + article([cap.features["conv2"]], [tables["features.7"]])
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert not torch.equal(student.conv2.weight, student_before)
    assert all(torch.equal(p, b) for p, b in zip(article.parameters(), before)), "adapters moved"
    assert article.adapters[0].weight.grad is not None            # they had a gradient; nobody used it


# ---- attention transfer --------------------------------------------------------------------------

def _authors_at(x):        # github.com/szagoruyko/attention-transfer, cifar.py: at(x)
    return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))


def test_attention_map_by_value_and_equals_the_authors_code():
    a = torch.zeros(1, 2, 1, 2)
    a[0, 0, 0] = torch.tensor([1.0, 2.0])
    a[0, 1, 0] = torch.tensor([-2.0, 0.0])                        # sum_c A^2 = (5, 4)
    assert torch.allclose(attention_map(a), torch.tensor([[5.0, 4.0]]) / math.sqrt(41))
    assert torch.allclose(attention_map(a, p=1), torch.tensor([[3.0, 2.0]]) / math.sqrt(13))
    x = torch.randn(4, 8, 5, 5)
    assert torch.allclose(attention_map(x), _authors_at(x), atol=1e-6)
    assert attention_map(torch.randn(2, 3, 8, 8), size=(4, 4)).shape == (2, 16)


def test_attention_transfer_forms_by_value():
    s, t = torch.zeros(1, 1, 1, 2), torch.zeros(1, 3, 1, 2)
    s[..., 0], t[..., 1] = 1.0, 1.0                               # unit maps (1, 0) and (0, 1): distance sqrt 2
    assert attention_transfer_loss([s], [t], form="paper", beta=2.0).item() == pytest.approx(math.sqrt(2) / 2)
    assert attention_transfer_loss([s], [t], form="code", beta=2.0).item() == pytest.approx(1.0)
    assert attention_transfer_loss([s, s], [t, s], beta=2.0).item() == pytest.approx(1.0)   # layers add up
    xs = [torch.randn(6, 4, 7, 7), torch.randn(6, 8, 3, 3)]
    ys = [torch.randn(6, 16, 7, 7), torch.randn(6, 2, 3, 3)]
    authors = sum((_authors_at(x) - _authors_at(y)).pow(2).mean() for x, y in zip(xs, ys))
    assert attention_transfer_loss(xs, ys, form="code").item() == pytest.approx(1000 / 2 * authors.item(), rel=1e-5)


def test_attention_transfer_limits_interpolation_and_stacking():
    t = torch.randn(4, 16, 7, 7)
    same = torch.cat([3 * t, -3 * t], dim=1)                        # other channels, same attention
    for form in ("paper", "code"):
        assert attention_transfer_loss([same], [t], form=form).item() == pytest.approx(0.0, abs=1e-4)
    big = t.repeat_interleave(2, -1).repeat_interleave(2, -2)        # 14x14 student, 7x7 teacher
    assert attention_transfer_loss([big], [t]).item() == pytest.approx(0.0, abs=1e-4)
    assert attention_transfer_loss([torch.randn(4, 5, 3, 3)], [t]).item() > 0           # 3x3 -> 7x7 bilinear
    s5, t5 = torch.randn(2, 4, 6, 7, 7), torch.randn(2, 4, 9, 7, 7)
    per_model = attention_transfer_loss([s5], [t5], form="paper")
    assert torch.allclose(per_model, torch.stack([attention_transfer_loss([s5[i]], [t5[i]], form="paper")
                                                  for i in range(2)]))


def test_attention_transfer_stays_on_the_features_device_and_dtype():
    s, t = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(2, 5, 4, 4, dtype=torch.float64)
    assert attention_transfer_loss([s], [t]).dtype == torch.float64
    meta = attention_transfer_loss([torch.randn(2, 3, 8, 8, device="meta")], [torch.randn(2, 5, 4, 4, device="meta")])
    assert meta.device.type == "meta"                              # no CPU tensor was mixed in
    assert hint_loss(torch.randn(2, 3, 8, 8, device="meta"), torch.randn(2, 3, 4, 4, device="meta")).device.type == "meta"
    assert rkd_loss(torch.randn(2, 5, 4, device="meta"), torch.randn(2, 5, 7, device="meta")).device.type == "meta"


def test_attention_transfer_validates():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="non-empty"):
        attention_transfer_loss([], [])
    with pytest.raises(ValueError, match="1 student and 2 teacher"):
        attention_transfer_loss([x], [x, x])
    with pytest.raises(TypeError, match="lists"):
        attention_transfer_loss(x, x)
    with pytest.raises(ValueError, match="form"):
        attention_transfer_loss([x], [x], form="torchdistill")
    with pytest.raises(ValueError, match="leading"):
        attention_transfer_loss([x], [torch.randn(3, 3, 4, 4)])
    with pytest.raises(ValueError, match="p must be"):
        attention_map(x, p=0)


# ---- relational KD -------------------------------------------------------------------------------

def _authors_rkd(s, t):    # github.com/lenscloth/RKD, metric/loss.py (RkdDistance, RKdAngle), one model
    def pdist(e):
        d = (e[:, None] - e[None]).norm(dim=-1)
        return d / d[d > 0].mean()

    def angles(e):
        n = F.normalize(e[None] - e[:, None], p=2, dim=2)
        return torch.bmm(n, n.transpose(1, 2)).view(-1)
    return F.smooth_l1_loss(pdist(s), pdist(t)), F.smooth_l1_loss(angles(s), angles(t))


def test_rkd_by_value():
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])         # right isosceles triangle
    t = 2 * s                                                       # the same, twice as large
    assert rkd_distance_loss(s, t).item() == pytest.approx(0.0, abs=1e-7)
    assert rkd_angle_loss(s, t).item() == pytest.approx(0.0, abs=1e-7)
    line = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    mu_s, mu_t = (2 + math.sqrt(2)) / 3, 4 / 3                     # mean non-zero distance
    ds = [1 / mu_s, 1 / mu_s, math.sqrt(2) / mu_s]                 # pairs 01, 02, 12
    dt = [1 / mu_t, 2 / mu_t, 1 / mu_t]
    huber = lambda a: 0.5 * a * a if abs(a) < 1 else abs(a) - 0.5
    assert rkd_distance_loss(s, line).item() == pytest.approx(2 * sum(huber(a - b) for a, b in zip(ds, dt)) / 9)
    # angles at each vertex: triangle 90, 45, 45 degrees; line 180 (at 1), 0 (at 0 and 2)
    cos_s, cos_t = [0.0, math.sqrt(0.5), math.sqrt(0.5)], [1.0, -1.0, 1.0]
    # of the 27 (a, b, c), each vertex a has 2 ordered pairs b != c (both != a); b == c != a gives
    # cos 1 for both, b or c == a gives 0 for both
    expected = 2 * sum(huber(a - b) for a, b in zip(cos_s, cos_t)) / 27
    assert rkd_angle_loss(s, line).item() == pytest.approx(expected)


def test_rkd_equals_the_authors_code_and_stacks():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 12, 5, generator=g, dtype=torch.float64), torch.randn(3, 12, 9, generator=g, dtype=torch.float64)
    for i in range(3):
        d, a = _authors_rkd(s[i], t[i])
        assert rkd_distance_loss(s[i], t[i]).item() == pytest.approx(d.item(), rel=1e-9)
        assert rkd_angle_loss(s[i], t[i]).item() == pytest.approx(a.item(), rel=1e-9)
        assert rkd_loss(s, t)[i].item() == pytest.approx(25 * d.item() + 50 * a.item(), rel=1e-9)
    big = 100 + 10 * torch.randn(40, 6, generator=g)                # float32 with large offsets: Gram rounding
    ref = _authors_rkd(big.double(), (big.double() * 2).flip(0))[1]
    assert rkd_angle_loss(big, (big * 2).flip(0)).item() == pytest.approx(ref.item(), abs=1e-4)
    rotated = t[0] @ torch.linalg.qr(torch.randn(9, 9, generator=g, dtype=torch.float64))[0] * 3 + 7
    assert rkd_loss(rotated, t[0]).item() == pytest.approx(0.0, abs=1e-9)   # relations ignore rotation, scale, shift


def test_rkd_gradients_are_finite_with_duplicate_samples():
    s = torch.randn(4, 3).repeat(2, 1).requires_grad_()
    rkd_loss(s, torch.randn(8, 5)).backward()
    assert torch.isfinite(s.grad).all()


def test_rkd_validates():
    with pytest.raises(ValueError, match="B >= 2"):
        rkd_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="flatten"):
        rkd_loss(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="leading"):
        rkd_loss(torch.randn(5, 4), torch.randn(6, 4))
    with pytest.raises(ValueError, match="n_train, D"):
        rkd_objective(torch.randn(5))


# ---- every factory through the engine: stacked and alone ----------------------------------------

@pytest.mark.parametrize("kind", ["attention", "rkd_logits", "rkd_conv2"])
def test_factories_train_stacked_and_single(kind, data, tables):
    if kind == "attention":
        factory = attention_objective({"conv1": tables["features.3"], "conv2": tables["features.7"]})
    elif kind == "rkd_logits":
        torch.manual_seed(0)
        factory = rkd_objective(cache_logits(TeacherCNN(), data))
    else:
        factory = rkd_objective(tables["features.7"], student_path="conv2", distance_weight=1.0, angle_weight=2.0)
    built = []

    def tracked(ctx):
        built.append(factory(ctx))
        return built[-1]

    cfg = TrainConfig(epochs=3, batch_size=32, eval_every=0)
    stacked = fit(StudentCNN, SPECS, data, cfg, execution=QUIET, extra_loss=tracked)
    single = fit(StudentCNN, SPECS[:1], data, cfg, execution=QUIET, extra_loss=tracked)
    for run in [*stacked, *single]:
        assert run.history["extra"][-1] < run.history["extra"][0], (kind, run.history["extra"])
    assert stacked[0].history["extra"] == pytest.approx(single[0].history["extra"], rel=1e-4)
    assert all(m.capture is None or not m.capture._handles for m in built)


def test_rkd_zero_angle_weight_skips_the_angle_term(monkeypatch):
    import course_lib.features as features
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 5, generator=g)
    full = features.rkd_loss(s, t, distance_weight=25.0, angle_weight=50.0)
    expected = 25.0 * features.rkd_distance_loss(s, t) + 50.0 * features.rkd_angle_loss(s, t)
    assert torch.allclose(full, expected)
    monkeypatch.setattr(features, "rkd_angle_loss", lambda *a: (_ for _ in ()).throw(AssertionError("computed")))
    assert torch.allclose(features.rkd_loss(s, t, angle_weight=0.0), 25.0 * features.rkd_distance_loss(s, t))


def test_attention_agreement_is_the_cosine_of_the_maps():
    from course_lib.features import attention_agreement, attention_map
    from course_lib.models import StudentCNN

    torch.manual_seed(0)
    a, b = StudentCNN(), StudentCNN()
    x = torch.randn(7, 1, 28, 28)
    same = attention_agreement(a, a, x, {"conv1": "conv1", "conv2": "conv2"}, batch_size=3)
    assert same.shape == (7,) and torch.allclose(same, torch.ones(7), atol=1e-5)
    other = attention_agreement(a, b, x, {"conv2": "conv2"})
    from course_lib.hooks import FeatureCapture
    with torch.no_grad(), FeatureCapture(a, ["conv2"]) as ca, FeatureCapture(b, ["conv2"]) as cb:
        a.eval()(x), b.eval()(x)
        ref = (attention_map(ca.features["conv2"]) * attention_map(cb.features["conv2"])).sum(-1)
    assert torch.allclose(other, ref, atol=1e-6) and (other < 0.999).all()
    with pytest.raises(ValueError, match="same spatial size"):
        attention_agreement(a, b, x, {"conv1": "conv2"})
    with pytest.raises(ValueError, match="at least one"):
        attention_agreement(a, b, x, {})
