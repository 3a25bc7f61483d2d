"""LlamaIndex retriever of matryoshka-rag: small-dim Chroma search, exact large-dim rerank."""

from llama_index.retrievers.matryoshka_rag.base import MatryoshkaRetriever, to_chroma_where

__all__ = ["MatryoshkaRetriever", "to_chroma_where"]
