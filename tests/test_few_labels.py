"""Supervision with few or no labels (issue 17): the supervised stage is kept only when a meaningful validation
says it beats its start (else the stage-one adaptor is returned, and the metadata says why), and pseudo-queries
from the texts train it with no labels at all. Real SciFact vectors; the pseudo-queries are embedded with the
real all-MiniLM-L6-v2."""

import numpy as np
import pytest

from matryoshka_rag import SupervisedConfig, UnsupervisedConfig, train_supervised, train_unsupervised
from matryoshka_rag.recipes.fit import fit_from_texts
from matryoshka_rag.scoring.paired import clearly_above
from matryoshka_rag.training.labelled import split_validation, stage_verdict
from matryoshka_rag.training.supervised import PRE_REFIT

DIMS = (32, 384)
FAST = {"max_steps": 20, "eval_every": 5}


def test_stage_verdict_keeps_a_stage_only_when_every_dim_rises_beyond_noise():
    start = {32: np.array([0.0, 0.5, 1.0, 0.5]), 384: np.array([0.5, 0.5, 0.5, 0.5])}
    # 32 rises by 0.5 (standard error 0.204); 384 by 0.375 (standard error 0.125): both above 2 errors
    trained = {32: np.ones(4), 384: np.array([1.0, 1.0, 1.0, 0.5])}
    kept, reason, by_dim = stage_verdict(start, trained)
    assert kept and "rose beyond noise at every dim" in reason
    assert by_dim["start"]["384"] == 0.5 and by_dim["trained"]["384"] == 0.875
    assert by_dim["standard_error"]["384"] == pytest.approx(0.125)
    # 384 rises by 0.25 with a standard error of 0.144: under 2 errors, though the mean over dims rose
    kept, reason, _ = stage_verdict(start, {32: np.ones(4), 384: np.array([1.0, 1.0, 0.5, 0.5])})
    assert not kept and "more than 2 standard errors at dims [384]" in reason
    # 384 falls on every query (standard error 0)
    kept, reason, _ = stage_verdict(start, {32: np.ones(4), 384: start[384] - 0.25})
    assert not kept and "at dims [384]" in reason
    kept, reason, _ = stage_verdict(start, {m: s.copy() for m, s in start.items()})
    assert not kept and "at dims [32, 384]" in reason
    # one query of ten rises: its mean difference equals its standard error
    one = {32: np.zeros(10), 384: np.zeros(10)}
    kept, _, _ = stage_verdict(one, {32: np.r_[1.0, np.zeros(9)], 384: np.r_[0.3, np.zeros(9)]})
    assert not kept


def test_the_validation_split_holds_out_at_least_the_minimum():
    train, held = split_validation(30, 0.15, seed=0, minimum=10)
    assert len(held) == 10 and len(train) == 20 and not set(train) & set(held)
    assert len(split_validation(200, 0.15, seed=0, minimum=10)[1]) == 30


def recorded_verdict(by_dim: dict) -> bool:
    """`stage_verdict`'s rule read back from the recorded means and standard errors per dim."""
    start, trained, error = by_dim["start"], by_dim["trained"], by_dim["standard_error"]
    return all(clearly_above(trained[m] - start[m], error[m]) for m in start)


@pytest.fixture(scope="module")
def labelled(scifact, scifact_embeddings):
    """SciFact corpus rows 0..399 plus the relevant documents of the first 40 training queries, and those
    queries' vectors and relevance (as rows of that corpus)."""
    docs, queries = scifact_embeddings
    train = scifact.qrels("train")
    doc_row = {d: i for i, d in enumerate(scifact.corpus_ids)}
    query_row = {q: i for i, q in enumerate(scifact.query_ids)}
    chosen = sorted(train)[:40]
    rows = sorted(set(range(400)) | {doc_row[d] for q in chosen for d in train[q]})
    position = {r: i for i, r in enumerate(rows)}
    relevance = [{position[doc_row[d]]: float(g) for d, g in train[q].items() if g > 0} for q in chosen]
    return docs[rows], queries[[query_row[q] for q in chosen]], relevance


def test_too_few_labelled_queries_return_the_stage_one_adaptor_and_say_so(labelled):
    corpus, queries, relevance = labelled
    unsupervised = UnsupervisedConfig(**FAST)
    stage_one = train_unsupervised(corpus, DIMS, unsupervised, progress=False)
    adaptor = train_supervised(
        corpus, queries[:12], relevance[:12], DIMS, SupervisedConfig(**FAST), unsupervised, progress=False
    )
    stage = adaptor.metadata["training"]["supervised_stage"]
    assert not stage["kept"] and "12 labelled queries are too few" in stage["reason"]
    assert adaptor.metadata["training"]["mode"] == "unsupervised"  # the stage-one adaptor returned
    assert adaptor.metadata["metrics"]["validation_ndcg@10"] is None
    # the stage-one adaptor trained in the call: the same weights as a plain unsupervised run
    np.testing.assert_array_equal(adaptor.transform(corpus[:5]), stage_one.transform(corpus[:5]))


def test_the_stage_is_kept_only_as_validation_says(labelled):
    """40 queries: 10 held out (the minimum), 30 trained on; the verdict recorded is the verdict of the
    recorded validation scores, and a dropped stage returns its start unchanged."""
    corpus, queries, relevance = labelled
    unsupervised = UnsupervisedConfig(**FAST)
    start = train_unsupervised(corpus, DIMS, unsupervised, progress=False)
    adaptor = train_supervised(
        corpus, queries, relevance, DIMS, SupervisedConfig(**FAST), adaptor=start, progress=False
    )
    training, metrics = adaptor.metadata["training"], adaptor.metadata["metrics"]
    assert training["train_queries"] == 30
    assert training["supervised_stage"]["kept"] == recorded_verdict(metrics["validation_ndcg@10_by_dim"])
    changed = not np.array_equal(adaptor.transform(corpus[:5]), start.transform(corpus[:5]))
    assert changed == training["supervised_stage"]["kept"]


def test_fit_with_pseudo_queries_needs_no_labels(tmp_path, scifact, precomputed_minilm, minilm_provider):
    """120 SciFact documents: one sentence of each is a query for it, embedded with the real model; the
    supervised stage trains on them, early-stops on held-out ones, and is kept (then refit) as they say."""
    texts = scifact.corpus_texts[:120]
    adaptor = fit_from_texts(
        precomputed_minilm,
        texts,
        tmp_path / "pseudo",
        embed_query=lambda text: minilm_provider([text])[0],
        pseudo_queries=True,
        dims=DIMS,
        base_model="all-MiniLM-L6-v2",
        progress=False,
        **FAST,
    )
    training, metrics = adaptor.metadata["training"], adaptor.metadata["metrics"]
    counts = training["pseudo_queries"]
    assert counts["queries"] + counts["skipped"] == 120 and counts["sentence"] == counts["queries"]
    assert training["corpus_size"] == 120
    assert training["train_queries"] == counts["queries"] - round(0.15 * counts["queries"])
    assert metrics["validation_ndcg@10"] > 0  # the held-out pseudo-queries find their documents
    assert training["supervised_stage"]["kept"] == recorded_verdict(metrics["validation_ndcg@10_by_dim"])
    assert training["supervised_stage"]["kept"] == (metrics["weights_measured"] == PRE_REFIT)
