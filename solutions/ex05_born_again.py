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

The ladder (notebook 05's exercise cell gives points and times): ``frozen_teacher`` and
``ensemble_predict`` (warm-up), ``mutual_learning_losses`` (core), ``mutual_soft_gradient`` (stretch: a
derivation on paper, checked by its consequences). The docstrings give each function's contract, not
its code; the grader names the common mistakes after a wrong answer.
"""
import copy  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)

import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)
from torch import nn


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to teach the next generation, as notebook 05's "Born-again" section uses
    ``freeze``: in the generation loop, generation ``k - 1`` teaches generation ``k`` and must stay
    exactly as it was when its training ended, whatever happens to the model object it came from.

    Contract (the grader checks each, on models with ``Dropout`` and ``BatchNorm`` in nested
    submodules, in training mode, in training mode with some parameters already frozen, and in eval
    mode):

    1. the result is a new module with the same parameter and buffer values as ``model``, sharing no
       tensor storage with it: re-initialising ``model`` afterwards leaves the copy's outputs unchanged;
    2. the copy and every one of its submodules are in eval mode, so the copy computes ``model``'s
       function in eval mode, the same targets at every step;
    3. no parameter of the copy requires a gradient: nothing flows back into the teacher, and no
       optimiser can update it;
    4. ``model`` itself is left as it was: its mode (the student that keeps training stays in
       training mode), its ``requires_grad`` flags and its values.

    Args:
        model: any ``nn.Module``, in training or eval mode.

    Returns:
        The frozen copy, an ``nn.Module``.
    """
    ### BEGIN SOLUTION
    teacher = copy.deepcopy(model)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
    ### END SOLUTION


def mutual_learning_losses(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Each peer's loss in deep mutual learning, ``L_1, ..., L_K``, as notebook 05's section "Deep mutual
    learning" writes it (Zhang et al. 2018), for ``K`` peers on one batch.

    Contract: peer ``i``'s loss is its cross-entropy with the labels (temperature 1) plus the soft
    term that pulls it towards its *other* peers' current predictions: the KL divergence with peer
    ``j``'s distribution in the teacher's place (notebook 02's direction), averaged over the ``K - 1``
    other peers and over the batch, scaled like the soft term of notebook 02's ``kd_loss``. The
    peers' distributions are *targets*: the gradient of ``L_i`` reaches only ``z_i`` (in the paper's
    updates each student moves towards its peers' predictions held fixed), so summing the ``K``
    losses trains every peer at once.

    What must hold (the grader checks these and the values, for ``K`` from 2 to 5, ``B`` from 1 and
    several ``T``; the default is ``T = 1``): identical peers leave only each peer's cross-entropy;
    reordering the peers reorders the losses alike; ``d L_i / d z_j = 0`` for ``j != i``.

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

    Contract: one class per example, from all ``M`` members' outputs at once, under one of two rules:

    - ``how="probs"`` (the default, as notebook 05's ensembles and born-again ensembles are reported):
      the ensemble's predictive distribution is the mean of the members' distributions (their
      mixture), and it predicts that distribution's most likely class;
    - ``how="logits"``: the members' logits are averaged, and the ensemble predicts the class of the
      largest mean logit.

    The two rules can disagree (the grader's hand example has three members on which they do), and
    neither is a vote of the members' predicted classes. With ``M = 1`` both give the member's own
    prediction; ``n = 1`` works too.

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


def mutual_soft_gradient(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Where deep mutual learning pulls each peer: the gradient of peer ``i``'s soft term with respect to its own
    logits, in closed form.

    Take the soft term of ``L_i`` exactly as your ``mutual_learning_losses`` computes it (the scaled KL
    to the other peers' detached distributions, averaged over the ``K - 1`` other peers and the
    batch, without the cross-entropy). Derive its gradient with respect to ``z_i`` on paper (notebook
    02's ``kd_gradient`` is one peer's share of it), then compute your expression directly from the
    tempered softmaxes. The grader checks values only and cannot tell how they were computed:
    ``torch.autograd`` here scores the points and teaches nothing.

    Consequences to check yours with (the grader checks them and the values, for ``K`` from 2 to 4):

    - it agrees with a finite difference (or ``torch.autograd``) of that soft term;
    - each row (over the classes) sums to 0;
    - with two peers, the two peers' gradients are opposite;
    - a peer whose tempered distribution equals the *mean* of its peers' distributions gets a zero
      gradient, although it differs from every one of them: what, then, does mutual learning pull
      each peer towards?

    Args:
        logits: ``[K, B, C]``, the ``K >= 2`` peers' logits ``z_1, ..., z_K`` on the same batch.
        temperature: ``T > 0``.

    Returns:
        Tensor ``[K, B, C]``: row ``i`` is the gradient of peer ``i``'s soft term with respect to ``z_i``.
    """
    ### BEGIN SOLUTION
    # Instructor's note: d KL(p_j || p_i)_b / d z_i[b] = (p_i - p_j) / T (kd_gradient); with the T^2, the mean
    # over the K - 1 peers and the batch mean, the gradient is (T / B) * (p_i - mean_{j != i} p_j): each peer is
    # pulled towards the mixture of its peers' distributions (zero at their mean), not towards any one of them.
    k, b = logits.shape[0], logits.shape[1]
    p = torch.softmax(logits / temperature, dim=-1)                          # [K, B, C]
    others = (p.sum(dim=0, keepdim=True) - p) / (k - 1)                      # mean of the other peers' p_j
    return temperature / b * (p - others)
    ### END SOLUTION
