"""`matryoshka-rag` command line. Heavy modules are imported inside the commands so `--help` is instant."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from ..training_options import SupervisedObjective, UnsupervisedObjective
from .recommend import add_recommend_arguments
from .store_commands import EMBEDDINGS_HELP, add_index_arguments

if TYPE_CHECKING:
    from ..evaluation.beir_eval import EvalSettings

TRAIN_DIMS_HELP = (
    "Matryoshka dims, increasing, comma-separated (default: 16, 32, 64, ... below the base dim, and it)"
)
DATASET_HELP = (
    "BEIR dataset: a folder (corpus.jsonl, queries.jsonl, qrels/) or a name such as scifact "
    "(../shared/beir/<name>, else downloaded once into ~/.cache/matryoshka-rag/beir)"
)


def _add_common(parser: argparse.ArgumentParser, dims: str | None, dims_help: str) -> None:
    parser.add_argument(
        "--model", default="all-MiniLM-L6-v2", help="sentence-transformers name or local path"
    )
    parser.add_argument("--dims", default=dims, help=dims_help)
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA when present)")
    parser.add_argument(
        "--cache", default=None, help="embedding cache file (default ~/.cache/matryoshka-rag)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on training steps per stage")


def _settings(args: argparse.Namespace) -> EvalSettings:
    import dataclasses

    from ..evaluation.beir_eval import EvalSettings

    settings = EvalSettings(device=args.device)
    for section in ("unsupervised", "supervised"):
        changes: dict[str, int] = {"seed": args.seed}
        if args.max_steps is not None:
            changes["max_steps"] = args.max_steps
        setattr(settings, section, dataclasses.replace(getattr(settings, section), **changes))
    settings.unsupervised = dataclasses.replace(settings.unsupervised, objective=args.objective)
    settings.supervised = dataclasses.replace(settings.supervised, objective=args.ranking)
    return settings


def _add_objectives(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--objective",
        choices=get_args(UnsupervisedObjective),
        default="listwise",
        help="unsupervised objective (paper: L_topk + L_pair + L_rec)",
    )
    parser.add_argument(
        "--ranking",
        choices=get_args(SupervisedObjective),
        default="multi-positive",
        help="supervised ranking loss (pairwise: the paper's L_rank; softmax: one graded cross-entropy)",
    )


def train_command(args: argparse.Namespace) -> None:
    from ..adaptor.folder_write import check_destination
    from ..adaptor.persistence import save_adaptor
    from ..data.beir import BeirDataset, load_precomputed, read_corpus, read_queries
    from ..errors import InputError
    from ..evaluation.beir_eval import MethodTrainer, labelled_queries, load_vectors
    from ..validation import check_dims, parse_dims

    dims = parse_dims(args.dims) if args.dims else None  # checked against the base dim once it is known
    settings = _settings(args)
    out = Path(args.out)
    check_destination(out, args.overwrite, "--overwrite")
    if args.dataset:
        _dataset_files(args)
    elif args.supervised:
        raise InputError("--supervised goes with --dataset (with --corpus, pass --queries and --qrels)")
    if bool(args.queries) != bool(args.qrels):
        raise InputError("--queries and --qrels go together (supervised training needs both)")
    if args.dev_qrels and not args.qrels:
        raise InputError(
            "--dev-qrels is the supervised stage's validation split: it needs --queries and --qrels"
        )
    corpus_ids, corpus_texts = read_corpus(args.corpus)
    query_ids, query_texts = read_queries(args.queries) if args.queries else ([], [])
    known = set(query_ids), set(corpus_ids)
    qrels = _positive_qrels(args.qrels, *known) if args.qrels else None
    dev_qrels = _positive_qrels(args.dev_qrels, *known) if args.dev_qrels else None
    # only the queries with a grade > 0 are embedded (an unlabelled one may be blank)
    labelled = {
        q for found in (qrels, dev_qrels) if found for q, judged in found.items() if max(judged.values()) > 0
    }
    keep = [i for i, q in enumerate(query_ids) if q in labelled]
    blank = [query_ids[i] for i in keep if not query_texts[i].strip()]
    if blank:
        raise InputError(
            f"{args.queries}: {len(blank)} labelled query(ies) have a blank text, first {blank[0]!r}"
        )
    dataset = BeirDataset(
        Path(args.corpus).parent.name,
        corpus_ids,
        corpus_texts,
        [query_ids[i] for i in keep],
        [query_texts[i] for i in keep],
    )
    if args.embeddings:
        corpus, queries = load_precomputed(args.embeddings, dataset)
    else:
        corpus, queries = load_vectors(dataset, args.model, None, args.cache)
    train = labelled_queries(dataset, queries, qrels) if qrels else None
    validation = labelled_queries(dataset, queries, dev_qrels) if dev_qrels else None
    trainer = MethodTrainer(
        corpus, check_dims(dims, corpus.shape[1]), settings, args.model, train, validation
    )
    adaptor = trainer.adaptor("supervised" if args.qrels else "unsupervised")
    save_adaptor(adaptor, out, overwrite=args.overwrite)
    print(f"saved adaptor to {out} ({adaptor.metadata['training']['seconds']:.0f} s of training)")


def _dataset_files(args: argparse.Namespace) -> None:
    """Set `--corpus` (and with `--supervised`, `--queries`, `--qrels` and `--dev-qrels` when the dataset has
    a dev split) from the BEIR dataset `--dataset`, a folder or a name."""
    from ..data.download import dataset_folder
    from ..errors import InputError

    folder = dataset_folder(args.dataset)
    args.corpus = str(folder / "corpus.jsonl")
    if not args.supervised:
        return
    if args.queries or args.qrels or args.dev_qrels:
        raise InputError(
            "--dataset with --supervised takes its own queries and qrels: drop --queries/--qrels"
        )
    train, dev = folder / "qrels" / "train.tsv", folder / "qrels" / "dev.tsv"
    if not train.is_file():
        raise InputError(f"--supervised needs the dataset's training labels: {train} is missing")
    args.queries, args.qrels = str(folder / "queries.jsonl"), str(train)
    args.dev_qrels = str(dev) if dev.is_file() else None


def _positive_qrels(path: str, known_queries: set[str], known_docs: set[str]) -> dict[str, dict[str, int]]:
    """The judgements of a qrels file; `InputError` if none has a grade > 0 for these queries and documents."""
    from ..data.beir import read_qrels
    from ..errors import InputError

    qrels = read_qrels(path, known_queries, known_docs)
    if not any(grade > 0 for judged in qrels.values() for grade in judged.values()):
        raise InputError(f"{path} holds no judgement with a grade > 0 for these queries and documents")
    return qrels


def eval_command(args: argparse.Namespace) -> None:
    from ..atomic import check_folder_path
    from ..evaluation.beir_eval import evaluate, markdown_table, write_report
    from ..validation import parse_dims

    check_folder_path(args.out)
    results = evaluate(
        args.dataset,
        args.model,
        [m for m in args.methods.split(",") if m],
        parse_dims(args.dims) if args.dims else None,
        embeddings_dir=args.embeddings,
        cache_path=args.cache,
        settings=_settings(args),
        adaptors_dir=Path(args.out) / "adaptors" if args.save_adaptors else None,
    )
    write_report(results, args.out)
    print(markdown_table(results))
    print(f"\nwrote {Path(args.out) / 'results.json'}, results.md and ndcg.png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matryoshka-rag",
        description="Train Matryoshka-Adaptors, evaluate them on BEIR, serve them from Chroma.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an adaptor on a corpus (and optional relevance labels)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", help="BEIR-style corpus.jsonl")
    source.add_argument("--dataset", help=DATASET_HELP + ": its corpus (and labels with --supervised)")
    train.add_argument(
        "--supervised",
        action="store_true",
        help="with --dataset: train on its queries and qrels/train.tsv (dev.tsv for early stopping)",
    )
    train.add_argument("--queries", help="queries.jsonl (supervised)")
    train.add_argument("--qrels", help="training qrels TSV (supervised)")
    train.add_argument("--dev-qrels", help="qrels TSV for early stopping (default: part of --qrels)")
    train.add_argument(
        "--embeddings",
        help=EMBEDDINGS_HELP
        + " (ids in <npy stem>_ids.json, query vectors in queries.npy and queries_ids.json)",
    )
    train.add_argument("--out", required=True, help="adaptor folder to write")
    train.add_argument("--overwrite", action="store_true", help="replace an existing adaptor at --out")
    _add_common(train, None, TRAIN_DIMS_HELP)
    _add_objectives(train)
    train.set_defaults(handler=train_command)

    evaluate = commands.add_parser("eval", help="nDCG@10 / Recall@100 by dim on a BEIR dataset")
    evaluate.add_argument("--dataset", required=True, help=DATASET_HELP)
    evaluate.add_argument("--methods", default="truncate,pca,pca-rotation,unsupervised,supervised")
    evaluate.add_argument(
        "--embeddings", help="precomputed vectors: a folder, or its parent holding <dataset>/"
    )
    evaluate.add_argument("--out", required=True, help="report folder (results.json, results.md, ndcg.png)")
    evaluate.add_argument(
        "--save-adaptors", action="store_true", help="also save trained adaptors under --out"
    )
    _add_common(evaluate, None, TRAIN_DIMS_HELP)
    _add_objectives(evaluate)
    evaluate.set_defaults(handler=eval_command)
    add_index_arguments(commands)
    add_recommend_arguments(commands)
    return parser


def run_command(command: str, action: Callable[[], None], needing: str = "this command") -> int:
    """Run `action`: 0, or 2 after one line `matryoshka-rag <command>: error: ...` on stderr for bad input or a
    missing extra (named for `needing`)."""
    from ..errors import InputError
    from ..extras import MissingExtraError, needs_extra

    try:
        with needs_extra(needing):
            action()
    except (InputError, MissingExtraError) as error:
        print(f"matryoshka-rag {command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.command, lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
