"""``MatryoshkaVectorStore``: a LangChain ``VectorStore`` over a Chroma ``MatryoshkaStore``.

A drop-in for ``langchain_chroma.Chroma``: it takes the user's base ``Embeddings`` (documents through
``embed_documents``, queries through ``embed_query``) and hands the base vectors to the store, which applies
the adaptor (small-dim search, rerank at the large dim).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.api import ClientAPI
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from langchain_matryoshka_rag.embeddings import base_model_name
from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from matryoshka_rag.embeddings.adapted import warn_if_other_model
from matryoshka_rag.errors import InputError
from matryoshka_rag.store.input_checks import check_base_vectors, check_k, check_lengths, check_unique_ids
from matryoshka_rag.store.store import Hit, MatryoshkaStore, open_store

if TYPE_CHECKING:
    from matryoshka_rag.adaptor.torch_module import MatryoshkaAdaptor

__all__ = ["MatryoshkaVectorStore", "hit_document"]

DEFAULT_K = 4
DEFAULT_COLLECTION = "langchain"


def hit_document(hit: Hit) -> Document:
    """A hit as a ``Document``: id, text and the metadata as stored (no score keys)."""
    return Document(id=hit.id, page_content=hit.document or "", metadata=dict(hit.metadata))


def _where(filter: dict[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any] | None:  # noqa: A002
    """The Chroma ``where`` of a search: ``filter`` (or ``where``); any other keyword is refused by name."""
    where = kwargs.pop("where", None)
    if filter is not None and where is not None:
        raise InputError("give the metadata filter as filter= or where=, not both")
    if kwargs:
        raise InputError(f"unsupported search arguments {sorted(kwargs)}: this store takes k and filter")
    return filter if filter is not None else where


def _parts(n: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, n, size)]


class MatryoshkaVectorStore(VectorStore):
    """LangChain vector store on Chroma through a Matryoshka adaptor.

    Example:
        .. code-block:: python

            # was: Chroma(collection_name="docs", embedding_function=emb, persist_directory="db/")
            store = MatryoshkaVectorStore("docs", emb, persist_directory="db/", adaptor="adaptor/")
            store.add_documents(docs)
            store.as_retriever(search_kwargs={"k": 4, "filter": {"year": 2024}}).invoke("question")

    Args:
        collection_name: name of the store (its Chroma collections are derived from it).
        embedding_function: the base model the adaptor was trained on (its dim must be the adaptor's base dim).
        persist_directory: embedded Chroma folder; or ``host``/``port`` of a ``chroma run`` server; or a
            ``client``; none of them: an in-memory Chroma.
        adaptor: a ``NumpyAdaptor``, a ``MatryoshkaAdaptor`` or its folder; None reopens an existing store with its recorded one.
        store: an open ``MatryoshkaStore`` to use instead (then no location or adaptor is given).
        small_dim, large_dim, **store_kwargs: passed to ``MatryoshkaStore``.

    Scores: ``similarity_search_with_score`` gives the cosine distance ``1 - cosine`` at the rerank dim (lower
    is closer), as ``Chroma`` does in cosine space; relevance scores are the cosine. The stage and the
    per-dim cosines of each result come from :meth:`similarity_search_with_hits`, never in the metadata.
    """

    def __init__(
        self,
        collection_name: str = DEFAULT_COLLECTION,
        embedding_function: Embeddings | None = None,
        persist_directory: str | os.PathLike | None = None,
        *,
        adaptor: NumpyAdaptor | MatryoshkaAdaptor | str | os.PathLike | None = None,
        host: str | None = None,
        port: int = 8000,
        client: ClientAPI | None = None,
        store: MatryoshkaStore | None = None,
        small_dim: int | None = None,
        large_dim: int | None = None,
        **store_kwargs: Any,
    ) -> None:
        if not isinstance(embedding_function, Embeddings):
            raise InputError(
                "embedding_function must be the LangChain Embeddings the adaptor was trained on, "
                f"got {type(embedding_function).__name__}"
            )
        store = open_store(
            store,
            collection_name,
            adaptor,
            client=client,
            path=persist_directory,
            host=host,
            port=port,
            small_dim=small_dim,
            large_dim=large_dim,
            **store_kwargs,
        )
        self.store = store
        self._embedding = embedding_function
        name = base_model_name(embedding_function)
        warn_if_other_model(store.adaptor, name)
        self._model = name or type(embedding_function).__name__

    @property
    def embeddings(self) -> Embeddings:
        """The base embedding model."""
        return self._embedding

    def _select_relevance_score_fn(self):
        return self._cosine_relevance_score_fn

    # -- writing -------------------------------------------------------------------------------------

    def _prepare(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None,
        ids: list[str | None] | None,
        batch_size: int | None,
        kwargs: dict[str, Any],
    ) -> tuple[list[str], list[str], int]:
        """Texts, their ids (missing ones made uuid4) and the batch size, all checked."""
        if kwargs:
            raise InputError(
                f"unsupported arguments {sorted(kwargs)}: add_texts takes metadatas, ids, batch_size"
            )
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("texts must be strings")
        check_lengths(len(texts), "texts", metadatas=metadatas, ids=ids)
        ids = [i if i is not None else str(uuid.uuid4()) for i in ids] if ids is not None else None
        ids = ids or [str(uuid.uuid4()) for _ in texts]
        size = check_k(batch_size, "batch_size") if batch_size is not None else max(len(texts), 1)
        return texts, check_unique_ids(ids), size

    def _write(
        self, ids: list[str], texts: list[str], vectors: Any, metadatas: list[dict] | None
    ) -> list[str]:
        base = check_base_vectors(vectors, len(texts), self.store.adaptor.config.base_dim, self._model)
        self.store.upsert(ids, texts=texts, embeddings=base, metadatas=metadatas)
        return ids

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        ids: list[str | None] | None = None,
        *,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed n texts with ``embed_documents`` and upsert them, ``batch_size`` at a time (default: all);
        returns their ids (given, else uuid4)."""
        texts, ids, size = self._prepare(texts, metadatas, ids, batch_size, kwargs)
        for part in _parts(len(texts), size):
            vectors = self._embedding.embed_documents(texts[part])
            self._write(ids[part], texts[part], vectors, metadatas[part] if metadatas else None)
        return ids

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str | None] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """:meth:`add_texts` through ``aembed_documents``; the writes run in a worker thread."""
        texts, ids, size = self._prepare(texts, metadatas, ids, batch_size, kwargs)
        for part in _parts(len(texts), size):
            vectors = await self._embedding.aembed_documents(texts[part])
            meta = metadatas[part] if metadatas else None
            await run_in_executor(None, self._write, ids[part], texts[part], vectors, meta)
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> None:
        """Remove ``ids`` (unknown ones are ignored), or the records matching ``where=``."""
        where = kwargs.pop("where", None)
        if kwargs:
            raise InputError(f"unsupported arguments {sorted(kwargs)}: delete takes ids or where")
        if ids is None and where is None:
            raise InputError("give ids (or where=) to delete; store.clear() removes every record")
        if ids is not None:
            if isinstance(ids, str):
                raise InputError("ids must be a list of strings, got one string")
            ids = list(dict.fromkeys(ids))
            if not ids:
                return
        self.store.delete(ids=ids, where=where)

    # -- reading -------------------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents of ``ids`` in the order given; unknown ids are left out."""
        wanted = list(dict.fromkeys(ids))
        found = self.store.get(ids=wanted) if wanted else {}
        return [
            Document(id=i, page_content=found[i][0] or "", metadata=dict(found[i][1]))
            for i in wanted
            if i in found
        ]

    def _query_vector(self, vector: Any) -> np.ndarray:
        return check_base_vectors(vector, 1, self.store.adaptor.config.base_dim, self._model)[0]

    def _search(self, vector: Any, k: int, where: dict[str, Any] | None) -> list[tuple[Document, Hit]]:
        hits = self.store.query(self._query_vector(vector), k=k, where=where)
        return [(hit_document(hit), hit) for hit in hits]

    def similarity_search_with_hits(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[tuple[Document, Hit]]:
        """The k closest documents with their ``Hit`` (``score``, per-dim ``scores``, ``stage``); fewer when
        fewer records match."""
        k, where = check_k(k), _where(filter, kwargs)
        return self._search(self._embedding.embed_query(query), k, where)

    async def asimilarity_search_with_hits(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[tuple[Document, Hit]]:
        """:meth:`similarity_search_with_hits` through ``aembed_query``; the search runs in a worker thread."""
        k, where = check_k(k), _where(filter, kwargs)
        vector = await self._embedding.aembed_query(query)
        return await run_in_executor(None, self._search, vector, k, where)

    def similarity_search_with_score(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[tuple[Document, float]]:
        """The k closest documents with their cosine distance ``1 - cosine`` (lower is closer)."""
        return [
            (doc, 1.0 - hit.score)
            for doc, hit in self.similarity_search_with_hits(query, k, filter, **kwargs)
        ]

    async def asimilarity_search_with_score(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`."""
        found = await self.asimilarity_search_with_hits(query, k, filter, **kwargs)
        return [(doc, 1.0 - hit.score) for doc, hit in found]

    def similarity_search(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[Document]:
        """The k closest documents to ``query`` (optionally ``filter``-ed on metadata), closest first."""
        return [doc for doc, _ in self.similarity_search_with_hits(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[Document]:
        """Async :meth:`similarity_search`."""
        return [doc for doc, _ in await self.asimilarity_search_with_hits(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,  # noqa: A002
        **kwargs: Any,
    ) -> list[Document]:
        """The k closest documents to a base vector ``(base_dim,)`` of the embedding model."""
        k, where = check_k(k), _where(filter, kwargs)
        return [doc for doc, _ in self._search(embedding, k, where)]

    # -- maximal marginal relevance ------------------------------------------------------------------

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = DEFAULT_K,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,  # noqa: A002
        **kwargs: Any,
    ) -> list[Document]:
        """MMR over the ``fetch_k`` closest records to a base vector, in the rerank space the store scores
        in; ``k`` documents in MMR order."""
        k, fetch_k, where = check_k(k), check_k(fetch_k, "fetch_k"), _where(filter, kwargs)
        if not 0.0 <= lambda_mult <= 1.0:
            raise InputError(f"lambda_mult must be between 0 and 1, got {lambda_mult}")
        base = self._query_vector(embedding)
        found = self._search(base, max(k, fetch_k), where)
        if not found:
            return []
        stored = self.store.rerank_vectors([hit.id for _, hit in found])
        chosen = maximal_marginal_relevance(
            self.store.rerank_query(base), [stored[hit.id] for _, hit in found], lambda_mult, k
        )
        return [found[i][0] for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = DEFAULT_K,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,  # noqa: A002
        **kwargs: Any,
    ) -> list[Document]:
        """MMR for a query text (embedded with ``embed_query``); see the ``_by_vector`` variant."""
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs
        )

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = DEFAULT_K,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,  # noqa: A002
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search` (``aembed_query``, search in a worker thread)."""
        vector = await self._embedding.aembed_query(query)
        return await run_in_executor(
            None,
            self.max_marginal_relevance_search_by_vector,
            vector,
            k,
            fetch_k,
            lambda_mult,
            filter,
            **kwargs,
        )

    # -- construction --------------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str | None] | None = None,
        collection_name: str = DEFAULT_COLLECTION,
        **kwargs: Any,
    ) -> MatryoshkaVectorStore:
        """A store (``kwargs``: those of the constructor, e.g. ``adaptor=``, ``persist_directory=``) holding
        ``texts``."""
        store = cls(collection_name, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
