"""Checks for exercises/ex05_born_again.py (20 points).

References: ``course_lib.engine.freeze`` for the frozen teacher (the model travels to the answer's
process as a description, ``module_arg``; the copy comes back as a ``ModuleReport``: its identity,
every submodule's mode, every parameter's ``requires_grad``, the values and storage addresses of
its parameters and buffers, and its outputs before and after the original was re-initialised);
``course_lib.online.MutualLearning`` (``weight=1``, every run a peer of the others) for the
mutual-learning losses, by value and by gradient (``grad_outputs``: the gradient of one peer's
loss; the known mistakes from ``course_lib.losses.soft_target_kl``); the argmax of the
mean probabilities or logits (``course_lib.online.ensemble_logits``) for the ensemble. When a
value is wrong, the message names the common mistake it matches: the model itself returned
(teacher and student one module), a shallow copy (``copy.copy``: shared parameters), no
``eval()`` or ``model.training = False`` only, no ``requires_grad_(False)``, ``eval()`` or
``requires_grad_(False)`` on the original; the peers not detached, the KL reversed, the self-term
in the mean (``/ K``), a missing ``T^2``, a sum over the peers or the batch; a majority vote, one
member only, the probability and logit rules swapped. ``mutual_soft_gradient`` (a derivation) is checked
against autograd on the reference's soft term and by its consequences (rows sum to 0, opposite for two
peers, zero at the mean of the peers' distributions).

Over 500 lines because one exercise file's checks are one idea: they grade one file and share its
inputs and the helpers that name its mistakes.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from course_lib.engine import RunSpec, freeze
from course_lib.grading.base import ModuleReport
from course_lib.grading.checks.helpers import (as_tensor, build, close, close_naming, expect_value_error, fix_first,
                                               module_arg, randint, randn, tensors_close)
from course_lib.grading.checks.registry import Task, check
from course_lib.losses import soft_target_kl
from course_lib.online import MutualLearning

M = "ex05_born_again"

TASKS = {"frozen_teacher": Task("warm-up", 10, "implement"), "ensemble_predict": Task("warm-up", 10, "implement"),
         "mutual_learning_losses": Task("core", 20, "implement"),
         "mutual_soft_gradient": Task("stretch", 25, "derive")}

# What a stub must not state (tests/grading/test_generate.py scans the generated exercise file, spaces ignored):
# the code or formula each function asks for.
CLOSED_FORMS = {"frozen_teacher": ["copy.deepcopy(", "requires_grad_(False)", ".eval()"],
                "mutual_learning_losses": ["L_i = CE(z_i, y) + T^2", "T^2 * (1 / (K - 1))", "(1/(K-1))*sum_{j!=i}",
                                           ".detach()", "reduction="],
                "ensemble_predict": ["sum_m softmax(z_m)", "(1/M) * sum_m z_m", "softmax(dim=-1).mean(",
                                     "torch.stack("],
                "mutual_soft_gradient": ["(p_i - mean", "(p_i - p_j) / T", "T / B", "T * (p_i", "p_i - p_bar",
                                         "mean_{j != i} p_j"]}


# --------------------------------------------------------------------------- frozen_teacher

MLP = [["Linear", [6, 8]], ["BatchNorm1d", [8]], ["ReLU", []], ["Sequential", [["Dropout", [0.5]], ["Linear", [8, 4]]]]]
CNN = [["Conv2d", [2, 3, 3]], ["BatchNorm2d", [3]], ["ReLU", []], ["Flatten", []], ["Dropout", [0.3]],
       ["Linear", [48, 5]]]


def _models():
    """(description, model argument, probe input): models with Dropout and BatchNorm (eval mode matters),
    in training mode, in training mode with one frozen parameter, and in eval mode."""
    return [
        ("an MLP with BatchNorm and Dropout, in training mode", module_arg(MLP, 1000), randn(5, 6, seed=1001)),
        ("a CNN with BatchNorm and Dropout, in training mode, its first weight frozen",
         module_arg(CNN, 1010, frozen=("0.weight",)), randn(3, 2, 6, 6, seed=1011)),
        ("an MLP with BatchNorm and Dropout, already in eval mode", module_arg(MLP, 1020, training=False),
         randn(4, 6, seed=1021)),
    ]


SAME_OBJECT = ("the model itself returned, not a copy: teacher and student would be one module, the known bug (re-"
               "initialising or training the student changes the teacher) - return copy.deepcopy(model)")
SHALLOW = ("a shallow copy (copy.copy(model)) shares the parameters, buffers and submodules with the model - use "
           "copy.deepcopy(model), which copies them too")
NO_EVAL = ("the copy is still in training mode - call .eval() on it: in training mode Dropout drops random units and "
           "BatchNorm normalises with each batch's statistics and updates its running statistics, so the teacher's "
           "targets would be noisy and it would change while it teaches")
TOP_ONLY = ("only the copy's own training flag was set (model.training = False?) - .eval() sets it on every "
            "submodule, and Dropout and BatchNorm are submodules")
NO_FREEZE = ("every parameter of the copy still requires grad - call requires_grad_(False) on each of the copy's "
             "parameters (torch.no_grad() around the copy does not change requires_grad): otherwise gradients "
             "flow into the teacher, and an optimiser holding its parameters would update it")
EVAL_ON_ORIGINAL = ("eval() was called on the original model (model.eval() before the copy, or .eval() on a shallow "
                    "copy, whose submodules are the model's): the student that keeps training would train with "
                    "Dropout off and BatchNorm's statistics frozen - call eval() on the copy only")
FROZE_ORIGINAL = ("requires_grad_(False) was applied to the original model's parameters (directly, or through a "
                  "shallow copy that shares them): the student would stop learning - freeze the copy's parameters "
                  "only")


def _teacher(frozen_teacher, arg, what: str, probe: torch.Tensor | None = None):
    """The copy's report, the model's report as the function left it, and the call's probe."""
    called = frozen_teacher.inspect(arg, probe_input=probe)
    got, original = called.value, (called.args or [None])[0]
    if got is None:
        raise AssertionError(f"{what}: returned None - return the frozen copy (a function that freezes the model "
                             "in place and returns nothing changes the student)")
    assert isinstance(got, ModuleReport), f"{what}: expected an nn.Module, got {type(got).__name__}"
    assert isinstance(original, ModuleReport), f"{what}: the model passed in could not be inspected"
    return got, original, called


