"""The frameworks' own embedding classes as the base: ``langchain-huggingface``'s ``HuggingFaceEmbeddings`` and
``llama-index-embeddings-huggingface``'s ``HuggingFaceEmbedding`` over the bundled all-MiniLM-L6-v2, and the
OpenAI clients (``langchain-openai``'s ``OpenAIEmbeddings``, ``llama-index-embeddings-openai``'s
``OpenAIEmbedding``) against a local OpenAI-compatible server serving that model's vectors
(``tests/openai_server.py``): the wrappers' vectors, both stores on a SciFact slice, batching, retries, base64
and float encodings, and the base-model and adaptor checks."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import numpy as np
import openai
import pytest
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_openai import OpenAIEmbeddings
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.embeddings.openai import OpenAIEmbedding

from langchain_matryoshka_rag import AdaptedEmbeddings, MatryoshkaVectorStore
from llama_index.embeddings.matryoshka_rag import AdaptedEmbedding
from llama_index.vector_stores.matryoshka_rag import MatryoshkaVectorStore as LlamaMatryoshkaVectorStore
from matryoshka_rag import UnsupervisedConfig, save_adaptor, train_unsupervised
from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from matryoshka_rag.embeddings.adapted import BaseModelWarning
from matryoshka_rag.errors import AdaptorMismatchError
from tests.openai_server import OpenAIEmbeddingsServer

MODEL = "all-MiniLM-L6-v2"
BATCH = 4  # texts per request the OpenAI clients are given, so that a slice takes several
QUESTIONS = 4  # SciFact test questions asked of the stores
DISTRACTORS = 12  # documents beside their relevant ones
CLAIMS = 10  # short SciFact texts (claims) the wrappers and clients embed


@pytest.fixture
def server(minilm_provider):
    """A fresh local OpenAI embeddings server (its own request log) serving the bundled model."""
    server = OpenAIEmbeddingsServer(minilm_provider).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slice_(scifact):
    """The relevant documents of the first SciFact test questions, among distractors: (ids, texts, questions,
    relevant ids of each question)."""
    qrels = scifact.qrels("test")
    asked = [q for q in scifact.query_ids if q in qrels][:QUESTIONS]
    relevant = [set(qrels[q]) for q in asked]
    wanted = set().union(*relevant)
    distractors = [d for d in scifact.corpus_ids if d not in wanted][:DISTRACTORS]
    ids = [d for d in scifact.corpus_ids if d in wanted] + distractors
    text_of = dict(zip(scifact.corpus_ids, scifact.corpus_texts))
    question_of = dict(zip(scifact.query_ids, scifact.query_texts))
    return ids, [text_of[d] for d in ids], [question_of[q] for q in asked], relevant


@pytest.fixture(scope="module")
def claims(scifact) -> list[str]:
    """Short real texts (SciFact claims): the model's cost is per token, and these are a sentence each."""
    return scifact.query_texts[:CLAIMS]


def langchain_openai(server: OpenAIEmbeddingsServer, model: str = MODEL, **kwargs) -> OpenAIEmbeddings:
    """LangChain's OpenAI client on ``server``, ``BATCH`` texts a request."""
    return OpenAIEmbeddings(
        model=model,
        base_url=server.url,
        api_key="test",
        chunk_size=BATCH,
        check_embedding_ctx_length=False,  # send texts, not tiktoken ids (its encodings download)
        **kwargs,
    )


def llama_openai(server: OpenAIEmbeddingsServer, **kwargs) -> OpenAIEmbedding:
    """LlamaIndex's OpenAI client on ``server``, ``BATCH`` texts a request; ``model_name`` names a model
    outside OpenAI's own (``model=`` takes only those)."""
    kwargs = {"model_name": MODEL, "embed_batch_size": BATCH, "max_retries": 2, **kwargs}
    return OpenAIEmbedding(api_base=server.url, api_key="test", **kwargs)


@pytest.fixture(scope="module")
def langchain_huggingface(minilm_provider) -> HuggingFaceEmbeddings:
    """LangChain's HuggingFaceEmbeddings over the bundled model's folder (loaded once)."""
    return HuggingFaceEmbeddings(
        model_name=minilm_provider.model_path, model_kwargs={"device": "cpu", "local_files_only": True}
    )


@pytest.fixture(scope="module")
def llama_huggingface(minilm_provider) -> HuggingFaceEmbedding:
    """LlamaIndex's HuggingFaceEmbedding over the bundled model's folder (loaded once)."""
    return HuggingFaceEmbedding(model_name=minilm_provider.model_path, device="cpu", embed_batch_size=BATCH)


