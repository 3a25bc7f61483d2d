"""``MatryoshkaVectorStore``: a LangChain ``VectorStore`` over a Chroma ``MatryoshkaStore``.

A drop-in for ``langchain_chroma.Chroma``: it takes the user's base ``Embeddings`` (documents through
``embed_documents``, queries through ``embed_query``) and hands the base vectors to the store, which applies
the adaptor (small-dim search, rerank at the large dim).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

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
from matryoshka_rag.store.distances import Space, chroma_distance
from matryoshka_rag.store.input_checks import check_base_vectors, check_k, check_lengths, check_unique_ids
from matryoshka_rag.store.store import Hit, MatryoshkaStore, open_store
from matryoshka_rag.validation import check_int

if TYPE_CHECKING:
    from matryoshka_rag.adaptor.torch_module import MatryoshkaAdaptor

__all__ = ["MatryoshkaVectorStore", "hit_document"]

DEFAULT_K = 4
DEFAULT_COLLECTION = "langchain"
STAGE_EXACT = "exact"  # a where_document search: every matching record scored at the rerank dim
_GET_INCLUDE = ("metadatas", "documents")
# distance -> relevance in each HNSW space, as ``langchain_chroma.Chroma._select_relevance_score_fn`` picks it
RELEVANCE_SCORE_FNS: dict[Space, Callable[[float], float]] = {
    "cosine": VectorStore._cosine_relevance_score_fn,
    "l2": VectorStore._euclidean_relevance_score_fn,
    "ip": VectorStore._max_inner_product_relevance_score_fn,
}


def hit_document(hit: Hit) -> Document:
    """A hit as a ``Document``: id, text and the metadata as stored (no score keys)."""
    return Document(id=hit.id, page_content=hit.document or "", metadata=dict(hit.metadata))


def _where(
    filter: dict[str, Any] | None,  # noqa: A002
    kwargs: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The Chroma ``where`` and ``where_document`` of a search: ``filter`` (or ``where``); any other keyword
    is refused by name."""
    where = kwargs.pop("where", None)
    if filter is not None and where is not None:
        raise InputError("give the metadata filter as filter= or where=, not both")
    if set(kwargs) - {"where_document"}:
        raise InputError(
            f"unsupported search arguments {sorted(kwargs)}: this store takes k, filter and where_document"
        )
    return filter if filter is not None else where, kwargs.get("where_document")


def _include(include: list[str] | None) -> list[str]:
    """What ``get`` returns, as ``Chroma.get`` names it (default metadatas and documents)."""
    if include is None:
        return list(_GET_INCLUDE)
    other = [item for item in include if item not in _GET_INCLUDE]
    if other:
        raise InputError(
            f"include {other}: get returns documents and metadatas (the store keeps adapted vectors, "
            "not the embeddings it was given)"
        )
    return list(include)


