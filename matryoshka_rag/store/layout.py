"""Where a Matryoshka store keeps what, and the choices it recorded.

A store `<name>` searches the collection ``<name>__d<small_dim>`` and keeps its rerank vectors in a file
beside an embedded database, in process memory beside an in-memory one, in the searched collection's metadata
(a server's default) or in the collection ``<name>__d<large_dim>`` (`open_homes`). The searched collection records the layout (`StoreLayout.recorded`): the dims, the rerank vectors' kind and home (and the metadata home's row codec), the HNSW
space, the base model, and the adaptor's fingerprint and where it came from (a folder's real path or a
Hugging Face Hub repo id). Opening a store takes each choice from the arguments, else from what the existing
store recorded, else its default (`resolve_layout`); `check_layout` refuses a choice that differs from the
record.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from chromadb import Schema
from chromadb.api import ClientAPI
from chromadb.api.collection_configuration import CreateCollectionConfiguration, CreateHNSWConfiguration
from chromadb.api.models.Collection import Collection
from chromadb.errors import NotFoundError

from ..adaptor.hub import adaptor_location
from ..adaptor.numpy_forward import NumpyAdaptor, as_numpy_adaptor
from ..errors import AdaptorMismatchError, InputError
from ..scoring.recommend import recommend_dim
from ..validation import check_choice, check_rows, unit_rows
from .chroma_client import chroma_errors, in_memory, persist_directory, served
from .chroma_client import location as location_of
from .distances import Space
from .input_checks import check_k
from .processes import StoreDroppedError
from .rerank_homes import CollectionVectors, FileVectors, RerankHome, RerankVectors
from .rerank_memory import MemoryVectors
from .rerank_metadata import DEFAULT_ROW_CODEC, MetadataVectors, RowCodec, recorded_row_codec, row_schema

__all__ = [
    "DEFAULT_HNSW",
    "LAYOUT_KEYS",
    "LAYOUT_VERSION",
    "LargeVectors",
    "StoreLayout",
    "check_layout",
    "check_store_name",
    "collection_name",
    "existing_layout",
    "hnsw_space",
    "hnsw_settings",
    "open_homes",
    "resolve_layout",
    "trained_with_labels",
]

LAYOUT_VERSION = 2
LAYOUT_KEYS = (  # the recorded choices that opening a store must match
    "small_dim",
    "large_dim",
    "large_vectors",
    "rerank_home",
    "rerank_rows",
    "space",
    "base_model",
    "adaptor_fingerprint",
)

DEFAULT_HNSW: CreateHNSWConfiguration = {
    "ef_construction": 200,
    "ef_search": 400,
    "max_neighbors": 32,
}  # defaults give low recall
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]$")

LargeVectors = Literal["auto", "base", "adapted"]


@dataclass(frozen=True)
class StoreLayout:
    """A store's resolved choices: its adaptor (and `adaptor_path`, the real path of its folder or its Hub
    repo id; None for an adaptor object), the dims searched and reranked, the rerank vectors' kind
    (`large_vectors`) and home (`rerank_home`; `rerank_folder`: the folder of the rerank file, else None) and
    the HNSW space; `rerank_rows`: the row codec of the metadata home, else None."""

    adaptor: NumpyAdaptor
    adaptor_path: str | None
    small_dim: int
    large_dim: int
    large_vectors: Literal["base", "adapted"]
    rerank_home: Literal["file", "memory", "collection", "metadata"]
    rerank_folder: Path | None
    space: Space
    rerank_rows: RowCodec | None = None

    def recorded(self) -> dict[str, str | int]:
        """The layout as the searched collection records it."""
        config = self.adaptor.config
        return {
            "matryoshka_rag_layout": LAYOUT_VERSION,
            "small_dim": self.small_dim,
            "large_dim": self.large_dim,
            "large_vectors": self.large_vectors,
            "rerank_home": self.rerank_home,
            "space": self.space,
            "base_model": config.base_model,
            "base_dim": config.base_dim,
            "adaptor_fingerprint": self.adaptor.fingerprint(),
            "adaptor_path": self.adaptor_path or "",
        } | ({"rerank_rows": self.rerank_rows} if self.rerank_rows else {})

    def stored_vectors(self, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Base vectors `(n, base_dim)` -> unit-norm small `(n, small_dim)` and rerank `(n, large_dim)`.

        `InputError` naming the first row whose adapted prefix holds NaN/inf or is all zeros; any other row
        comes out unit-norm (`validation.unit_rows`), so its float16 rerank row is finite and non-zero.
        """
        base_rerank = self.large_vectors == "base"
        dims = (self.small_dim,) if base_rerank else (self.small_dim, self.large_dim)
        small, *adapted = self.adaptor.prefixes(base, dims)  # checks dim, NaN, zeros of the base vectors
        large = np.asarray(base) if base_rerank else adapted[0]
        check_rows(small, f"vectors adapted to {self.small_dim} dims")
        check_rows(large, f"rerank vectors ({self.large_vectors}, {self.large_dim} dims)")
        return unit_rows(small), unit_rows(large)


