"""Matryoshka retrieval on Chroma: search small adapted prefixes, rerank exactly at a larger dim, fall back.

Layout: two Chroma collections sharing ids, both HNSW with the same space:

- ``<name>__d<small>`` holds the adapted vectors cut to ``small_dim`` (renormalised) and the metadata (for
  ``where`` filters). It is the one searched first.
- ``<name>__d<large>`` holds the large vectors, the metadata and the documents. It serves the exact rerank of
  the shortlist and, through its own HNSW index, the fallback search. At the full dim the large vectors are
  by default the base vectors themselves (normalised): the rerank then reproduces the base model's own
  ranking, whereas adapted 384-d vectors moved nDCG@10 by +1.3% (SciFact) and -1.3% (NFCorpus), see
  BENCHMARKS.md. Below the full dim they are the adapted vectors cut to ``large_dim``.

A record is written to the large collection first, then to the small one, always with ``upsert``: a record
is searchable only once both are written, and re-sending a batch after any failure never duplicates.
Both collections record the adaptor's fingerprint (and folder), the base model, the dims, which large vectors
they hold and the space; opening them with anything else raises :class:`AdaptorMismatchError` and leaves them
untouched.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import chromadb
import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.errors import InvalidArgumentError, NotFoundError

from .adaptor import MatryoshkaAdaptor
from .errors import AdaptorMismatchError, InputError
from .persistence import load_adaptor
from .providers import CallableProvider, EmbeddingProvider, canonical_model_name, embed_texts

__all__ = [
    "DEFAULT_HNSW",
    "STAGE_FALLBACK",
    "STAGE_FUNNEL",
    "ChromaUnavailableError",
    "Hit",
    "MatryoshkaStore",
    "check_metadatas",
    "connect",
]

LAYOUT_VERSION = 1
DEFAULT_HNSW = {"ef_construction": 200, "ef_search": 400, "max_neighbors": 32}  # defaults give low recall
SPACES = ("cosine", "ip", "l2")
STAGE_FUNNEL = "small+rerank"
STAGE_FALLBACK = "fallback"
# Shortlists up to this size are reranked by get() + numpy (~3 ms per 100 vectors, embedded), longer ones by
# Chroma's own `query(ids=shortlist)`, an HNSW search restricted to the shortlist: slow while the shortlist is
# below ef_search=400 (it exhausts the graph: ~14 ms), fast above (~4 ms for 800). Both gave the exact order.
NUMPY_RERANK_MAX = 300
_INT64 = (-(2**63), 2**63 - 1)
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]$")
_LAYOUT_KEYS = ("small_dim", "large_dim", "large_vectors", "space", "base_model", "adaptor_fingerprint")

Fallback = Literal["auto", "never", "always"]
LargeVectors = Literal["auto", "base", "adapted"]


class ChromaUnavailableError(InputError):
    """The Chroma server (or database folder) named in the message cannot be reached."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


@dataclass(frozen=True)
class Hit:
    """One result: ``score`` is the cosine at the large dim (hits are ordered by it), ``scores`` the cosine
    at each dim (``{small_dim: ..., large_dim: ...}``, of the vectors stored at that dim), ``stage`` how it
    was found: ``"small+rerank"`` (small-dim shortlist reranked at the large dim) or ``"fallback"``
    (large-dim search)."""

    id: str
    score: float
    scores: dict[int, float]
    stage: str
    document: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _location(client: ClientAPI) -> str:
    """The URL of an HTTP client's server, or the folder of a persistent client."""
    settings = client.get_settings()
    if settings.chroma_server_host:
        scheme = "https" if settings.chroma_server_ssl_enabled else "http"
        return f"{scheme}://{settings.chroma_server_host}:{settings.chroma_server_http_port}"
    return str(settings.persist_directory) if settings.is_persistent else "in-memory Chroma"


