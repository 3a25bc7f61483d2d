"""Cosine similarity (of Matryoshka prefixes, `x[:, :m]`): the one primitive every loss is built on."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of every row of `a (n, d)` with every row of `b (p, d)`: `(n, p)`."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of `a (n, d)` with each of its own candidates `b (n, c, d)`: `(n, c)`."""
    return torch.einsum("nd,ncd->nc", F.normalize(a, dim=-1), F.normalize(b, dim=-1))
