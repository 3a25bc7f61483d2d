"""LangChain ``AdaptedEmbeddings``: standard suites, same vectors as the core, bad input, fit(), and the LangChain
RAG example end to end. Tests through the `base` / `minilm_provider` fixtures encode with
the real all-MiniLM-L6-v2; those taking `precomputed_minilm` use its precomputed SciFact vectors (a lookup)."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_matryoshka_rag import AdaptedEmbeddings, ProviderEmbeddings
from matryoshka_rag import load_adaptor
from matryoshka_rag.embeddings.adapted import BaseModelWarning
from matryoshka_rag.errors import AdaptorMismatchError, InputError
from tests.framework_checks import check_fitted, run_example

TEXTS = ["Vitamin D deficiency raises the risk of fractures.", "Statins lower LDL cholesterol.", "foo"]


@pytest.fixture(scope="module")
def base(minilm_provider) -> ProviderEmbeddings:
    return ProviderEmbeddings(provider=minilm_provider)


@pytest.fixture(scope="module")
def adapted(base: ProviderEmbeddings, small_adaptor_dir: Path) -> AdaptedEmbeddings:
    return AdaptedEmbeddings.from_pretrained(base=base, path=small_adaptor_dir, dim=64)


class _Params:
    """Constructor parameters of the standard suites: the real model as base, the session's adaptor."""

    @pytest.fixture(autouse=True)
    def _params(self, base: ProviderEmbeddings, small_adaptor_dir: Path) -> None:
        self.params = {"base": base, "path": str(small_adaptor_dir), "dim": 64}

    @property
    def embeddings_class(self) -> type[AdaptedEmbeddings]:
        return AdaptedEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return self.params


class TestStandardUnit(_Params, EmbeddingsUnitTests):
    pass


@pytest.mark.asyncio  # the suite's async tests; pyproject does not set asyncio_mode=auto
@pytest.mark.filterwarnings("ignore:.*is not an async function:pytest.PytestWarning")
class TestStandardIntegration(_Params, EmbeddingsIntegrationTests):
    pass


