"""``MatryoshkaEmbeddingFunction``: a Chroma embedding function over any other one, through a Matryoshka
adaptor, cut to ``dim``, for Chroma users without LangChain or LlamaIndex.

Importing this module registers the function with Chroma (``name()`` = ``"matryoshka_rag"``), so a collection
created with it records its config (the base function's own config, the adaptor folder and fingerprint, the
dim) and, reopened by a client in a process that imported this module, rebuilds the same function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import config_to_embedding_function, register_embedding_function

from ..errors import InputError
from .adapted import AdaptedVectors

__all__ = ["MatryoshkaEmbeddingFunction"]

NAME = "matryoshka_rag"
_FIXED = ("dim", "adaptor_fingerprint")  # settings a collection's stored vectors depend on


@register_embedding_function
class MatryoshkaEmbeddingFunction(EmbeddingFunction[Documents]):
    """``base``'s vectors through the adaptor saved in the folder ``adaptor``: first ``dim`` dims (``None``:
    all), unit L2 norm; documents through ``base(...)``, queries through ``base.embed_query(...)``.

    ``adaptor_fingerprint``: when given (as when rebuilt from a collection's config), the folder must still
    hold that adaptor, else `AdaptorMismatchError`: vectors made before would not match new ones. Text and
    base-vector checks are those of the framework wrappers (`matryoshka_rag.embeddings.adapted`).
    """

    def __init__(
        self,
        base: EmbeddingFunction[Documents],
        adaptor: str | Path,
        dim: int | None = None,
        adaptor_fingerprint: str | None = None,
    ) -> None:
        if not callable(base):
            raise InputError(f"base must be a Chroma embedding function, got {type(base).__name__}")
        self.base = base
        self._vectors = AdaptedVectors.load(adaptor, dim, getattr(base, "model_name", None))
        self._vectors.check_fingerprint(
            adaptor_fingerprint, "this collection", "create a new collection for the new adaptor"
        )

    @property
    def dim(self) -> int:
        """Length of every returned vector."""
        return self._vectors.dim

    def __call__(self, input: Documents) -> Embeddings:
        return self._adapted(self.base, input)

    def embed_query(self, input: Documents) -> Embeddings:
        return self._adapted(self.base.embed_query, input)

    def _adapted(self, embed: Callable[[Documents], Embeddings], input: Documents) -> Embeddings:
        """``embed(texts)`` through the adaptor: one float32 ``(dim,)`` array per text."""
        texts = self._vectors.check_texts(list(input))
        return list(self._vectors.adapt(embed(texts), texts)) if texts else []

    @staticmethod
    def name() -> str:
        return NAME

    def default_space(self) -> Space:
        return "cosine"  # unit-norm vectors: cosine, inner product and l2 rank alike

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        """The base function's name and config, the adaptor folder and fingerprint, the dim.
        ``NotImplemented`` (Chroma's mark of a legacy function, not rebuilt) when the base has no config."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # a legacy base warns as it answers
            base_name, base_config = self.base.name(), self.base.get_config()
        if base_name is NotImplemented or base_config is NotImplemented:
            return NotImplemented
        return {
            "base": {"name": base_name, "config": base_config},
            "adaptor": self._vectors.path,
            "dim": self.dim,
            "adaptor_fingerprint": self._vectors.fingerprint,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MatryoshkaEmbeddingFunction:
        """The function `get_config` described: the base rebuilt by Chroma from its own config."""
        return MatryoshkaEmbeddingFunction(
            config_to_embedding_function(config["base"]),
            config["adaptor"],
            config["dim"],
            config["adaptor_fingerprint"],
        )

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """A collection keeps its dim and adaptor: its stored vectors were made with them."""
        changed = [key for key in _FIXED if key in new_config and new_config[key] != old_config.get(key)]
        if changed:
            raise InputError(
                f"cannot change {', '.join(changed)} of a collection's embedding function: its stored vectors "
                "were made with the old ones; create a new collection"
            )
