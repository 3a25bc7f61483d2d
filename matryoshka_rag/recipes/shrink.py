"""Shrink an existing Chroma collection without re-embedding: train an adaptor on the vectors it already
stores, write a Matryoshka store of them (in a database folder of its own), check it against the original.

The original collection is only read. The check is label-free: a sample of stored records are the queries,
and recall@10 compares the store's hits with the original collection's own search for the same vectors.
Serving cost is measured in fresh processes (RSS growth over the same imports, while answering the sample)
and on disk (the two database folders).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..atomic import atomic_write_text
from ..errors import InputError
from ..scoring.recommend import recommend_dim
from ..store.chroma_client import chroma_errors, connect
from ..training_options import DEFAULT_TARGET, check_target
from ..validation import check_vectors, default_dims

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.types import Metadata

__all__ = ["ShrinkReport", "read_collection", "shrink", "stored_vectors"]

PAGE = 5000


@dataclass(frozen=True)
class ShrinkReport:
    """What `shrink` wrote and measured. Sizes in MiB; `recall_at_10` is the label-free check."""

    store: str
    store_path: str
    adaptor_path: str
    records: int
    base_dim: int
    small_dim: int
    recall_at_10: float
    sample: int
    disk_before_mib: float
    disk_after_mib: float
    rss_before_mib: float
    rss_after_mib: float

    def table(self) -> str:
        rows = [
            ("records", f"{self.records}"),
            ("dims searched", f"{self.base_dim} -> {self.small_dim}"),
            (
                f"recall@10 vs the original's search ({self.sample} stored records as queries)",
                f"{self.recall_at_10:.4f}",
            ),
            (
                "disk, MiB (original folder -> store folder)",
                f"{self.disk_before_mib:.1f} -> {self.disk_after_mib:.1f}",
            ),
            (
                "serving RSS growth, MiB (original -> store)",
                f"{self.rss_before_mib:.1f} -> {self.rss_after_mib:.1f}",
            ),
            ("store", f"{self.store} at {self.store_path}"),
            ("adaptor", self.adaptor_path),
        ]
        return "\n".join(f"{label}: {value}" for label, value in rows)


def stored_vectors(embeddings: Any, ids: Sequence[str], collection: str) -> np.ndarray:
    """The vectors a collection returned, as float32 `(n, dim)`; InputError naming the collection and the
    first record whose dim differs from the first record's, or a bad value (NaN, zeros)."""
    rows = list(embeddings) if embeddings is not None else []
    if len(rows) != len(ids) or any(row is None for row in rows):
        raise InputError(f"collection {collection!r} holds records without vectors (it stores no embeddings)")
    dims = [len(row) for row in rows]
    odd = next((i for i, d in enumerate(dims) if d != dims[0]), None)
    if odd is not None:
        raise InputError(
            f"collection {collection!r} holds vectors of mixed dims: {ids[0]!r} has {dims[0]}, "
            f"{ids[odd]!r} has {dims[odd]}"
        )
    return check_vectors(np.asarray(rows, dtype=np.float32), what=f"vectors of collection {collection!r}")


def read_collection(
    client: ClientAPI, name: str, location: str
) -> tuple[list[str], np.ndarray, list[str | None], list[Metadata | None]]:
    """Ids, vectors `(n, dim)`, documents and metadatas of every record of collection `name` (read in pages);
    InputError when it is missing (naming those there), empty, or holds records without vectors."""
    with chroma_errors(location, f"opening collection {name!r}"):
        names = [c.name for c in client.list_collections()]
        if name not in names:
            raise InputError(
                f"collection {name!r} does not exist at {location} (it holds: {', '.join(names) or 'none'})"
            )
        collection = client.get_collection(name, embedding_function=None)
        total = collection.count()
    if total == 0:
        raise InputError(f"collection {name!r} at {location} is empty: it holds no vectors")
    ids: list[str] = []
    embeddings: list[Any] = []  # a vector per record, None for a record stored without one
    documents: list[str | None] = []
    metadatas: list[Metadata | None] = []
    for offset in range(0, total, PAGE):
        with chroma_errors(location, f"reading collection {name!r}"):
            page = collection.get(limit=PAGE, offset=offset, include=["embeddings", "documents", "metadatas"])
        ids += page["ids"]
        embeddings += (
            list(page["embeddings"]) if page["embeddings"] is not None else [None] * len(page["ids"])
        )
        documents += page["documents"] or [None] * len(page["ids"])
        metadatas += page["metadatas"] or [None] * len(page["ids"])
    return ids, stored_vectors(embeddings, ids, name), documents, metadatas


def _folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


_SERVE = """
import json, sys, time, numpy as np
import chromadb
import matryoshka_rag.store.store as retriever
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
kind, path, name, queries = sys.argv[1], sys.argv[2], sys.argv[3], np.load(sys.argv[4])
before = rss()
if kind == "plain":
    collection = chromadb.PersistentClient(path).get_collection(name, embedding_function=None)
    found = [collection.query(query_embeddings=[q], n_results=10)["ids"][0] for q in queries]
else:
    store = retriever.MatryoshkaStore(name, path=path, read_only=True)
    found = [[hit.id for hit in store.query(q, k=10)] for q in queries]
print(json.dumps({"rss": rss() - before, "found": found}))
"""