def _shared(got: ModuleReport, original: ModuleReport) -> list[str]:
    """Names of the copy's tensors whose storage is one of the original's."""
    theirs = {ptr for ptr in original.storage.values() if ptr}
    return sorted(name for name, ptr in got.storage.items() if ptr and ptr in theirs)


def _distinct(got: ModuleReport, original: ModuleReport, what: str) -> None:
    if got.identity == original.identity:
        raise AssertionError(f"{what}: {SAME_OBJECT}")
    shared = _shared(got, original)
    if shared:
        raise AssertionError(f"{what}: the copy's {', '.join(shared[:4])} share storage with the model's - {SHALLOW}")


@check(M, "frozen_teacher", points=2)
def teacher_is_a_new_module(frozen_teacher):
    """A new module object, no storage shared with the model (parameters and buffers), the same values."""
    for what, arg, _ in _models():
        got, original, _ = _teacher(frozen_teacher, arg, what)
        _distinct(got, original, what)
        state = arg["__module__"]["state"]
        assert set(got.state) == set(state), (f"{what}: the copy's parameters and buffers are {sorted(got.state)}, "
                                              f"the model's {sorted(state)} - copy the whole model")
        for name, value in state.items():
            assert tensors_close(got.state[name], value) and got.state[name].dtype == value.dtype, (
                f"{what}: the copy's {name} differs from the model's - the teacher is the trained model as it is: "
                "copy it (copy.deepcopy), do not build or re-initialise another one")


