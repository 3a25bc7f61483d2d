"""A label-free dim recommendation: for each judged dim, how much of full-dim retrieval the adaptor's served
prefix keeps (`scoring.kept`), and the smallest dim that keeps a target share.

The estimate is measured on corpus vectors when they are given (corpus items as queries, against the
adaptor's served full-dim search), else read from the table training recorded (`metadata["retrieval_kept"]`:
unsupervised training on its held-out items, a kept supervised stage on corpus items), so `dim="auto"` needs
no corpus at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..adaptor.format import PrefixSource
from ..adaptor.numpy_forward import NumpyAdaptor, as_numpy_adaptor
from ..errors import InputError
from ..extras import pyplot
from ..training_options import DEFAULT_TARGET, check_target
from ..validation import check_rows, open_corpus
from .kept import MAX_QUERIES, estimate_grid, judged_dims, query_rows, served_kept

__all__ = [
    "DEFAULT_TARGET",
    "DimEstimate",
    "check_target",
    "chosen_dim",
    "estimate_dims",
    "recommend_dim",
    "recommended",
]


@dataclass(frozen=True)
class DimEstimate:
    """One row of the estimate: at `dim` the adaptor serves the `served` prefix, which keeps `kept` of the
    full dim's retrieval (1.0 at the full dim); `trained` says whether `dim` is one of its trained dims."""

    dim: int
    served: PrefixSource
    kept: float
    trained: bool


def _recorded(adaptor: NumpyAdaptor) -> dict[int, float]:
    """The served prefix's kept score per dim of `estimate_grid`, from the table training recorded;
    `InputError` when the adaptor has none (trained before estimates were recorded, or on too few vectors)."""
    table = adaptor.metadata.get("retrieval_kept", {})
    dims = estimate_grid(adaptor.config.dims, adaptor.config.base_dim)
    try:
        return {dim: float(table["served"][str(dim)]) for dim in dims}
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            "the adaptor records no label-free estimate (it was trained before estimates were recorded, or on "
            "too few vectors): pass corpus vectors to measure it"
        ) from error


def estimate_dims(
    adaptor: Any, corpus_vectors: Any = None, *, queries: int = MAX_QUERIES, seed: int = 0
) -> list[DimEstimate]:
    """The estimate at each dim of `scoring.kept.estimate_grid` (the trained dims, the base dim and 3 dims
    evenly spaced between each two), increasing.

    Args:
        adaptor: a `MatryoshkaAdaptor`, a `NumpyAdaptor` or a folder.
        corpus_vectors: base vectors `(n, base_dim)` (array, memmap or `.npy` path) to measure on: `queries`
            random rows (from `seed`) are the queries, each left out of its own search, against the served
            full dim's search; at least `scoring.kept.MIN_CORPUS_ROWS` rows. None: the recorded table.
    """
    adaptor = as_numpy_adaptor(adaptor)
    config = adaptor.config
    dims = estimate_grid(config.dims, config.base_dim)
    if corpus_vectors is None:
        kept = _recorded(adaptor)
    else:
        corpus = open_corpus(corpus_vectors)
        config.check_base(corpus.shape[1])
        check_rows(corpus, "corpus embeddings")
        kept = served_kept(adaptor, corpus, query_rows(len(corpus), seed, queries))
    trained = set(judged_dims(config.dims, config.base_dim))
    return [DimEstimate(dim, config.served_prefix(dim), kept[dim], dim in trained) for dim in dims]


def recommended(
    estimates: list[DimEstimate], target: float, below: int | None = None, trained_only: bool = False
) -> int:
    """The smallest dim whose estimate reaches `target` (the largest dim when none does); only dims under
    `below` when given (e.g. a store's rerank dim), only trained dims with `trained_only`; `InputError` when
    no dim is left."""
    rows = [
        row for row in estimates if (below is None or row.dim < below) and (row.trained or not trained_only)
    ]
    if not rows:
        raise InputError(f"the adaptor has no {'trained ' if trained_only else ''}dim below {below}")
    return next((row.dim for row in rows if row.kept >= check_target(target)), rows[-1].dim)


def recommend_dim(
    adaptor: Any,
    corpus_vectors: Any = None,
    target: float = DEFAULT_TARGET,
    *,
    below: int | None = None,
    trained_only: bool = False,
    queries: int = MAX_QUERIES,
    seed: int = 0,
) -> int:
    """The smallest dim whose served prefix keeps at least `target` of full-dim retrieval, label-free.

    `target` in (0, 1]; `corpus_vectors` as `estimate_dims` (None: the table recorded at training); `below`:
    consider only dims under it (the largest of them when none reaches the target); `trained_only`: only the
    adaptor's trained dims (a store's searched dim).
    """
    target = check_target(target)
    estimates = estimate_dims(adaptor, corpus_vectors, queries=queries, seed=seed)
    return recommended(estimates, target, below, trained_only)


def chosen_dim(adaptor: Any, dim: Any, target: float | None = None, corpus_vectors: Any = None) -> Any:
    """`dim` as given, or for `dim="auto"` `recommend_dim(adaptor, corpus_vectors, target)` (`target` default
    `DEFAULT_TARGET`); `InputError` for a `target` or `corpus_vectors` without `dim="auto"`."""
    if dim != "auto":
        if target is not None or corpus_vectors is not None:
            raise InputError(f"target= and corpus_vectors= go with dim='auto', got dim={dim!r}")
        return dim
    return recommend_dim(adaptor, corpus_vectors, DEFAULT_TARGET if target is None else target)


def estimate_table(estimates: list[DimEstimate], target: float, chosen: int) -> str:
    """The estimates as a markdown table, the chosen dim marked."""
    lines = ["| dim | served prefix | kept (estimate) | meets target |", "|---|---|---|---|"]
    for row in estimates:
        mark = (" (trained)" if row.trained else "") + (" (recommended)" if row.dim == chosen else "")
        lines.append(
            f"| {row.dim}{mark} | {row.served} | {row.kept:.4f} | {'yes' if row.kept >= target else 'no'} |"
        )
    return "\n".join(lines)


def plot_estimates(estimates: list[DimEstimate], target: float, chosen: int, path: Any) -> None:
    """Write a PNG of the estimate by dim (log scale), the target line and the chosen dim."""
    plt = pyplot("the estimate's plot")
    dims = np.array([row.dim for row in estimates])
    kept = np.array([row.kept for row in estimates])
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(dims, kept, marker="o", label="kept (label-free estimate)")
    axes.axhline(target, color="grey", linestyle="--", label=f"target {target:g}")
    axes.axvline(chosen, color="green", linestyle=":", label=f"recommended {chosen}")
    axes.set_xscale("log", base=2)
    axes.set_xticks(dims, [str(d) for d in dims])
    axes.set_xlabel("dim")
    axes.set_ylabel("share of full-dim retrieval kept")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
