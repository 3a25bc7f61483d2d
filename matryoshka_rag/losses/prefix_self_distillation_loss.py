"""Prefix self-distillation: each prefix ranks a query's candidates like the full adapted vector does."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .similarity import prefix_cosine_matrices


def prefix_self_distillation_loss(
    queries: torch.Tensor,
    documents: torch.Tensor,
    dims: Sequence[int],
    temperature: float = 0.05,
) -> torch.Tensor:
    """`sum_{m < out_dim} mean_i KL(softmax(cos(f(q_i), f(D)) / t) || softmax(cos(f(q_i)[:m], f(D)[:m]) / t))`.

    The teacher is the full adapted vector, detached: the prefixes learn its whole ranking of the
    candidates, a dense target that carries what the supervised full-dim ranking learnt beyond the
    sparse relevance labels. Dims equal to the full dim add nothing and are skipped.

    Args:
        queries: adapted queries `(queries, out_dim)`.
        documents: adapted candidate documents shared by all queries `(docs, out_dim)`.
        dims: Matryoshka dims `m`.
        temperature: softmax temperature on cosines (teacher and prefixes).
    """
    out_dim = queries.shape[1]
    prefixes = [m for m in dims if m < out_dim]
    *students, full = prefix_cosine_matrices(queries, documents, [*prefixes, out_dim], 1 / temperature)
    teacher = F.log_softmax(full.detach(), dim=1)
    total = queries.new_zeros(())
    for logits in students:
        student = F.log_softmax(logits, dim=1)
        total = total + F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return total
