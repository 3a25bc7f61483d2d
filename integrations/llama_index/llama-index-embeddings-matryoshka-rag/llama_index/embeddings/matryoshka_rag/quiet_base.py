"""A base LlamaIndex embedding's vectors without its embedding events: the wrapper around it emits one set of
events (callbacks and instrumentation) for each batch, so token counters count the texts once. The base's
``embeddings_cache`` and ``rate_limiter`` still apply, as in its public methods."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding

__all__ = ["aembed_one", "aembed_texts", "embed_one", "embed_texts"]

_COLLECTION = "embeddings"  # the collection BaseEmbedding caches vectors in


def embed_texts(base: BaseEmbedding, texts: list[str]) -> list[Embedding]:
    """``base.get_text_embedding_batch(texts)`` in one batch, without events."""
    if base.rate_limiter is not None:
        base.rate_limiter.acquire()
    if base.embeddings_cache is not None:
        return base._get_text_embeddings_cached(texts)
    return base._get_text_embeddings(texts)


async def aembed_texts(base: BaseEmbedding, texts: list[str]) -> list[Embedding]:
    """Async :func:`embed_texts`."""
    if base.embeddings_cache is not None:
        if base.rate_limiter is not None:
            await base.rate_limiter.async_acquire()
        return await base._aget_text_embeddings_cached(texts)
    return await base._aget_text_embeddings_rate_limited(texts)


def embed_one(base: BaseEmbedding, text: str, query: bool) -> Embedding:
    """``base.get_query_embedding(text)`` (``query``) or ``base.get_text_embedding(text)``, without events."""
    cache = base.embeddings_cache
    if cache is not None:
        cached = cache.get(key=text, collection=_COLLECTION)
        if cached is not None:
            return next(iter(cached.values()))
    if base.rate_limiter is not None:
        base.rate_limiter.acquire()
    vector = base._get_query_embedding(text) if query else base._get_text_embedding(text)
    if cache is not None:
        cache.put(key=text, val={str(uuid.uuid4()): vector}, collection=_COLLECTION)
    return vector


async def aembed_one(base: BaseEmbedding, text: str, query: bool) -> Embedding:
    """Async :func:`embed_one`."""
    cache = base.embeddings_cache
    if cache is not None:
        cached = await cache.aget(key=text, collection=_COLLECTION)
        if cached is not None:
            return next(iter(cached.values()))
    if base.rate_limiter is not None:
        await base.rate_limiter.async_acquire()
    embed: Callable[[str], Awaitable[Embedding]] = (
        base._aget_query_embedding if query else base._aget_text_embedding
    )
    vector = await embed(text)
    if cache is not None:
        await cache.aput(key=text, val={str(uuid.uuid4()): vector}, collection=_COLLECTION)
    return vector
