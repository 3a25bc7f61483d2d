"""L_rec: keep the adapted embedding close to its input (paper eq. 3), a regulariser."""

from __future__ import annotations

from typing import Literal

import torch


def reconstruction_loss(
    inputs: torch.Tensor, adapted: torch.Tensor, reduction: Literal["mean", "sum"] = "mean"
) -> torch.Tensor:
    """`sum_i |e_i - f(e_i)|_1`.

    Args:
        inputs: what the adaptor's residual is added to `(batch, dim)`: the base embeddings, or their
            PCA rotation when the adaptor starts from one (`MatryoshkaAdaptor.rotate`).
        adapted: adaptor outputs `(batch, dim)`.
        reduction: "sum" is the paper's equation; "mean" averages over every component.
    """
    error = (inputs - adapted).abs()
    return error.sum() if reduction == "sum" else error.mean()
