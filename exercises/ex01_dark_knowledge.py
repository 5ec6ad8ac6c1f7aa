# GENERATED from solutions/ex01_dark_knowledge.py by `python -m course_lib.grading generate` - do not edit.
# (Course authors: edit solutions/ex01_dark_knowledge.py and regenerate. Students: replace each
# `raise NotImplementedError` below with your code.)
"""Exercises for notebook 01: dark knowledge (soft targets, temperature, entropy).

Implement each function below with plain ``torch`` (``torch.nn.functional`` is fine). Do not use
``course_lib`` (its ``losses`` module holds the reference answers the grader compares yours with):
a file that imports it scores zero. The grader runs this file in a separate process with a time
limit, and a function that modifies its input tensors in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex01")

or from the repository root with ``python -m course_lib.grading exercises``.

Notation: ``z`` logits of shape ``[..., C]`` (the last dimension indexes the ``C`` classes),
``T > 0`` the temperature, ``p^T`` the tempered softmax of notebook 01's section "The idea: softmax
with a temperature".

The ladder (notebook 01's exercise cell gives points and times): ``softmax_with_temperature`` and
``entropy`` (warm-up), ``soft_target_similarity`` (core), ``temperature_for_entropy`` (stretch: the
notebook's measurements put to a new use). The docstrings give each function's contract, not its
formula; the grader names the common mistakes after a wrong answer.
"""
import math

import torch


def softmax_with_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The tempered softmax ``p^T`` over the last dimension, as notebook 01's section "The idea:
    softmax with a temperature" defines it (Hinton et al. 2015, eq. 1).

    What must hold (the grader checks these and the values):

    - ``T = 1`` is the ordinary softmax; the ranking of the classes never changes with ``T``;
    - ``T -> inf`` tends to the uniform distribution, ``T -> 0`` to one-hot at the largest logit
      (checked at ``T = 10,000`` and ``T = 0.01``);
    - the result stays finite and correct for large logits, e.g. rows ``[1000, 999, 0]`` and
      ``[-1000, -1001, -2000]``;
    - ``T <= 0`` (``0``, ``0.0``, negative numbers) is not a temperature: raise ``ValueError``.

    Args:
        logits: tensor ``[..., C]``; any number of leading dimensions (the grader uses ``[C]``,
            ``[B, C]`` and ``[B, K, C]``).
        temperature: a positive number ``T``.

    Returns:
        A tensor of the same shape as ``logits`` whose last dimension sums to 1.

    Raises:
        ValueError: if ``temperature <= 0``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement softmax_with_temperature()")


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats (natural logarithm) of each distribution over the last dimension.

    What must hold (the grader checks these and the values):

    - ``H(uniform over C) = log C`` (the dashed line of notebook 01's entropy plot) and
      ``H([0.5, 0.5]) = log 2 = 0.693`` nats (1 bit);
    - ``H(one-hot) = 0``, a number, not NaN: ``probs`` may contain exact zeros, and a zero entry
      contributes nothing;
    - the entropy of ``p^T`` never decreases as ``T`` grows.

    Args:
        probs: tensor ``[..., C]`` of probabilities (non-negative, last dimension sums to 1); it may
            contain exact zeros.

    Returns:
        Tensor of shape ``probs.shape[:-1]`` (a 0-dim tensor for a single distribution ``[C]``).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement entropy()")


def soft_target_similarity(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The class-by-class mean soft target ``S`` of notebook 01's section "Which classes does the
    teacher think alike?": where the dark knowledge lives.

    Contract: row ``c`` of ``S`` is the mean of the probability vectors of the examples whose true
    label is ``c``; its off-diagonal entries say which other classes the teacher finds similar to
    ``c`` (e.g. "shirt" looks like "T-shirt").

    What must hold (the grader checks these and the values):

    - the row of a class that has examples sums to 1;
    - a class with no example in ``labels`` gets a row of zeros (not NaN);
    - the result has the dtype of ``probs`` (float32 and float64 are both used).

    Args:
        probs: tensor ``[N, C]``, one probability vector per example (e.g. ``softmax(z / T)``).
        labels: integer tensor ``[N]`` of true classes in ``0 .. num_classes - 1``.
        num_classes: ``C``.

    Returns:
        Tensor ``[C, C]`` with the dtype of ``probs``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement soft_target_similarity()")


def temperature_for_entropy(logits: torch.Tensor, target_entropy: float) -> float:
    """The temperature at which a teacher's soft targets have a chosen mean entropy.

    Notebook 01 measures the mean entropy of a teacher's ``p^T`` over a test set as ``T`` grows, and
    calls the useful range for distillation the one in between: soft enough to show the
    similarities, not uniform. Turn that around: given the logits of a batch and a target mean
    entropy, find the temperature that reaches it (a way to pick ``T`` for a new teacher, whose
    logits may be on any scale). No formula gives it: use what the notebook showed about how the
    mean entropy varies with ``T`` (you may call your ``softmax_with_temperature`` and ``entropy``).

    Contract:

    - the mean over the ``N`` rows of the entropy (in nats) of ``p^T`` at the returned ``T`` equals
      ``target_entropy`` to within ``1e-3`` nats;
    - the inputs the grader uses: ``N >= 1`` rows of ``C >= 3`` logits, each row with one largest
      logit (so the mean entropy goes from 0 as ``T -> 0`` to ``log C`` as ``T -> inf``), logits of
      any scale (up to a few hundred), and targets strictly between 0 and ``log C`` (from ``0.02``
      to ``log C - 0.02``).

    Consequences to check yours with (the grader checks them and the values):

    - a larger target gives a larger temperature;
    - multiplying every logit by 10 multiplies the temperature by 10; adding a constant to a row
      changes nothing.

    Args:
        logits: ``[N, C]``, a teacher's logits for ``N`` examples (float32).
        target_entropy: the mean entropy wanted, in nats, ``0 < target_entropy < log C``.

    Returns:
        The temperature ``T > 0``, a Python float (a 0-dim tensor is accepted).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement temperature_for_entropy()")
