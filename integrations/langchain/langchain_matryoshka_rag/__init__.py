"""LangChain integration of matryoshka-rag: Matryoshka-adapted embeddings and a vector store."""

from langchain_matryoshka_rag.embeddings import AdaptedEmbeddings, ProviderEmbeddings
from langchain_matryoshka_rag.vectorstores import MatryoshkaVectorStore

__all__ = ["AdaptedEmbeddings", "MatryoshkaVectorStore", "ProviderEmbeddings"]
