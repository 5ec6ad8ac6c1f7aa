"""Exercises for notebook 05: born-again networks, deep mutual learning and ensembles.

Implement each function below with plain ``torch`` (``torch.nn.functional`` and the standard
library's ``copy`` are fine). Do not use ``course_lib`` (its ``engine`` and ``online`` modules hold
the reference answers the grader compares yours with): a file that imports it scores zero. The
grader runs this file in a separate process with a time limit, and a function that modifies its
input tensors (or the parameters of the model it is given) in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex05")

or from the repository root with ``python -m course_lib.grading exercises --only ex05``.

Notation. *Born-again networks* (Furlanello et al. 2018, "Born-Again Neural Networks",
arXiv:1805.04770): generation 1 is trained on the labels; generation ``k`` is the same architecture,
trained from scratch and distilled from generation ``k - 1``, which is frozen while it teaches.
*Deep mutual learning* (Zhang et al. 2018, "Deep Mutual Learning", arXiv:1706.00384): ``K >= 2``
peers train together from scratch, each on the labels and on the others' current predictions.
On a batch of ``B`` examples with ``C`` classes, the peers' logits are ``z_1, ..., z_K`` (each
``[B, C]``, stacked as ``[K, B, C]``), the labels ``y`` (``[B]``), ``T > 0`` is the temperature and
``p_i = softmax(z_i / T)`` (over the classes). An *ensemble* of ``M`` models predicts from the
mean of its members' outputs on the same ``n`` examples.
"""
import copy  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)

