"""The full profile's code path, run offline: the image notebooks execute with ``COURSE_PROFILE=full``.

The full profile (CIFAR-100, GPU, downloads) cannot run here: no network, no GPU. What can be
checked is that the same cells work on its *shapes*: 3x32x32 images, 100 classes with CIFAR-100's
class names. A first cell, added to a copy of each notebook, replaces the CIFAR-100 loader with
seeded stand-in data (random images with a class-dependent pattern, the real class names) and
shrinks the full profile's sizes; the network stays blocked. The profile's claims (accuracy
margins) are switched off here - random data says nothing about them - except the structural ones:
the teacher's accuracy and the full profile's own within-superclass margin for the closest class
pairs (the stand-in classes of one superclass share a pattern, so that margin can fail).
Any cell that assumes Fashion-MNIST (class names, 10 classes, 1 channel) fails this test.
"""
from __future__ import annotations


import pytest

from _notebook_files import run_with_stand_in


# The notebooks whose data comes from the profile's vision settings.
VISION_NOTEBOOKS = ["01_dark_knowledge", "02_kd_loss", "03_feature_distillation", "04_deit_distillation_token",
                    "05_born_again_and_online", "07_quantization_onnx"]

STAND_IN = '''
import dataclasses, torch
from course_lib import data, profiles
from course_lib.data import CLASS_GROUPS, TensorData

_names = tuple(sorted(c for members in CLASS_GROUPS["cifar100"].values() for c in members))
# Each class's pattern is its superclass's pattern plus a smaller one of its own, so classes of one
# superclass look alike (as in CIFAR-100) and the teacher's similarity structure has something to find.
_g = torch.Generator().manual_seed(5)
_superclass = {c: i for i, members in enumerate(CLASS_GROUPS["cifar100"].values()) for c in members}
_group_pattern = torch.randn(20, 3, 32, 32, generator=_g)
_pattern = torch.stack([_group_pattern[_superclass[c]] for c in _names]) + 0.6 * torch.randn(100, 3, 32, 32, generator=_g)

def _stand_in_cifar100(split="train", root=None, allow_download=True):
    n = 1000 if split == "train" else 600
    y = torch.arange(n) % 100
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(int(split == "test"))) + 6 * _pattern[y]
    return TensorData(x, y, _names, f"stand-in cifar100/{split}")

data.load_cifar100 = _stand_in_cifar100
_full = profiles.PROFILES["full"]
profiles.PROFILES["full"] = dataclasses.replace(
    _full.replace_vision(train_size=1000, student_train_size=500, test_size=None, teacher_epochs=12,
                         student_epochs=10, monitor_size=200, feature_epochs=3, aug_teacher_epochs=3,
                         deit_train_size=300, deit_views=2, deit_epochs=2,
                         deit_vit=dict(patch_size=4, dim=32, depth=2, heads=2, mlp_ratio=2),
                         transfer_size=300, transfer_epochs=3, transfer_sweep=(100, 300),
                         # the full profile's born-again architecture (the teacher's: BatchNorm, no stacking), one epoch
                         # per run (tests/test_online.py runs a ResNet-18 through the same code paths)
                         ban_epochs=1, ban_generations=2),
    claims={**{k: None for k in _full.claims}, "01.teacher_min_accuracy": 20.0,
            "01.top_pairs": _full.claims["01.top_pairs"],
            "01.top_pairs_within_group": _full.claims["01.top_pairs_within_group"]})
'''


@pytest.fixture(scope="module")
def stand_in_cache(tmp_path_factory):
    """One cache for these notebooks: the same stand-in data, so their teachers are trained once."""
    return tmp_path_factory.mktemp("stand_in_cache")


@pytest.mark.slow
@pytest.mark.parametrize("name", VISION_NOTEBOOKS)
def test_notebook_runs_on_the_full_profile_shapes(name, tmp_path, monkeypatch, stand_in_cache):
    printed, recorded = run_with_stand_in(name, STAND_IN, tmp_path, monkeypatch, cache=stand_in_cache)
    assert "profile=full" in printed
    assert recorded[name]                                                 # the results cell ran too
    if name == "01_dark_knowledge":
        assert "classes: 100" in printed and "maple_tree" in printed
