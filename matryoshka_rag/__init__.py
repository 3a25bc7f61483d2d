"""matryoshka-rag: Matryoshka-Adaptor (arXiv 2407.20243) on top of any embedding model.

The public API is importable from here; its modules load on first use so that `matryoshka-rag --help`
does not pay for torch. A name whose module needs an extra that is not installed raises `MissingExtraError`
naming it (``pip install "matryoshka-rag[train]"``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .extras import needs_extra

_EXPORTS = {
    "AdaptorConfig": "adaptor.format",
    "MatryoshkaAdaptor": "adaptor.torch_module",
    "NumpyAdaptor": "adaptor.numpy_forward",
    "MissingExtraError": "extras",
    "AdaptorMismatchError": "errors",
    "InputError": "errors",
    "graded_softmax_loss": "losses",
    "listwise_distillation_loss": "losses",
    "multi_positive_softmax_loss": "losses",
    "pairwise_rank_loss": "losses",
    "pairwise_similarity_loss": "losses",
    "prefix_self_distillation_loss": "losses",
    "reconstruction_loss": "losses",
    "topk_similarity_loss": "losses",
    "CorruptAdaptorError": "adaptor.format",
    "load_adaptor": "adaptor.persistence",
    "save_adaptor": "adaptor.persistence",
    "SupervisedConfig": "training",
    "UnsupervisedConfig": "training",
    "train_supervised": "training",
    "train_unsupervised": "training",
    "EmbeddingCache": "embeddings.cache",
    "SentenceTransformerProvider": "embeddings.providers",
    "CallableProvider": "embeddings.providers",
    "embed_texts": "embeddings.providers",
    "evaluate": "evaluation.beir_eval",
    "estimate_dims": "scoring.recommend",
    "recommend_dim": "scoring.recommend",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'matryoshka_rag' has no attribute {name!r}")
    with needs_extra(f"matryoshka_rag.{name}"):
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .adaptor.format import AdaptorConfig, CorruptAdaptorError
    from .adaptor.numpy_forward import NumpyAdaptor
    from .adaptor.persistence import load_adaptor, save_adaptor
    from .adaptor.torch_module import MatryoshkaAdaptor
    from .embeddings.cache import EmbeddingCache
    from .embeddings.providers import CallableProvider, SentenceTransformerProvider, embed_texts
    from .errors import AdaptorMismatchError, InputError
    from .evaluation.beir_eval import evaluate
    from .extras import MissingExtraError
    from .losses import (
        graded_softmax_loss,
        listwise_distillation_loss,
        multi_positive_softmax_loss,
        pairwise_rank_loss,
        pairwise_similarity_loss,
        prefix_self_distillation_loss,
        reconstruction_loss,
        topk_similarity_loss,
    )
    from .scoring.recommend import estimate_dims, recommend_dim
    from .training import SupervisedConfig, UnsupervisedConfig, train_supervised, train_unsupervised
