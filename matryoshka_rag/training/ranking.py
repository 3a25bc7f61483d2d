"""The supervised ranking objective: per step, a batch of labelled queries, their candidate documents
(the corpus, or positives + hard and random negatives) and the chosen ranking loss over the prefixes."""

from __future__ import annotations

import torch

from ..adaptor.torch_module import MatryoshkaAdaptor
from ..losses import (
    graded_softmax_loss,
    multi_positive_softmax_loss,
    pairwise_rank_loss,
    prefix_self_distillation_loss,
)
from .config import Relevance, SupervisedConfig
from .neighbours import exact_search
from .schedule import batch_positions


def adapt_all(adaptor: MatryoshkaAdaptor, embeddings: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """`adaptor(embeddings)` `(n, dim)`, `batch_size` rows at a time."""
    return torch.cat([adaptor(embeddings[i : i + batch_size]) for i in range(0, len(embeddings), batch_size)])


class RankingObjective:
    """Sampling and ranking loss of the supervised stage on `queries (q, dim)` with `relevance` (per query
    `{corpus row: grade}`), over `corpus (n, dim)` on the training device.

    Hard negatives are each query's top base-model results that are not relevant (found once, here)."""

    def __init__(
        self,
        corpus: torch.Tensor,
        queries: torch.Tensor,
        relevance: Relevance,
        config: SupervisedConfig,
        dims: tuple[int, ...],
    ) -> None:
        self.corpus, self.queries, self.relevance, self.config, self.dims = (
            corpus,
            queries,
            relevance,
            config,
            dims,
        )
        (self.temperature,) = config.temperatures  # a run trains at one temperature
        depth = min(config.hard_negatives + max(len(r) for r in relevance), len(corpus))
        top = exact_search(queries, corpus, depth)[1].tolist()
        self.hard = [
            [d for d in row if d not in rel][: config.hard_negatives] for row, rel in zip(top, relevance)
        ]

    def _generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 7_919 + step)

    @property
    def ranks_whole_corpus(self) -> bool:
        """Whether every step's candidates are the whole corpus (a softmax objective on a corpus of at most
        `max_candidates` documents): then `loss` takes the adapted corpus."""
        return self.config.objective != "pairwise" and len(self.corpus) <= self.config.max_candidates

    def loss(
        self, adaptor: MatryoshkaAdaptor, step: int, adapted_corpus: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The ranking loss on query batch number `step` (a scalar); `adapted_corpus` is `f(corpus)` `(n,
        out_dim)` when the step ranks the whole corpus (`ranks_whole_corpus`), computed once for the step."""
        config = self.config
        batch = batch_positions(len(self.queries), config.batch_size, config.seed, step).tolist()
        adapted_queries = adaptor(self.queries[batch])
        if config.objective != "pairwise":
            return self._softmax(adaptor, adapted_queries, batch, self._generator(step), adapted_corpus)
        return self._pairwise(adaptor, adapted_queries, batch, self._generator(step))

    def _softmax(
        self,
        adaptor: MatryoshkaAdaptor,
        adapted_queries: torch.Tensor,
        batch: list[int],
        generator: torch.Generator,
        adapted_corpus: torch.Tensor | None,
    ) -> torch.Tensor:
        config, n = self.config, len(self.corpus)
        if self.ranks_whole_corpus:
            candidates = torch.arange(n)
        else:
            chosen = {d for q in batch for d in (*self.relevance[q], *self.hard[q])}
            extra = torch.randperm(n, generator=generator)[: max(config.max_candidates - len(chosen), 0)]
            candidates = torch.tensor(sorted(chosen.union(extra.tolist())))
        position = {int(d): i for i, d in enumerate(candidates.tolist())}
        grades = torch.zeros((len(batch), len(candidates)), device=self.corpus.device)
        for row, q in enumerate(batch):
            for doc, grade in self.relevance[q].items():
                grades[row, position[doc]] = float(grade)
        documents = (
            adapted_corpus
            if adapted_corpus is not None
            else adapt_all(adaptor, self.corpus[candidates.to(self.corpus.device)])
        )
        rank = multi_positive_softmax_loss if config.objective == "multi-positive" else graded_softmax_loss
        loss = rank(adapted_queries, documents, grades, self.dims, self.temperature)
        if config.self_distillation:
            distilled = prefix_self_distillation_loss(adapted_queries, documents, self.dims, self.temperature)
            loss = loss + config.self_distillation * distilled
        return loss

    def _pairwise(
        self,
        adaptor: MatryoshkaAdaptor,
        adapted_queries: torch.Tensor,
        batch: list[int],
        generator: torch.Generator,
    ) -> torch.Tensor:
        config, n = self.config, len(self.corpus)
        lists, grade_lists = [], []
        for q in batch:
            positives = list(self.relevance[q])
            if len(positives) > config.max_positives:
                keep = torch.randperm(len(positives), generator=generator)[: config.max_positives].tolist()
                positives = [positives[i] for i in keep]
            randoms = torch.randint(n, (config.random_negatives,), generator=generator).tolist()
            negatives = [d for d in (*self.hard[q], *randoms) if d not in self.relevance[q]]
            lists.append(positives + negatives)
            grade_lists.append([float(self.relevance[q][d]) for d in positives] + [0.0] * len(negatives))
        width = max(len(docs) for docs in lists)
        device = self.corpus.device
        index = torch.zeros((len(batch), width), dtype=torch.int64)
        grades = torch.zeros((len(batch), width))
        mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, (docs, doc_grades) in enumerate(zip(lists, grade_lists)):
            index[row, : len(docs)] = torch.tensor(docs)
            grades[row, : len(docs)] = torch.tensor(doc_grades)
            mask[row, : len(docs)] = True
        documents = adaptor(self.corpus[index.to(device).reshape(-1)]).reshape(len(batch), width, -1)
        return pairwise_rank_loss(adapted_queries, documents, grades.to(device), mask.to(device), self.dims)
