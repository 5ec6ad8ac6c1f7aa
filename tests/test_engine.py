"""The engine: stacking equals one-by-one training, caching equals a teacher forward, freezing."""
import copy

import pytest
import torch
from torch import nn

from course_lib.data import TensorData
from course_lib.engine import (Execution, RunSpec, TrainConfig, cache_logits, evaluate, fit, freeze,
                               logits_accuracy, predict_logits)
from course_lib.models import StudentCNN, TeacherCNN
from course_lib.timing import best_of, time_epochs
from course_lib.stacking import can_stack, split_models, merge_models, stack_models


def toy_images(n=192, seed=0, classes=10):
    """Images whose class is written into their pixels, so that a few epochs learn something."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.5
    x[torch.arange(n), 0, y * 2, :] += 3.0
    return TensorData(x, y, tuple(str(c) for c in range(classes)), "toy")


CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, weight_decay=1e-2, eval_every=1)
QUIET = Execution(device="cpu", progress=False)
ONE_BY_ONE = Execution(device="cpu", progress=False, stack=False)


def test_stacked_forward_equals_separate_models():
    models = [StudentCNN() for _ in range(3)]
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
    teacher_logits = torch.randn(len(data), 10, generator=torch.Generator().manual_seed(0))
    specs = [RunSpec("alone", 0), RunSpec("kd", 1, 4.0, 0.9), RunSpec("kd", 2, 2.0, 0.5),
             RunSpec("smooth", 3, label_smoothing=0.1)]
    stacked = fit(StudentCNN, specs, data, CFG, teacher_logits=teacher_logits, execution=QUIET)
    single = fit(StudentCNN, specs, data, CFG, teacher_logits=teacher_logits, execution=ONE_BY_ONE)
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
    a = [r.test_accuracy for r in fit(StudentCNN, specs, data, cfg, test=test, execution=QUIET)]
    b = [r.test_accuracy for r in fit(StudentCNN, specs, data, cfg, test=test, execution=ONE_BY_ONE)]
    assert a == pytest.approx(b, abs=1.0)
    assert min(a) > 50  # it learnt the toy task (chance is 10%)


def test_cached_logits_equal_teacher_forward():
    data = toy_images()
    torch.manual_seed(0)
    teacher = TeacherCNN()
    spec = [RunSpec("kd", 0, 4.0, 0.9)]
    cached = fit(StudentCNN, spec, data, CFG, teacher_logits=cache_logits(teacher, data), execution=QUIET)
    live = fit(StudentCNN, spec, data, CFG, teacher=teacher, execution=QUIET)
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
    fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, CFG, teacher=teacher, execution=QUIET)
    for k, v in teacher.state_dict().items():  # BN running stats included
        assert torch.equal(v, before[k]), k
    assert teacher.training  # the caller's module keeps its mode


def test_history_and_monitor():
    data = toy_images()
    runs = fit(StudentCNN, [RunSpec("alone", 0)], data, CFG, monitor=data, execution=QUIET)
    h = runs[0].history
    assert h["epoch"] == [1, 2, 3] and h["monitor_epoch"] == [1, 2, 3]
    assert h["loss"][-1] < h["loss"][0]
    assert h["kl"] == [0.0, 0.0, 0.0] and h["ce"] == pytest.approx(h["loss"])


def test_alpha_one_history_is_t2_kl():
    data = toy_images()
    tl = torch.randn(len(data), 10)
    h = fit(StudentCNN, [RunSpec("kd", 0, 2.0, 1.0)], data, CFG, teacher_logits=tl, execution=QUIET)[0].history
    assert h["loss"] == pytest.approx([4.0 * k for k in h["kl"]], rel=1e-4)


def test_fit_errors():
    data = toy_images()
    with pytest.raises(ValueError, match="teacher"):
        fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, CFG, execution=QUIET)
    with pytest.raises(ValueError, match="rows"):
        fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, CFG, teacher_logits=torch.zeros(5, 10), execution=QUIET)
    with pytest.raises(ValueError, match="augment"):
        fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, CFG, teacher_logits=torch.zeros(len(data), 10),
            augment=lambda x, g: x, execution=QUIET)
    with pytest.raises(ValueError, match="at least one"):
        fit(StudentCNN, [], data, CFG)
    with pytest.raises(ValueError, match="predictions"):
        logits_accuracy(torch.zeros(3, 10), torch.zeros(4, dtype=torch.long))


def test_models_with_batchnorm_are_not_stacked_but_still_train():
    assert not can_stack([TeacherCNN(), TeacherCNN()])
    with pytest.raises(TypeError, match="cannot stack"):
        stack_models([TeacherCNN(), TeacherCNN()])
    data = toy_images(96)
    runs = fit(TeacherCNN, [RunSpec("a", 0), RunSpec("b", 1)], data,
               TrainConfig(epochs=1, batch_size=32, eval_every=0), execution=QUIET)
    assert len(runs) == 2 and all(isinstance(r.model, TeacherCNN) for r in runs)


def test_augmented_kd_with_live_teacher():
    data = toy_images(96)
    from course_lib.data import random_shift_flip
    runs = fit(StudentCNN, [RunSpec("kd", 0, 4.0, 0.9)], data, TrainConfig(epochs=1, batch_size=32, eval_every=0),
               teacher=TeacherCNN(), augment=random_shift_flip, execution=QUIET)
    assert runs[0].history["kl"][0] > 0


def test_predict_and_evaluate_restore_mode():
    data = toy_images(50)
    m = StudentCNN().train()
    logits = predict_logits(m, data.x, batch_size=16)
    assert logits.shape == (50, 10) and m.training
    assert 0.0 <= evaluate(m, data) <= 100.0


def test_time_epochs_times_the_right_variants_and_keeps_the_best(monkeypatch):
    """With ``fit`` replaced by a fake whose duration we control, time_epochs must attribute each time
    to its variant, divide by the epochs, keep the minimum and time the slow variant only twice."""
    from course_lib import timing
    durations = {"alone": iter([0.30, 0.10, 0.20, 0.25]), "cached": iter([0.40, 0.12, 0.50, 0.13]),
                 "forward": iter([0.90, 0.60])}
    clock = [0.0]
    calls = []

    def fake_fit(make_model, specs, train, config, *, teacher=None, teacher_logits=None, execution=None):
        variant = "forward" if teacher is not None else "cached" if teacher_logits is not None else "alone"
        assert config.epochs == 2 and config.eval_every == 0 and not execution.progress
        calls.append(variant)
        clock[0] += next(durations[variant])

    monkeypatch.setattr(timing, "fit", fake_fit)
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    t = time_epochs(StudentCNN, toy_images(64), TrainConfig(batch_size=32), TeacherCNN(), torch.randn(64, 10),
                    epochs=2, repeats=4)
    assert t == pytest.approx({"student_alone": 0.05, "kd_cached_logits": 0.06, "kd_teacher_forward": 0.30})
    assert calls.count("forward") == 2 and calls.count("alone") == calls.count("cached") == 4
    assert calls[:2] == ["alone", "cached"] and calls[3:5] == ["cached", "alone"]     # alternating order


def test_time_epochs_runs_for_real():
    data = toy_images(64)
    t = time_epochs(StudentCNN, data, TrainConfig(batch_size=32), TeacherCNN(), torch.randn(64, 10), repeats=1)
    assert set(t) == {"student_alone", "kd_teacher_forward", "kd_cached_logits"} and min(t.values()) > 0


def test_groups_are_balanced():
    data = toy_images(64)
    runs = fit(StudentCNN, [RunSpec("a", s) for s in range(7)], data, TrainConfig(epochs=1, batch_size=32, eval_every=0),
               execution=Execution(device="cpu", progress=False, max_stack=3))
    # 7 runs, at most 3 per stack -> stacks of 2, 3, 2 (balanced); seconds are shared within a stack
    secs = [round(r.seconds, 9) for r in runs]
    assert len(set(secs[0:2])) == 1 and len(set(secs[2:5])) == 1 and len(set(secs[5:7])) == 1


# ------------------------------------------------------------------ objectives, targets, seeds, heads

class MutualCE(nn.Module):
    """Deep-mutual-learning-style objective: CE + KL(others' mean prediction || self), others detached."""

    couples_runs = True

    def __init__(self, ctx):
        super().__init__()
        self.n = ctx.n_models

    def forward(self, step):
        logits = step.logits                                        # [N, B, C]
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), step.y.flatten(), reduction="none")
        logp = logits.log_softmax(-1)
        p = logp.exp().detach()
        others = (p.sum(0, keepdim=True) - p) / (self.n - 1)        # the mean of the *other* peers
        kl = (others * (others.clamp_min(1e-12).log() - logp)).sum(-1)
        return ce.view(self.n, -1).mean(1) + kl.mean(1), {"kl": kl.mean(1)}


