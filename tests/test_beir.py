"""BEIR loader and precomputed-embedding alignment, against the committed SciFact slice and, where ../shared holds
them, the whole SciFact and NFCorpus copies."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag.data.beir import BeirDataset, aligned_vectors, load_beir, load_precomputed, vectors_file
from matryoshka_rag.errors import InputError

from .conftest import SLICE_EMBEDDINGS_DIR


def _raw_qrels(file: Path) -> list[tuple[str, str, int]]:
    """Naive independent parse: bytes, split on CRLF, drop the header."""
    lines = file.read_bytes().decode("utf-8").split("\r\n")
    assert lines[0] == "query-id\tcorpus-id\tscore"
    return [(q, d, int(s)) for q, d, s in (line.split("\t") for line in lines[1:] if line)]


def _write_dataset(
    root: Path, docs: list[dict], queries: list[dict], qrels: dict[str, str] | None = None
) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    for split, body in (qrels or {}).items():
        (root / "qrels" / f"{split}.tsv").write_bytes(body.encode())
    return root


DOCS = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"body {i}"} for i in range(3)]
QUERIES = [{"_id": f"q{i}", "text": f"question {i}"} for i in range(2)]


def test_scifact_counts(scifact_full: BeirDataset) -> None:
    scifact = scifact_full
    assert scifact.name == "scifact"
    assert (len(scifact.corpus_ids), len(scifact.corpus_texts)) == (5183, 5183)
    assert (len(scifact.query_ids), len(scifact.query_texts)) == (1109, 1109)
    assert scifact.splits() == ["test", "train"]
    for split, n_queries, n_judgements in (("test", 300, 339), ("train", 809, 919)):
        qrels = scifact.qrels(split)
        assert len(qrels) == n_queries
        assert sum(len(docs) for docs in qrels.values()) == n_judgements
        assert {g for docs in qrels.values() for g in docs.values()} == {1}


def test_nfcorpus_counts(nfcorpus: BeirDataset) -> None:
    assert (len(nfcorpus.corpus_ids), len(nfcorpus.query_ids)) == (3633, 3237)
    assert nfcorpus.splits() == ["dev", "test", "train"]
    for split, n_queries, n_judgements, grades in (("test", 323, 12334, {1, 2}), ("dev", 324, 11385, {1, 2})):
        qrels = nfcorpus.qrels(split)
        assert len(qrels) == n_queries
        assert sum(len(docs) for docs in qrels.values()) == n_judgements
        assert {g for docs in qrels.values() for g in docs.values()} == grades


@pytest.mark.parametrize("name,split", [("scifact", "test"), ("scifact", "train"), ("nfcorpus", "test")])
def test_qrels_match_naive_crlf_parse(name: str, split: str, request: pytest.FixtureRequest) -> None:
    dataset: BeirDataset = request.getfixturevalue(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every judgement of the shipped files is known
        qrels = dataset.qrels(split)
    expected: dict[str, dict[str, int]] = {}
    for q, d, g in _raw_qrels(dataset.path / "qrels" / f"{split}.tsv"):
        expected.setdefault(q, {})[d] = g
    assert qrels == expected
    assert not any("\r" in q or "\r" in d for q, docs in qrels.items() for d in docs)


def test_corpus_text_is_title_plus_text(scifact: BeirDataset) -> None:
    with (scifact.path / "corpus.jsonl").open(encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert scifact.corpus_ids[0] == first["_id"] == "4983"
    assert scifact.corpus_texts[0] == f"{first['title']} {first['text']}".strip()
    assert scifact.corpus_texts[0].startswith("Microstructural development of human newborn")
    assert scifact.qrels("test")["1"] == {"31715818": 1}
    assert all(isinstance(i, str) and "\r" not in i for i in scifact.corpus_ids + scifact.query_ids)


def test_unknown_ids_in_qrels_warn_once(tmp_path: Path) -> None:
    body = "query-id\tcorpus-id\tscore\r\nq0\td0\t2\r\nq0\tnope\t1\r\nq9\td1\t1\r\nq1\td2\t0\r\n"
    dataset = load_beir(_write_dataset(tmp_path / "tiny", DOCS, QUERIES, {"test": body}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qrels = dataset.qrels("test")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 2 " in message and "test.tsv" in message
    assert qrels == {"q0": {"d0": 2}, "q1": {"d2": 0}}  # zero grades are kept


def test_unknown_ids_on_scifact_copy(scifact: BeirDataset, tmp_path: Path) -> None:
    """A copy of SciFact with half its corpus: judgements on the dropped documents are skipped."""
    src, dst = scifact.path, tmp_path / "scifact_half"
    shutil.copytree(src / "qrels", dst / "qrels")
    shutil.copy(src / "queries.jsonl", dst / "queries.jsonl")
    lines = (src / "corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (dst / "corpus.jsonl").write_text("".join(lines[::2]), encoding="utf-8")
    dataset = load_beir(dst)
    kept_docs = set(dataset.corpus_ids)
    raw = _raw_qrels(src / "qrels" / "test.tsv")
    n_unknown = sum(d not in kept_docs for _, d, _ in raw)
    assert 0 < n_unknown < len(raw)
    with pytest.warns(UserWarning, match=rf"skipped {n_unknown} .*test\.tsv"):
        qrels = dataset.qrels("test")
    assert sum(len(docs) for docs in qrels.values()) == len(raw) - n_unknown


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path / "bad", DOCS, QUERIES)
    lines = (root / "queries.jsonl").read_text().splitlines()
    (root / "queries.jsonl").write_text(lines[0] + "\n" + '{"_id": "q1", "text": oops}\n')
    with pytest.raises(InputError, match=r"queries\.jsonl, line 2: not valid JSON"):
        load_beir(root)


def test_files_that_are_not_utf8_name_the_file(tmp_path: Path) -> None:
    root = _write_dataset(
        tmp_path / "latin1", DOCS, QUERIES, {"test": "query-id\tcorpus-id\tscore\nq0\td0\t1\n"}
    )
    (root / "corpus.jsonl").write_bytes('{"_id": "d0", "text": "caf\u00e9 au lait"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match=r"corpus\.jsonl is not UTF-8 text \(byte 0xe9 cannot be decoded\)"):
        load_beir(root)
    _write_dataset(tmp_path / "utf16", DOCS, QUERIES)
    dataset = load_beir(tmp_path / "utf16")
    qrels = Path(dataset.path) / "qrels" / "test.tsv"
    qrels.write_bytes("query-id\tcorpus-id\tscore\nq0\td0\t1\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"test\.tsv is not UTF-8 text"):
        dataset.qrels("test")


def test_a_lone_surrogate_names_the_line_and_field(tmp_path: Path) -> None:
    root = _write_dataset(tmp_path / "surrogate", DOCS, QUERIES)
    with (root / "queries.jsonl").open("a") as file:
        file.write('{"_id": "q9", "text": "vitamin D \\ud800 and tuberculosis"}\n')  # valid JSON, not Unicode
    with pytest.raises(InputError, match=r"queries\.jsonl, line 3: 'text' holds a lone surrogate '\\ud800'"):
        load_beir(root)


@pytest.mark.parametrize(
    "docs,queries,match",
    [
        (DOCS + [DOCS[1]], QUERIES, r"corpus\.jsonl, line 4: duplicate id 'd1' \(first on line 2\)"),
        (DOCS, QUERIES + [QUERIES[0]], r"duplicate id 'q0'"),
        ([], QUERIES, "empty corpus"),
        ([{"title": "no id", "text": "x"}], QUERIES, r"line 1: expected a JSON object with an '_id'"),
    ],
)
def test_bad_datasets(tmp_path: Path, docs: list, queries: list, match: str) -> None:
    with pytest.raises(InputError, match=match):
        load_beir(_write_dataset(tmp_path / "bad", docs, queries))


def test_missing_folder_files_and_split(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder not found"):
        load_beir(tmp_path / "absent")
    root = _write_dataset(tmp_path / "noqueries", DOCS, QUERIES)
    (root / "queries.jsonl").unlink()
    with pytest.raises(InputError, match=r"missing .*queries\.jsonl"):
        load_beir(root)
    dataset = load_beir(
        _write_dataset(tmp_path / "ok", DOCS, QUERIES, {"dev": "query-id\tcorpus-id\tscore\n"})
    )
    assert dataset.splits() == ["dev"] and dataset.qrels("dev") == {}
    with pytest.raises(InputError, match=r"no qrels split 'test'.*available: dev"):
        dataset.qrels("test")


def test_load_precomputed_aligns_rows(scifact: BeirDataset, scifact_embeddings) -> None:
    docs, queries = scifact_embeddings
    assert docs.shape == (800, 384) and queries.shape == (300, 384)
    assert docs.dtype == queries.dtype == np.float32
    raw_docs = np.load(SLICE_EMBEDDINGS_DIR / "corpus.npy")
    raw_ids = json.loads((SLICE_EMBEDDINGS_DIR / "corpus_ids.json").read_text())
    for doc_id in ("4983", scifact.corpus_ids[-1], scifact.corpus_ids[300]):
        np.testing.assert_array_equal(docs[scifact.corpus_ids.index(doc_id)], raw_docs[raw_ids.index(doc_id)])
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)

    # A dataset listing the ids in another order gets its rows in that order.
    shuffled = np.random.default_rng(0).permutation(len(scifact.corpus_ids))
    other = BeirDataset(
        "scifact",
        [scifact.corpus_ids[i] for i in shuffled],
        [scifact.corpus_texts[i] for i in shuffled],
        scifact.query_ids[::-1],
        scifact.query_texts[::-1],
    )
    docs2, queries2 = load_precomputed(SLICE_EMBEDDINGS_DIR, other)
    np.testing.assert_array_equal(docs2, docs[shuffled])
    np.testing.assert_array_equal(queries2, queries[::-1])


def test_embeddings_name_a_npy_file_or_a_folder_with_corpus_npy(scifact: BeirDataset, tmp_path: Path) -> None:
    """`vectors_file` is the one reading of an `--embeddings` argument (train, index, recommend)."""
    assert vectors_file(SLICE_EMBEDDINGS_DIR) == SLICE_EMBEDDINGS_DIR / "corpus.npy"
    vectors = tmp_path / "vectors.npy"
    shutil.copy(SLICE_EMBEDDINGS_DIR / "corpus.npy", vectors)
    shutil.copy(SLICE_EMBEDDINGS_DIR / "corpus_ids.json", tmp_path / "vectors_ids.json")
    assert vectors_file(str(vectors)) == vectors
    for missing in (tmp_path / "absent.npy", tmp_path / "absent", tmp_path):
        expected = missing / "corpus.npy" if missing.is_dir() else missing
        with pytest.raises(
            InputError, match=f"^missing precomputed embeddings file: {re.escape(str(expected))} "
        ):
            vectors_file(missing)
    # a .npy file: its ids beside it as <stem>_ids.json, or where `ids_file` says
    docs, _ = load_precomputed(SLICE_EMBEDDINGS_DIR, scifact)
    without_queries = BeirDataset("x", scifact.corpus_ids, scifact.corpus_texts, [], [])
    aligned, queries = load_precomputed(vectors, without_queries)  # no queries: no queries.npy needed
    np.testing.assert_array_equal(aligned, docs)
    assert queries.shape == (0, docs.shape[1])
    moved = tmp_path / "ids.json"
    (tmp_path / "vectors_ids.json").rename(moved)
    np.testing.assert_array_equal(aligned_vectors(vectors, scifact.corpus_ids, moved), docs)
    with pytest.raises(InputError, match="missing precomputed embeddings file: .*vectors_ids.json"):
        aligned_vectors(vectors, scifact.corpus_ids)


def test_load_precomputed_errors(scifact: BeirDataset, tmp_path: Path) -> None:
    src = SLICE_EMBEDDINGS_DIR
    extra = BeirDataset(
        "x", scifact.corpus_ids + ["new-1", "new-2"], scifact.corpus_texts + ["a", "b"], [], []
    )
    with pytest.raises(InputError, match=r"2 of 802 corpus ids have no vector .*'new-1'"):
        load_precomputed(src, extra)

    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("corpus_ids.json", "queries.npy", "queries_ids.json"):
        (bad / name).symlink_to(src / name)
    np.save(bad / "corpus.npy", np.zeros((10, 384), dtype=np.float32))
    with pytest.raises(InputError, match=r"shape \(10, 384\) but .*corpus_ids\.json lists 800 ids"):
        load_precomputed(bad, scifact)
    with pytest.raises(InputError, match="missing precomputed embeddings file"):
        load_precomputed(tmp_path, scifact)
