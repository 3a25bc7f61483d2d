"""Chroma Matryoshka store: embedded (PersistentClient), in-memory (EphemeralClient) and server (`chroma run`)
modes, real SciFact vectors."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import chromadb
import numpy as np
import pytest

from matryoshka_rag import AdaptorConfig, AdaptorMismatchError, InputError, MatryoshkaAdaptor, load_adaptor
from matryoshka_rag.cli.store_commands import add_index_arguments, index_command, query_command
from matryoshka_rag.store.rerank_file import RerankFile, RerankFileError
from matryoshka_rag.store.rerank_homes import CollectionVectors
from matryoshka_rag.store.rerank_metadata import MetadataVectors
from matryoshka_rag.store.store import (
    DEFAULT_HNSW,
    STAGE_FUNNEL,
    STAGE_WIDENED,
    ChromaUnavailableError,
    MatryoshkaStore,
    StoreDroppedError,
    connect,
)
from tests.chroma_server import ChromaServer, free_port

INDEX_SCRIPT = """
import argparse, sys
from matryoshka_rag.cli.store_commands import add_index_arguments
parser = argparse.ArgumentParser()
add_index_arguments(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args()
args.handler(args)
"""


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    server = ChromaServer(tmp_path_factory.mktemp("server") / "db").start()
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "memory", "server"])
def mode(request) -> str:
    return request.param


@pytest.fixture
def location(mode, tmp_path, request) -> dict:
    """Where a store lives: `{"path": ...}`, `{}` (in memory) or `{"host": ..., "port": ...}` of the module's
    server."""
    if mode == "embedded":
        return {"path": tmp_path / "db"}
    if mode == "memory":
        return {}
    server = request.getfixturevalue("chroma_server")
    return {"host": "127.0.0.1", "port": server.port}


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def adaptor(small_adaptor_dir) -> MatryoshkaAdaptor:
    return load_adaptor(small_adaptor_dir)


@pytest.fixture(scope="module")
def corpus(scifact, scifact_vectors):
    """The slice's 800 SciFact documents: ids, texts, base vectors (800, 384), metadata with a `group` 0..2."""
    n = 800
    metadatas = [{"group": i % 3, "rare": i in (7, 70, 500)} for i in range(n)]
    return scifact.corpus_ids[:n], scifact.corpus_texts[:n], scifact_vectors[:n], metadatas


def new_store(location: dict, name: str, adaptor, **kwargs) -> MatryoshkaStore:
    client = connect(**location) if location else chromadb.EphemeralClient()
    return MatryoshkaStore(name, adaptor, client=client, **kwargs)


def filled_store(location, name, adaptor, corpus, n: int, **kwargs) -> MatryoshkaStore:
    ids, texts, vectors, metadatas = corpus
    store = new_store(location, name, adaptor, **kwargs)
    store.add(ids[:n], texts=texts[:n], embeddings=vectors[:n], metadatas=metadatas[:n])
    return store


def cosines(adaptor, docs: np.ndarray, query: np.ndarray, dim: int) -> np.ndarray:
    """Exact cosines (n,) of `docs` (n, 384) with `query` (384,) as stored: base vectors at 384 (the default
    `large_vectors="auto"` at the full dim), adapted `dim`-prefixes below."""
    if dim == 384:
        return docs @ query / (np.linalg.norm(docs, axis=1) * np.linalg.norm(query))
    return adaptor.transform(docs, dim=dim) @ adaptor.transform(query[None], dim=dim)[0]


def rerank_rows(store: MatryoshkaStore) -> int:
    """Rerank vectors stored: the second collection's records, the records carrying a row, or the rows of
    every rerank file or in memory."""
    if isinstance(store.vectors, CollectionVectors):
        return store.vectors.collection.count()
    if isinstance(store.vectors, MetadataVectors):
        return int(store.vectors.read(store.small.get(include=[])["ids"])[1].sum())
    return store.vectors.stored_rows()


def snapshot(store: MatryoshkaStore, query: np.ndarray) -> tuple:
    hits = store.query(query, k=5)
    return (
        store.count(),
        rerank_rows(store),
        [(h.id, round(h.score, 5), h.document, h.metadata) for h in hits],
    )


def test_add_upsert_delete_count_query(mode, location, name, adaptor, corpus, scifact, precomputed_minilm):
    ids, texts, vectors, metadatas = corpus
    store = filled_store(location, name, adaptor, corpus, 300)
    assert store.count() == 300
    store.add(ids[:300], texts=texts[:300], embeddings=vectors[:300], metadatas=metadatas[:300])
    assert store.count() == 300  # re-adding replaces, never duplicates
    if mode == "embedded":  # the replaced rows stay in the rerank file until compact()
        assert rerank_rows(store) == 600
        assert store.compact() == 300 and rerank_rows(store) == 300
    assert rerank_rows(store) == 300

    hits = store.query(vectors[5], k=5)
    assert [h.id for h in hits][0] == ids[5] and len(hits) == 5
    exact_large, exact_small = (cosines(adaptor, vectors[:300], vectors[5], dim) for dim in (384, 64))
    for hit in hits:
        row = ids.index(hit.id)
        assert hit.stage == STAGE_FUNNEL and set(hit.scores) == {64, 384}
        assert hit.score == hit.scores[384] == pytest.approx(exact_large[row], abs=2e-3)  # float16 rows
        assert hit.scores[64] == pytest.approx(exact_small[row], abs=1e-4)
        assert hit.document == texts[row] and hit.metadata == metadatas[row]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    store.upsert(ids[:3], embeddings=vectors[:3], metadatas=[{"group": 9}] * 3)
    assert all(meta["group"] == 9 for _, meta in store.get(ids[:3]).values())
    assert store.query(vectors[5], k=3, where={"group": 9})[0].metadata["group"] == 9

    store.delete(ids[:10])
    assert store.count() == 290
    assert store.get(ids[:10]) == {}
    assert ids[5] not in {h.id for h in store.query(vectors[5], k=10)}
    store.compact()
    assert rerank_rows(store) == 290
    store.delete(where={"group": 2})
    assert store.count() == 290 - len([m for m in metadatas[10:300] if m["group"] == 2])
    assert set(store.get(where={"group": 1})) == {
        i for i, m in zip(ids[10:300], metadatas[10:300]) if m["group"] == 1
    }
    assert len(store.get(limit=7)) == 7

    store.provider = precomputed_minilm  # text in: the real model's (precomputed) vectors
    by_text = store.query(scifact.corpus_texts[22], k=3)
    assert by_text[0].id == ids[22] and by_text[0].document == texts[22]


def test_funnel_equals_exact_search(location, name, adaptor, corpus, scifact_embeddings):
    """Small-dim shortlist + rerank finds the exact large-dim top 10 on 800 real SciFact documents."""
    ids, _, vectors, _ = corpus
    store = filled_store(location, name, adaptor, corpus, 800)
    queries = scifact_embeddings[1][:200]
    exact = np.stack([cosines(adaptor, vectors, query, 384) for query in queries], axis=1)  # (800, 200)
    recalls = []
    for q, query in enumerate(queries):
        truth = [ids[i] for i in np.argsort(-exact[:, q], kind="stable")[:10]]
        hits = store.query(query, k=10)
        recalls.append(len({h.id for h in hits} & set(truth)) / 10)
        in_order = [exact[ids.index(h.id), q] for h in hits]  # reranked in exact large-dim order
        assert all(a >= b - 2e-3 for a, b in zip(in_order, in_order[1:]))  # float16 rows: near ties may swap
        assert all(
            h.score == pytest.approx(exact[ids.index(h.id), q], abs=2e-3) for h in hits
        )  # float16 rows
    assert np.mean(recalls) >= 0.99


def test_shortlist_widens_until_conclusive(location, name, adaptor, corpus, scifact_embeddings):
    """A 1 x k first shortlist is widened (hits found only then say so) and still finds the exact top 10;
    with widening off it misses."""
    ids, _, vectors, _ = corpus
    store = filled_store(location, name, adaptor, corpus, 800, shortlist_factor=1, max_shortlist_factor=160)
    queries = scifact_embeddings[1][:50]
    exact = np.stack([cosines(adaptor, vectors, query, 384) for query in queries], axis=1)
    stages, recall_widening, recall_fixed = [], [], []
    for q, query in enumerate(queries):
        truth = {ids[i] for i in np.argsort(-exact[:, q])[:10]}
        store.max_shortlist_factor = 160
        hits = store.query(query, k=10)
        stages += [h.stage for h in hits]
        recall_widening.append(len({h.id for h in hits} & truth) / 10)
        store.max_shortlist_factor = 1
        recall_fixed.append(len({h.id for h in store.query(query, k=10)} & truth) / 10)
    assert STAGE_WIDENED in stages and STAGE_FUNNEL in stages
    assert 0 < store.stats.widened < store.stats.queries == 2 * len(queries)
    assert np.mean(recall_widening) >= 0.99 > np.mean(recall_fixed)


@pytest.mark.parametrize("dims", [(64, 384), (32, 64)])
def test_adapted_large_vectors(location, name, adaptor, corpus, dims):
    """`large_vectors="adapted"` (the default below the full dim): the rerank uses adapted prefixes."""
    ids, _, vectors, _ = corpus
    small_dim, large_dim = dims
    store = filled_store(
        location,
        name,
        adaptor,
        corpus,
        200,
        small_dim=small_dim,
        large_dim=large_dim,
        large_vectors="adapted",
    )
    hits = store.query(vectors[9], k=10)
    truth = (
        adaptor.transform(vectors[:200], dim=large_dim) @ adaptor.transform(vectors[9:10], dim=large_dim)[0]
    )
    assert [h.id for h in hits] == [ids[i] for i in np.argsort(-truth)[:10]]
    assert all(h.score == pytest.approx(truth[ids.index(h.id)], abs=2e-3) for h in hits)
    assert set(hits[0].scores) == {small_dim, large_dim}
    with pytest.raises(InputError, match="large_vectors='base' needs large_dim"):
        new_store(location, f"{name}x", adaptor, large_dim=256, large_vectors="base")


def test_upserts_merge_documents_and_metadata_as_chroma_does(location, name, adaptor, corpus):
    """An upsert without texts keeps the stored document, its metadata is merged into the stored one (a None
    value removes the key), a deleted id added again starts afresh; in both homes (embedded: the rerank
    file serves records, server: the searched collection), through `get`, `query` and after `compact`."""
    ids, texts, vectors, _ = corpus
    store = new_store(location, name, adaptor)
    store.add(ids[:3], texts=texts[:3], embeddings=vectors[:3], metadatas=[{"a": 1, "b": "x"}] * 3)
    store.upsert(ids[:1], embeddings=vectors[:1], metadatas=[{"b": None, "c": [1.5, 2.5]}])
    store.upsert(ids[1:2], texts=["new text"], embeddings=vectors[1:2])
    store.delete(ids[2:3])
    store.upsert(ids[2:3], embeddings=vectors[2:3], metadatas=[{"d": True}])
    expected = {
        ids[0]: (texts[0], {"a": 1, "c": [1.5, 2.5]}),
        ids[1]: ("new text", {"a": 1, "b": "x"}),
        ids[2]: (None, {"d": True}),
    }
    assert store.get(ids[:3]) == expected
    store.compact()
    for i in range(3):
        hit = store.query(vectors[i], k=1)[0]
        assert (hit.id, hit.document, hit.metadata) == (ids[i], *expected[ids[i]])
    assert new_store(location, name, adaptor).get(ids[:3]) == expected  # reopened


@pytest.mark.parametrize("mode", ["embedded", "memory"])
def test_embedded_and_in_memory_query_makes_one_chroma_call(location, name, adaptor, corpus):
    """Embedded and in memory, a query's hits come with their documents and metadata from the rerank home:
    the searched collection is asked once (the shortlist search), never read by id."""
    ids, texts, vectors, metadatas = corpus
    store = filled_store(location, name, adaptor, corpus, 200)
    calls = []
    for method in ("get", "query"):
        original = getattr(store.small, method)
        setattr(
            store.small, method, lambda *a, _f=original, _m=method, **kw: calls.append(_m) or _f(*a, **kw)
        )
    hits = store.query(vectors[4], k=5)
    assert calls == ["query"]
    assert [(h.document, h.metadata) for h in hits[:1]] == [(texts[4], metadatas[4])]


def test_auto_keeps_rerank_rows_in_memory_beside_an_in_memory_client(tmp_path, name, adaptor, corpus):
    """`rerank_home="auto"` with an in-memory client keeps the rerank rows in process memory (one collection),
    ranking as the collection layout does; "memory" with a database folder and "file" in memory are refused
    by name."""
    ids, _, vectors, _ = corpus
    store = filled_store({}, name, adaptor, corpus, 200)
    collection = filled_store({}, f"{name}c", adaptor, corpus, 200, rerank_home="collection")
    assert (store.rerank_home, collection.rerank_home) == ("memory", "collection")
    assert {c.name for c in store.client.list_collections() if c.name.startswith(name)} == {
        f"{name}__d64",
        f"{name}c__d64",
        f"{name}c__d384",
    }
    for query in vectors[:20]:
        hits, expected = store.query(query, k=10), collection.query(query, k=10)
        assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)
        assert [(h.document, h.metadata) for h in hits] == [(h.document, h.metadata) for h in expected]
    with pytest.raises(InputError, match=r"rerank_home='memory' keeps .* in this process.*EphemeralClient"):
        new_store({"path": tmp_path / "db"}, name, adaptor, rerank_home="memory")
    with pytest.raises(InputError, match="in a file beside an embedded database: open it with path="):
        new_store({}, f"{name}f", adaptor, rerank_home="file")


