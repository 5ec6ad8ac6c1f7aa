"""Feature hooks and the engine's extra-loss hook (the basis of hint / attention-transfer losses)."""
import pytest
import torch
from torch import nn

from course_lib.engine import RunSpec, TrainConfig, fit
from course_lib.hooks import FeatureCapture
from course_lib.models import StudentCNN, ViT
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
    with pytest.raises(KeyError, match=r"'conv3'.*closest matches: \['conv[12]', 'conv[12]'\]"):
        FeatureCapture(m, ["conv1", "conv3"])
    assert not m.conv1._forward_hooks, "a failed capture left a hook behind"
    with pytest.raises(ValueError, match="at least one"):
        FeatureCapture(m, [])
    with pytest.raises(ValueError, match="what must be"):
        FeatureCapture(m, "conv1", what="grad")


def test_capture_torchvision_models():
    """The same paths as in torchvision's docs; shapes measured at 64x64 (strides 8/16/32 and 8/16/32)."""
    torchvision = pytest.importorskip("torchvision")
    x = torch.randn(2, 3, 64, 64)
    expected = {"resnet50": {"layer2": (2, 512, 8, 8), "layer3": (2, 1024, 4, 4), "layer4": (2, 2048, 2, 2)},
                "mobilenet_v3_small": {"features.4": (2, 40, 4, 4), "features.9": (2, 96, 2, 2),
                                       "features.12": (2, 576, 2, 2)}}
    for name, shapes in expected.items():
        model = getattr(torchvision.models, name)(weights=None).eval()
        with FeatureCapture(model, list(shapes)) as cap, torch.no_grad():
            model(x)
        assert {p: tuple(f.shape) for p, f in cap.features.items()} == shapes
        assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(KeyError, match=r"closest matches: \['features.4'"):
        FeatureCapture(model, ["features.40"])


def test_capture_input_non_tensor_and_in_place_errors():
    m = StudentCNN()
    x = torch.randn(3, 1, 28, 28)
    with FeatureCapture(m, ["fc"], what="input") as cap:
        m(x)
    assert torch.allclose(cap.features["fc"], torch.relu(m.conv2(torch.relu(m.conv1(x)))).flatten(1))

    lstm = nn.Sequential(nn.LSTM(4, 3, batch_first=True))
    with FeatureCapture(lstm, "0") as cap, pytest.raises(TypeError, match=r"'0' \(LSTM\) has a tuple as its output"):
        lstm(torch.randn(2, 5, 4))

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True))   # the ReLU overwrites the conv's output
    with FeatureCapture(net, "0") as live, FeatureCapture(net, "0", detach=True) as copy:
        net(torch.randn(2, 1, 8, 8))
    assert (live.features["0"] >= 0).all() and (copy.features["0"] < 0).any()


def test_capture_refuses_a_vmap_stack():
    with pytest.raises(TypeError, match="cannot be hooked"):
        FeatureCapture(stack_models([ViT(depth=1), ViT(depth=1)]), ["head"])


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
