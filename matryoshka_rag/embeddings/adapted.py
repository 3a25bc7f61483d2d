"""Adapt a framework's base embeddings: check them text by text, apply an adaptor, keep a prefix, normalise.

One :class:`AdaptedVectors` serves both framework wrappers (``langchain_matryoshka_rag.AdaptedEmbeddings`` and
``llama_index.embeddings.matryoshka_rag.AdaptedEmbedding``), so they behave identically:

- texts: an empty list gives an empty list; an empty or blank string raises :class:`InputError`
  ("text i is blank ...") for documents and queries alike; a non-string raises too.
- base output: a vector count other than the text count, a vector whose dim is not the adaptor's base dim
  (:class:`AdaptorMismatchError`, naming both dims), NaN/inf or all-zero values raise, naming the text's
  index in the call and quoting its start.
- the adaptor runs as numpy (:class:`~matryoshka_rag.adaptor.numpy_forward.NumpyAdaptor`), so serving needs no torch;
  a torch ``MatryoshkaAdaptor`` given as an object is converted once.
- ``dim``: any integer 1..base_dim (``None`` = base_dim). Every prefix of an adapted vector is a valid
  embedding; the adaptor's trained ``config.dims`` are the dims its quality was optimised for.
- a base model whose name differs from the one the adaptor was trained on gets one :class:`BaseModelWarning`
  per wrapper, at construction.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..adaptor.numpy_forward import NumpyAdaptor, as_numpy_adaptor
from ..errors import AdaptorMismatchError, InputError
from ..validation import check_rows
from .providers import canonical_model_name, check_texts

if TYPE_CHECKING:
    from ..adaptor.torch_module import MatryoshkaAdaptor

__all__ = ["AdaptedVectors", "BaseModelWarning", "check_output_dim", "dim_alias", "warn_if_other_model"]

Vectors = Sequence[Sequence[float]] | Sequence[np.ndarray] | np.ndarray  # n vectors of one dim
_UNNAMED = ("", "unknown")


class BaseModelWarning(UserWarning):
    """The base model's name differs from the one the adaptor was trained on."""


def check_output_dim(dim: int | None, adaptor: NumpyAdaptor) -> int:
    """``dim`` checked against the adaptor (1..base_dim; ``None`` = base_dim) -> int."""
    config = adaptor.config
    if dim is None:
        return config.base_dim
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
        raise InputError(f"dim must be an integer or None, got {dim!r}")
    if not 0 < dim <= config.base_dim:
        raise InputError(
            f"dim must be in 1..{config.base_dim} (the adaptor's base dim), got {dim}; "
            f"the adaptor was trained for dims {list(config.dims)}"
        )
    return int(dim)


def dim_alias(dim: int | None, dimensions: int | None) -> int | None:
    """``dim``, or ``dimensions`` (the frameworks' OpenAI embeddings' word for it) when only that is given;
    `InputError` when both are given and differ."""
    if dimensions is None:
        return dim
    if dim is not None and dim != dimensions:
        raise InputError(f"dim={dim!r} and dimensions={dimensions!r} name the same setting: give one")
    return dimensions


_OWN_MODULES = (
    "matryoshka_rag.",
    "langchain_matryoshka_rag.",
    "llama_index.embeddings.matryoshka_rag.",
    "pydantic.",
)


def _caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside this package, its integrations and pydantic."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(_OWN_MODULES):
        frame, level = frame.f_back, level + 1
    return level


def warn_if_other_model(adaptor: NumpyAdaptor, base_name: str | None) -> None:
    """Warn (:class:`BaseModelWarning`) when ``base_name`` and the adaptor's ``base_model`` name different models.

    Names are compared by :func:`~matryoshka_rag.embeddings.providers.canonical_model_name`; an unknown name on either
    side (``None``, ``""``, ``"unknown"``) is not compared.
    """
    trained = adaptor.config.base_model
    if not base_name or base_name in _UNNAMED or trained in _UNNAMED:
        return
    if canonical_model_name(base_name) != canonical_model_name(trained):
        warnings.warn(
            f"the adaptor was trained on vectors of {trained!r} but wraps the base model {base_name!r}: "
            "its output is only meaningful for the model it was trained on",
            BaseModelWarning,
            stacklevel=_caller_stacklevel(),
        )


def _quote(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[:width] + "...")


