"""What a teacher's soft targets say: tempered distributions, entropy, class similarity."""
from __future__ import annotations

import torch

from .losses import entropy, softmax_with_temperature


def entropy_vs_temperature(logits: torch.Tensor, temperatures) -> torch.Tensor:
    """Mean entropy (nats) of ``softmax(logits / T)`` for each ``T``: a 1-D tensor."""
    return torch.stack([entropy(softmax_with_temperature(logits, float(t))).mean() for t in temperatures])


def class_similarity(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``S[c, k]`` = mean probability the teacher gives class ``k`` to examples of true class ``c``.

    Rows sum to 1; the off-diagonal mass is the teacher's "dark knowledge". A class with no
    example gets a row of zeros.
    """
    if probs.shape[0] != labels.shape[0] or probs.shape[-1] != num_classes:
        raise ValueError(f"probs {tuple(probs.shape)} and labels {tuple(labels.shape)} do not match "
                         f"{num_classes} classes")
    sums = torch.zeros(num_classes, num_classes, dtype=probs.dtype).index_add_(0, labels, probs)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(probs.dtype)
    return sums / counts[:, None]


def most_similar_pairs(similarity: torch.Tensor, classes, k: int = 5) -> list[tuple[str, str, float]]:
    """The ``k`` class pairs with the largest symmetric off-diagonal similarity ``(S + S^T) / 2``."""
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