@check(M, "frozen_teacher", points=1)
def teacher_survives_reinitialising_the_original(frozen_teacher):
    """The copy computes the model's function (eval mode); re-initialising the model leaves its outputs unchanged."""
    for what, arg, x in _models():
        got, original, called = _teacher(frozen_teacher, arg, what, probe=x)
        if called.probe_error is not None:
            e = called.probe_error
            raise AssertionError(f"{what}: the copy's forward raised {e.kind}: {e.message[:160]}")
        reference = freeze(build(arg))
        with torch.no_grad():
            expected = reference(x)
        close(called.probe_before, expected, f"{what}: the copy's outputs in eval mode (should be the model's)")
        if not tensors_close(as_tensor(called.probe_after, what), called.probe_before):
            hint = (SAME_OBJECT if got.identity == original.identity else SHALLOW if _shared(got, original)
                    else "the copy still depends on the model - use copy.deepcopy(model)")
            raise AssertionError(f"{what}: re-initialising the model changed the copy's outputs - {hint}")


@check(M, "frozen_teacher", points=1, kind="property")
def teacher_in_eval_mode(frozen_teacher):
    """Every submodule of the copy in eval mode (Dropout, BatchNorm, a nested Sequential), whatever the model's."""
    for what, arg, _ in _models():
        got, _, _ = _teacher(frozen_teacher, arg, what)
        training = sorted(name or "(the module itself)" for name, flag in got.training.items() if flag)
        if not training:
            continue
        if not got.training.get("", True):
            raise AssertionError(f"{what}: submodules {', '.join(training[:4])} of the copy are in training mode - "
                                 f"{TOP_ONLY}")
        raise AssertionError(f"{what}: {NO_EVAL}")


@check(M, "frozen_teacher", points=1, kind="property")
def teacher_has_no_gradients(frozen_teacher):
    """No parameter of the copy requires grad (also when some of the model's parameters were frozen already)."""
    for what, arg, _ in _models():
        got, _, _ = _teacher(frozen_teacher, arg, what)
        live = sorted(name for name, flag in got.requires_grad.items() if flag)
        if not live:
            continue
        frozen = set(arg["__module__"]["frozen"])
        if len(live) == len(got.requires_grad) - len(frozen & set(got.requires_grad)):
            raise AssertionError(f"{what}: {NO_FREEZE}")
        raise AssertionError(f"{what}: the copy's parameters {', '.join(live[:4])} still require grad - call "
                             "requires_grad_(False) on every parameter of the copy")


@check(M, "frozen_teacher", points=1, kind="property")
def original_left_unchanged(frozen_teacher):
    """The model keeps its mode (training, or eval) and its requires_grad flags; its values are guarded too."""
    for what, arg, _ in _models():
        got, original, _ = _teacher(frozen_teacher, arg, what)
        spec = arg["__module__"]
        changed = sorted(name or "(the module itself)" for name, flag in original.training.items()
                         if flag != spec["training"])
        same = SAME_OBJECT if got.identity == original.identity else None
        if changed:
            if spec["training"]:
                raise AssertionError(f"{what}: the model passed in is now in eval mode ({', '.join(changed[:4])}) - "
                                     f"{same or EVAL_ON_ORIGINAL}")
            raise AssertionError(f"{what}: the mode of the model passed in changed ({', '.join(changed[:4])}) - "
                                 "leave the model as it is, and set the copy's mode")
        expected = {name: name not in spec["frozen"] for name in original.requires_grad}
        frozen = sorted(n for n, flag in original.requires_grad.items() if expected[n] and not flag)
        if frozen:
            raise AssertionError(f"{what}: the model's parameters {', '.join(frozen[:4])} no longer require grad - "
                                 f"{same or FROZE_ORIGINAL}")
        assert original.requires_grad == expected, (
            f"{what}: the model's requires_grad flags changed - leave the model as it is")


# --------------------------------------------------------------------------- mutual_learning_losses

