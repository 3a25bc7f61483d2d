"""``store.distances`` against the distances Chroma itself gives in each HNSW space, on real all-MiniLM-L6-v2
vectors (SciFact)."""

from __future__ import annotations

import uuid
from typing import get_args

import chromadb
import numpy as np
import pytest

from matryoshka_rag.store.distances import Space, chroma_distance, cosine_from_distance


@pytest.mark.parametrize("space", get_args(Space))
def test_distances_are_chromas(space, scifact_vectors) -> None:
    vectors = scifact_vectors[:50] / np.linalg.norm(scifact_vectors[:50], axis=1, keepdims=True)
    query = scifact_vectors[60] / np.linalg.norm(scifact_vectors[60])
    collection = chromadb.EphemeralClient().create_collection(
        f"d{uuid.uuid4().hex[:12]}", configuration={"hnsw": {"space": space}}, embedding_function=None
    )
    collection.add(ids=[str(i) for i in range(50)], embeddings=vectors)
    found = collection.query(query_embeddings=[query], n_results=50, include=["distances"])
    distances = np.asarray(found["distances"][0], dtype=np.float64)
    cosines = vectors[[int(i) for i in found["ids"][0]]].astype(np.float64) @ query
    assert len(set(np.round(cosines, 2))) > 20  # near and far records alike
    assert chroma_distance(cosines, space) == pytest.approx(distances, abs=1e-5)
    assert cosine_from_distance(distances, space) == pytest.approx(cosines, abs=1e-5)
    assert chroma_distance(float(cosines[0]), space) == pytest.approx(distances[0], abs=1e-5)
