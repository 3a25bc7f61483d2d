"""Multi-positive softmax ranking: each relevant document against the query's non-relevant candidates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .similarity import prefix_cosine_matrices

_MASKED = -1e4  # logit given to the other relevant documents: they are neither positive nor negative


def multi_positive_softmax_loss(
    queries: torch.Tensor,
    documents: torch.Tensor,
    grades: torch.Tensor,
    dims: Sequence[int],
    temperature: float = 0.05,
) -> torch.Tensor:
    """`sum_m mean_i sum_{p: y_ip > 0} w_ip * -log(e^(s_ip/t) / (e^(s_ip/t) + sum_{n: y_in = 0} e^(s_in/t)))`.

    `s = cos(f(q_i)[:m], f(d)[:m])` and `w_ip = y_ip / sum_j y_ij`. Each relevant document has its own
    softmax against the non-relevant candidates only, so the query's other relevant documents neither
    compete with it (as in a softmax over all candidates, where dozens of positives share one unit of
    mass) nor count as negatives. With one relevant document per query it is the usual softmax
    cross-entropy (InfoNCE).

    Args: as `graded_softmax_loss` (`queries (queries, out_dim)`, `documents (docs, out_dim)` shared by
    all queries, `grades (queries, docs)` with a positive in each row, `dims`, `temperature`).
    """
    relevant = grades > 0
    rows, columns = relevant.nonzero(as_tuple=True)  # the (query, relevant document) pairs: the only terms
    weights = (grades / grades.sum(dim=1, keepdim=True))[rows, columns]
    total = queries.new_zeros(())
    for logits in prefix_cosine_matrices(queries, documents, dims, 1 / temperature):
        negatives = torch.logsumexp(logits.masked_fill(relevant, _MASKED), dim=1)
        # index_select, not negatives[rows]: its backward sums a query's pairs in a fixed order
        pairs = F.softplus(negatives.index_select(0, rows) - logits[rows, columns])
        total = total + (weights * pairs).sum() / len(queries)
    return total
