"""Shared test fixtures: the offline BEIR copies and precomputed embeddings in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag.beir import BeirDataset, load_beir, load_precomputed

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download during tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BEIR_DIR = SHARED / "beir"
EMBEDDINGS_DIR = SHARED / "embeddings" / "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def scifact() -> BeirDataset:
    return load_beir(BEIR_DIR / "scifact")


@pytest.fixture(scope="session")
def nfcorpus() -> BeirDataset:
    return load_beir(BEIR_DIR / "nfcorpus")


@pytest.fixture(scope="session")
def scifact_embeddings(scifact: BeirDataset):
    """Precomputed all-MiniLM-L6-v2 vectors of SciFact: (docs (5183, 384), queries (1109, 384))."""
    return load_precomputed(EMBEDDINGS_DIR / "scifact", scifact)


@pytest.fixture(scope="session")
def scifact_vectors(scifact_embeddings) -> np.ndarray:
    """SciFact corpus vectors (5183, 384)."""
    return scifact_embeddings[0]
