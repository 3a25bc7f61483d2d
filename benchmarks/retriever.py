"""Matryoshka store benchmark (issue 12): the store against one plain full-dim Chroma collection, side by side.

    .venv/bin/python benchmarks/retriever.py --datasets scifact,nfcorpus \
        --supervised scifact=runs/sup_scifact/adaptors/supervised
    .venv/bin/python benchmarks/retriever.py --datasets '' --scale 50000,200000
    .venv/bin/python benchmarks/retriever.py --datasets '' --scale 200000 --base-dim 1536 --systems store,plain

Systems, each an embedded `PersistentClient` database of the same vectors (HNSW: cosine, `DEFAULT_HNSW`):
- `store`: `MatryoshkaStore` with its defaults: 64-d collection (documents, metadata) + float16 rerank file,
  adaptive shortlist; the adaptor is trained without labels (`--adaptors/<dataset>`, trained when missing).
- `store (supervised)`: the same with an adaptor trained with labels (`--supervised DATASET=FOLDER`): it
  reranks with the adapted full-dim vectors.
- `store-collection`: `rerank_home="collection"`, the layout a `chroma run` server holds (a second 384-d
  collection of rerank vectors), measured embedded.
- `plain`: one 384-d collection of the base vectors and documents: what Chroma users have without us.
- `plain-defaults`: the same collection made as users make it (`create_collection(name,
  embedding_function=None)`: Chroma's default l2 space and HNSW settings).

`--base-dim D` runs the scale runs on `spectrum_synthetic` vectors of D dims instead of the MiniLM ones (big base
vectors: the real MiniLM spectrum extended, clustered), with queries drawn from the same distribution and an
adaptor trained without labels on `--adaptor-sample` of them for `--adaptor-steps` steps.

Quality: nDCG@10 on the test queries, recall@10 against exact search in each system's rerank space.
Cost: each ingest and each serve run in a fresh process; the serve process imports chromadb, numpy and
`matryoshka_rag.store.store` (the same for every system) before its baseline RSS, then answers `--serve`
queries (the test queries cycled) with documents and metadata; RSS is its growth (memory-mapped pages
count). Latency is per query, measured in one more fresh process that opens every system and asks each query
of all of them in turn (the order rotating), so that the machine's load changes hit every system alike.
`widened` is the share of queries whose shortlist the store widened.
`--append FILE` appends the tables and the command line to a markdown file.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matryoshka_rag import UnsupervisedConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EMBEDDINGS = SHARED / "embeddings" / "all-MiniLM-L6-v2"
NAME = "bench"
K = 10


def rss_mib() -> float:
    """Resident memory of this process in MiB (VmRSS: anonymous and file-backed pages)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2**20


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# -- systems: ingest(folder, work) and open(folder) -> query(vector, k) -> ids ------------------------------


def _store_ingest(folder: Path, work: dict, **options) -> None:
    from matryoshka_rag.store.store import MatryoshkaStore

    store = MatryoshkaStore(NAME, work["adaptor"], path=folder, **options)
    store.add(work["ids"], texts=work.get("texts"), embeddings=work["vectors"])


def _store_open(folder: Path):
    from matryoshka_rag.store.store import MatryoshkaStore

    store = MatryoshkaStore(NAME, path=folder)

    def query(vector, k):
        return [hit.id for hit in store.query(vector, k=k)]

    return query, store.stats


def _plain_ingest(folder: Path, work: dict, defaults: bool = False) -> None:
    """One collection of the unit base vectors: the store's HNSW settings, or Chroma's own when `defaults`."""
    import chromadb

    from matryoshka_rag.store.store import DEFAULT_HNSW

    configuration = None if defaults else {"hnsw": {"space": "cosine", **DEFAULT_HNSW}}
    collection = chromadb.PersistentClient(str(folder)).create_collection(
        NAME, configuration=configuration, embedding_function=None
    )
    vectors, texts = unit(work["vectors"]), work.get("texts")
    for start in range(0, len(vectors), 5000):
        part = slice(start, start + 5000)
        collection.upsert(
            ids=work["ids"][part], embeddings=vectors[part], documents=texts[part] if texts else None
        )


