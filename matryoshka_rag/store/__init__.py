"""The Matryoshka store on Chroma (torch-free): search a small adapted prefix, rerank exactly at a larger dim.

- `store`: `MatryoshkaStore`, `open_store`, `Hit`.
- `layout`: where a store keeps what, and the choices it recorded, checked on open.
- `records`: the ids, documents and metadata a store accepts.
- `search`: shortlist, exact rerank and widening, without Chroma.
- `writing`, `reading`: the order of writes and deletes across the searched collection and the rerank
  vectors, and the reads of both.
- `processes`: one writing process per embedded database, readers beside it (`read_only=True`), and a
  dropped store refused by name (`StoreDroppedError`).
- `rerank_homes` (the interface, the file and collection homes), `rerank_file`, `rerank_memory`,
  `rerank_metadata`: where the rerank vectors live; `shortlist`: when a shortlist is conclusive.
- `health`: whether a store can serve as it opens; `repair`: rebuilding its searched collection from the
  rerank file.
- `distances`: Chroma's distance in each HNSW space, from and to the cosine the store scores in.
- `input_checks`: checks shared with the framework stores; `chroma_client`: the Chroma connection.
- `write_errors`: a write the disk refused (no space, read-only) as one named `StoreWriteError`.
"""

from .health import StoreNeedsRepairError
from .processes import StoreDroppedError, StoreLockedError
from .store import Hit, MatryoshkaStore, open_store
from .write_errors import StoreWriteError

__all__ = [
    "Hit",
    "MatryoshkaStore",
    "StoreDroppedError",
    "StoreLockedError",
    "StoreNeedsRepairError",
    "StoreWriteError",
    "open_store",
]
