"""The training step's shortcuts compute what the plain computation does: each distinct corpus row of an
unsupervised block is adapted once, and a supervised step adapts the corpus once for the ranking loss and the
regulariser; and a step repeats bitwise with two threads. Real SciFact slice vectors (all-MiniLM-L6-v2,
precomputed) and qrels."""

import pytest
import torch

from matryoshka_rag import SupervisedConfig, UnsupervisedConfig
from matryoshka_rag.evaluation.beir_eval import labelled_queries
from matryoshka_rag.training.ranking import RankingObjective
from matryoshka_rag.training.supervised import supervised_loss
from matryoshka_rag.training.unsupervised import new_adaptor
from matryoshka_rag.training.unsupervised_objective import (
    neighbour_table,
    unsupervised_loss,
    unsupervised_objective,
)

CONFIG = UnsupervisedConfig(batch_size=128, holdout=50)
DIMS = (32, 128, 384)
CPU = torch.device("cpu")


def trained_a_little(corpus, config: UnsupervisedConfig):
    """An adaptor whose MLP is not zero (its last layer starts at zero: every shortcut would agree there)."""
    adaptor = new_adaptor(corpus, DIMS, config, "all-MiniLM-L6-v2")
    with torch.no_grad():
        for parameter in adaptor.mlp.parameters():
            parameter.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(parameter.numel()))
    return adaptor


def loss_and_gradients(adaptor, loss: torch.Tensor) -> list[torch.Tensor]:
    adaptor.zero_grad()
    loss.backward()
    return [loss.detach(), *(parameter.grad.clone() for parameter in adaptor.mlp.parameters())]


def test_a_block_adapts_each_distinct_row_once_with_the_same_loss(scifact_embeddings):
    corpus = scifact_embeddings[0]
    table, _ = neighbour_table(corpus, CONFIG, CPU)
    objective = unsupervised_objective(corpus, DIMS, CONFIG, CPU, table)
    adaptor = trained_a_little(corpus, CONFIG)
    rows = objective.train_rows_at(3)
    distinct, expand = objective.distinct_rows(rows)
    every = objective.block_rows(rows)
    assert len(distinct) < len(every)  # neighbours repeat across a batch of a small corpus
    assert (distinct[expand] == every).all()
    seen = []

    def counting(block: torch.Tensor) -> torch.Tensor:
        seen.append(len(block))
        return adaptor(block)

    shortcut = loss_and_gradients(adaptor, objective.loss_at(adaptor, 3, model=counting))
    plain = loss_and_gradients(
        adaptor,
        unsupervised_loss(adaptor, adaptor, objective.corpus.gather(every), len(rows), DIMS, CONFIG),
    )
    assert seen == [len(distinct)]
    for got, expected in zip(shortcut, plain):
        torch.testing.assert_close(got, expected)
    objective.corpus.close()


@pytest.fixture
def supervised_objectives(scifact, scifact_embeddings):
    """The slice's ranking objective on its training queries (temperature 0.05) and its regulariser."""
    corpus, queries = scifact_embeddings
    vectors, relevance = labelled_queries(scifact, queries, scifact.qrels("train"))
    table, _ = neighbour_table(corpus, CONFIG, CPU)
    regulariser = unsupervised_objective(corpus, DIMS, CONFIG, CPU, table)
    ranking = RankingObjective(
        torch.from_numpy(corpus),
        torch.from_numpy(vectors),
        relevance,
        SupervisedConfig(temperature=0.05),
        DIMS,
    )
    yield ranking, regulariser
    regulariser.corpus.close()


def test_a_supervised_step_adapts_the_corpus_once_with_the_same_loss(supervised_objectives, scifact_vectors):
    ranking, regulariser = supervised_objectives
    assert ranking.ranks_whole_corpus  # 800 documents, under max_candidates
    adaptor = trained_a_little(scifact_vectors, CONFIG)
    shortcut = loss_and_gradients(adaptor, supervised_loss(ranking, regulariser, 0.5, adaptor, 2))
    plain = loss_and_gradients(adaptor, ranking.loss(adaptor, 2) + 0.5 * regulariser.loss_at(adaptor, 2, 1))
    for got, expected in zip(shortcut, plain):
        torch.testing.assert_close(got, expected)


def test_a_step_is_bitwise_repeatable_with_two_threads(supervised_objectives, scifact_vectors):
    """The same supervised step (ranking loss plus the regulariser's unsupervised block, both reading rows
    repeated within a step) gives bitwise the same loss and gradients every time with two threads: the sums
    of a repeated row's gradients have a fixed order."""
    ranking, regulariser = supervised_objectives
    adaptor = trained_a_little(scifact_vectors, CONFIG)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        steps = [
            loss_and_gradients(adaptor, supervised_loss(ranking, regulariser, 0.5, adaptor, 2))
            for _ in range(8)
        ]
    finally:
        torch.set_num_threads(threads)
    for again in steps[1:]:
        assert all(torch.equal(got, first) for got, first in zip(again, steps[0]))