def test_two_in_memory_store_objects_see_each_others_writes(name, adaptor, corpus):
    """Chroma's in-memory client is one database per process, so two store objects over it share the rerank
    rows too: each sees the other's upserts, deletes and compaction at once."""
    ids, texts, vectors, metadatas = corpus
    first, second = new_store({}, name, adaptor), new_store({}, name, adaptor)  # both before any write
    assert first.rerank_home == second.rerank_home == "memory"
    first.add(ids[:100], texts=texts[:100], embeddings=vectors[:100], metadatas=metadatas[:100])
    assert second.count() == 100 and second.query(vectors[7], k=1)[0].id == ids[7]
    assert second.get(ids[7:8]) == {ids[7]: (texts[7], metadatas[7])}
    second.upsert(ids[7:8], embeddings=vectors[7:8], metadatas=[{"group": 9}])
    assert first.query(vectors[7], k=1)[0].metadata == {**metadatas[7], "group": 9}
    second.delete(ids[:50])
    assert second.compact() == 50 and first.count() == 50
    assert first.query(vectors[7], k=1)[0].id != ids[7] and first.query(vectors[60], k=1)[0].id == ids[60]
    assert first.rerank_vectors(ids[:60]).keys() == set(ids[50:60])


def test_drop_removes_everything_and_reset_makes_it_again(mode, location, name, adaptor, corpus, tmp_path):
    """`drop()` deletes the store's collections and rerank rows (embedded: only the change counter and lock
    files stay); the object then refuses use by name, another object over the store gets a clear error, and
    `reset()` makes the store again, empty, with its layout and HNSW settings."""
    ids, texts, vectors, _ = corpus
    store = filled_store(location, name, adaptor, corpus, 100, hnsw={**DEFAULT_HNSW, "ef_search": 123})
    other = new_store(location, name, adaptor)
    store.drop()
    assert [c.name for c in store.client.list_collections() if c.name.startswith(name)] == []
    if mode == "embedded":
        left = sorted(p.name for p in (tmp_path / "db" / "matryoshka_rag").iterdir())
        assert left == ["WRITER.lock", f"{name}.changes", f"{name}.lock"]
    for use in (
        store.count,
        lambda: store.query(vectors[0]),
        lambda: store.get(ids[:2]),
        lambda: store.upsert(ids[:1], embeddings=vectors[:1]),
        store.drop,
        store.clear,
    ):
        with pytest.raises(
            StoreDroppedError, match=rf"store '{name}' was dropped \(drop\(\)\); reset\(\) .* makes it"
        ):
            use()
    with pytest.raises(InputError, match="no longer holds the collection while searching"):
        other.query(vectors[0])
    store.reset()
    assert store.count() == 0 and store.small.configuration_json["hnsw"]["ef_search"] == 123
    store.add(ids[:10], texts=texts[:10], embeddings=vectors[:10])
    assert store.query(vectors[3], k=1)[0].document == texts[3]
    store.reset()  # not dropped before: drops, then makes it again
    assert store.count() == 0 and new_store(location, name, adaptor).get() == {}


