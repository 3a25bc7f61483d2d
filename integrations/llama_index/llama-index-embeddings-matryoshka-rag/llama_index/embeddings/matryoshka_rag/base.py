"""``AdaptedEmbedding``: any LlamaIndex embedding followed by a Matryoshka adaptor, cut to ``dim``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny
from llama_index.core.schema import BaseNode, MetadataMode

from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from matryoshka_rag.embeddings.adapted import AdaptedVectors, dim_alias
from matryoshka_rag.embeddings.providers import EmbeddingProvider, SentenceTransformerProvider
from matryoshka_rag.errors import InputError
from matryoshka_rag.recipes.fit import fit_from_texts
from matryoshka_rag.scoring.recommend import chosen_dim

from . import quiet_base

if TYPE_CHECKING:
    from matryoshka_rag.adaptor.torch_module import MatryoshkaAdaptor

__all__ = ["AdaptedEmbedding", "ProviderEmbedding", "load_base_embedding"]


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def load_base_embedding(data: dict[str, Any]) -> BaseEmbedding:
    """Rebuild a base embedding from its ``to_dict()``: LlamaIndex's ``load_embed_model`` for the classes it
    knows, else the one imported ``BaseEmbedding`` subclass whose ``class_name()`` matches."""
    from llama_index.core.embeddings.loading import RECOGNIZED_EMBEDDINGS, load_embed_model

    name = data.get("class_name")
    if name in RECOGNIZED_EMBEDDINGS:
        return load_embed_model(data)
    matches = [cls for cls in _subclasses(BaseEmbedding) if cls.class_name() == name]
    if len(matches) != 1:
        raise InputError(
            f"cannot rebuild the base embedding {name!r} from its dict ({len(matches)} imported classes have "
            "that class_name): import its class, or pass the base model: AdaptedEmbedding.from_dict(data, base=...)"
        )
    return matches[0].from_dict(data)


class AdaptedEmbedding(BaseEmbedding):
    """LlamaIndex embedding: the ``base`` model's vectors through a Matryoshka adaptor, first ``dim`` dims,
    unit L2 norm. Each vector equals ``adaptor.transform(base_vectors, dim)``.

    Example:
        .. code-block:: python

            from llama_index.core import Settings
            from llama_index.embeddings.matryoshka_rag import AdaptedEmbedding

            Settings.embed_model = AdaptedEmbedding.from_pretrained(base=my_embed_model, path="adaptor/", dim=64)

    A batch of texts (``embed_batch_size``, default the base's) goes through the base at once, then through
    the adaptor at once. The base's ``embeddings_cache`` and ``rate_limiter`` apply, but not its embedding
    events: this wrapper emits them (callbacks such as ``TokenCountingHandler`` and instrumentation), so each
    text is counted once. ``dimensions=`` is an alias of ``dim``.
    Behaviour (shared with the LangChain wrapper, see ``matryoshka_rag.embeddings.adapted``): ``[]`` gives
    ``[]``; an empty or blank text raises ``InputError``; base vectors of the wrong dim raise
    ``AdaptorMismatchError`` naming both dims; NaN/zero base vectors raise naming the text (its index within
    the batch LlamaIndex passes, and its start); ``dim`` must be 1..base_dim (``None``: all), checked at
    construction; a base ``model_name`` other than the adaptor's ``base_model`` warns once.

    Serialisation: ``to_dict()`` holds the base (its own ``to_dict()``), the adaptor folder ``path``, ``dim``
    and the adaptor's fingerprint; ``from_dict()`` rebuilds the base (see :func:`load_base_embedding`, or pass
    ``base=``), re-loads the adaptor from ``path`` and raises ``AdaptorMismatchError`` if the folder now holds
    another adaptor. An ``IngestionPipeline`` cache keyed on this dict thus misses when the adaptor changes.
    """

    base: SerializeAsAny[BaseEmbedding] = Field(description="The base embedding model.")
    path: str | None = Field(
        default=None, description="Adaptor folder, written by matryoshka_rag.save_adaptor."
    )
    dim: int | None = Field(
        default=None, description="Output dims (a prefix of the adapted vector); None: all."
    )
    adaptor_fingerprint: str | None = Field(
        default=None, description="Fingerprint of the adaptor; re-checked when rebuilt from a dict."
    )

    _vectors: AdaptedVectors = PrivateAttr()

    def __init__(
        self,
        base: BaseEmbedding | dict[str, Any],
        path: str | Path | None = None,
        dim: int | None = None,
        adaptor: NumpyAdaptor | MatryoshkaAdaptor | None = None,
        adaptor_fingerprint: str | None = None,
        dimensions: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Give ``path`` (an adaptor folder) or ``adaptor`` (a ``NumpyAdaptor``, or a torch ``MatryoshkaAdaptor``,
        converted; then ``to_dict`` cannot re-load it). The adaptor runs as numpy: serving needs no torch.
        ``dimensions``: another name for ``dim``, as LlamaIndex's ``OpenAIEmbedding`` calls it."""
        dim = dim_alias(dim, dimensions)
        if isinstance(base, dict):
            base = load_base_embedding(base)
        if adaptor is None:
            vectors = AdaptedVectors.load(path, dim, base.model_name)
        else:
            vectors = AdaptedVectors(adaptor, dim, base.model_name, path)
        vectors.check_fingerprint(
            adaptor_fingerprint,
            "this embedding",
            "drop 'adaptor_fingerprint' from the dict to accept the new adaptor",
        )
        kwargs.setdefault("embed_batch_size", base.embed_batch_size)
        kwargs.setdefault("model_name", f"matryoshka-rag({base.model_name}, dim={vectors.dim})")
        super().__init__(
            base=base,
            path=vectors.path,
            dim=dim,
            adaptor_fingerprint=vectors.fingerprint,
            **kwargs,
        )
        self._vectors = vectors

    @classmethod
    def class_name(cls) -> str:
        return "AdaptedEmbedding"

    @classmethod
    def from_pretrained(
        cls,
        base: BaseEmbedding,
        path: str | Path,
        dim: int | Literal["auto"] | None = None,
        target: float | None = None,
        corpus_vectors: Any = None,
        **kwargs: Any,
    ) -> AdaptedEmbedding:
        """Wrap ``base`` with the adaptor saved in the folder ``path``, output cut to ``dim``.

        ``dim="auto"``: the smallest dim keeping ``target`` (default 0.99) of full-dim retrieval,
        estimated label-free (``matryoshka_rag.scoring.recommend.chosen_dim``: the adaptor's recorded estimate, or one
        measured on ``corpus_vectors``, base vectors of your corpus)."""
        adaptor = NumpyAdaptor.from_folder(path)
        dim = chosen_dim(adaptor, dim_alias(dim, kwargs.pop("dimensions", None)), target, corpus_vectors)
        return cls(base=base, path=path, adaptor=adaptor, dim=dim, **kwargs)

    @classmethod
    def fit(
        cls,
        base: BaseEmbedding,
        nodes_or_texts: Sequence[BaseNode | str],
        path: str | Path,
        dims: Sequence[int] | None = None,
        queries: Sequence[tuple[str, str]] | None = None,
        dim: int | Literal["auto"] | None = None,
        **config: Any,
    ) -> AdaptedEmbedding:
        """Train an adaptor on ``base``'s vectors of nodes (their embedding text) or texts, save it to ``path``,
        return the wrapper.

        ``queries``: ``(query, relevant text)`` pairs -> supervised training, else unsupervised. ``config``:
        ``overwrite``, ``device``, ``progress``, ``unsupervised=``/``supervised=`` configs, or single settings
        such as ``max_steps=200`` (see ``matryoshka_rag.recipes.fit.fit_from_texts``).
        """
        texts = [
            item.get_content(metadata_mode=MetadataMode.EMBED) if isinstance(item, BaseNode) else item
            for item in nodes_or_texts
        ]
        fit_from_texts(
            base.get_text_embedding_batch,
            texts,
            path,
            embed_query=base.get_query_embedding,
            pairs=queries,
            dims=dims,
            base_model=base.model_name,
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

    # The base is called without its own embedding events: this wrapper's public methods emit one set.
    def _get_query_embedding(self, query: str) -> Embedding:
        return self._vectors.embed_one(lambda text: quiet_base.embed_one(self.base, text, query=True), query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._vectors.embed_one(lambda one: quiet_base.embed_one(self.base, one, query=False), text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._vectors.embed(lambda batch: quiet_base.embed_texts(self.base, batch), texts)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._vectors.aembed_one(
            lambda text: quiet_base.aembed_one(self.base, text, query=True), query
        )

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._vectors.aembed_one(
            lambda one: quiet_base.aembed_one(self.base, one, query=False), text
        )

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._vectors.aembed(lambda batch: quiet_base.aembed_texts(self.base, batch), texts)


class ProviderEmbedding(BaseEmbedding):
    """LlamaIndex embedding over a matryoshka-rag provider: by default the offline sentence-transformers model
    ``model_name`` (e.g. the bundled ``"all-MiniLM-L6-v2"``), loaded on first use; or any given ``provider``.
    Vectors are the provider's as they are (texts and queries alike). Serialisable by ``model_name``."""

    device: str | None = Field(default=None, description="Device of the model (default: the provider's).")

    _provider: EmbeddingProvider = PrivateAttr()

    def __init__(
        self, model_name: str = "all-MiniLM-L6-v2", provider: EmbeddingProvider | None = None, **kwargs: Any
    ) -> None:
        """``provider``: a ready provider (e.g. shared with other code); default: built from ``model_name``."""
        if provider is None:
            provider = SentenceTransformerProvider(model_name, device=kwargs.get("device"))
        kwargs.setdefault("embed_batch_size", 64)
        super().__init__(model_name=provider.name, **kwargs)
        self._provider = provider

    @classmethod
    def class_name(cls) -> str:
        return "ProviderEmbedding"

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._provider(list(texts)).tolist() if texts else []

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embeddings([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return self._get_query_embedding(query)
