"""Matryoshka retrieval on Chroma: search a small adapted prefix, rerank exactly at a larger dim.

Layout (one searched collection, the rerank vectors beside it):

- ``<name>__d<small>`` holds the adapted vectors cut to ``small_dim`` (renormalised, HNSW) and the metadata
  (for ``where`` filters). It is the only thing searched.
- The rerank vectors (``large_dim``) live outside HNSW: with an embedded `PersistentClient` in a float16 file
  beside the database (`rerank_homes.FileVectors`, read only for the shortlist), with an in-memory client in
  process memory (`rerank_memory.MemoryVectors`), through a server as int8 (or float16) text in each searched
  record's reserved metadata keys, returned with the shortlist (`rerank_metadata.MetadataVectors`), or in a second
  collection ``<name>__d<large>`` read by id (`rerank_homes.CollectionVectors`, the server layout before it).
  They are the adapted vectors when the adaptor was trained with labels (or below the full dim), else the base
  vectors.
- The documents, and the metadata as served: beside each rerank vector in the file or memory (a query
  makes one Chroma call), else in the searched collection.

A query searches ``shortlist_factor * k`` candidates at the small dim, reranks them exactly (numpy) at the
large dim and widens the shortlist (x ``WIDEN_STEP``, up to ``max_shortlist_factor * k``) while
`shortlist.shortlist_is_conclusive` says a record outside it could still enter the top k (`search.search`).

Writes put the rerank vectors first (fsynced), then the searched records that point at them, with
``upsert``: a record is findable only once wholly written, and re-sending a batch never duplicates. The
searched collection records the adaptor's fingerprint (and folder or Hub repo id), the base model, the dims,
the rerank vectors' kind and home and the space (`layout`); opening it with anything else raises
`AdaptorMismatchError` and leaves it untouched. Querying imports no torch: the adaptor runs as numpy (`numpy_forward.NumpyAdaptor`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.collection_configuration import CreateHNSWConfiguration

from ..embeddings.adapted import warn_if_other_model
from ..embeddings.providers import CallableProvider, EmbeddingProvider, embed_texts
from ..errors import InputError
from .chroma_client import (
    ChromaUnavailableError,
    chroma_errors,
    client_for,
    connect,
    location,
    reconnect,
)
from .distances import Space
from .health import StoreNeedsRepairError, open_checked
from .input_checks import check_k, check_query
from .layout import (
    DEFAULT_HNSW,
    LargeVectors,
    check_layout,
    check_store_name,
    collection_name,
    existing_layout,
    hnsw_settings,
    open_homes,
    resolve_layout,
    trained_with_labels,
)
from .processes import StoreDroppedError, StoreLockedError, store_access
from .reading import chosen_ids, matching_ids, read_records, read_rerank_vectors, search_reads
from .records import Record, check_documents, check_embeddings, check_ids, check_metadatas
from .repair import repair as repair_store
from .rerank_homes import RerankHome
from .rerank_metadata import RowCodec
from .search import STAGE_FUNNEL, STAGE_WIDENED, WIDEN_STEP, Found, check_shortlist_factors, search
from .writing import delete_chunk, drop_homes, write_chunk

__all__ = [
    "DEFAULT_HNSW",
    "STAGE_FUNNEL",
    "STAGE_WIDENED",
    "WIDEN_STEP",
    "ChromaUnavailableError",
    "Hit",
    "MatryoshkaStore",
    "QueryStats",
    "StoreDroppedError",
    "StoreLockedError",
    "StoreNeedsRepairError",
    "check_metadatas",
    "connect",
    "open_store",
    "trained_with_labels",
]


@dataclass
class QueryStats:
    """Counts since the store was opened: queries answered, and those whose shortlist was widened."""

    queries: int = 0
    widened: int = 0


@dataclass(frozen=True)
class Hit:
    """One result: ``score`` is the cosine at the large dim (hits are ordered by it), ``scores`` the cosine
    at each dim (``{small_dim: ..., large_dim: ...}``), ``stage`` how it was found: ``"small+rerank"`` (in
    the first small-dim shortlist) or ``"widened"`` (only in a widened one)."""

    id: str
    score: float
    scores: dict[int, float]
    stage: str
    document: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _as_provider(provider: EmbeddingProvider | Callable | None) -> EmbeddingProvider | None:
    if provider is None or isinstance(provider, EmbeddingProvider):
        return provider
    if not callable(provider):
        raise InputError(f"provider must map a list of texts to vectors, got {type(provider).__name__}")
    return CallableProvider(provider, name=getattr(provider, "__name__", type(provider).__name__))


def _embedded(provider: EmbeddingProvider | None, texts: list[str]) -> np.ndarray:
    """Base vectors `(n, base_dim)` of `texts`; InputError without a provider."""
    if provider is None:
        raise InputError("this store has no embedding provider: pass provider=, or give base vectors")
    return embed_texts(provider, texts, progress=False)


def _checked_batch(
    ids: Sequence[str],
    texts: Sequence[str] | None,
    embeddings: np.ndarray | Sequence[Sequence[float]] | None,
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    store: MatryoshkaStore,
) -> tuple[list[str], list[str] | None, list[dict[str, Any] | None], np.ndarray]:
    """An upsert's ids, documents, metadatas (None for each record without) and base vectors `(n, base_dim)`,
    checked; texts without embeddings are embedded with the store's provider."""
    ids = check_ids(ids)
    documents = check_documents(texts, ids)
    checked: list[dict[str, Any] | None] = check_metadatas(metadatas, ids) or [None] * len(ids)
    if embeddings is None:
        if documents is None:
            raise InputError("give texts or embeddings (base vectors) for the ids")
        embeddings = _embedded(store.provider, documents)
    return ids, documents, checked, check_embeddings(embeddings, ids, store.adaptor.config.base_dim)


