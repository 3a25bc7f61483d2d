"""Our nDCG@10 and Recall@100 against pytrec_eval on real runs (the SciFact slice binary, NFCorpus graded)."""

import random

import numpy as np
import pytest
import pytrec_eval
import torch

from matryoshka_rag.scoring.metrics import mean_metric, ndcg_at_k, recall_at_k
from matryoshka_rag.training.neighbours import exact_search


def run_at_dim(dataset, corpus, queries, qrels, dim):
    rows = [i for i, q in enumerate(dataset.query_ids) if q in qrels]
    scores, indices = exact_search(
        torch.from_numpy(queries[rows, :dim].copy()), torch.from_numpy(corpus[:, :dim].copy()), 100
    )
    return {
        dataset.query_ids[q]: {dataset.corpus_ids[d]: float(s) for d, s in zip(idx, sc)}
        for q, idx, sc in zip(rows, indices.tolist(), scores.tolist())
    }


@pytest.mark.parametrize("name", ["scifact", "nfcorpus"])
def test_matches_pytrec_eval_on_real_runs(request, name):
    dataset = request.getfixturevalue(name)
    corpus, queries = request.getfixturevalue(f"{name}_embeddings")
    qrels = dataset.qrels("test")
    run = run_at_dim(dataset, corpus, queries, qrels, 64)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"})
    per_query = evaluator.evaluate(run)
    expected_ndcg = np.mean([v["ndcg_cut_10"] for v in per_query.values()])
    expected_recall = np.mean([v["recall_100"] for v in per_query.values()])
    assert mean_metric(run, qrels, "ndcg", 10) == pytest.approx(expected_ndcg, abs=1e-9)
    assert mean_metric(run, qrels, "recall", 100) == pytest.approx(expected_recall, abs=1e-9)


def test_matches_pytrec_eval_on_random_graded_runs_with_ties():
    rng = random.Random(0)
    docs = [f"d{i}" for i in range(40)]
    qrels = {f"q{q}": {d: rng.choice([0, 1, 2]) for d in rng.sample(docs, 8)} for q in range(30)}
    run = {q: {d: float(rng.randint(0, 5)) for d in rng.sample(docs, 25)} for q in qrels}  # many tied scores
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    assert mean_metric(run, qrels, "ndcg", 10) == pytest.approx(
        np.mean([v["ndcg_cut_10"] for v in per_query.values()])
    )
    assert mean_metric(run, qrels, "recall", 100) == pytest.approx(
        np.mean([v["recall_100"] for v in per_query.values()])
    )


def test_hand_computed_values():
    grades = {"a": 2, "b": 1, "c": 0}
    assert ndcg_at_k(["a", "b", "x"], grades) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], grades) == pytest.approx((2 / np.log2(3)) / (2 + 1 / np.log2(3)))
    assert recall_at_k(["x", "b"], grades, 100) == 0.5
    assert ndcg_at_k(["a"], {"c": 0}) == 0.0