def trained_with_labels(adaptor: NumpyAdaptor) -> bool:
    """Whether the adaptor's recorded training used relevance labels (the supervised stage)."""
    training = adaptor.metadata.get("training")
    return isinstance(training, Mapping) and training.get("mode") == "supervised"


def check_store_name(name: str) -> str:
    """`name` when it makes valid collection names, else InputError."""
    if not isinstance(name, str) or len(name) < 3 or not _NAME.match(name):
        raise InputError(
            f"collection name {name!r}: use 3+ characters from [a-zA-Z0-9._-], starting and ending "
            "with a letter or digit"
        )
    return name


def collection_name(name: str, dim: int) -> str:
    """The collection of the store `name` that holds its `dim`-dim vectors."""
    return f"{name}__d{dim}"


def _refuse_plain_collection(client: ClientAPI, name: str, location: str) -> None:
    """InputError: a plain Chroma collection `name` (e.g. langchain-chroma's) is not a store of that name."""
    folder = persist_directory(client) or "<its database folder>"
    raise InputError(
        f"collection {name!r} at {location} is a plain Chroma collection, not a matryoshka-rag store: convert "
        f"it (no re-embedding, the original kept) with `matryoshka-rag shrink --path {folder} --collection "
        f"{name}`, or choose another name; no collection was created"
    )


def existing_layout(client: ClientAPI, name: str, location: str) -> dict[str, Any]:
    """Recorded layout of the store `name`'s searched collection, or {} when none exists; InputError when a
    plain Chroma collection holds that name and no store does."""
    pattern = re.compile(re.escape(name) + r"__d(\d+)")
    with chroma_errors(location, f"listing collections for {name!r}"):
        collections = client.list_collections()
    found = [c for c in collections if pattern.fullmatch(c.name)]
    if not found and any(c.name == name for c in collections):
        _refuse_plain_collection(client, name, location)
    for collection in found:
        metadata = collection.metadata or {}
        if metadata.get("matryoshka_rag_layout") != LAYOUT_VERSION:
            raise InputError(
                f"collection {collection.name!r} at {location} was not made by this version of "
                f"matryoshka-rag (layout {metadata.get('matryoshka_rag_layout')!r}, this version writes "
                f"{LAYOUT_VERSION}): index into another name"
            )
    searched = [dict(c.metadata) for c in found if c.metadata.get("role") == "search"]
    if len(searched) > 1:
        names = ", ".join(c.name for c in found)
        raise AdaptorMismatchError(f"collections {names} are each a searched collection: remove one of them")
    return searched[0] if searched else {}


def _located(adaptor: str | os.PathLike) -> tuple[Path, str]:
    """The local folder of an adaptor given by folder or Hub repo id (`hub.adaptor_location`), and how a
    store records it: a folder as its real path, a repo id as given."""
    given = Path(adaptor).expanduser()
    folder = adaptor_location(adaptor)
    if folder == given:  # a folder: adaptor_location looked nothing up
        real = os.path.realpath(given)
        return Path(real), real
    return folder, str(adaptor)


def _resolve_adaptor(
    adaptor: Any, existing: Mapping[str, Any], name: str, location: str
) -> tuple[NumpyAdaptor, str | None]:
    """The adaptor given (an object, a folder or a Hub repo id), else the one the store recorded; and how
    the store records it (None for an object)."""
    if adaptor is not None:
        if isinstance(adaptor, str | os.PathLike):
            folder, recorded = _located(adaptor)
            return as_numpy_adaptor(folder), recorded
        return as_numpy_adaptor(adaptor), None
    if not existing:
        raise InputError(f"collection {name!r} does not exist at {location}: give an adaptor")
    recorded = existing.get("adaptor_path") or ""
    if not recorded:
        raise InputError(
            f"collection {name!r} was built with an adaptor object whose folder was not recorded "
            f"(fingerprint {existing.get('adaptor_fingerprint')}): pass that adaptor"
        )
    folder, _ = _located(recorded)
    if not folder.is_dir():
        raise InputError(f"collection {name!r} was built with the adaptor at {recorded}, which is gone")
    return as_numpy_adaptor(folder), recorded


