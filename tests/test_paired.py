"""Paired comparisons over queries (`matryoshka_rag.scoring.paired`), checked against loops over their definitions."""

import math

import numpy as np

from matryoshka_rag.scoring.paired import CLEARLY_SE, clearly_above, clearly_better, standard_error


def test_standard_error_matches_its_definition():
    difference = np.random.default_rng(0).normal(0.1, 0.3, size=37)
    mean = sum(difference) / len(difference)
    variance = sum((d - mean) ** 2 for d in difference) / (len(difference) - 1)
    assert math.isclose(standard_error(difference), math.sqrt(variance / len(difference)), rel_tol=1e-12)
    assert standard_error(np.array([0.4])) == 0.0


def test_clearly_better_is_a_paired_check_against_the_noise():
    rng = np.random.default_rng(0)
    other = rng.uniform(size=400)
    assert clearly_better(other + 0.05, other)  # better on every query
    assert not clearly_better(other, other) and not clearly_better(other - 0.05, other)
    noisy = other + rng.normal(0.01, 0.5, size=400)  # better on average, by less than 2 standard errors
    assert noisy.mean() > other.mean() and not clearly_better(noisy, other)
    # the margin is CLEARLY_SE errors: a rise of 1.5 errors is clearly better only with a lower z
    base = np.zeros(100)
    rise = base + rng.normal(0, 1, size=100)
    rise += 1.5 * standard_error(rise) - rise.mean()
    assert not clearly_better(rise, base) and clearly_better(rise, base, z=CLEARLY_SE - 1)
    # the same rule on a summary: a mean difference against its standard error
    assert clearly_above(0.21, 0.1) and not clearly_above(0.2, 0.1) and not clearly_above(-0.3, 0.0)
