"""Base embedding providers and adapted vectors for any framework.

- `providers`: base models behind one interface; `cache`: their vectors on disk.
- `adapted`: a base provider's vectors through the adaptor, at the dim asked for.
- `chroma_function`: the same as a Chroma ``EmbeddingFunction`` (needs the ``chroma`` extra).
"""
