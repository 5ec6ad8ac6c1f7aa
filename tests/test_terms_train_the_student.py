"""Every extra term that is meant to train the student does: its gradient reaches the student.

A term can compute the right value and still teach nothing: if it reads the student's features (or
outputs) detached, it adds a number to the loss and a gradient to nobody but its own parameters
(FitNets' regressor). Value tests cannot see that. Here each term trains a student from the same
start (same seed, same batches) as a baseline without the term, and ``student_gets_gradient``
says whether the student's weights end up different, beyond float noise. That they differ
*because of the student-side gradient* is shown by the mutants: each ``MUTANTS`` entry plants the
bug (the loss called with the student's side detached) and must turn the check False, with the
student's weights then equal to the baseline's. For FitNets the features are also detached before
the regressor: the regressor still learns, the student must not move.

Terms (``TERMS``):

* through ``engine.fit`` (a few AdamW steps), baseline: plain KD (Hinton's loss, cached teacher
  logits) - the extra-loss modules of ``course_lib.features``: ``HintLoss`` (FitNets),
  ``AttentionTransfer``, ``RelationalKD`` (distance and angle terms on the logits, both on a conv
  output); baseline: the class head's cross-entropy alone - DeiT's objective, hard and soft (its
  distillation head); baseline: each peer's cross-entropy alone - deep mutual learning;
* by hand (one SGD step on Hinton's loss + the term), baseline: Hinton's loss alone - the plain
  functions ``hint_loss`` (through a regressor), ``attention_transfer_loss``, ``rkd_loss``.
"""
from __future__ import annotations

from functools import cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import course_lib.deit as deit
import course_lib.features as features
import course_lib.online as online
from course_lib.deit import DeiT, deit_objective
from course_lib.engine import RunSpec, TrainConfig, cache_logits, fit
from course_lib.features import TEACHER_CNN_PAIRS, attention_objective, cache_features, hint_objective, rkd_objective
from course_lib.hooks import FeatureCapture
from course_lib.losses import kd_loss
from course_lib.models import StudentCNN, TeacherCNN
from course_lib.online import mutual_learning
from test_engine import QUIET, toy_images

DATA = toy_images(64)
CFG = TrainConfig(epochs=1, batch_size=16, eval_every=0)       # 4 AdamW steps
KD = RunSpec("kd", 0, temperature=4.0, alpha=0.5)
NOISE = 1e-6        # what "the same weights" tolerates (the mutants below measure exactly 0)
CLEAR = 1e-4        # what a term that trains the student moves it by, at least (measured: >= 1e-2)


@cache
def teacher_targets():
    """A (random, frozen) TeacherCNN's logits and its features at both TEACHER_CNN_PAIRS layers."""
    torch.manual_seed(0)
    teacher = TeacherCNN().eval()
    return cache_logits(teacher, DATA), cache_features(teacher, DATA, list(TEACHER_CNN_PAIRS.values()))


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


# ---- baselines written here (they use no function a mutant replaces) -----------------------------

class ClassHeadOnly(nn.Module):
    """DeiT without its distillation term: ``(1 - alpha) CE(class head, labels)`` per run."""

    def __init__(self, ctx):
        super().__init__()
        self.register_buffer("alpha", torch.tensor([s.alpha for s in ctx.specs]))

    def forward(self, step):
        class_logits, _ = step.outputs
        ce = F.cross_entropy(class_logits.flatten(0, 1), step.y.flatten(), reduction="none").view(step.y.shape)
        return (1 - self.alpha) * ce.mean(1)


class CrossEntropyOnly(nn.Module):
    """Mutual learning without its KL term: each peer's cross-entropy alone; keeps the peers in one group."""

    couples_runs = True

    def __init__(self, ctx):
        super().__init__()

    def forward(self, step):
        return F.cross_entropy(step.logits.flatten(0, 1), step.y.flatten(), reduction="none").view(step.y.shape).mean(1)


DEIT_SPEC = RunSpec("deit", 0, temperature=3.0, alpha=0.5)
PEERS = [RunSpec("dml", 0, data_seed=0), RunSpec("dml", 1, data_seed=0)]


def small_deit():
    return DeiT(dim=16, depth=1, heads=2)


# ---- training with and without a term ------------------------------------------------------------

def _fit_kd(extra_loss=None):
    logits, _ = teacher_targets()
    built = []

    def tracked(ctx):
        module = extra_loss(ctx)
        module.initial = weights(module)          # its own parameters (FitNets' regressors) before training
        built.append(module)
        return module

    run, = fit(StudentCNN, [KD], DATA, CFG, teacher_logits=logits, execution=QUIET,
               extra_loss=tracked if extra_loss else None)
    return weights(run.model), (built[0] if built else None)