def _agreement(a, b, data):
    return (predict_logits(a, data.x).argmax(-1) == predict_logits(b, data.x).argmax(-1)).float().mean().item()


def test_coupled_objective_reads_the_other_models_and_trains_together():
    data, held_out = toy_images(256, seed=3), toy_images(256, seed=4)
    cfg = TrainConfig(epochs=4, batch_size=32, eval_every=0)
    specs = [RunSpec("peer", 0, data_seed=0), RunSpec("peer", 1, data_seed=0)]
    # max_stack=1 would split ordinary runs; a coupled objective keeps all peers in one group
    mutual = fit(StudentCNN, specs, data, cfg, objective=MutualCE,
                 execution=Execution(device="cpu", progress=False, max_stack=1))
    looped = fit(StudentCNN, specs, data, cfg, objective=MutualCE, execution=ONE_BY_ONE)  # ModelList path
    alone = fit(StudentCNN, specs, data, cfg, execution=QUIET)
    assert mutual[0].seconds == mutual[1].seconds                    # one group
    for a, b in zip(mutual, looped):                                 # stacked == Python loop over peers
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.allclose(p, q, atol=2e-4)
    assert mutual[0].history["kl"][-1] < mutual[0].history["kl"][0]
    # the KL term pulls the peers together: their predictions agree more than independent runs'
    assert _agreement(*[r.model for r in mutual], held_out) >= _agreement(*[r.model for r in alone], held_out)
    # and it is really the *other* model's output that is read: a different peer changes the result
    other = fit(StudentCNN, [specs[0], RunSpec("peer", 7, data_seed=0)], data, cfg, objective=MutualCE,
                execution=QUIET)
    assert not torch.allclose(other[0].model.fc.weight, mutual[0].model.fc.weight)


