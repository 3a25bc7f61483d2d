"""The input rules that live once in `matryoshka_rag.validation`: unit rows, integers, choices, bad rows, dims."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
import torch

from matryoshka_rag.errors import InputError
from matryoshka_rag.validation import check_choice, check_dims, check_int, check_rows, default_dims, unit_rows


def test_unit_rows_match_torch_normalize_and_keep_a_zero_row_zero() -> None:
    rows = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    rows[2] = 0.0
    unit = unit_rows(rows)
    expected = torch.nn.functional.normalize(torch.from_numpy(rows), dim=1).numpy()
    assert unit.dtype == np.float32 and unit.shape == rows.shape
    np.testing.assert_allclose(unit, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(unit[[0, 1, 3, 4]], axis=1), 1.0, rtol=1e-6)
    assert not unit[2].any()
    assert unit_rows(rows.astype(np.float16)).dtype == np.float32


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_unit_rows_of_tiny_or_huge_values_are_unit_and_survive_float16(scale) -> None:
    """float32 norms of such rows underflow to 0 or overflow to inf (a NaN or all-zero stored row)."""
    rows = np.random.default_rng(1).normal(size=(3, 384)).astype(np.float32) * np.float32(scale)
    unit = unit_rows(rows)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    stored = unit.astype(np.float16).astype(np.float32)
    assert np.isfinite(stored).all() and np.linalg.norm(stored, axis=1).min() > 0.99


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_check_int_returns_a_python_int(value) -> None:
    checked = check_int("k", value)
    assert checked == value and type(checked) is int


@pytest.mark.parametrize("value", [0, -2, 2.0, 2.5, True, "3", None])
def test_check_int_names_the_field_the_minimum_and_the_value(value) -> None:
    with pytest.raises(InputError, match=rf"^k must be an integer >= 1; got {value!r}$"):
        check_int("k", value)


def test_check_int_takes_another_minimum() -> None:
    assert check_int("seed", 0, minimum=0) == 0
    with pytest.raises(InputError, match=r"^seed must be an integer >= 0; got -1$"):
        check_int("seed", -1, minimum=0)


def test_check_choice_reads_the_literal() -> None:
    Space = Literal["cosine", "ip", "l2"]
    assert check_choice("space", "ip", Space) == "ip"
    with pytest.raises(InputError, match=r"^space must be one of 'cosine', 'ip', 'l2'; got 'dot'$"):
        check_choice("space", "dot", Space)


def test_check_rows_names_the_first_bad_row_its_own_way() -> None:
    rows = np.ones((6, 3), np.float32)
    rows[[1, 4]] = 0.0
    with pytest.raises(InputError, match=r"^vectors: 2 vector\(s\) are all zeros, first at row 1$"):
        check_rows(rows, "vectors")
    rows[5, 0] = np.inf  # NaN/inf is reported before zeros
    with pytest.raises(InputError, match=r"^vectors: 1 vector\(s\) hold NaN or inf, first at text 'f'$"):
        check_rows(rows, "vectors", chunk_rows=2, row_name=lambda row: f"text {'abcdef'[row]!r}")


def test_check_dims_without_dims_gives_the_default_dims() -> None:
    assert check_dims(None, 768) == default_dims(768) == (16, 32, 64, 128, 256, 512, 768)
    assert check_dims([32, 768], 768) == (32, 768)
    with pytest.raises(InputError, match="at least one Matryoshka dim"):
        check_dims([], 768)