def _peers_batch(seed: int, k: int, b: int, c: int):
    """Peers' logits [K, B, C] (different scales, so they disagree) and labels [B]."""
    scales = torch.linspace(1.0, 3.0, k).view(k, 1, 1)
    return randn(k, b, c, seed=seed) * scales, randint(c, b, seed=seed + 1)


def _mutual_reference(z: torch.Tensor, y: torch.Tensor, t: float) -> torch.Tensor:
    """``course_lib.online.MutualLearning``'s per-model losses, K runs on one data order (all peers), weight 1."""
    k = z.shape[0]
    ctx = SimpleNamespace(specs=[RunSpec("peer", seed=i, data_seed=0) for i in range(k)], device=z.device)
    losses, _ = MutualLearning(ctx, temperature=t)(SimpleNamespace(logits=z, y=y.expand(k, -1)))
    return losses


def _mutual_formula(z: torch.Tensor, y: torch.Tensor, t: float, *, detach: bool = True) -> torch.Tensor:
    """L_i = CE(z_i, y) + T^2 * mean_{j != i} KL(p_j || p_i), batch means; peers detached unless ``detach=False``."""
    k = z.shape[0]
    targets = z.detach() if detach else z
    out = []
    for i in range(k):
        kl = torch.stack([soft_target_kl(z[i], targets[j], t).mean() for j in range(k) if j != i]).mean()
        out.append(F.cross_entropy(z[i], y) + t * t * kl)
    return torch.stack(out)


def _mutual_mistakes(z: torch.Tensor, y: torch.Tensor, t: float) -> dict[str, torch.Tensor]:
    k, b, c = z.shape
    ce = torch.stack([F.cross_entropy(z[i], y) for i in range(k)])
    ce_tempered = torch.stack([F.cross_entropy(z[i] / t, y) for i in range(k)])
    fwd = torch.stack([torch.stack([soft_target_kl(z[i], z[j], t).mean() for j in range(k)]) for i in range(k)])
    rev = torch.stack([torch.stack([soft_target_kl(z[i], z[j], t, direction="reverse").mean() for j in range(k)])
                       for i in range(k)])
    mean_kl = fwd.sum(1) / (k - 1)          # the diagonal (a peer's KL to itself) is 0
    return {
        "the KL reversed, KL(p_i || p_j) (the peer's prediction p_j is the target: it goes first, as the "
        "teacher's in Hinton's loss)": ce + t * t * rev.sum(1) / (k - 1),
        "the mean over all K peers, the peer itself included (dividing by K instead of K - 1)":
            ce + t * t * fwd.sum(1) / k,
        "the sum over the peers instead of their mean": ce + t * t * fwd.sum(1),
        "a missing T^2 factor": ce + mean_kl,
        "T instead of T^2": ce + t * mean_kl,
        "the KL summed over the batch instead of averaged (reduction='batchmean')": ce + t * t * b * mean_kl,
        "F.kl_div's default reduction='mean' (divides by B*C, not B: use reduction='batchmean')":
            ce + t * t * mean_kl / c,
        "the cross-entropy left out (each peer also learns the labels)": t * t * mean_kl,
        "the cross-entropy on the tempered logits z_i / T (the labels' term is at temperature 1)":
            ce_tempered + t * t * mean_kl,
    }


def _losses_close(got, z, y, t, what: str) -> None:
    got = as_tensor(got, what)
    k = z.shape[0]
    if got.dim() == 0:
        raise AssertionError(f"{what}: got a scalar - return one loss per peer, a tensor [K] = [{k}] (each peer "
                             "minimises its own loss), not their sum or mean")
    close_naming(got, _mutual_reference(z, y, t), _mutual_mistakes(z, y, t), what)


