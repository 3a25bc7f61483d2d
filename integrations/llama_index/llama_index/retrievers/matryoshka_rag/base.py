"""``MatryoshkaRetriever``: a LlamaIndex retriever over a Chroma ``MatryoshkaStore`` (small dims, then rerank)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import MetadataFilters

from llama_index.vector_stores.matryoshka_rag.filters import to_chroma_where
from matryoshka_rag.retriever import MatryoshkaStore

__all__ = ["MatryoshkaRetriever", "to_chroma_where"]


class MatryoshkaRetriever(BaseRetriever):
    """Retrieve nodes with a ``MatryoshkaStore``: small-dim HNSW shortlist, exact large-dim rerank, widened when inconclusive.

    Args:
        store: the Chroma collection pair; it needs an embedding provider (base model) for text queries and
            ``insert_nodes`` (a ``QueryBundle.embedding`` is taken as a base vector).
        similarity_top_k: number of nodes returned.
        filters: ``MetadataFilters`` or a Chroma ``where`` dict applied to every query.

    Each node's metadata gains ``matryoshka_stage`` and ``matryoshka_score_<dim>``; its score is the
    large-dim cosine.
    """

    def __init__(
        self,
        store: MatryoshkaStore,
        similarity_top_k: int = 4,
        filters: MetadataFilters | dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        self.store = store
        self.similarity_top_k = similarity_top_k
        self.where = to_chroma_where(filters) if isinstance(filters, MetadataFilters) else filters
        super().__init__(callback_manager=callback_manager, **kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.embedding if query_bundle.embedding is not None else query_bundle.query_str
        hits = self.store.query(query, k=self.similarity_top_k, where=self.where)
        return [
            NodeWithScore(
                node=TextNode(
                    id_=hit.id,
                    text=hit.document or "",
                    metadata={
                        **hit.metadata,
                        "matryoshka_stage": hit.stage,
                        **{f"matryoshka_score_{dim}": score for dim, score in hit.scores.items()},
                    },
                ),
                score=hit.score,
            )
            for hit in hits
        ]

    def insert_nodes(self, nodes: Sequence[BaseNode]) -> list[str]:
        """Embed (with the store's provider) and upsert the nodes' text and metadata under their node ids."""
        ids = [node.node_id for node in nodes]
        self.store.upsert(
            ids,
            texts=[node.get_content(metadata_mode=MetadataMode.NONE) for node in nodes],
            metadatas=[node.metadata for node in nodes],
        )
        return ids