def _plain_open(folder: Path):
    import chromadb

    collection = chromadb.PersistentClient(str(folder)).get_collection(NAME, embedding_function=None)

    def query(vector, k):  # documents, metadatas and distances: what plain users ask for
        return collection.query(query_embeddings=[unit(vector[None])[0]], n_results=k)["ids"][0]

    return query, None


SYSTEMS = {
    "store": (_store_ingest, _store_open),
    "store (supervised)": (_store_ingest, _store_open),
    "store-collection": (lambda f, w: _store_ingest(f, w, rerank_home="collection"), _store_open),
    "store-d128": (lambda f, w: _store_ingest(f, w, small_dim=128), _store_open),
    "plain": (_plain_ingest, _plain_open),
    "plain-defaults": (lambda f, w: _plain_ingest(f, w, defaults=True), _plain_open),
}


# -- jobs, each run in a fresh process ------------------------------------------------------------------------


def _load_work(work_dir: str) -> dict:
    work = json.loads((Path(work_dir) / "work.json").read_text())
    work["vectors"] = np.load(Path(work_dir) / "vectors.npy", mmap_mode="r")  # read only by an ingest
    work["queries"] = np.load(Path(work_dir) / "queries.npy")
    return work


def ingest_job(system: str, folder: str, work_dir: str, adaptor: str) -> dict:
    work = _load_work(work_dir) | {"adaptor": adaptor}
    started = time.perf_counter()
    SYSTEMS[system][0](Path(folder), work)
    parts = {
        part.name: disk_mib(part) if part.is_dir() else part.stat().st_size / 2**20
        for part in Path(folder).iterdir()
    }
    return {
        "ingest_s": time.perf_counter() - started,
        "disk_mib": disk_mib(Path(folder)),
        "disk_parts_mib": parts,
    }


def serve_job(system: str, folder: str, work_dir: str, k: int, serve: int) -> dict:
    import chromadb  # noqa: F401 - imported by every system before the baseline RSS

    import matryoshka_rag.store.store  # noqa: F401

    work = _load_work(work_dir)
    before = rss_mib()
    query, stats = SYSTEMS[system][1](Path(folder))
    queries = work["queries"]
    ranked = []
    for i in range(max(serve, len(queries))):
        ids = query(queries[i % len(queries)], k)
        if i < len(queries):
            ranked.append(ids)
    return {
        "ranked": ranked,
        "rss_mib": rss_mib() - before,
        "widened": stats.widened / stats.queries if stats else 0.0,
        "torch_imported": "torch" in sys.modules,
    }


def latency_job(folders: dict[str, str], work_dir: str, k: int, serve: int) -> dict[str, list[float]]:
    """Seconds per query of each system (name -> database folder), all open in this process, each query
    asked of every system before the next one, starting with a different system each time."""
    queries = _load_work(work_dir)["queries"]
    opened = {system: SYSTEMS[system][1](Path(folder))[0] for system, folder in folders.items()}
    return timed_in_turn(opened, queries, k, serve)


