"""Hinton's transfer set in the engine: unlabelled rows are distilled on the soft targets alone and
their labels never enter the loss; labelled rows use each run's alpha."""
import pytest
import torch

from course_lib.engine import RunSpec, Step, TransferSetKD, fit, transfer_set_kd
from course_lib.losses import kd_loss, soft_target_kl
from course_lib.models import StudentCNN

from test_engine import CFG, QUIET, ONE_BY_ONE, toy_images


def _weights(run):
    return torch.cat([p.detach().flatten() for p in run.model.parameters()])


def test_a_transfer_rows_label_changes_nothing_a_labelled_rows_does():
    data = toy_images(n=128)
    teacher_logits = torch.randn(len(data), 10, generator=torch.Generator().manual_seed(3)) * 3
    labelled = torch.arange(len(data)) < 48
    specs = [RunSpec("kd + transfer", 0, 4.0, 0.9), RunSpec("kd + transfer", 1, 2.0, 0.5)]
    base = fit(StudentCNN, specs, data, CFG, teacher_logits=teacher_logits, objective=transfer_set_kd(labelled),
               execution=QUIET)
    relabelled = type(data)(data.x, data.y.clone(), data.classes, data.name)
    relabelled.y[~labelled] = (relabelled.y[~labelled] + 3) % 10          # every transfer row's label changed
    same = fit(StudentCNN, specs, relabelled, CFG, teacher_logits=teacher_logits,
               objective=transfer_set_kd(labelled), execution=QUIET)
    for a, b in zip(base, same):
        assert torch.equal(_weights(a), _weights(b))
        assert a.history["loss"] == b.history["loss"]
    one = type(data)(data.x, data.y.clone(), data.classes, data.name)
    one.y[0] = (one.y[0] + 1) % 10                                          # one labelled row's label changed
    moved = fit(StudentCNN, specs, one, CFG, teacher_logits=teacher_logits, objective=transfer_set_kd(labelled),
                execution=QUIET)
    assert all(not torch.equal(_weights(a), _weights(b)) for a, b in zip(base, moved))
    # stacked equals one by one, as for every objective
    single = fit(StudentCNN, specs, data, CFG, teacher_logits=teacher_logits, objective=transfer_set_kd(labelled),
                 execution=ONE_BY_ONE)
    for a, b in zip(base, single):
        assert torch.allclose(_weights(a), _weights(b), atol=2e-4)


def test_loss_per_row_is_hintons_on_labelled_rows_and_the_soft_term_elsewhere():
    g = torch.Generator().manual_seed(0)
    n, b, c = 2, 6, 5
    specs = [RunSpec("a", 0, 4.0, 0.9), RunSpec("b", 1, 2.0, 0.3)]
    labelled = torch.tensor([True, False, True, False, False, True, True])      # 7 training rows
    idx = torch.tensor([[0, 1, 2, 3, 4, 5], [6, 5, 4, 3, 2, 1]])
    logits, teacher = torch.randn(n, b, c, generator=g), torch.randn(n, b, c, generator=g) * 2
    y = torch.randint(0, c, (n, b), generator=g)
    step = Step(0, None, True, specs, None, y, idx, logits, teacher)
    loss, parts = TransferSetKD(specs, labelled)(step)
    for i, s in enumerate(specs):
        rows = []
        for j in range(b):
            if labelled[idx[i, j]]:
                rows.append(kd_loss(logits[i, j:j + 1], teacher[i, j:j + 1], y[i, j:j + 1], s.temperature, s.alpha))
            else:
                rows.append(s.temperature ** 2 * soft_target_kl(logits[i, j:j + 1], teacher[i, j:j + 1],
                                                                s.temperature).mean())
        assert loss[i] == pytest.approx(torch.stack(rows).mean().item(), rel=1e-5, abs=1e-6)
    assert torch.isfinite(parts["ce"]).all() and torch.isfinite(parts["kl"]).all()


def test_transfer_set_rejects_what_cannot_work():
    labelled = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="must distil"):
        TransferSetKD([RunSpec("alone", 0)], labelled)
    with pytest.raises(ValueError, match="bool"):
        TransferSetKD([RunSpec("kd", 0, 4.0, 0.9)], torch.ones(4))
    objective = TransferSetKD([RunSpec("kd", 0, 4.0, 0.9)], labelled)
    step = Step(0, None, False, [RunSpec("kd", 0, 4.0, 0.9)], None, torch.zeros(1, 2, dtype=torch.long),
                torch.tensor([[3, 9]]), torch.randn(1, 2, 5), torch.randn(1, 2, 5))
    with pytest.raises(ValueError, match="more rows"):
        objective(step)