def test_same_vectors_as_core(adapted: AdaptedEmbeddings, minilm_provider, small_adaptor_dir: Path) -> None:
    expected = load_adaptor(small_adaptor_dir).transform(minilm_provider(TEXTS), 64)
    documents = np.array(adapted.embed_documents(TEXTS))
    assert documents.shape == (3, 64)
    np.testing.assert_allclose(documents, expected, atol=1e-5)
    np.testing.assert_allclose(adapted.embed_query(TEXTS[0]), expected[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1.0, atol=1e-5)
    assert adapted.adaptor.config.base_dim == 384 and adapted.output_dim == 64


def test_async_delegates_to_base(base: ProviderEmbeddings, small_adaptor_dir: Path) -> None:
    calls: list[str] = []

    class AsyncTracked(ProviderEmbeddings):
        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            calls.append("aembed_documents")
            return self.embed_documents(texts)

        async def aembed_query(self, text: str) -> list[float]:
            calls.append("aembed_query")
            return self.embed_query(text)

    tracked = AsyncTracked(provider=base.provider)
    adapted = AdaptedEmbeddings(base=tracked, path=str(small_adaptor_dir), dim=32)
    documents = asyncio.run(adapted.aembed_documents(TEXTS[:2]))
    query = asyncio.run(adapted.aembed_query(TEXTS[0]))
    assert calls == ["aembed_documents", "aembed_query"]
    np.testing.assert_allclose(documents, adapted.embed_documents(TEXTS[:2]), atol=1e-6)
    np.testing.assert_allclose(query, documents[0], atol=1e-5)


def test_full_dim_and_adaptor_object(
    base: ProviderEmbeddings, small_adaptor_dir: Path, minilm_provider
) -> None:
    adaptor = load_adaptor(small_adaptor_dir)
    full = AdaptedEmbeddings(base=base, adaptor=adaptor)  # dim=None: the whole adapted vector
    vectors = np.array(full.embed_documents(TEXTS[:1]))
    assert vectors.shape == (1, 384)
    np.testing.assert_allclose(vectors, adaptor.transform(minilm_provider(TEXTS[:1])), atol=1e-5)


def test_any_dim_up_to_base_dim(base: ProviderEmbeddings, small_adaptor_dir: Path) -> None:
    """Dims outside the trained ones (32, 64, 384) are allowed: each is a prefix of the vector served at the next
    trained dim up (the adaptor serves, per trained dim, its adapted prefix or the rotation's)."""
    for dim, trained in ((1, 32), (50, 64), (383, 384)):
        served = AdaptedEmbeddings(base=base, path=str(small_adaptor_dir), dim=trained).embed_query(TEXTS[1])
        vector = AdaptedEmbeddings(base=base, path=str(small_adaptor_dir), dim=dim).embed_query(TEXTS[1])
        assert len(vector) == dim
        prefix = np.array(served[:dim])
        np.testing.assert_allclose(vector, prefix / np.linalg.norm(prefix), atol=1e-5)


@pytest.mark.parametrize("dim", [0, -3, 385, 2.5, True, "64"])
def test_bad_dim_fails_at_construction(base: ProviderEmbeddings, small_adaptor_dir: Path, dim) -> None:
    with pytest.raises(ValueError, match="dim"):
        AdaptedEmbeddings(base=base, path=str(small_adaptor_dir), dim=dim)


def test_needs_an_adaptor(base: ProviderEmbeddings) -> None:
    with pytest.raises(InputError, match="no adaptor"):
        AdaptedEmbeddings(base=base)


def test_empty_and_blank_input(adapted: AdaptedEmbeddings) -> None:
    assert adapted.embed_documents([]) == []
    assert asyncio.run(adapted.aembed_documents([])) == []
    for call in (
        lambda: adapted.embed_documents(["fine", "   "]),
        lambda: adapted.embed_query(""),
        lambda: asyncio.run(adapted.aembed_query(" \n")),
    ):
        with pytest.raises(InputError, match=r"text \d is blank"):
            call()


class _Table(Embeddings):
    """A base returning ``vectors[text]`` (else ``default``) as they are, under the name ``model_name``."""

    def __init__(self, vectors: dict, model_name: str = "all-MiniLM-L6-v2", default: list | None = None):
        self.vectors, self.model_name, self.default = vectors, model_name, default

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors.get(t, self.default) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_bad_base_vectors_name_the_text(small_adaptor_dir: Path) -> None:
    good = np.random.default_rng(0).standard_normal(384).tolist()
    nan = [*good[:-1], float("nan")]
    path = str(small_adaptor_dir)
    with pytest.raises(InputError, match=r"1 vector\(s\) hold NaN or inf, first at text 1 \('b'\)"):
        AdaptedEmbeddings(base=_Table({"a": good, "b": nan}), path=path).embed_documents(["a", "b"])
    with pytest.raises(InputError, match=r"1 vector\(s\) are all zeros, first at text 0 \('a'\)"):
        AdaptedEmbeddings(base=_Table({"a": [0.0] * 384}), path=path).embed_query("a")
    with pytest.raises(AdaptorMismatchError, match=r"383-d vector for text 1 \('b'\).*takes 384-d"):
        AdaptedEmbeddings(base=_Table({"a": good, "b": good[:383]}), path=path).embed_documents(["a", "b"])
    short = _Table({"a": good})
    short.embed_documents = lambda texts: [good]
    with pytest.raises(InputError, match=r"returned 1 vectors for 2 texts"):
        AdaptedEmbeddings(base=short, path=path).embed_documents(["a", "b"])


def test_base_dim_mismatch_names_both_dims_and_name_warns_once(small_adaptor_dir: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapper = AdaptedEmbeddings(
            base=_Table({}, "other-model-512", [1.0] * 512), path=str(small_adaptor_dir)
        )
        for _ in range(2):
            with pytest.raises(AdaptorMismatchError, match=r"512-d vector for text 0.*takes 384-d"):
                wrapper.embed_query("x")
    names = [w for w in caught if issubclass(w.category, BaseModelWarning)]
    assert len(names) == 1
    assert "'all-MiniLM-L6-v2'" in str(names[0].message) and "'other-model-512'" in str(names[0].message)
    assert names[0].filename == __file__  # points at the caller


def test_aliases_of_the_model_do_not_warn(small_adaptor_dir: Path, minilm_provider) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelWarning)
        for name in ("sentence-transformers/all-MiniLM-L6-v2", minilm_provider.model_path, "unknown"):
            AdaptedEmbeddings(base=_Table({}, name), path=str(small_adaptor_dir))


def test_cache_backed_base_keeps_the_name(small_adaptor_dir: Path, base: ProviderEmbeddings) -> None:
    from langchain_classic.embeddings import CacheBackedEmbeddings
    from langchain_core.stores import InMemoryByteStore

    cached = CacheBackedEmbeddings.from_bytes_store(
        base, InMemoryByteStore(), namespace="minilm", key_encoder="sha256"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelWarning)
        wrapper = AdaptedEmbeddings.from_pretrained(cached, small_adaptor_dir, dim=64)
    np.testing.assert_allclose(
        wrapper.embed_documents(TEXTS[:1]),
        AdaptedEmbeddings(base=base, path=str(small_adaptor_dir), dim=64).embed_documents(TEXTS[:1]),
        atol=1e-6,
    )


@pytest.mark.parametrize("supervised", [False, True])
def test_fit(tmp_path: Path, scifact, precomputed_minilm, supervised: bool) -> None:
    base = ProviderEmbeddings(provider=precomputed_minilm)
    texts = scifact.corpus_texts[:120]
    pairs = None
    if supervised:  # the first query's relevant text is outside the slice: fit() adds it
        pairs = [(q, texts[i]) for i, q in enumerate(scifact.query_texts[:6])] + [
            (scifact.query_texts[0], scifact.corpus_texts[500])
        ]
    wrapper = AdaptedEmbeddings.fit(
        base,
        texts,
        tmp_path / "fitted",
        dims=(32, 384),
        queries=pairs,
        dim=32,
        max_steps=8,
        eval_every=4,
        progress=False,
    )
    adaptor = check_fitted(tmp_path / "fitted", (32, 384), supervised, 121 if supervised else 120, 8)
    vector = wrapper.embed_query(scifact.query_texts[0])
    assert len(vector) == 32
    np.testing.assert_allclose(
        vector, adaptor.transform(precomputed_minilm([scifact.query_texts[0]]), 32)[0], atol=1e-5
    )
    with pytest.raises(InputError, match="already exists"):
        AdaptedEmbeddings.fit(base, texts, tmp_path / "fitted")


def test_fit_rejects_bad_settings(tmp_path: Path, precomputed_minilm, scifact) -> None:
    base = ProviderEmbeddings(provider=precomputed_minilm)
    with pytest.raises(InputError, match="unknown training setting"):
        AdaptedEmbeddings.fit(base, scifact.corpus_texts[:20], tmp_path / "a", max_stepz=3)
    with pytest.raises(InputError, match="at least 2 distinct queries"):
        AdaptedEmbeddings.fit(base, scifact.corpus_texts[:20], tmp_path / "a", queries=[("q", "t")])


def test_example_end_to_end(tmp_path: Path, scifact, small_adaptor_dir: Path) -> None:
    run_example("langchain_rag", scifact, small_adaptor_dir, tmp_path)
    assert any((tmp_path / "langchain-embedding-cache").iterdir())  # base vectors cached by LangChain
