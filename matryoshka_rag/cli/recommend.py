"""`recommend` command: the label-free estimate of each dim of an adaptor and the smallest dim meeting a target.

Heavy modules (chromadb, sentence-transformers, matplotlib) are imported inside the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..training_options import DEFAULT_TARGET, check_target
from ..validation import check_int
from .store_commands import EMBEDDINGS_HELP

if TYPE_CHECKING:
    import numpy as np


def add_recommend_arguments(subparsers: argparse._SubParsersAction) -> None:
    """Register the `recommend` command on an argparse subparsers object."""
    recommend = subparsers.add_parser(
        "recommend",
        help="label-free: how much of full-dim retrieval each dim keeps, and the dim to use",
        description="The label-free estimate per dim and the smallest dim keeping --target. Measured on "
        "--corpus, --embeddings or --path/--collection when given, else the estimate recorded at training.",
    )
    recommend.add_argument("--adaptor", required=True, help="adaptor folder")
    source = recommend.add_mutually_exclusive_group()
    source.add_argument("--corpus", help="BEIR-style corpus.jsonl, encoded with --model")
    source.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    source.add_argument("--path", help="folder of an embedded Chroma database (with --collection)")
    recommend.add_argument("--collection", help="collection whose stored vectors to measure on (with --path)")
    recommend.add_argument(
        "--model", default=None, help="base model for --corpus (default: the one the adaptor was trained on)"
    )
    recommend.add_argument(
        "--target",
        type=float,
        default=DEFAULT_TARGET,
        help=f"share of full-dim retrieval to keep, in (0, 1] (default {DEFAULT_TARGET})",
    )
    recommend.add_argument(
        "--plot", default="recommend.png", help="PNG of the estimate (default recommend.png)"
    )
    recommend.add_argument(
        "--queries", type=int, default=500, help="corpus items used as queries (default 500)"
    )
    recommend.set_defaults(handler=recommend_command)


def _corpus_vectors(args: argparse.Namespace, base_model: str) -> Path | np.ndarray | None:
    """The base vectors named by the arguments, or None (no source: the estimate recorded at training)."""
    from ..errors import InputError

    if bool(args.path) != bool(args.collection):
        raise InputError("--path and --collection go together")
    if args.embeddings:
        from ..data.beir import vectors_file

        return vectors_file(args.embeddings)
    if args.path:
        from ..recipes.shrink import read_collection
        from ..store.chroma_client import connect

        return read_collection(connect(path=args.path), args.collection, args.path)[1]
    if args.corpus:
        from ..data.beir import read_corpus
        from ..embeddings.cache import EmbeddingCache
        from ..embeddings.providers import embed_texts
        from .store_commands import text_provider

        with EmbeddingCache() as cache:
            return embed_texts(text_provider(args.model, base_model), read_corpus(args.corpus)[1], cache)
    return None


def recommend_command(args: argparse.Namespace) -> None:
    """Print the estimate table and the recommended dim; write the plot."""
    from ..adaptor.numpy_forward import NumpyAdaptor
    from ..scoring.recommend import estimate_dims, estimate_table, plot_estimates, recommended

    target = check_target(args.target)
    queries = check_int("--queries", args.queries)
    adaptor = NumpyAdaptor.from_folder(args.adaptor)
    vectors = _corpus_vectors(args, adaptor.config.base_model)
    estimates = estimate_dims(adaptor, vectors, queries=queries)
    chosen = recommended(estimates, target)
    print(estimate_table(estimates, target, chosen))
    plot_estimates(estimates, target, chosen, args.plot)
    kept = next(row.kept for row in estimates if row.dim == chosen)
    where = (
        "measured on the given corpus" if vectors is not None else "recorded at training, on held-out items"
    )
    print(f"\nrecommended dim: {chosen} (keeps {kept:.4f} of full-dim retrieval, target {target:g}; {where})")
    print(f"wrote {args.plot}")
