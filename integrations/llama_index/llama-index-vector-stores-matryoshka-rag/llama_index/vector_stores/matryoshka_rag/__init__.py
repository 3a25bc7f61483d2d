"""LlamaIndex vector store of matryoshka-rag: a Chroma ``MatryoshkaStore`` behind ``BasePydanticVectorStore``."""

from llama_index.vector_stores.matryoshka_rag.base import (
    MatryoshkaQueryResult,
    MatryoshkaVectorStore,
    NodeScore,
)
from llama_index.vector_stores.matryoshka_rag.filters import to_chroma_where

__all__ = ["MatryoshkaQueryResult", "MatryoshkaVectorStore", "NodeScore", "to_chroma_where"]