@contextmanager
def _chroma_errors(location: str, action: str) -> Iterator[None]:
    """Turn Chroma's connection and validation errors into ours, naming `location` and `action`."""
    try:
        yield
    except httpx.TransportError as error:
        raise ChromaUnavailableError(
            f"cannot reach the Chroma server at {location} while {action}: {error}", location
        ) from error
    except (InvalidArgumentError, ValueError) as error:
        if "Could not connect" in str(error):
            raise ChromaUnavailableError(
                f"cannot reach the Chroma server at {location} while {action}: is it running?", location
            ) from error
        raise InputError(f"Chroma at {location} rejected {action}: {error}") from error


def connect(path: str | os.PathLike | None = None, host: str | None = None, port: int = 8000) -> ClientAPI:
    """`chromadb.PersistentClient(path)`, or `chromadb.HttpClient(host, port)` when `host` is given.

    Raises `ChromaUnavailableError` naming the URL when the server does not answer.
    """
    if (path is None) == (host is None):
        raise InputError("give either a database folder (path) or a server (host and port), not both")
    if host is not None:
        url = f"http://{host}:{port}"
        with _chroma_errors(url, "connecting"):
            return chromadb.HttpClient(host=host, port=int(port))
    folder = Path(path).expanduser()
    with _chroma_errors(str(folder), "opening the database"):
        return chromadb.PersistentClient(path=str(folder))


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise InputError(f"ids must be a list of strings, got {type(ids).__name__}")
    if len(ids) == 0:
        raise InputError("ids is empty: nothing to write")
    first: dict[str, int] = {}
    for i, record_id in enumerate(ids):
        if not isinstance(record_id, str) or not record_id:
            raise InputError(f"id {i} is {record_id!r}: ids must be non-empty strings")
        if record_id in first:
            raise InputError(
                f"duplicate id {record_id!r} in the batch (positions {first[record_id]} and {i})"
            )
        first[record_id] = i
    return list(ids)


