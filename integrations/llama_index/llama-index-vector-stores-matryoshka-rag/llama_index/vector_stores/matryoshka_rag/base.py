"""``MatryoshkaVectorStore``: a LlamaIndex vector store over a Chroma ``MatryoshkaStore``.

A drop-in for ``ChromaVectorStore``: nodes arrive embedded by the user's base model (``VectorStoreIndex``
and ``IngestionPipeline`` embed them) and the store applies the adaptor (small-dim search, rerank at the
large dim). Nodes are kept whole as ``ChromaVectorStore`` keeps them (``node_to_metadata_dict``), so
``ref_doc_id`` deletion and relationships work; scores never enter node metadata.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from chromadb.api import ClientAPI
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from llama_index.vector_stores.matryoshka_rag.filters import to_chroma_where
from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from matryoshka_rag.errors import InputError
from matryoshka_rag.store.distances import Space, chroma_distance
from matryoshka_rag.store.input_checks import check_base_vectors, check_k, check_unique_ids
from matryoshka_rag.store.store import Hit, MatryoshkaStore, open_store
from matryoshka_rag.validation import check_choice

if TYPE_CHECKING:
    from matryoshka_rag.adaptor.torch_module import MatryoshkaAdaptor

__all__ = ["MatryoshkaQueryResult", "MatryoshkaVectorStore", "NodeScore"]

DEFAULT_COLLECTION = "llama_index"
MMR_PREFETCH_FACTOR = 4.0  # as ChromaVectorStore
_MMR_KWARGS = ("mmr_threshold", "mmr_prefetch_factor", "mmr_prefetch_k")

NodeScore = Literal["cosine", "chroma"]


def _node_score(cosine: float, score: NodeScore, space: Space) -> float:
    """A node's score at a hit's rerank-dim ``cosine``: the cosine itself, or with ``score="chroma"``
    ``exp(-distance)``, Chroma's distance in HNSW ``space``, as ``ChromaVectorStore`` scores its nodes."""
    return cosine if score == "cosine" else math.exp(-chroma_distance(cosine, space))


@dataclass
class MatryoshkaQueryResult(VectorStoreQueryResult):
    """A query result whose ``hits`` carry each node's stage and per-dim cosines (``Hit.scores``)."""

    hits: list[Hit] = field(default_factory=list)


def _node_metadata(node: BaseNode) -> dict[str, Any]:
    """The node as flat Chroma metadata, as ``ChromaVectorStore`` writes it (None values as "")."""
    metadata = node_to_metadata_dict(node, remove_text=True, flat_metadata=True)
    return {key: "" if value is None else value for key, value in metadata.items()}


def _to_node(node_id: str, text: str | None, metadata: dict[str, Any]) -> BaseNode:
    """A stored record as its node; a record not written as a node becomes a ``TextNode``."""
    if "_node_content" in metadata:
        return metadata_dict_to_node(metadata, text=text)
    return TextNode(id_=node_id, text=text or "", metadata=metadata)


class MatryoshkaVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store on Chroma through a Matryoshka adaptor.

    Example:
        .. code-block:: python

            # was: ChromaVectorStore(chroma_collection=client.get_or_create_collection("docs"))
            store = MatryoshkaVectorStore("adaptor/", "docs", persist_dir="db/")
            index = VectorStoreIndex.from_vector_store(store, embed_model=base_embed_model)

    Args:
        adaptor: a ``NumpyAdaptor``, a ``MatryoshkaAdaptor`` or its folder; None reopens an existing store with its recorded one.
        collection_name: name of the store (its Chroma collections are derived from it).
        persist_dir: embedded Chroma folder; or ``host``/``port`` of a ``chroma run`` server; or a ``client``;
            none of them: an in-memory Chroma.
        store: an open ``MatryoshkaStore`` to use instead (then no location or adaptor is given).
        score: the ``similarities`` (``NodeWithScore.score``) of a query: "cosine" (default), the cosine at the
            rerank dim; "chroma", ``exp(-distance)`` with Chroma's distance in the store's ``space``, as
            ``ChromaVectorStore`` scores nodes in a collection of that space (its default collection: "l2").
        small_dim, large_dim, **store_kwargs: passed to ``MatryoshkaStore`` (``space=``: "cosine" by default,
            "l2" or "ip").

    Node embeddings and query embeddings are the base model's ``(base_dim,)``; the stage and per-dim
    cosines are on ``query(...).hits``.
    """

    stores_text: bool = True
    flat_metadata: bool = True
    collection_name: str = DEFAULT_COLLECTION
    persist_dir: str | None = None
    host: str | None = None
    port: int | None = None
    score: NodeScore = "cosine"

    _store: MatryoshkaStore = PrivateAttr()

    def __init__(
        self,
        adaptor: NumpyAdaptor | MatryoshkaAdaptor | str | os.PathLike | None = None,
        collection_name: str = DEFAULT_COLLECTION,
        *,
        persist_dir: str | os.PathLike | None = None,
        host: str | None = None,
        port: int = 8000,
        client: ClientAPI | None = None,
        store: MatryoshkaStore | None = None,
        small_dim: int | None = None,
        large_dim: int | None = None,
        score: NodeScore = "cosine",
        **store_kwargs: Any,
    ) -> None:
        check_choice("score", score, NodeScore)
        store = open_store(
            store,
            collection_name,
            adaptor,
            client=client,
            path=persist_dir,
            host=host,
            port=port,
            small_dim=small_dim,
            large_dim=large_dim,
            **store_kwargs,
        )
        super().__init__(
            collection_name=store.name,
            persist_dir=str(persist_dir) if persist_dir is not None else None,
            host=host,
            port=port if host is not None else None,
            score=score,
        )
        self._store = store

    @classmethod
    def from_chroma(
        cls,
        collection_name: str,
        persist_dir: str | os.PathLike,
        *,
        out: str | os.PathLike | None = None,
        dim: int | Literal["auto"] = 64,
        base_model: str = "unknown",
        score: NodeScore = "cosine",
        **shrink_kwargs: Any,
    ) -> MatryoshkaVectorStore:
        """The plain Chroma collection ``collection_name`` at ``persist_dir`` (e.g. one ``ChromaVectorStore``
        filled) as a store, without re-embedding: ``matryoshka-rag shrink`` in Python
        (``matryoshka_rag.recipes.shrink.shrink``, which needs the ``train`` extra): an adaptor trained on the
        stored vectors (``base_model`` recorded), the store written to ``out`` (default
        ``<persist_dir>.matryoshka``) and checked against the original, which is only read. ``score``: as the
        constructor's; ``shrink_kwargs``: shrink's (``target``, ``sample``, ``max_steps``, ``progress``...)."""
        from matryoshka_rag.recipes.shrink import shrink

        report = shrink(
            persist_dir, collection_name, dim=dim, out=out, base_model=base_model, **shrink_kwargs
        )
        return cls(None, report.store, persist_dir=report.store_path, score=score)

    @classmethod
    def class_name(cls) -> str:
        return "MatryoshkaVectorStore"

    @property
    def client(self) -> MatryoshkaStore:
        """The ``MatryoshkaStore`` underneath."""
        return self._store

    @property
    def store(self) -> MatryoshkaStore:
        """The ``MatryoshkaStore`` underneath."""
        return self._store

    # -- writing -------------------------------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert embedded nodes (base vectors ``(base_dim,)``) under their node ids; returns the ids."""
        if add_kwargs:
            raise InputError(f"unsupported arguments {sorted(add_kwargs)}: add takes the nodes only")
        nodes = list(nodes)
        if not nodes:
            return []
        ids = check_unique_ids([node.node_id for node in nodes])
        missing = [node.node_id for node in nodes if node.embedding is None]
        if missing:
            raise InputError(
                f"node {missing[0]!r} has no embedding ({len(missing)} of {len(nodes)} nodes): embed nodes with "
                "the base model first (VectorStoreIndex(embed_model=...) or an IngestionPipeline does)"
            )
        base_dim = self._store.adaptor.config.base_dim
        vectors = check_base_vectors(
            [node.embedding for node in nodes], len(nodes), base_dim, "the embed model"
        )
        self._store.upsert(
            ids,
            texts=[node.get_content(metadata_mode=MetadataMode.NONE) for node in nodes],
            embeddings=vectors,
            metadatas=[_node_metadata(node) for node in nodes],
        )
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Remove every node of the source document ``ref_doc_id`` (none there: nothing happens)."""
        if delete_kwargs:
            raise InputError(f"unsupported arguments {sorted(delete_kwargs)}: delete takes ref_doc_id only")
        self._store.delete(where={"document_id": ref_doc_id})

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Remove nodes by id and/or filter; unknown ids are ignored."""
        if delete_kwargs:
            raise InputError(
                f"unsupported arguments {sorted(delete_kwargs)}: delete_nodes takes node_ids, filters"
            )
        where = to_chroma_where(filters) if filters is not None else None
        if node_ids is None and where is None:
            raise InputError("give node_ids or filters to delete; clear() removes every node")
        if node_ids is not None and not node_ids:
            return
        self._store.delete(ids=list(dict.fromkeys(node_ids)) if node_ids is not None else None, where=where)

    def clear(self) -> None:
        """Remove every node (the store and its adaptor stay)."""
        self._store.clear()

    # -- reading -------------------------------------------------------------------------------------

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Stored nodes by id (in the order given, unknown ids left out) and/or filter; all without either."""
        where = to_chroma_where(filters) if filters is not None else None
        wanted = list(dict.fromkeys(node_ids)) if node_ids is not None else None
        if wanted == []:
            return []
        records = self._store.get(ids=wanted, where=where)
        order = wanted if wanted is not None else list(records)
        return [_to_node(i, *records[i]) for i in order if i in records]

    def _where(self, query: VectorStoreQuery, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        where = kwargs.pop("where", None)
        if query.filters is not None:
            if where is not None:
                raise InputError("give the filter as query.filters or where=, not both")
            where = to_chroma_where(query.filters)
        if query.doc_ids:
            documents = {"document_id": {"$in": list(query.doc_ids)}}
            where = documents if where is None else {"$and": [where, documents]}
        return where

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> MatryoshkaQueryResult:
        """The ``similarity_top_k`` nodes closest to ``query.query_embedding`` (a base vector), filtered by
        ``query.filters`` / ``doc_ids``; ``mode`` default or MMR. Fewer nodes when fewer match.

        ``query.node_ids`` is ignored, as ``ChromaVectorStore`` ignores it: ``VectorStoreIndex.as_retriever``
        passes the ids of the nodes the index keeps itself (all of them with ``store_nodes_override=True``,
        else only its ``IndexNode``s), not a restriction of what the store holds."""
        where = self._where(query, kwargs)
        mmr = {key: kwargs.pop(key) for key in _MMR_KWARGS if key in kwargs}
        if kwargs:
            raise InputError(f"unsupported query arguments {sorted(kwargs)}")
        if query.mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise InputError(f"query mode {query.mode.value!r} is not supported (default and mmr are)")
        k = check_k(query.similarity_top_k, "similarity_top_k")
        if query.query_embedding is None:
            records = self._store.get(where=where, limit=k)
            return MatryoshkaQueryResult(
                nodes=[_to_node(i, *r) for i, r in records.items()], ids=list(records)
            )
        base_dim = self._store.adaptor.config.base_dim
        vector = check_base_vectors(query.query_embedding, 1, base_dim, "the query embedding")[0]
        if query.mode == VectorStoreQueryMode.MMR:
            hits = self._mmr(vector, k, where, mmr.get("mmr_threshold", query.mmr_threshold), mmr)
        else:
            hits = self._store.query(vector, k=k, where=where)
        return MatryoshkaQueryResult(
            nodes=[_to_node(hit.id, hit.document, hit.metadata) for hit in hits],
            similarities=[_node_score(hit.score, self.score, self._store.space) for hit in hits],
            ids=[hit.id for hit in hits],
            hits=hits,
        )

    def _mmr(
        self, vector: Any, k: int, where: dict | None, threshold: float | None, options: dict[str, Any]
    ) -> list[Hit]:
        """MMR over the prefetched closest records, in the rerank space the store scores in."""
        if "mmr_prefetch_k" in options and "mmr_prefetch_factor" in options:
            raise InputError("give mmr_prefetch_k or mmr_prefetch_factor, not both")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise InputError(f"mmr_threshold must be between 0 and 1, got {threshold}")
        factor = options.get("mmr_prefetch_factor", MMR_PREFETCH_FACTOR)
        prefetch = max(k, check_k(options.get("mmr_prefetch_k", int(k * factor)), "mmr prefetch"))
        hits = self._store.query(vector, k=prefetch, where=where)
        if not hits:
            return []
        stored = self._store.rerank_vectors([hit.id for hit in hits])
        _, chosen = get_top_k_mmr_embeddings(
            self._store.rerank_query(vector).tolist(),
            [stored[hit.id].tolist() for hit in hits],
            similarity_top_k=k,
            embedding_ids=list(range(len(hits))),
            mmr_threshold=threshold,
        )
        return [hits[i] for i in chosen]

    # -- async: the same calls in a worker thread, so the event loop keeps running -------------------

    async def async_add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **add_kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> MatryoshkaQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)
