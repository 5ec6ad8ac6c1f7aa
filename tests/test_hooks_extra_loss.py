"""Feature hooks and the engine's extra-loss hook (the basis of hint / attention-transfer losses)."""
import pytest
import torch
from torch import nn

from course_lib.engine import RunSpec, TrainConfig, fit
from course_lib.hooks import FeatureCapture
from course_lib.models import StudentCNN
from course_lib.stacking import split_models, stack_models
from test_engine import QUIET, toy_images

CFG = TrainConfig(epochs=2, batch_size=32, eval_every=0)


def test_capture_by_path_and_removal():
    m = StudentCNN()
    with FeatureCapture(m, ["conv1", "conv2"]) as cap:
        m(torch.randn(4, 1, 28, 28))
        assert cap.features["conv1"].shape == (4, 16, 14, 14) and cap.features["conv2"].shape == (4, 32, 7, 7)
    assert not m.conv1._forward_hooks and not m.conv2._forward_hooks
    with pytest.raises(KeyError, match="known paths"):
        FeatureCapture(m, ["layer9"])


def test_capture_on_stacked_model_matches_each_model():
    models = [StudentCNN() for _ in range(3)]
    stacked = stack_models(models)
    x = torch.randn(3, 5, 1, 28, 28)
    with FeatureCapture(stacked, ["conv2"]) as cap:
        stacked(x)
    per_model = split_models(cap.features["conv2"], 3)
    for i, m in enumerate(models):
        with FeatureCapture(m, ["conv2"]) as c:
            m(x[i])
        # the hook sees the pre-ReLU conv output in both cases
        assert torch.allclose(per_model[i], c.features["conv2"], atol=1e-5)


class Zero(nn.Module):
    def __init__(self, ctx):
        super().__init__()
        self.n = ctx.n_models

    def forward(self, step):
        return step.logits.new_zeros(self.n)


class HintWithAdapter(nn.Module):
    """A FitNets-style regressor on the student side: it must be trained with the student."""

    def __init__(self, ctx):
        super().__init__()
        self.n = ctx.n_models
        self.capture = FeatureCapture(ctx.module, ["conv2"])
        self.adapter = nn.Conv2d(32, 8, 1)
        self.target = torch.randn(8, 7, 7)

    def forward(self, step):
        feats = self.capture.features["conv2"]
        feats = split_models(feats, self.n) if step.stacked else feats.unsqueeze(0)
        out = self.adapter(feats.flatten(0, 1)).view(self.n, -1, 8, 7, 7)
        return ((out - self.target) ** 2).mean(dim=(1, 2, 3, 4))

    def close(self):
        self.capture.close()


def test_zero_extra_loss_changes_nothing():
    data = toy_images(96)
    a = fit(StudentCNN, [RunSpec("a", 0)], data, CFG, execution=QUIET)
    b = fit(StudentCNN, [RunSpec("a", 0)], data, CFG, execution=QUIET, extra_loss=Zero)
    for p, q in zip(a[0].model.parameters(), b[0].model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert b[0].history["extra"] == [0.0, 0.0]


def test_extra_loss_parameters_are_optimised_and_hooks_removed():
    data = toy_images(96)
    built = []

    def factory(ctx):
        module = HintWithAdapter(ctx)
        built.append((module, module.adapter.weight.detach().clone()))
        return module

    runs = fit(StudentCNN, [RunSpec("a", 0), RunSpec("b", 1)], data, CFG, execution=QUIET, extra_loss=factory)
    module, before = built[0]
    assert not torch.allclose(module.adapter.weight, before), "the adapter was never trained"
    assert runs[0].history["extra"][-1] < runs[0].history["extra"][0]
    assert not module.capture._handles


def test_extra_loss_shape_is_checked():
    data = toy_images(64)

    class Bad(Zero):
        def forward(self, step):
            return step.logits.sum()

    with pytest.raises(ValueError, match="one value per model"):
        fit(StudentCNN, [RunSpec("a", 0)], data, CFG, execution=QUIET, extra_loss=Bad)