import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)
from torch import nn


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to teach the next generation: a deep copy, in eval mode, without gradients.

    In the generation loop of born-again networks, generation ``k - 1`` teaches generation ``k``
    and then generation ``k`` teaches ``k + 1``: each teacher must stay exactly as it was when its
    training ended, whatever happens to the model object it came from. Return a new module that

    1. is a *deep* copy (``copy.deepcopy(model)``): a new module object whose parameters and buffers
       are new tensors with the same values. ``copy.copy(model)`` is a *shallow* copy: a new outer
       object that shares the parameters, the buffers and the submodules with ``model``, so
       changing one changes the other; returning ``model`` itself is worse still. A known bug
       elsewhere passes the same module object as teacher and student: re-initialising the
       student then re-initialises the teacher, and "distillation" distils a model from itself;
    2. is in eval mode (``.eval()``, which sets ``training = False`` on every submodule, not only
       the outer one): a teacher in training mode drops random units (``Dropout``) and normalises
       with each batch's statistics while updating its running statistics (``BatchNorm``), so
       its targets would be noisy and it would change while it teaches;
    3. has no parameter that requires a gradient (``requires_grad_(False)`` on each parameter):
       nothing flows back into the teacher, and no optimiser can update it. (``torch.no_grad()``
       around the copy does not change ``requires_grad``.)

    ``model`` itself is left untouched: its mode (the student that keeps training stays in
    training mode), its ``requires_grad`` flags and its values. So take the copy *first* and call
    ``eval()`` and ``requires_grad_(False)`` on the copy, never on ``model``.
    (``course_lib.engine.freeze`` does the same for ``course_lib.online.born_again``.)

    Args:
        model: any ``nn.Module``, in training or eval mode.

    Returns:
        The frozen copy, an ``nn.Module`` that computes the same function as ``model`` in eval mode.
    """
    ### BEGIN SOLUTION
    teacher = copy.deepcopy(model)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
    ### END SOLUTION


def mutual_learning_losses(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Each peer's loss in deep mutual learning (Zhang et al. 2018), for ``K`` peers on one batch.

    Peer ``i`` learns the labels and matches each other peer's current prediction, averaged over
    its ``K - 1`` peers:

        KL(p_j || p_i)_b = sum_c p_j[b, c] * (log p_j[b, c] - log p_i[b, c])   (the peer's first)
        L_i = CE(z_i, y) + T^2 * (1 / (K - 1)) * sum_{j != i} (1/B) * sum_b KL(p_j || p_i)_b

    with ``CE`` the cross-entropy at temperature 1 averaged over the batch (``F.cross_entropy``).
    The KL is the forward one of Hinton's loss with peer ``j`` in the teacher's place: the target
    ``p_j`` first. ``T^2`` keeps the soft term's gradient from shrinking like ``1 / T^2``, as in
    KD. A peer's KL to itself is zero: the mean is over the ``K - 1`` *other* peers (not over all
    ``K``, which would shrink the term by ``(K - 1) / K``), and it is a mean, not a sum.

    The peers' distributions are *targets*: detach them (``z_j.detach()``) so that the gradient
    of ``L_i`` reaches only ``z_i``, as in the paper's updates, where each student moves towards
    its peers' predictions held fixed. (Summed over the peers, the losses then train every peer
    at once: ``sum_i L_i`` has, with respect to ``z_i``, exactly ``L_i``'s gradient.)

    Args:
        logits: ``[K, B, C]``, the ``K >= 2`` peers' logits on the same batch.
        labels: ``[B]`` integer class indices ``y``, shared by the peers.
        temperature: ``T > 0`` of the peers' distributions in the KL terms.

    Returns:
        Tensor ``[K]``: ``L_1, ..., L_K`` (differentiable; the inputs are left unchanged).

    Raises:
        ValueError: if ``logits`` is not 3-dimensional, ``K < 2`` (one model has no peer), or
            ``temperature <= 0``.
    """
    ### BEGIN SOLUTION
    if logits.dim() != 3:
        raise ValueError(f"logits must be [K, B, C], got shape {tuple(logits.shape)}")
    k = logits.shape[0]
    if k < 2:
        raise ValueError(f"mutual learning needs K >= 2 peers, got K = {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p = F.log_softmax(logits / temperature, dim=-1)                     # [K, B, C]
    log_targets = log_p.detach()                                            # the peers' predictions: targets
    losses = []
    for i in range(k):
        ce = F.cross_entropy(logits[i], labels)
        kls = [(log_targets[j].exp() * (log_targets[j] - log_p[i])).sum(dim=-1).mean() for j in range(k) if j != i]
        losses.append(ce + temperature ** 2 * torch.stack(kls).mean())
    return torch.stack(losses)
    ### END SOLUTION


def ensemble_predict(logits_list: list[torch.Tensor], how: str = "probs") -> torch.Tensor:
    """The predicted classes of an ensemble of ``M`` models, from their logits on the same examples.

    With ``z_m`` the logits of model ``m`` (``[n, C]``):

        how="probs":   prediction[b] = argmax_c (1/M) * sum_m softmax(z_m)[b, c]
        how="logits":  prediction[b] = argmax_c (1/M) * sum_m z_m[b, c]

    ``"probs"`` (the default) averages the members' predictive distributions: the ensemble's
    distribution is their mixture, as born-again ensembles are usually reported. ``"logits"``
    averages the logits, a normalised *geometric* mean of the distributions: one member that
    rules a class out (a very negative logit) can veto it, and a very confident member weighs
    more than under ``"probs"``, where each member contributes at most 1 to a class. The two
    rules can disagree, and neither is a majority vote of the members' predicted classes, which
    forgets how sure each member was.
    (``course_lib.online.ensemble_logits`` returns the ensemble's scores under either rule.)

    Args:
        logits_list: ``M >= 1`` tensors ``[n, C]``, the members' logits on the same examples.
        how: ``"probs"`` or ``"logits"``.

    Returns:
        Tensor ``[n]`` of integer (``torch.long``) class indices (the inputs are left unchanged).

    Raises:
        ValueError: if ``how`` is neither ``"probs"`` nor ``"logits"``, or ``logits_list`` is empty.
    """
    ### BEGIN SOLUTION
    if how not in {"probs", "logits"}:
        raise ValueError(f"unknown how={how!r}: use 'probs' or 'logits'")
    if len(logits_list) == 0:
        raise ValueError("an ensemble needs at least one model's logits")
    stacked = torch.stack(list(logits_list))                                # [M, n, C]
    scores = stacked.softmax(dim=-1).mean(dim=0) if how == "probs" else stacked.mean(dim=0)
    return scores.argmax(dim=-1)
    ### END SOLUTION
