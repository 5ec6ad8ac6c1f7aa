"""Stacked training: grouped (hand-written) and vmap stacks, and how stack_models chooses."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.models import StudentCNN, TeacherCNN, ViT
from course_lib.stacking import (METHODS, StackedStudentCNN, VmapStack, can_stack, merge_models,
                                 split_models, stack_models)


def small_vit():
    return ViT(dim=32, depth=2, heads=4)


class TwoHeads(nn.Module):
    """A BatchNorm-free class nothing registers, with a tuple output (like a distillation head)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.LayerNorm(32), nn.ReLU())
        self.a, self.b = nn.Linear(32, 10), nn.Linear(32, 3)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x):
        h = self.body(x)
        return self.a(h) * self.scale, self.b(h)


class WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.fc(self.drop(x.flatten(1)))


def same_init(make, n, dtype=torch.float32):
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(make().to(dtype))
    return models


@pytest.mark.parametrize("make", [StudentCNN, small_vit, TwoHeads])
def test_vmap_forward_equals_separate_models_and_unstack_roundtrips(make):
    models = same_init(make, 3)
    stack = VmapStack(models)
    x = torch.randn(3, 5, 1, 28, 28)
    out, ref = stack(x), [m(x[i]) for i, m in enumerate(models)]
    if isinstance(out, tuple):   # multi-head: a tuple of [N, B, ...] tensors
        assert len(out) == 2 and all(o.shape[:2] == (3, 5) for o in out)
        ref = list(zip(*ref))
    else:
        out, ref = (out,), [ref]
    for o, r in zip(out, ref):
        assert torch.allclose(o, torch.stack(r), atol=1e-5)
    # parameters are real [N, ...] nn.Parameters under the model's own names
    names = {n.removeprefix("stacked.") for n, _ in stack.named_parameters()}
    assert names == {n for n, _ in models[0].named_parameters()}
    assert all(isinstance(p, nn.Parameter) and p.shape[0] == 3 for p in stack.parameters())
    unstacked = stack.unstack()
    for m, u in zip(models, unstacked):
        assert type(u) is type(m)
        for (k, a), (k2, b) in zip(m.state_dict().items(), u.state_dict().items()):
            assert k == k2 and torch.equal(a, b)
        assert all(p.requires_grad for p in u.parameters())
    # independent: changing one unstacked model touches neither the stack nor its siblings
    with torch.no_grad():
        next(unstacked[0].parameters()).add_(1.0)
    first = lambda m: next(m.parameters())
    assert torch.equal(first(unstacked[1]), first(models[1]))
    assert torch.equal(first(stack)[0], first(models[0]))


def batches(n, dtype, steps=6, n_classes=10):
    """Each model gets its own batch at each step."""
    g = torch.Generator().manual_seed(123)
    return (torch.randn(steps, n, 16, 1, 28, 28, generator=g).to(dtype),
            torch.randint(0, n_classes, (steps, n, 16), generator=g))


def train_stacked(stack, n, dtype):
    """AdamW on the sum of per-model cross-entropies: each model gets exactly its own gradient."""
    opt = torch.optim.AdamW(stack.parameters(), lr=3e-3, weight_decay=1e-2)
    for x, y in zip(*batches(n, dtype)):
        logits = stack(x)                                                     # [N, B, classes]
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(n, -1)
        opt.zero_grad()
        loss.mean(1).sum().backward()
        opt.step()
    return stack.unstack()


def train_one_by_one(models, dtype):
    xs, ys = batches(len(models), dtype)
    for i, m in enumerate(models):
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=1e-2)
        for x, y in zip(xs, ys):
            opt.zero_grad()
            F.cross_entropy(m(x[i]), y[i]).backward()
            opt.step()
    return models


