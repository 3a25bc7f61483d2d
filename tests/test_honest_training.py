"""What training records is what it did: the step recorded is the step of the weights kept, each validation
number says which weights it measured, held-out items are held out, and stage two reuses stage one's
neighbour table (in one call, and across the CLI's two). Real SciFact vectors (all-MiniLM-L6-v2, precomputed)
and qrels throughout."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import matryoshka_rag.training.distributed
from matryoshka_rag import (
    InputError,
    SupervisedConfig,
    UnsupervisedConfig,
    train_supervised,
    train_unsupervised,
)
from matryoshka_rag.evaluation.beir_eval import EvalSettings, MethodTrainer, labelled_queries
from matryoshka_rag.training import validation_ndcg
from matryoshka_rag.training.neighbours import knn_table
from matryoshka_rag.training.streaming import HostCorpus
from matryoshka_rag.training.supervised import PRE_REFIT, RETURNED
from matryoshka_rag.training.unsupervised_objective import (
    UnsupervisedObjective,
    neighbour_table,
    unsupervised_objective,
)

FAST = UnsupervisedConfig(max_steps=30, eval_every=10, batch_size=64, holdout=50, patience=100)
DIMS = (32, 384)
CPU = torch.device("cpu")
# a few steps, kept whatever validation says: the returned weights are the trained ones
SHORT_KEPT = SupervisedConfig(
    max_steps=4, eval_every=2, batch_size=32, temperature=0.05, validate_stage=False
)


@pytest.fixture(scope="module")
def labelled(scifact, scifact_embeddings):
    """SciFact's corpus vectors, a stage-one adaptor, and its train queries split 150 / rest."""
    corpus, queries = scifact_embeddings
    vectors, relevance = labelled_queries(scifact, queries, scifact.qrels("train"))
    base = train_unsupervised(corpus, DIMS, FAST, progress=False)
    return corpus, base, (vectors[:150], relevance[:150]), (vectors[150:], relevance[150:])


def test_a_tied_validation_score_records_and_refits_the_step_of_the_weights_kept(labelled):
    """At a learning rate too small to move any ranking every evaluation ties with step 0: the weights kept
    are the start's, so the step recorded is 0 and the refit trains no step."""
    corpus, base, train, validation = labelled
    config = SupervisedConfig(lr=1e-9, max_steps=20, eval_every=10, batch_size=32, temperature=0.05)
    common = {"adaptor": base, "validation": validation, "progress": False}
    kept = train_supervised(corpus, *train, DIMS, replace(config, refit=False), FAST, **common)
    metrics = kept.metadata["metrics"]
    assert [h["step"] for h in metrics["history"]] == [0, 10, 20]
    assert len({h["score"] for h in metrics["history"]}) == 1  # every evaluation ties
    assert kept.fingerprint() == base.fingerprint()  # the weights kept are step 0's
    assert metrics["best_step"] == 0
    refitted = train_supervised(corpus, *train, DIMS, config, FAST, **common)
    assert refitted.metadata["training"]["refit"] is None
    assert refitted.fingerprint() == base.fingerprint()  # no refit: not 20 steps from the start


def test_validation_numbers_name_the_weights_they_measured(labelled):
    """Without a refit the recorded validation nDCG@10 is the returned adaptor's; with one it is the chosen
    run's before the refit (the same run as without), and the refit trains the step count that run chose.
    The stage is kept whatever validation says (`validate_stage=False`): this is about what is recorded."""
    corpus, base, train, validation = labelled
    config = SupervisedConfig(
        max_steps=20, eval_every=10, batch_size=32, temperature=0.05, validate_stage=False
    )
    common = {"adaptor": base, "validation": validation, "progress": False}
    plain = train_supervised(corpus, *train, DIMS, replace(config, refit=False), FAST, **common)
    refitted = train_supervised(corpus, *train, DIMS, config, FAST, **common)
    measured = validation_ndcg(
        plain, torch.from_numpy(corpus), torch.from_numpy(validation[0]), validation[1], DIMS
    )
    assert plain.metadata["metrics"]["weights_measured"] == RETURNED
    assert plain.metadata["metrics"]["validation_ndcg@10"] == pytest.approx(measured, abs=1e-9)
    assert refitted.metadata["metrics"]["weights_measured"] == PRE_REFIT
    assert (
        refitted.metadata["metrics"]["validation_ndcg@10"] == plain.metadata["metrics"]["validation_ndcg@10"]
    )
    chosen = plain.metadata["metrics"]["best_step"]
    assert chosen > 0 and refitted.metadata["training"]["refit"]["steps"] == chosen
    assert refitted.fingerprint() != plain.fingerprint()


