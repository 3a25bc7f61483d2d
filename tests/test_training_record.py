"""What `metadata["training"]` records is the adaptor returned: a supervised stage that validation drops returns
stage one's adaptor, recorded as unsupervised (the attempt and its verdict kept beside), so a store reranks
with the base vectors as for any unsupervised adaptor. Real SciFact vectors (all-MiniLM-L6-v2) and qrels."""

import pytest

from matryoshka_rag import SupervisedConfig, UnsupervisedConfig, train_supervised, train_unsupervised
from matryoshka_rag.evaluation.beir_eval import labelled_queries
from matryoshka_rag.store import MatryoshkaStore
from matryoshka_rag.training.supervised import DROPPED

DIMS = (32, 384)
FAST = UnsupervisedConfig(max_steps=10, eval_every=5, batch_size=64, holdout=50)
# a learning rate too small to move any ranking: validation cannot see the stage beat its start
STILL = SupervisedConfig(lr=1e-9, max_steps=4, eval_every=2, batch_size=32, temperature=0.05)


@pytest.fixture(scope="module")
def labelled(scifact, scifact_embeddings):
    """The slice's corpus vectors `(800, 384)`, a stage-one adaptor, and its train queries with relevance."""
    corpus, queries = scifact_embeddings
    vectors, relevance = labelled_queries(scifact, queries, scifact.qrels("train"))
    return corpus, train_unsupervised(corpus, DIMS, FAST, progress=False), vectors, relevance


def large_vectors(adaptor, folder) -> str:
    """The rerank vectors a new store picks for `adaptor` by default ("base" or "adapted")."""
    return MatryoshkaStore("docs", adaptor, path=folder, small_dim=32).large_vectors


def test_a_stage_validation_drops_is_recorded_as_the_unsupervised_adaptor_it_returns(labelled, tmp_path):
    corpus, stage_one, vectors, relevance = labelled
    adaptor = train_supervised(
        corpus, vectors, relevance, DIMS, STILL, FAST, adaptor=stage_one, progress=False
    )
    training, metrics = adaptor.metadata["training"], adaptor.metadata["metrics"]
    assert adaptor.fingerprint() == stage_one.fingerprint()
    assert training["mode"] == "unsupervised"
    # the attempt and its verdict stay in the record
    assert not training["supervised_stage"]["kept"]
    assert "did not rise" in training["supervised_stage"]["reason"]
    assert training["supervised"]["lr"] == 1e-9 and training["supervised"]["temperature"] == 0.05
    assert metrics["weights_measured"] == DROPPED and metrics["steps"] == 4
    assert large_vectors(adaptor, tmp_path / "db") == "base"


def test_too_few_labels_are_recorded_as_the_unsupervised_adaptor_returned(labelled, tmp_path):
    corpus, stage_one, vectors, relevance = labelled
    adaptor = train_supervised(
        corpus, vectors[:12], relevance[:12], DIMS, STILL, FAST, adaptor=stage_one, progress=False
    )
    training = adaptor.metadata["training"]
    assert training["mode"] == "unsupervised"
    assert "12 labelled queries are too few" in training["supervised_stage"]["reason"]
    assert large_vectors(adaptor, tmp_path / "db") == "base"


def test_a_kept_stage_is_recorded_as_supervised(labelled, tmp_path):
    """The same training with the verdict overruled (`validate_stage=False`): the trained weights are returned,
    recorded as supervised, and a store reranks with their adapted vectors."""
    corpus, stage_one, vectors, relevance = labelled
    config = SupervisedConfig(
        max_steps=4, eval_every=2, batch_size=32, temperature=0.05, validate_stage=False
    )
    adaptor = train_supervised(
        corpus, vectors, relevance, DIMS, config, FAST, adaptor=stage_one, progress=False
    )
    training = adaptor.metadata["training"]
    assert training["mode"] == "supervised" and training["supervised_stage"]["kept"]
    assert adaptor.fingerprint() != stage_one.fingerprint()
    # where the time went: the stage's phases (the refit included) add up to at most the call's seconds
    phases = training["seconds_by_phase"]
    assert list(phases) == ["neighbour table", "chosen run", "verdict", "refit", "corpus estimate"]
    assert all(seconds > 0 for seconds in phases.values()) and sum(phases.values()) <= training["seconds"]
    stage_one_phases = training["stage_one"]["training"]["seconds_by_phase"]
    assert list(stage_one_phases) == ["neighbour table", "other setup", "training"]
    assert sum(stage_one_phases.values()) == pytest.approx(
        training["stage_one"]["training"]["seconds"], abs=0.01
    )
    assert large_vectors(adaptor, tmp_path / "db") == "adapted"
