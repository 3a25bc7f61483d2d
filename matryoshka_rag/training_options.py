"""The allowed values of the training settings, and checks naming the field (torch-free: the CLI reads it)."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Literal

from .errors import InputError

__all__ = [
    "DEFAULT_TARGET",
    "Start",
    "SupervisedObjective",
    "UnsupervisedObjective",
    "check_bool",
    "check_number",
    "check_target",
]

UnsupervisedObjective = Literal["listwise", "paper"]
Start = Literal["pca", "identity"]
SupervisedObjective = Literal["multi-positive", "softmax", "pairwise"]
DEFAULT_TARGET = 0.99  # dim="auto": the share of full-dim retrieval the recommended dim keeps (`recommend`)


def check_number(field: str, value: Any, low: float, high: float = math.inf, open_low: bool = True) -> None:
    """Raise `InputError` unless `value` is a finite number in `(low, high)` (`[low, high)` when not
    `open_low`)."""
    number = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < low or (open_low and value == low) or value >= high:
        above = f"{'>' if open_low else '>='} {low:g}"
        bound = above if high == math.inf else f"{above} and < {high:g}"
        raise InputError(f"{field} must be a finite number {bound}; got {value!r}")


def check_bool(field: str, value: Any) -> None:
    """Raise `InputError` unless `value` is True or False."""
    if not isinstance(value, bool):
        raise InputError(f"{field} must be True or False; got {value!r}")


def check_target(target: Any) -> float:
    """The target share of full-dim retrieval as a float; `InputError` unless it is a number in (0, 1]."""
    number = isinstance(target, Real) and not isinstance(target, bool) and math.isfinite(target)
    if not number or not 0.0 < target <= 1.0:
        raise InputError(f"target must be a number in (0, 1] (a share of full-dim retrieval), got {target!r}")
    return float(target)
