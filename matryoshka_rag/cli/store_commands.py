"""The store commands: `index` (a corpus into a Chroma Matryoshka store), `query` (text queries against it),
`shrink` (a Matryoshka store of an existing collection's stored vectors) and `repair` (rebuild a store's searched
collection from its rerank file).

Heavy modules (chromadb, torch, sentence-transformers) are imported inside the commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..training_options import DEFAULT_TARGET
from ..validation import check_int

if TYPE_CHECKING:
    import numpy as np

    from ..embeddings.providers import SentenceTransformerProvider
    from ..store.store import MatryoshkaStore

DEFAULT_COLLECTION = "matryoshka-rag"
EMBEDDINGS_HELP = "precomputed base vectors: a .npy file, or a folder with corpus.npy"


def dim_or_auto(text: str) -> int | str:
    """A dim argument: a positive integer or "auto"."""
    if text == "auto":
        return text
    try:
        return check_int("a dim", int(text))
    except ValueError:  # not an integer, or below 1 (`InputError` is a `ValueError`)
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def _add_location(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--path", help="folder of an embedded Chroma database")
    where.add_argument("--host", help="host of a Chroma server (`chroma run`)")
    parser.add_argument("--port", type=int, default=8000, help="port of the Chroma server (default 8000)")
    parser.add_argument("--collection", default=DEFAULT_COLLECTION, help=f"default {DEFAULT_COLLECTION!r}")
    parser.add_argument(
        "--model", default=None, help="base model for texts (default: the one the adaptor was trained on)"
    )


def add_index_arguments(subparsers: argparse._SubParsersAction) -> None:
    """Register the `index`, `query`, `shrink` and `repair` commands (handler in `handler`) on an argparse subparsers
    object."""
    index = subparsers.add_parser("index", help="index a corpus.jsonl into Chroma (small dims + large dims)")
    source = index.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="BEIR-style corpus.jsonl (_id, title, text)")
    source.add_argument(
        "--dataset", help="BEIR dataset whose corpus.jsonl to index: a folder or a name such as scifact"
    )
    index.add_argument("--adaptor", required=True, help="adaptor folder (recorded in the collection)")
    _add_location(index)
    index.add_argument(
        "--small-dim",
        type=dim_or_auto,
        default=None,
        help="searched dim (default 64); auto: the smallest trained dim keeping 0.99 of full-dim retrieval, "
        "as the adaptor's training estimated it label-free",
    )
    index.add_argument("--large-dim", type=int, default=None, help="rerank dim (default: the base dim)")
    index.add_argument(
        "--large-vectors",
        choices=("auto", "base", "adapted"),
        default="auto",
        help="rerank vectors: base (full dim only) or adapted prefixes (auto: adapted when the adaptor was "
        "trained with labels or --large-dim is below the base dim, else base)",
    )
    index.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    index.add_argument(
        "--embedding-ids", help="JSON list of the .npy rows' ids (default: <npy stem>_ids.json)"
    )
    index.add_argument("--batch-size", type=int, default=1000, help="records per acknowledged batch")
    index.set_defaults(handler=index_command)

    query = subparsers.add_parser("query", help="query a collection built by `index`")
    query.add_argument("text", help="query text")
    _add_location(query)
    query.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    query.add_argument("--where", help='Chroma metadata filter as JSON, e.g. \'{"year": {"$gte": 2020}}\'')
    query.add_argument("--json", action="store_true", help="print the hits as JSON")
    query.set_defaults(handler=query_command)

    shrink = subparsers.add_parser(
        "shrink", help="make a Matryoshka store of an existing collection's stored vectors (no re-embedding)"
    )
    shrink.add_argument("--path", required=True, help="folder of the embedded Chroma database")
    shrink.add_argument("--collection", required=True, help="the collection to shrink (only read)")
    shrink.add_argument(
        "--dim",
        type=dim_or_auto,
        default=64,
        help="searched dim of the store (default 64); auto: the smallest trained dim keeping --target of "
        "full-dim retrieval (label-free, on held-out stored vectors)",
    )
    shrink.add_argument(
        "--target", type=float, default=DEFAULT_TARGET, help=f"with --dim auto (default {DEFAULT_TARGET})"
    )
    shrink.add_argument("--out", help="database folder of the store (default: <path>.matryoshka)")
    shrink.add_argument("--name", help="name of the store (default: the collection's)")
    shrink.add_argument("--model", default="unknown", help="the model that made the vectors (recorded)")
    shrink.add_argument("--sample", type=int, default=200, help="stored records used as check queries")
    shrink.add_argument("--max-steps", type=int, default=None, help="cap on the adaptor's training steps")
    shrink.set_defaults(handler=shrink_command)

    repair = subparsers.add_parser(
        "repair", help="rebuild an embedded store's searched collection from its rerank file (after a crash)"
    )
    repair.add_argument("--path", required=True, help="folder of the embedded Chroma database")
    repair.add_argument("--collection", default=DEFAULT_COLLECTION, help=f"default {DEFAULT_COLLECTION!r}")
    repair.set_defaults(handler=repair_command)


def _precomputed(args: argparse.Namespace, ids: list[str]) -> np.ndarray:
    """Base vectors of `ids` `(n, d)` from `--embeddings` (+ `--embedding-ids`), aligned by id."""
    from ..data.beir import aligned_vectors, vectors_file

    ids_file = Path(args.embedding_ids).expanduser() if args.embedding_ids else None
    return aligned_vectors(vectors_file(args.embeddings), ids, ids_file)


def text_provider(model: str | None, base_model: str) -> SentenceTransformerProvider:
    from ..embeddings.providers import SentenceTransformerProvider
    from ..errors import InputError

    if model is None and base_model in ("", "unknown"):
        raise InputError("the adaptor does not record its base model: pass --model")
    return SentenceTransformerProvider(model or base_model)


def _open_store(args: argparse.Namespace, **kwargs: Any) -> MatryoshkaStore:
    from ..store.store import MatryoshkaStore

    location = {"path": args.path} if args.path else {"host": args.host, "port": args.port}
    return MatryoshkaStore(args.collection, **location, **kwargs)


def index_command(args: argparse.Namespace) -> None:
    """Upsert every document of `--corpus` in batches, printing a line per acknowledged batch.

    Re-running after an interruption is safe: batches already written are overwritten, never duplicated.
    """
    from ..data.beir import read_corpus

    batch_size = check_int("--batch-size", args.batch_size)
    if args.dataset:
        from ..data.download import dataset_folder

        args.corpus = str(dataset_folder(args.dataset) / "corpus.jsonl")
    ids, texts = read_corpus(args.corpus)
    vectors = _precomputed(args, ids) if args.embeddings else None
    store = _open_store(
        args,
        adaptor=args.adaptor,
        small_dim=args.small_dim,
        large_dim=args.large_dim,
        large_vectors=None if args.large_vectors == "auto" else args.large_vectors,
    )
    if vectors is None:
        store.provider = text_provider(args.model, store.adaptor.config.base_model)
    for start in range(0, len(ids), batch_size):
        end = min(start + batch_size, len(ids))
        store.upsert(
            ids[start:end], texts=texts[start:end], embeddings=None if vectors is None else vectors[start:end]
        )
        print(f"indexed {end}/{len(ids)}", flush=True)
    print(
        f"{store.count()} records in {store.collection_name(store.small_dim)} at {store.location} "
        f"(rerank vectors: {store.large_vectors}, {store.large_dim} dims, rerank_home={store.rerank_home!r})"
    )


def shrink_command(args: argparse.Namespace) -> None:
    """Train an adaptor on the collection's vectors, write the store, print the label-free check and costs."""
    from ..recipes.shrink import shrink

    report = shrink(
        args.path,
        args.collection,
        dim=args.dim,
        target=args.target,
        out=args.out,
        name=args.name,
        base_model=args.model,
        sample=args.sample,
        max_steps=args.max_steps,
    )
    print(report.table())


