"""Train an adaptor from texts through any embedding function (the glue behind the frameworks' ``fit``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..adaptor.folder_write import check_destination
from ..data.pseudo_queries import pseudo_queries as make_pseudo_queries
from ..embeddings.providers import CallableProvider, canonical_model_name, check_texts, embed_texts
from ..errors import InputError
from ..extras import needs_extra

if TYPE_CHECKING:
    from ..adaptor.torch_module import MatryoshkaAdaptor
    from ..training import SupervisedConfig, UnsupervisedConfig

__all__ = ["fit_from_texts"]

EmbedMany = Callable[[list[str]], Sequence[Sequence[float]] | np.ndarray]


def _relevance(
    corpus: list[str], pairs: Sequence[tuple[str, str]]
) -> tuple[list[str], list[str], list[dict[int, float]]]:
    """(corpus with absent relevant texts appended, distinct queries, per query {corpus row: 1.0})."""
    corpus = list(corpus)
    row_of: dict[str, int] = {}
    for row, text in enumerate(corpus):
        row_of.setdefault(text, row)
    relevance: dict[str, dict[int, float]] = {}
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise InputError(f"pair {i} must be a (query, relevant text) pair of strings, got {pair!r}")
        query, text = pair
        if text not in row_of:
            row_of[text] = len(corpus)
            corpus.append(text)
        relevance.setdefault(query, {})[row_of[text]] = 1.0
    if len(relevance) < 2:
        raise InputError(
            f"supervised training needs at least 2 distinct queries (with fewer than 2 x "
            f"SupervisedConfig.min_validation the supervised stage is dropped: too few to validate it), "
            f"got {len(relevance)}"
        )
    return corpus, list(relevance), list(relevance.values())


def fit_from_texts(
    embed_documents: EmbedMany,
    texts: Sequence[str],
    path: str | Path,
    *,
    embed_query: Callable[[str], Sequence[float]] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    pseudo_queries: bool = False,
    dims: Sequence[int] | None = None,
    base_model: str | None = None,
    unsupervised: UnsupervisedConfig | None = None,
    supervised: SupervisedConfig | None = None,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
    **settings: Any,
) -> MatryoshkaAdaptor:
    """Embed ``texts`` with a base model, train an adaptor on them, save it to the folder ``path``.

    Args:
        embed_documents: the base model's batch function, n texts -> (n, d) vectors.
        texts: the corpus (n >= 11: each item needs ``k=10`` neighbours); blank texts raise.
        embed_query: the base model's query function (default: ``embed_documents`` on one text).
        pairs: ``(query, relevant text)`` pairs -> supervised training (at least 2 distinct queries). A
            relevant text absent from ``texts`` is added to the corpus; a query in several pairs gets every
            text as a positive. ``None``: unsupervised.
        pseudo_queries: without ``pairs``, train the supervised stage on queries made from ``texts`` alone
            (`matryoshka_rag.data.pseudo_queries`: one sentence of each text, kept in it, is a query for it; one
            query embedded per text), early-stopped on held-out pseudo-queries (no labels needed). The counts
            (texts without a sentence long enough are skipped) go to ``metadata["training"]["pseudo_queries"]``.
        dims: Matryoshka dims (default: powers of two from 16, plus the base dim).
        base_model: the base model's name, recorded (canonical) in the adaptor.
        unsupervised, supervised: stage configs; ``settings`` (e.g. ``max_steps=30``) override fields of
            each config that has them.
        overwrite: replace an existing adaptor folder at ``path``; a file or a folder holding anything else
            is refused whatever it says (checked before any embedding).

    Returns the trained adaptor, already saved. Training needs the ``[train]`` extra (torch), imported here, so
    that importing this module (as the framework wrappers do) needs none.
    """
    with needs_extra("training an adaptor (fit)"):
        from ..adaptor.persistence import save_adaptor
        from ..training import train_supervised, train_unsupervised, training_configs
    path = Path(path)
    check_destination(path, overwrite)
    unsupervised, supervised = training_configs(unsupervised, supervised, **settings)
    name = canonical_model_name(base_model) if base_model and base_model.strip() else "unknown"
    corpus = check_texts(texts)
    if pairs is not None and pseudo_queries:
        raise InputError("give pairs (labelled queries) or pseudo_queries=True, not both")
    pseudo = None
    if pairs is not None:
        corpus, queries, relevance = _relevance(corpus, pairs)
    elif pseudo_queries:
        pseudo = make_pseudo_queries(corpus)
        if not pseudo.texts:
            raise InputError(f"no text has a sentence long enough to be a pseudo-query ({pseudo.counts()})")
        queries, relevance = pseudo.texts, pseudo.relevance()
    corpus_vectors = embed_texts(CallableProvider(embed_documents, name), corpus, progress=progress)
    if pairs is None and pseudo is None:
        adaptor = train_unsupervised(
            corpus_vectors, dims, config=unsupervised, base_model=name, device=device, progress=progress
        )
    else:
        embed_one = embed_query or (lambda text: embed_documents([text])[0])
        query_provider = CallableProvider(lambda batch: [embed_one(q) for q in batch], name)
        query_vectors = embed_texts(query_provider, queries, progress=progress)
        adaptor = train_supervised(
            corpus_vectors,
            query_vectors,
            relevance,
            dims,
            config=supervised,
            unsupervised=unsupervised,
            base_model=name,
            device=device,
            progress=progress,
        )
        if pseudo is not None:
            adaptor.metadata["training"]["pseudo_queries"] = pseudo.counts()
    save_adaptor(adaptor, path, overwrite=overwrite)
    return adaptor