class AdaptedVectors:
    """An adaptor, an output dim and the base model's name: base vectors of n texts -> adapted ``(n, dim)``.

    Output rows are ``adaptor.transform(base_vectors, dim)``: adapted, cut to ``dim``, unit L2 norm.
    ``embed``/``embed_one`` (and their async twins) wrap any base embedding function with the checks
    described in this module's docstring.
    """

    def __init__(
        self,
        adaptor: NumpyAdaptor | MatryoshkaAdaptor,
        dim: int | None = None,
        base_name: str | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.adaptor = as_numpy_adaptor(adaptor)
        self.dim = check_output_dim(dim, self.adaptor)
        self.base_name = base_name
        self.path = str(path) if path is not None else None
        warn_if_other_model(self.adaptor, base_name)

    @classmethod
    def load(
        cls,
        path: str | Path | None,
        dim: int | None = None,
        base_name: str | None = None,
    ) -> AdaptedVectors:
        """Load the adaptor folder ``path``, checksums verified (``NumpyAdaptor.from_folder``)."""
        if path is None:
            raise InputError("no adaptor: give the path of an adaptor folder (or an adaptor object)")
        return cls(NumpyAdaptor.from_folder(path), dim, base_name, path)

    @property
    def fingerprint(self) -> str:
        """The adaptor's fingerprint."""
        return self.adaptor.fingerprint()

    def check_fingerprint(self, recorded: str | None, made_with: str, remedy: str) -> None:
        """Raise `AdaptorMismatchError` when `recorded`, the adaptor fingerprint saved with `made_with` (e.g.
        "this collection"), is given and is not this adaptor's (vectors made before would not match new
        ones); the message ends with `remedy`."""
        if recorded is not None and recorded != self.fingerprint:
            raise AdaptorMismatchError(
                f"the adaptor in {self.path} is not the one {made_with} was made with (fingerprint "
                f"{self.fingerprint[:12]}... instead of {recorded[:12]}...): vectors made before would not "
                f"match new ones; {remedy}"
            )

    @staticmethod
    def check_texts(texts: Sequence[str]) -> list[str]:
        """``texts`` as a list; ``[]`` for an empty sequence; InputError for a blank or non-string text."""
        if isinstance(texts, Sequence) and not isinstance(texts, str) and len(texts) == 0:
            return []
        return check_texts(texts)

    def adapt(self, base_vectors: Vectors, texts: Sequence[str]) -> np.ndarray:
        """Check the base vectors of ``texts`` (one per text, base dim, finite, non-zero) -> ``(n, dim)``."""
        who = f"the base model {self.base_name!r}" if self.base_name else "the base model"
        if len(base_vectors) != len(texts):
            raise InputError(f"{who} returned {len(base_vectors)} vectors for {len(texts)} texts")
        base_dim = self.adaptor.config.base_dim
        try:
            matrix = np.asarray(base_vectors, dtype=np.float32)
        except (TypeError, ValueError):  # ragged rows or non-numbers
            matrix = np.empty((0, 0), dtype=np.float32)
        if matrix.shape != (len(texts), base_dim):
            for i, vector in enumerate(base_vectors):
                if np.ndim(vector) != 1:
                    raise InputError(f"{who} returned a {type(vector).__name__}, not a vector, for text {i}")
                if np.size(vector) != base_dim:
                    raise AdaptorMismatchError(
                        f"{who} returned a {np.size(vector)}-d vector for text {i} ({_quote(texts[i])}), but "
                        f"the adaptor takes {base_dim}-d vectors (it was trained on "
                        f"{self.adaptor.config.base_model!r})"
                    )
            raise InputError(f"{who} returned values that are not numbers")
        check_rows(matrix, f"vectors from {who}", row_name=lambda i: f"text {i} ({_quote(texts[i])})")
        return self.adaptor.transform(matrix, self.dim)

    def embed(self, embed_many: Callable[[list[str]], Vectors], texts: Sequence[str]) -> list[list[float]]:
        """``embed_many(texts)`` adapted: n lists of ``dim`` floats (``[]`` for no texts)."""
        texts = self.check_texts(texts)
        return self.adapt(embed_many(texts), texts).tolist() if texts else []

    def embed_one(self, embed: Callable[[str], Sequence[float]], text: str) -> list[float]:
        """``embed(text)`` adapted: ``dim`` floats."""
        texts = self.check_texts([text])
        return self.adapt([embed(text)], texts)[0].tolist()

    async def aembed(
        self, embed_many: Callable[[list[str]], Awaitable[Vectors]], texts: Sequence[str]
    ) -> list[list[float]]:
        """Async :meth:`embed`."""
        texts = self.check_texts(texts)
        return self.adapt(await embed_many(texts), texts).tolist() if texts else []

    async def aembed_one(self, embed: Callable[[str], Awaitable[Sequence[float]]], text: str) -> list[float]:
        """Async :meth:`embed_one`."""
        texts = self.check_texts([text])
        return self.adapt([await embed(text)], texts)[0].tolist()

    def __repr__(self) -> str:
        config = self.adaptor.config
        return (
            f"AdaptedVectors(base_model={config.base_model!r}, base_dim={config.base_dim}, dim={self.dim}, "
            f"path={self.path!r})"
        )