def _resolve_large_vectors(
    requested: LargeVectors | None, existing: Mapping[str, Any], adaptor: NumpyAdaptor, large_dim: int
) -> Literal["base", "adapted"]:
    """ "base" or "adapted": the requested kind, else the recorded one (same large dim), else "auto"'s."""
    same_large = existing.get("large_dim") == large_dim
    kind = check_choice(
        "large_vectors",
        requested or (existing.get("large_vectors") if same_large else None) or "auto",
        LargeVectors,
    )
    full = large_dim == adaptor.config.base_dim
    if kind == "auto":
        kind = "base" if full and not trained_with_labels(adaptor) else "adapted"
    if kind == "base" and not full:
        raise InputError(
            f"large_vectors='base' needs large_dim = the base dim {adaptor.config.base_dim}, got {large_dim}"
        )
    return kind


def _resolve_home(
    requested: str, client: ClientAPI, name: str, location: str
) -> Literal["file", "memory", "collection", "metadata"]:
    """The requested home, or "auto"'s for the client (file beside an embedded database, memory beside an
    in-memory one, metadata through a server, else collection); InputError for a home the client cannot
    hold."""
    home = check_choice("rerank_home", requested, RerankHome)
    memory = in_memory(client)
    if home == "auto":
        if persist_directory(client) is not None:
            home = "file"
        else:
            home = "memory" if memory else "metadata" if served(client) else "collection"
    if home == "file" and persist_directory(client) is None:
        raise InputError(
            f"store {name!r} keeps its rerank vectors in a file beside an embedded database: open it with "
            f"path= (a PersistentClient), not through {location}"
        )
    if home == "memory" and not memory:
        raise InputError(
            f"rerank_home='memory' keeps the rerank vectors in this process, beside an in-memory Chroma "
            f"(chromadb.EphemeralClient()), not {location}: use 'auto'"
        )
    return home


def _resolve_rows(requested: RowCodec | None, existing: Mapping[str, Any], home: str) -> RowCodec | None:
    """The metadata home's row codec: the requested one, else the recorded one, else `DEFAULT_ROW_CODEC`;
    None for another home (InputError if one was requested)."""
    if home != "metadata":
        if requested is not None:
            raise InputError(
                f"rerank_rows={requested!r} encodes rows kept in metadata (rerank_home='metadata'), but this "
                f"store's rerank_home is {home!r}: leave rerank_rows out"
            )
        return None
    chosen = requested or recorded_row_codec(existing) or DEFAULT_ROW_CODEC
    return check_choice("rerank_rows", chosen, RowCodec)


def resolve_layout(
    client: ClientAPI,
    name: str,
    existing: Mapping[str, Any],
    adaptor: Any,
    small_dim: int | Literal["auto"] | None,
    large_dim: int | None,
    large_vectors: LargeVectors | None,
    rerank_home: RerankHome | None,
    space: Space | None,
    rerank_rows: RowCodec | None = None,
) -> StoreLayout:
    """The layout of the store `name` in `client`: each choice (the arguments of `MatryoshkaStore`) as
    given, else as `existing` recorded, else its default. Warns when `small_dim` is not a trained dim."""
    store_location, database_folder = location_of(client), persist_directory(client)
    chosen_space = check_choice("space", space or existing.get("space") or "cosine", Space)
    numpy_adaptor, adaptor_path = _resolve_adaptor(adaptor, existing, name, store_location)
    config = numpy_adaptor.config
    for label, dim in (("small_dim", small_dim), ("large_dim", large_dim)):
        if dim is not None and dim != "auto":
            check_k(dim, label)
    large = int(large_dim or existing.get("large_dim") or config.base_dim)
    if small_dim == "auto":  # label-free: the smallest trained dim keeping DEFAULT_TARGET (recommend_dim)
        small_dim = existing.get("small_dim") or recommend_dim(numpy_adaptor, below=large, trained_only=True)
    small = int(small_dim or existing.get("small_dim") or min(64, config.base_dim))
    if not 0 < small < large <= config.base_dim:
        raise InputError(
            f"need 0 < small_dim < large_dim <= base dim {config.base_dim}, got {small} and {large}"
        )
    kind = _resolve_large_vectors(large_vectors, existing, numpy_adaptor, large)
    home = _resolve_home(rerank_home or existing.get("rerank_home") or "auto", client, name, store_location)
    rows = _resolve_rows(rerank_rows, existing, home)
    if small not in config.dims:
        warnings.warn(
            f"small_dim {small} is not one of the adaptor's trained dims {config.dims}",
            stacklevel=3,  # the caller of MatryoshkaStore
        )
    rerank_folder = (
        database_folder / "matryoshka_rag" if database_folder is not None and home == "file" else None
    )
    return StoreLayout(
        numpy_adaptor, adaptor_path, small, large, kind, home, rerank_folder, chosen_space, rows
    )


