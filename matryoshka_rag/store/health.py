"""Whether an embedded store can serve as it opens: its searched collection readable, no repair left half-done,
and no more searchable records than the rerank file holds acknowledged ids. Else `StoreNeedsRepairError`
naming `matryoshka-rag repair` (`repair`), which rebuilds the searched collection from the rerank file.

The check is cheap: Chroma's `count()` and the rerank file's id index, both read on opening anyway, under the
rerank file's write lock (so a batch being written is not counted half). A searchable record without an
acknowledged row is never served (a query and `get` skip it): a rerank file older than the collection.
"""

from __future__ import annotations

from pathlib import Path

from chromadb.api import ClientAPI
from chromadb.api.collection_configuration import CreateHNSWConfiguration
from chromadb.api.models.Collection import Collection
from chromadb.errors import InternalError

from ..errors import InputError
from .chroma_client import chroma_errors
from .layout import StoreLayout, open_homes
from .rerank_homes import FileVectors, RerankVectors

__all__ = ["StoreNeedsRepairError", "journal_path", "open_checked"]


class StoreNeedsRepairError(InputError):
    """The store's searched collection cannot serve; `matryoshka-rag repair` rebuilds it from the rerank file."""


def journal_path(folder: Path, name: str) -> Path:
    """The journal of a repair of the store `name` whose rerank files live in `folder`: present while one runs
    (or was killed)."""
    return folder / f"{name}.repair.json"


def _needs_repair(name: str, location: str, why: str) -> StoreNeedsRepairError:
    first_line = why.strip().splitlines()[0] if why.strip() else why
    return StoreNeedsRepairError(
        f"store {name!r} at {location} needs repair: {first_line}; run "
        f"`matryoshka-rag repair --path {location} --collection {name}` (it rebuilds the searched collection "
        "from the rerank file)"
    )


def open_checked(
    client: ClientAPI, name: str, layout: StoreLayout, hnsw: CreateHNSWConfiguration | None, location: str
) -> tuple[Collection, RerankVectors]:
    """`layout.open_homes`, then `StoreNeedsRepairError` when the store cannot serve (see the module)."""
    if layout.rerank_folder is not None and journal_path(layout.rerank_folder, name).exists():
        raise _needs_repair(name, location, "a repair of it was interrupted")
    try:
        searched, vectors = open_homes(client, name, layout, hnsw, location)
        if isinstance(vectors, FileVectors):
            with vectors.writing(), chroma_errors(location, "counting"):  # no batch half-written meanwhile
                count, indexed = searched.count(), vectors.indexed()
            if count > indexed:
                why = f"{count} searchable records, but only {indexed} ids in the rerank file"
                raise _needs_repair(name, location, why)
    except InternalError as error:
        if layout.rerank_folder is None:  # a server's collection: no rerank file to rebuild it from
            raise
        why = f"Chroma cannot read its searched collection ({error})"
        raise _needs_repair(name, location, why) from error
    return searched, vectors
