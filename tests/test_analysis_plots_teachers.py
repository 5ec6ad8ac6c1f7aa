import json
import math

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.analysis import (class_similarity, entropy_vs_temperature, fraction_within_groups,  # noqa: E402
                                 most_similar_pairs)
from course_lib.data import TensorData  # noqa: E402
from course_lib import plots  # noqa: E402
from course_lib.profiles import get_profile  # noqa: E402


def test_class_similarity_by_hand():
    probs = torch.tensor([[0.8, 0.2, 0.0], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8]])
    labels = torch.tensor([0, 0, 2])
    s = class_similarity(probs, labels, 3)
    assert torch.allclose(s[0], torch.tensor([0.7, 0.3, 0.0]))
    assert torch.equal(s[1], torch.zeros(3))            # no example of class 1
    assert torch.allclose(s[2], probs[2])
    with pytest.raises(ValueError):
        class_similarity(probs, labels[:2], 3)


def test_fraction_within_groups():
    groups = {"a": "x", "b": "x", "c": "y", "d": "y"}
    assert fraction_within_groups([("a", "b", 0.3), ("a", "c", 0.2), ("c", "d", 0.1), ("b", "d", 0.0)], groups) == 0.5
    assert fraction_within_groups([("a", "b")], groups) == 1.0
    with pytest.raises(ValueError, match="without a group"):
        fraction_within_groups([("a", "z", 0.1)], groups)
    with pytest.raises(ValueError, match="no pairs"):
        fraction_within_groups([], groups)


def test_most_similar_pairs_symmetrises_and_sorts():
    s = torch.tensor([[0.8, 0.15, 0.05], [0.05, 0.9, 0.05], [0.3, 0.1, 0.6]])
    pairs = most_similar_pairs(s, ["a", "b", "c"], k=2)
    assert [(a, b) for a, b, _ in pairs] == [("a", "c"), ("a", "b")]
    assert pairs[0][2] == pytest.approx((0.05 + 0.3) / 2)


def test_entropy_vs_temperature_monotone_and_bounded():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=g) * 5
    h = entropy_vs_temperature(logits, [0.5, 1, 2, 4, 8, 1000])
    assert all(a < b for a, b in zip(h, h[1:]))
    assert h[-1].item() == pytest.approx(math.log(10), rel=1e-4)


