"""Loader for datasets in the standard BEIR layout, plus precomputed embeddings aligned to them.

Layout: ``<dir>/corpus.jsonl`` ({"_id", "title", "text", ...} per line), ``<dir>/queries.jsonl``
({"_id", "text", ...} per line) and ``<dir>/qrels/<split>.tsv`` (header ``query-id<TAB>corpus-id<TAB>score``).
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .download import dataset_folder

__all__ = [
    "BeirDataset",
    "aligned_vectors",
    "load_beir",
    "load_precomputed",
    "read_corpus",
    "read_corpus_fields",
    "read_qrels",
    "read_queries",
    "vectors_file",
]


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR dataset in memory.

    ``corpus_texts[i]`` is ``(title + " " + text).strip()`` of document ``corpus_ids[i]`` (the text the
    precomputed embeddings were made from); ``query_texts[i]`` is the text of query ``query_ids[i]``.
    Qrels are read on demand with :meth:`qrels`.
    """

    name: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    path: Path | None = field(default=None, compare=False)

    def splits(self) -> list[str]:
        """Names of the qrels splits present (``qrels/<split>.tsv``), sorted."""
        qrels_dir = self._qrels_dir()
        if not qrels_dir.is_dir():
            return []
        return sorted(p.stem for p in qrels_dir.glob("*.tsv") if p.is_file())

    def qrels(self, split: str) -> dict[str, dict[str, int]]:
        """Relevance judgements of ``split``: query id -> {doc id: grade}, grades as given (zero included).

        Judgements whose query id or doc id is not in the dataset are dropped with one warning.
        """
        file = self._qrels_dir() / f"{split}.tsv"
        if not file.is_file():
            available = ", ".join(self.splits()) or "none"
            raise InputError(f"no qrels split {split!r} in {self._qrels_dir()} (available: {available})")
        return read_qrels(file, set(self.query_ids), set(self.corpus_ids))

    def _qrels_dir(self) -> Path:
        if self.path is None:
            raise InputError(f"dataset {self.name!r} was not loaded from a folder, so it has no qrels")
        return self.path / "qrels"


