"""How much of full-dim retrieval a prefix keeps, measured on the corpus alone (no labels).

Corpus items are the queries (each one's own row left out of its search). For a prefix, the score is
`kept = mean_q 1 / log2(2 + r_q)` with `r_q` the 0-based rank of the full dim's nearest neighbour of `q` in
the prefix's top k (0 when absent): nDCG@k of the prefix's search with the full-dim nearest neighbour as the
one relevant document, so the full dim itself scores 1. It is the label-free score that compares prefixes
(other label-free measures serve other ends: unsupervised training early-stops on a held-out loss, `shrink`
checks recall@10 against the original collection's search): unsupervised training serves, per dim, its
adapted prefix unless the rotation's keeps clearly more (`served_prefix_choice`), and
`recommend.recommend_dim` picks the smallest dim whose served prefix keeps a target share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, get_args

import numpy as np

from ..adaptor.format import PrefixSource
from ..adaptor.numpy_forward import as_numpy_adaptor
from ..errors import InputError
from ..validation import unit_rows
from .paired import clearly_better

KEPT_AT_K = 10  # the cut-off of the score: retrieval's usual top 10
MAX_QUERIES = 500  # corpus items used as queries
MIN_CORPUS_ROWS = 100  # fewer items leave too few queries and candidates for the score to mean anything
CHUNK_ROWS = 16384  # corpus rows adapted and searched at a time
GRID_STEPS = 4  # the estimate is given at the judged dims and 3 evenly spaced dims between each two

Prefix = tuple[PrefixSource, int]  # (source, dim)


def kept_gains(ranked: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """`1 / log2(2 + r_q)` per query `(q,)`, `r_q` the position of `nearest[q]` in `ranked[q]` (0 when absent).

    Args:
        ranked: corpus rows `(q, k)` of each query's prefix search, best first.
        nearest: the full dim's nearest corpus row `(q,)` of each query.
    """
    hits = ranked == nearest[:, None]
    return np.where(hits.any(axis=1), 1.0 / np.log2(2.0 + hits.argmax(axis=1)), 0.0)


def kept_score(ranked: np.ndarray, nearest: np.ndarray) -> float:
    """`kept = mean_q kept_gains(ranked, nearest)`: `(q, k)`, `(q,)` -> float (0 for no query)."""
    gains = kept_gains(ranked, nearest)
    return float(gains.mean()) if len(gains) else 0.0


def judged_dims(dims: Iterable[int], base_dim: int) -> tuple[int, ...]:
    """The dims a served prefix is chosen at: the trained `dims` and the base dim, increasing."""
    return tuple(sorted({*dims, base_dim}))


def estimate_grid(dims: Iterable[int], base_dim: int, steps: int = GRID_STEPS) -> tuple[int, ...]:
    """The dims the estimate is given at: the judged dims and `steps - 1` evenly spaced dims between each two
    (16, 32, 64 -> 16, 20, 24, 28, 32, 40, 48, 56, 64), increasing."""
    judged = judged_dims(dims, base_dim)
    between = {
        low + (high - low) * i // steps for low, high in zip(judged, judged[1:]) for i in range(1, steps)
    }
    return tuple(sorted({*judged, *between}))


def query_rows(n: int, seed: int = 0, limit: int = MAX_QUERIES) -> np.ndarray:
    """`min(limit, n)` distinct corpus rows drawn from `seed`, increasing; `InputError` below
    `MIN_CORPUS_ROWS` items (naming the minimum)."""
    if n < MIN_CORPUS_ROWS:
        raise InputError(
            f"the corpus has {n} vectors: at least {MIN_CORPUS_ROWS} are needed to hold out corpus items as "
            "queries for the label-free estimate"
        )
    return np.sort(np.random.default_rng(seed).choice(n, size=min(limit, n), replace=False))


def _merge_top(
    best: tuple[np.ndarray, np.ndarray], scores: np.ndarray, offset: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top k `(scores (q, k), rows (q, k))` of the running `best` `(q, <= k)` and a chunk's
    `scores (q, c)`."""
    take = min(k, scores.shape[1])
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    values = np.concatenate([best[0], np.take_along_axis(scores, part, axis=1)], axis=1)
    rows = np.concatenate([best[1], part + offset], axis=1)
    order = np.lexsort((rows, -values), axis=1)[:, :k]  # by score, ties by row
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(rows, order, axis=1)


def prefix_rankings(
    adaptor: Any, corpus: np.ndarray, queries: np.ndarray, prefixes: Sequence[Prefix], k: int = KEPT_AT_K
) -> dict[Prefix, np.ndarray]:
    """Each `(source, dim)` prefix's exact cosine search of the corpus for the `queries`: corpus rows `(q, k)`,
    best first (ties by row), each query's own row left out.

    Args:
        adaptor: a `MatryoshkaAdaptor`, a `NumpyAdaptor` or a folder.
        corpus: base vectors `(n, base_dim)` (an array or a memmap, read `CHUNK_ROWS` rows at a time).
        queries: corpus rows `(q,)` used as queries.
        prefixes: `(source, dim)` ("adapted": `f(e)[:dim]`, "base": `z[:dim]`).
    """
    adaptor = as_numpy_adaptor(adaptor)
    n, base_dim = corpus.shape
    k = min(k, n - 1)
    if k < 1 or len(queries) == 0:
        raise InputError(f"the estimate needs queries and at least 2 corpus vectors, got {n}")
    for source, dim in prefixes:
        if source not in get_args(PrefixSource) or not 0 < dim <= base_dim:
            raise InputError(
                f"a prefix is (source in {get_args(PrefixSource)}, dim in 1..{base_dim}), got {(source, dim)}"
            )
    prefixes = [*dict.fromkeys(prefixes)]
    outputs = {"adapted": adaptor.forward, "base": adaptor.rotate}
    sources = {source for source, _ in prefixes}
    base_queries = np.asarray(corpus[queries], dtype=np.float32)
    adapted_queries = {source: outputs[source](base_queries) for source in sources}
    unit_queries = {(s, d): unit_rows(adapted_queries[s][:, :d]) for s, d in prefixes}
    nothing = (np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.intp))
    best: dict[Prefix, tuple[np.ndarray, np.ndarray]] = dict.fromkeys(prefixes, nothing)
    for start in range(0, n, CHUNK_ROWS):
        chunk = np.asarray(corpus[start : start + CHUNK_ROWS], dtype=np.float32)
        adapted = {source: outputs[source](chunk) for source in sources}
        own = (queries >= start) & (queries < start + len(chunk))
        for source, dim in prefixes:
            scores = unit_queries[source, dim] @ unit_rows(adapted[source][:, :dim]).T
            scores[np.flatnonzero(own), queries[own] - start] = -np.inf
            best[source, dim] = _merge_top(best[source, dim], scores, start, k)
    return {prefix: found[1] for prefix, found in best.items()}