@check(M, "mutual_learning_losses", points=2)
def mutual_losses_match_reference(mutual_learning_losses):
    """CE(z_i, y) + T^2 mean_{j != i} KL(p_j || p_i) per peer, batch means; K = 2..5, several T (default 1), B, C."""
    z, y = _peers_batch(1100, 2, 8, 10)
    _losses_close(mutual_learning_losses(z, y), z, y, 1.0, "K=2, B=8, C=10, the default temperature (1)")
    for seed, (k, b, c), t in [(1104, (3, 8, 10), 2.0), (1108, (4, 1, 5), 4.0), (1112, (3, 16, 100), 1.5),
                               (1116, (5, 6, 3), 0.5)]:
        z, y = _peers_batch(seed, k, b, c)
        _losses_close(mutual_learning_losses(z, y, temperature=t), z, y, t, f"K={k}, B={b}, C={c}, temperature={t:g}")


def _reference_grad(z, y, t, weights, *, detach: bool = True) -> torch.Tensor:
    """The gradient of sum_i w_i L_i: MutualLearning's, or (``detach=False``) the formula's without detached peers."""
    ref = z.clone().requires_grad_(True)
    losses = _mutual_reference(ref, y, t) if detach else _mutual_formula(ref, y, t, detach=False)
    (grad,) = torch.autograd.grad((losses * weights).sum(), ref)
    return grad


@check(M, "mutual_learning_losses", points=2)
def mutual_gradients_stay_with_each_peer(mutual_learning_losses):
    """d L_i / d z_j = 0 for j != i (detached peers); d L_i / d z_i and d(sum_i w_i L_i) / dz as the reference's."""
    for seed, (k, b, c), t in [(1200, (3, 6, 7), 2.0), (1204, (2, 5, 4), 1.0)]:
        z, y = _peers_batch(seed, k, b, c)
        for i in range(k):
            what = f"K={k}, B={b}, C={c}, temperature={t:g}, the gradient of peer {i}'s loss"
            one_hot = torch.zeros(k)
            one_hot[i] = 1.0
            value, grad = mutual_learning_losses.value_and_grad(z, y, temperature=t, wrt=0, grad_outputs=one_hot)
            assert as_tensor(value, what).shape == (k,), (
                f"{what}: expected the losses [K] = [{k}], got shape {tuple(value.shape)}")
            assert grad is not None, f"{what}: the losses are not differentiable with respect to the logits"
            others = [j for j in range(k) if j != i]
            leak = grad[others].abs().max().item()
            if leak > 1e-7:
                raise AssertionError(
                    f"{what}: it reaches the other peers' logits (max |gradient| {leak:.3g}) - the peers' "
                    "distributions not detached: they are targets, so use logits[j].detach() (or "
                    "softmax(...).detach()) for the peers; in DML each student moves towards its peers' predictions "
                    "held fixed")
            close(grad[i], _reference_grad(z, y, t, one_hot)[i], f"{what} with respect to its own logits z_{i}")
    z, y = _peers_batch(1208, 4, 8, 6)
    weights = torch.tensor([1.0, 0.5, 2.0, 1.5])
    what = "K=4, B=8, C=6, temperature=3, the gradient of sum_i w_i L_i"
    value, grad = mutual_learning_losses.value_and_grad(z, y, temperature=3.0, wrt=0, grad_outputs=weights)
    assert grad is not None, f"{what}: the losses are not differentiable with respect to the logits"
    close_naming(grad, _reference_grad(z, y, 3.0, weights),
                 {"the peers' distributions not detached (use logits[j].detach() for the peers)":
                  _reference_grad(z, y, 3.0, weights, detach=False)}, what)


@check(M, "mutual_learning_losses", points=1)
def mutual_special_cases(mutual_learning_losses):
    """Identical peers: only the cross-entropy is left (KL 0); reordering the peers reorders the losses."""
    z, y = _peers_batch(1300, 1, 8, 6)
    for k, t in [(2, 1.0), (3, 4.0)]:
        same = z.expand(k, -1, -1).clone()
        what = f"{k} identical peers, temperature={t:g} (the KL terms are 0: each loss is F.cross_entropy(z_i, y))"
        expected = F.cross_entropy(z[0], y).expand(k).clone()
        close_naming(mutual_learning_losses(same, y, temperature=t), expected,
                     {"the cross-entropy left out": torch.zeros(k)}, what)
    z, y = _peers_batch(1304, 4, 6, 5)
    base = as_tensor(mutual_learning_losses(z, y, temperature=2.0), "K=4, temperature=2")
    perm = torch.tensor([2, 0, 3, 1])
    close(mutual_learning_losses(z[perm], y, temperature=2.0), base.detach()[perm],
          "K=4, temperature=2, the peers reordered (the losses should be reordered alike)")