def test_per_run_teacher_tables_reach_their_own_runs():
    data = toy_images(128)
    g = torch.Generator().manual_seed(5)
    table_a, table_b = torch.randn(len(data), 10, generator=g) * 3, torch.randn(len(data), 10, generator=g) * 3
    specs = [RunSpec("kd", 0, 2.0, 1.0), RunSpec("kd", 0, 2.0, 1.0)]
    cfg = TrainConfig(epochs=2, batch_size=32, eval_every=0)
    per_run = fit(StudentCNN, specs, data, cfg, teacher_logits=[table_a, table_b], execution=QUIET)
    as_tensor = fit(StudentCNN, specs, data, cfg, teacher_logits=torch.stack([table_a, table_b]), execution=QUIET)
    only_a = fit(StudentCNN, specs[:1], data, cfg, teacher_logits=table_a, execution=QUIET)[0]
    only_b = fit(StudentCNN, specs[:1], data, cfg, teacher_logits=table_b, execution=QUIET)[0]
    for run, ref in ((per_run[0], only_a), (per_run[1], only_b), (as_tensor[0], only_a), (as_tensor[1], only_b)):
        for p, q in zip(run.model.parameters(), ref.model.parameters()):
            assert torch.allclose(p, q, atol=2e-4)
    # same seed, same data order, different tables: different students
    assert not torch.allclose(per_run[0].model.fc.weight, per_run[1].model.fc.weight, atol=1e-3)
    # each student agrees more with its own teacher than with the other one
    pa = predict_logits(per_run[0].model, data.x).argmax(-1)
    assert (pa == table_a.argmax(-1)).float().mean() > (pa == table_b.argmax(-1)).float().mean()
    with pytest.raises(ValueError, match="one per RunSpec"):
        fit(StudentCNN, specs, data, cfg, teacher_logits=[table_a], execution=QUIET)
    with pytest.raises(ValueError, match="finite"):
        fit(StudentCNN, specs[:1], data, cfg, teacher_logits=table_a * float("nan"), execution=QUIET)


class RecordBatches(nn.Module):
    seen: list = []

    def __init__(self, ctx):
        super().__init__()

    def forward(self, step):
        RecordBatches.seen.append(step.idx.clone())
        return step.logits.new_zeros(step.logits.shape[0])


