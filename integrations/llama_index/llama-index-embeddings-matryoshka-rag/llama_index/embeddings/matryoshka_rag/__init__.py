"""LlamaIndex integration of matryoshka-rag: Matryoshka-adapted, truncated embeddings over any base model."""

from llama_index.embeddings.matryoshka_rag.base import AdaptedEmbedding, ProviderEmbedding

__all__ = ["AdaptedEmbedding", "ProviderEmbedding"]