@check(M, "mutual_learning_losses", points=1, kind="rejects")
def mutual_rejects_bad_inputs(mutual_learning_losses):
    """ValueError for one peer (K = 1), 2-D logits [B, C], temperature = 0 and temperature < 0."""
    z, y = _peers_batch(1400, 3, 4, 5)
    cases = [
        ("logits of shape [1, B, C] (one model: K = 1 has no peer)", (z[:1], y), {}),
        ("logits of shape [B, C] (no peer dimension)", (z[0], y), {}),
        ("temperature=0", (z, y), {"temperature": 0.0}),
        ("temperature=-2", (z, y), {"temperature": -2.0}),
    ]
    for what, args, kwargs in cases:
        expect_value_error(mutual_learning_losses, args, kwargs, what,
                           "check the shape ([K, B, C] with K >= 2) and the temperature (> 0) first")


# --------------------------------------------------------------------------- ensemble_predict

SCALES = (0.5, 4.0, 1.0, 8.0, 2.0)


def _members(seed: int, m: int, n: int, c: int) -> list[torch.Tensor]:
    """M members' logits [n, C], from unsure (scale 0.5) to very confident (scale 8): the rules disagree."""
    return [randn(n, c, seed=seed + i, scale=SCALES[i % len(SCALES)]) for i in range(m)]


def _ensemble_reference(members: list[torch.Tensor], how: str) -> torch.Tensor:
    stacked = torch.stack(members)
    return (stacked.softmax(-1).mean(0) if how == "probs" else stacked.mean(0)).argmax(-1)


