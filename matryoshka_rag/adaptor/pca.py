"""PCA baselines: centred PCA projection and the (uncentred) PCA rotation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def principal_axes(embeddings: np.ndarray, chunk_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Mean `(dim,)` and principal axes `(dim, dim)` of `(n, dim)`, columns by decreasing variance.

    Covariance is accumulated in float64 chunks, so memory is O(dim^2) beyond the input. Each axis's sign
    is fixed (largest-magnitude component positive) so the result is deterministic.
    """
    n, dim = embeddings.shape
    total = np.zeros(dim)
    gram = np.zeros((dim, dim))
    for start in range(0, n, chunk_size):
        chunk = np.asarray(embeddings[start : start + chunk_size], dtype=np.float64)
        total += chunk.sum(axis=0)
        gram += chunk.T @ chunk
    mean = total / n
    covariance = gram / n - np.outer(mean, mean)
    eigenvalues, axes = np.linalg.eigh(covariance)
    axes = axes[:, np.argsort(eigenvalues)[::-1]]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(dim)])
    return mean.astype(np.float32), (axes * signs).astype(np.float32)


def pca_rotation(embeddings: np.ndarray) -> torch.Tensor:
    """Orthogonal `(dim, dim)` matrix of principal axes; applied without centring, so cosines are kept."""
    return torch.from_numpy(principal_axes(embeddings)[1])


def pca_projection(fit_on: np.ndarray, centred: bool = True) -> Callable[[np.ndarray, int], np.ndarray]:
    """The PCA of `fit_on` `(n, dim)` as `(vectors (k, dim), m) -> (k, m)`: `(vectors - mean) @ axes[:, :m]`,
    as `sklearn.decomposition.PCA.transform` does, or `vectors @ axes[:, :m]` (the rotation's prefix, cosines
    kept) when not `centred`."""
    mean, axes = principal_axes(fit_on)
    shift = mean if centred else np.zeros_like(mean)
    return lambda vectors, m: (vectors - shift) @ axes[:, :m]
