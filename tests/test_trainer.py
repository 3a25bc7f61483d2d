"""Training: determinism, resume, early stopping, supervised stage, and bad input before any work."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from matryoshka_rag import (
    AdaptorConfig,
    AdaptorMismatchError,
    InputError,
    MatryoshkaAdaptor,
    SupervisedConfig,
    UnsupervisedConfig,
    train_supervised,
    train_unsupervised,
)
from matryoshka_rag.evaluation.beir_eval import labelled_queries
from matryoshka_rag.training import validation_ndcg

FAST = UnsupervisedConfig(max_steps=30, eval_every=10, batch_size=64, holdout=50, patience=100)


@pytest.fixture(scope="module")
def slice_vectors(scifact_vectors):
    return scifact_vectors


def test_same_seed_same_adaptor(slice_vectors):
    first = train_unsupervised(slice_vectors, (32, 384), FAST, progress=False)
    second = train_unsupervised(slice_vectors, (32, 384), FAST, progress=False)
    assert first.fingerprint() == second.fingerprint()
    assert first.metadata["metrics"]["steps"] == 30


def test_resume_from_checkpoint_matches_an_uninterrupted_run(slice_vectors, tmp_path):
    uninterrupted = train_unsupervised(slice_vectors, (32, 384), FAST, progress=False)
    import dataclasses

    train_unsupervised(
        slice_vectors,
        (32, 384),
        dataclasses.replace(FAST, max_steps=20),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert (tmp_path / "checkpoint.pt").is_file()
    resumed = train_unsupervised(slice_vectors, (32, 384), FAST, checkpoint_dir=tmp_path, progress=False)
    assert resumed.metadata["metrics"]["history"] == uninterrupted.metadata["metrics"]["history"]
    assert resumed.fingerprint() == uninterrupted.fingerprint()


def test_early_stopping_keeps_the_best_holdout_score(slice_vectors):
    config = UnsupervisedConfig(max_steps=200, eval_every=5, batch_size=64, holdout=50, patience=2, lr=3e-2)
    adaptor = train_unsupervised(slice_vectors, (32, 384), config, progress=False)
    metrics = adaptor.metadata["metrics"]
    best = max(h["score"] for h in metrics["history"])
    assert metrics["holdout_loss"] == pytest.approx(-best)
    assert metrics["steps"] < 200  # a learning rate this high stops improving quickly


def test_paper_objective_trains_from_identity(slice_vectors):
    config = UnsupervisedConfig(objective="paper", start="identity", max_steps=20, eval_every=10, holdout=50)
    adaptor = train_unsupervised(slice_vectors, (32, 384), config, progress=False)
    assert not adaptor.config.rotation
    history = adaptor.metadata["metrics"]["history"]
    assert history[-1]["score"] > history[0]["score"]  # held-out paper loss went down


@pytest.mark.parametrize("objective", ["multi-positive", "softmax", "pairwise"])
def test_supervised_adaptor_beats_its_start_on_held_back_queries(scifact, scifact_embeddings, objective):
    """The returned adaptor (refit on every train query) ranks SciFact's test queries, never trained on,
    better than the stage-one adaptor it started from; its validation score rose too."""
    corpus, queries = scifact_embeddings
    train = labelled_queries(scifact, queries, scifact.qrels("train"))
    test = labelled_queries(scifact, queries, scifact.qrels("test"))
    base = train_unsupervised(corpus, (32, 384), FAST, progress=False)
    config = SupervisedConfig(  # the objective's effect, kept whatever validation says of each dim
        objective=objective,
        max_steps=40,
        eval_every=20,
        batch_size=32,
        max_candidates=6000,
        validate_stage=False,
    )
    adaptor = train_supervised(
        corpus, train[0], train[1], (32, 384), config, FAST, adaptor=base, progress=False
    )

    def held_back(model):
        return validation_ndcg(model, torch.from_numpy(corpus), torch.from_numpy(test[0]), test[1], (32, 384))

    assert held_back(adaptor) > held_back(base) + 0.01
    history = adaptor.metadata["metrics"]["history"]
    metrics, training = adaptor.metadata["metrics"], adaptor.metadata["training"]
    assert metrics["validation_ndcg@10"] > history[0]["score"]
    assert training["mode"] == "supervised"
    assert training["supervised"]["self_distillation"] == (0.0 if objective == "pairwise" else 1.0)
    # The held-out split chose the step count; the adaptor returned was trained again on every query for
    # that many steps (counted by the refit's own loop).
    assert training["refit"] == {"steps": metrics["best_step"], "queries": len(train[0])}
    assert metrics["best_step"] > 0


def test_supervised_refit_adds_the_validation_queries(scifact, scifact_embeddings):
    """With a given validation split, the refit trains on training + validation queries, from stage one
    (widened to `hidden_dim`)."""
    corpus, queries = scifact_embeddings
    vectors, relevance = labelled_queries(scifact, queries, scifact.qrels("train"))
    base = train_unsupervised(corpus, (32, 384), FAST, progress=False)
    config = SupervisedConfig(
        max_steps=20, eval_every=10, batch_size=32, hidden_dim=512, validate_stage=False
    )
    kept, held = slice(0, 150), slice(150, None)
    train = (vectors[kept], relevance[kept])
    validation = (vectors[held], relevance[held])
    refitted = train_supervised(
        corpus, *train, (32, 384), config, FAST, adaptor=base, validation=validation, progress=False
    )
    plain = train_supervised(
        corpus,
        *train,
        (32, 384),
        replace(config, refit=False),
        FAST,
        adaptor=base,
        validation=validation,
        progress=False,
    )
    # the refit's own step count is the step the validation run without a refit chose
    steps = plain.metadata["metrics"]["best_step"]
    assert steps > 0 and refitted.metadata["training"]["refit"] == {"steps": steps, "queries": len(vectors)}
    assert plain.metadata["training"]["refit"] is None
    assert refitted.config.hidden_dim == plain.config.hidden_dim == 512  # widened from stage one's 384
    assert refitted.fingerprint() != plain.fingerprint()  # trained again, on more queries


def test_validation_picks_the_softmax_temperature(scifact, scifact_embeddings):
    """Each temperature is trained `temperature_steps` steps; the run with the best validation score by then
    continues, and the adaptor returned has the same weights as training with that temperature alone."""
    corpus, queries = scifact_embeddings
    vectors, relevance = labelled_queries(scifact, queries, scifact.qrels("train"))
    base = train_unsupervised(corpus, (32, 384), FAST, progress=False)
    config = SupervisedConfig(
        temperature=(0.05, 0.5),
        temperature_steps=10,
        max_steps=30,
        eval_every=10,
        batch_size=32,
        refit=False,
    )
    picked = train_supervised(
        corpus, vectors, relevance, (32, 384), config, FAST, adaptor=base, progress=False
    )
    metrics = picked.metadata["metrics"]
    scores = metrics["validation_ndcg@10_by_temperature"]
    assert set(scores) == {"0.05", "0.5"} and scores["0.05"] != scores["0.5"]
    chosen = max(scores, key=scores.get)
    history = {h["step"]: h["score"] for h in metrics["history"]}
    assert scores[chosen] == max(history[0], history[10])  # the pick's score: its best by step 10
    assert metrics["steps"] > 10 and metrics["validation_ndcg@10"] == max(history.values())
    assert picked.metadata["training"]["supervised"]["temperature"] == float(chosen)
    phases = picked.metadata["training"]["seconds_by_phase"]  # no stage-one table given: built again
    kept = ["corpus estimate"] if picked.metadata["training"]["mode"] == "supervised" else []
    assert list(phases) == ["neighbour table", "temperature search", "chosen run", "verdict", *kept]
    assert all(seconds > 0 for seconds in phases.values())
    alone = train_supervised(
        corpus,
        vectors,
        relevance,
        (32, 384),
        replace(config, temperature=float(chosen)),
        FAST,
        adaptor=base,
        progress=False,
    )
    assert alone.fingerprint() == picked.fingerprint()
    # the default: each temperature's whole early-stopped run, the best of them kept
    whole = train_supervised(
        corpus,
        vectors,
        relevance,
        (32, 384),
        replace(config, temperature_steps=0),
        FAST,
        adaptor=base,
        progress=False,
    ).metadata["metrics"]
    best = max(whole["validation_ndcg@10_by_temperature"].values())
    assert whole["validation_ndcg@10"] == best and whole["steps"] == 30
    with pytest.raises(InputError, match="temperature must be a finite number > 0; got 0.0"):
        train_supervised(corpus, vectors, relevance, (32, 384), replace(config, temperature=(0.05, 0.0)))


def test_bad_inputs_fail_before_any_work(slice_vectors):
    nan = slice_vectors[:100].copy()
    nan[7, 0] = np.nan
    with pytest.raises(InputError, match="NaN or inf, first at row 7"):
        train_unsupervised(nan, (32, 384), FAST)
    with pytest.raises(InputError, match="no vectors"):
        train_unsupervised(np.zeros((0, 384), np.float32), (32, 384), FAST)
    with pytest.raises(InputError, match="strictly increasing"):
        train_unsupervised(slice_vectors, (64, 32), FAST)
    with pytest.raises(InputError, match="must not exceed the base dim 384"):
        train_unsupervised(slice_vectors, (32, 512), FAST)
    with pytest.raises(InputError, match="at least k \\+ 1 = 11"):
        train_unsupervised(slice_vectors[:8], (32, 384), FAST)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            train_unsupervised(slice_vectors, (32, 384), FAST, device="cuda")
    with pytest.raises(InputError, match="query 1 has no relevant document"):
        train_supervised(slice_vectors, slice_vectors[:2], [{0: 1}, {}], (32, 384))
    with pytest.raises(InputError, match="outside the corpus"):
        train_supervised(slice_vectors, slice_vectors[:2], [{0: 1}, {5000: 1}], (32, 384))
    labelled = (slice_vectors, slice_vectors[:2], [{0: 1}, {1: 1}], (32, 384))
    with pytest.raises(InputError, match="objective must be one of .* got 'softmx'"):
        train_supervised(*labelled, SupervisedConfig(objective="softmx"))
    with pytest.raises(InputError, match="self_distillation must be a finite number >= 0; got -1.0"):
        train_supervised(*labelled, SupervisedConfig(self_distillation=-1.0))


def test_a_given_stage_one_adaptor_must_fit_the_data(slice_vectors):
    """`train_supervised(adaptor=...)`: base dim, dims and base model are checked against the data first."""
    base = train_unsupervised(slice_vectors, (32, 384), FAST, base_model="all-MiniLM-L6-v2", progress=False)
    labelled = (slice_vectors, slice_vectors[:2], [{0: 1}, {1: 1}])
    with pytest.raises(
        AdaptorMismatchError, match=r"trained for dims \[32, 384\], this training is for dims"
    ):
        train_supervised(*labelled, (64, 384), adaptor=base, progress=False)
    with pytest.raises(
        AdaptorMismatchError, match="trained for base model 'all-MiniLM-L6-v2', got 'bge-small'"
    ):
        train_supervised(*labelled, (32, 384), adaptor=base, base_model="bge-small", progress=False)
    wider = MatryoshkaAdaptor(AdaptorConfig(base_dim=768, dims=(32, 768), base_model="all-mpnet-base-v2"))
    with pytest.raises(AdaptorMismatchError, match="trained for base dim 768 .* got vectors of dim 384"):
        train_supervised(*labelled, adaptor=wider, progress=False)
