"""nDCG@10 by dim on a BEIR dataset, for the adaptor and its baselines (`beir_eval`)."""

from .beir_eval import evaluate

__all__ = ["evaluate"]