def load_beir(path: str | Path) -> BeirDataset:
    """Load ``corpus.jsonl`` and ``queries.jsonl`` of a BEIR folder (name = folder name).

    ``path``: a folder, or a BEIR dataset name (``"scifact"``) found beside the repository or in the user's
    cache, downloaded once if absent (`matryoshka_rag.data.download.dataset_folder`).
    """
    root = dataset_folder(path)
    files = {name: root / f"{name}.jsonl" for name in ("corpus", "queries")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise InputError(f"{root} is not a BEIR dataset folder: missing {', '.join(missing)}")

    corpus_ids, corpus_texts = read_corpus(files["corpus"])
    query_ids, query_texts = read_queries(files["queries"])
    return BeirDataset(root.resolve().name, corpus_ids, corpus_texts, query_ids, query_texts, root)


def read_corpus(file: str | Path) -> tuple[list[str], list[str]]:
    """Ids and texts (``(title + " " + text).strip()``) of a BEIR ``corpus.jsonl``; an empty one is an error."""
    ids, titles, bodies = read_corpus_fields(file)
    return ids, [f"{title} {body}".strip() for title, body in zip(titles, bodies)]


def read_corpus_fields(file: str | Path) -> tuple[list[str], list[str], list[str]]:
    """Ids, titles ("" where absent) and bodies (``text``) of a BEIR ``corpus.jsonl``, in file order (the rows
    of `read_corpus`); an empty one is an error."""
    ids: list[str] = []
    titles: list[str] = []
    bodies: list[str] = []
    for record in _read_jsonl(Path(file)):
        ids.append(record["_id"])
        titles.append(str(record.get("title") or ""))
        bodies.append(str(record.get("text") or ""))
    if not ids:
        raise InputError(f"empty corpus: {file} has no documents")
    return ids, titles, bodies


def read_queries(file: str | Path) -> tuple[list[str], list[str]]:
    """Ids and texts of a BEIR ``queries.jsonl``."""
    records = list(_read_jsonl(Path(file)))
    return [r["_id"] for r in records], [str(r.get("text") or "") for r in records]


def read_qrels(file: str | Path, known_queries: set[str], known_docs: set[str]) -> dict[str, dict[str, int]]:
    """Query id -> {doc id: grade} of a qrels TSV; judgements naming unknown ids are dropped with one warning."""
    qrels: dict[str, dict[str, int]] = {}
    skipped = 0
    example = ""
    for query_id, doc_id, grade in _read_qrels(Path(file)):
        if query_id not in known_queries or doc_id not in known_docs:
            skipped += 1
            if not example:
                unknown_query = query_id not in known_queries
                example = f"query {query_id!r}" if unknown_query else f"document {doc_id!r}"
            continue
        qrels.setdefault(query_id, {})[doc_id] = grade
    if skipped:
        warnings.warn(
            f"skipped {skipped} judgement(s) in {file} whose query id or doc id is not in the dataset "
            f"(first unknown: {example})",
            stacklevel=2,
        )
    return qrels


def load_precomputed(embeddings: str | Path, dataset: BeirDataset) -> tuple[np.ndarray, np.ndarray]:
    """Read precomputed embeddings and align them to ``dataset``.

    ``embeddings`` names the corpus vectors as `vectors_file` reads it (a folder holding ``corpus.npy``, or a
    ``.npy`` file), with their ids in ``<stem>_ids.json`` and the query vectors in ``queries.npy`` and
    ``queries_ids.json`` beside it (read when ``dataset`` has queries). Returns float32 arrays of shape
    (len(dataset.corpus_ids), d) and (len(dataset.query_ids), d), row i being the vector of
    ``dataset.corpus_ids[i]`` / ``dataset.query_ids[i]``.
    """
    corpus = vectors_file(embeddings)
    docs = aligned_vectors(corpus, dataset.corpus_ids)
    if not dataset.query_ids:
        return docs, np.zeros((0, docs.shape[1]), np.float32)
    queries = aligned_vectors(corpus.with_name("queries.npy"), dataset.query_ids)
    if docs.shape[1] != queries.shape[1]:
        raise InputError(
            f"{corpus.parent}: corpus vectors have {docs.shape[1]} dims but query vectors have {queries.shape[1]}"
        )
    return docs, queries


def vectors_file(embeddings: str | Path) -> Path:
    """The ``.npy`` of base vectors an ``--embeddings`` argument names: the file itself, or ``corpus.npy`` in
    a folder; `InputError` when it does not exist."""
    path = Path(embeddings).expanduser()
    return _existing(path / "corpus.npy" if path.is_dir() else path)


def _existing(file: Path) -> Path:
    if not file.is_file():
        raise InputError(
            f"missing precomputed embeddings file: {file} (give a .npy file, or a folder holding corpus.npy)"
        )
    return file


def aligned_vectors(npy: Path, wanted: list[str], ids_file: Path | None = None) -> np.ndarray:
    """Rows of the ``.npy`` file ``npy`` reordered to ``wanted`` ids: float32 (len(wanted), d). Its rows' ids
    are the JSON list in ``ids_file`` (default ``<stem>_ids.json`` beside it)."""
    _existing(npy)
    ids_file = _existing(ids_file if ids_file is not None else npy.with_name(f"{npy.stem}_ids.json"))
    try:
        ids = json.loads(ids_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{ids_file} is not valid JSON: {exc}") from exc
    if not isinstance(ids, list):
        raise InputError(f"{ids_file} must hold a JSON list of ids")
    try:
        vectors = np.load(npy, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{npy} is not a readable .npy array: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise InputError(f"{npy} has shape {vectors.shape} but {ids_file} lists {len(ids)} ids")
    row_of = {str(i): row for row, i in enumerate(ids)}
    if len(row_of) != len(ids):
        raise InputError(f"{ids_file} has duplicate ids")
    missing = [i for i in wanted if i not in row_of]
    if missing:
        raise InputError(
            f"{len(missing)} of {len(wanted)} {npy.stem} ids have no vector in {npy} (first: {missing[0]!r})"
        )
    index = np.fromiter((row_of[i] for i in wanted), dtype=np.int64, count=len(wanted))
    return np.ascontiguousarray(vectors[index], dtype=np.float32)


def _utf8_lines(file: Path, newline: str | None = None) -> Iterator[str]:
    """The lines of a text file; `InputError` naming the file if it is missing or not UTF-8."""
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    try:
        with file.open(encoding="utf-8", newline=newline) as f:
            yield from f
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        raise InputError(
            f"{file} is not UTF-8 text (byte 0x{byte} cannot be decoded): save it as UTF-8"
        ) from error


def _check_unicode(record: dict, file: Path, line_no: int) -> None:
    """`InputError` if a string of `record` holds a lone surrogate (a JSON escape such as \\ud800 alone)."""
    for key, value in record.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                bad = error.object[error.start : error.end]
                raise InputError(
                    f"{file}, line {line_no}: {key!r} holds a lone surrogate {bad!r}, not valid Unicode text"
                ) from error


def _read_jsonl(file: Path) -> Iterator[dict]:
    """Yield the objects of a JSON-lines file with ``_id`` as str; blank lines are skipped."""
    seen: dict[str, int] = {}
    for line_no, line in enumerate(_utf8_lines(file), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}, line {line_no}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or record.get("_id") in (None, ""):
            raise InputError(f"{file}, line {line_no}: expected a JSON object with an '_id'")
        _check_unicode(record, file, line_no)
        record_id = record["_id"] = str(record["_id"])
        if record_id in seen:
            raise InputError(
                f"{file}, line {line_no}: duplicate id {record_id!r} (first on line {seen[record_id]})"
            )
        seen[record_id] = line_no
        yield record


def _read_qrels(file: Path) -> Iterator[tuple[str, str, int]]:
    """Yield (query id, doc id, grade) rows of a qrels TSV; the header row is skipped, CRLF or LF alike."""
    rows = csv.reader(_utf8_lines(file, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    for line_no, row in enumerate(rows, start=1):
        row = [cell.strip() for cell in row]
        if not any(row):
            continue
        if len(row) != 3:
            raise InputError(f"{file}, line {line_no}: expected 3 tab-separated columns, got {len(row)}")
        grade = _parse_grade(row[2])
        if grade is None:
            if line_no == 1:  # header: query-id, corpus-id, score
                continue
            raise InputError(f"{file}, line {line_no}: score {row[2]!r} is not an integer")
        yield row[0], row[1], grade


def _parse_grade(cell: str) -> int | None:
    """``int`` of ``cell`` ("1", "2.0"), or None when it is not an integer."""
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        value = float(cell)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None
