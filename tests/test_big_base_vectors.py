"""The big-base synthetic vectors of ``benchmarks/retriever.py --base-dim`` (issue 26, item 3): the real MiniLM
spectrum extended to the base dim, one distribution for corpus and queries (BENCHMARKS.md, "Big base vectors")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "retriever.py"


def _retriever():
    spec = importlib.util.spec_from_file_location("retriever", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extended_spectrum_keeps_the_real_head_and_total():
    retriever = _retriever()
    real, _ = retriever.real_spectrum()

    extended = retriever.extended_spectrum(real, 1536)

    assert extended.shape == (1536,)
    assert np.isclose(extended.sum(), real.sum())
    head = retriever.SPLICE
    np.testing.assert_allclose(extended[:head] / extended[0], real[:head] / real[0], rtol=1e-6)
    assert np.all(np.diff(extended[head - 1 :]) < 0)


def test_spectrum_synthetic_rows_follow_the_spectrum():
    retriever = _retriever()
    corpus = retriever.spectrum_synthetic(4000, 768)
    queries = retriever.spectrum_synthetic(4000, 768, seed=1)

    assert corpus.shape == (4000, 768) and corpus.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(corpus, axis=1), 1.0, rtol=1e-5)
    spread = corpus.var(axis=0)
    assert spread[:30].sum() > 10 * spread[-300:].sum()  # variance falls along the axes as the spectrum does
    assert not np.array_equal(corpus[:10], queries[:10])
    # one distribution: one mean and one set of clusters for every seed
    mean_q, mean_c = queries.mean(axis=0), corpus.mean(axis=0)
    assert mean_q @ mean_c / np.linalg.norm(mean_q) / np.linalg.norm(mean_c) > 0.95
