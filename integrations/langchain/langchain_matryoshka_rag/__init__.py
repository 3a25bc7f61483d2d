"""LangChain integration of matryoshka-rag: Matryoshka-adapted embeddings, a retriever and a vector store."""

from langchain_matryoshka_rag.embeddings import AdaptedEmbeddings, ProviderEmbeddings
from langchain_matryoshka_rag.retrievers import MatryoshkaRetriever
from langchain_matryoshka_rag.vectorstores import MatryoshkaVectorStore

__all__ = ["AdaptedEmbeddings", "MatryoshkaRetriever", "MatryoshkaVectorStore", "ProviderEmbeddings"]
