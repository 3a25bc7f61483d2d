"""matryoshka-rag: Matryoshka-Adaptor (arXiv 2407.20243) on top of any embedding model."""

from .adaptor import AdaptorConfig, MatryoshkaAdaptor
from .errors import AdaptorMismatchError, InputError
from .losses import (
    graded_softmax_loss,
    listwise_distillation_loss,
    pairwise_rank_loss,
    pairwise_similarity_loss,
    reconstruction_loss,
    topk_similarity_loss,
)
from .persistence import CorruptAdaptorError, load_adaptor, save_adaptor
from .trainer import SupervisedConfig, UnsupervisedConfig, train_supervised, train_unsupervised

__all__ = [
    "AdaptorConfig",
    "AdaptorMismatchError",
    "CorruptAdaptorError",
    "InputError",
    "MatryoshkaAdaptor",
    "SupervisedConfig",
    "UnsupervisedConfig",
    "graded_softmax_loss",
    "listwise_distillation_loss",
    "load_adaptor",
    "pairwise_rank_loss",
    "pairwise_similarity_loss",
    "reconstruction_loss",
    "save_adaptor",
    "topk_similarity_loss",
    "train_supervised",
    "train_unsupervised",
]
