"""Loss functions on tensors, one per module named after it. Each sums over the Matryoshka dims it is given."""

from .graded_softmax_loss import graded_softmax_loss
from .listwise_distillation_loss import listwise_distillation_loss
from .multi_positive_softmax_loss import multi_positive_softmax_loss
from .pairwise_rank_loss import pairwise_rank_loss
from .pairwise_similarity_loss import pairwise_similarity_loss
from .prefix_self_distillation_loss import prefix_self_distillation_loss
from .reconstruction_loss import reconstruction_loss
from .topk_similarity_loss import topk_similarity_loss

__all__ = [
    "graded_softmax_loss",
    "listwise_distillation_loss",
    "multi_positive_softmax_loss",
    "pairwise_rank_loss",
    "pairwise_similarity_loss",
    "prefix_self_distillation_loss",
    "reconstruction_loss",
    "topk_similarity_loss",
]