def _serve(kind: str, path: Path, name: str, queries_file: Path) -> dict:
    """Answer the sample queries in a fresh process: RSS growth (MiB) and the top-10 ids of each."""
    result = subprocess.run(
        [sys.executable, "-c", _SERVE, kind, str(path), name, str(queries_file)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"serving {name!r} from {path} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def shrink(
    path: str | os.PathLike,
    collection: str,
    *,
    dim: int | Literal["auto"] = 64,
    target: float = DEFAULT_TARGET,
    out: str | os.PathLike | None = None,
    name: str | None = None,
    base_model: str = "unknown",
    sample: int = 200,
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = True,
) -> ShrinkReport:
    """Shrink `collection` of the embedded database at `path` into a Matryoshka store; the original is read only.
    The store keeps the collection's HNSW space, so the framework stores score as Chroma did there.

    Args:
        path: folder of the embedded Chroma database holding `collection`.
        collection: its name (e.g. one built by langchain-chroma).
        dim: the store's searched dim, or "auto": the smallest trained dim whose served prefix keeps `target`
            of full-dim retrieval, estimated label-free on the held-out stored vectors
            (`recommend.recommend_dim`).
        target: with `dim="auto"`, the share of full-dim retrieval to keep, in (0, 1].
        out: database folder of the store (default `<path>.matryoshka`); must not hold a store of `name`.
        name: the store's name (default: the collection's).
        base_model: the model that made the vectors, recorded in the adaptor.
        sample: stored records used as queries by the check.
        max_steps: cap on the adaptor's training steps (default: the trainer's).
    """
    from ..adaptor.persistence import save_adaptor
    from ..store.layout import hnsw_space
    from ..store.store import MatryoshkaStore
    from ..training import UnsupervisedConfig, train_unsupervised

    source = Path(path).expanduser()
    if not source.is_dir():
        raise InputError(f"no Chroma database folder at {source}")
    out = Path(out).expanduser() if out is not None else source.with_name(source.name + ".matryoshka")
    if out.resolve() == source.resolve():
        raise InputError("the store goes in a database folder of its own: give --out another folder")
    name = name or collection
    source_client = connect(path=source)
    ids, vectors, documents, metadatas = read_collection(source_client, collection, str(source))
    with chroma_errors(str(source), f"opening collection {collection!r}"):
        space = hnsw_space(source_client.get_collection(collection, embedding_function=None))
    base_dim = vectors.shape[1]
    target = check_target(target)
    if dim != "auto" and not (isinstance(dim, int) and 0 < dim < base_dim):
        raise InputError(
            f"dim must be in 1..{base_dim - 1} (the stored vectors have {base_dim} dims) or 'auto', got {dim!r}"
        )
    store_client = connect(path=out)
    if any(c.name.startswith(f"{name}__d") for c in store_client.list_collections()):
        raise InputError(f"{out} already holds a store named {name!r}: choose another --name or --out")
    dims = tuple(sorted({*default_dims(base_dim), *([] if dim == "auto" else [dim])}))
    config = UnsupervisedConfig(seed=seed)
    if max_steps:
        config = replace(config, max_steps=max_steps)
    adaptor = train_unsupervised(vectors, dims, config, base_model=base_model, progress=progress)
    if dim == "auto":
        dim = recommend_dim(adaptor, target=target, below=base_dim, trained_only=True)
    adaptor_path = save_adaptor(adaptor, out / "matryoshka_rag" / "adaptors" / name)
    store = MatryoshkaStore(name, adaptor_path, client=store_client, small_dim=dim, space=space)
    texts = [d for d in documents if d is not None] or None  # `upsert` refuses a list missing some
    store.upsert(ids, texts=texts, embeddings=vectors, metadatas=metadatas)

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    queries_file = out / "matryoshka_rag" / "shrink_queries.npy"
    np.save(queries_file, vectors[chosen])
    original = _serve("plain", source, collection, queries_file)
    shrunk = _serve("store", out, name, queries_file)
    queries_file.unlink()
    recall = float(
        np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(shrunk["found"], original["found"])])
    )
    report = ShrinkReport(
        store=name,
        store_path=str(out),
        adaptor_path=str(adaptor_path),
        records=len(ids),
        base_dim=base_dim,
        small_dim=dim,
        recall_at_10=recall,
        sample=len(chosen),
        disk_before_mib=_folder_mib(source),
        disk_after_mib=_folder_mib(out),
        rss_before_mib=original["rss"],
        rss_after_mib=shrunk["rss"],
    )
    atomic_write_text(
        out / "matryoshka_rag" / f"shrink-{name}.json", json.dumps(asdict(report), indent=2) + "\n"
    )
    return report
