"""Loss functions on tensors, one per module. Each sums over the Matryoshka dims it is given."""

from .listwise import listwise_distillation_loss
from .multi_positive_softmax import multi_positive_softmax_loss
from .pair import pairwise_similarity_loss
from .rank import pairwise_rank_loss
from .reconstruction import reconstruction_loss
from .self_distillation import prefix_self_distillation_loss
from .softmax_rank import graded_softmax_loss
from .topk import topk_similarity_loss

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
