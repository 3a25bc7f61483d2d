"""Training the adaptor, one module per part of the method:

- `config`: the settings (`UnsupervisedConfig`, `SupervisedConfig`, the shared `OptimiserConfig`);
- `schedule`: which items each step samples; `loop`: Adam steps, early stopping and checkpoints;
- `unsupervised_objective` and `unsupervised`: stage one, on corpus embeddings alone;
- `ranking`, `labelled` and `supervised`: stage two, on labelled queries (temperature search, refit);
- `torchrun`: the data-parallel entry point (`torchrun ... -m matryoshka_rag.training.torchrun`).

Both stages run on CUDA when present (bf16 autocast) and on CPU otherwise, are deterministic for a fixed seed
(each step's sample is a function of (seed, step)), stop early on a validation score, and resume from a
checkpoint folder.
"""

from .config import OptimiserConfig, Relevance, SupervisedConfig, UnsupervisedConfig, training_configs
from .labelled import split_validation, validation_ndcg
from .supervised import train_supervised
from .unsupervised import train_unsupervised

__all__ = [
    "OptimiserConfig",
    "Relevance",
    "SupervisedConfig",
    "UnsupervisedConfig",
    "split_validation",
    "train_supervised",
    "train_unsupervised",
    "training_configs",
    "validation_ndcg",
]
