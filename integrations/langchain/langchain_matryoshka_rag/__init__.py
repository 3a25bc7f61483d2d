"""LangChain integration of matryoshka-rag: Matryoshka-adapted, truncated embeddings over any base model."""

from langchain_matryoshka_rag.embeddings import AdaptedEmbeddings, ProviderEmbeddings
from langchain_matryoshka_rag.retrievers import MatryoshkaRetriever

__all__ = ["AdaptedEmbeddings", "MatryoshkaRetriever", "ProviderEmbeddings"]