def test_data_seed_shares_batches_and_seed_fixes_weights():
    data = toy_images(96)
    RecordBatches.seen = []
    specs = [RunSpec("a", 0, data_seed=9), RunSpec("b", 1, data_seed=9), RunSpec("c", 2)]
    runs = fit(StudentCNN, specs, data, TrainConfig(epochs=2, batch_size=32, eval_every=0),
               extra_loss=RecordBatches, execution=QUIET)
    for idx in RecordBatches.seen:
        assert torch.equal(idx[0], idx[1])            # same data seed: same batches
    assert any(not torch.equal(idx[0], idx[2]) for idx in RecordBatches.seen)
    # different weight seeds: different initial (hence trained) weights
    assert not torch.allclose(runs[0].model.conv1.weight, runs[1].model.conv1.weight)
    # the default data seed is the weight seed: RunSpec("a", 9) sees exactly the batches of data_seed=9
    RecordBatches.seen = []
    fit(StudentCNN, [RunSpec("x", 9)], data, TrainConfig(epochs=1, batch_size=32, eval_every=0),
        extra_loss=RecordBatches, execution=QUIET)
    first = RecordBatches.seen
    RecordBatches.seen = []
    fit(StudentCNN, [RunSpec("y", 3, data_seed=9)], data, TrainConfig(epochs=1, batch_size=32, eval_every=0),
        extra_loss=RecordBatches, execution=QUIET)
    assert all(torch.equal(a, b) for a, b in zip(first, RecordBatches.seen))


class TwoHeads(nn.Module):
    """A CNN body with two heads (like DeiT's class and distillation heads)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.head_a = nn.Linear(8 * 14 * 14, 10)
        self.head_b = nn.Linear(8 * 14 * 14, 10)

    def forward(self, x):
        h = self.body(x)
        return self.head_a(h), self.head_b(h)


class HeadTargets(nn.Module):
    """Head a learns the labels, head b learns the label + 1 (mod 10): their accuracies must differ."""

    def __init__(self, ctx):
        super().__init__()

    def forward(self, step):
        a, b = step.outputs
        ce = torch.nn.functional.cross_entropy
        la = ce(a.flatten(0, 1), step.y.flatten(), reduction="none").view(step.y.shape).mean(1)
        lb = ce(b.flatten(0, 1), ((step.y + 1) % 10).flatten(), reduction="none").view(step.y.shape).mean(1)
        return la + lb, {"head_a": la, "head_b": lb}


@pytest.mark.parametrize("stack", [True, False])
def test_two_head_model_trains_and_evaluates_each_head(stack):
    data, test = toy_images(320, seed=1), toy_images(200, seed=2)
    cfg = TrainConfig(epochs=4, batch_size=32, eval_every=2)
    runs = fit(TwoHeads, [RunSpec("a", 0), RunSpec("b", 1)], data, cfg, objective=HeadTargets, monitor=test,
               test=test, execution=Execution(device="cpu", progress=False, stack=stack))
    for r in runs:
        acc_a, acc_b = r.test_accuracy_heads
        assert acc_a > 50 and acc_b < 20                  # head a predicts labels, head b does not
        assert r.history["head_a"][-1] < r.history["head_a"][0]
        assert len(r.history["monitor_acc_heads"]) == 2 and len(r.history["monitor_acc_heads"][0]) == 2
        assert r.history["monitor_acc_heads"][-1] == pytest.approx([acc_a, acc_b], abs=1e-6)
        with torch.no_grad():                             # head agreement: both heads' argmax equal
            a, b = r.model(test.x)
        agree = 100.0 * (a.argmax(1) == b.argmax(1)).float().mean().item()
        assert r.history["monitor_head_agreement"][-1] == pytest.approx(agree, abs=1e-4)
        assert 0 <= agree < 100                           # the heads learned different things
        assert r.test_accuracy == pytest.approx(evaluate(r.model, test))   # the mean of the heads' logits
    with pytest.raises(ValueError, match="several heads"):
        fit(TwoHeads, [RunSpec("a", 0)], data, cfg, execution=QUIET)


def test_execution_defaults_to_the_course_device():
    from course_lib.profiles import get_device
    assert Execution().resolved_device() == get_device()
    assert Execution(device="cpu").resolved_device() == torch.device("cpu")


def test_bad_labels_have_clear_errors():
    data = toy_images(64)
    bad = TensorData(data.x, data.y + 5, data.classes)             # labels up to 14 for 10 outputs
    with pytest.raises(ValueError, match="outputs 10 classes"):
        fit(StudentCNN, [RunSpec("a", 0)], bad, TrainConfig(epochs=1, batch_size=32, eval_every=0), execution=QUIET)


def test_best_of_keeps_the_fastest():
    calls = []
    assert best_of(lambda: calls.append(1), repeats=3, warmup=2) >= 0 and len(calls) == 5
    with pytest.raises(ValueError):
        best_of(lambda: None, repeats=0)
