"""Former home of the training code, kept so that old imports work: it lives in `matryoshka_rag.training`."""

from .training import SupervisedConfig, UnsupervisedConfig, train_supervised, train_unsupervised

__all__ = ["SupervisedConfig", "UnsupervisedConfig", "train_supervised", "train_unsupervised"]
