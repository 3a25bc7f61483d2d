"""LlamaIndex ``AdaptedEmbedding``: same vectors as the core, batching, serialisation, async, bad input, fit(),
and the LlamaIndex RAG example end to end. Tests through the `base` / `minilm_provider`
fixtures encode with the real all-MiniLM-L6-v2; those taking `precomputed_minilm` use its precomputed SciFact
vectors (a lookup)."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core import Settings
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import TextNode

from llama_index.embeddings.matryoshka_rag import AdaptedEmbedding, ProviderEmbedding
from matryoshka_rag import UnsupervisedConfig, load_adaptor, save_adaptor, train_unsupervised
from matryoshka_rag.embeddings.adapted import BaseModelWarning
from matryoshka_rag.errors import AdaptorMismatchError, InputError
from tests.framework_checks import check_fitted, run_example

TEXTS = ["Vitamin D deficiency raises the risk of fractures.", "Statins lower LDL cholesterol.", "foo"]


@pytest.fixture(scope="module")
def base(minilm_provider) -> ProviderEmbedding:
    return ProviderEmbedding(provider=minilm_provider)


@pytest.fixture(scope="module")
def adapted(base: ProviderEmbedding, small_adaptor_dir: Path) -> AdaptedEmbedding:
    return AdaptedEmbedding.from_pretrained(base=base, path=small_adaptor_dir, dim=64)


def test_same_vectors_as_core(adapted: AdaptedEmbedding, minilm_provider, small_adaptor_dir: Path) -> None:
    expected = load_adaptor(small_adaptor_dir).transform(minilm_provider(TEXTS), 64)
    batch = np.array(adapted.get_text_embedding_batch(TEXTS))
    assert batch.shape == (3, 64)
    np.testing.assert_allclose(batch, expected, atol=1e-5)
    np.testing.assert_allclose(adapted.get_text_embedding(TEXTS[1]), expected[1], atol=1e-5)
    np.testing.assert_allclose(adapted.get_query_embedding(TEXTS[0]), expected[0], atol=1e-5)
    assert adapted.output_dim == 64 and adapted.embed_batch_size == 64  # the base's batch size


def test_a_batch_goes_through_the_adaptor_at_once(adapted: AdaptedEmbedding, monkeypatch) -> None:
    adaptor = adapted._vectors.adaptor
    sizes: list[int] = []
    transform = adaptor.transform
    monkeypatch.setattr(adaptor, "transform", lambda x, dim: sizes.append(len(x)) or transform(x, dim))
    adapted.get_text_embedding_batch(TEXTS * 4)
    assert sizes == [12]


def test_settings_embed_model(adapted: AdaptedEmbedding) -> None:
    try:
        Settings.embed_model = adapted
        assert Settings.embed_model is adapted
    finally:
        Settings._embed_model = None


def test_to_dict_from_dict_round_trip(adapted: AdaptedEmbedding, base: ProviderEmbedding) -> None:
    data = adapted.to_dict()
    assert data["class_name"] == "AdaptedEmbedding" and data["dim"] == 64
    assert data["base"]["class_name"] == "ProviderEmbedding"
    assert data["adaptor_fingerprint"] == adapted._vectors.adaptor.fingerprint()
    rebuilt = AdaptedEmbedding.from_json(adapted.to_json())  # base rebuilt from its dict, adaptor re-loaded
    assert isinstance(rebuilt.base, ProviderEmbedding) and rebuilt.base.model_name == "all-MiniLM-L6-v2"
    assert rebuilt.to_dict() == data
    given = AdaptedEmbedding.from_dict(data, base=base)  # or the caller supplies the base
    assert given.base is base
    np.testing.assert_allclose(
        given.get_query_embedding("foo"), adapted.get_query_embedding("foo"), atol=1e-6
    )


def test_from_dict_refuses_a_changed_adaptor_or_unknown_base(
    adapted: AdaptedEmbedding,
    base: ProviderEmbedding,
    small_adaptor_dir: Path,
    scifact_vectors,
    tmp_path: Path,
) -> None:
    other = train_unsupervised(
        scifact_vectors[:200],
        (32, 384),
        UnsupervisedConfig(max_steps=2, seed=1),
        "all-MiniLM-L6-v2",
        progress=False,
    )
    folder = save_adaptor(other, tmp_path / "other")
    data = {**adapted.to_dict(), "path": str(folder)}
    with pytest.raises(
        AdaptorMismatchError, match="not the one this embedding was made with.*drop 'adaptor_fingerprint'"
    ):
        AdaptedEmbedding.from_dict(data, base=base)
    data.pop("adaptor_fingerprint")
    assert AdaptedEmbedding.from_dict(data, base=base).adaptor_fingerprint == other.fingerprint()
    unknown = {**adapted.to_dict(), "base": {"class_name": "NoSuchEmbedding", "model_name": "x"}}
    with pytest.raises(InputError, match="pass the base model"):
        AdaptedEmbedding.from_dict(unknown)


def test_async(adapted: AdaptedEmbedding) -> None:
    async def run() -> tuple:
        return (
            await adapted.aget_text_embedding_batch(TEXTS),
            await adapted.aget_text_embedding(TEXTS[2]),
            await adapted.aget_query_embedding(TEXTS[0]),
            await adapted.aget_text_embedding_batch([]),
        )

    batch, text, query, empty = asyncio.run(run())
    expected = np.array(adapted.get_text_embedding_batch(TEXTS))
    np.testing.assert_allclose(batch, expected, atol=1e-6)
    np.testing.assert_allclose(text, expected[2], atol=1e-6)
    np.testing.assert_allclose(query, expected[0], atol=1e-6)
    assert empty == []


class _Table(BaseEmbedding):
    """A base returning ``vectors[text]`` (else ``default``) as they are; counts its async calls."""

    _vectors: dict = PrivateAttr()
    _default: Any = PrivateAttr()
    _async_calls: list = PrivateAttr(default_factory=list)

    def __init__(self, vectors: dict, model_name: str = "all-MiniLM-L6-v2", default: Any = None) -> None:
        super().__init__(model_name=model_name)
        self._vectors, self._default = vectors, default

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vectors.get(query, self._default)

    _get_text_embedding = _get_query_embedding

    async def _aget_query_embedding(self, query: str) -> list[float]:
        self._async_calls.append(query)
        return self._get_query_embedding(query)


def test_async_delegates_to_base(small_adaptor_dir: Path) -> None:
    vector = np.random.default_rng(1).standard_normal(384).tolist()
    table = _Table({"q": vector})
    adapted = AdaptedEmbedding(base=table, path=small_adaptor_dir, dim=32)
    np.testing.assert_allclose(
        asyncio.run(adapted.aget_query_embedding("q")),
        load_adaptor(small_adaptor_dir).transform([vector], 32)[0],
        atol=1e-5,
    )
    assert table._async_calls == ["q"]


def test_bad_input(adapted: AdaptedEmbedding, small_adaptor_dir: Path) -> None:
    assert adapted.get_text_embedding_batch([]) == []
    for call in (
        lambda: adapted.get_text_embedding_batch(["fine", " "]),
        lambda: adapted.get_query_embedding(""),
        lambda: asyncio.run(adapted.aget_text_embedding("\t")),
    ):
        with pytest.raises(InputError, match=r"text \d is blank"):
            call()
    good = np.random.default_rng(0).standard_normal(384).tolist()
    nan_base = _Table({"a": good, "b": [float("nan")] * 384})
    with pytest.raises(InputError, match=r"1 vector\(s\) hold NaN or inf, first at text 1 \('b'\)"):
        AdaptedEmbedding(base=nan_base, path=small_adaptor_dir).get_text_embedding_batch(["a", "b"])
    with pytest.raises(ValueError, match="dim must be in 1..384"):
        AdaptedEmbedding(base=nan_base, path=small_adaptor_dir, dim=385)
    with pytest.raises(ValueError, match="dim must be in 1..384"):
        AdaptedEmbedding(base=nan_base, path=small_adaptor_dir, dim=0)
    assert (
        len(AdaptedEmbedding(base=nan_base, path=small_adaptor_dir, dim=100).get_query_embedding("a")) == 100
    )


def test_base_dim_mismatch_and_name_warning_once(small_adaptor_dir: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapper = AdaptedEmbedding(
            base=_Table({}, "BAAI/bge-small-en-v1.5", [0.5] * 768), path=small_adaptor_dir
        )
        for _ in range(2):
            with pytest.raises(AdaptorMismatchError, match=r"768-d vector for text 0.*takes 384-d"):
                wrapper.get_query_embedding("x")
    names = [w for w in caught if issubclass(w.category, BaseModelWarning)]
    assert len(names) == 1 and "'BAAI/bge-small-en-v1.5'" in str(names[0].message)


@pytest.mark.parametrize("supervised", [False, True])
def test_fit(tmp_path: Path, scifact, precomputed_minilm, supervised: bool) -> None:
    base = ProviderEmbedding(provider=precomputed_minilm)
    texts = scifact.corpus_texts[:100]
    items = [TextNode(text=t) for t in texts] if not supervised else texts
    pairs = [(q, texts[i]) for i, q in enumerate(scifact.query_texts[:5])] if supervised else None
    wrapper = AdaptedEmbedding.fit(
        base,
        items,
        tmp_path / "fitted",
        dims=(16, 384),
        queries=pairs,
        dim=16,
        max_steps=6,
        eval_every=3,
        progress=False,
    )
    adaptor = check_fitted(tmp_path / "fitted", (16, 384), supervised, 100, 6)
    assert wrapper.path == str(tmp_path / "fitted")
    vector = wrapper.get_text_embedding(texts[3])
    np.testing.assert_allclose(vector, adaptor.transform(precomputed_minilm([texts[3]]), 16)[0], atol=1e-5)


def test_example_end_to_end(tmp_path: Path, scifact, small_adaptor_dir: Path) -> None:
    results = run_example("llamaindex_rag", scifact, small_adaptor_dir, tmp_path)
    assert (tmp_path / "llamaindex-ingestion-cache.json").is_file()
    again = run_example("llamaindex_rag", scifact, small_adaptor_dir, tmp_path)  # from the ingestion cache
    assert [row["retrieved"] for row in again] == [row["retrieved"] for row in results]