def _hits(found: Found, records: Mapping[str, Record], small_dim: int, large_dim: int) -> list[Hit]:
    """The hits of a search, best first, with their stored records."""
    return [
        Hit(
            i,
            float(large),
            {small_dim: float(small), large_dim: float(large)},
            stage,
            *records.get(i, (None, {})),
        )
        for i, small, large, stage in zip(found.ids, found.small, found.large, found.stages)
    ]


class MatryoshkaStore:
    """A Matryoshka store in Chroma: `upsert`/`delete`/`get` base vectors or texts, `query` -> hits.

    Args:
        name: store name; the searched collection is ``<name>__d<small_dim>``.
        adaptor: a `MatryoshkaAdaptor` or `NumpyAdaptor`, the folder of a saved one or the Hugging Face Hub repo
            id (``"org/name"``) of a published one (recorded, so it is found on reopening), or None to load
            the one recorded in an existing store (fingerprint checked).
        client: a chromadb client; else ``connect(path)`` or ``connect(host=host, port=port)``.
        small_dim, large_dim: dims searched / reranked (default 64 and the base dim for a new store, the
            recorded ones for an existing store). `small_dim="auto"`: the smallest trained dim below
            `large_dim` whose served prefix keeps 0.99 of full-dim retrieval, as estimated label-free at
            training (`recommend.recommend_dim`).
        large_vectors: the rerank vectors: "adapted" (adapted vectors cut to `large_dim`), "base" (the base
            vectors, full dim only) or "auto": adapted when the adaptor was trained with labels or
            `large_dim` is below the base dim, else base. Recorded in the store.
        rerank_home: where rerank vectors live: "file" (float16 file beside an embedded database), "memory"
            (this process, beside an in-memory client), "metadata" (int8 or float16 text, `rerank_rows`, in
            each searched record's metadata; works through a server), "collection" (a second collection) or
            "auto" (file for a `PersistentClient`, memory for an `EphemeralClient`, metadata through a
            server, else collection). Recorded in the store.
        rerank_rows: how the metadata home encodes each row: "int8" (default for a new store: one byte a dim,
            scaled per row) or "float16" (two bytes a dim; a store made before int8 rows has them). Recorded
            in the store; only for `rerank_home="metadata"`.
        provider: texts -> base vectors `(n, base_dim)` (an `EmbeddingProvider` or any callable), needed
            to add texts without embeddings and to query with text.
        space: HNSW space of the searched collection: "cosine" (default), "ip" or "l2" (vectors are
            unit-norm, so all three rank alike; hit scores are always cosines, and the framework stores turn
            them into Chroma's distance in this space, `distances.chroma_distance`).
        shortlist_factor: the first shortlist holds `shortlist_factor * k` candidates.
        max_shortlist_factor: the shortlist widens (x `WIDEN_STEP`) up to `max_shortlist_factor * k`
            candidates while `shortlist_is_conclusive` is false; equal to `shortlist_factor` turns widening off.
        hnsw: HNSW settings of a new searched collection (default `DEFAULT_HNSW`).
        read_only: open an existing store to read only: writes raise `InputError`, and reads see what the
            writing process acknowledged since (embedded: one process writes a database at a time, another
            gets `StoreLockedError`; `processes`).
    """

    def __init__(
        self,
        name: str,
        adaptor: Any = None,
        *,
        client: ClientAPI | None = None,
        path: str | os.PathLike | None = None,
        host: str | None = None,
        port: int = 8000,
        small_dim: int | Literal["auto"] | None = None,
        large_dim: int | None = None,
        large_vectors: LargeVectors | None = None,
        rerank_home: RerankHome | None = None,
        rerank_rows: RowCodec | None = None,
        provider: EmbeddingProvider | Callable[[list[str]], Any] | None = None,
        space: Space | None = None,
        shortlist_factor: int = 30,
        max_shortlist_factor: int = 160,
        hnsw: CreateHNSWConfiguration | None = None,
        read_only: bool = False,
    ) -> None:
        self.name = check_store_name(name)
        factors = check_shortlist_factors(shortlist_factor, max_shortlist_factor)
        self.access = store_access(name, read_only, path, client)
        self.client = client = client_for(client, path, host, port)
        self.location = location(client)
        self.shortlist_factor, self.max_shortlist_factor = factors
        self.stats = QueryStats()
        existing = existing_layout(client, name, self.location)
        if read_only and not existing:
            raise InputError(f"store {name!r} does not exist at {self.location}: read_only never creates one")
        self.layout = layout = resolve_layout(
            client,
            name,
            existing,
            adaptor,
            small_dim,
            large_dim,
            large_vectors,
            rerank_home,
            space,
            rerank_rows,
        )
        self.adaptor, self.adaptor_path, self.space = layout.adaptor, layout.adaptor_path, layout.space
        self.small_dim, self.large_dim = layout.small_dim, layout.large_dim
        self.large_vectors, self.rerank_home = layout.large_vectors, layout.rerank_home
        self.provider = provider
        if existing:
            check_layout(existing, layout, name, self.location)
        self.small, self.vectors = open_checked(client, name, layout, hnsw, self.location)
        with chroma_errors(self.location, "asking the batch size"):
            self.batch_size = int(client.get_max_batch_size())

    repair = staticmethod(repair_store)  # rebuild the searched collection from the rerank file

    def collection_name(self, dim: int) -> str:
        return collection_name(self.name, dim)

    def _look(self) -> None:
        """A reader reopens its view of the store when the writing process changed it since it last looked."""
        if (count := self.access.changed()) is not None:
            self.client = client = reconnect(self.client, self.access.database)
            self.small, self.vectors = open_homes(client, self.name, self.layout, None, self.location, False)
            self.access.seen = count  # looked: a failed reopen (the store dropped) is tried again next time

    def close(self) -> None:
        """Give back the writer lock (also done when the store is collected, and at exit however it ends)."""
        self.access.close()

    def __enter__(self) -> MatryoshkaStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def provider(self) -> EmbeddingProvider | None:
        """Texts -> base vectors; a callable set here is wrapped, and a model other than the adaptor's warns
        (`embeddings.adapted.warn_if_other_model`)."""
        return self._provider

    @provider.setter
    def provider(self, provider: EmbeddingProvider | Callable[[list[str]], Any] | None) -> None:
        self._provider = _as_provider(provider)
        name = getattr(provider, "name", None)  # a bare callable has no model name to compare
        warn_if_other_model(self.adaptor, str(name) if name else None)

    def _query_vectors(self, query: str | np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """A query text or base vector `(base_dim,)` -> unit-norm small `(small_dim,)` and rerank
        `(large_dim,)` vectors."""
        checked = check_query(query)
        base = _embedded(self.provider, [checked]) if isinstance(checked, str) else checked
        small, large = self.layout.stored_vectors(base)
        return small[0], large[0]

    def rerank_query(self, query: str | np.ndarray | Sequence[float]) -> np.ndarray:
        """A query text or base vector `(base_dim,)` in the rerank space: unit-norm `(large_dim,)`."""
        return self._query_vectors(query)[1]

    def rerank_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored unit-norm rerank vectors `(large_dim,)` of the `ids` that exist, by id."""
        self._look()
        return read_rerank_vectors(self.small, self.vectors, self.location, ids)

    # -- writing -----------------------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        embeddings: np.ndarray | Sequence[Sequence[float]] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Insert or replace records; returns how many were written.

        Args:
            ids: n distinct non-empty strings.
            texts: n documents, stored; embedded with the provider when `embeddings` is None.
            embeddings: base vectors `(n, base_dim)`.
            metadatas: n dicts (or None) of str/int/float/bool/None/list values (see `check_metadatas`).

        The whole batch is checked (and embedded) before anything is written; it is then written in chunks
        of the client's max batch size, rerank vectors first. Re-sending a batch never duplicates.
        """
        self.access.check_writable("upsert")
        ids, documents, checked, base = _checked_batch(ids, texts, embeddings, metadatas, self)
        small, large = self.layout.stored_vectors(base)
        for start in range(0, len(ids), self.batch_size):
            part = slice(start, start + self.batch_size)
            chunk = (ids[part], documents and documents[part], checked[part])  # ids, documents, metadatas
            write_chunk(self.small, self.vectors, (small[part], large[part]), *chunk, self.location)
            self.access.wrote()
        return len(ids)

    # Adding an id again (e.g. re-sending a batch after a failure) replaces it: `add` is `upsert`.
    add = upsert

    def delete(self, ids: Sequence[str] | None = None, where: Mapping[str, Any] | None = None) -> None:
        """Remove records by id and/or `where` filter (unknown ids are ignored): unsearchable first."""
        self.access.check_writable("delete")
        if ids is None and not where:
            raise InputError("give ids or a non-empty where filter to delete (clear() removes everything)")
        chosen = chosen_ids(self.small, self.location, ids, where)
        for start in range(0, len(chosen), self.batch_size):
            delete_chunk(self.small, self.vectors, chosen[start : start + self.batch_size], self.location)
            self.access.wrote()

    def clear(self) -> None:
        """Remove every record (the store and its layout stay), then reclaim the rerank rows."""
        self.access.check_writable("clear")
        ids = matching_ids(self.small, self.location, None)
        if ids:
            self.delete(ids)
        self.compact()

    def drop(self) -> None:
        """Delete all the store holds (`writing.drop_homes`); this object then refuses use until `reset()`, a
        reader in another process gets `StoreDroppedError` at its next read."""
        self.access.check_writable("drop")
        drop_homes(self.client, self.small, self.vectors, self.location)
        self.access.wrote()
        self.access.dropped = True

    def reset(self) -> None:
        """Drop the store (unless dropped) and create it again, empty, with the same layout and HNSW settings."""
        hnsw = hnsw_settings(self.small)
        if not self.access.dropped:
            self.drop()
        self.small, self.vectors = open_checked(self.client, self.name, self.layout, hnsw, self.location)
        self.access.dropped = False

    def compact(self) -> int:
        """Reclaim rerank rows of deleted or replaced records; returns how many rows were freed."""
        self.access.check_writable("compact")
        freed = self.vectors.compact(self.batch_size)
        self.access.wrote()
        return freed

    def count(self) -> int:
        """Number of searchable records."""
        self._look()
        with chroma_errors(self.location, "counting"):
            return self.small.count()

    def get(
        self,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> dict[str, Record]:
        """Stored `(document, metadata)` by id: of `ids` (those that exist), filtered by `where`, at most
        `limit` (all records when neither ids nor where is given)."""
        self._look()
        return read_records(self.small, self.vectors, self.location, ids, where, limit)

    # -- querying ----------------------------------------------------------------------------------

    def query(
        self, query: str | np.ndarray | Sequence[float], k: int = 10, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The k best records for a query text or base vector `(base_dim,)`, optionally `where`-filtered.

        Small-dim search for `shortlist_factor * k` candidates -> exact rerank at the large dim -> widen
        (x `WIDEN_STEP`, up to `max_shortlist_factor * k`) until `shortlist_is_conclusive` -> top k
        (`search.search`). Fewer than k records (in the store, or passing `where`) give fewer hits. A record
        whose rerank vector is not acknowledged yet (a batch being written) is left out.
        """
        k = check_k(k)
        self._look()
        small_query, large_query = self._query_vectors(query)
        factors = (self.shortlist_factor, self.max_shortlist_factor)
        shortlist, read = search_reads(self.small, self.vectors, self.space, self.location, where)
        found = search(small_query, large_query, k, *factors, shortlist=shortlist, read=read)
        self.stats.queries += 1
        self.stats.widened += found.widened
        # hits exist in the searched collection: the rerank file serves them without asking it
        records = self.vectors.records(found.ids) if found.ids else {}
        return _hits(found, records, self.small_dim, self.large_dim)

    def __repr__(self) -> str:
        return (
            f"MatryoshkaStore({self.name!r} at {self.location}, dims {self.small_dim}->{self.large_dim} "
            f"({self.large_vectors} vectors, rerank_home={self.rerank_home!r}), space={self.space!r})"
        )


def open_store(
    store: MatryoshkaStore | None,
    name: str,
    adaptor: Any = None,
    *,
    client: ClientAPI | None = None,
    path: str | os.PathLike | None = None,
    host: str | None = None,
    port: int = 8000,
    **settings: Any,
) -> MatryoshkaStore:
    """`store` itself, or a `MatryoshkaStore` opened from where and how (in memory, as Chroma's own framework
    stores do, when no location is given): the two ways the framework vector stores are made. Settings that
    are None are left to the store's defaults."""
    settings = {key: value for key, value in settings.items() if value is not None}
    if store is not None:
        if path or host or client or adaptor is not None or settings:
            raise InputError("give an open store, or where and how to open one, not both")
        return store
    if path is None and host is None and client is None:
        client = chromadb.EphemeralClient()
    return MatryoshkaStore(name, adaptor, client=client, path=path, host=host, port=port, **settings)
