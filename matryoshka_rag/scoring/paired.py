"""Paired comparisons over queries: is one per-query score clearly above another, beyond the sample's noise."""

from __future__ import annotations

import numpy as np

__all__ = ["CLEARLY_SE", "clearly_above", "clearly_better", "standard_error"]

CLEARLY_SE = 2.0  # "clearly more": the mean difference exceeds 2 standard errors


def standard_error(difference: np.ndarray) -> float:
    """`std(d, ddof=1) / sqrt(q)` of per-query differences `d` `(q,)`; 0 for fewer than 2 queries."""
    difference = np.asarray(difference, np.float64)
    return float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0


def clearly_above(mean_difference: float, error: float, z: float = CLEARLY_SE) -> bool:
    """Whether a mean per-query difference exceeds `z` of its standard errors: the rule of `clearly_better`,
    for differences already summarised (a mean and its error)."""
    return bool(mean_difference > z * error)


def clearly_better(gains: np.ndarray, other: np.ndarray, z: float = CLEARLY_SE) -> bool:
    """Whether `mean(gains - other) > z * standard_error(gains - other)` over the queries `(q,)`, `(q,)`: a
    paired check that `gains` is ahead of `other` by more than the sample's noise."""
    difference = np.asarray(gains, np.float64) - np.asarray(other, np.float64)
    return clearly_above(float(difference.mean()), standard_error(difference), z)
