"""Set-up shared by the RAG examples: command line, a SciFact slice, questions and an adaptor (all offline).

The data is ``--dataset`` (default ``scifact``: a BEIR folder, or a name found in ``../shared/beir`` beside the
repository or downloaded once into the user cache). Without ``--adaptor``, an adaptor is trained in seconds from
the precomputed all-MiniLM-L6-v2 vectors of the whole corpus (``--embeddings``, default
``../shared/embeddings/all-MiniLM-L6-v2/scifact``) and saved under ``--runs``, where later runs reuse it.
``--quick`` changes the defaults to the SciFact slice committed in ``tests/data`` (its documents and vectors),
40 documents, 2 questions and a 20-step adaptor: a first look in a bare clone, and CI's smoke test.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matryoshka_rag import UnsupervisedConfig, save_adaptor, train_unsupervised
from matryoshka_rag.adaptor.persistence import is_adaptor_dir
from matryoshka_rag.data.beir import load_beir

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "embeddings" / "all-MiniLM-L6-v2" / "scifact"
MODEL = "all-MiniLM-L6-v2"
SLICE = REPO / "tests" / "data"
QUICK = {
    "dataset": str(SLICE / "scifact"),
    "embeddings": SLICE / "embeddings" / "all-MiniLM-L6-v2" / "scifact",
    "docs": "40",
    "queries": 2,
    "train_steps": 20,
}
STAND_IN_NOTE = "[offline stand-in: no language model was called; it returns the retrieved context]"


def parser(description: str) -> argparse.ArgumentParser:
    """The examples' common options."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short run on the committed slice (see above)")
    p.add_argument("--dataset", default="scifact", help="SciFact: a BEIR folder or the name scifact")
    p.add_argument(
        "--embeddings",
        type=Path,
        default=VECTORS,
        help="precomputed vectors for the quick adaptor (corpus.npy)",
    )
    p.add_argument("--adaptor", type=Path, help="adaptor folder (default: train one quickly into --runs)")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "examples", help="adaptor and caches")
    p.add_argument(
        "--docs",
        default="300",
        help="documents to index, or 'all' (5183; encoding runs at 4-10 documents/s on a small CPU)",
    )
    p.add_argument(
        "--queries", type=int, default=3, help="SciFact test queries to ask (their documents are indexed)"
    )
    p.add_argument("--question", action="append", default=[], help="a question of your own (repeatable)")
    p.add_argument("--dim", type=int, default=64, help="embedding dims kept after the adaptor")
    p.add_argument("--k", type=int, default=3, help="documents retrieved per question")
    p.add_argument("--train-steps", type=int, default=150, help="steps when training the quick adaptor")
    return p


def parse_args(description: str, argv: list[str] | None) -> argparse.Namespace:
    """The examples' options from ``argv``; with ``--quick``, the options not given take ``QUICK``'s values."""
    p = parser(description)
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)
    return p.parse_args(argv)


@dataclass
class Demo:
    """What an example indexes and asks: ``doc_ids[i]`` has text ``doc_texts[i]``; ``relevant[j]`` holds the
    ids judged relevant to ``questions[j]`` (empty for questions of your own)."""

    doc_ids: list[str]
    doc_texts: list[str]
    questions: list[str]
    relevant: list[set[str]]
    adaptor: Path


def quick_adaptor(embeddings: Path, runs: Path, steps: int) -> Path:
    """An all-MiniLM-L6-v2 adaptor for SciFact under ``runs``, named by its training vectors and steps (trained
    from the precomputed vectors if absent)."""
    vectors = np.load(embeddings / "corpus.npy", mmap_mode="r")
    path = runs / f"scifact-adaptor-{len(vectors)}-vectors-{steps}-steps"
    if is_adaptor_dir(path):
        print(f"adaptor: reusing {path}")
        return path
    print(f"adaptor: training on {len(vectors)} precomputed vectors ({steps} steps) into {path}")
    config = UnsupervisedConfig(max_steps=steps)
    adaptor = train_unsupervised(vectors, (32, 64, 128, 384), config, base_model=MODEL, progress=False)
    return save_adaptor(adaptor, path)


def prepare(args: argparse.Namespace) -> Demo:
    """Load SciFact, pick the questions, slice the corpus (the questions' relevant documents first)."""
    dataset = load_beir(args.dataset)
    qrels = dataset.qrels("test")
    asked = [(q, t) for q, t in zip(dataset.query_ids, dataset.query_texts) if q in qrels][: args.queries]
    relevant = [{d for d, grade in qrels[q].items() if grade > 0} for q, _ in asked]
    first = [d for docs in relevant for d in sorted(docs)]
    order = list(dict.fromkeys(first + dataset.corpus_ids))
    limit = len(order) if args.docs == "all" else max(int(args.docs), len(set(first)))
    text_of = dict(zip(dataset.corpus_ids, dataset.corpus_texts))
    ids = order[:limit]
    adaptor = args.adaptor or quick_adaptor(args.embeddings, args.runs, args.train_steps)
    return Demo(
        doc_ids=ids,
        doc_texts=[text_of[d] for d in ids],
        questions=[t for _, t in asked] + list(args.question),
        relevant=relevant + [set() for _ in args.question],
        adaptor=Path(adaptor),
    )


def stand_in_answer(prompt: str) -> str:
    """What the offline stand-in model answers: a plain note, then the prompt it was given."""
    return f"{STAND_IN_NOTE}\n{prompt}"


def report(demo: Demo, results: list[dict]) -> None:
    """Print each question's retrieved documents (relevant ones marked) and the answer's start."""
    for row, relevant in zip(results, demo.relevant):
        print(f"\nQ: {row['question']}")
        for doc_id, text in row["retrieved"]:
            mark = "*" if doc_id in relevant else " "
            print(f"  {mark} [{doc_id}] {text[:90]}")
        print("  answer: " + row["answer"][:160].replace("\n", " ") + "...")
    hits = sum(
        bool(relevant & {d for d, _ in row["retrieved"]}) for row, relevant in zip(results, demo.relevant)
    )
    judged = sum(bool(r) for r in demo.relevant)
    print(f"\n{hits}/{judged} judged questions have a relevant document (*) among the retrieved ones")
