"""Former home of the Chroma embedding function; it lives in `matryoshka_rag.embeddings`."""

from .embeddings.chroma_function import *  # noqa: F403