@pytest.fixture(params=["huggingface", "openai"])
def kind(request) -> str:
    """Which real provider the test's bases are: the model in-process, or the OpenAI client over HTTP."""
    return request.param


@pytest.fixture
def langchain_base(kind, request) -> HuggingFaceEmbeddings | OpenAIEmbeddings:
    if kind == "openai":
        return langchain_openai(request.getfixturevalue("server"))
    return request.getfixturevalue("langchain_huggingface")


@pytest.fixture
def llama_base(kind, request) -> HuggingFaceEmbedding | OpenAIEmbedding:
    if kind == "openai":
        return llama_openai(request.getfixturevalue("server"))
    return request.getfixturevalue("llama_huggingface")


def _quiet(make):
    """``make()`` with BaseModelWarning an error: the real class's model name is the adaptor's base model."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelWarning)
        return make()


def _top1_relevant(found: list[str], relevant: list[set[str]]) -> float:
    return float(np.mean([doc in wanted for doc, wanted in zip(found, relevant, strict=True)]))


def test_providers_give_the_bundled_models_vectors(
    langchain_base, llama_base, minilm_provider, claims
) -> None:
    expected = minilm_provider(claims)
    np.testing.assert_allclose(langchain_base.embed_documents(claims), expected, atol=1e-5)
    np.testing.assert_allclose(llama_base.get_text_embedding_batch(claims), expected, atol=1e-5)
    np.testing.assert_allclose(langchain_base.embed_query(claims[0]), expected[0], atol=1e-5)
    np.testing.assert_allclose(llama_base.get_query_embedding(claims[0]), expected[0], atol=1e-5)


def test_langchain_wrapper_is_the_adaptor_over_the_provider(
    langchain_base, small_adaptor_dir, claims
) -> None:
    adaptor = NumpyAdaptor.from_folder(small_adaptor_dir)
    wrapper = _quiet(lambda: AdaptedEmbeddings.from_pretrained(langchain_base, small_adaptor_dir, dim=64))
    base = np.array(langchain_base.embed_documents(claims))
    np.testing.assert_allclose(wrapper.embed_documents(claims), adaptor.transform(base, 64), atol=1e-5)
    np.testing.assert_allclose(
        asyncio.run(wrapper.aembed_documents(claims)), adaptor.transform(base, 64), atol=1e-5
    )
    query = np.array([langchain_base.embed_query(claims[0])])
    np.testing.assert_allclose(wrapper.embed_query(claims[0]), adaptor.transform(query, 64)[0], atol=1e-5)


def test_llama_wrapper_is_the_adaptor_over_the_provider(llama_base, small_adaptor_dir, claims) -> None:
    adaptor = NumpyAdaptor.from_folder(small_adaptor_dir)
    wrapper = _quiet(lambda: AdaptedEmbedding.from_pretrained(llama_base, small_adaptor_dir, dim=64))
    assert wrapper.embed_batch_size == BATCH  # the base's batches
    base = np.array(llama_base.get_text_embedding_batch(claims))
    np.testing.assert_allclose(
        wrapper.get_text_embedding_batch(claims), adaptor.transform(base, 64), atol=1e-5
    )
    np.testing.assert_allclose(
        asyncio.run(wrapper.aget_text_embedding_batch(claims)), adaptor.transform(base, 64), atol=1e-5
    )
    query = np.array([llama_base.get_query_embedding(claims[0])])
    np.testing.assert_allclose(
        wrapper.get_query_embedding(claims[0]), adaptor.transform(query, 64)[0], atol=1e-5
    )


def test_langchain_store_answers_real_questions(langchain_base, small_adaptor_dir, slice_, tmp_path) -> None:
    ids, texts, questions, relevant = slice_
    store = _quiet(
        lambda: MatryoshkaVectorStore(
            f"t{uuid.uuid4().hex[:12]}",
            langchain_base,
            persist_directory=str(tmp_path / "db"),
            adaptor=small_adaptor_dir,
            small_dim=64,
        )
    )
    assert store.add_texts(texts, ids=ids) == ids
    found = [store.similarity_search(question, k=1)[0].id for question in questions]
    assert _top1_relevant(found, relevant) >= 0.75


def test_llama_store_answers_real_questions(llama_base, small_adaptor_dir, slice_, tmp_path) -> None:
    ids, texts, questions, relevant = slice_
    store = LlamaMatryoshkaVectorStore(
        small_adaptor_dir, f"t{uuid.uuid4().hex[:12]}", persist_dir=str(tmp_path)
    )
    index = VectorStoreIndex(
        [TextNode(id_=i, text=t) for i, t in zip(ids, texts)],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=llama_base,
    )
    retriever = index.as_retriever(similarity_top_k=1)
    found = [retriever.retrieve(question)[0].node.node_id for question in questions]
    assert _top1_relevant(found, relevant) >= 0.75


def _succeeded(server: OpenAIEmbeddingsServer) -> list[tuple[str, ...]]:
    return [r.texts for r in server.requests if r.status == 200]


def test_langchain_openai_client_batches_and_retries(server, minilm_provider, claims) -> None:
    base = langchain_openai(server)
    server.fail(1, 500)
    server.fail(1, 429)
    vectors = base.embed_documents(claims)
    np.testing.assert_allclose(vectors, minilm_provider(claims), atol=1e-5)
    assert [r.status for r in server.requests] == [500, 429, 200, 200, 200]
    assert server.requests[0].texts == server.requests[1].texts == tuple(claims[:4])  # the same batch again
    assert _succeeded(server) == [tuple(claims[:4]), tuple(claims[4:8]), tuple(claims[8:10])]
    assert {r.encoding_format for r in server.requests} == {"base64"}  # the client's default
    floats = base.model_copy(update={"model_kwargs": {"encoding_format": "float"}})
    np.testing.assert_allclose(floats.embed_documents(claims[:2]), vectors[:2], atol=1e-6)
    assert server.requests[-1].encoding_format == "float"
    server.fail(3, 500)  # past max_retries (2): the client gives up
    with pytest.raises(openai.InternalServerError):
        base.embed_query("x")


def test_llama_openai_client_batches_and_retries(server, minilm_provider, claims) -> None:
    base = llama_openai(server)
    server.fail(1, 500)
    vectors = base.get_text_embedding_batch(claims)
    np.testing.assert_allclose(vectors, minilm_provider(claims), atol=1e-5)
    assert [r.status for r in server.requests] == [500, 200, 200, 200]
    assert server.requests[0].texts == server.requests[1].texts
    assert _succeeded(server) == [tuple(claims[:4]), tuple(claims[4:8]), tuple(claims[8:10])]
    floats = llama_openai(server, additional_kwargs={"encoding_format": "float"})
    np.testing.assert_allclose(floats.get_text_embedding_batch(claims[:2]), vectors[:2], atol=1e-6)
    assert server.requests[-1].encoding_format == "float"


def test_another_model_name_warns_and_the_server_refuses_it(server, small_adaptor_dir) -> None:
    other = "text-embedding-3-small"
    langchain_base = langchain_openai(server, model=other)
    llama_base = OpenAIEmbedding(model=other, api_base=server.url, api_key="test")
    for make in (
        lambda: AdaptedEmbeddings.from_pretrained(langchain_base, small_adaptor_dir, dim=64),
        lambda: AdaptedEmbedding.from_pretrained(llama_base, small_adaptor_dir, dim=64),
        lambda: MatryoshkaVectorStore("other", langchain_base, adaptor=small_adaptor_dir),
    ):
        with pytest.warns(BaseModelWarning, match=f"trained on vectors of '{MODEL}'.*base model '{other}'"):
            make()
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        langchain_base.embed_query("x")


def test_llama_round_trip_rebuilds_the_openai_client(server, small_adaptor_dir) -> None:
    adapted = AdaptedEmbedding.from_pretrained(llama_openai(server), small_adaptor_dir, dim=64)
    rebuilt = AdaptedEmbedding.from_json(adapted.to_json())  # the base rebuilt from its own dict
    assert isinstance(rebuilt.base, OpenAIEmbedding) and rebuilt.base.api_base == server.url
    assert rebuilt.base.model_name == MODEL and rebuilt.to_dict() == adapted.to_dict()
    np.testing.assert_allclose(
        rebuilt.get_query_embedding("vitamin D"), adapted.get_query_embedding("vitamin D"), atol=1e-6
    )
    assert [r.status for r in server.requests] == [200, 200]


def test_llama_dict_with_another_adaptor_is_refused(
    llama_base, small_adaptor_dir, scifact_vectors, tmp_path
) -> None:
    adapted = AdaptedEmbedding.from_pretrained(llama_base, small_adaptor_dir, dim=64)
    other = train_unsupervised(
        scifact_vectors[:200], (32, 384), UnsupervisedConfig(max_steps=2, seed=1), MODEL, progress=False
    )
    data = {**adapted.to_dict(), "path": str(save_adaptor(other, tmp_path / "other"))}
    with pytest.raises(AdaptorMismatchError, match="not the one this embedding was made with"):
        AdaptedEmbedding.from_dict(data, base=llama_base)