def query_command(args: argparse.Namespace) -> None:
    """Print the k best hits for the query text (the adaptor is the one recorded at index time)."""
    from ..errors import InputError
    from ..store.records import check_where
    from ..validation import check_int

    try:
        where = check_where(json.loads(args.where) if args.where else None)  # checked before the model loads
    except json.JSONDecodeError as error:
        raise InputError(f"--where is not valid JSON: {error}") from error
    check_int("k", args.k)
    if args.path and not Path(args.path).expanduser().is_dir():
        raise InputError(f"no Chroma database at {args.path}: run `index` first")
    store = _open_store(args, read_only=True)
    store.provider = text_provider(args.model, store.adaptor.config.base_model)
    hits = store.query(args.text, k=args.k, where=where)
    if args.json:
        print(
            json.dumps([{**vars(hit), "scores": {str(d): s for d, s in hit.scores.items()}} for hit in hits])
        )
        return
    for rank, hit in enumerate(hits, start=1):
        dims = ", ".join(f"{dim}: {score:.4f}" for dim, score in hit.scores.items())
        print(f"{rank:>3}. {hit.id}  {hit.score:.4f} ({dims}) [{hit.stage}]")
        if hit.document:
            print(f"     {hit.document[:200]}")


def repair_command(args: argparse.Namespace) -> None:
    """Rebuild the store's searched collection from its rerank file and print what was rebuilt."""
    from ..store.repair import repair

    repaired = repair(args.collection, args.path)
    left_out = (
        f", {repaired.unacknowledged} ids without a rerank row left out" if repaired.unacknowledged else ""
    )
    print(
        f"rebuilt {repaired.collection} at {args.path}: {repaired.records} records from the rerank file{left_out}"
    )
