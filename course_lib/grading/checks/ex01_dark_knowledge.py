"""Checks for exercises/ex01_dark_knowledge.py (20 points)."""
from __future__ import annotations

import math

import torch

from course_lib import losses as reference
from course_lib.grading.checks.helpers import as_tensor, close, randint, randn, scalar
from course_lib.grading.checks.registry import check

M = "ex01_dark_knowledge"


# --------------------------------------------------------------------------- softmax_with_temperature

@check(M, "softmax_with_temperature", points=3)
def softmax_matches_reference(softmax_with_temperature):
    """softmax(z / T) over the last dimension, for several T and shapes [10], [8, 10], [2, 3, 5]."""
    for shape in [(8, 10), (10,), (2, 3, 5)]:
        z = randn(*shape, seed=11, scale=3.0)
        for t in (0.5, 1.0, 2.0, 5.0):
            close(softmax_with_temperature(z, t), reference.softmax_with_temperature(z, t),
                  f"logits of shape {shape}, T={t}")


@check(M, "softmax_with_temperature", points=2)
def softmax_temperature_limits(softmax_with_temperature):
    """T -> inf gives the uniform distribution, T -> 0 the one-hot argmax; T never changes the argmax."""
    z = torch.tensor([[2.0, -1.0, 0.5, 4.0, 1.0], [0.0, 3.0, -2.0, 1.0, 2.5]])
    hot = softmax_with_temperature(z, 1e4)
    close(hot, torch.full_like(z, 1 / 5), "T=1e4 (should be nearly uniform, 1/C each)", atol=1e-3)
    cold = softmax_with_temperature(z, 0.01)
    close(cold, torch.nn.functional.one_hot(z.argmax(-1), 5).float(),
          "T=0.01 (should be nearly one-hot at the largest logit)", atol=1e-3)
    for t in (0.1, 0.5, 1.0, 3.0, 30.0):
        p = as_tensor(softmax_with_temperature(z, t), f"T={t}")
        assert torch.equal(p.argmax(-1), z.argmax(-1)), f"T={t}: the most likely class changed"


@check(M, "softmax_with_temperature", points=1, kind="rejects")
def softmax_rejects_nonpositive_temperature(softmax_with_temperature):
    """ValueError for T = 0 and T < 0."""
    z = randn(3, 4, seed=12)
    for t in (0, 0.0, -1.0, -0.5):
        try:
            softmax_with_temperature(z, t)
        except ValueError:
            continue
        except ZeroDivisionError:
            raise AssertionError(f"T={t}: raised ZeroDivisionError; check the temperature first "
                                 "and raise ValueError") from None
        raise AssertionError(f"T={t}: expected ValueError, nothing was raised")


@check(M, "softmax_with_temperature", points=2)
def softmax_is_stable_for_large_logits(softmax_with_temperature):
    """Finite and correct for logits like [1000, 999, 0] (exp(1000) overflows: shift by the max)."""
    z = torch.tensor([[1000.0, 999.0, 0.0], [-1000.0, -1001.0, -2000.0]])
    for t in (1.0, 0.5, 4.0):
        close(softmax_with_temperature(z, t), reference.softmax_with_temperature(z, t),
              f"large logits, T={t}")


# --------------------------------------------------------------------------- entropy

def _random_probs(*shape: int, seed: int) -> torch.Tensor:
    return torch.softmax(randn(*shape, seed=seed, scale=2.0), dim=-1)


@check(M, "entropy", points=2)
def entropy_matches_reference(entropy):
    """-sum p log p over the last dimension, for shapes [6, 5], [4] and [2, 3, 7]."""
    for i, shape in enumerate([(6, 5), (4,), (2, 3, 7)]):
        p = _random_probs(*shape, seed=20 + i)
        got, expected = as_tensor(entropy(p), f"shape {shape}"), reference.entropy(p)
        if got.shape == expected.shape and torch.allclose(got * math.log(2), expected, atol=1e-5):
            raise AssertionError(f"shape {shape}: these are bits (log2); use the natural log (nats)")
        close(got, expected, f"probabilities of shape {shape}")


@check(M, "entropy", points=3)
def entropy_limits(entropy):
    """H(uniform over C) = log C, H(one-hot) = 0 (not NaN), H([0.5, 0.5]) = log 2 nats, zeros allowed."""
    half = scalar(entropy(torch.tensor([0.5, 0.5])), "[0.5, 0.5]")
    assert abs(half - 1.0) > 1e-3, "[0.5, 0.5]: got 1.0, that is bits (log2); use the natural log (nats)"
    close(torch.tensor(half), torch.tensor(math.log(2)), "[0.5, 0.5]")
    for c in (2, 10, 100):
        close(entropy(torch.full((c,), 1.0 / c)), torch.tensor(math.log(c)), f"uniform over C={c}")
    one_hot = torch.eye(4)
    h = as_tensor(entropy(one_hot), "one-hot rows")
    assert not torch.isnan(h).any(), "one-hot rows: got NaN; 0 * log 0 must count as 0"
    close(h, torch.zeros(4), "one-hot rows")
    close(entropy(torch.tensor([[0.5, 0.0, 0.5], [0.25, 0.75, 0.0]])),
          torch.tensor([math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]),
          "rows with a zero entry")


@check(M, "entropy", points=2, kind="property")
def entropy_grows_with_temperature(entropy):
    """Entropy of softmax(z / T) never decreases as T grows, and tends to log C."""
    z = randn(4, 10, seed=23, scale=3.0)
    temperatures = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e4]
    hs = torch.stack([as_tensor(entropy(reference.softmax_with_temperature(z, t)), f"T={t}")
                      for t in temperatures])
    assert (hs[1:] >= hs[:-1] - 1e-5).all(), "entropy decreased when the temperature increased"
    close(hs[-1], torch.full((4,), math.log(10)), "T=1e4 (should be log C)", atol=1e-4)


# --------------------------------------------------------------------------- soft_target_similarity

@check(M, "soft_target_similarity", points=3)
def similarity_hand_example(soft_target_similarity):
    """A 5-example, 3-class example computed by hand."""
    probs = torch.tensor([[0.7, 0.2, 0.1],   # class 0
                          [0.1, 0.1, 0.8],   # class 2
                          [0.5, 0.4, 0.1],   # class 0
                          [0.3, 0.6, 0.1],   # class 1
                          [0.0, 0.3, 0.7]])  # class 2
    labels = torch.tensor([0, 2, 0, 1, 2])
    expected = torch.tensor([[0.60, 0.30, 0.10],
                             [0.30, 0.60, 0.10],
                             [0.05, 0.20, 0.75]])
    close(soft_target_similarity(probs, labels, 3), expected, "hand example")


@check(M, "soft_target_similarity", points=2)
def similarity_properties(soft_target_similarity):
    """[C, C] class means on random data; an absent class gives a zero row; dtype is kept."""
    n, c = 60, 6
    probs = _random_probs(n, c, seed=30).double()
    labels = randint(c - 1, n, seed=31)  # class C-1 never occurs
    s = as_tensor(soft_target_similarity(probs, labels, c), "random example")
    assert s.dtype == probs.dtype, f"expected dtype {probs.dtype} (the dtype of probs), got {s.dtype}"
    expected = torch.zeros(c, c, dtype=torch.float64)
    for k in range(c - 1):
        expected[k] = probs[labels == k].mean(0)
    close(s, expected, "random example (the last class has no examples, so its row must be zeros)")
    close(s[: c - 1].sum(-1), torch.ones(c - 1, dtype=torch.float64), "row sums of present classes")
