"""BEIR evaluation of Matryoshka methods: exact cosine search at each dim, nDCG@10 and Recall@100."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..adaptor.folder_write import check_destination
from ..adaptor.pca import pca_projection
from ..adaptor.torch_module import MatryoshkaAdaptor
from ..atomic import atomic_write_bytes, atomic_write_text, check_folder_path
from ..data.beir import BeirDataset, load_beir, load_precomputed
from ..errors import InputError
from ..extras import pyplot
from ..scoring.metrics import mean_metric
from ..training import SupervisedConfig, UnsupervisedConfig, train_supervised, train_unsupervised
from ..training.devices import resolve_device
from ..training.neighbours import exact_search
from ..training.unsupervised import unsupervised_stage
from ..validation import check_dims

Transform = Callable[[np.ndarray, int], np.ndarray]  # base vectors (n, dim), m -> the method's (n, m) prefix

BASELINES = ("truncate", "pca", "pca-rotation")
TRAINED = ("unsupervised", "unsupervised-paper", "supervised", "supervised-pairwise")
METHODS = BASELINES + TRAINED


@dataclass
class EvalSettings:
    """What to train for the trained methods; defaults are the library's defaults."""

    unsupervised: UnsupervisedConfig = field(default_factory=UnsupervisedConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    device: str | None = None
    progress: bool = True


def _relevance(
    qrels: dict[str, dict[str, int]], dataset: BeirDataset
) -> tuple[list[int], list[dict[int, float]]]:
    """Query rows and `{corpus row: grade}` of the queries with at least one grade > 0."""
    query_row = {q: i for i, q in enumerate(dataset.query_ids)}
    doc_row = {d: i for i, d in enumerate(dataset.corpus_ids)}
    rows, relevance = [], []
    for query_id, judged in qrels.items():
        positives = {doc_row[d]: float(g) for d, g in judged.items() if g > 0}
        if positives:
            rows.append(query_row[query_id])
            relevance.append(positives)
    return rows, relevance


def score_dims(
    dataset: BeirDataset,
    corpus: np.ndarray,
    queries: np.ndarray,
    qrels: dict[str, dict[str, int]],
    dims: Sequence[int],
) -> dict[str, dict[int, float]]:
    """nDCG@10 and Recall@100 of exact cosine search with the first m dims, for each m in `dims`.

    Args:
        corpus: the method's document vectors `(n_docs, dim)`, rows aligned to `dataset.corpus_ids`.
        queries: the method's query vectors `(n_queries, dim)`, rows aligned to `dataset.query_ids`.
    """
    query_rows = [i for i, q in enumerate(dataset.query_ids) if q in qrels]
    depth = min(100, len(corpus))
    out: dict[str, dict[int, float]] = {"ndcg@10": {}, "recall@100": {}}
    for m in dims:
        scores, indices = exact_search(
            torch.from_numpy(np.ascontiguousarray(queries[query_rows, :m])),
            torch.from_numpy(np.ascontiguousarray(corpus[:, :m])),
            depth,
        )
        run = {
            dataset.query_ids[q]: {dataset.corpus_ids[d]: s for d, s in zip(idx, sc)}
            for q, idx, sc in zip(query_rows, indices.tolist(), scores.tolist())
        }
        out["ndcg@10"][m] = mean_metric(run, qrels, "ndcg", 10)
        out["recall@100"][m] = mean_metric(run, qrels, "recall", 100)
    return out


class MethodTrainer:
    """Builds each method's transform, training adaptors on demand (supervision reuses the unsupervised one).

    Args:
        corpus: base document vectors `(n_docs, dim)`.
        train: `(query vectors (q, dim), relevance)` for the supervised methods, if any.
        validation: the same for early stopping (a dev split); default: part of `train` is held out.
    """

    def __init__(
        self,
        corpus: np.ndarray,
        dims: tuple[int, ...],
        settings: EvalSettings,
        model: str,
        train: tuple[np.ndarray, list[dict[int, float]]] | None = None,
        validation: tuple[np.ndarray, list[dict[int, float]]] | None = None,
    ) -> None:
        self.corpus, self.dims, self.settings, self.model = corpus, dims, settings, model
        self.train, self.validation = train, validation
        self.adaptors: dict[str, MatryoshkaAdaptor] = {}
        self.stage_one_table: np.ndarray | None = None  # the neighbour table "unsupervised" trained with

    def transform(self, method: str) -> Transform:
        if method == "truncate":
            return lambda x, m: x[:, :m]
        if method in ("pca", "pca-rotation"):
            return pca_projection(self.corpus, centred=method == "pca")
        return self.adaptor(method).transform

    def adaptor(self, method: str) -> MatryoshkaAdaptor:
        if method not in self.adaptors:
            self.adaptors[method] = self._train(method)
        return self.adaptors[method]

    def _train(self, method: str) -> MatryoshkaAdaptor:
        s = self.settings
        if method == "unsupervised":
            adaptor, self.stage_one_table = unsupervised_stage(
                self.corpus, self.dims, s.unsupervised, self.model, s.device, progress=s.progress
            )
            return adaptor
        if method == "unsupervised-paper":
            paper = UnsupervisedConfig(  # the paper's recipe: L1 losses, identity start, Adam 1e-3, batch 128
                objective="paper",
                start="identity",
                lr=1e-3,
                batch_size=128,
                seed=s.unsupervised.seed,
                max_steps=s.unsupervised.max_steps,
            )
            return train_unsupervised(
                self.corpus, self.dims, paper, self.model, s.device, progress=s.progress
            )
        if self.train is None:
            raise InputError(f"method {method!r} needs training qrels (query/document relevance)")
        config = s.supervised
        if method == "supervised-pairwise":
            config = dataclasses.replace(config, objective="pairwise")
        stage_one = self.adaptor("unsupervised")  # trains it first, with its neighbour table
        return train_supervised(
            self.corpus,
            self.train[0],
            self.train[1],
            self.dims,
            config,
            s.unsupervised,
            adaptor=stage_one,
            validation=self.validation,
            base_model=self.model,
            device=s.device,
            progress=s.progress,
            stage_one_table=self.stage_one_table,
        )


def labelled_queries(
    dataset: BeirDataset, queries: np.ndarray, qrels: dict[str, dict[str, int]]
) -> tuple[np.ndarray, list[dict[int, float]]] | None:
    """Vectors `(q, dim)` and `{corpus row: grade}` of the queries with a grade > 0 in `qrels`."""
    rows, relevance = _relevance(qrels, dataset)
    return (queries[rows], relevance) if rows else None


def load_vectors(
    dataset: BeirDataset,
    model: str,
    embeddings_dir: str | Path | None,
    cache_path: str | Path | None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Base vectors of the corpus and queries: precomputed (`embeddings_dir` or `embeddings_dir/<name>`)
    when given, else encoded with `model` through the on-disk cache."""
    if embeddings_dir is not None:
        folder = Path(embeddings_dir)
        if not (folder / "corpus.npy").is_file():
            folder = folder / dataset.name
        return load_precomputed(folder, dataset)
    from ..embeddings.cache import EmbeddingCache
    from ..embeddings.providers import SentenceTransformerProvider, embed_texts

    provider = SentenceTransformerProvider(model)
    with EmbeddingCache(cache_path) as cache:
        corpus = embed_texts(provider, dataset.corpus_texts, cache, progress=progress)
        if not dataset.query_texts:
            return corpus, np.zeros((0, corpus.shape[1]), np.float32)
        queries = embed_texts(provider, dataset.query_texts, cache, progress=progress)
    return corpus, queries


def evaluate(
    dataset_dir: str | Path,
    model: str,
    methods: Sequence[str],
    dims: Sequence[int] | None,
    embeddings_dir: str | Path | None = None,
    cache_path: str | Path | None = None,
    settings: EvalSettings | None = None,
    adaptors_dir: str | Path | None = None,
) -> dict:
    """Score `methods` at `dims` (None: `validation.default_dims` of the base dim) on the test split of a BEIR
    folder; trained methods use train (and dev) qrels only. Returns the `results.json` document; saves trained adaptors under `adaptors_dir`."""
    settings = settings or EvalSettings()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if adaptors_dir is not None:  # refused before any work, not after it
        for method in TRAINED:
            check_destination(Path(adaptors_dir) / method, overwrite=True)
    dataset = load_beir(dataset_dir)
    corpus, queries = load_vectors(dataset, model, embeddings_dir, cache_path, settings.progress)
    dims = check_dims(dims, corpus.shape[1])
    test_qrels = dataset.qrels("test")
    splits = dataset.splits()
    trainer = MethodTrainer(
        corpus,
        dims,
        settings,
        model,
        train=labelled_queries(dataset, queries, dataset.qrels("train")) if "train" in splits else None,
        validation=labelled_queries(dataset, queries, dataset.qrels("dev")) if "dev" in splits else None,
    )
    device = str(resolve_device(settings.device))
    by_metric: dict[str, dict[str, dict[str, float]]] = {"ndcg@10": {}, "recall@100": {}}  # method, dim
    train_seconds: dict[str, float] = {}
    train_phases: dict[str, dict[str, float]] = {}  # a trained method's seconds by phase
    train_metrics: dict[str, dict] = {}
    for method in methods:
        started = time.perf_counter()
        transform = trainer.transform(method)
        # a trained method's own stage (a supervised adaptor's unsupervised start is the unsupervised row's)
        seconds = (
            trainer.adaptors[method].metadata["training"]["seconds"]
            if method in TRAINED
            else time.perf_counter() - started
        )
        train_seconds[method] = round(seconds, 2)
        if method in TRAINED:  # early-stopping scores, steps, the temperature search (not the history)
            metrics = trainer.adaptors[method].metadata["metrics"]
            train_metrics[method] = {k: v for k, v in metrics.items() if k != "history"}
            train_phases[method] = trainer.adaptors[method].metadata["training"]["seconds_by_phase"]
        for m in dims:  # each dim's own vectors: an adaptor may serve another prefix at each dim
            scores = score_dims(dataset, transform(corpus, m), transform(queries, m), test_qrels, [m])
            for metric, by_dim in scores.items():
                by_metric[metric].setdefault(method, {})[str(m)] = round(by_dim[m], 4)
    if adaptors_dir is not None:
        from ..adaptor.persistence import save_adaptor

        for method, adaptor in trainer.adaptors.items():
            save_adaptor(adaptor, Path(adaptors_dir) / method, overwrite=True)
    return {
        "dataset": dataset.name,
        "model": model,
        "base_dim": int(corpus.shape[1]),
        "dims": list(dims),
        **by_metric,
        "train_seconds": train_seconds,
        "train_seconds_by_phase": train_phases,
        "train_metrics": train_metrics,
        "device": device,
        "cpu": platform.processor() or platform.machine(),
    }


def markdown_table(results: dict, metric: str = "ndcg@10") -> str:
    """Methods as rows, dims as columns."""
    dims = [str(m) for m in results["dims"]]
    lines = [
        f"| {results['dataset']} {metric} | " + " | ".join(dims) + " | train s |",
        "|---" * (len(dims) + 2) + "|",
    ]
    for method, by_dim in results[metric].items():
        seconds = results["train_seconds"].get(method, 0.0)
        lines.append(f"| {method} | " + " | ".join(f"{by_dim[m]:.3f}" for m in dims) + f" | {seconds:.0f} |")
    return "\n".join(lines)


def write_report(results: dict, out_dir: str | Path) -> Path:
    """Write `results.json`, `results.md` and `ndcg.png` (nDCG@10 against dim) to `out_dir`, each atomically
    (a crash leaves a file's old version or its new one, never a torn one)."""
    import io

    plt = pyplot("the report's plot (ndcg.png)")

    out = Path(out_dir)
    check_folder_path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(
        out / "results.md", markdown_table(results) + "\n\n" + markdown_table(results, "recall@100") + "\n"
    )
    figure, axis = plt.subplots(figsize=(6, 4))
    for method, by_dim in results["ndcg@10"].items():
        axis.plot(results["dims"], [by_dim[str(m)] for m in results["dims"]], marker="o", label=method)
    axis.set_xscale("log", base=2)
    axis.set_xticks(results["dims"], [str(m) for m in results["dims"]])
    axis.set_xlabel("dims kept")
    axis.set_ylabel("nDCG@10")
    axis.set_title(f"{results['dataset']} ({results['model']})")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(out / "ndcg.png", image.getvalue())
    return out