def retrieval_gains(
    adaptor: Any,
    corpus: np.ndarray,
    queries: np.ndarray,
    prefixes: Sequence[Prefix],
    reference: PrefixSource = "base",
    k: int = KEPT_AT_K,
) -> dict[Prefix, np.ndarray]:
    """`kept_gains` per query `(q,)` of each `(source, dim)` prefix of `adaptor`'s outputs, against the
    `reference` source's full-dim search; arguments as `prefix_rankings`."""
    adaptor = as_numpy_adaptor(adaptor)
    full = (reference, adaptor.config.base_dim)
    rankings = prefix_rankings(adaptor, corpus, queries, [*prefixes, full], k)
    return {prefix: kept_gains(rankings[prefix], rankings[full][:, 0]) for prefix in prefixes}


def retrieval_kept(
    adaptor: Any,
    corpus: np.ndarray,
    queries: np.ndarray,
    prefixes: Sequence[Prefix],
    reference: PrefixSource = "base",
    k: int = KEPT_AT_K,
) -> dict[Prefix, float]:
    """`kept` (module docstring) of each prefix: the mean of `retrieval_gains` over the queries."""
    gains = retrieval_gains(adaptor, corpus, queries, prefixes, reference, k)
    return {prefix: float(values.mean()) for prefix, values in gains.items()}


def served_kept(adaptor: Any, corpus: np.ndarray, queries: np.ndarray) -> dict[int, float]:
    """`kept` of the prefix the adaptor serves at each dim of `estimate_grid`, against its served full dim's
    search: `{dim: kept}`, increasing dims; arguments as `prefix_rankings`."""
    adaptor = as_numpy_adaptor(adaptor)
    config = adaptor.config
    dims = estimate_grid(config.dims, config.base_dim)
    measured = retrieval_kept(
        adaptor,
        corpus,
        queries,
        [(config.served_prefix(dim), dim) for dim in dims],
        reference=config.served_prefix(config.base_dim),
    )
    return {dim: measured[config.served_prefix(dim), dim] for dim in dims}


def _served_at(dim: int, base_dim: int, gains: dict[Prefix, np.ndarray]) -> PrefixSource:
    """The prefix served at `dim`: "base" at the base dim or where the rotation's keeps clearly more than the
    adapted one (`gains` by `(source, dim)`), else "adapted"."""
    if dim == base_dim or clearly_better(gains["base", dim], gains["adapted", dim]):
        return "base"
    return "adapted"


def served_prefix_choice(
    adaptor: Any, corpus: np.ndarray, queries: np.ndarray
) -> tuple[tuple[tuple[int, PrefixSource], ...], dict[str, dict[str, float]]]:
    """The prefix to serve at each judged dim of an unsupervised adaptor, the scores it was chosen by, and
    the served prefix's score at every dim of `estimate_grid` (what `recommend` reads).

    At each trained dim the adapted prefix, unless the rotation's keeps clearly more of the base vectors'
    full-dim search (`clearly_better`: by over `CLEARLY_SE` standard errors, paired over the queries); at the
    base dim always "base" (the base ranking: the rotation is orthogonal); a dim between judged dims serves
    what the next judged dim up serves (`AdaptorConfig.served_prefix`). Returns `served_prefixes` for
    `AdaptorConfig` and `{"adapted" | "base": {judged dim: kept}, "served": {grid dim: kept}}`.
    """
    adaptor = as_numpy_adaptor(adaptor)
    config = adaptor.config
    dims = judged_dims(config.dims, config.base_dim)
    prefixes = [(source, dim) for dim in dims for source in get_args(PrefixSource)]
    gains = retrieval_gains(adaptor, corpus, queries, prefixes, reference="base")
    served = tuple((dim, _served_at(dim, config.base_dim, gains)) for dim in dims)
    kept = {prefix: float(values.mean()) for prefix, values in gains.items()}
    serving = replace(config, served_prefixes=served)
    grid = [(serving.served_prefix(dim), dim) for dim in estimate_grid(config.dims, config.base_dim)]
    kept |= retrieval_kept(adaptor, corpus, queries, [p for p in grid if p not in kept], reference="base")
    table: dict[str, dict[str, float]] = {
        source: {str(dim): round(kept[source, dim], 4) for dim in dims} for source in get_args(PrefixSource)
    }
    return served, table | {"served": {str(dim): round(kept[source, dim], 4) for source, dim in grid}}
