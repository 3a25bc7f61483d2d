"""Framework habits of the embedding wrappers: LlamaIndex embedding events once per text (callbacks and
instrumentation), the base's cache still used, ``class_name()`` naming the class, and ``dimensions=`` as in
the frameworks' OpenAI embeddings. Bases here are deterministic stand-ins (no model is loaded)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent
from llama_index.core.storage.kvstore import SimpleKVStore

from langchain_matryoshka_rag import AdaptedEmbeddings
from llama_index.embeddings.matryoshka_rag import AdaptedEmbedding, ProviderEmbedding
from llama_index.embeddings.matryoshka_rag.base import load_base_embedding
from matryoshka_rag import load_adaptor
from matryoshka_rag.errors import InputError

TEXTS = ["vitamin d and bones", "statins lower cholesterol", "a third short text"]
WORDS = sum(len(t.split()) for t in TEXTS)


class HashedBase(BaseEmbedding):
    """A 384-d base whose vector is a fixed function of the text; records the texts it embedded."""

    _embedded: list = PrivateAttr(default_factory=list)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", "all-MiniLM-L6-v2")
        super().__init__(**kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "HashedBase"

    def _vector(self, text: str) -> list[float]:
        self._embedded.append(text)
        seed = sum(text.encode()) + len(text)
        return np.random.default_rng(seed).standard_normal(384).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    _get_text_embedding = _get_query_embedding

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    _aget_text_embedding = _aget_query_embedding


class EndEvents(BaseEventHandler):
    """Instrumentation handler collecting the chunks of every `EmbeddingEndEvent`."""

    chunks: list = []

    @classmethod
    def class_name(cls) -> str:
        return "EndEvents"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, EmbeddingEndEvent):
            self.chunks.append(list(event.chunks))


@pytest.fixture
def end_events() -> EndEvents:
    handler = EndEvents(chunks=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


def test_llamaindex_embedding_events_count_each_text_once(
    small_adaptor_dir: Path, end_events: EndEvents
) -> None:
    counter = TokenCountingHandler(tokenizer=str.split)
    callbacks = CallbackManager([counter])  # one manager for both, as Settings.callback_manager gives them
    base = HashedBase(callback_manager=callbacks)
    adapted = AdaptedEmbedding(base=base, path=small_adaptor_dir, dim=32, callback_manager=callbacks)

    vectors = adapted.get_text_embedding_batch(TEXTS)
    adapted.get_query_embedding(TEXTS[0])
    adapted.get_text_embedding(TEXTS[1])
    asyncio.run(adapted.aget_text_embedding_batch(TEXTS))
    asyncio.run(adapted.aget_query_embedding(TEXTS[2]))

    one_each = 2 * WORDS + len(TEXTS[0].split()) + len(TEXTS[1].split()) + len(TEXTS[2].split())
    assert counter.total_embedding_token_count == one_each
    assert end_events.chunks == [TEXTS, [TEXTS[0]], [TEXTS[1]], TEXTS, [TEXTS[2]]]
    expected = load_adaptor(small_adaptor_dir).transform([base._vector(t) for t in TEXTS], 32)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)  # events aside, the same vectors


def test_llamaindex_base_cache_still_applies(small_adaptor_dir: Path) -> None:
    base = HashedBase(embeddings_cache=SimpleKVStore())
    adapted = AdaptedEmbedding(base=base, path=small_adaptor_dir, dim=32)
    first = adapted.get_text_embedding_batch(TEXTS)
    query = adapted.get_query_embedding("a query")
    assert base._embedded == [*TEXTS, "a query"]
    assert adapted.get_text_embedding_batch(TEXTS) == first  # from the base's cache: not embedded again
    assert adapted.get_query_embedding("a query") == query
    assert asyncio.run(adapted.aget_text_embedding_batch(TEXTS)) == first
    assert base._embedded == [*TEXTS, "a query"]


def test_llamaindex_class_names_match_the_classes(small_adaptor_dir: Path) -> None:
    assert AdaptedEmbedding.class_name() == "AdaptedEmbedding"
    assert ProviderEmbedding.class_name() == "ProviderEmbedding"
    adapted = AdaptedEmbedding(base=HashedBase(), path=small_adaptor_dir, dim=32)
    assert adapted.to_dict()["class_name"] == "AdaptedEmbedding"
    assert type(load_base_embedding(adapted.to_dict())) is AdaptedEmbedding


def test_llamaindex_dimensions_is_dim(small_adaptor_dir: Path) -> None:
    adapted = AdaptedEmbedding.from_pretrained(base=HashedBase(), path=small_adaptor_dir, dimensions=64)
    assert adapted.dimensions == 64 and adapted.dim == 64
    assert len(adapted.get_query_embedding("text")) == 64
    assert AdaptedEmbedding(base=HashedBase(), path=small_adaptor_dir, dim=64, dimensions=64).dim == 64
    with pytest.raises(InputError, match="dim=32 and dimensions=64 name the same setting"):
        AdaptedEmbedding(base=HashedBase(), path=small_adaptor_dir, dim=32, dimensions=64)


def test_langchain_dimensions_is_dim(small_adaptor_dir: Path) -> None:
    base = DeterministicFakeEmbedding(size=384)
    adapted = AdaptedEmbeddings(base=base, path=str(small_adaptor_dir), dimensions=64)
    assert adapted.dimensions == 64 and adapted.dim == 64
    assert len(adapted.embed_query("text")) == 64
    assert AdaptedEmbeddings.from_pretrained(base, small_adaptor_dir, dimensions=32).dimensions == 32
    with pytest.raises(InputError, match="dim=32 and dimensions=64 name the same setting"):
        AdaptedEmbeddings(base=base, path=str(small_adaptor_dir), dim=32, dimensions=64)
