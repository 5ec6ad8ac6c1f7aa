"""Born-again generations (distinct frozen teachers, each seed from its own previous generation),
deep mutual learning by value and gradient, ensembles by value."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from course_lib.engine import Execution, RunSpec, TrainConfig, fit, predict_logits
from course_lib.losses import soft_target_kl
from course_lib.models import StudentCNN
from course_lib.online import (MutualLearning, born_again, combine_logits, ensemble_accuracy, ensemble_logits,
                               mutual_learning)
from test_engine import toy_images

QUIET = Execution(device="cpu", progress=False)
CFG = TrainConfig(epochs=2, batch_size=32, eval_every=0)


def small():
    return StudentCNN(1, 10, 28)


def test_born_again_teachers_are_frozen_distinct_copies_of_each_seeds_previous_generation():
    data = toy_images(96, seed=1)
    result = born_again(small, [0, 1], data, CFG, generations=3, execution=QUIET)
    assert [[r.spec.name for r in gen] for gen in result.generations] == [["gen1"] * 2, ["gen2"] * 2, ["gen3"] * 2]
    assert len(result.teachers) == 2
    x = data.x[:16]
    for k, teachers in enumerate(result.teachers):
        for i, teacher in enumerate(teachers):
            previous, student = result.generations[k][i].model, result.generations[k + 1][i].model
            assert teacher is not previous and teacher is not student
            assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
            own = {p.data_ptr() for p in teacher.parameters()}
            assert own.isdisjoint(p.data_ptr() for p in previous.parameters())
            assert own.isdisjoint(p.data_ptr() for p in student.parameters())
            # the teacher is generation k of *this* seed (not the other seed's)
            assert torch.allclose(predict_logits(teacher, x), predict_logits(previous, x))
            assert not torch.allclose(predict_logits(teacher, x), predict_logits(result.generations[k][1 - i].model, x))
    # re-initialising every student leaves every teacher alone
    before = [[predict_logits(t, x) for t in teachers] for teachers in result.teachers]
    for gen in result.generations:
        for run in gen:
            for p in run.model.parameters():
                torch.nn.init.normal_(p)
    for teachers, outs in zip(result.teachers, before):
        for teacher, out in zip(teachers, outs):
            assert torch.equal(predict_logits(teacher, x), out)
    # a new initialisation per generation, the data order of the seed
    specs = [r.spec for gen in result.generations for r in gen]
    assert len({s.seed for s in specs}) == 6 and {s.order_seed for s in specs} == {0, 1}
    assert all(s.alpha == 0.9 and s.temperature == 4.0 for s in specs if s.name != "gen1")


def test_born_again_reuses_a_first_generation_and_checks_it():
    data = toy_images(64, seed=2)
    first = fit(small, [RunSpec("alone", 0), RunSpec("alone", 1)], data, CFG, execution=QUIET)
    result = born_again(small, [0, 1], data, CFG, generations=2, first=first, execution=QUIET)
    assert result.generations[0] == first and len(result.generations) == 2
    with pytest.raises(ValueError, match="one run per seed"):
        born_again(small, [1, 0], data, CFG, generations=2, first=first, execution=QUIET)
    with pytest.raises(ValueError, match="generations"):
        born_again(small, [0], data, CFG, generations=0, execution=QUIET)


def _ctx(specs):
    return SimpleNamespace(specs=specs, device=torch.device("cpu"))


def test_mutual_learning_loss_by_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    specs = [RunSpec("a", 0, data_seed=5), RunSpec("b", 1, data_seed=5), RunSpec("c", 2, data_seed=5),
             RunSpec("d", 3, data_seed=6), RunSpec("e", 4, data_seed=6)]
    logits = torch.randn(5, 8, 10, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (5, 8), generator=g)
    objective = MutualLearning(_ctx(specs), temperature=2.0, weight=0.5)
    loss, parts = objective(SimpleNamespace(logits=logits, y=y))
    peers = {0: [1, 2], 1: [0, 2], 2: [0, 1], 3: [4], 4: [3]}
    for i, js in peers.items():
        ce = F.cross_entropy(logits[i], y[i])
        kl = sum(soft_target_kl(logits[i], logits[j].detach(), 2.0).mean() for j in js) / len(js) * 4.0
        assert torch.allclose(loss[i], ce + 0.5 * kl, atol=1e-6)
        assert torch.allclose(parts["kl"][i], kl, atol=1e-6)
    # each model's loss reaches only its own logits (peers' predictions are targets)
    grad = torch.autograd.grad(loss[0], logits)[0]
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0
    # identical peers: only the cross-entropy is left
    same = logits[:1].detach().expand(2, 8, 10).clone()
    loss2, parts2 = MutualLearning(_ctx(specs[:2]))(SimpleNamespace(logits=same, y=y[:2]))
    assert torch.allclose(parts2["kl"], torch.zeros(2), atol=1e-6)
    with pytest.raises(ValueError, match="peer"):
        MutualLearning(_ctx(specs[:4]))          # "d" has no peer
    with pytest.raises(ValueError, match="temperature"):
        MutualLearning(_ctx(specs[:2]), temperature=0.0)


def test_mutual_learning_trains_peers_in_one_group_and_pulls_them_together():
    data, test = toy_images(128, seed=3), toy_images(100, seed=4)
    specs = [RunSpec("dml", 1, data_seed=0), RunSpec("dml", 2, data_seed=0)]
    cfg = TrainConfig(epochs=3, batch_size=32, eval_every=0)
    objective = mutual_learning(temperature=1.0, weight=1.0)
    assert objective.couples_runs
    together = fit(small, specs, data, cfg, objective=objective, test=test, execution=QUIET)
    apart = fit(small, [RunSpec("alone", 1, data_seed=0), RunSpec("alone", 2, data_seed=0)], data, cfg,
                test=test, execution=QUIET)

    def disagreement(runs):
        a, b = (predict_logits(r.model, test.x).softmax(-1) for r in runs)
        return float((a - b).abs().sum(-1).mean())

    assert all(r.history["kl"][-1] >= 0 for r in together)
    assert disagreement(together) < disagreement(apart)


def test_ensembles_by_value():
    data = toy_images(64, seed=5)
    torch.manual_seed(0)
    models = [small().eval() for _ in range(3)]
    outs = torch.stack([predict_logits(m, data.x) for m in models])
    assert torch.allclose(ensemble_logits(models, data.x, "logits"), outs.mean(0), atol=1e-6)
    probs = ensemble_logits(models, data.x, "probs")
    assert torch.allclose(probs.exp(), outs.softmax(-1).mean(0), atol=1e-6)
    assert torch.allclose(ensemble_logits(models[:1], data.x), outs[0].log_softmax(-1), atol=1e-5)
    acc = ensemble_accuracy(models, data)
    assert acc == pytest.approx(100.0 * float((probs.argmax(-1) == data.y).float().mean()))
    assert torch.equal(combine_logits(list(outs)), probs)
    with pytest.raises(ValueError, match="how"):
        ensemble_logits(models, data.x, "vote")
    with pytest.raises(ValueError, match="how"):
        combine_logits(list(outs), "vote")
    with pytest.raises(ValueError):
        ensemble_logits([], data.x)


def test_batchnorm_students_train_unstacked_through_born_again_and_mutual_learning():
    """The full profile's ResNet-18 (BatchNorm: no stacking) goes through the same code paths."""
    from course_lib.models import build_model
    data = toy_images(16, seed=6)
    make = lambda: build_model("resnet18", data)
    cfg = TrainConfig(epochs=1, batch_size=8, eval_every=0)
    result = born_again(make, [0, 1], data, cfg, generations=2, execution=QUIET)
    assert [len(g) for g in result.generations] == [2, 2]
    assert all(not t.training for t in result.teachers[0])
    peers = fit(make, [RunSpec("m", 1, data_seed=0), RunSpec("m", 2, data_seed=0)], data, cfg,
                objective=mutual_learning(), execution=QUIET)
    assert len(peers) == 2 and peers[0].model is not peers[1].model