def test_bad_records_file_is_refused_and_left_as_is(tmp_path, adaptor, corpus):
    """The records beside the rerank rows truncated, replaced by another store's or missing: reading them
    names the file, and nothing is rewritten."""
    ids, texts, vectors, _ = corpus
    stores = {}
    for name in ("docs", "other"):
        stores[name] = MatryoshkaStore(name, adaptor, path=tmp_path / "db")
        stores[name].add(ids[:50], texts=texts[:50], embeddings=vectors[:50])
    records = _rerank_file(stores["docs"]).with_suffix(".rec")
    good = records.read_bytes()
    shifted = _rerank_file(stores["other"]).with_suffix(".rec").read_bytes()
    shifted = shifted.replace(ids[0].encode(), ids[1].encode(), 1)  # another id's record at these bytes
    for content, words in ((good[: len(good) // 2], "is truncated"), (shifted, "holds id|is corrupt")):
        records.write_bytes(content)
        with pytest.raises(RerankFileError, match=words) as raised:
            stores["docs"].get(ids[:50])
        assert str(records) in str(raised.value) and records.read_bytes() == content
    records.unlink()
    with pytest.raises(RerankFileError, match="records file .* is missing"):
        MatryoshkaStore("docs", adaptor, path=tmp_path / "db").query(vectors[0], k=3)
    records.write_bytes(good)
    assert MatryoshkaStore("docs", adaptor, path=tmp_path / "db").get(ids[:2]) == {
        i: (t, {}) for i, t in zip(ids[:2], texts[:2])
    }


def test_rerank_file_appends_and_cuts_records_with_their_rows(tmp_path):
    """Records follow their rows: an empty append (a compaction batch with no live row) leaves every record,
    and cutting rows cuts their records."""
    file = RerankFile(tmp_path / "x.f16", 4, uuid.uuid4().hex, create=True)
    vectors = np.eye(3, 4, dtype=np.float32)
    file.append(["a", "b"], vectors[:2], [b"ra", b"rbb"])
    file.append([], vectors[:0], [])
    file.append(["c"], vectors[2:], [b""])
    assert file.records(np.arange(3), ["a", "b", "c"]) == [b"ra", b"rbb", b""]
    np.testing.assert_array_equal(file.read(np.arange(3), ["a", "b", "c"]), vectors)
    file.truncate(1)
    assert file.rows == 1 and file.records_path.read_bytes() == b"ra"


def test_where_filters_and_fewer_matches_than_k(location, name, adaptor, corpus):
    ids, _, vectors, metadatas = corpus
    store = filled_store(location, name, adaptor, corpus, 300)
    hits = store.query(vectors[1], k=10, where={"group": 1})
    assert len(hits) == 10 and all(h.metadata["group"] == 1 and h.stage == STAGE_FUNNEL for h in hits)
    assert hits[0].id == ids[1]

    rare = store.query(vectors[0], k=10, where={"rare": True})  # 2 of 300 pass: fewer than k, what there is
    exact = cosines(adaptor, vectors[:300], vectors[0], 384)
    assert [h.id for h in rare] == sorted([ids[7], ids[70]], key=lambda i: -exact[ids.index(i)])
    small = cosines(adaptor, vectors[:300], vectors[0], 64)
    assert rare[0].scores[64] == pytest.approx(small[ids.index(rare[0].id)], abs=1e-4)
    assert len(store.query(vectors[0], k=400)) == 300
    assert store.query(vectors[0], k=3, where={"group": 7}) == []


def test_reopen_with_another_adaptor_dim_or_space_raises(location, name, small_adaptor_dir, corpus):
    store = filled_store(location, name, small_adaptor_dir, corpus, 100)
    query = corpus[2][0]
    before = snapshot(store, query)
    identity = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(64, 384), base_model="all-MiniLM-L6-v2"))
    with pytest.raises(AdaptorMismatchError) as error:
        new_store(location, name, identity)
    assert store.adaptor.fingerprint() in str(error.value) and identity.fingerprint() in str(error.value)
    assert before == snapshot(store, query)
    assert str(small_adaptor_dir.resolve()) in str(error.value)
    for change, recorded, given in (
        ({"small_dim": 32}, "small_dim=64", "small_dim=32"),
        ({"large_dim": 256}, "large_dim=384", "large_dim=256"),
        ({"space": "l2"}, "space='cosine'", "space='l2'"),
        ({"large_vectors": "adapted"}, "large_vectors='base'", "large_vectors='adapted'"),
    ):
        with pytest.raises(AdaptorMismatchError) as error:
            new_store(location, name, small_adaptor_dir, **change)
        assert recorded in str(error.value) and given in str(error.value)
    reopened = new_store(location, name, None)  # the adaptor folder recorded at creation
    assert reopened.adaptor.fingerprint() == store.adaptor.fingerprint()
    assert (reopened.small_dim, reopened.large_dim, reopened.space) == (64, 384, "cosine")
    assert snapshot(reopened, query) == before
    names = {c.name for c in reopened.client.list_collections() if c.name.startswith(name)}
    assert names == {f"{name}__d64"}


def test_bad_inputs_leave_data_intact(location, name, adaptor, corpus):
    ids, texts, vectors, metadatas = corpus
    store = filled_store(location, name, adaptor, corpus, 50)
    before = snapshot(store, vectors[0])
    new_ids = ids[50:60]
    good = {"ids": new_ids, "embeddings": vectors[50:60], "texts": texts[50:60]}
    bad_queries = [
        (dict(query=""), InputError, "empty"),
        (dict(query="   "), InputError, "empty"),
        (dict(query="no provider"), InputError, "provider"),
        (dict(query=vectors[0], k=0), InputError, "k must be"),
        (dict(query=vectors[0], k=-3), InputError, "k must be"),
        (dict(query=vectors[0][:32]), AdaptorMismatchError, "dim 32"),
        (dict(query=np.full(384, np.nan)), InputError, "NaN"),
        (dict(query=vectors[0], where={"group": {"$nope": 1}}), InputError, "$nope"),
    ]
    for kwargs, error, words in bad_queries:
        with pytest.raises(error, match=None) as raised:
            store.query(**kwargs)
        assert words in str(raised.value), (kwargs, raised.value)
    bad_writes = [
        ({"ids": [*new_ids[:9], new_ids[0]]}, InputError, f"id {new_ids[0]!r} is repeated in the batch"),
        ({"ids": [*new_ids[:9], ""]}, InputError, "non-empty strings"),
        ({"embeddings": vectors[50:60, :100]}, AdaptorMismatchError, "dim 100"),
        ({"embeddings": np.vstack([vectors[50:59], np.zeros((1, 384))])}, InputError, "all zeros"),
        ({"metadatas": [{"x": 1}] * 9 + [{"x": float("nan")}]}, InputError, f"id {new_ids[9]!r}, key 'x'"),
        ({"metadatas": [{"x": 1}] * 9 + [{"x": {"a": 1}}]}, InputError, "key 'x'"),
        ({"metadatas": [{"x": 1}] * 9 + [{"$x": 1}]}, InputError, "key '$x'"),
        ({"metadatas": [{"x": 1}] * 9 + [{"mrag:ptr": 1}]}, InputError, "the store's own"),
        ({"metadatas": [{"x": 1}] * 9 + [{"x": []}]}, InputError, "non-empty"),
        ({"metadatas": [{"x": 1}] * 9 + [{"x": 2**70}]}, InputError, "64 bits"),
        ({"metadatas": [{"x": 1}] * 9}, InputError, "list of 10"),
        ({"embeddings": None}, InputError, "provider"),
        ({"embeddings": None, "texts": None}, InputError, "texts or embeddings"),
    ]
    for change, error, words in bad_writes:
        with pytest.raises(error) as raised:
            store.add(**{**good, **change})
        assert words in str(raised.value), (change, raised.value)
    for setting in ({"small_dim": 0}, {"large_dim": -1}, {"small_dim": 64.5}):
        with pytest.raises(InputError, match="must be an integer >= 1"):
            new_store(location, f"{name}x", adaptor, **setting)
    assert snapshot(store, vectors[0]) == before
    assert store.get(new_ids) == {}
    store.add(**good, metadatas=[{"x": np.int64(3), "tags": ["a", "b"], "gone": None}] * 10)
    assert store.get(new_ids[:1])[new_ids[0]][1] == {"x": 3, "tags": ["a", "b"]}


def test_batch_resent_after_failure_gives_no_duplicates(mode, location, name, adaptor, corpus, monkeypatch):
    ids, texts, vectors, _ = corpus
    store = filled_store(location, name, adaptor, corpus, 100)

    def fail(**_):
        raise ConnectionError("lost the connection mid-batch")

    with monkeypatch.context() as patch:  # the searched records fail (embedded: after their rerank rows)
        patch.setattr(store.small, "upsert", fail)
        with pytest.raises(ConnectionError):
            store.add(ids[100:200], texts=texts[100:200], embeddings=vectors[100:200])
    assert store.count() == 100 and rerank_rows(store) == (200 if mode == "embedded" else 100)
    assert store.get(ids[100:200]) == {} and {h.id for h in store.query(vectors[150], k=10)} <= set(ids[:100])
    store.add(ids[:200], texts=texts[:200], embeddings=vectors[:200])  # re-sent, overlapping the first batch
    assert store.count() == 200
    # the unacknowledged rows were cut before writing: 100 first rows + 200 re-sent (100 replaced until compact)
    assert rerank_rows(store) == (300 if mode == "embedded" else 200)
    hits = store.query(vectors[150], k=10)
    assert hits[0].id == ids[150] and len({h.id for h in hits}) == 10


def test_unreachable_server_names_the_url(tmp_path, adaptor, corpus):
    ids, texts, vectors, _ = corpus
    port = free_port()
    with pytest.raises(ChromaUnavailableError, match=f"http://127.0.0.1:{port}"):
        connect(host="127.0.0.1", port=port)
    with pytest.raises(ChromaUnavailableError, match=f"http://127.0.0.1:{port}"):
        MatryoshkaStore("docs", adaptor, host="127.0.0.1", port=port)

    server = ChromaServer(tmp_path / "db", port).start()
    try:
        store = MatryoshkaStore("docs", adaptor, host="127.0.0.1", port=port)
        store.add(ids[:100], embeddings=vectors[:100], texts=texts[:100])
        server.stop()
        with pytest.raises(ChromaUnavailableError, match=f"http://127.0.0.1:{port}"):
            store.add(ids[100:200], embeddings=vectors[100:200], texts=texts[100:200])
        with pytest.raises(ChromaUnavailableError, match=f"http://127.0.0.1:{port}.*searching"):
            store.query(vectors[0], k=3)
        server.start()
        store.add(ids[100:200], embeddings=vectors[100:200], texts=texts[100:200])  # the failed batch, again
        assert store.count() == rerank_rows(store) == 200
    finally:
        server.stop()


def parse_cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_index_arguments(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args([str(a) for a in argv])


@pytest.mark.parametrize("mode", ["embedded", "server"])  # a database another process can write
def test_sigkill_mid_ingest_keeps_acknowledged_batches(
    location, name, tmp_path, small_adaptor_dir, scifact, scifact_vectors
):
    """`index` killed with SIGKILL mid-ingest: every acknowledged batch is there; re-running completes."""
    n = len(scifact.corpus_ids)  # 800
    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text(
        "".join(
            json.dumps({"_id": i, "text": t}) + "\n"
            for i, t in zip(scifact.corpus_ids[:n], scifact.corpus_texts)
        )
    )
    np.save(tmp_path / "vectors.npy", scifact_vectors[:n])
    (tmp_path / "vectors_ids.json").write_text(json.dumps(scifact.corpus_ids[:n]))
    where = (
        ["--path", location["path"]]
        if "path" in location
        else ["--host", "127.0.0.1", "--port", location["port"]]
    )
    argv = ["index", "--corpus", corpus_file, "--adaptor", small_adaptor_dir, *where, "--collection", name]
    argv += ["--embeddings", tmp_path / "vectors.npy", "--batch-size", 25]

    with open(tmp_path / "index.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", INDEX_SCRIPT, *map(str, argv)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    acknowledged = 0
    for line in process.stdout:
        if line.startswith("indexed "):
            acknowledged = int(line.split()[1].split("/")[0])
        if acknowledged >= 100:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, (tmp_path / "index.log").read_text()[-2000:]

    store = new_store(location, name, None)
    assert acknowledged <= store.count() < n
    assert set(store.get(scifact.corpus_ids[:acknowledged])) == set(scifact.corpus_ids[:acknowledged])

    index_command(parse_cli(*argv))  # the same command again, in this process
    assert store.count() == n
    assert len(store.rerank_vectors(scifact.corpus_ids[:n])) == n  # every record's pointer reads its own row


def test_cli_query(
    tmp_path, small_adaptor_dir, scifact, scifact_vectors, precomputed_minilm, monkeypatch, capsys
):
    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text(
        "".join(
            json.dumps({"_id": i, "text": t}) + "\n"
            for i, t in zip(scifact.corpus_ids[:200], scifact.corpus_texts)
        )
    )
    monkeypatch.setattr(
        "matryoshka_rag.cli.store_commands.text_provider", lambda model, base: precomputed_minilm
    )
    db = tmp_path / "db"
    index_command(parse_cli("index", "--corpus", corpus_file, "--adaptor", small_adaptor_dir, "--path", db))
    assert "200 records" in capsys.readouterr().out
    query_command(parse_cli("query", scifact.corpus_texts[4], "--path", db, "-k", 3, "--json"))
    hits = json.loads(capsys.readouterr().out)
    assert [h["stage"] for h in hits] == [STAGE_FUNNEL] * 3 and hits[0]["id"] == scifact.corpus_ids[4]
    assert set(hits[0]["scores"]) == {"64", "384"} and math.isclose(
        hits[0]["score"], hits[0]["scores"]["384"]
    )
    query_command(parse_cli("query", scifact.corpus_texts[4], "--path", db, "-k", 2))
    assert f"1. {scifact.corpus_ids[4]}" in capsys.readouterr().out
    with pytest.raises(InputError, match="no Chroma database"):
        query_command(parse_cli("query", "x", "--path", tmp_path / "missing"))


def _rerank_file(store: MatryoshkaStore) -> Path:
    return store.vectors.file_path(store.vectors.generations()[-1])


def test_bad_rerank_file_is_refused_and_left_as_is(tmp_path, small_adaptor_dir, corpus):
    """A rerank file truncated, replaced by another store's, or missing: queries name it, nothing is rewritten."""
    ids, texts, vectors, _ = corpus
    stores = {}
    for name in ("docs", "other"):
        stores[name] = MatryoshkaStore(name, small_adaptor_dir, path=tmp_path / "db")
        stores[name].add(ids[:100], texts=texts[:100], embeddings=vectors[:100])
    path = _rerank_file(stores["docs"])
    good = path.read_bytes()
    row = (len(good) - 64) // 100  # 100 rows after the 64-byte header
    cases = [
        (good[:-1000], "is truncated"),  # the last rows are gone
        (_rerank_file(stores["other"]).read_bytes(), "belongs to another store"),
        (
            good[:64] + good[64 + row : 64 + 2 * row] + good[64 + row :],
            "is not the vector of id",
        ),  # rows shifted
        (b"not a rerank file at all" * 10, "bad header"),
    ]
    for content, words in cases:
        path.write_bytes(content)
        with pytest.raises(RerankFileError, match=words) as raised:
            MatryoshkaStore("docs", None, path=tmp_path / "db").query(vectors[0], k=100)
        assert str(path) in str(raised.value)
        assert path.read_bytes() == content  # refused, not repaired or rewritten
    path.unlink()
    with pytest.raises(RerankFileError, match="is missing"):
        MatryoshkaStore("docs", None, path=tmp_path / "db").query(vectors[0], k=3)
    path.write_bytes(good)
    progress = stores["docs"].vectors.progress_path
    kept = progress.read_bytes()
    for content, words in (
        (None, "progress file .* is missing"),
        (b"{", "is corrupt"),
        (stores["other"].vectors.progress_path.read_bytes(), "belongs to another store"),
    ):
        progress.unlink() if content is None else progress.write_bytes(content)
        with pytest.raises(RerankFileError, match=words):
            MatryoshkaStore("docs", None, path=tmp_path / "db").query(vectors[0], k=3)
    progress.write_bytes(kept)
    assert MatryoshkaStore("docs", None, path=tmp_path / "db").query(vectors[3], k=1)[0].id == ids[3]


UPSERT_SCRIPT = """
import sys, numpy as np
from matryoshka_rag.store.store import MatryoshkaStore
path, name, vectors, ids = sys.argv[1], sys.argv[2], np.load(sys.argv[3]), sys.argv[4].split(",")
store = MatryoshkaStore(name, None, path=path)
for round in range(1000):
    for start in range(0, len(ids), 50):
        store.upsert(ids[start:start + 50], embeddings=vectors[start:start + 50],
                     metadatas=[{"round": round}] * len(ids[start:start + 50]))
        print(f"round {round} batch {start}", flush=True)
"""


def test_sigkill_mid_upsert_keeps_every_record_consistent(tmp_path, small_adaptor_dir, corpus):
    """Upserting the same records over and over, killed mid-write: every record still reads its own rerank
    row and is found by its own vector; the next write cuts the unacknowledged tail; compact() reclaims."""
    ids, _, vectors, _ = corpus
    ids, vectors = ids[:300], vectors[:300]
    with MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db") as store:
        store.upsert(ids, embeddings=vectors)  # closed after: the child below is the one writer
    np.save(tmp_path / "vectors.npy", vectors)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            UPSERT_SCRIPT,
            str(tmp_path / "db"),
            "docs",
            str(tmp_path / "vectors.npy"),
            ",".join(ids),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("round 3 batch 100"):
            time.sleep(0.05)  # somewhere inside the next batches
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    reopened = MatryoshkaStore("docs", None, path=tmp_path / "db")
    assert reopened.count() == 300
    assert len(reopened.rerank_vectors(ids)) == 300  # every pointer reads a row that is its own
    for i in (0, 120, 299):
        assert reopened.query(vectors[i], k=1)[0].id == ids[i]
    rounds = {meta["round"] for _, meta in reopened.get(ids).values()}
    assert rounds <= {2, 3, 4}
    reopened.upsert(ids[:10], embeddings=vectors[:10])  # a write: the cut-off tail goes first
    generation, acknowledged = reopened.vectors.progress()
    assert acknowledged == rerank_rows(reopened) and reopened.vectors.generations() == [generation]
    freed = reopened.compact()
    assert freed > 0 and rerank_rows(reopened) == 300
    assert [h.id for h in reopened.query(vectors[7], k=3)][0] == ids[7]


def test_supervised_adaptor_reranks_with_adapted_vectors(tmp_path, adaptor, corpus):
    """An adaptor trained with labels reranks with its adapted full-dim vectors by default (recorded);
    an unsupervised one with the base vectors; either can be overridden."""
    ids, _, vectors, _ = corpus
    supervised = MatryoshkaAdaptor(adaptor.config)
    supervised.load_state_dict(adaptor.state_dict())
    supervised.metadata = {"training": {"mode": "supervised"}}
    store = MatryoshkaStore("sup", supervised, path=tmp_path / "db")
    assert store.large_vectors == "adapted"
    store.add(ids[:200], embeddings=vectors[:200])
    truth = adaptor.transform(vectors[:200]) @ adaptor.transform(vectors[5:6])[0]
    hits = store.query(vectors[5], k=10)
    assert [h.id for h in hits] == [ids[i] for i in np.argsort(-truth)[:10]]
    assert MatryoshkaStore("unsup", adaptor, path=tmp_path / "db").large_vectors == "base"
    assert (
        MatryoshkaStore("over", supervised, path=tmp_path / "db", large_vectors="base").large_vectors
        == "base"
    )
    with pytest.raises(AdaptorMismatchError, match="large_vectors='adapted'"):
        MatryoshkaStore("sup", supervised, path=tmp_path / "db", large_vectors="base")


def test_querying_never_imports_torch(tmp_path, small_adaptor_dir, corpus):
    ids, texts, vectors, _ = corpus
    MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db").add(
        ids[:50], texts=texts[:50], embeddings=vectors[:50]
    )
    np.save(tmp_path / "q.npy", vectors[4])
    code = (
        "import sys, numpy as np\n"
        "from matryoshka_rag.store.store import MatryoshkaStore\n"
        f"store = MatryoshkaStore('docs', None, path={str(tmp_path / 'db')!r})\n"
        f"hits = store.query(np.load({str(tmp_path / 'q.npy')!r}), k=3)\n"
        "print(hits[0].id, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [ids[4], "False"]


def test_cli_query_end_to_end_with_the_real_model(tmp_path, small_adaptor_dir, scifact, scifact_vectors):
    """`matryoshka-rag index` (the real model's precomputed vectors) then `matryoshka-rag query`, which encodes
    the query text with the real all-MiniLM-L6-v2 in its own process: a document's text finds that document."""
    n = 300
    (tmp_path / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": i, "text": t}) + "\n"
            for i, t in zip(scifact.corpus_ids[:n], scifact.corpus_texts)
        )
    )
    np.save(tmp_path / "vectors.npy", scifact_vectors[:n])
    (tmp_path / "vectors_ids.json").write_text(json.dumps(scifact.corpus_ids[:n]))
    db = tmp_path / "db"
    index_command(
        parse_cli(
            "index",
            "--corpus",
            tmp_path / "corpus.jsonl",
            "--adaptor",
            small_adaptor_dir,
            "--path",
            db,
            "--embeddings",
            tmp_path / "vectors.npy",
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "matryoshka_rag.cli.app",
            "query",
            "--path",
            str(db),
            "-k",
            "3",
            "--json",
            scifact.corpus_texts[7],
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    hits = json.loads(result.stdout.strip().splitlines()[-1])
    assert hits[0]["id"] == scifact.corpus_ids[7] and hits[0]["score"] > 0.99  # the same text, re-encoded


def test_cli_index_into_a_path_that_is_a_file_is_one_line(tmp_path, small_adaptor_dir):
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "a", "text": "x"}) + "\n")
    (tmp_path / "db").write_text("not a folder")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "matryoshka_rag.cli.app",
            "index",
            "--corpus",
            str(tmp_path / "corpus.jsonl"),
            "--adaptor",
            str(small_adaptor_dir),
            "--path",
            str(tmp_path / "db"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "db").read_text() == "not a folder"