def test_plot_helpers_return_figures():
    figs = [
        plots.tempered_softmax_bars({1: torch.softmax(torch.randn(3), 0), 4: torch.ones(3) / 3}, ["a", "b", "c"]),
        plots.heatmap(torch.rand(3, 3) + 0.01, list("abc"), list("abc"), log=True),
        plots.heatmap(torch.rand(2, 2), list("ab"), list("ab")),
        plots.line_plot([1, 2, 3], {"x": [1, 2, 3]}, "x", "y", logx=True),
        plots.bars_with_errors(["a", "b"], [1.0, 2.0], [0.1, 0.2], "acc", ylim=(0, 3)),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    for f in figs:                   # each drew something: lines, bars or an image on its first axes
        ax = f.axes[0]
        assert ax.lines or ax.patches or ax.images or ax.collections, f
    plt.close("all")


def toy(n=64):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 10
    x = torch.randn(n, 1, 28, 28, generator=g)
    x[torch.arange(n), 0, y * 2, :] += 3
    return TensorData(x, y, tuple(str(i) for i in range(10)))


def test_pretrained_teacher_trains_once_into_a_keyed_artifact_then_loads(tmp_path, monkeypatch):
    from course_lib import artifacts, teachers
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    trainings = []
    real_fit = teachers.fit
    monkeypatch.setattr(teachers, "fit", lambda *a, **k: trainings.append(1) or real_fit(*a, **k))
    profile = get_profile("quick").replace_vision(teacher_epochs=1, batch_size=32)
    data = toy()
    model, info = teachers.pretrained_teacher(profile, data, data, progress=False)
    path = teachers.teacher_path(profile, data)
    assert len(trainings) == 1 and teachers.is_cached(profile, data)
    assert path.parent.parent == tmp_path and path.parent.name.startswith("teacher_quick_fashion_mnist-")
    assert path.exists() and json.loads(path.with_suffix(".json").read_text())["epochs"] == 1
    meta = artifacts.artifact_metadata(path.parent)
    assert meta["inputs"] == teachers.teacher_key_inputs(profile, data)
    assert meta["inputs"]["settings"]["epochs"] == 1 and meta["inputs"]["train_data"]["size"] == len(data)
    assert info["parameters"] == 390_634 and 0 <= info["test_accuracy"] <= 100 and not model.training
    again, info2 = teachers.pretrained_teacher(profile, data, data, progress=False)
    assert len(trainings) == 1 and info2 == info                         # reused, not retrained
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    teachers.pretrained_teacher(profile, data, data, retrain=True, progress=False)
    assert len(trainings) == 2 and teachers.teacher_path(profile, data) == path


def test_teacher_key_covers_what_trains_it_and_nothing_else(monkeypatch):
    from course_lib import teachers
    profile = get_profile("quick").replace_vision(teacher_epochs=1, batch_size=32)
    data = toy()
    key = teachers.teacher_dir(profile, data).name
    # settings the teacher does not read leave the key alone
    for change in (dict(student_epochs=7), dict(seeds=(5,)), dict(test_size=10), dict(eval_every=3),
                   dict(student_train_size=10), dict(monitor_size=5)):
        assert teachers.teacher_dir(profile.replace_vision(**change), data).name == key, change
    # the settings it reads, its data, its seed and its recipe version change it
    for change in (dict(teacher_epochs=2), dict(batch_size=64), dict(lr=1e-3), dict(weight_decay=0.0)):
        assert teachers.teacher_dir(profile.replace_vision(**change), data).name != key, change
    other = toy()
    other.x[0, 0, 0, 0] += 1
    assert teachers.teacher_dir(profile, other).name != key
    assert teachers.teacher_dir(profile, TensorData(data.x[:32], data.y[:32], data.classes)).name != key
    monkeypatch.setattr(teachers, "TEACHER_SEED", 1)
    assert teachers.teacher_dir(profile, data).name != key
    monkeypatch.setattr(teachers, "TEACHER_SEED", 0)
    monkeypatch.setattr(teachers, "TEACHER_RECIPE_VERSION", teachers.TEACHER_RECIPE_VERSION + 1)
    assert teachers.teacher_dir(profile, data).name != key


def test_augmented_teacher_is_its_own_artifact_trained_on_augmented_batches(tmp_path, monkeypatch):
    from course_lib import data as data_module
    from course_lib import teachers
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    profile = get_profile("quick").replace_vision(teacher_epochs=1, aug_teacher_epochs=2, batch_size=32)
    data = toy()
    plain = teachers.teacher_dir(profile, data)
    aug = teachers.teacher_dir(profile, data, "shift_flip")
    assert plain != aug and aug.name.startswith("teacher_quick_fashion_mnist_shift_flip-")
    assert "augmentation" not in teachers.teacher_key_inputs(profile, data)     # the plain key is unchanged
    # its own epochs setting is in its key, the plain teacher's epochs are not
    assert teachers.teacher_dir(profile.replace_vision(aug_teacher_epochs=3), data, "shift_flip") != aug
    assert teachers.teacher_dir(profile.replace_vision(teacher_epochs=3), data, "shift_flip") == aug
    calls = []
    real = data_module.AUGMENTATIONS["shift_flip"]
    monkeypatch.setitem(data_module.AUGMENTATIONS, "shift_flip", lambda x, g: calls.append(len(x)) or real(x, g))
    model, info = teachers.pretrained_teacher(profile, data, data, progress=False, augmentation="shift_flip")
    assert calls and sum(calls) == 2 * len(data)              # every image of both epochs, augmented
    assert info["augmentation"] == "shift_flip" and info["epochs"] == 2 and teachers.is_cached(profile, data, "shift_flip")
    assert not teachers.is_cached(profile, data)               # the plain one was not built
    with pytest.raises(ValueError, match="unknown augmentation"):
        teachers.teacher_dir(profile, data, "rotate")


def test_augmented_views_rows_and_labels():
    from course_lib.data import augmented_views
    data = toy(20)
    views = augmented_views(data, 3, seed=1)
    assert len(views) == 60 and torch.equal(views.y, data.y.repeat(3))
    assert not torch.equal(views.x[:20], views.x[20:40])      # different views of the same images
    assert torch.equal(views.x, augmented_views(data, 3, seed=1).x)   # a seed fixes them
    identity = augmented_views(data, 2, augment=lambda x, g: x)
    assert torch.equal(identity.x[20:], data.x)
    with pytest.raises(ValueError):
        augmented_views(data, 0)
