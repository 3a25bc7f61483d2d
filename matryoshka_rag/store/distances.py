"""The distance Chroma gives two unit vectors in each HNSW space, from and to their cosine: the store scores
in cosines, Chroma (and the framework stores built on it) in these distances."""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np

__all__ = ["Space", "chroma_distance", "cosine_from_distance"]

Space = Literal["cosine", "ip", "l2"]
Score = TypeVar("Score", float, np.ndarray)

# distance = scale * (1 - cosine) for unit vectors: "cosine" 1 - cos, "ip" 1 - dot, "l2" squared |a - b|^2
_SCALE: dict[str, float] = {"cosine": 1.0, "ip": 1.0, "l2": 2.0}


def chroma_distance(cosine: Score, space: Space) -> Score:
    """Chroma's distance between unit vectors of cosine ``cosine`` (a float or an array) in HNSW ``space``:
    ``1 - cosine`` for "cosine" and "ip", the squared L2 ``2 - 2 cosine`` for "l2"."""
    return _SCALE[space] * (1.0 - cosine)


def cosine_from_distance(distance: Score, space: Space) -> Score:
    """The cosine of unit vectors at Chroma's ``distance`` (a float or an array) in HNSW ``space``: the
    inverse of :func:`chroma_distance`."""
    return 1.0 - distance / _SCALE[space]
