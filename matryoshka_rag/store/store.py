"""Matryoshka retrieval on Chroma: search a small adapted prefix, rerank exactly at a larger dim.

Layout (one searched collection, the rerank vectors beside it):

- ``<name>__d<small>`` holds the adapted vectors cut to ``small_dim`` (renormalised, HNSW) and the metadata
  (for ``where`` filters). It is the only thing searched.
- The rerank vectors (``large_dim``) live outside HNSW: with an embedded `PersistentClient` in a float16 file
  beside the database (`rerank_homes.FileVectors`, read only for the shortlist), through a server in a
  second collection ``<name>__d<large>`` read by id (`rerank_homes.CollectionVectors`). They are the
  adapted vectors when the adaptor was trained with labels (or below the full dim), else the base vectors.
- The documents, and the metadata as served: in the rerank file beside each vector (embedded: a query
  makes one Chroma call), else in the searched collection.

A query searches ``shortlist_factor * k`` candidates at the small dim, reranks them exactly (numpy) at the
large dim and widens the shortlist (x ``WIDEN_STEP``, up to ``max_shortlist_factor * k``) while
`shortlist.shortlist_is_conclusive` says a record outside it could still enter the top k.

Writes put the rerank vectors first (fsynced), then the searched records that point at them, with
``upsert``: a record is findable only once wholly written, and re-sending a batch never duplicates. The
searched collection records the adaptor's fingerprint (and folder), the base model, the dims, the rerank
vectors' kind and home and the space; opening it with anything else raises `AdaptorMismatchError` and leaves
it untouched. Querying imports no torch: the adaptor runs as numpy (`numpy_forward.NumpyAdaptor`).
"""

from __future__ import annotations

import math
import os
import re
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.errors import NotFoundError

from ..adaptor.numpy_forward import NumpyAdaptor, as_numpy_adaptor
from ..embeddings.providers import CallableProvider, EmbeddingProvider, canonical_model_name, embed_texts
from ..errors import AdaptorMismatchError, InputError
from ..scoring.recommend import recommend_dim
from .chroma_client import ChromaUnavailableError, chroma_errors, connect, location, persist_directory
from .input_checks import check_k, check_unique_ids
from .rerank_homes import RESERVED_PREFIX, CollectionVectors, FileVectors, Record, RerankHome
from .shortlist import shortlist_is_conclusive

__all__ = [
    "DEFAULT_HNSW",
    "STAGE_FUNNEL",
    "STAGE_WIDENED",
    "WIDEN_STEP",
    "ChromaUnavailableError",
    "Hit",
    "MatryoshkaStore",
    "QueryStats",
    "check_metadatas",
    "connect",
    "open_store",
]

LAYOUT_VERSION = 2
DEFAULT_HNSW = {"ef_construction": 200, "ef_search": 400, "max_neighbors": 32}  # defaults give low recall
STAGE_FUNNEL = "small+rerank"
STAGE_WIDENED = "widened"
WIDEN_STEP = 4  # chosen on validation: benchmarks/shortlist_rule.py
_INT64 = (-(2**63), 2**63 - 1)
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]$")
_LAYOUT_KEYS = (
    "small_dim",
    "large_dim",
    "large_vectors",
    "rerank_home",
    "space",
    "base_model",
    "adaptor_fingerprint",
)

Space = Literal["cosine", "ip", "l2"]
LargeVectors = Literal["auto", "base", "adapted"]


@dataclass
class QueryStats:
    """Counts since the store was opened: queries answered, and those whose shortlist was widened."""

    queries: int = 0
    widened: int = 0


