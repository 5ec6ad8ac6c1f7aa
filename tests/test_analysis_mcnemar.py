"""course_lib.analysis: McNemar's exact test and its bounds from accuracies alone, by value, limits and
brute force."""
import itertools
import math

import pytest
import torch

from course_lib.analysis import mcnemar_bounds, mcnemar_exact, mcnemar_test


def binomial_two_sided(b, c):
    """The textbook definition, in floats: 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2), capped at 1."""
    m = b + c
    return min(1.0, 2 * sum(math.comb(m, i) * 0.5 ** m for i in range(min(b, c) + 1)))


@pytest.mark.parametrize("b, c, expected", [(0, 0, 1.0), (1, 0, 1.0), (3, 3, 1.0), (5, 0, 0.0625),
                                            (6, 0, 0.03125), (10, 2, 158 / 4096), (2, 10, 158 / 4096)])
def test_known_values(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_matches_the_definition_and_is_symmetric():
    for b, c in itertools.product(range(0, 40, 3), range(0, 40, 4)):
        assert mcnemar_exact(b, c) == pytest.approx(binomial_two_sided(b, c), rel=1e-9, abs=1e-15)
        assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_large_counts_stay_exact_and_in_range():
    p = mcnemar_exact(600, 400)                    # 2**1000 would overflow a float; Fraction does not
    assert 0.0 < p < 1e-9
    assert mcnemar_exact(500, 500) == 1.0


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_rejects_non_counts(bad):
    with pytest.raises(ValueError, match="count"):
        mcnemar_exact(bad, 3)


def test_from_per_example_correctness():
    a = torch.tensor([1, 1, 1, 0, 0, 1, 0, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 0, 1, 1, 0, 0], dtype=torch.bool)
    out = mcnemar_test(a, b)
    assert (out["b"], out["c"], out["n"]) == (3, 1, 8)
    assert out["p"] == mcnemar_exact(3, 1)
    with pytest.raises(ValueError, match="equally long"):
        mcnemar_test(a, b[:5])


def test_bounds_are_the_extremes_over_every_overlap():
    """Brute force: every joint table with these marginals, i.e. every c from 0 to its maximum."""
    n = 30
    for ka, kb in itertools.product(range(0, n + 1, 3), range(0, n + 1, 4)):
        hi, lo = max(ka, kb), min(ka, kb)
        d = hi - lo
        ps = [mcnemar_exact(d + c, c) for c in range(min(lo, n - hi) + 1)]
        assert mcnemar_bounds(ka, kb, n) == (min(ps), max(ps))
        assert ps == sorted(ps)                   # the p-value grows with the overlap, d fixed


def test_bounds_contain_every_pairing_of_real_predictions():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        a, b = torch.rand(40, generator=g) < 0.7, torch.rand(40, generator=g) < 0.6
        lo, hi = mcnemar_bounds(int(a.sum()), int(b.sum()), 40)
        assert lo <= mcnemar_test(a, b)["p"] <= hi


def test_bounds_decide_small_and_large_differences():
    # 1,000 examples: 5 more right can never be significant at 5%, whatever the overlap ...
    assert mcnemar_bounds(806, 801, 1000)[0] > 0.05
    # ... 6 more can be, if every disagreement goes one way
    assert mcnemar_bounds(806, 800, 1000)[0] < 0.05 < mcnemar_bounds(806, 800, 1000)[1]
    # and 49 more at ~80% is significant under any overlap
    assert mcnemar_bounds(807, 758, 1000)[1] < 0.05
    with pytest.raises(ValueError, match="exceed"):
        mcnemar_bounds(1001, 3, 1000)
