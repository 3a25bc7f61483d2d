"""Write the committed SciFact slice the tests run on (``tests/data/scifact`` and its precomputed vectors).

The slice: the first 100 test queries and the first 200 train queries of ``queries.jsonl`` (file order), every
document their qrels judge, the corpus's first document, and random others (seed 0) up to 800 documents. Lines
of ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/*.tsv`` are copied byte for byte, in their original order;
the all-MiniLM-L6-v2 vectors of the kept rows are stored as float16.

    .venv/bin/python tests/data/make_slice.py --shared ../shared
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_TEST_QUERIES, N_TRAIN_QUERIES, N_DOCS = 100, 200, 800
MODEL = "all-MiniLM-L6-v2"


def qrels_lines(file: Path) -> tuple[bytes, list[tuple[str, str, bytes]]]:
    """The header line and each judgement's (query id, doc id, line), line endings kept."""
    header, *lines = file.read_bytes().splitlines(keepends=True)
    return header, [(*line.decode().split("\t")[:2], line) for line in lines if line.strip()]


def jsonl_ids(file: Path) -> list[tuple[str, bytes]]:
    """Each record's ``_id`` and its line, line endings kept."""
    lines = file.read_bytes().splitlines(keepends=True)
    return [(json.loads(line)["_id"], line) for line in lines if line.strip()]


def first_queries(judgements: list[tuple[str, str, bytes]], order: list[str], n: int) -> list[str]:
    """The first `n` judged query ids in `order` (the order of ``queries.jsonl``)."""
    judged = {q for q, _, _ in judgements}
    return [q for q in order if q in judged][:n]


def write_vectors(source: Path, out: Path, stem: str, ids: list[str]) -> None:
    """Rows of ``<source>/<stem>.npy`` for `ids` (in that order), as float16, with their ids file."""
    all_ids = json.loads((source / f"{stem}_ids.json").read_text())
    row = {i: r for r, i in enumerate(all_ids)}
    vectors = np.load(source / f"{stem}.npy")[[row[i] for i in ids]]
    np.save(out / f"{stem}.npy", vectors.astype(np.float16))
    (out / f"{stem}_ids.json").write_text(json.dumps(ids) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shared", type=Path, default=HERE.parents[2] / "shared", help="holds beir/, embeddings/"
    )
    args = parser.parse_args()
    source = args.shared / "beir" / "scifact"
    out = HERE / "scifact"
    (out / "qrels").mkdir(parents=True, exist_ok=True)

    corpus, queries = jsonl_ids(source / "corpus.jsonl"), jsonl_ids(source / "queries.jsonl")
    query_order = [q for q, _ in queries]
    splits = {name: qrels_lines(source / "qrels" / f"{name}.tsv") for name in ("test", "train")}
    kept_queries = set(first_queries(splits["test"][1], query_order, N_TEST_QUERIES))
    kept_queries |= set(first_queries(splits["train"][1], query_order, N_TRAIN_QUERIES))
    judged = {d for _, judgements in splits.values() for q, d, _ in judgements if q in kept_queries}
    docs = judged | {corpus[0][0]}
    others = sorted({d for d, _ in corpus} - docs)
    docs |= set(random.Random(0).sample(others, N_DOCS - len(docs)))

    doc_ids = [d for d, _ in corpus if d in docs]
    query_ids = [q for q in query_order if q in kept_queries]
    (out / "corpus.jsonl").write_bytes(b"".join(line for d, line in corpus if d in docs))
    (out / "queries.jsonl").write_bytes(b"".join(line for q, line in queries if q in kept_queries))
    for name, (header, judgements) in splits.items():
        kept = [line for q, _, line in judgements if q in kept_queries]
        (out / "qrels" / f"{name}.tsv").write_bytes(header + b"".join(kept))

    vectors = HERE / "embeddings" / MODEL / "scifact"
    vectors.mkdir(parents=True, exist_ok=True)
    write_vectors(args.shared / "embeddings" / MODEL / "scifact", vectors, "corpus", doc_ids)
    write_vectors(args.shared / "embeddings" / MODEL / "scifact", vectors, "queries", query_ids)
    print(
        f"{len(doc_ids)} documents ({len(judged)} judged), {len(query_ids)} queries into {out} and {vectors}"
    )


if __name__ == "__main__":
    main()