@dataclass(frozen=True)
class Hit:
    """One result: ``score`` is the cosine at the large dim (hits are ordered by it), ``scores`` the cosine
    at each dim (``{small_dim: ..., large_dim: ...}``), ``stage`` how it was found: ``"small+rerank"`` (in
    the first small-dim shortlist) or ``"widened"`` (only in a widened one)."""

    id: str
    score: float
    scores: dict[int, float]
    stage: str
    document: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _check_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise InputError(f"ids must be a list of strings, got {type(ids).__name__}")
    if len(ids) == 0:
        raise InputError("ids is empty: nothing to write")
    return check_unique_ids(ids)


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
            if (
                not isinstance(key, str)
                or not key
                or key[0] in "#$"
                or key.startswith(("chroma:", RESERVED_PREFIX))
            ):
                raise InputError(
                    f"{where}: keys must be non-empty strings not starting with '#', '$', 'chroma:' or "
                    f"{RESERVED_PREFIX!r} (the store's own)"
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


def _user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record's metadata without the store's own keys."""
    return {key: value for key, value in (metadata or {}).items() if not key.startswith(RESERVED_PREFIX)}


def _checked_choice(value: Any, allowed: Any, what: str) -> Any:
    if value not in get_args(allowed):
        raise InputError(f"{what} must be one of {get_args(allowed)}, got {value!r}")
    return value


def trained_with_labels(adaptor: NumpyAdaptor) -> bool:
    """Whether the adaptor's recorded training used relevance labels (the supervised stage)."""
    training = adaptor.metadata.get("training")
    return isinstance(training, Mapping) and training.get("mode") == "supervised"


class MatryoshkaStore:
    """A Matryoshka store in Chroma: `upsert`/`delete`/`get` base vectors or texts, `query` -> hits.

    Args:
        name: store name; the searched collection is ``<name>__d<small_dim>``.
        adaptor: a `MatryoshkaAdaptor` or `NumpyAdaptor`, the folder of a saved one (recorded, so it is found
            on reopening), or None to load the folder recorded in an existing store (fingerprint checked).
        client: a chromadb client; else ``connect(path)`` or ``connect(host=host, port=port)``.
        small_dim, large_dim: dims searched / reranked (default 64 and the base dim for a new store, the
            recorded ones for an existing store). `small_dim="auto"`: the smallest trained dim below
            `large_dim` whose served prefix keeps 0.99 of full-dim retrieval, as estimated label-free at
            training (`recommend.recommend_dim`).
        large_vectors: the rerank vectors: "adapted" (adapted vectors cut to `large_dim`), "base" (the base
            vectors, full dim only) or "auto": adapted when the adaptor was trained with labels or
            `large_dim` is below the base dim, else base. Recorded in the store.
        rerank_home: where rerank vectors live: "file" (float16 file beside an embedded database),
            "collection" (a second collection; works through a server) or "auto" (file when the client is
            a `PersistentClient`, else collection). Recorded in the store.
        provider: texts -> base vectors `(n, base_dim)` (an `EmbeddingProvider` or any callable), needed
            to add texts without embeddings and to query with text.
        space: HNSW space of the searched collection: "cosine" (default), "ip" or "l2" (vectors are
            unit-norm, so all three rank alike; scores are always cosines).
        shortlist_factor: the first shortlist holds `shortlist_factor * k` candidates.
        max_shortlist_factor: the shortlist widens (x `WIDEN_STEP`) up to `max_shortlist_factor * k`
            candidates while `shortlist_is_conclusive` is false; equal to `shortlist_factor` turns widening off.
        hnsw: HNSW settings of a new searched collection (default `DEFAULT_HNSW`).
    """

    def __init__(
        self,
        name: str,
        adaptor: Any = None,
        *,
        client: ClientAPI | None = None,
        path: str | os.PathLike | None = None,
        host: str | None = None,
        port: int = 8000,
        small_dim: int | Literal["auto"] | None = None,
        large_dim: int | None = None,
        large_vectors: LargeVectors | None = None,
        rerank_home: RerankHome | None = None,
        provider: EmbeddingProvider | Callable[[list[str]], Any] | None = None,
        space: Space | None = None,
        shortlist_factor: int = 30,
        max_shortlist_factor: int = 160,
        hnsw: Mapping[str, int] | None = None,
    ) -> None:
        if not isinstance(name, str) or len(name) < 3 or not _NAME.match(name):
            raise InputError(
                f"collection name {name!r}: use 3+ characters from [a-zA-Z0-9._-], starting and ending "
                "with a letter or digit"
            )
        if not 1 <= int(shortlist_factor) <= int(max_shortlist_factor):
            raise InputError(
                f"need 1 <= shortlist_factor <= max_shortlist_factor, got {shortlist_factor} and {max_shortlist_factor}"
            )
        if client is None:
            client = connect(path=path, host=host, port=port)
        elif path is not None or host is not None:
            raise InputError("give a client, or a path, or a host, not several")
        self.name, self.client = name, client
        self.location = location(client)
        self.shortlist_factor, self.max_shortlist_factor = int(shortlist_factor), int(max_shortlist_factor)
        self.stats = QueryStats()
        existing = self._existing_layout()
        self.space = _checked_choice(space or existing.get("space") or "cosine", Space, "space")
        self.adaptor, self.adaptor_path = self._resolve_adaptor(adaptor, existing)
        base_dim = self.adaptor.config.base_dim
        for label, dim in (("small_dim", small_dim), ("large_dim", large_dim)):
            if dim is not None and dim != "auto":
                check_k(dim, label)
        self.large_dim = int(large_dim or existing.get("large_dim") or base_dim)
        if small_dim == "auto":  # label-free: the smallest trained dim keeping DEFAULT_TARGET (recommend_dim)
            small_dim = existing.get("small_dim") or recommend_dim(
                self.adaptor, below=self.large_dim, trained_only=True
            )
        self.small_dim = int(small_dim or existing.get("small_dim") or min(64, base_dim))
        if not 0 < self.small_dim < self.large_dim <= base_dim:
            raise InputError(
                f"need 0 < small_dim < large_dim <= base dim {base_dim}, got {self.small_dim} and {self.large_dim}"
            )
        self.large_vectors = self._resolve_large_vectors(large_vectors, existing)
        folder = persist_directory(client)
        home = _checked_choice(
            rerank_home or existing.get("rerank_home") or "auto", RerankHome, "rerank_home"
        )
        if home == "auto":
            home = "file" if folder is not None else "collection"
        if home == "file" and folder is None:
            raise InputError(
                f"store {name!r} keeps its rerank vectors in a file beside an embedded database: open it with "
                f"path= (a PersistentClient), not through {self.location}"
            )
        self.rerank_home = home
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
            "rerank_home": self.rerank_home,
            "space": self.space,
            "base_model": self.adaptor.config.base_model,
            "base_dim": base_dim,
            "adaptor_fingerprint": self.adaptor.fingerprint(),
            "adaptor_path": self.adaptor_path or "",
        }
        if existing:
            self._check_layout(existing)
        configuration = {"hnsw": {"space": self.space, **(dict(hnsw) if hnsw else DEFAULT_HNSW)}}
        self.small = self._open(self.small_dim, "search", configuration)
        if self.rerank_home == "file":
            with self._errors("counting"):
                new = self.small.count() == 0
            self.vectors: FileVectors | CollectionVectors = FileVectors(
                folder / "matryoshka_rag", name, self.large_dim, self.small, self.location, create=new
            )
        else:
            self.vectors = CollectionVectors(
                self._open(self.large_dim, "rerank", configuration), self.location
            )
        with self._errors("asking the batch size"):
            self.batch_size = int(client.get_max_batch_size())

    # -- opening -----------------------------------------------------------------------------------

    def _errors(self, action: str):
        return chroma_errors(self.location, action)

    def collection_name(self, dim: int) -> str:
        return f"{self.name}__d{dim}"

    def _existing_layout(self) -> dict[str, Any]:
        """Recorded layout of the existing store's searched collection, or {} when none exists."""
        pattern = re.compile(re.escape(self.name) + r"__d(\d+)")
        with self._errors(f"listing collections for {self.name!r}"):
            found = [c for c in self.client.list_collections() if pattern.fullmatch(c.name)]
        for collection in found:
            metadata = collection.metadata or {}
            if metadata.get("matryoshka_rag_layout") != LAYOUT_VERSION:
                raise InputError(
                    f"collection {collection.name!r} at {self.location} was not made by this version of "
                    f"matryoshka-rag (layout {metadata.get('matryoshka_rag_layout')!r}, this version writes "
                    f"{LAYOUT_VERSION}): index into another name"
                )
        searched = [dict(c.metadata) for c in found if c.metadata.get("role") == "search"]
        if len(searched) > 1:
            names = ", ".join(c.name for c in found)
            raise AdaptorMismatchError(
                f"collections {names} are each a searched collection: remove one of them"
            )
        return searched[0] if searched else {}

    def _resolve_adaptor(self, adaptor: Any, existing: dict[str, Any]) -> tuple[NumpyAdaptor, str | None]:
        if adaptor is not None:
            if isinstance(adaptor, str | os.PathLike):
                folder = os.path.realpath(os.path.expanduser(adaptor))
                return as_numpy_adaptor(folder), folder
            return as_numpy_adaptor(adaptor), None
        if not existing:
            raise InputError(f"collection {self.name!r} does not exist at {self.location}: give an adaptor")
        folder = existing.get("adaptor_path") or ""
        if not folder:
            raise InputError(
                f"collection {self.name!r} was built with an adaptor object whose folder was not recorded "
                f"(fingerprint {existing.get('adaptor_fingerprint')}): pass that adaptor"
            )
        if not os.path.isdir(folder):
            raise InputError(
                f"collection {self.name!r} was built with the adaptor at {folder}, which is gone"
            )
        return as_numpy_adaptor(folder), folder

    def _resolve_large_vectors(self, requested: LargeVectors | None, existing: dict[str, Any]) -> str:
        """ "base" or "adapted": the requested kind, else the recorded one (same large dim), else "auto"'s."""
        same_large = existing.get("large_dim") == self.large_dim
        kind = _checked_choice(
            requested or (existing.get("large_vectors") if same_large else None) or "auto",
            LargeVectors,
            "large_vectors",
        )
        full = self.large_dim == self.adaptor.config.base_dim
        if kind == "auto":
            kind = "base" if full and not trained_with_labels(self.adaptor) else "adapted"
        if kind == "base" and not full:
            raise InputError(
                f"large_vectors='base' needs large_dim = the base dim {self.adaptor.config.base_dim}, "
                f"got {self.large_dim}"
            )
        return kind

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
                metadata = {**self.layout, "role": role}
                if role == "search":
                    metadata["store_id"] = uuid.uuid4().hex
                collection = self.client.create_collection(
                    name, metadata=metadata, configuration=configuration, embedding_function=None
                )
        found_space = ((collection.configuration_json or {}).get("hnsw") or {}).get("space", self.space)
        if found_space != self.space:
            raise AdaptorMismatchError(
                f"collection {name!r} at {self.location} uses space {found_space!r}, got space {self.space!r}; "
                "nothing was changed"
            )
        return collection

    # -- vectors -----------------------------------------------------------------------------------

    def _vectors(self, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Base vectors `(n, base_dim)` -> unit-norm small `(n, small_dim)` and rerank `(n, large_dim)`."""
        base_rerank = self.large_vectors == "base"
        dims = (self.small_dim,) if base_rerank else (self.small_dim, self.large_dim)
        small, *adapted = self.adaptor.prefixes(base, dims)  # checks dim, NaN, zeros
        norms = np.linalg.norm(small, axis=1, keepdims=True)
        if not norms.all():
            raise InputError(f"row {int(np.argmin(norms))} adapts to an all-zero {self.small_dim}-dim prefix")
        large = np.asarray(base, dtype=np.float32) if base_rerank else adapted[0]
        large = large / np.linalg.norm(large, axis=1, keepdims=True)
        return np.ascontiguousarray(small / norms), np.ascontiguousarray(large, dtype=np.float32)

    def rerank_query(self, query: str | np.ndarray | Sequence[float]) -> np.ndarray:
        """A query text or base vector `(base_dim,)` in the rerank space: unit-norm `(large_dim,)`."""
        return self._vectors(self._query_vector(query))[1][0]

    def rerank_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored unit-norm rerank vectors `(large_dim,)` of the `ids` that exist, by id."""
        ids = _check_ids(ids)
        with self._errors("reading records"):
            stored = self.small.get(ids=ids, include=[])["ids"]
        vectors, found = self.vectors.read(stored)
        return dict(zip((i for i, f in zip(stored, found) if f), _unit(vectors)))

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.provider is None:
            raise InputError("this store has no embedding provider: pass provider=, or give base vectors")
        return embed_texts(self.provider, texts, progress=False)

    # -- writing -----------------------------------------------------------------------------------

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
        of the client's max batch size, rerank vectors first. Re-sending a batch never duplicates.
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
        base = np.asarray(embeddings, dtype=np.float32)
        if base.ndim != 2 or base.shape[0] != len(ids):
            raise InputError(
                f"embeddings must be ({len(ids)}, {self.adaptor.config.base_dim}), got {base.shape}"
            )
        small, large = self._vectors(base)
        for start in range(0, len(ids), self.batch_size):
            part = slice(start, start + self.batch_size)
            last = ids[min(start + self.batch_size, len(ids)) - 1]
            meta = checked[part] if checked is not None else [None] * len(ids[part])
            documents = texts[part] if texts else None
            with self.vectors.writing():
                records = None
                if self.vectors.keeps_records:
                    records = self._merged_records(ids[part], documents, meta)
                    documents = None  # served from the rerank file
                pointers = self.vectors.write(ids[part], large[part], records)
                if pointers is not None:
                    meta = [{**(m or {}), **p} for m, p in zip(meta, pointers)]
                with self._errors(f"writing ids {ids[start]!r}..{last!r}"):
                    self.small.upsert(
                        ids=ids[part],
                        embeddings=small[part],
                        metadatas=meta if any(m is not None for m in meta) else None,
                        documents=documents,
                    )
                self.vectors.acknowledge()
        return len(ids)

    def _merged_records(
        self, ids: list[str], documents: list[str] | None, metadatas: list[dict | None]
    ) -> list[Record]:
        """The records an upsert leaves, as Chroma merges them: a new document replaces the stored one (none
        keeps it), new metadata keys are set on the stored ones and a None value removes its key."""
        stored = self.vectors.records(ids)  # rows stay until compact(): keep those of live records only
        if stored:
            with self._errors("reading the records to replace"):
                live = set(self.small.get(ids=list(stored), include=[])["ids"])
            stored = {record_id: record for record_id, record in stored.items() if record_id in live}
        merged = []
        for position, record_id in enumerate(ids):
            document, metadata = stored.get(record_id, (None, {}))
            metadata = dict(metadata)
            for key, value in (metadatas[position] or {}).items():
                if value is None:
                    metadata.pop(key, None)
                else:
                    metadata[key] = value
            merged.append((documents[position] if documents else document, metadata))
        return merged

    # Adding an id again (e.g. re-sending a batch after a failure) replaces it: `add` is `upsert`.
    add = upsert

    def _ids_where(self, where: Mapping[str, Any]) -> list[str]:
        with self._errors(f"finding records where {dict(where)}"):
            return self.small.get(where=dict(where), include=[])["ids"]

    def delete(self, ids: Sequence[str] | None = None, where: Mapping[str, Any] | None = None) -> None:
        """Remove records by id and/or `where` filter (unknown ids are ignored): unsearchable first."""
        if ids is None and where is None:
            raise InputError("give ids or a where filter to delete (clear() removes everything)")
        chosen = _check_ids(ids) if ids is not None else []
        if where is not None:
            matched = set(self._ids_where(where))
            chosen = [i for i in chosen if i in matched] if ids is not None else sorted(matched)
        for start in range(0, len(chosen), self.batch_size):
            part = chosen[start : start + self.batch_size]
            with self.vectors.writing():
                with self._errors(f"deleting ids {part[0]!r}.."):
                    self.small.delete(ids=part)
                self.vectors.remove(part)

    def clear(self) -> None:
        """Remove every record (the store and its layout stay), then reclaim the rerank rows."""
        with self._errors("listing records"):
            ids = self.small.get(include=[])["ids"]
        if ids:
            self.delete(ids)
        self.compact()

    def compact(self) -> int:
        """Reclaim rerank rows of deleted or replaced records; returns how many rows were freed."""
        return self.vectors.compact(self.batch_size)

    # -- reading -----------------------------------------------------------------------------------

    def count(self) -> int:
        """Number of searchable records."""
        with self._errors("counting"):
            return self.small.count()

    def get(
        self,
        ids: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """Stored `(document, metadata)` by id: of `ids` (those that exist), filtered by `where`, at most
        `limit` (all records when neither ids nor where is given)."""
        keeps_records = self.vectors.keeps_records
        with self._errors("reading records"):
            found = self.small.get(
                ids=_check_ids(ids) if ids is not None else None,
                where=dict(where) if where else None,
                limit=limit,
                include=[] if keeps_records else ["documents", "metadatas"],
            )
        if keeps_records:
            return self.vectors.records(found["ids"])
        metadatas = found["metadatas"] or [None] * len(found["ids"])
        return {
            record_id: (document, _user_metadata(metadata))
            for record_id, document, metadata in zip(found["ids"], found["documents"], metadatas)
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

    def _shortlist(self, vector: np.ndarray, n: int, where: Mapping | None) -> tuple[list[str], np.ndarray]:
        """The small-dim search: ids and cosines `(m,)` of up to `n` records."""
        with self._errors(f"searching {self.small.name!r}"):
            found = self.small.query(
                query_embeddings=[vector],
                n_results=n,
                where=dict(where) if where else None,
                include=["distances"],
            )
        distances = np.asarray(found["distances"][0], dtype=np.float64)
        cosines = 1.0 - (0.5 if self.space == "l2" else 1.0) * distances  # unit vectors: l2 is squared
        return found["ids"][0], cosines

    def query(
        self, query: str | np.ndarray | Sequence[float], k: int = 10, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The k best records for a query text or base vector `(base_dim,)`, optionally `where`-filtered.

        Small-dim search for `shortlist_factor * k` candidates -> exact rerank at the large dim -> widen
        (x `WIDEN_STEP`, up to `max_shortlist_factor * k`) until `shortlist_is_conclusive` -> top k. Fewer
        than k records (in the store, or passing `where`) give fewer hits. A record whose rerank vector is
        not acknowledged yet (a batch being written) is left out.
        """
        k = check_k(k)
        small_query, large_query = (v[0] for v in self._vectors(self._query_vector(query)))
        n, cap = k * self.shortlist_factor, k * self.max_shortlist_factor
        first: set[str] | None = None
        reranked: dict[str, float] = {}  # large-dim cosine by id, kept when the shortlist widens
        while True:
            searched, small_scores = self._shortlist(small_query, n, where)
            new = [i for i in searched if i not in reranked]
            vectors, written = self.vectors.read(new)
            reranked.update(zip((i for i, w in zip(new, written) if w), _unit(vectors) @ large_query))
            kept = [position for position, i in enumerate(searched) if i in reranked]
            ids, small_scores = [searched[p] for p in kept], small_scores[kept]
            large_scores = np.array([reranked[i] for i in ids], dtype=np.float64)
            first = set(ids) if first is None else first
            if len(searched) < n or n >= cap or shortlist_is_conclusive(small_scores, large_scores, k):
                break
            n = min(n * WIDEN_STEP, cap)
        self.stats.queries += 1
        self.stats.widened += n > k * self.shortlist_factor
        best = _top_k(large_scores, ids, k)
        winners = [ids[i] for i in best]
        records = {}
        if best:  # hits exist in the searched collection: the rerank file serves them without asking it
            records = self.vectors.records(winners) if self.vectors.keeps_records else self.get(winners)
        return [
            Hit(
                ids[i],
                float(large_scores[i]),
                {self.small_dim: float(small_scores[i]), self.large_dim: float(large_scores[i])},
                STAGE_FUNNEL if ids[i] in first else STAGE_WIDENED,
                *records.get(ids[i], (None, {})),
            )
            for i in best
        ]

    def __repr__(self) -> str:
        return (
            f"MatryoshkaStore({self.name!r} at {self.location}, dims {self.small_dim}->{self.large_dim} "
            f"({self.large_vectors} vectors in a {self.rerank_home}), space={self.space!r})"
        )


def _top_k(scores: np.ndarray, ids: Sequence[str], k: int) -> list[int]:
    """Positions of the `k` largest `scores` `(n,)`, best first; ties by id."""
    if len(ids) > k:
        candidates = np.flatnonzero(scores >= np.partition(scores, len(ids) - k)[len(ids) - k]).tolist()
    else:
        candidates = range(len(ids))
    return sorted(candidates, key=lambda i: (-scores[i], ids[i]))[:k]


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows `(n, d)` scaled to unit norm (float16 storage rounds them slightly off it)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def open_store(
    store: MatryoshkaStore | None,
    name: str,
    adaptor: Any = None,
    *,
    client: ClientAPI | None = None,
    path: str | os.PathLike | None = None,
    host: str | None = None,
    port: int = 8000,
    **settings: Any,
) -> MatryoshkaStore:
    """`store` itself, or a `MatryoshkaStore` opened from where and how (in memory, as Chroma's own framework
    stores do, when no location is given): the two ways the framework vector stores are made. Settings that
    are None are left to the store's defaults."""
    settings = {key: value for key, value in settings.items() if value is not None}
    if store is not None:
        if path or host or client or adaptor is not None or settings:
            raise InputError("give an open store, or where and how to open one, not both")
        return store
    if path is None and host is None and client is None:
        client = chromadb.EphemeralClient()
    return MatryoshkaStore(name, adaptor, client=client, path=path, host=host, port=port, **settings)