def check_layout(recorded: Mapping[str, Any], layout: StoreLayout, name: str, location: str) -> None:
    """Raise `AdaptorMismatchError` naming both values for the first recorded setting that `layout` changes."""
    wanted = layout.recorded()
    recorded = {**recorded, "rerank_rows": recorded_row_codec(recorded)}  # float16 where none was recorded
    for key in LAYOUT_KEYS:
        if recorded.get(key) != wanted.get(key):
            detail = ""
            if key == "adaptor_fingerprint":
                detail = (
                    f" (recorded adaptor folder: {recorded.get('adaptor_path') or 'not recorded'}, "
                    f"given: {layout.adaptor_path or 'an adaptor object'})"
                )
            raise AdaptorMismatchError(
                f"collection {name!r} at {location} was built with {key}={recorded.get(key)!r}, "
                f"got {key}={wanted.get(key)!r}{detail}; nothing was changed"
            )


def hnsw_settings(collection: Collection) -> CreateHNSWConfiguration:
    """The HNSW settings (all but the space) `collection` was created with, read from its handle (no Chroma
    call): those to create it again with."""
    found = (collection.configuration_json or {}).get("hnsw") or {}
    return cast(CreateHNSWConfiguration, {key: value for key, value in found.items() if key != "space"})


def _open_collection(
    client: ClientAPI,
    layout: StoreLayout,
    name: str,
    role: str,
    configuration: CreateCollectionConfiguration | Schema,
    location: str,
    create: bool,
) -> Collection:
    """Get the collection `name` (checking its HNSW space), or create it with the layout metadata and its
    `configuration` (or `Schema`); when not `create`, `StoreDroppedError` if it is missing."""
    with chroma_errors(location, f"opening collection {name!r}"):
        try:
            collection = client.get_collection(name, embedding_function=None)
        except NotFoundError:
            if not create:
                raise StoreDroppedError(
                    f"collection {name!r} at {location} no longer exists: its store was dropped since this "
                    "process opened it (a read_only store never creates one)"
                ) from None
            metadata = {**layout.recorded(), "role": role}
            if role == "search":
                metadata["store_id"] = uuid.uuid4().hex
            schema = configuration if isinstance(configuration, Schema) else None
            collection = client.create_collection(
                name,
                metadata=metadata,
                configuration=None if schema else cast(CreateCollectionConfiguration, configuration),
                schema=schema,
                embedding_function=None,
            )
    found_space = hnsw_space(collection) or layout.space
    if found_space != layout.space:
        raise AdaptorMismatchError(
            f"collection {name!r} at {location} uses space {found_space!r}, got space {layout.space!r}; "
            "nothing was changed"
        )
    return collection


def hnsw_space(collection: Collection) -> Space | None:
    """The HNSW space `collection` was made with; None when its configuration records none."""
    return ((collection.configuration_json or {}).get("hnsw") or {}).get("space")


def open_homes(
    client: ClientAPI,
    name: str,
    layout: StoreLayout,
    hnsw: CreateHNSWConfiguration | None,
    location: str,
    create: bool = True,
) -> tuple[Collection, RerankVectors]:
    """The searched collection of the store `name` and the home of its rerank vectors, created as `layout`
    says when missing (`hnsw`: the HNSW settings of new collections, default `DEFAULT_HNSW`); when not
    `create`, `StoreDroppedError` if the store is gone."""
    settings: CreateHNSWConfiguration = {"space": layout.space, **(hnsw or DEFAULT_HNSW)}
    configuration: CreateCollectionConfiguration = {"hnsw": settings}
    searched_name = collection_name(name, layout.small_dim)
    if layout.rerank_home == "metadata":
        codec = layout.rerank_rows
        assert codec is not None, "resolve_layout sets the metadata home's row codec"
        schema = row_schema(settings, layout.large_dim, codec)
        searched = _open_collection(client, layout, searched_name, "search", schema, location, create)
        return searched, MetadataVectors(searched, layout.large_dim, codec, location)
    searched = _open_collection(client, layout, searched_name, "search", configuration, location, create)
    if layout.rerank_home == "memory":
        return searched, MemoryVectors(searched, layout.large_dim)
    if layout.rerank_folder is None:
        rerank_name = collection_name(name, layout.large_dim)
        rerank = _open_collection(client, layout, rerank_name, "rerank", configuration, location, create)
        return searched, CollectionVectors(rerank, searched, location, client)
    with chroma_errors(location, "counting"):
        new = create and searched.count() == 0
    return searched, FileVectors(layout.rerank_folder, name, layout.large_dim, searched, location, create=new)