def document_matches(document: str | None, where_document: Mapping[str, Any]) -> bool:
    """Chroma's ``where_document`` on one stored document: ``$contains``/``$not_contains`` (case-sensitive),
    nested in ``$and``/``$or``; any other operator is refused by name."""
    if not isinstance(where_document, Mapping) or len(where_document) != 1:
        raise InputError(f"where_document must be a dict of one operator, got {where_document!r}")
    ((operator, value),) = where_document.items()
    if operator in ("$and", "$or") and isinstance(value, list) and value:
        found = [document_matches(document, clause) for clause in value]
        return all(found) if operator == "$and" else any(found)
    if operator in ("$contains", "$not_contains") and isinstance(value, str):
        return (value in (document or "")) == (operator == "$contains")
    raise InputError(
        f"where_document {dict(where_document)}: this store applies $contains and $not_contains (a string), "
        "in $and/$or (a non-empty list)"
    )


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
        relevance_score_fn: distance -> relevance score, as ``Chroma`` takes it; None: the one of the store's
            ``space``, as ``Chroma`` picks it for its collection's space.
        small_dim, large_dim, **store_kwargs: passed to ``MatryoshkaStore`` (``space=``: "cosine" by default,
            "l2" or "ip").

    Scores: ``similarity_search_with_score`` gives Chroma's distance in the store's ``space`` between the
    rerank-dim vectors (lower is closer): ``1 - cosine`` in "cosine" and "ip" space, the squared L2
    ``2 - 2 cosine`` in "l2" space; relevance scores come from it as ``Chroma``'s do (the cosine in "cosine"
    space). The stage and the per-dim cosines of each result come from :meth:`similarity_search_with_hits`,
    never in the metadata.
    ``where_document`` (``$contains``/``$not_contains``) filters ``get`` and the searches over the stored
    documents; a search with it scores every matching record exactly at the rerank dim.
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
        relevance_score_fn: Callable[[float], float] | None = None,
        **store_kwargs: Any,
    ) -> None:
        if not isinstance(embedding_function, Embeddings):
            raise InputError(
                "embedding_function must be the LangChain Embeddings the adaptor was trained on, "
                f"got {type(embedding_function).__name__}"
            )
        if relevance_score_fn is not None and not callable(relevance_score_fn):
            raise InputError(
                "relevance_score_fn must map a distance to a relevance score, "
                f"got {type(relevance_score_fn).__name__}; None uses the store's space"
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
        self.override_relevance_score_fn = relevance_score_fn

    @property
    def embeddings(self) -> Embeddings:
        """The base embedding model."""
        return self._embedding

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """``relevance_score_fn`` if given, else the one of the store's space (``RELEVANCE_SCORE_FNS``)."""
        return self.override_relevance_score_fn or RELEVANCE_SCORE_FNS[self.store.space]

    def _with_distances(self, found: list[tuple[Document, Hit]]) -> list[tuple[Document, float]]:
        """Documents with Chroma's distance in the store's space at their hit's cosine."""
        return [(doc, chroma_distance(hit.score, self.store.space)) for doc, hit in found]

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

    def update_document(self, document_id: str, document: Document) -> None:
        """:meth:`update_documents` of one document."""
        self.update_documents([document_id], [document])

    def update_documents(self, ids: list[str], documents: list[Document]) -> None:
        """Re-embed the stored ``ids`` with the texts of ``documents`` and merge in their metadata, as
        ``Chroma``'s ``update`` does; ids not in the store are skipped, as Chroma skips them."""
        check_lengths(len(ids), "ids", documents=documents)
        stored = self.store.get(ids=check_unique_ids(ids)) if ids else {}
        chosen = [(i, document) for i, document in zip(ids, documents) if i in stored]
        if not chosen:
            return
        texts = [document.page_content for _, document in chosen]
        metadatas = [document.metadata for _, document in chosen]
        self._write([i for i, _ in chosen], texts, self._embedding.embed_documents(texts), metadatas)

    def delete_collection(self) -> None:
        """Delete the store and all it holds (``MatryoshkaStore.drop``), as ``Chroma.delete_collection`` does:
        every later call but :meth:`reset_collection` raises ``ValueError`` (``StoreDroppedError``)."""
        self.store.drop()

    def reset_collection(self) -> None:
        """Delete the store and make it again, empty, with its adaptor, layout and HNSW settings
        (``MatryoshkaStore.reset``), as ``Chroma.reset_collection`` does; also after
        :meth:`delete_collection`, where ``Chroma``'s raises although its error names it."""
        self.store.reset()

    # -- reading -------------------------------------------------------------------------------------

    def get(
        self,
        ids: str | list[str] | None = None,
        where: dict[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        where_document: dict[str, Any] | None = None,
        include: list[str] | None = None,
    ) -> dict[str, Any]:
        """Stored records as ``Chroma.get`` returns them: ``ids`` (or all), filtered by ``where`` and
        ``where_document``, from ``offset``, at most ``limit``, in Chroma's order; ``include`` documents
        and/or metadatas (a record without metadata has None)."""
        included = _include(include)
        start = 0 if offset is None else check_int("offset", offset, minimum=0)
        end = None if limit is None else start + check_int("limit", limit, minimum=0)
        if where_document is not None:
            document_matches("", where_document)  # a bad filter is refused even when nothing is stored
        records = self.store.get(
            ids=[ids] if isinstance(ids, str) else ids,
            where=where,
            limit=end if where_document is None else None,
        )
        found = [
            (i, record)
            for i, record in records.items()
            if where_document is None or document_matches(record[0], where_document)
        ][start:end]
        return {
            "ids": [i for i, _ in found],
            "embeddings": None,
            "documents": [r[0] for _, r in found] if "documents" in included else None,
            "uris": None,
            "included": included,
            "data": None,
            "metadatas": [dict(r[1]) or None for _, r in found] if "metadatas" in included else None,
        }

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

    def _search(
        self, vector: Any, k: int, where: dict[str, Any] | None, where_document: dict[str, Any] | None
    ) -> list[tuple[Document, Hit]]:
        base = self._query_vector(vector)
        if where_document is None:
            hits = self.store.query(base, k=k, where=where)
        else:
            hits = self._document_search(base, k, where, where_document)
        return [(hit_document(hit), hit) for hit in hits]

    def _document_search(
        self, base: np.ndarray, k: int, where: dict[str, Any] | None, where_document: dict[str, Any]
    ) -> list[Hit]:
        """The k best records passing ``where`` whose document matches ``where_document``: no index holds
        the documents, so every match is read and scored exactly at the rerank dim (stage ``"exact"``)."""
        document_matches("", where_document)  # a bad filter is refused even when nothing is stored
        records = self.store.get(where=where)
        matching = [i for i, (document, _) in records.items() if document_matches(document, where_document)]
        stored = self.store.rerank_vectors(matching) if matching else {}
        query = self.store.rerank_query(base)
        scores = {i: float(vector @ query) for i, vector in stored.items()}
        best = sorted(scores, key=scores.__getitem__, reverse=True)[:k]
        dim = self.store.large_dim
        return [Hit(i, scores[i], {dim: scores[i]}, STAGE_EXACT, *records[i]) for i in best]

    def similarity_search_with_hits(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[tuple[Document, Hit]]:
        """The k closest documents with their ``Hit`` (``score``, per-dim ``scores``, ``stage``); fewer when
        fewer records match."""
        k, (where, documents) = check_k(k), _where(filter, kwargs)
        return self._search(self._embedding.embed_query(query), k, where, documents)

    async def asimilarity_search_with_hits(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[tuple[Document, Hit]]:
        """:meth:`similarity_search_with_hits` through ``aembed_query``; the search runs in a worker thread."""
        k, (where, documents) = check_k(k), _where(filter, kwargs)
        vector = await self._embedding.aembed_query(query)
        return await run_in_executor(None, self._search, vector, k, where, documents)

    def similarity_search_with_score(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[tuple[Document, float]]:
        """The k closest documents with their distance (lower is closer), as ``Chroma`` gives it in the
        store's space."""
        return self._with_distances(self.similarity_search_with_hits(query, k, filter, **kwargs))

    async def asimilarity_search_with_score(
        self,
        query: str,
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,  # noqa: A002
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`."""
        return self._with_distances(await self.asimilarity_search_with_hits(query, k, filter, **kwargs))

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
        k, (where, documents) = check_k(k), _where(filter, kwargs)
        return [doc for doc, _ in self._search(embedding, k, where, documents)]

    def similarity_search_by_vector_with_relevance_scores(
        self,
        embedding: list[float],
        k: int = DEFAULT_K,
        filter: dict[str, Any] | None = None,  # noqa: A002
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """The k closest documents to a base vector with their distance (lower is closer), as ``Chroma``'s
        method of that name gives distances in the store's space."""
        k, (where, documents) = check_k(k), _where(filter, kwargs)
        return self._with_distances(self._search(embedding, k, where, documents))

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
        k, fetch_k, (where, documents) = check_k(k), check_k(fetch_k, "fetch_k"), _where(filter, kwargs)
        if not 0.0 <= lambda_mult <= 1.0:
            raise InputError(f"lambda_mult must be between 0 and 1, got {lambda_mult}")
        base = self._query_vector(embedding)
        found = self._search(base, max(k, fetch_k), where, documents)
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
    def from_chroma(
        cls,
        collection_name: str,
        embedding_function: Embeddings,
        persist_directory: str | os.PathLike,
        *,
        out: str | os.PathLike | None = None,
        dim: int | Literal["auto"] = 64,
        relevance_score_fn: Callable[[float], float] | None = None,
        **shrink_kwargs: Any,
    ) -> MatryoshkaVectorStore:
        """The plain Chroma collection ``collection_name`` at ``persist_directory`` (e.g. one ``Chroma``
        filled) as a store, without re-embedding: ``matryoshka-rag shrink`` in Python
        (``matryoshka_rag.recipes.shrink.shrink``, which needs the ``train`` extra): an adaptor trained on the
        stored vectors, the store written to ``out`` (default ``<persist_directory>.matryoshka``) and checked
        against the original, which is only read. ``relevance_score_fn``: as the constructor's;
        ``shrink_kwargs``: shrink's (``target``, ``sample``, ``max_steps``, ``progress``...)."""
        from matryoshka_rag.recipes.shrink import shrink

        model = base_model_name(embedding_function) or "unknown"
        report = shrink(
            persist_directory, collection_name, dim=dim, out=out, base_model=model, **shrink_kwargs
        )
        return cls(
            report.store,
            embedding_function,
            persist_directory=report.store_path,
            relevance_score_fn=relevance_score_fn,
        )

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
