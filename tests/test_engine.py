"""The engine: stacking equals one-by-one training, caching equals a teacher forward, freezing."""
import copy

import pytest
import torch

from course_lib.data import TensorData
from course_lib.engine import (RunSpec, TrainConfig, accuracy, cache_logits, evaluate, fit, freeze,
                               predict_logits, time_epochs)
from course_lib.models import MLPStudent, StudentCNN, TeacherCNN
from course_lib.stacking import can_stack, split_models, merge_models, stack_models


def toy_images(n=192, seed=0, classes=10):
    """Images whose class is written into their pixels, so that a few epochs learn something."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.5
    x[torch.arange(n), 0, y * 2, :] += 3.0
    return TensorData(x, y, tuple(str(c) for c in range(classes)), "toy")


CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, weight_decay=1e-2, eval_every=1)


@pytest.mark.parametrize("make", [StudentCNN, lambda: MLPStudent(hidden=(32, 16))])
def test_stacked_forward_equals_separate_models(make):
    models = [make() for _ in range(3)]
    x = torch.randn(3, 7, 1, 28, 28)
    stacked = stack_models(models)
    ref = torch.stack([m(x[i]) for i, m in enumerate(models)])
    assert torch.allclose(stacked(x), ref, atol=1e-5)
    for m, u in zip(models, stacked.unstack()):
        for a, b in zip(m.state_dict().values(), u.state_dict().values()):
            assert torch.equal(a, b)


def test_split_merge_roundtrip():
    x = torch.randn(3, 4, 2, 5, 5)
    assert torch.equal(split_models(merge_models(x), 3), x)


def test_stacked_training_matches_one_by_one():
    """Same seeds -> same initial weights and batch order -> the same trajectory, stacked or not."""
    data = toy_images()
    teacher_logits = torch.randn(len(data), 10)
    specs = [RunSpec("alone", 0), RunSpec("kd", 1, 4.0, 0.9), RunSpec("kd", 2, 2.0, 0.5),
             RunSpec("smooth", 3, label_smoothing=0.1)]
    stacked = fit(StudentCNN, specs, data, CFG, teacher_logits=teacher_logits, progress=False, stack=True)
    single = fit(StudentCNN, specs, data, CFG, teacher_logits=teacher_logits, progress=False, stack=False)
    for a, b in zip(stacked, single):
        for pa, pb in zip(a.model.parameters(), b.model.parameters()):
            assert torch.allclose(pa, pb, atol=2e-4), (a.spec, (pa - pb).abs().max())
        assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-4)


def test_stacked_training_same_distribution_of_accuracy():
    """Several seeds, stacked vs one by one: the accuracies agree run by run (hence in distribution)."""
    data = toy_images(320, seed=1)
    test = toy_images(200, seed=2)
    specs = [RunSpec("alone", s) for s in range(4)]
    cfg = TrainConfig(epochs=2, batch_size=64, eval_every=0)
    a = [r.test_accuracy for r in fit(StudentCNN, specs, data, cfg, test=test, progress=False, stack=True)]
    b = [r.test_accuracy for r in fit(StudentCNN, specs, data, cfg, test=test, progress=False, stack=False)]
    assert a == pytest.approx(b, abs=1.0)
    assert min(a) > 50  # it learnt the toy task (chance is 10%)


def test_cached_logits_equal_teacher_forward():
    data = toy_images()
    torch.manual_seed(0)
    teacher = TeacherCNN()
    spec = [RunSpec("kd", 0, 4.0, 0.9)]
    cached = fit(StudentCNN, spec, data, CFG, teacher_logits=cache_logits(teacher, data), progress=False)
    live = fit(StudentCNN, spec, data, CFG, teacher=teacher, progress=False)
    for pa, pb in zip(cached[0].model.parameters(), live[0].model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


def test_teacher_is_frozen_copy_and_untouched():
    data = toy_images()
    teacher = TeacherCNN().train()
    before = copy.deepcopy(teacher.state_dict())
    frozen = freeze(teacher)
    assert frozen is not teacher and not frozen.training
    assert all(not p.requires_grad for p in frozen.parameters())
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(frozen.parameters(), teacher.parameters()))
    fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, CFG, teacher=teacher, progress=False)
    for k, v in teacher.state_dict().items():  # BN running stats included
        assert torch.equal(v, before[k]), k
    assert teacher.training  # the caller's module keeps its mode


def test_history_and_monitor():
    data = toy_images()
    runs = fit(StudentCNN, [RunSpec("alone", 0)], data, CFG, monitor=data, progress=False)
    h = runs[0].history
    assert h["epoch"] == [1, 2, 3] and h["monitor_epoch"] == [1, 2, 3]
    assert h["loss"][-1] < h["loss"][0]
    assert h["kl"] == [0.0, 0.0, 0.0] and h["ce"] == pytest.approx(h["loss"])


def test_alpha_one_history_is_t2_kl():
    data = toy_images()
    tl = torch.randn(len(data), 10)
    h = fit(StudentCNN, [RunSpec("kd", 0, 2.0, 1.0)], data, CFG, teacher_logits=tl, progress=False)[0].history
    assert h["loss"] == pytest.approx([4.0 * k for k in h["kl"]], rel=1e-4)


def test_fit_errors():
    data = toy_images()
    with pytest.raises(ValueError, match="teacher"):
        fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, CFG, progress=False)
    with pytest.raises(ValueError, match="rows"):
        fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, CFG, teacher_logits=torch.zeros(5, 10), progress=False)
    with pytest.raises(ValueError, match="augment"):
        fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, CFG, teacher_logits=torch.zeros(len(data), 10),
            augment=lambda x, g: x, progress=False)
    with pytest.raises(ValueError, match="at least one"):
        fit(StudentCNN, [], data, CFG)
    with pytest.raises(ValueError, match="predictions"):
        accuracy(torch.zeros(3, 10), torch.zeros(4, dtype=torch.long))


def test_models_with_batchnorm_are_not_stacked_but_still_train():
    assert not can_stack([TeacherCNN(), TeacherCNN()])
    with pytest.raises(TypeError, match="cannot stack"):
        stack_models([TeacherCNN(), TeacherCNN()])
    data = toy_images(96)
    runs = fit(TeacherCNN, [RunSpec("a", 0), RunSpec("b", 1)], data,
               TrainConfig(epochs=1, batch_size=32, eval_every=0), progress=False)
    assert len(runs) == 2 and all(isinstance(r.model, TeacherCNN) for r in runs)


def test_augmented_kd_with_live_teacher():
    data = toy_images(96)
    from course_lib.data import random_shift_flip
    runs = fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, TrainConfig(epochs=1, batch_size=32, eval_every=0),
               teacher=TeacherCNN(), augment=random_shift_flip, progress=False)
    assert runs[0].history["kl"][0] > 0


def test_predict_and_evaluate_restore_mode():
    data = toy_images(50)
    m = StudentCNN().train()
    logits = predict_logits(m, data.x, batch_size=16)
    assert logits.shape == (50, 10) and m.training
    assert 0.0 <= evaluate(m, data) <= 100.0


def test_time_epochs_reports_three_variants():
    data = toy_images(64)
    t = time_epochs(StudentCNN, data, TrainConfig(batch_size=32), TeacherCNN(),
                    torch.randn(64, 10), repeats=1)
    assert set(t) == {"student_alone", "kd_teacher_forward", "kd_cached_logits"}
    assert all(v > 0 for v in t.values())


def test_groups_are_balanced():
    data = toy_images(64)
    runs = fit(StudentCNN, [RunSpec("a", s) for s in range(7)], data, TrainConfig(epochs=1, batch_size=32, eval_every=0),
               progress=False, max_stack=3)
    # 7 runs, at most 3 per stack -> stacks of 2, 3, 2 (balanced); seconds are shared within a stack
    secs = [round(r.seconds, 9) for r in runs]
    assert len(set(secs[0:2])) == 1 and len(set(secs[2:5])) == 1 and len(set(secs[5:7])) == 1
