"""Resuming from `checkpoint_dir`: a checkpoint of another run (config, corpus, labels) is refused, naming
both values; the same run resumes, also with a larger step budget."""

import re
from dataclasses import replace

import pytest
import torch

from matryoshka_rag import (
    InputError,
    SupervisedConfig,
    UnsupervisedConfig,
    train_supervised,
    train_unsupervised,
)
from matryoshka_rag.evaluation.beir_eval import labelled_queries

FAST = UnsupervisedConfig(max_steps=20, eval_every=10, batch_size=64, holdout=50, patience=100)
N_DOCS = 400


@pytest.fixture(scope="module")
def corpus(scifact_vectors):
    return scifact_vectors[:N_DOCS]


def test_a_checkpoint_of_another_config_is_refused(corpus, tmp_path):
    train_unsupervised(corpus, (32, 384), FAST, checkpoint_dir=tmp_path, progress=False)
    other = replace(FAST, lr=1e-3, max_steps=30)
    message = "belongs to another run: its config.lr is 0.0003, this run's is 0.001"
    with pytest.raises(InputError, match=re.escape(message)):
        train_unsupervised(corpus, (32, 384), other, checkpoint_dir=tmp_path, progress=False)
    resumed = train_unsupervised(
        corpus, (32, 384), replace(FAST, max_steps=30), checkpoint_dir=tmp_path, progress=False
    )
    assert resumed.metadata["metrics"]["steps"] == 30  # the same run goes on with a larger budget


def test_a_checkpoint_of_another_corpus_is_refused(scifact_vectors, corpus, tmp_path):
    train_unsupervised(corpus, (32, 384), FAST, checkpoint_dir=tmp_path, progress=False)
    another = scifact_vectors[N_DOCS : 2 * N_DOCS]
    with pytest.raises(InputError, match="its corpus is '[0-9a-f]{64}', this run's is '[0-9a-f]{64}'"):
        train_unsupervised(another, (32, 384), FAST, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match=re.escape("its dims is [32, 384], this run's is [64, 384]")):
        train_unsupervised(corpus, (64, 384), FAST, checkpoint_dir=tmp_path, progress=False)


def test_a_checkpoint_that_records_no_run_is_refused(corpus, tmp_path):
    train_unsupervised(corpus, (32, 384), FAST, checkpoint_dir=tmp_path, progress=False)
    checkpoint = tmp_path / "checkpoint.pt"
    saved = torch.load(checkpoint, weights_only=True)
    del saved["identity"]  # as a version before run identities wrote it
    torch.save(saved, checkpoint)
    with pytest.raises(InputError, match="records no run identity"):
        train_unsupervised(corpus, (32, 384), FAST, checkpoint_dir=tmp_path, progress=False)


def test_a_supervised_checkpoint_of_other_labels_is_refused(scifact, scifact_embeddings, corpus, tmp_path):
    vectors, relevance = labelled_queries(scifact, scifact_embeddings[1], scifact.qrels("train"))
    inside = [i for i, judged in enumerate(relevance) if all(d < N_DOCS for d in judged)]
    vectors, relevance = vectors[inside], [relevance[i] for i in inside]
    base = train_unsupervised(corpus, (32, 384), FAST, progress=False)
    config = SupervisedConfig(max_steps=10, eval_every=5, batch_size=32, temperature=0.05)
    split = len(vectors) * 3 // 4
    validation = (vectors[split:], relevance[split:])

    def train(labels):
        return train_supervised(
            corpus,
            vectors[:split],
            labels,
            (32, 384),
            config,
            FAST,
            adaptor=base,
            validation=validation,
            checkpoint_dir=tmp_path,
            progress=False,
        )

    train(relevance[:split])
    assert (tmp_path / "checkpoint.pt").is_file()
    regraded = [{row: 2.0 for row in relevance[0]}, *relevance[1:split]]
    with pytest.raises(InputError, match="belongs to another run: its relevance is '[0-9a-f]{64}'"):
        train(regraded)


def test_a_short_temperature_search_resumes_to_the_same_adaptor(
    scifact, scifact_embeddings, corpus, tmp_path
):
    """With `temperature_steps`, each temperature's search run and the chosen run's continuation checkpoint
    in the temperature's folder: a call that finds them all resumes to the adaptor of a call without
    checkpoints, and records the same search."""
    vectors, relevance = labelled_queries(scifact, scifact_embeddings[1], scifact.qrels("train"))
    inside = [i for i, judged in enumerate(relevance) if all(d < N_DOCS for d in judged)]
    vectors, relevance = vectors[inside], [relevance[i] for i in inside]
    base = train_unsupervised(corpus, (32, 384), FAST, progress=False)
    config = SupervisedConfig(
        max_steps=10, eval_every=5, batch_size=32, temperature=(0.05, 0.5), temperature_steps=5, refit=False
    )

    def train(checkpoints):
        return train_supervised(
            corpus,
            vectors,
            relevance,
            (32, 384),
            config,
            FAST,
            adaptor=base,
            checkpoint_dir=checkpoints,
            progress=False,
        )

    plain = train(None)
    first = train(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["temperature-0.05", "temperature-0.5"]
    chosen = plain.metadata["training"]["supervised"]["temperature"]
    assert torch.load(tmp_path / f"temperature-{chosen}" / "checkpoint.pt", weights_only=True)["step"] == 10
    resumed = train(tmp_path)
    assert plain.fingerprint() == first.fingerprint() == resumed.fingerprint()
    search = "validation_ndcg@10_by_temperature"
    assert resumed.metadata["metrics"][search] == plain.metadata["metrics"][search]
