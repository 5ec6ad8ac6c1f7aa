"""Checks for exercises/ex01_dark_knowledge.py (20 points).

The stubs give contracts, not formulas: when a value is wrong, the message names the common mistake
it matches (the temperature ignored or multiplied, bits instead of nats, ``0 * log 0`` as NaN, the
similarity divided by ``N`` instead of each class's count, the entropy of the mean soft target
instead of the mean entropy, ...).
"""
from __future__ import annotations

import math

import torch

from course_lib import losses as reference
from course_lib.grading.checks.helpers import as_tensor, close, close_naming, fix_first, randint, randn, scalar
from course_lib.grading.checks.registry import Task, check

M = "ex01_dark_knowledge"

TASKS = {"softmax_with_temperature": Task("warm-up", 10, "implement"), "entropy": Task("warm-up", 10, "implement"),
         "soft_target_similarity": Task("core", 15, "implement"),
         "temperature_for_entropy": Task("stretch", 25, "apply")}

# What the stubs must not state (tests/grading/test_generate.py scans the generated exercise file, spaces ignored).
CLOSED_FORMS = {"softmax_with_temperature": ["exp(z_i / T) / sum_j exp(z_j / T)", "torch.softmax(", "F.softmax(",
                                             "subtract the row maximum", "row max"],
                "entropy": ["- sum_i p_i log p_i", "p_i log p_i", "p * log p", "0 log 0 = 0", "0 * log 0",
                            "torch.where"],
                "soft_target_similarity": ["(1 / N_c) * sum", "sum_{n : labels[n] = c}", "index_add", "bincount"],
                "temperature_for_entropy": ["bisection", "bisect", "binary search", "log T"]}


# --------------------------------------------------------------------------- softmax_with_temperature

def _softmax_mistakes(z: torch.Tensor, t: float) -> dict[str, torch.Tensor]:
    return {"the temperature ignored (the plain softmax of z)": torch.softmax(z, dim=-1),
            "the logits multiplied by T instead of divided by it (T > 1 must flatten)": torch.softmax(z * t, dim=-1),
            "a softmax over the first dimension instead of the last (the classes)": torch.softmax(z / t, dim=0)}


@check(M, "softmax_with_temperature", points=3)
def softmax_matches_reference(softmax_with_temperature):
    """softmax(z / T) over the last dimension, for several T and shapes [10], [8, 10], [2, 3, 5]."""
    for shape in [(8, 10), (10,), (2, 3, 5)]:
        z = randn(*shape, seed=11, scale=3.0)
        for t in (0.5, 1.0, 2.0, 5.0):
            close_naming(softmax_with_temperature(z, t), reference.softmax_with_temperature(z, t),
                         _softmax_mistakes(z, t), f"logits of shape {shape}, T={t}")


@check(M, "softmax_with_temperature", points=1)
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


@check(M, "softmax_with_temperature", points=1)
def softmax_is_stable_for_large_logits(softmax_with_temperature):
    """Finite and correct for logits like [1000, 999, 0] (exp(1000) overflows: shift by the max)."""
    z = torch.tensor([[1000.0, 999.0, 0.0], [-1000.0, -1001.0, -2000.0]])
    for t in (1.0, 0.5, 4.0):
        got = as_tensor(softmax_with_temperature(z, t), f"large logits, T={t}")
        assert torch.isfinite(got).all(), (
            f"large logits, T={t}: the result contains NaN or inf - exp(1000) overflows in float32 (and exp(-1000) "
            "underflows to 0, so 0 / 0); subtracting one constant from a row changes no softmax, so shift each row "
            "by its largest logit before exp")
        close(got, reference.softmax_with_temperature(z, t), f"large logits, T={t}")


# --------------------------------------------------------------------------- entropy

def _random_probs(*shape: int, seed: int) -> torch.Tensor:
    return torch.softmax(randn(*shape, seed=seed, scale=2.0), dim=-1)


@check(M, "entropy", points=1)
def entropy_matches_reference(entropy):
    """-sum p log p over the last dimension, for shapes [6, 5], [4] and [2, 3, 7]."""
    for i, shape in enumerate([(6, 5), (4,), (2, 3, 7)]):
        p = _random_probs(*shape, seed=20 + i)
        got, expected = as_tensor(entropy(p), f"shape {shape}"), reference.entropy(p)
        if got.shape == expected.shape and torch.allclose(got * math.log(2), expected, atol=1e-5):
            raise AssertionError(f"shape {shape}: these are bits (log2); use the natural log (nats)")
        close_naming(got, expected, {
            "sum p log p without the minus sign (an entropy is >= 0)": -expected,
            "the mean over the classes instead of the sum": expected / shape[-1]}, f"probabilities of shape {shape}")


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
    assert not torch.isnan(h).any(), ("one-hot rows: got NaN; 0 * log 0 must count as 0 (in floating point it is "
                                      "0 * -inf = nan: leave the zero entries out of the sum)")
    close(h, torch.zeros(4), "one-hot rows")
    close(entropy(torch.tensor([[0.5, 0.0, 0.5], [0.25, 0.75, 0.0]])),
          torch.tensor([math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]),
          "rows with a zero entry")


