"""Cosine similarity (of Matryoshka prefixes, `x[:, :m]`): the one primitive every loss is built on."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of every row of `a (n, d)` with every row of `b (p, d)`: `(n, p)`."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of `a (n, d)` with each of its own candidates `b (n, c, d)`: `(n, c)`."""
    return torch.einsum("nd,ncd->nc", F.normalize(a, dim=-1), F.normalize(b, dim=-1))


def prefix_cosine_matrices(
    a: torch.Tensor, b: torch.Tensor, dims: Sequence[int], scale: float = 1.0
) -> list[torch.Tensor]:
    """`[scale * cosine_matrix(a[:, :m], b[:, :m]) for m in dims]`, each `(n, p)`, for `a (n, d)`, `b (p, d)`.

    The prefixes are nested, so the dot products of prefix m are those of the previous prefix plus one
    product of the block between them: one matmul per block, of width `max(dims)` in all rather than
    `sum(dims)`; `scale` (e.g. 1 / a softmax temperature) costs no pass of its own. Norms are clamped at
    `eps` as `F.normalize` clamps them.
    """
    eps = 1e-12
    ends = sorted(set(dims))
    by_end: dict[int, torch.Tensor] = {}
    dots: torch.Tensor | None = None
    a_squares, b_squares = a.new_zeros(len(a)), b.new_zeros(len(b))
    start = 0
    for end in ends:
        a_block, b_block = a[:, start:end], b[:, start:end]
        dots = a_block @ b_block.T if dots is None else torch.addmm(dots, a_block, b_block.T)
        a_squares = a_squares + a_block.square().sum(dim=1)
        b_squares = b_squares + b_block.square().sum(dim=1)
        # 1 / max(norm, eps), clamped before the root: no infinite gradient at a zero prefix
        a_scale = scale * a_squares.clamp_min(eps**2).rsqrt()
        by_end[end] = dots * torch.outer(a_scale, b_squares.clamp_min(eps**2).rsqrt())
        start = end
    return [by_end[m] for m in dims]
