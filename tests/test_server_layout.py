"""The server layout (`rerank_home="metadata"`, the default through a `chroma run` server): each record carries its
rerank row (int8 by default, float16 in stores made before) in reserved metadata keys of the one searched
collection. Real server, real SciFact vectors."""

from __future__ import annotations

import uuid

import chromadb
import numpy as np
import pytest
from chromadb.errors import InvalidArgumentError

from matryoshka_rag import AdaptorMismatchError, InputError, load_adaptor
from matryoshka_rag.store.records import RESERVED_PREFIX
from matryoshka_rag.store.rerank_homes import CollectionVectors
from matryoshka_rag.store.rerank_metadata import MetadataVectors, decode_rows, encode_rows, row_keys
from matryoshka_rag.store.store import MatryoshkaStore, connect

N = 600


@pytest.fixture(scope="module")
def adaptor(small_adaptor_dir):
    return load_adaptor(small_adaptor_dir)


@pytest.fixture(scope="module")
def corpus(scifact, scifact_vectors):
    metadatas = [{"group": i % 3} for i in range(N)]
    return scifact.corpus_ids[:N], scifact.corpus_texts[:N], scifact_vectors[:N], metadatas


@pytest.fixture
def server(chroma_server_session) -> dict:
    return {"host": "127.0.0.1", "port": chroma_server_session.port}


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def filled(name: str, adaptor, corpus, rerank_rows=None, **location) -> MatryoshkaStore:
    ids, texts, vectors, metadatas = corpus
    store = MatryoshkaStore(name, adaptor, client=connect(**location), rerank_rows=rerank_rows)
    store.add(ids, texts=texts, embeddings=vectors, metadatas=metadatas)
    return store


def test_rows_round_trip_through_metadata_in_chunks():
    """A float16 row is its float16 value exactly, an int8 row its unit row within half a step of its largest
    component / 127, in chunks of at most 960 Base64 characters, for any dim: a 384-d int8 row is one chunk."""
    rng = np.random.default_rng(0)
    for codec, dim, chunks in (
        ("float16", 64, 1),
        ("float16", 384, 2),
        ("float16", 1000, 3),
        ("int8", 64, 1),
        ("int8", 384, 1),
        ("int8", 1000, 2),
    ):
        rows = rng.standard_normal((3, dim)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        encoded = encode_rows(rows, codec)
        keys = row_keys(dim, codec)
        assert list(encoded[0]) == keys == [f"{RESERVED_PREFIX}row{j}" for j in range(chunks)]
        assert max(len(text) for meta in encoded for text in meta.values()) == min(
            960, len(encoded[0]["mrag:row0"])
        )
        decoded, found = decode_rows([encoded[0], None, {"other": 1}, encoded[2]], dim, codec)
        assert found.tolist() == [True, False, False, True]
        if codec == "float16":
            np.testing.assert_array_equal(decoded, rows[[0, 2]].astype(np.float16).astype(np.float32))
        else:
            step = np.abs(rows[[0, 2]]).max(axis=1, keepdims=True) / 127
            assert np.all(np.abs(decoded - rows[[0, 2]]) <= step)  # half a step, and the renormalisation
            np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1, rtol=1e-6)
    assert len(encode_rows(rows[:1, :384], "int8")[0]["mrag:row0"]) == 512  # 384 bytes, Base64