# float64 takes rounding out of the comparison. In float32 the gradients agree to ~1e-7, but
# Adam's first steps move each weight by about lr * sign(gradient): a ViT weight whose gradient is
# at rounding level (~1e-8, it happens) then moves +lr or -lr depending on summation order - a
# property of Adam, not of stacking. The CNN (what notebook 02 trains) is also compared in float32.
@pytest.mark.parametrize("make,method,dtype", [
    (StudentCNN, "grouped", torch.float32), (StudentCNN, "vmap", torch.float32),
    (StudentCNN, "grouped", torch.float64), (StudentCNN, "vmap", torch.float64),
    (ViT, "auto", torch.float64)])
def test_stacked_training_equals_one_by_one(make, method, dtype):
    one_by_one = train_one_by_one(same_init(make, 3, dtype), dtype)
    stacked = train_stacked(stack_models(same_init(make, 3, dtype), method=method), 3, dtype)
    if method == "auto":
        assert isinstance(stack_models(same_init(make, 2)), VmapStack)
    for a, b, start in zip(one_by_one, stacked, same_init(make, 3, dtype)):
        for (k, p), q, p0 in zip(a.named_parameters(), b.parameters(), start.parameters()):
            assert p.dtype == q.dtype == dtype
            assert not torch.equal(p, p0), f"{k} did not train"
            assert torch.allclose(p, q, atol=1e-5), (k, (p - q).abs().max())


def test_dropout_masks_differ_per_model_and_eval_is_exact():
    models = [WithDropout(), WithDropout()]
    models[1].load_state_dict(models[0].state_dict())   # two identical models
    stack = VmapStack(models).train()
    x = torch.randn(1, 8, 1, 28, 28).expand(2, -1, -1, -1, -1)
    out = stack(x)
    assert not torch.allclose(out[0], out[1])           # randomness="different": own masks
    stack.eval()
    assert torch.allclose(stack(x)[0], models[0].eval()(x[0]), atol=1e-6)


def test_stack_models_chooses_per_class_and_validates_method():
    assert isinstance(stack_models(same_init(StudentCNN, 2)), StackedStudentCNN)
    assert isinstance(stack_models(same_init(ViT, 2)), VmapStack)
    assert isinstance(stack_models(same_init(TwoHeads, 2)), VmapStack)
    assert isinstance(stack_models(same_init(StudentCNN, 2), method="vmap"), VmapStack)
    assert isinstance(stack_models(same_init(StudentCNN, 2), method="grouped"), StackedStudentCNN)
    with pytest.raises(ValueError, match="auto.*grouped.*vmap"):
        stack_models(same_init(StudentCNN, 2), method="fast")
    with pytest.raises(TypeError, match="no grouped"):
        stack_models(same_init(ViT, 2), method="grouped")
    with pytest.raises(ValueError, match="at least one"):
        stack_models([])
    assert set(METHODS) == {"auto", "grouped", "vmap"}


def test_can_stack_and_refusals():
    assert can_stack([ViT(), ViT()]) and can_stack([TwoHeads()]) and can_stack([StudentCNN()] * 2)
    assert not can_stack([])
    assert not can_stack([StudentCNN(), ViT()])
    assert not can_stack([StudentCNN(), StudentCNN(widths=(8, 16))])   # same class, other shapes
    assert not can_stack([nn.ReLU(), nn.ReLU()])                       # nothing to train
    assert not can_stack([TeacherCNN(), TeacherCNN()])
    for method in ("auto", "vmap"):
        with pytest.raises(TypeError, match="cannot stack.*BatchNorm"):
            stack_models([TeacherCNN(), TeacherCNN()], method=method)
    with pytest.raises(TypeError, match="BatchNorm"):
        VmapStack([TeacherCNN(), TeacherCNN()])
    with pytest.raises(TypeError, match="one class"):
        stack_models([StudentCNN(), ViT()], method="vmap")


def test_grouped_layout_helpers():
    x = torch.randn(3, 4, 2, 5, 5)
    assert torch.equal(split_models(merge_models(x), 3), x)