def timed_in_turn(opened: dict, queries: np.ndarray, k: int, serve: int) -> dict[str, list[float]]:
    """Seconds per query of each system (name -> query(vector, k)): `max(serve, len(queries))` queries, the
    queries cycled, each asked of every system before the next one, starting with a different system each time."""
    names, seconds = list(opened), {system: [] for system in opened}
    for i in range(max(serve, len(queries))):
        for system in names[i % len(names) :] + names[: i % len(names)]:
            started = time.perf_counter()
            opened[system](queries[i % len(queries)], k)
            seconds[system].append(time.perf_counter() - started)
    return seconds


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def run_systems(systems: dict[str, str], ids, vectors, queries, texts=None, serve: int = 1000) -> dict:
    """Ingest and serve each system (name -> adaptor folder) in fresh processes, one after the other."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="retriever-bench-") as tmp:
        (Path(tmp) / "work.json").write_text(json.dumps({"ids": list(ids), "texts": texts}))
        np.save(Path(tmp) / "vectors.npy", np.asarray(vectors, np.float32))
        np.save(Path(tmp) / "queries.npy", np.asarray(queries, np.float32))
        folders = {system: str(Path(tmp) / system.replace(" ", "_")) for system in systems}
        for system, adaptor in systems.items():
            ingested = in_fresh_process(ingest_job, system, folders[system], tmp, adaptor)
            print(f"  {system}: ingest {ingested['ingest_s']:.1f} s", flush=True)
            results[system] = ingested | in_fresh_process(serve_job, system, folders[system], tmp, K, serve)
        for system, seconds in in_fresh_process(latency_job, folders, tmp, K, serve).items():
            results[system]["seconds"] = seconds  # every system timed in one process, in turn
    return results


# -- measures ------------------------------------------------------------------------------------------------


def exact_top(documents: np.ndarray, queries: np.ndarray, ids: list[str], k: int = K) -> list[list[str]]:
    """Exact cosine top k ids for each query (numpy, in blocks of queries)."""
    documents = unit(np.asarray(documents, np.float32))
    top = []
    for start in range(0, len(queries), 64):
        scores = unit(np.asarray(queries[start : start + 64], np.float32)) @ documents.T
        best = np.argpartition(-scores, k, axis=1)[:, :k]
        for row, candidates in zip(scores, best):
            top.append([ids[i] for i in candidates[np.argsort(-row[candidates], kind="stable")]])
    return top


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def ndcg(ranked: list[list[str]], query_ids: list[str], qrels: dict) -> float:
    from matryoshka_rag.scoring.metrics import ndcg_at_k

    return float(np.mean([ndcg_at_k(r, qrels[q], K) for r, q in zip(ranked, query_ids)]))


def summary(result: dict) -> dict:
    ms = 1000 * np.asarray(result["seconds"])
    return {
        "ingest_s": result["ingest_s"],
        "disk_mib": result["disk_mib"],
        "rss_mib": result["rss_mib"],
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "widened": result["widened"],
        "torch": result["torch_imported"],
        "disk_parts_mib": result["disk_parts_mib"],
    }


def ratios(report: dict, baseline: str = "plain") -> None:
    """Add `<measure> / plain` to every row, in place."""
    for row in report.values():
        for key in ("ingest_s", "disk_mib", "rss_mib", "median_ms", "p95_ms"):
            if key in row and key in report[baseline]:
                row[f"{key} ratio"] = row[key] / report[baseline][key]


def adaptor_for(
    dataset: str,
    corpus: np.ndarray,
    root: Path,
    base_model: str = "all-MiniLM-L6-v2",
    config: UnsupervisedConfig | None = None,
) -> Path:
    """`root/<dataset>`, trained without labels (the trainer's defaults unless `config`) when missing."""
    from matryoshka_rag import UnsupervisedConfig, save_adaptor, train_unsupervised

    folder = root / dataset
    if not (folder / "config.json").is_file():
        config = config or UnsupervisedConfig()
        print(
            f"training an adaptor on {dataset} ({len(corpus)} vectors, {config.max_steps} steps)", flush=True
        )
        adaptor = train_unsupervised(corpus, config=config, base_model=base_model, progress=False)
        save_adaptor(adaptor, folder)
    return folder


def rerank_space(adaptor_folder: str, vectors: np.ndarray) -> np.ndarray:
    """The vectors the store reranks with for this adaptor (base, or adapted when trained with labels)."""
    from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
    from matryoshka_rag.store.store import trained_with_labels

    adaptor = NumpyAdaptor.from_folder(adaptor_folder)
    return adaptor.transform(vectors) if trained_with_labels(adaptor) else np.asarray(vectors, np.float32)


def quality(dataset: str, args) -> dict:
    from matryoshka_rag.data.beir import load_beir, load_precomputed

    data = load_beir(SHARED / "beir" / dataset)
    corpus, all_queries = load_precomputed(EMBEDDINGS / dataset, data)
    qrels = data.qrels("test")
    rows = [i for i, q in enumerate(data.query_ids) if q in qrels]
    query_ids, queries = [data.query_ids[i] for i in rows], all_queries[rows]
    systems = {name: str(adaptor_for(dataset, corpus, args.adaptors)) for name in args.systems.split(",")}
    if dataset in args.supervised:
        systems["store (supervised)"] = args.supervised[dataset]
    print(f"{dataset}: {len(corpus)} documents, {len(rows)} test queries", flush=True)
    results = run_systems(systems, data.corpus_ids, corpus, queries, data.corpus_texts, args.serve)
    report = {}
    for system, result in results.items():
        space = rerank_space(systems[system], corpus) if system != "plain" else corpus
        query_space = rerank_space(systems[system], queries) if system != "plain" else queries
        exact = exact_top(space, query_space, data.corpus_ids)
        score = ndcg(result["ranked"], query_ids, qrels)
        report[f"exact search in {system}'s rerank space"] = {"ndcg@10": ndcg(exact, query_ids, qrels)}
        report[system] = {
            "ndcg@10": score,
            "recall@10 vs exact": recall(result["ranked"], exact),
            **summary(result),
        }
    plain = report["plain"]["ndcg@10"]
    for row in report.values():
        row["ndcg vs plain"] = row["ndcg@10"] / plain
    ratios({k: v for k, v in report.items() if "ingest_s" in v})
    return report


def synthetic(n: int, noise: float, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The real SciFact + NFCorpus vectors, then real vectors + N(0, noise^2) per dim, renormalised: (n, 384)."""
    real = np.concatenate([np.load(EMBEDDINGS / name / "corpus.npy") for name in ("scifact", "nfcorpus")])
    real = unit(real.astype(np.float32))
    if n <= len(real):
        return [f"real-{i}" for i in range(n)], real[:n]
    rng = np.random.default_rng(seed)
    extra = real[rng.integers(0, len(real), n - len(real))]
    extra = unit(extra + rng.normal(0, noise, extra.shape).astype(np.float32))
    ids = [f"real-{i}" for i in range(len(real))] + [f"synthetic-{i}" for i in range(n - len(real))]
    return ids, np.concatenate([real, extra])


SPLICE, FIT, CLUSTERS = 300, (50, 300), 300


def real_spectrum() -> tuple[np.ndarray, float]:
    """The real SciFact + NFCorpus MiniLM vectors' (unit rows) PCA variances `(384,)`, decreasing, and their mean's
    norm."""
    from matryoshka_rag.adaptor.pca import principal_axes

    real = unit(
        np.concatenate([np.load(EMBEDDINGS / name / "corpus.npy") for name in ("scifact", "nfcorpus")])
    )
    mean, axes = principal_axes(real)
    return ((real - mean) @ axes).var(axis=0).astype(np.float64), float(np.linalg.norm(mean))


def extended_spectrum(variances: np.ndarray, dim: int) -> np.ndarray:
    """`(dim,)` variances: the first `SPLICE` of `variances`, then a power law fitted on their ranks `FIT`
    (log-log), continued from rank `SPLICE`; scaled to the same total variance."""
    ranks = np.arange(1, len(variances) + 1)
    low, high = FIT
    slope = np.polyfit(np.log(ranks[low:high]), np.log(variances[low:high]), 1)[0]
    tail = variances[SPLICE - 1] * (np.arange(SPLICE + 1, dim + 1) / SPLICE) ** slope
    extended = np.concatenate([variances[:SPLICE], tail])
    return extended * variances.sum() / extended.sum()


def spectrum_synthetic(n: int, dim: int, seed: int = 0, clusters: int = CLUSTERS) -> np.ndarray:
    """`(n, dim)` unit float32 rows drawn with the real MiniLM spectrum extended to `dim` (`extended_spectrum`):
    mean + a cluster's centre + noise, renormalised. The mean (a random direction at the real mean's norm), the
    `clusters` centres (N(0, f_c * variances)) and each cluster's share f_c ~ U(0.3, 0.8) of the variance come
    from seed 0, so every `seed` draws from one distribution; a row's noise is N(0, (1 - f_c) * variances).
    The principal axes are the coordinate axes."""
    variances, mean_norm = real_spectrum()
    sd = np.sqrt(extended_spectrum(variances, dim)).astype(np.float32)
    model = np.random.default_rng(0)
    mean = model.standard_normal(dim).astype(np.float32)
    mean *= mean_norm / np.linalg.norm(mean)
    share = model.uniform(0.3, 0.8, clusters).astype(np.float32)
    centres = model.standard_normal((clusters, dim)).astype(np.float32) * sd * np.sqrt(share)[:, None]
    rng, rows = np.random.default_rng(seed + 1), np.empty((n, dim), np.float32)
    for start in range(0, n, 20000):
        cluster = rng.integers(0, clusters, min(20000, n - start))
        noise = rng.standard_normal((len(cluster), dim)).astype(np.float32)
        rows[start : start + len(cluster)] = unit(
            mean + centres[cluster] + noise * sd * np.sqrt(1 - share[cluster])[:, None]
        )
    return rows


def big_base_inputs(n: int, args) -> tuple[np.ndarray, str, list[str], np.ndarray]:
    """`scale_inputs` for `--base-dim D`: `spectrum_synthetic` queries (seed 1) and corpus (seed 0), and an
    adaptor trained without labels on the first `--adaptor-sample` corpus rows for `--adaptor-steps` steps."""
    from dataclasses import replace

    from matryoshka_rag import UnsupervisedConfig

    dim = args.base_dim
    vectors, queries = spectrum_synthetic(n, dim), spectrum_synthetic(args.queries, dim, seed=1)
    steps = args.adaptor_steps
    config = replace(UnsupervisedConfig(), max_steps=steps, eval_every=steps, patience=steps, batch_size=128)
    sample = spectrum_synthetic(args.adaptor_sample, dim, seed=2)
    name = f"synthetic-minilm-spectrum-{dim}"
    adaptor = str(adaptor_for(f"{name}-{steps}steps", sample, args.adaptors, base_model=name, config=config))
    return queries, adaptor, [f"synthetic-{i}" for i in range(n)], vectors


def scale_inputs(n: int, args) -> tuple[np.ndarray, str, list[str], np.ndarray]:
    """A scale run's SciFact test queries `(args.queries, 384)`, unsupervised adaptor folder (trained when
    missing), and `synthetic` ids and vectors `(n, 384)`."""
    from matryoshka_rag.data.beir import load_beir, load_precomputed

    data = load_beir(SHARED / "beir" / "scifact")
    corpus, all_queries = load_precomputed(EMBEDDINGS / "scifact", data)
    qrels = data.qrels("test")
    queries = all_queries[[i for i, q in enumerate(data.query_ids) if q in qrels][: args.queries]]
    adaptor = str(adaptor_for("scifact", corpus, args.adaptors))
    return (queries, adaptor, *synthetic(n, args.noise))


def scale(n: int, args) -> dict:
    queries, adaptor, ids, vectors = (big_base_inputs if args.base_dim else scale_inputs)(n, args)
    systems = {name: adaptor for name in args.systems.split(",")}
    print(
        f"scale: {n} x {vectors.shape[1]} vectors ({len(queries)} queries), systems {', '.join(systems)}",
        flush=True,
    )
    results = run_systems(systems, ids, vectors, queries, serve=args.serve)
    exact = exact_top(vectors, queries, ids)
    report = {
        system: {"recall@10 vs exact": recall(result["ranked"], exact), **summary(result)}
        for system, result in results.items()
    }
    ratios(report)
    return report


# -- report --------------------------------------------------------------------------------------------------

COLUMNS = (
    ("ndcg@10", "nDCG@10", "{:.4f}"),
    ("ndcg vs plain", "vs plain", "{:.2%}"),
    ("recall@10 vs exact", "R@10 vs exact", "{:.4f}"),
    ("median_ms", "median ms", "{:.2f}"),
    ("median_ms ratio", "x plain", "{:.2f}"),
    ("p95_ms", "p95 ms", "{:.2f}"),
    ("p95_ms ratio", "x plain", "{:.2f}"),
    ("rss_mib", "RSS MiB", "{:.0f}"),
    ("rss_mib ratio", "x plain", "{:.2f}"),
    ("disk_mib", "disk MiB", "{:.1f}"),
    ("disk_mib ratio", "x plain", "{:.2f}"),
    ("ingest_s", "ingest s", "{:.1f}"),
    ("ingest_s ratio", "x plain", "{:.2f}"),
    ("widened", "widened", "{:.1%}"),
    ("torch", "torch imported", "{}"),
)


def table(report: dict, columns: tuple[tuple[str, str, str], ...] = COLUMNS) -> str:
    used = [c for c in columns if any(c[0] in row for row in report.values())]
    lines = ["| system | " + " | ".join(c[1] for c in used) + " |", "|---" * (len(used) + 1) + "|"]
    for system, row in report.items():
        cells = [fmt.format(row[key]) if key in row else "" for key, _, fmt in used]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def supervised_folders(text: str) -> dict[str, str]:
    """ "scifact=DIR,nfcorpus=DIR" -> {dataset: folder}."""
    return dict(part.split("=", 1) for part in text.split(",") if part)


def add_scale_arguments(parser: argparse.ArgumentParser, out: Path) -> None:
    """The options of a scale run: queries, serving, synthetic noise, the adaptors' folder and where results go."""
    parser.add_argument("--queries", type=int, default=200, help="SciFact queries in the scale runs")
    parser.add_argument("--serve", type=int, default=1000, help="queries answered per serve process")
    parser.add_argument(
        "--noise", type=float, default=0.03, help="std per dim of the synthetic vectors' noise"
    )
    parser.add_argument("--adaptors", type=Path, default=Path("runs/retriever/adaptors"))
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--append", type=Path, help="append the tables to this markdown file")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="scifact,nfcorpus", help="quality runs ('' to skip)")
    parser.add_argument("--supervised", type=supervised_folders, default={}, help="DATASET=ADAPTOR_DIR,...")
    parser.add_argument("--scale", default="", help="comma-separated corpus sizes for scale runs")
    parser.add_argument("--systems", default="store,store-collection,plain", help="systems compared")
    parser.add_argument(
        "--base-dim", type=int, default=0, help="scale runs on spectrum_synthetic vectors of this dim"
    )
    parser.add_argument(
        "--adaptor-steps", type=int, default=20, help="training steps of a --base-dim adaptor"
    )
    parser.add_argument(
        "--adaptor-sample", type=int, default=5000, help="vectors a --base-dim adaptor trains on"
    )
    add_scale_arguments(parser, Path("runs/retriever/results.json"))
    args = parser.parse_args()
    command = "python benchmarks/retriever.py " + shlex.join(sys.argv[1:])
    load = os.getloadavg()[0]
    sections, results = [], {}
    for dataset in filter(None, args.datasets.split(",")):
        results[dataset] = quality(dataset, args)
        sections.append(f"{dataset}:\n\n{table(results[dataset])}")
        print(sections[-1], flush=True)
    for n in filter(None, args.scale.split(",")):
        label = f"{int(n):,} vectors" + (f" of {args.base_dim} dims" if args.base_dim else "")
        results[label] = scale(int(n), args)
        sections.append(f"{label}:\n\n{table(results[label])}")
        print(sections[-1], flush=True)
    write_report(results, sections, args, command, load)


def write_report(results: dict, sections: list[str], args, command: str, load: float) -> None:
    """`results` as JSON in `args.out`; the tables (`sections`) under the command line and the machine's load at
    the start, appended to `args.append` when given."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    if args.append:
        cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        header = f"`{command}` ({cpu} cores, load average {load:.1f} at start, {time.strftime('%Y-%m-%d')})"
        with open(args.append, "a") as out:
            out.write("\n" + header + "\n\n" + "\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
