"""The server layout (`rerank_home="metadata"`, the default through a `chroma run` server): each record carries its
float16 rerank row in reserved metadata keys of the one searched collection. Real server, real SciFact vectors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from chromadb.errors import InvalidArgumentError

from matryoshka_rag import InputError, load_adaptor
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


def filled(name: str, adaptor, corpus, **location) -> MatryoshkaStore:
    ids, texts, vectors, metadatas = corpus
    store = MatryoshkaStore(name, adaptor, client=connect(**location))
    store.add(ids, texts=texts, embeddings=vectors, metadatas=metadatas)
    return store


def test_rows_round_trip_through_metadata_in_chunks():
    """A row is its float16 value exactly, in chunks of at most 960 Base64 characters, for any dim."""
    rng = np.random.default_rng(0)
    for dim, chunks in ((64, 1), (384, 2), (1000, 3)):
        rows = rng.standard_normal((3, dim)).astype(np.float32)
        encoded = encode_rows(rows)
        assert list(encoded[0]) == row_keys(dim) == [f"{RESERVED_PREFIX}row{j}" for j in range(chunks)]
        assert max(len(text) for meta in encoded for text in meta.values()) == min(
            960, len(encoded[0]["mrag:row0"])
        )
        decoded, found = decode_rows([encoded[0], None, {"other": 1}, encoded[2]], dim)
        np.testing.assert_array_equal(decoded, rows[[0, 2]].astype(np.float16).astype(np.float32))
        assert found.tolist() == [True, False, False, True]


def test_server_store_keeps_rows_in_its_one_collection(
    server, name, tmp_path, adaptor, corpus, scifact_embeddings
):
    """Through a server the store makes one collection whose records carry their rows; its answers equal the
    embedded store's (the same float16 rows), each query in one Chroma call plus the hits' records."""
    ids, texts, vectors, metadatas = corpus
    store = filled(name, adaptor, corpus, **server)
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
    assert set(raw) == {"group", *row_keys(384)}  # stored, never shown:
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
    row = store.small.get(ids=ids[:1], include=["metadatas"])["metadatas"][0][row_keys(384)[0]]
    with pytest.raises(InputError, match="the store's own keys"):
        store.query(vectors[0], where={row_keys(384)[0]: row})
    with pytest.raises(InvalidArgumentError, match="indexing is disabled"):
        store.small.get(where={row_keys(384)[0]: row})


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
