"""Exact cosine search in chunks: memory O(chunk x N), never O(N^2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InputError


@torch.no_grad()
def exact_search(
    queries: torch.Tensor,
    documents: torch.Tensor,
    k: int,
    chunk_size: int = 1024,
    exclude_self: bool = False,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k documents by cosine for each query: scores `(q, k)` float32 and indices `(q, k)` int64, on CPU.

    Args:
        queries: `(q, dim)`.
        documents: `(n, dim)`.
        k: results per query.
        chunk_size: queries scored at a time against all documents.
        exclude_self: queries are the documents themselves (`q == n`); never return row i for query i.
        device: where the matmuls run (default: the documents' device).
    """
    n = documents.shape[0]
    if k > n - int(exclude_self):
        raise InputError(
            f"k={k} results asked of {n} items" + (" (excluding each item itself)" if exclude_self else "")
        )
    device = torch.device(device) if device is not None else documents.device
    docs = F.normalize(documents.to(device, torch.float32), dim=-1)
    scores = torch.empty((queries.shape[0], k), dtype=torch.float32)
    indices = torch.empty((queries.shape[0], k), dtype=torch.int64)
    for start in range(0, queries.shape[0], chunk_size):
        chunk = F.normalize(queries[start : start + chunk_size].to(device, torch.float32), dim=-1) @ docs.T
        if exclude_self:
            rows = torch.arange(chunk.shape[0], device=device)
            chunk[rows, rows + start] = float("-inf")
        top = chunk.topk(k, dim=1)
        scores[start : start + chunk.shape[0]] = top.values.cpu()
        indices[start : start + chunk.shape[0]] = top.indices.cpu()
    return scores, indices


def exact_knn(embeddings: torch.Tensor, k: int, chunk_size: int = 1024) -> torch.Tensor:
    """Each row's k most cosine-similar other rows: `(n, k)` int64 on CPU."""
    if embeddings.shape[0] < k + 1:
        raise InputError(
            f"the corpus has {embeddings.shape[0]} items: at least k + 1 = {k + 1} are needed for k={k} neighbours"
        )
    return exact_search(embeddings, embeddings, k, chunk_size, exclude_self=True)[1]