@check(M, "entropy", points=1, kind="property")
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
    close_naming(soft_target_similarity(probs, labels, 3), expected, {
        "dividing each class's sum by the number of examples N instead of that class's count":
            expected * torch.tensor([2.0, 1.0, 2.0]).unsqueeze(1) / 5,
        "the sums over each class's examples, not their means": expected * torch.tensor([2.0, 1.0, 2.0]).unsqueeze(1),
        "the transpose (row c must be the mean soft target of the examples of true class c)": expected.T,
    }, "hand example")


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


# --------------------------------------------------------------------------- temperature_for_entropy

def _tempered(z: torch.Tensor, t: float) -> torch.Tensor:
    return torch.softmax(z.double() / t, dim=-1)


def _h(p: torch.Tensor) -> torch.Tensor:
    return reference.entropy(p)


def _mean_entropy(z: torch.Tensor, t: float) -> float:
    return _h(_tempered(z, t)).mean().item()


def _temperature(got, what: str) -> float:
    """The answer's temperature: a Python number or a 0-dim tensor, positive and finite."""
    if torch.is_tensor(got):
        assert got.dim() == 0, f"{what}: expected a number (or a 0-dim tensor), got shape {tuple(got.shape)}"
        got = got.item()
    assert isinstance(got, (int, float)) and not isinstance(got, bool), \
        f"{what}: expected a number, got {type(got).__name__}"
    assert math.isfinite(got) and got > 0, f"{what}: expected a temperature T > 0, got {got!r}"
    return float(got)


def _entropy_mistake(z: torch.Tensor, t: float, target: float, tol: float) -> str:
    """The mistake whose quantity reaches ``target`` at the answer's ``t`` (where the mean entropy does not)."""
    p = _tempered(z, t)
    candidates = {"your T gives the target in bits (log2), not in nats": _h(p).mean().item() / math.log(2),
                  "1/T is the temperature asked for (the logits are divided by T: a larger T is flatter)":
                      _mean_entropy(z, 1 / t)}
    if z.shape[0] > 1:
        candidates["your T gives the target as the entropy of the mean soft target of the batch, not the mean of "
                   "the examples' entropies (averaging distributions flattens them)"] = _h(p.mean(0)).item()
        candidates["your T gives the target for the first example only, not the mean over the batch"] = _h(p[0]).item()
    for mistake, value in candidates.items():
        if abs(value - target) <= tol:
            return f" - {mistake}"
    return ""


@check(M, "temperature_for_entropy", points=3)
def temperature_reaches_the_target_entropy(temperature_for_entropy):
    """The mean entropy of softmax(z / T) at the returned T equals the target (1e-3 nats), from 0.02 to log C - 0.02."""
    cases = [(600, 16, 10, 3.0, (0.3, 1.0, 2.0, math.log(10) - 0.02)),
             (601, 1, 5, 1.0, (0.02, 1.2)),
             (602, 32, 10, 20.0, (0.02, 1.5)),
             (603, 8, 100, 5.0, (2.5, math.log(100) - 0.05))]
    wrong = []                                    # (hint, message): the first case whose mistake has a name wins
    for seed, n, c, scale, targets in cases:
        z = randn(n, c, seed=seed, scale=scale)
        for target in targets:
            what = f"N={n}, C={c}, logits of scale {scale:g}, target {target:.4g} nats"
            t = _temperature(temperature_for_entropy(z, target), what)
            h = _mean_entropy(z, t)
            if abs(h - target) > 1e-3:
                hint = _entropy_mistake(z, t, target, 1e-3)
                wrong.append((hint, f"{what}: at your T = {t:.6g} the mean entropy is {h:.6g} nats{hint}"))
    if wrong:
        _, message = next((w for w in wrong if w[0]), wrong[0])
        raise AssertionError(message + fix_first(temperature_for_entropy, "entropy", (torch.tensor([0.5, 0.5]),),
                                                 math.log(2)))


@check(M, "temperature_for_entropy", points=1, kind="property")
def temperature_follows_the_logits_scale(temperature_for_entropy):
    """Logits x10 give T x10; a constant added to each row changes nothing; a larger target gives a larger T."""
    z = randn(12, 10, seed=610, scale=3.0)
    base = _temperature(temperature_for_entropy(z, 1.0), "target 1.0")
    scaled = _temperature(temperature_for_entropy(10 * z, 1.0), "logits multiplied by 10, target 1.0")
    assert abs(scaled / base - 10) <= 0.2, (
        f"logits multiplied by 10: T went from {base:.6g} to {scaled:.6g} ({scaled / base:.4g} times; expected 10 "
        "times: the softmax only sees z / T)")
    shifted = _temperature(temperature_for_entropy(z + randn(12, 1, seed=611, scale=50.0), 1.0),
                           "a different constant added to each row, target 1.0")
    assert abs(shifted / base - 1) <= 0.02, (
        f"a constant added to each row: T went from {base:.6g} to {shifted:.6g} (expected the same: a constant "
        "shift changes no softmax)")
    ts = [_temperature(temperature_for_entropy(z, h), f"target {h}") for h in (0.5, 1.0, 1.5, 2.0)]
    assert all(a < b for a, b in zip(ts, ts[1:])), f"targets 0.5, 1.0, 1.5, 2.0 gave T = {ts} (expected increasing)"
