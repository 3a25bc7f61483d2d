"""Loss functions on tensors, one per module. Each sums over the Matryoshka dims it is given."""

from .listwise import listwise_distillation_loss
from .pair import pairwise_similarity_loss
from .rank import pairwise_rank_loss
from .reconstruction import reconstruction_loss
from .softmax_rank import graded_softmax_loss
from .topk import topk_similarity_loss

__all__ = [
    "graded_softmax_loss",
    "listwise_distillation_loss",
    "pairwise_rank_loss",
    "pairwise_similarity_loss",
    "reconstruction_loss",
    "topk_similarity_loss",
]
