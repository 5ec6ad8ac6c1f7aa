"""What a teacher's soft targets say: tempered distributions, entropy, class similarity; and whether
two classifiers really differ on one test set (McNemar's exact test)."""
from __future__ import annotations

import math
from fractions import Fraction

import torch

from .losses import entropy, softmax_with_temperature
from .validation import check_logits, check_positive_int, check_probabilities, check_targets, check_temperature


def entropy_vs_temperature(logits: torch.Tensor, temperatures) -> torch.Tensor:
    """Mean entropy (nats) of ``softmax(logits / T)`` for each ``T``: a 1-D tensor."""
    check_logits("logits", logits)
    temperatures = list(temperatures)
    if not temperatures:
        raise ValueError("temperatures is empty: give at least one temperature > 0")
    for t in temperatures:
        check_temperature(t, "temperatures", allow_tensor=False)
    return torch.stack([entropy(softmax_with_temperature(logits, float(t))).mean() for t in temperatures])


def class_similarity(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``S[c, k]`` = mean probability the teacher gives class ``k`` to examples of true class ``c``.

    Rows sum to 1; the off-diagonal mass is the teacher's "dark knowledge". A class with no
    example gets a row of zeros.
    """
    check_positive_int("num_classes", num_classes)
    check_probabilities("probs", probs, dims=2, layout="[n, classes]")
    if not torch.is_tensor(labels) or labels.shape != probs.shape[:1] or probs.shape[-1] != num_classes:
        raise ValueError(f"probs {tuple(probs.shape)} and labels "
                         f"{tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__} do not match "
                         f"{num_classes} classes: probs must be [n, {num_classes}] and labels [n]")
    check_targets("labels", labels, classes=num_classes)
    sums = torch.zeros(num_classes, num_classes, dtype=probs.dtype).index_add_(0, labels, probs)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(probs.dtype)
    return sums / counts[:, None]


def most_similar_pairs(similarity: torch.Tensor, classes, k: int = 5) -> list[tuple[str, str, float]]:
    """The ``k`` class pairs with the largest symmetric off-diagonal similarity ``(S + S^T) / 2``."""
    check_logits("similarity", similarity, dims=2, layout="[classes, classes]")
    if similarity.shape[0] != similarity.shape[1] or len(classes) != similarity.shape[0]:
        raise ValueError(f"similarity must be a square [classes, classes] matrix with one name in classes per row, "
                         f"got shape {tuple(similarity.shape)} and {len(classes)} names")
    check_positive_int("k", k, meaning="how many pairs to return")
    sym = (similarity + similarity.T) / 2
    n = sym.shape[0]
    pairs = [(classes[i], classes[j], float(sym[i, j])) for i in range(n) for j in range(i + 1, n)]
    return sorted(pairs, key=lambda p: -p[2])[:k]


def fraction_within_groups(pairs, group_of: dict[str, str]) -> float:
    """Fraction of class pairs ``(a, b, ...)`` whose two classes lie in the same group
    (``group_of``: class name -> group, e.g. ``course_lib.data.group_of("cifar100")``)."""
    if not pairs:
        raise ValueError("no pairs given")
    missing = {c for a, b, *_ in pairs for c in (a, b)} - set(group_of)
    if missing:
        raise ValueError(f"classes without a group: {sorted(missing)}")
    return sum(group_of[a] == group_of[b] for a, b, *_ in pairs) / len(pairs)


# ------------------------------------------------------------------- two classifiers, one test set

def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for two classifiers scored on the same examples.

    ``b``: examples the first gets right and the second wrong; ``c``: the reverse (the discordant
    pairs; examples both get right or both get wrong say nothing about which is better). Under the
    null hypothesis that both are equally accurate, ``b ~ Binomial(b + c, 1/2)``, and
    ``p = min(1, 2 * P(X <= min(b, c)))`` (exact, no normal approximation). ``1.0`` when ``b + c == 0``.
    """
    for name, v in (("b", b), ("c", c)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a count (an int >= 0), got {v!r}")
    m = b + c
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** m)))


def mcnemar_test(correct_a: torch.Tensor, correct_b: torch.Tensor) -> dict:
    """McNemar's exact test from per-example correctness (two boolean tensors over the same examples,
    in the same order): ``{"b", "c", "p", "n"}``, ``b`` = a right and b wrong, ``c`` = the reverse."""
    a, bb = torch.as_tensor(correct_a), torch.as_tensor(correct_b)
    for name, v in (("correct_a", a), ("correct_b", bb)):
        if v.dtype != torch.bool and (v.is_complex() or not bool(((v == 0) | (v == 1)).all())):
            raise ValueError(f"{name} must be per-example correctness (bool, or only 0 and 1), got {v.dtype} "
                             f"values outside {{0, 1}}: compare predictions with labels first (pred == y)")
    a, bb = a.bool().flatten(), bb.bool().flatten()
    if a.shape != bb.shape or not len(a):
        raise ValueError(f"need two equally long, non-empty vectors of per-example correctness, got "
                         f"{tuple(a.shape)} and {tuple(bb.shape)}")
    b, c = int((a & ~bb).sum()), int((~a & bb).sum())
    return {"b": b, "c": c, "p": mcnemar_exact(b, c), "n": len(a)}


def mcnemar_bounds(correct_a: int, correct_b: int, n: int) -> tuple[float, float]:
    """``(p_min, p_max)``: the smallest and the largest exact McNemar p-value two classifiers can have
    when all that is known is how many of the same ``n`` examples each gets right.

    ``b - c = correct_a - correct_b = d`` is fixed; ``b + c`` is not (it depends on how their errors
    overlap). For a fixed ``d`` the p-value grows with ``b + c``, so ``p_min`` is at ``b + c = |d|``
    (every disagreement in one direction) and ``p_max`` at the largest overlap the counts allow,
    ``c = min(correct_b, n - correct_a)`` (for ``d >= 0``). ``p_min >= alpha``: no pairing makes the
    difference significant; ``p_max < alpha``: every pairing does; otherwise only the per-example
    predictions can tell."""
    for name, v in (("correct_a", correct_a), ("correct_b", correct_b), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a count (an int >= 0), got {v!r}")
    if correct_a > n or correct_b > n:
        raise ValueError(f"correct counts {correct_a}, {correct_b} exceed the {n} examples")
    if correct_a < correct_b:
        correct_a, correct_b = correct_b, correct_a
    d = correct_a - correct_b
    c_max = min(correct_b, n - correct_a)
    return mcnemar_exact(d, 0), mcnemar_exact(d + c_max, c_max)