def test_server_store_keeps_rows_in_its_one_collection(
    server, name, tmp_path, adaptor, corpus, scifact_embeddings
):
    """Through a server the store makes one collection whose records carry their rows; with float16 rows its
    answers equal the embedded store's (the same float16 rows), each query in one Chroma call plus the hits'
    records."""
    ids, texts, vectors, metadatas = corpus
    store = filled(name, adaptor, corpus, "float16", **server)
    embedded = filled(name, adaptor, corpus, path=tmp_path / "db")
    assert store.rerank_home == "metadata" and isinstance(store.vectors, MetadataVectors)
    assert {c.name for c in store.client.list_collections() if c.name.startswith(name)} == {f"{name}__d64"}

    calls = []
    for method in ("get", "query"):
        original = getattr(store.small, method)
        setattr(
            store.small, method, lambda *a, _f=original, _m=method, **kw: calls.append(_m) or _f(*a, **kw)
        )
    shapes = set()
    for query in scifact_embeddings[1][:30]:
        calls.clear()
        hits, expected = store.query(query, k=10), embedded.query(query, k=10)
        assert [(h.id, h.score, h.stage, h.document, h.metadata) for h in hits] == [
            (h.id, h.score, h.stage, h.document, h.metadata) for h in expected
        ]  # the same float16 rows; the small-dim cosines come as JSON over HTTP:
        assert [h.scores[64] for h in hits] == pytest.approx([h.scores[64] for h in expected], abs=1e-6)
        assert calls[-1] == "get" and set(calls[:-1]) == {"query"}  # the rows came with each shortlist
        shapes.add(len(calls))
    assert 2 in shapes  # one search, one read of the hits' documents
    raw = store.small.get(ids=ids[:1], include=["metadatas"])["metadatas"][0]
    assert set(raw) == {"group", *row_keys(384, "float16")}  # stored, never shown:
    assert store.get(ids[:1]) == {ids[0]: (texts[0], metadatas[0])}
    assert all(not key.startswith(RESERVED_PREFIX) for h in store.query(vectors[0]) for key in h.metadata)
    stored = store.rerank_vectors(ids[:2])[ids[1]]
    np.testing.assert_allclose(stored, vectors[1] / np.linalg.norm(vectors[1]), atol=1e-3)


def test_where_filters_never_reach_the_rows(server, name, adaptor, corpus):
    """`where` filters user metadata; the row keys are refused by the store and unindexed in Chroma."""
    ids, _, vectors, _ = corpus
    store = filled(name, adaptor, corpus, **server)
    hits = store.query(vectors[4], k=10, where={"group": 1})
    assert hits[0].id == ids[4] and len(hits) == 10 and all(h.metadata == {"group": 1} for h in hits)
    assert set(store.get(where={"group": 2})) == set(ids[2::3])
    key = row_keys(384, "int8")[0]
    row = store.small.get(ids=ids[:1], include=["metadatas"])["metadatas"][0][key]
    with pytest.raises(InputError, match="the store's own keys"):
        store.query(vectors[0], where={key: row})
    with pytest.raises(InvalidArgumentError, match="indexing is disabled"):
        store.small.get(where={key: row})


def test_upsert_and_delete_keep_rows_with_their_records(server, name, adaptor, corpus):
    """Replacing a record's vector replaces its row, its metadata merges as Chroma merges; deleting it deletes
    the row: every record carries exactly its own row."""
    ids, texts, vectors, _ = corpus
    store = filled(name, adaptor, corpus, **server)
    store.upsert(ids[:2], embeddings=vectors[10:12], metadatas=[{"group": 9}, None])
    assert store.query(vectors[10], k=2)[0].id in {ids[0], ids[10]}
    rows = store.rerank_vectors(ids[:2])
    for i in range(2):
        np.testing.assert_allclose(rows[ids[i]], vectors[10 + i] / np.linalg.norm(vectors[10 + i]), atol=1e-3)
    assert store.get(ids[:2]) == {ids[0]: (texts[0], {"group": 9}), ids[1]: (texts[1], {"group": 1})}
    store.delete(ids[:5])
    assert store.count() == N - 5 and store.rerank_vectors(ids[:6]).keys() == {ids[5]}
    assert ids[0] not in {h.id for h in store.query(vectors[10], k=10)}
    carried = store.vectors.read(store.small.get(include=[])["ids"])[1]
    assert carried.all() and len(carried) == N - 5
    assert store.compact() == 0


def test_a_collection_layout_store_still_opens(server, name, small_adaptor_dir, corpus):
    """A store made with the second collection keeps it when reopened under the default `rerank_home`."""
    ids, texts, vectors, metadatas = corpus
    old = MatryoshkaStore(name, small_adaptor_dir, client=connect(**server), rerank_home="collection")
    old.add(ids, texts=texts, embeddings=vectors, metadatas=metadatas)
    reopened = MatryoshkaStore(name, client=connect(**server))
    assert reopened.rerank_home == "collection" and isinstance(reopened.vectors, CollectionVectors)
    assert [h.id for h in reopened.query(vectors[3], k=5)] == [h.id for h in old.query(vectors[3], k=5)]
    assert reopened.query(vectors[3], k=1)[0].id == ids[3]
    assert "mrag:row0" not in (reopened.small.get(ids=ids[:1], include=["metadatas"])["metadatas"][0] or {})


