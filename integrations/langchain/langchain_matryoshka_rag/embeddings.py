"""``AdaptedEmbeddings``: any LangChain ``Embeddings`` followed by a Matryoshka adaptor, cut to ``dim``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor, as_numpy_adaptor
from matryoshka_rag.embeddings.adapted import AdaptedVectors, dim_alias
from matryoshka_rag.embeddings.providers import EmbeddingProvider, SentenceTransformerProvider
from matryoshka_rag.recipes.fit import fit_from_texts
from matryoshka_rag.scoring.recommend import chosen_dim

__all__ = ["AdaptedEmbeddings", "ProviderEmbeddings", "base_model_name"]


def base_model_name(base: Any) -> str | None:
    """The model name of a LangChain embeddings object: its ``model_name``, ``model`` or ``model_id``
    (first non-blank string), else that of its ``underlying_embeddings`` (``CacheBackedEmbeddings``)."""
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(base, attribute, None)
        if isinstance(value, str) and value.strip():
            return value
    inner = getattr(base, "underlying_embeddings", None)
    return base_model_name(inner) if inner is not None else None


class AdaptedEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings: the ``base`` model's vectors through a Matryoshka adaptor, first ``dim`` dims,
    unit L2 norm. Each vector equals ``adaptor.transform(base_vectors, dim)``.

    Example:
        .. code-block:: python

            from langchain_matryoshka_rag import AdaptedEmbeddings

            emb = AdaptedEmbeddings.from_pretrained(base=my_embeddings, path="adaptor/", dim=64)
            vectors = emb.embed_documents(["a text", "another"])  # 2 lists of 64 floats

    Behaviour (shared with the LlamaIndex wrapper, see ``matryoshka_rag.embeddings.adapted``): ``[]`` gives
    ``[]``; an empty or blank text raises ``InputError``; base vectors of the wrong dim raise
    ``AdaptorMismatchError`` naming both dims and the text; NaN/zero base vectors raise naming the text;
    ``dim`` must be 1..base_dim (``None``: all dims), checked at construction; a base model whose name
    (``model_name``/``model``/``model_id``) differs from the adaptor's ``base_model`` warns once.

    Give either ``path`` (an adaptor folder, loaded with its checksums verified) or ``adaptor`` (a
    ``NumpyAdaptor``, or a torch ``MatryoshkaAdaptor``, converted). The adaptor runs as numpy: serving needs no
    torch; ``fit`` needs ``pip install "matryoshka-rag[train]"``.
    Base-vector caching is LangChain's own: wrap the base in
    ``langchain_classic.embeddings.CacheBackedEmbeddings``; the adaptor itself costs well under 1 ms a text.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    base: Embeddings
    """The base embedding model."""
    path: str | None = None
    """Adaptor folder written by ``matryoshka_rag.save_adaptor`` (loaded when ``adaptor`` is not given)."""
    adaptor: NumpyAdaptor | None = Field(default=None, repr=False)
    """The adaptor (default: loaded from ``path``)."""
    dim: int | None = None
    """Output dims: the first ``dim`` of the adapted vector; ``None`` keeps all."""

    _vectors: AdaptedVectors = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        """Fields as keywords; ``dimensions=`` is another name for ``dim``, as ``OpenAIEmbeddings`` calls it."""
        if "dimensions" in data:
            data["dim"] = dim_alias(data.get("dim"), data.pop("dimensions"))
        if data.get("adaptor") is not None:
            data["adaptor"] = as_numpy_adaptor(data["adaptor"])
        super().__init__(**data)
        name = base_model_name(self.base)
        dim = data.get("dim")  # as given: pydantic would turn True into 1
        if self.adaptor is None:
            self._vectors = AdaptedVectors.load(self.path, dim, name)
            self.adaptor = self._vectors.adaptor
        else:
            self._vectors = AdaptedVectors(self.adaptor, dim, name, self.path)

    @classmethod
    def from_pretrained(
        cls,
        base: Embeddings,
        path: str | Path,
        dim: int | Literal["auto"] | None = None,
        dimensions: int | None = None,
        target: float | None = None,
        corpus_vectors: Any = None,
    ) -> AdaptedEmbeddings:
        """Wrap ``base`` with the adaptor saved in the folder ``path``, output cut to ``dim`` (or ``dimensions``).

        ``dim="auto"``: the smallest dim keeping ``target`` (default 0.99) of full-dim retrieval,
        estimated label-free (``matryoshka_rag.scoring.recommend.chosen_dim``: the adaptor's recorded estimate, or one
        measured on ``corpus_vectors``, base vectors of your corpus)."""
        adaptor = NumpyAdaptor.from_folder(path)
        dim = chosen_dim(adaptor, dim_alias(dim, dimensions), target, corpus_vectors)
        return cls(base=base, path=str(path), adaptor=adaptor, dim=dim)

    @classmethod
    def fit(
        cls,
        base: Embeddings,
        texts: Sequence[str],
        path: str | Path,
        dims: Sequence[int] | None = None,
        queries: Sequence[tuple[str, str]] | None = None,
        dim: int | Literal["auto"] | None = None,
        **config: Any,
    ) -> AdaptedEmbeddings:
        """Train an adaptor on ``base``'s vectors of ``texts``, save it to ``path``, return the wrapper.

        ``queries``: ``(query, relevant text)`` pairs -> supervised training, else unsupervised. ``config``:
        ``overwrite``, ``device``, ``progress``, ``unsupervised=``/``supervised=`` configs, or single settings
        such as ``max_steps=200`` (see ``matryoshka_rag.recipes.fit.fit_from_texts``).
        """
        fit_from_texts(
            base.embed_documents,
            texts,
            path,
            embed_query=base.embed_query,
            pairs=queries,
            dims=dims,
            base_model=base_model_name(base),
            **config,
        )
        return cls.from_pretrained(base, path, dim)

    @property
    def output_dim(self) -> int:
        """Length of every returned vector."""
        return self._vectors.dim

    @property
    def dimensions(self) -> int:
        """Length of every returned vector (``output_dim``; ``dimensions=`` at construction sets ``dim``)."""
        return self._vectors.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed n texts -> n lists of ``output_dim`` floats."""
        return self._vectors.embed(self.base.embed_documents, texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed a query -> ``output_dim`` floats."""
        return self._vectors.embed_one(self.base.embed_query, text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents` through the base's ``aembed_documents``."""
        return await self._vectors.aembed(self.base.aembed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query` through the base's ``aembed_query``."""
        return await self._vectors.aembed_one(self.base.aembed_query, text)


class ProviderEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings over a matryoshka-rag provider: by default the offline sentence-transformers model
    ``model_name`` (e.g. the bundled ``"all-MiniLM-L6-v2"``), loaded on first use; or any given ``provider``.
    Vectors are the provider's as they are (documents and queries alike)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    model_name: str = "all-MiniLM-L6-v2"
    """Local sentence-transformers model name or folder (never downloaded)."""
    device: str | None = None
    """Device of the model (default: the provider's choice)."""
    provider: EmbeddingProvider | None = Field(default=None, exclude=True, repr=False)
    """A ready provider (e.g. shared with other code); default: built from ``model_name``."""

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if self.provider is None:
            self.provider = SentenceTransformerProvider(self.model_name, device=self.device)
        else:
            self.model_name = self.provider.name

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed n texts -> n lists of d floats."""
        return self.provider(list(texts)).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        """Embed one text -> d floats."""
        return self.embed_documents([text])[0]
