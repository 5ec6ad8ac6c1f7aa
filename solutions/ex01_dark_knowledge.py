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
``T > 0`` the temperature, ``p^T = softmax(z / T)``.
"""
import torch


def softmax_with_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Tempered softmax over the last dimension (Hinton et al. 2015, eq. 1).

        p_i^T = exp(z_i / T) / sum_j exp(z_j / T)

    Args:
        logits: tensor ``[..., C]``; any number of leading dimensions.
        temperature: a positive number ``T``. ``T = 1`` is the ordinary softmax; ``T > 1`` softens
            the distribution (towards uniform as ``T -> inf``); ``T < 1`` sharpens it (towards
            one-hot at the largest logit as ``T -> 0``).

    Returns:
        A tensor of the same shape as ``logits`` whose last dimension sums to 1.

    Raises:
        ValueError: if ``temperature <= 0``.

    Must stay finite for large logits (e.g. ``z = [1000, 999, 0]``): ``exp(1000)`` overflows, so
    either subtract the row maximum first (softmax is unchanged by a constant shift) or use
    ``torch.softmax``.
    """
    ### BEGIN SOLUTION
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(logits / temperature, dim=-1)
    ### END SOLUTION


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension.

        H(p) = - sum_i p_i log p_i        (natural log; the convention 0 log 0 = 0)

    Args:
        probs: tensor ``[..., C]`` of probabilities (non-negative, last dimension sums to 1); it may
            contain exact zeros.

    Returns:
        Tensor of shape ``probs.shape[:-1]``. Examples: ``H(uniform over C) = log C``,
        ``H(one-hot) = 0`` (not NaN: ``0 * log 0`` is ``0 * -inf = nan`` in floating point, so the
        zero entries need care), ``H([0.5, 0.5]) = log 2 = 0.693`` nats (1 bit).
    """
    ### BEGIN SOLUTION
    plogp = torch.where(probs > 0, probs * torch.log(probs), torch.zeros_like(probs))
    return -plogp.sum(dim=-1)
    ### END SOLUTION


def soft_target_similarity(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class-by-class average of a teacher's soft targets: where the dark knowledge lives.

        S[c, k] = (1 / N_c) * sum_{n : labels[n] = c} probs[n, k]

    where ``N_c`` is the number of examples whose true label is ``c``. Row ``c`` is the teacher's
    mean predicted distribution over examples of class ``c``; its off-diagonal entries say which
    other classes the teacher finds similar to ``c`` (e.g. "shirt" looks like "T-shirt").

    Args:
        probs: tensor ``[N, C]``, one probability vector per example (e.g. ``softmax(z / T)``).
        labels: integer tensor ``[N]`` of true classes in ``0 .. num_classes - 1``.
        num_classes: ``C``.

    Returns:
        Tensor ``[C, C]`` with the dtype of ``probs``. A class with no examples (``N_c = 0``) gets a
        row of zeros; every other row sums to 1.
    """
    ### BEGIN SOLUTION
    sums = torch.zeros(num_classes, probs.shape[-1], dtype=probs.dtype, device=probs.device)
    sums.index_add_(0, labels, probs)
    counts = torch.bincount(labels, minlength=num_classes).to(probs.dtype)
    return sums / counts.clamp_min(1).unsqueeze(1)
    ### END SOLUTION