def _metadata_value(value: Any, where: str) -> Any:
    """`value` as Chroma stores it exactly (numpy scalars made Python), or InputError naming `where`."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InputError(f"{where}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where}: {value} is not finite (Chroma would drop the whole metadata)")
        return value
    if isinstance(value, (list, tuple)):
        items = [_metadata_value(item, where) for item in value]
        kinds = {type(item) for item in items}
        if not items or len(kinds) != 1 or None in items or kinds & {list}:
            raise InputError(
                f"{where}: a list must be non-empty and hold str, int, float or bool of one type"
            )
        return items
    raise InputError(
        f"{where}: values must be str, int, float, bool, None or a list of one of those, "
        f"got {type(value).__name__}"
    )


def check_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None, ids: list[str]) -> list | None:
    """Check metadatas against what Chroma stores exactly; returns them ready to write (None or dicts).

    Raises `InputError` naming the id and key of the first bad entry. A None value removes that key on
    upsert (Chroma merges metadata of an existing id); an empty dict means no metadata.
    """
    if metadatas is None:
        return None
    if isinstance(metadatas, Mapping) or not isinstance(metadatas, Sequence) or len(metadatas) != len(ids):
        raise InputError(f"metadatas must be a list of {len(ids)} dicts (one per id) or None")
    checked: list[dict | None] = []
    for record_id, metadata in zip(ids, metadatas):
        if metadata is None or len(metadata) == 0:
            checked.append(None)
            continue
        if not isinstance(metadata, Mapping):
            raise InputError(f"metadata of id {record_id!r} is a {type(metadata).__name__}, not a dict")
        clean = {}
        for key, value in metadata.items():
            where = f"metadata of id {record_id!r}, key {key!r}"
            if not isinstance(key, str) or not key or key[0] in "#$" or key.startswith("chroma:"):
                raise InputError(
                    f"{where}: keys must be non-empty strings not starting with '#', '$' or 'chroma:'"
                )
            clean[key] = _metadata_value(value, where)
        checked.append(clean)
    return checked if any(m is not None for m in checked) else None


def _as_provider(provider: EmbeddingProvider | Callable | None) -> EmbeddingProvider | None:
    if provider is None or isinstance(provider, EmbeddingProvider):
        return provider
    if not callable(provider):
        raise InputError(f"provider must map a list of texts to vectors, got {type(provider).__name__}")
    return CallableProvider(provider, name=getattr(provider, "__name__", type(provider).__name__))


def _similarities(distances: Sequence[float], space: str) -> list[float]:
    """Chroma distances of unit vectors as cosines (l2 is squared: d = 2 - 2 cos; cosine and ip: 1 - cos)."""
    scale = 0.5 if space == "l2" else 1.0
    return [1.0 - scale * float(d) for d in distances]


class MatryoshkaStore:
    """A Matryoshka collection pair in Chroma: `add`/`upsert`/`delete` base vectors or texts, `query` -> hits.

    Args:
        name: collection name; the collections are ``<name>__d<small_dim>`` and ``<name>__d<large_dim>``.
        adaptor: a `MatryoshkaAdaptor`, the folder of a saved one (recorded, so it is found on reopening),
            or None to load the folder recorded in an existing collection (fingerprint checked).
        client: a chromadb client; else ``connect(path)`` or ``connect(host=host, port=port)``.
        small_dim, large_dim: dims searched / reranked (default 64 and the base dim for a new collection,
            the recorded ones for an existing collection).
        large_vectors: what the large collection holds: "base" (the base vectors, only at the full dim),
            "adapted" (adapted vectors cut to `large_dim`) or "auto" (base at the full dim, else adapted).
        provider: texts -> base vectors `(n, base_dim)` (an `EmbeddingProvider` or any callable), needed
            to add texts without embeddings and to query with text.
        space: HNSW space of both collections: "cosine" (default for a new collection), "ip" or "l2"
            (vectors are unit-norm, so all three rank alike; scores are always reported as cosines).
        shortlist_factor: the small-dim search returns `shortlist_factor * k` candidates (default 40: the
            smallest factor giving recall@10 >= 0.99 against exact full-dim search on SciFact and NFCorpus,
            see BENCHMARKS.md; 10 gave recall 0.97, nDCG@10 within 0.3%, and was up to 2x faster at 50k).
        fallback: "auto" searches the large collection directly when the funnel is inconclusive (the best
            reranked cosine is below `min_score`, or fewer than k candidates pass `where`); "never"; "always".
        min_score: the large-dim cosine under which "auto" falls back.
        hnsw: HNSW settings of new collections (default `DEFAULT_HNSW`).
    """

    def __init__(
        self,
        name: str,
        adaptor: MatryoshkaAdaptor | str | os.PathLike | None = None,
        *,
        client: ClientAPI | None = None,
        path: str | os.PathLike | None = None,
        host: str | None = None,
        port: int = 8000,
        small_dim: int | None = None,
        large_dim: int | None = None,
        large_vectors: LargeVectors | None = None,
        provider: EmbeddingProvider | Callable[[list[str]], Any] | None = None,
        space: str | None = None,
        shortlist_factor: int = 40,
        fallback: Fallback = "auto",
        min_score: float = 0.2,
        hnsw: Mapping[str, int] | None = None,
    ) -> None:
        if not isinstance(name, str) or len(name) < 3 or not _NAME.match(name):
            raise InputError(
                f"collection name {name!r}: use 3+ characters from [a-zA-Z0-9._-], starting and ending "
                "with a letter or digit"
            )
        if fallback not in ("auto", "never", "always"):
            raise InputError(f"fallback must be 'auto', 'never' or 'always', got {fallback!r}")
        if int(shortlist_factor) < 1:
            raise InputError(f"shortlist_factor must be >= 1, got {shortlist_factor}")
        if client is None:
            client = connect(path=path, host=host, port=port)
        elif path is not None or host is not None:
            raise InputError("give a client, or a path, or a host, not several")
        self.name, self.client = name, client
        self.location = _location(client)
        self.shortlist_factor = int(shortlist_factor)
        self.fallback, self.min_score = fallback, float(min_score)
        existing = self._existing_layout()
        self.space = space or existing.get("space") or "cosine"
        if self.space not in SPACES:
            raise InputError(f"space must be one of {SPACES}, got {self.space!r}")
        self.adaptor, self.adaptor_path = self._resolve_adaptor(adaptor, existing)
        base_dim = self.adaptor.config.base_dim
        self.small_dim = int(small_dim or existing.get("small_dim") or min(64, base_dim))
        self.large_dim = int(large_dim or existing.get("large_dim") or base_dim)
        if not 0 < self.small_dim < self.large_dim <= base_dim:
            raise InputError(
                f"need 0 < small_dim < large_dim <= base dim {base_dim}, got {self.small_dim} and {self.large_dim}"
            )
        same_large = existing.get("large_dim") == self.large_dim
        self.large_vectors = (
            large_vectors or (existing.get("large_vectors") if same_large else None) or "auto"
        )
        if self.large_vectors == "auto":
            self.large_vectors = "base" if self.large_dim == base_dim else "adapted"
        if self.large_vectors not in ("base", "adapted"):
            raise InputError(f"large_vectors must be 'auto', 'base' or 'adapted', got {self.large_vectors!r}")
        if self.large_vectors == "base" and self.large_dim != base_dim:
            raise InputError(
                f"large_vectors='base' needs large_dim = the base dim {base_dim}, got {self.large_dim}"
            )
        if self.small_dim not in self.adaptor.config.dims:
            warnings.warn(
                f"small_dim {self.small_dim} is not one of the adaptor's trained dims {self.adaptor.config.dims}",
                stacklevel=2,
            )
        self.provider = provider
        self.layout = {
            "matryoshka_rag_layout": LAYOUT_VERSION,
            "small_dim": self.small_dim,
            "large_dim": self.large_dim,
            "large_vectors": self.large_vectors,
            "space": self.space,
            "base_model": self.adaptor.config.base_model,
            "base_dim": base_dim,
            "adaptor_fingerprint": self.adaptor.fingerprint(),
            "adaptor_path": self.adaptor_path or "",
        }
        if existing:
            self._check_layout(existing)
        configuration = {"hnsw": {"space": self.space, **(dict(hnsw) if hnsw else DEFAULT_HNSW)}}
        self.small = self._open(self.small_dim, "small", configuration)
        self.large = self._open(self.large_dim, "large", configuration)
        with self._errors("asking the batch size"):
            self.batch_size = int(client.get_max_batch_size())

    # -- opening -----------------------------------------------------------------------------------

    def _errors(self, action: str):
        return _chroma_errors(self.location, action)

    def collection_name(self, dim: int) -> str:
        return f"{self.name}__d{dim}"

    def _existing_layout(self) -> dict[str, Any]:
        """Recorded layout of an existing pair named `<name>__d<dim>` (any dims), or {} when none exists."""
        pattern = re.compile(re.escape(self.name) + r"__d(\d+)")
        with self._errors(f"listing collections for {self.name!r}"):
            found = [c for c in self.client.list_collections() if pattern.fullmatch(c.name)]
        if not found:
            return {}
        for collection in found:
            metadata = collection.metadata or {}
            if metadata.get("matryoshka_rag_layout") != LAYOUT_VERSION:
                raise InputError(
                    f"collection {collection.name!r} at {self.location} was not made by this version of "
                    f"matryoshka-rag (layout {metadata.get('matryoshka_rag_layout')!r}); choose another name"
                )
        recorded = [dict(c.metadata) for c in found]
        for other in recorded[1:]:
            differing = [key for key in _LAYOUT_KEYS if other.get(key) != recorded[0].get(key)]
            if differing:
                names = ", ".join(c.name for c in found)
                raise AdaptorMismatchError(f"collections {names} disagree on {differing}: remove one of them")
        return recorded[0]

    def _resolve_adaptor(
        self, adaptor: MatryoshkaAdaptor | str | os.PathLike | None, existing: dict[str, Any]
    ) -> tuple[MatryoshkaAdaptor, str | None]:
        if isinstance(adaptor, MatryoshkaAdaptor):
            return adaptor, None
        if adaptor is not None:
            folder = Path(adaptor).expanduser().resolve()
            return load_adaptor(folder), str(folder)
        if not existing:
            raise InputError(f"collection {self.name!r} does not exist at {self.location}: give an adaptor")
        folder = existing.get("adaptor_path") or ""
        if not folder:
            raise InputError(
                f"collection {self.name!r} was built with an adaptor object whose folder was not recorded "
                f"(fingerprint {existing.get('adaptor_fingerprint')}): pass that adaptor"
            )
        if not Path(folder).is_dir():
            raise InputError(
                f"collection {self.name!r} was built with the adaptor at {folder}, which is gone"
            )
        return load_adaptor(folder), folder

    @property
    def provider(self) -> EmbeddingProvider | None:
        """Texts -> base vectors; a callable set here is wrapped, and a model other than the adaptor's warns."""
        return self._provider

    @provider.setter
    def provider(self, provider: EmbeddingProvider | Callable[[list[str]], Any] | None) -> None:
        self._provider = _as_provider(provider)
        model = self.adaptor.config.base_model
        name = getattr(provider, "name", None)  # a bare callable has no model name to compare
        if (
            name
            and model not in ("", "unknown")
            and canonical_model_name(str(name)) != canonical_model_name(model)
        ):
            warnings.warn(
                f"provider {name!r} is not the adaptor's base model {model!r}: vectors may not match",
                stacklevel=2,
            )

    def _check_layout(self, recorded: Mapping[str, Any]) -> None:
        """Raise `AdaptorMismatchError` naming both values for the first recorded setting that differs."""
        for key in _LAYOUT_KEYS:
            if recorded.get(key) != self.layout[key]:
                detail = ""
                if key == "adaptor_fingerprint":
                    detail = (
                        f" (recorded adaptor folder: {recorded.get('adaptor_path') or 'not recorded'}, "
                        f"given: {self.adaptor_path or 'an adaptor object'})"
                    )
                raise AdaptorMismatchError(
                    f"collection {self.name!r} at {self.location} was built with {key}={recorded.get(key)!r}, "
                    f"got {key}={self.layout[key]!r}{detail}; nothing was changed"
                )

    def _open(self, dim: int, role: str, configuration: dict) -> Collection:
        """Get the collection of `dim` (checking its HNSW space), or create it with the layout metadata."""
        name = self.collection_name(dim)
        with self._errors(f"opening collection {name!r}"):
            try:
                collection = self.client.get_collection(name, embedding_function=None)
            except NotFoundError:
                collection = self.client.create_collection(
                    name,
                    metadata={**self.layout, "role": role},
                    configuration=configuration,
                    embedding_function=None,
                )
        found_space = ((collection.configuration_json or {}).get("hnsw") or {}).get("space", self.space)
        if found_space != self.space:
            raise AdaptorMismatchError(
                f"collection {name!r} at {self.location} uses space {found_space!r}, got space {self.space!r}; "
                "nothing was changed"
            )
        return collection

    # -- writing -----------------------------------------------------------------------------------

    def _vectors(self, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Base vectors `(n, base_dim)` -> unit-norm small `(n, small_dim)` and large `(n, large_dim)`."""
        adapted = self.adaptor.transform(base, dim=self.large_dim)  # checks dim, NaN, zero rows
        small = adapted[:, : self.small_dim]
        norms = np.linalg.norm(small, axis=1, keepdims=True)
        if not norms.all():
            raise InputError(f"row {int(np.argmin(norms))} adapts to an all-zero {self.small_dim}-dim prefix")
        if self.large_vectors == "base":
            base = np.asarray(base, dtype=np.float32)
            adapted = base / np.linalg.norm(base, axis=1, keepdims=True)
        return np.ascontiguousarray(small / norms), adapted

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.provider is None:
            raise InputError("this store has no embedding provider: pass provider=, or give base vectors")
        return embed_texts(self.provider, texts, progress=False)

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        embeddings: np.ndarray | Sequence[Sequence[float]] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Insert or replace records; returns how many were written.

        Args:
            ids: n distinct non-empty strings.
            texts: n documents, stored; embedded with the provider when `embeddings` is None.
            embeddings: base vectors `(n, base_dim)`.
            metadatas: n dicts (or None) of str/int/float/bool/None/list values (see `check_metadatas`).

        The whole batch is checked (and embedded) before anything is written; it is then written in chunks
        of the client's max batch size, large collection first. Re-sending a batch never duplicates.
        """
        ids = _check_ids(ids)
        if texts is not None:
            if isinstance(texts, str) or len(texts) != len(ids) or not all(isinstance(t, str) for t in texts):
                raise InputError(f"texts must be a list of {len(ids)} strings (one per id)")
            texts = list(texts)
        checked = check_metadatas(metadatas, ids)
        if embeddings is None:
            if texts is None:
                raise InputError("give texts or embeddings (base vectors) for the ids")
            embeddings = self._embed(texts)
        base = (
            np.asarray(embeddings, dtype=np.float32) if not isinstance(embeddings, np.ndarray) else embeddings
        )
        if base.ndim != 2 or base.shape[0] != len(ids):
            raise InputError(
                f"embeddings must be ({len(ids)}, {self.adaptor.config.base_dim}), got {base.shape}"
            )
        small, large = self._vectors(base)
        for start in range(0, len(ids), self.batch_size):
            part = slice(start, start + self.batch_size)
            meta = checked[part] if checked is not None else None
            with self._errors(
                f"writing ids {ids[start]!r}..{ids[min(start + self.batch_size, len(ids)) - 1]!r}"
            ):
                self.large.upsert(
                    ids=ids[part],
                    embeddings=large[part],
                    metadatas=meta,
                    documents=texts[part] if texts else None,
                )
                self.small.upsert(ids=ids[part], embeddings=small[part], metadatas=meta)
        return len(ids)

    # Adding an id again (e.g. re-sending a batch after a failure) replaces it: `add` is `upsert`.
    add = upsert

    def delete(self, ids: Sequence[str]) -> None:
        """Remove `ids` (unknown ids are ignored): from the small collection first, so none stays findable."""
        ids = _check_ids(ids)
        for start in range(0, len(ids), self.batch_size):
            part = ids[start : start + self.batch_size]
            with self._errors(f"deleting ids {part[0]!r}.."):
                self.small.delete(ids=part)
                self.large.delete(ids=part)

    def count(self) -> int:
        """Number of searchable records (those in the small collection)."""
        with self._errors("counting"):
            return self.small.count()

    def get(self, ids: Sequence[str]) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """Stored `(document, metadata)` by id, for the `ids` that exist."""
        ids = _check_ids(ids)
        with self._errors("reading records"):
            found = self.large.get(ids=ids, include=["documents", "metadatas"])
        return {
            record_id: (document, metadata or {})
            for record_id, document, metadata in zip(found["ids"], found["documents"], found["metadatas"])
        }

    # -- querying ----------------------------------------------------------------------------------

    def _query_vector(self, query: str | np.ndarray | Sequence[float]) -> np.ndarray:
        """Query text or base vector `(base_dim,)` / `(1, base_dim)` -> base vector `(1, base_dim)`."""
        if isinstance(query, str):
            if not query.strip():
                raise InputError("the query text is empty")
            return self._embed([query])
        vector = np.asarray(query, dtype=np.float32)
        if vector.ndim == 1:
            vector = vector[None, :]
        if vector.ndim != 2 or vector.shape[0] != 1:
            raise InputError(f"query must be a text or one base vector, got an array of shape {vector.shape}")
        return vector

    def _search(
        self, collection: Collection, vector: np.ndarray, n: int, where: Mapping | None, ids: list[str] | None
    ) -> tuple[list[str], list[float]]:
        with self._errors(f"searching {collection.name!r}"):
            found = collection.query(
                query_embeddings=[vector], n_results=n, where=where or None, ids=ids, include=["distances"]
            )
        return found["ids"][0], _similarities(found["distances"][0], self.space)

    def _exact(self, collection: Collection, vector: np.ndarray, ids: list[str]) -> dict[str, float]:
        """Exact cosines of `vector` with the stored vectors of `ids` (get() + numpy), by id."""
        with self._errors(f"reading vectors from {collection.name!r}"):
            found = collection.get(ids=ids, include=["embeddings"])
        if not found["ids"]:
            return {}
        stored = np.asarray(found["embeddings"], dtype=np.float64)
        cosines = stored @ vector / (np.linalg.norm(stored, axis=1) * np.linalg.norm(vector))
        return dict(zip(found["ids"], cosines.tolist()))

    def _rerank(self, vector: np.ndarray, shortlist: list[str], k: int) -> tuple[list[str], list[float]]:
        """Top k of `shortlist` by large-dim cosine: numpy for short lists, Chroma's `ids=` search otherwise."""
        if len(shortlist) > NUMPY_RERANK_MAX:
            return self._search(self.large, vector, k, None, shortlist)
        scores = self._exact(self.large, vector, shortlist)
        best = sorted(scores, key=lambda i: (-scores[i], i))[:k]
        return best, [scores[i] for i in best]

    def query(
        self, query: str | np.ndarray | Sequence[float], k: int = 10, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The k best records for a query text or base vector `(base_dim,)`, optionally `where`-filtered.

        Small-dim HNSW search for `shortlist_factor * k` candidates -> rerank by large-dim cosine -> top
        k; with `fallback="auto"` a large-dim HNSW search replaces it when the funnel is inconclusive. With
        a filter fewer than k hits may come back; k above the number of records raises `InputError`.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise InputError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        small_query, large_query = (v[0] for v in self._vectors(self._query_vector(query)))
        if self.fallback == "always":
            return self._fallback(small_query, large_query, k, where)
        shortlist, small_scores = self._search(
            self.small, small_query, k * self.shortlist_factor, where, None
        )
        if len(shortlist) < k:
            self._check_k(k)
        ids, large_scores = self._rerank(large_query, shortlist, k) if shortlist else ([], [])
        inconclusive = len(ids) < k or (bool(large_scores) and large_scores[0] < self.min_score)
        if self.fallback == "auto" and inconclusive:
            return self._fallback(small_query, large_query, k, where)
        small_of = dict(zip(shortlist, small_scores))
        return self._hits(ids, large_scores, [small_of[i] for i in ids], STAGE_FUNNEL)

    def _check_k(self, k: int) -> None:
        total = self.count()
        if k > total:
            raise InputError(f"k={k} is above the number of records in {self.name!r} ({total})")

    def _fallback(
        self, small_query: np.ndarray, large_query: np.ndarray, k: int, where: Mapping | None
    ) -> list[Hit]:
        ids, large_scores = self._search(self.large, large_query, k, where, None)
        if len(ids) < k:
            self._check_k(k)
        small_of = self._exact(self.small, small_query, ids) if ids else {}
        return self._hits(ids, large_scores, [small_of.get(i, float("nan")) for i in ids], STAGE_FALLBACK)

    def _hits(self, ids: list[str], large: list[float], small: list[float], stage: str) -> list[Hit]:
        records = self.get(ids) if ids else {}
        hits = []
        for i, large_score, small_score in zip(ids, large, small):
            document, metadata = records.get(i, (None, {}))
            scores = {self.small_dim: small_score, self.large_dim: large_score}
            hits.append(Hit(i, large_score, scores, stage, document, metadata))
        return hits

    def __repr__(self) -> str:
        return (
            f"MatryoshkaStore({self.name!r} at {self.location}, dims {self.small_dim}->{self.large_dim} "
            f"({self.large_vectors}), "
            f"space={self.space!r}, fallback={self.fallback!r})"
        )