def test_held_out_items_are_never_read_by_a_training_step(scifact_vectors):
    """No training anchor has a held-out item as a neighbour, so two epochs of training blocks never hold
    one; a table that links them is refused."""
    vectors = scifact_vectors
    table, _ = neighbour_table(vectors, FAST, CPU)
    objective = unsupervised_objective(vectors, DIMS, FAST, CPU, table)
    held = set(objective.holdout_rows.tolist())
    assert len(held) == 50
    per_epoch = len(objective.train_rows) // FAST.batch_size
    read = set()
    for step in range(2 * per_epoch):
        read |= set(objective.block_rows(objective.train_rows_at(step)).tolist())
    assert not read & held
    assert len(read) > 700  # the blocks did cover the 750 trained items
    plain, _ = knn_table(vectors, FAST.k, "exact")  # every row's neighbours, held-out ones included
    with pytest.raises(ValueError, match="held-out neighbours"):
        UnsupervisedObjective(HostCorpus(vectors, CPU), plain, DIMS, FAST)


@pytest.fixture
def built(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of the corpora the kNN table builder is called on, from here on."""
    calls = []
    original = matryoshka_rag.training.distributed.knn_table

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(matryoshka_rag.training.distributed, "knn_table", counting)
    return calls


def test_stage_two_reuses_stage_one_neighbour_table(labelled, built):
    """`train_supervised` without a stage-one adaptor builds the kNN table once, for both stages."""
    corpus, _, train, _ = labelled
    config = SupervisedConfig(max_steps=2, eval_every=1, batch_size=32, temperature=0.05, refit=False)
    stage_one = UnsupervisedConfig(max_steps=2, eval_every=1, batch_size=64, holdout=50)
    train_supervised(corpus[:400], *_within(train, 400), DIMS, config, stage_one, progress=False)
    assert built == [(400, 384)]


def test_the_cli_trainer_builds_the_table_once_for_both_stages(labelled, built):
    """The CLI's `train` and `eval` (`MethodTrainer`) train stage one, then the supervised stage from it,
    with one kNN table and the same weights as a stage two that builds its own."""
    corpus, _, train, _ = labelled
    stage_one = UnsupervisedConfig(max_steps=10, eval_every=5, batch_size=64, holdout=50)
    settings = EvalSettings(stage_one, SHORT_KEPT, progress=False)
    trainer = MethodTrainer(corpus, DIMS, settings, "all-MiniLM-L6-v2", train)
    supervised = trainer.adaptor("supervised")
    assert built == [(800, 384)]
    assert supervised.metadata["training"]["mode"] == "supervised"
    start = trainer.adaptor("unsupervised")
    rebuilt = train_supervised(corpus, *train, DIMS, SHORT_KEPT, stage_one, adaptor=start, progress=False)
    assert built == [(800, 384), (800, 384)]  # without the table, stage two builds it
    assert rebuilt.fingerprint() == supervised.fingerprint()
    assert rebuilt.metadata["metrics"]["history"] == supervised.metadata["metrics"]["history"]


def test_a_table_without_its_stage_one_adaptor_is_refused(labelled):
    corpus, _, train, _ = labelled
    table = np.zeros((len(corpus), FAST.k), dtype=np.int64)
    with pytest.raises(InputError, match="expected the given stage-one adaptor's neighbour table"):
        train_supervised(corpus, *train, DIMS, SHORT_KEPT, FAST, stage_one_table=table)


def _within(labelled: tuple[np.ndarray, list], n_docs: int) -> tuple[np.ndarray, list]:
    """The queries whose relevant documents are all among the first `n_docs` rows."""
    keep = [i for i, rel in enumerate(labelled[1]) if all(d < n_docs for d in rel)]
    return labelled[0][keep], [labelled[1][i] for i in keep]