def _ensemble_mistakes(members: list[torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    stacked = torch.stack(members)
    votes = stacked.argmax(-1)                                                       # [M, n]
    counts = F.one_hot(votes, stacked.shape[-1]).sum(0)                              # [n, C]
    other = "logits" if how == "probs" else "probs"
    rule = {"probs": "the mean of the logits (how='logits'; the mean of the log-probabilities gives the same) "
                     "instead of the mean of the probabilities",
            "logits": "the mean of the probabilities (how='probs') instead of the mean of the logits"}[how]
    return {
        rule: _ensemble_reference(members, other),
        "a majority vote of the members' predicted classes (average their outputs, then take the argmax)":
            counts.argmax(-1),
        "the first member only (average all M members)": votes[0],
        "the last member only (average all M members)": votes[-1],
        "the mean of the members' predicted indices (average their outputs, then take the argmax)":
            votes.double().mean(0),
        "the most confident member's prediction (the largest probability of any member)":
            stacked.softmax(-1).amax(0).argmax(-1),
    }


def _ensemble_close(got, members, how: str, what: str) -> None:
    got = as_tensor(got, what)
    n, c = members[0].shape
    if got.shape == (n, c):
        raise AssertionError(f"{what}: got shape {tuple(got.shape)}, the logits' - return the predicted class "
                             "indices [n] (the argmax over the classes of the averaged outputs)")
    close_naming(got, _ensemble_reference(members, how), _ensemble_mistakes(members, how), what)
    assert not got.is_floating_point() and not got.is_complex() and got.dtype != torch.bool, (
        f"{what}: expected integer class indices (torch.long), got {got.dtype}")


@check(M, "ensemble_predict", points=1)
def ensemble_matches_mean_probabilities(ensemble_predict):
    """argmax of the mean softmax over M = 1..5 members (the default how), on members of different confidence."""
    members = _members(1500, 3, 200, 10)
    _ensemble_close(ensemble_predict(members), members, "probs", "M=3, n=200, C=10, the default how ('probs')")
    for seed, (m, n, c) in [(1510, (2, 300, 4)), (1520, (5, 100, 10)), (1530, (1, 7, 3)), (1540, (4, 1, 6))]:
        members = _members(seed, m, n, c)
        _ensemble_close(ensemble_predict(members, how="probs"), members, "probs", f"M={m}, n={n}, C={c}, how='probs'")


@check(M, "ensemble_predict", points=1)
def ensemble_matches_mean_logits(ensemble_predict):
    """argmax of the mean logits with how='logits', M = 1..5."""
    for seed, (m, n, c) in [(1600, (3, 200, 10)), (1610, (2, 300, 4)), (1620, (5, 100, 10)), (1630, (1, 7, 3))]:
        members = _members(seed, m, n, c)
        _ensemble_close(ensemble_predict(members, how="logits"), members, "logits",
                        f"M={m}, n={n}, C={c}, how='logits'")


# Row 0: members 0 and 1 rank class 1 first (the vote), member 2 rules it out (-8) and is sure of
# class 2; class 3, which nobody rules out, has the largest mean logit; class 2 the largest mean
# probability. Row 1: the first member is sure of class 0, the two others of class 1.
HAND = [torch.tensor([[2.0, 3.0, -6.0, 2.0], [5.0, 0.0, 0.0, 0.0]]),
        torch.tensor([[2.0, 3.0, 2.0, 2.0], [0.0, 4.0, 0.0, 0.0]]),
        torch.tensor([[2.0, -8.0, 8.0, 3.0], [0.0, 4.5, 0.0, 0.0]])]


@check(M, "ensemble_predict", points=1)
def ensemble_hand_example(ensemble_predict):
    """Three members where the vote (1), the mean logits (3) and the mean probabilities (2) disagree."""
    for how, expected in (("probs", [2, 1]), ("logits", [3, 1])):
        what = f"hand example, how={how!r} (expected {expected})"
        got = ensemble_predict(HAND, how=how)
        _ensemble_close(got, HAND, how, what)
        assert as_tensor(got, what).long().tolist() == expected, f"{what}: got {got.tolist()}"


@check(M, "ensemble_predict", points=1, kind="rejects")
def ensemble_rejects_bad_inputs(ensemble_predict):
    """ValueError for an unknown how ('mean', 'prob', 'vote') and for an empty list of members."""
    members = _members(1700, 2, 5, 3)
    for how in ("mean", "prob", "vote"):
        expect_value_error(ensemble_predict, (members,), {"how": how}, f"how={how!r}",
                           "how must be 'probs' or 'logits': check it before anything else")
    for how in ("probs", "logits"):
        expect_value_error(ensemble_predict, ([],), {"how": how}, f"an empty list of members, how={how!r}",
                           "an ensemble needs at least one member: check len(logits_list) first")


# --------------------------------------------------------------------------- mutual_soft_gradient

def _soft_gradient(z: torch.Tensor, t: float) -> torch.Tensor:
    """Row i: the gradient with respect to z_i of peer i's soft term, MutualLearning's loss less its cross-entropy
    (the peers are detached, so the gradient of the sum of the soft terms has row i from term i only)."""
    y = torch.zeros(z.shape[1], dtype=torch.long)
    ref = z.clone().requires_grad_(True)
    soft = _mutual_reference(ref, y, t) - torch.stack([F.cross_entropy(ref[i], y) for i in range(z.shape[0])])
    (grad,) = torch.autograd.grad(soft.sum(), ref)
    return grad


def _soft_gradient_mistakes(z: torch.Tensor, t: float) -> dict[str, torch.Tensor]:
    k, b, _ = z.shape
    expected = _soft_gradient(z, t)
    p1 = z.softmax(-1)
    cold = 1.0 / b * (p1 - (p1.sum(0, keepdim=True) - p1) / (k - 1)) * t
    return {
        "the gradient of the KL alone, notebook 02's kd_gradient (the soft term carries a T^2 factor: T^2 / T "
        "leaves a factor T)": expected / (t * t),
        "a flipped sign (a gradient points where the loss grows: towards the peer itself, away from its peers)":
            -expected,
        "no batch mean (the soft term averages over the B examples, so each example's gradient carries 1/B)":
            expected * b,
        "the sum over the other peers instead of their mean (1 / (K - 1))": expected * (k - 1),
        "the mean over all K peers, the peer itself included (dividing by K instead of K - 1)":
            expected * (k - 1) / k,
        "the distributions at temperature 1 (the soft term's distributions are the tempered ones, softmax(z / T))":
            cold,
    }


def _losses_first(f, z: torch.Tensor, t: float) -> str:
    """`` - your mutual_learning_losses is wrong too ...`` when the answer's losses on ``z`` are wrong, else ""."""
    y = torch.zeros(z.shape[1], dtype=torch.long)
    return fix_first(f, "mutual_learning_losses", (z, y, t),
                     right=lambda got: torch.is_tensor(got) and tensors_close(got, _mutual_reference(z, y, t)),
                     wrong=lambda got: (" - your mutual_learning_losses is wrong too on these logits (labels 0): if "
                                        "you differentiate it here, fix it first"))


@check(M, "mutual_soft_gradient", points=2)
def soft_gradient_matches_autograd(mutual_soft_gradient):
    """Row i: d(soft term of L_i) / d z_i = (T / B) (p_i - mean_{j != i} p_j), as autograd on MutualLearning's."""
    for seed, (k, b, c), t in [(1800, (3, 6, 7), 2.0), (1804, (4, 5, 4), 3.0), (1808, (3, 1, 5), 0.5),
                               (1812, (2, 8, 6), 1.0)]:
        z, _ = _peers_batch(seed, k, b, c)
        what = f"K={k}, B={b}, C={c}, temperature={t:g}"
        got = mutual_soft_gradient(z, t)
        try:
            close_naming(got, _soft_gradient(z, t), _soft_gradient_mistakes(z, t), what)
        except AssertionError as e:
            raise AssertionError(f"{e}{_losses_first(mutual_soft_gradient, z, t)}") from None


@check(M, "mutual_soft_gradient", points=2)
def soft_gradient_consequences(mutual_soft_gradient):
    """Rows sum to 0; two peers' gradients are opposite; zero for a peer at the mean of its peers' distributions."""
    z, _ = _peers_batch(1900, 3, 5, 6)
    what = "K=3, B=5, C=6, temperature=2"
    g = as_tensor(mutual_soft_gradient(z, 2.0), what)
    assert g.shape == z.shape, f"{what}: expected shape {tuple(z.shape)}, got {tuple(g.shape)}"
    close(g.sum(-1), torch.zeros(3, 5), f"{what}: the sums over the classes (should be 0)", atol=1e-6)
    z, _ = _peers_batch(1904, 2, 4, 5)
    what = "K=2, B=4, C=5, temperature=1.5"
    g = as_tensor(mutual_soft_gradient(z, 1.5), what)
    assert g.shape == z.shape, f"{what}: expected shape {tuple(z.shape)}, got {tuple(g.shape)}"
    close(g[0], -g[1], f"{what}: peer 0's gradient (should be minus peer 1's)")
    t = 2.0
    z, _ = _peers_batch(1908, 3, 4, 5)
    mean = (torch.softmax(z[1] / t, -1) + torch.softmax(z[2] / t, -1)) / 2
    z[0] = t * torch.log(mean)                          # peer 0's distribution: the mean of its two peers'
    what = "K=3, B=4, C=5, temperature=2, peer 0's distribution the mean of peers 1 and 2's"
    g = as_tensor(mutual_soft_gradient(z, t), what)
    assert g.shape == z.shape, f"{what}: expected shape {tuple(z.shape)}, got {tuple(g.shape)}"
    close(g[0], torch.zeros(4, 5), f"{what}: peer 0's gradient (should be 0: it sits at its peers' mean)",
          atol=1e-6)
    assert g[1:].abs().max() > 1e-3, f"{what}: the other peers' gradients are 0 too - they are not at their mean"
