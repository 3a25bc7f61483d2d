"""Bad input to the store, its CLI and the dataset cache: correct results or one line naming the problem, and
nothing already stored is lost (issue 24, cases 5 and 9). Real SciFact vectors and a real embedded Chroma."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from matryoshka_rag import InputError
from matryoshka_rag.cli.app import main
from matryoshka_rag.data.download import download_dataset
from matryoshka_rag.store import MatryoshkaStore


@pytest.fixture
def store(tmp_path, small_adaptor_dir, scifact_vectors):
    """200 SciFact records with a `group` 0..1, in an embedded store."""
    with MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db") as opened:
        ids = [f"d{i}" for i in range(200)]
        opened.upsert(ids, embeddings=scifact_vectors[:200], metadatas=[{"group": i % 2} for i in range(200)])
        yield opened


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("scale", [1e-30, 1e20])
def test_vectors_of_tiny_or_huge_values_never_poison_the_store(store, scifact_vectors, scale):
    """Case 5: such vectors stored NaN or all-zero rerank rows; every later query then lost a hit."""
    odd = scifact_vectors[300:303] * np.float32(scale)
    store.upsert(["odd0", "odd1", "odd2"], embeddings=odd)
    for query in scifact_vectors[400:430]:
        hits = store.query(query, k=10)
        assert len(hits) == 10 and all(math.isfinite(h.score) for h in hits)
    found = store.query(odd[1], k=3)
    assert all(math.isfinite(h.score) for h in found) and found[0].id == "odd1"
    assert np.isfinite(store.rerank_query(odd[0])).all()


def test_a_huge_k_gives_every_record(store, scifact_vectors):
    hits = store.query(scifact_vectors[0], k=10**9)
    assert len(hits) == len({h.id for h in hits}) == 200


def test_limits_where_filters_and_vectors_that_are_refused(store, scifact_vectors):
    with pytest.raises(InputError, match="limit must be an integer >= 0"):
        store.get(limit=-1)
    assert len(store.get(limit=10**10)) == 200
    with pytest.raises(InputError, match="embeddings: not an array of numbers of one shape"):
        store.upsert(["x", "y"], embeddings=[[0.1] * 384, [0.1] * 383])
    with pytest.raises(InputError, match="where must be a dict"):
        store.query(scifact_vectors[0], where=[1, 2])  # type: ignore[arg-type]
    for call in (
        lambda where: store.query(scifact_vectors[0], where=where),
        lambda where: store.get(where=where),
        lambda where: store.delete(where=where),
    ):
        with pytest.raises(InputError, match="'mrag:ptr', one of the store's own keys"):
            call({"$and": [{"group": 1}, {"mrag:ptr": {"$gte": 0}}]})
    with pytest.raises(InputError, match="non-empty where"):
        store.delete(where={})
    assert store.count() == 200  # nothing was written or deleted


def test_cli_bad_input_is_one_line_and_exit_2(store, tmp_path, capsys):
    db = str(tmp_path / "db")
    assert main(["index", "--corpus", str(tmp_path / "missing.jsonl"), "--adaptor", "x", "--path", db]) == 2
    assert "missing.jsonl: no such file" in _one_line(capsys)
    assert main(["query", "vitamin D", "--path", db, "--collection", "docs", "--where", "[1,2]"]) == 2
    assert "where must be a dict" in _one_line(capsys)
    assert main(["query", "vitamin D", "--path", db, "--collection", "docs", "--where", "{}", "-k", "0"]) == 2
    assert "k must be an integer >= 1" in _one_line(capsys)


def test_an_incomplete_dataset_folder_in_the_cache_is_named_and_kept(tmp_path):
    folder = tmp_path / "cache" / "scifact"
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(json.dumps({"_id": "a", "text": "mine"}) + "\n")
    with pytest.raises(InputError, match=r"scifact is incomplete \(no queries.jsonl\)"):
        download_dataset("scifact", cache_dir=tmp_path / "cache", base_url="http://127.0.0.1:9")
    assert (folder / "corpus.jsonl").read_text().startswith('{"_id": "a"')
