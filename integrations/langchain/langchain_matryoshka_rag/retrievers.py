"""``MatryoshkaRetriever``: a LangChain retriever over a Chroma ``MatryoshkaStore`` (small dims, then rerank)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from matryoshka_rag.retriever import Hit, MatryoshkaStore

__all__ = ["MatryoshkaRetriever", "hit_to_document"]


def hit_to_document(hit: Hit) -> Document:
    """A hit as a ``Document``: its metadata plus ``matryoshka_stage`` and ``matryoshka_score_<dim>``."""
    scores = {f"matryoshka_score_{dim}": score for dim, score in hit.scores.items()}
    metadata = {**hit.metadata, "matryoshka_stage": hit.stage, **scores}
    return Document(id=hit.id, page_content=hit.document or "", metadata=metadata)


class MatryoshkaRetriever(BaseRetriever):
    """Retrieve with a ``MatryoshkaStore``: small-dim HNSW shortlist, exact large-dim rerank, widened when inconclusive.

    Example:
        .. code-block:: python

            store = MatryoshkaStore("docs", "adaptor/", path="chroma/", provider=SentenceTransformerProvider(...))
            retriever = MatryoshkaRetriever(store=store, k=4)
            retriever.add_documents(docs)
            retriever.invoke("what is X?", where={"year": {"$gte": 2020}})

    ``k`` and ``where`` (a Chroma metadata filter; ``filter`` as in ``langchain_chroma`` works too) can be
    given per call as ``invoke`` keyword arguments.
    The store needs an embedding provider (base model) for text queries and ``add_documents``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: MatryoshkaStore
    """The Chroma collection pair searched."""
    k: int = 4
    """Number of documents returned."""
    where: dict[str, Any] | None = None
    """Default Chroma ``where`` filter on metadata."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        where = kwargs.get("where", kwargs.get("filter", self.where))
        hits = self.store.query(query, k=kwargs.get("k", self.k), where=where)
        return [hit_to_document(hit) for hit in hits]

    def add_documents(self, documents: Sequence[Document], ids: Sequence[str] | None = None) -> list[str]:
        """Embed and upsert ``documents`` (ids: ``ids``, else each ``Document.id``, else new UUIDs)."""
        if ids is None:
            ids = [doc.id or str(uuid.uuid4()) for doc in documents]
        ids = list(ids)
        self.store.upsert(
            ids,
            texts=[doc.page_content for doc in documents],
            metadatas=[doc.metadata for doc in documents],
        )
        return ids