def _fit_deit(objective):
    logits, _ = teacher_targets()
    run, = fit(small_deit, [DEIT_SPEC], DATA, CFG, teacher_logits=logits, objective=objective, execution=QUIET)
    return weights(run.model), None


def _fit_peers(objective):
    runs = fit(StudentCNN, PEERS, DATA, CFG, objective=objective, execution=QUIET)
    return [w for r in runs for w in weights(r.model)], None


def _extra(name):
    logits, tables = teacher_targets()
    return {
        "HintLoss": lambda: hint_objective({"conv2": tables["features.7"]}),
        "AttentionTransfer": lambda: attention_objective({"conv1": tables["features.3"], "conv2": tables["features.7"]}),
        "RelationalKD distance (logits)": lambda: rkd_objective(logits, angle_weight=0.0),
        "RelationalKD angle (logits)": lambda: rkd_objective(logits, distance_weight=0.0),
        "RelationalKD (conv2)": lambda: rkd_objective(tables["features.7"], student_path="conv2",
                                                      distance_weight=1.0, angle_weight=2.0),
    }[name]()


def _one_step(term: str | None, *, detach_student: bool = False):
    """One SGD step of a StudentCNN on Hinton's loss (+ ``term`` on its features / logits, read
    detached if ``detach_student``); returns the student's weights and a 1x1 regressor's (FitNets)."""
    logits_t, tables = teacher_targets()
    torch.manual_seed(0)
    student = StudentCNN()
    torch.manual_seed(1)
    regressor = nn.Conv2d(32, 64, 1)
    opt = torch.optim.SGD([*student.parameters(), *regressor.parameters()], lr=0.5)
    with FeatureCapture(student, ["conv1", "conv2"]) as cap:
        logits = student(DATA.x)
    loss = kd_loss(logits, logits_t, DATA.y, 4.0, 0.5)
    if term is not None:
        side = (lambda x: x.detach()) if detach_student else (lambda x: x)
        f1, f2, z = side(cap.features["conv1"]), side(cap.features["conv2"]), side(logits)
        loss = loss + {
            # through the module, so that a mutant (monkeypatch of course_lib.features) reaches them
            "hint_loss": lambda: features.hint_loss(regressor(f2), tables["features.7"]),
            "attention_transfer_loss": lambda: features.attention_transfer_loss(
                [f1, f2], [tables["features.3"], tables["features.7"]]),
            "rkd_loss": lambda: features.rkd_loss(z, logits_t),
        }[term]()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return weights(student), regressor


# term -> (train with the term, train the baseline); each returns (the students' weights, the extra module)
TERMS = {
    **{name: (lambda name=name: _fit_kd(_extra(name)), lambda: _fit_kd(None))
       for name in ["HintLoss", "AttentionTransfer", "RelationalKD distance (logits)", "RelationalKD angle (logits)",
                    "RelationalKD (conv2)"]},
    "DeiT hard": (lambda: _fit_deit(deit_objective(hard=True)), lambda: _fit_deit(ClassHeadOnly)),
    "DeiT soft": (lambda: _fit_deit(deit_objective(hard=False)), lambda: _fit_deit(ClassHeadOnly)),
    "MutualLearning": (lambda: _fit_peers(mutual_learning(temperature=2.0, weight=1.0)),
                       lambda: _fit_peers(CrossEntropyOnly)),
    **{name: (lambda name=name: _one_step(name), lambda: _one_step(None))
       for name in ["hint_loss", "attention_transfer_loss", "rkd_loss"]},
}


def difference_from_baseline(term: str) -> float:
    train, baseline = TERMS[term]
    return max_difference(train()[0], baseline()[0])


def student_gets_gradient(term: str) -> bool:
    """Whether ``term`` (as course_lib computes it now) moves the student's weights away from the
    baseline's, trained from the same start on the same batches, beyond float noise."""
    return difference_from_baseline(term) > NOISE


@pytest.mark.parametrize("term", list(TERMS))
def test_the_term_trains_the_student(term):
    assert student_gets_gradient(term)
    assert difference_from_baseline(term) > CLEAR, "clearly, not by a rounding error"


def test_deit_distillation_term_reaches_the_shared_body_not_only_its_head():
    names = [n for n, _ in small_deit().named_parameters()]
    (with_term, _), (without, _) = TERMS["DeiT soft"][0](), TERMS["DeiT soft"][1]()
    moved = {n for n, a, b in zip(names, with_term, without) if (a - b).abs().max() > CLEAR}
    assert "head_dist.weight" in moved and "dist_token" in moved
    assert any(n.startswith("blocks.") for n in moved) and "patch_embed.weight" in moved, sorted(moved)


# ---- the student's features detached: only the regressor may move ------------------------------

