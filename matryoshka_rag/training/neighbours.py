"""Nearest-neighbour search: exact cosine search in chunks (memory O(chunk x N), never O(N^2)) and the
per-row kNN table of training (exact, or approximate with faiss for large corpora on CPU)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..extras import needs_extra

if TYPE_CHECKING:
    import faiss


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
    """Each row's k most cosine-similar other rows: `(n, k)` int64 on CPU, computed on the rows' device."""
    check_corpus_size(embeddings.shape[0], k)
    rows = np.arange(embeddings.shape[0])
    return torch.from_numpy(exact_knn_rows(embeddings, k, rows, embeddings.device, chunk_size))


def check_corpus_size(n: int, k: int) -> None:
    if n < k + 1:
        raise InputError(
            f"the corpus has {n} items: at least k + 1 = {k + 1} are needed for k={k} neighbours"
        )


NeighbourMethod = Literal["auto", "exact", "faiss"]  # how `knn_table` builds the table
EXACT_MAX_ROWS = 200_000  # method="auto" on CPU: exact up to this many rows, faiss above
Vectors = np.ndarray | torch.Tensor  # (n, dim) on the host (array or np.memmap) or a tensor


def _rows_on(vectors: Vectors, index: np.ndarray | slice, device: torch.device) -> torch.Tensor:
    """Unit-norm float32 copy of `vectors[index]` `(m, dim)` on `device` (pinned, non-blocking to CUDA)."""
    if isinstance(vectors, torch.Tensor):
        chunk = vectors[torch.as_tensor(index) if isinstance(index, np.ndarray) else index]
    else:
        rows = vectors[index]
        chunk = torch.from_numpy(np.array(rows) if not rows.flags.writeable else np.ascontiguousarray(rows))
    return F.normalize(_to(chunk, device).float(), dim=-1)


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`; host tensors go to CUDA through pinned memory without blocking."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


@torch.no_grad()
def exact_knn_rows(
    vectors: Vectors,
    k: int,
    query_rows: np.ndarray,
    device: torch.device | str | None = None,
    chunk_size: int = 1024,
    block_rows: int = 1 << 18,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Exact k most cosine-similar other rows of `vectors` for the rows `query_rows (m,)`: `(m, k)` int64.

    Documents go to `device` `block_rows` at a time and queries `chunk_size` at a time, with a running top-k
    merged across blocks, so device memory is O(block_rows x dim + chunk_size x block_rows), never O(N^2)
    and never the whole corpus; `chunk_size` shrinks so that a chunk's scores stay within 256 MiB. With one
    block (N <= block_rows) the result equals `exact_knn`'s. Rows in `exclude (e,)` are never neighbours
    (at least k others must remain).
    """
    n = vectors.shape[0]
    chunk_size = min(chunk_size, max(64, (1 << 26) // min(n, block_rows)))
    device = torch.device(device) if device is not None else torch.device("cpu")
    query_rows = np.asarray(query_rows, dtype=np.int64)
    excluded = None
    if exclude is not None and len(exclude):
        excluded = torch.zeros(n, dtype=torch.bool)
        excluded[torch.from_numpy(np.asarray(exclude, dtype=np.int64))] = True
        excluded = excluded.to(device)
    best_scores = torch.full((len(query_rows), k), float("-inf"), device=device)
    best = torch.zeros((len(query_rows), k), dtype=torch.int64, device=device)
    for block_start in range(0, n, block_rows):
        docs = _rows_on(vectors, slice(block_start, block_start + block_rows), device)
        for start in range(0, len(query_rows), chunk_size):
            rows = query_rows[start : start + chunk_size]
            scores = _rows_on(vectors, rows, device) @ docs.T
            own = _to(torch.from_numpy(rows - block_start), device)
            at = (torch.arange(len(rows), device=device), own.clamp(0, docs.shape[0] - 1))
            inside = (own >= 0) & (own < docs.shape[0])  # never a row's own neighbour (no host sync)
            scores[at] = torch.where(inside, float("-inf"), scores[at])
            if excluded is not None:
                scores.masked_fill_(excluded[block_start : block_start + docs.shape[0]], float("-inf"))
            top = scores.topk(min(k, docs.shape[0]), dim=1)
            if block_start == 0 and top.indices.shape[1] == k:
                best_scores[start : start + len(rows)], best[start : start + len(rows)] = top
                continue
            merged_scores = torch.cat([best_scores[start : start + len(rows)], top.values], dim=1)
            merged = torch.cat([best[start : start + len(rows)], top.indices + block_start], dim=1)
            keep = merged_scores.topk(k, dim=1)
            best_scores[start : start + len(rows)] = keep.values
            best[start : start + len(rows)] = merged.gather(1, keep.indices)
    return best.cpu().numpy()


def hnsw_index(vectors: Vectors, rows: np.ndarray | None = None) -> faiss.IndexHNSWFlat:
    """The faiss HNSW graph (M=32, efConstruction=80, inner product) over unit vectors `(n, dim)` (only
    `rows (r,)` when given: the graph's id i is then `rows[i]`), added in chunks of 65,536 rows (a memmap is
    read a chunk at a time)."""
    with needs_extra("the HNSW neighbour table (method='faiss')"):
        import faiss
    n, dim = vectors.shape
    chunk, host = 1 << 16, torch.device("cpu")
    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    for start in range(0, n if rows is None else len(rows), chunk):
        part = slice(start, start + chunk) if rows is None else rows[start : start + chunk]
        index.add(_rows_on(vectors, part, host).numpy())
    return index


def _faiss_knn_rows(
    vectors: Vectors, k: int, query_rows: np.ndarray, ef_search: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Approximate k nearest other rows `(m, k)` int64 with a faiss HNSW graph (`hnsw_index`) over the unit
    vectors (less the rows in `exclude`, never neighbours); rows with fewer than k + 1 results fall back to
    exact search. A multi-threaded build is not guaranteed to be deterministic. Why HNSW, and its costs:
    BENCHMARKS.md, "Training at scale".
    """
    chunk, host = 1 << 16, torch.device("cpu")
    kept = None
    if exclude is not None and len(exclude):
        kept = np.setdiff1d(np.arange(vectors.shape[0]), exclude)
    index = hnsw_index(vectors, kept)
    index.hnsw.efSearch = max(ef_search, k + 1)
    out = np.empty((len(query_rows), k), dtype=np.int64)
    for start in range(0, len(query_rows), chunk):
        rows = query_rows[start : start + chunk]
        found = index.search(_rows_on(vectors, rows, host).numpy(), k + 1)[1]
        if kept is not None:
            found = np.where(found >= 0, kept[np.maximum(found, 0)], found)
        drop = found == rows[:, None]
        drop[~drop.any(axis=1), -1] = True  # self not found: drop the (k+1)-th instead
        short = (found < 0).any(axis=1)
        found[short] = 0
        out[start : start + len(rows)] = found[~drop].reshape(len(rows), k)
        if short.any():
            out[start : start + len(rows)][short] = exact_knn_rows(vectors, k, rows[short], exclude=exclude)
    return out


def knn_table(
    embeddings: Vectors,
    k: int,
    method: NeighbourMethod = "auto",
    *,
    device: torch.device | str | None = None,
    rows: tuple[int, int] | None = None,
    exact_max_rows: int = EXACT_MAX_ROWS,
    recall_sample: int = 1000,
    seed: int = 0,
    ef_search: int = 64,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """The k nearest other rows (cosine) of each row, built once per training run.

    Args:
        embeddings: `(n, dim)` float32/float16 array, memmap or tensor; stays where it is.
        k: neighbours per row.
        method: "exact" (chunked matmuls on `device`), "faiss" (HNSW, approximate, CPU) or "auto":
            exact on CUDA or when n <= `exact_max_rows`, faiss otherwise.
        device: where exact search runs (default CPU).
        rows: `(start, stop)`: only these query rows (a data-parallel rank's share); default all.
        recall_sample: for faiss, rows whose approximate neighbours are compared with exact search.
        seed: seeds the recall sample.
        ef_search: HNSW search breadth (higher: better recall, slower).
        exclude: rows `(e,)` that are never anyone's neighbour (e.g. held-out items); n - e must exceed k.

    Returns `(table (stop - start, k) int64 on the host, info)`, `info = {method, seconds, recall_sample}`:
    recall@k of the table against exact search on the sample (1.0 for exact search, by construction).
    """
    n = embeddings.shape[0]
    check_corpus_size(n - (0 if exclude is None else len(np.unique(exclude))), k)
    if method not in ("auto", "exact", "faiss"):
        raise InputError(f"method must be 'auto', 'exact' or 'faiss', got {method!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if method == "auto":
        method = "exact" if device.type == "cuda" or n <= exact_max_rows else "faiss"
    query_rows = np.arange(*(rows or (0, n)), dtype=np.int64)
    started = time.perf_counter()
    if method == "exact":
        table = exact_knn_rows(embeddings, k, query_rows, device, exclude=exclude)
        return table, {"method": "exact", "seconds": time.perf_counter() - started, "recall_sample": 1.0}
    table = _faiss_knn_rows(embeddings, k, query_rows, ef_search, exclude)
    seconds = time.perf_counter() - started
    sample = np.random.default_rng(seed + 1).choice(
        len(query_rows), min(recall_sample, len(query_rows)), False
    )
    truth = exact_knn_rows(embeddings, k, query_rows[sample], device, exclude=exclude)
    hits = sum(len(set(a) & set(b)) for a, b in zip(table[sample].tolist(), truth.tolist()))
    recall = hits / max(1, truth.size)
    info = {"method": "faiss-hnsw", "seconds": seconds, "recall_sample": recall, "sample_rows": len(sample)}
    return table, {**info, "ef_search": ef_search}