def test_int8_rows_rerank_as_float32_rows(server, name, adaptor, scifact, scifact_embeddings):
    """On the real SciFact slice (800 documents, its 300 queries) the default int8 rows rank all 800 documents
    as their float32 vectors do: the same top 10 in the same order for >= 80% of queries, the same top-10 set
    for >= 95%, recall@10 >= 0.99; the store's top 10 equals a float32 store's (in memory, the same adaptor)
    for >= 95% of queries, and each query's top hit for >= 99%."""
    docs, queries = scifact_embeddings
    corpus = (scifact.corpus_ids, scifact.corpus_texts, docs, [{"group": 0}] * len(docs))
    store = filled(name, adaptor, corpus, **server)
    exact = MatryoshkaStore(name, adaptor, client=chromadb.EphemeralClient())
    exact.add(corpus[0], embeddings=docs)
    assert store.layout.rerank_rows == "int8" and exact.rerank_home == "memory"
    stored = store.rerank_vectors(corpus[0])
    rows = np.array([stored[i] for i in corpus[0]])
    units = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    questions = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    int8_top = np.argsort(-(questions @ rows.T), axis=1)[:, :10]
    float_top = np.argsort(-(questions @ units.T), axis=1)[:, :10]
    assert np.mean((int8_top == float_top).all(axis=1)) >= 0.80
    assert np.mean([set(a) == set(b) for a, b in zip(int8_top, float_top)]) >= 0.95
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(int8_top, float_top)]) >= 0.99
    served = [[h.id for h in store.query(q, k=10)] for q in queries]
    expected = [[h.id for h in exact.query(q, k=10)] for q in queries]
    assert np.mean([set(a) == set(b) for a, b in zip(served, expected)]) >= 0.95
    assert np.mean([a[0] == b[0] for a, b in zip(served, expected)]) >= 0.99


def test_a_float16_store_from_before_int8_rows_still_opens(server, name, tmp_path, adaptor, corpus):
    """A metadata store whose layout names no row codec (written before int8 rows) holds float16 rows: it
    reopens as float16, answers as before (as the embedded store's float16 rows), keeps writing float16, and
    refuses to be reopened as int8."""
    ids, texts, vectors, metadatas = corpus
    old = filled(name, adaptor, corpus, "float16", **server)
    recorded = {k: v for k, v in old.small.metadata.items() if k != "rerank_rows"}
    old.small.modify(metadata=recorded)  # the layout as stores before int8 rows recorded it
    embedded = filled(name, adaptor, corpus, path=tmp_path / "db")
    before = [[(h.id, h.score) for h in old.query(v, k=10)] for v in vectors[:20]]
    reopened = MatryoshkaStore(name, adaptor, client=connect(**server))
    assert "rerank_rows" not in reopened.small.metadata and reopened.layout.rerank_rows == "float16"
    assert [[(h.id, h.score) for h in reopened.query(v, k=10)] for v in vectors[:20]] == before
    assert before == [[(h.id, h.score) for h in embedded.query(v, k=10)] for v in vectors[:20]]
    reopened.upsert(["new"], embeddings=vectors[:1])
    raw = reopened.small.get(ids=["new"], include=["metadatas"])["metadatas"][0]
    assert set(raw) == set(row_keys(384, "float16")) and reopened.query(vectors[0], k=2)[1].id in {
        "new",
        ids[0],
    }
    with pytest.raises(AdaptorMismatchError, match="rerank_rows='float16'.*rerank_rows='int8'"):
        MatryoshkaStore(name, adaptor, client=connect(**server), rerank_rows="int8")


def test_rerank_rows_refused_where_it_does_not_apply(server, name, tmp_path, adaptor):
    """An unknown codec names the choices; a codec for a home that keeps no metadata rows is refused."""
    with pytest.raises(InputError, match="rerank_rows must be one of 'int8', 'float16'; got 'int4'"):
        MatryoshkaStore(name, adaptor, client=connect(**server), rerank_rows="int4")
    with pytest.raises(InputError, match="rerank_home is 'file': leave rerank_rows out"):
        MatryoshkaStore(name, adaptor, path=tmp_path / "db", rerank_rows="int8")