def test_hint_by_hand_with_the_students_features_detached_moves_only_the_regressor():
    plain, plain_regressor = _one_step(None)
    detached, detached_regressor = _one_step("hint_loss", detach_student=True)
    assert max_difference(detached, plain) <= NOISE
    assert max_difference(weights(detached_regressor), weights(plain_regressor)) > CLEAR
    live, _ = _one_step("hint_loss")
    assert max_difference(live, plain) > CLEAR


@pytest.mark.parametrize("term", ["attention_transfer_loss", "rkd_loss"])
def test_other_terms_by_hand_with_the_students_side_detached_change_nothing(term):
    assert max_difference(_one_step(term, detach_student=True)[0], _one_step(None)[0]) <= NOISE


# ---- mutants: each plants "the student's side detached" in one function --------------------------

def _detach_first(original):
    """``original`` called with its first argument (the student's tensor, or list of them) detached."""
    def mutant(student, *args, **kwargs):
        s = [x.detach() for x in student] if isinstance(student, (list, tuple)) else student.detach()
        return original(s, *args, **kwargs)
    return mutant


def _detach_second(original):
    """For ``deit_loss(class_logits, dist_logits, ...)``: the distillation head's logits detached."""
    def mutant(class_logits, dist_logits, *args, **kwargs):
        return original(class_logits, dist_logits.detach(), *args, **kwargs)
    return mutant


def _pairs_detached(original):
    """``_FeatureTerm.pairs`` yielding the students' captured features detached (before any regressor)."""
    def mutant(self, step):
        for s, t in original(self, step):
            yield s.detach(), t
    return mutant


# name -> (object, attribute, mutation, terms whose check must turn False)
MUTANTS = {
    "hint_loss detaches the regressed student features": (
        features, "hint_loss", _detach_first, {"HintLoss", "hint_loss"}),
    "feature terms read the students' features detached": (
        features._FeatureTerm, "pairs", _pairs_detached, {"HintLoss", "AttentionTransfer"}),
    "attention_map detaches its input": (
        features, "attention_map", _detach_first, {"AttentionTransfer", "attention_transfer_loss"}),
    "attention term detaches the student's map": (
        features, "_at_term", _detach_first, {"AttentionTransfer", "attention_transfer_loss"}),
    "attention_transfer_loss detaches the student's features": (
        features, "attention_transfer_loss", _detach_first, {"attention_transfer_loss"}),
    "rkd_loss detaches the student's outputs": (
        features, "rkd_loss", _detach_first,
        {"RelationalKD distance (logits)", "RelationalKD angle (logits)", "RelationalKD (conv2)", "rkd_loss"}),
    "rkd_distance_loss detaches the student": (
        features, "rkd_distance_loss", _detach_first, {"RelationalKD distance (logits)"}),
    "rkd_angle_loss detaches the student": (
        features, "rkd_angle_loss", _detach_first, {"RelationalKD angle (logits)"}),
    "deit_loss detaches the distillation head": (
        deit, "deit_loss", _detach_second, {"DeiT hard", "DeiT soft"}),
    "DeiT's soft KL detaches the distillation head": (
        deit, "soft_target_kl", _detach_first, {"DeiT soft"}),
    "mutual learning's KL detaches the student": (
        online, "soft_target_kl", _detach_first, {"MutualLearning"}),
}


def test_every_term_has_a_mutant_and_every_mutant_its_terms():
    killed = set().union(*(m[3] for m in MUTANTS.values()))
    assert killed == set(TERMS)
    for obj, attribute, _, _ in MUTANTS.values():
        assert callable(getattr(obj, attribute)), attribute


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_check_fails_on_each_mutant(mutant, monkeypatch):
    obj, attribute, mutate, terms = MUTANTS[mutant]
    for term in sorted(terms):
        assert student_gets_gradient(term), term                     # the check passes on course_lib as it is
        with monkeypatch.context() as m:
            m.setattr(obj, attribute, mutate(getattr(obj, attribute)))
            assert not student_gets_gradient(term), (mutant, term)   # and fails on the mutant: the baseline's weights


def test_the_hint_regressor_still_learns_when_the_student_is_detached(monkeypatch):
    """The control: with the features detached before the regressor, hints train the regressor alone."""
    _, live = _fit_kd(_extra("HintLoss"))
    monkeypatch.setattr(features._FeatureTerm, "pairs", _pairs_detached(features._FeatureTerm.pairs))
    student, detached = _fit_kd(_extra("HintLoss"))
    assert max_difference(student, _fit_kd(None)[0]) <= NOISE       # the student: plain KD's weights
    assert max_difference(weights(detached), detached.initial) > CLEAR    # the regressor learnt
    assert max_difference(live.initial, detached.initial) <= NOISE    # from the same start
