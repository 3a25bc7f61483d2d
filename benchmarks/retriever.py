"""Chroma retriever benchmark (issue 4): the Matryoshka funnel against a plain full-dim Chroma collection.

    .venv/bin/python benchmarks/retriever.py --datasets scifact,nfcorpus --scale 50000 --layouts 20000

- Quality (`--datasets`): each BEIR corpus's precomputed all-MiniLM-L6-v2 vectors go into (a) a
  `MatryoshkaStore` (64-d HNSW search, exact 384-d rerank, fallback) and (b) one plain 384-d Chroma collection
  of the base vectors, same HNSW settings. nDCG@10 on the test queries, recall@10 against exact search,
  latency, RSS, disk, ingest time, fallback rate. The adaptor is `--adaptors/<dataset>` if present, else
  trained with the core trainer's defaults and saved there.
- Scale (`--scale N`): N vectors = the real SciFact + NFCorpus vectors, then synthetic ones (a real vector
  plus gaussian noise of std `--noise` per dim, renormalised); queries are real SciFact test queries.
- Layouts (`--layouts N`): where to keep the large-dim vectors: a second collection (the product), inside
  the small collection's metadata (base64 float32), or a numpy sidecar file (embedded only).

Each ingest and each query run happens in a fresh process (RSS is that process's growth while it opens the
database and answers the queries). `--append BENCHMARKS.md` appends the tables and this command line.
"""

from __future__ import annotations

import argparse
import base64
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

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EMBEDDINGS = SHARED / "embeddings" / "all-MiniLM-L6-v2"
NAME = "bench"
K = 10


def rss_mib() -> float:
    """Resident memory of this process in MiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2**20


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# -- systems: ingest(folder, work) and open(folder, work) -> query(vector, k) -> (ids, stage) ----------------


def _collection(client, name: str):
    from matryoshka_rag.retriever import DEFAULT_HNSW

    configuration = {"hnsw": {"space": "cosine", **DEFAULT_HNSW}}
    return client.get_or_create_collection(name, configuration=configuration, embedding_function=None)


def _chunks(n: int, size: int = 5000):
    return (slice(start, start + size) for start in range(0, n, size))


class Funnel:
    """The product: `MatryoshkaStore` (two collections, rerank, fallback), base vectors at 384 (default)."""

    large_vectors = "base"

    @classmethod
    def ingest(cls, folder: Path, work: dict) -> None:
        from matryoshka_rag.retriever import MatryoshkaStore

        store = MatryoshkaStore(NAME, work["adaptor"], path=folder, large_vectors=cls.large_vectors)
        store.add(work["ids"], texts=work.get("texts"), embeddings=work["vectors"])

    @staticmethod
    def open(folder: Path, work: dict, factor: int):
        from matryoshka_rag.retriever import MatryoshkaStore

        store = MatryoshkaStore(NAME, path=folder, shortlist_factor=factor)

        def query(vector, k):
            hits = store.query(vector, k=k)
            return [h.id for h in hits], hits[0].stage

        return query


class FunnelAdapted(Funnel):
    """`MatryoshkaStore` with `large_vectors="adapted"`: the rerank uses the adapted 384-d vectors."""

    large_vectors = "adapted"


class Plain:
    """One 384-d HNSW collection of the base vectors: what Chroma users have without an adaptor."""

    @staticmethod
    def ingest(folder: Path, work: dict) -> None:
        import chromadb

        collection = _collection(chromadb.PersistentClient(str(folder)), NAME)
        vectors, texts = _unit(work["vectors"]), work.get("texts")
        for part in _chunks(len(vectors)):
            collection.upsert(
                ids=work["ids"][part], embeddings=vectors[part], documents=texts[part] if texts else None
            )

    @staticmethod
    def open(folder: Path, work: dict, factor: int):
        import chromadb

        collection = chromadb.PersistentClient(str(folder)).get_collection(NAME, embedding_function=None)

        def query(vector, k):
            found = collection.query(query_embeddings=[_unit(vector[None])[0]], n_results=k)
            return found["ids"][0], "full-dim"

        return query


class _SmallPlusLarge:
    """Benchmark-only layouts: a 64-d collection searched, the (base) 384-d vectors kept elsewhere."""

    @classmethod
    def ingest(cls, folder: Path, work: dict) -> None:
        import chromadb

        from matryoshka_rag import load_adaptor

        adaptor = load_adaptor(work["adaptor"])
        large = _unit(np.asarray(work["vectors"], np.float32))
        small = _unit(adaptor.transform(work["vectors"])[:, :64])
        collection = _collection(chromadb.PersistentClient(str(folder)), NAME)
        for part in _chunks(len(large)):
            metadatas = cls.metadatas(large[part])
            collection.upsert(ids=work["ids"][part], embeddings=small[part], metadatas=metadatas)
        cls.save(folder, work["ids"], large)

    @staticmethod
    def metadatas(large: np.ndarray) -> list | None:
        return None

    @staticmethod
    def save(folder: Path, ids: list[str], large: np.ndarray) -> None:
        pass

    @classmethod
    def open(cls, folder: Path, work: dict, factor: int):
        import chromadb

        from matryoshka_rag import load_adaptor

        adaptor = load_adaptor(work["adaptor"])
        collection = chromadb.PersistentClient(str(folder)).get_collection(NAME, embedding_function=None)
        lookup = cls.loader(folder, collection)

        def query(vector, k):
            small = _unit(adaptor.transform(vector[None])[:, :64])[0]
            shortlist = collection.query(query_embeddings=[small], n_results=factor * k)
            ids, stored = lookup(shortlist["ids"][0])
            best = np.argsort(-(stored @ _unit(vector[None])[0]))[:k]
            return [ids[i] for i in best], "small+rerank"

        return query


class MetadataLayout(_SmallPlusLarge):
    """Large vectors as base64 float32 in the small collection's metadata (rerank: get + decode)."""

    @staticmethod
    def metadatas(large: np.ndarray) -> list:
        return [{"v": base64.b64encode(row.astype("<f4").tobytes()).decode()} for row in large]

    @staticmethod
    def loader(folder: Path, collection):
        def lookup(ids):
            found = collection.get(ids=ids, include=["metadatas"])
            stored = np.stack([np.frombuffer(base64.b64decode(m["v"]), "<f4") for m in found["metadatas"]])
            return found["ids"], stored

        return lookup


class SidecarLayout(_SmallPlusLarge):
    """Large vectors in a .npy beside the database, memory-mapped (client-side: embedded mode only)."""

    @staticmethod
    def save(folder: Path, ids: list[str], large: np.ndarray) -> None:
        np.save(Path(folder) / "large.npy", large)
        (Path(folder) / "large_ids.json").write_text(json.dumps(ids))

    @staticmethod
    def loader(folder: Path, collection):
        large = np.load(Path(folder) / "large.npy", mmap_mode="r")
        row = {i: r for r, i in enumerate(json.loads((Path(folder) / "large_ids.json").read_text()))}

        def lookup(ids):
            return ids, np.asarray(large[[row[i] for i in ids]])

        return lookup


SYSTEMS = {
    "funnel": Funnel,
    "funnel-adapted": FunnelAdapted,
    "plain": Plain,
    "metadata": MetadataLayout,
    "sidecar": SidecarLayout,
}


# -- jobs, each run in a fresh process ------------------------------------------------------------------------


def _load_work(work_dir: str) -> dict:
    work = json.loads((Path(work_dir) / "work.json").read_text())
    work["vectors"] = np.load(Path(work_dir) / "vectors.npy")
    work["queries"] = np.load(Path(work_dir) / "queries.npy")
    return work


def ingest_job(system: str, folder: str, work_dir: str) -> dict:
    import torch

    torch.set_num_threads(1)
    work = _load_work(work_dir)
    started = time.perf_counter()
    SYSTEMS[system].ingest(Path(folder), work)
    return {"ingest_s": time.perf_counter() - started, "disk_mib": disk_mib(Path(folder))}


def serve_job(system: str, folder: str, work_dir: str, k: int, factor: int) -> dict:
    import torch

    import matryoshka_rag.retriever  # noqa: F401 - chromadb and the store imported before the baseline RSS

    torch.set_num_threads(1)
    work = _load_work(work_dir)
    before = rss_mib()
    query = SYSTEMS[system].open(Path(folder), work, factor)
    for vector in work["queries"][:5]:  # warm-up: loads the indexes
        query(vector, k)
    ranked, stages, seconds = [], [], []
    for vector in work["queries"]:
        started = time.perf_counter()
        ids, stage = query(vector, k)
        seconds.append(time.perf_counter() - started)
        ranked.append(ids)
        stages.append(stage)
    return {"ranked": ranked, "stages": stages, "seconds": seconds, "rss_mib": rss_mib() - before}


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def run_systems(variants: list[str], ids, vectors, queries, adaptor_path, texts=None, k=K) -> dict:
    """Ingest each system once and serve each variant ("plain", "funnel x10": shortlist 10 k, ...) in fresh
    processes: {variant: ingest_s, disk_mib, rss_mib, ranked, stages, seconds}."""
    results, ingested = {}, {}
    with tempfile.TemporaryDirectory(prefix="retriever-bench-") as tmp:
        work = {"ids": list(ids), "adaptor": str(adaptor_path), "texts": texts}
        (Path(tmp) / "work.json").write_text(json.dumps(work))
        np.save(Path(tmp) / "vectors.npy", np.asarray(vectors, np.float32))
        np.save(Path(tmp) / "queries.npy", np.asarray(queries, np.float32))
        for variant in variants:
            system, _, factor = variant.partition(" x")
            folder = str(Path(tmp) / system)
            if system not in ingested:
                ingested[system] = in_fresh_process(ingest_job, system, folder, tmp)
                print(f"  {system}: ingest {ingested[system]['ingest_s']:.1f} s", flush=True)
            results[variant] = ingested[system] | in_fresh_process(
                serve_job, system, folder, tmp, k, int(factor or 10)
            )
    return results


def variants(systems: str, factors: str) -> list[str]:
    """ "funnel,plain" and "10,20" -> ["funnel x10", "funnel x20", "plain"] (plain has no shortlist)."""
    return [
        system if system == "plain" else f"{system} x{factor}"
        for system in systems.split(",")
        for factor in (factors.split(",") if system != "plain" else [""])
    ]


# -- measures ------------------------------------------------------------------------------------------------


def exact_top(documents: np.ndarray, queries: np.ndarray, ids: list[str], k: int = K) -> list[list[str]]:
    """Exact cosine top k ids for each query."""
    import torch

    from matryoshka_rag.neighbours import exact_search

    _, index = exact_search(torch.from_numpy(np.asarray(queries)), torch.from_numpy(np.asarray(documents)), k)
    return [[ids[i] for i in row] for row in index.tolist()]


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def ndcg(ranked: list[list[str]], query_ids: list[str], qrels: dict) -> float:
    from matryoshka_rag.metrics import ndcg_at_k

    return float(np.mean([ndcg_at_k(r, qrels[q], K) for r, q in zip(ranked, query_ids)]))


def summary(result: dict) -> dict:
    ms = 1000 * np.asarray(result["seconds"])
    return {
        "ingest_s": result["ingest_s"],
        "disk_mib": result["disk_mib"],
        "rss_mib": result["rss_mib"],
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "fallback_rate": float(np.mean([s == "fallback" for s in result["stages"]])),
    }


def adaptor_for(dataset: str, corpus: np.ndarray, root: Path) -> Path:
    """`root/<dataset>`, trained with the core trainer's defaults when missing."""
    from matryoshka_rag import save_adaptor, train_unsupervised

    folder = root / dataset
    if not (folder / "config.json").is_file():
        print(f"training an adaptor on {dataset} ({len(corpus)} vectors, trainer defaults)", flush=True)
        started = time.perf_counter()
        adaptor = train_unsupervised(corpus, base_model="all-MiniLM-L6-v2", progress=False)
        save_adaptor(adaptor, folder)
        print(f"  trained in {time.perf_counter() - started:.0f} s -> {folder}", flush=True)
    return folder


def quality(dataset: str, args) -> dict:
    from matryoshka_rag import load_adaptor
    from matryoshka_rag.beir import load_beir, load_precomputed

    data = load_beir(SHARED / "beir" / dataset)
    corpus, all_queries = load_precomputed(EMBEDDINGS / dataset, data)
    qrels = data.qrels("test")
    rows = [i for i, q in enumerate(data.query_ids) if q in qrels]
    query_ids, queries = [data.query_ids[i] for i in rows], all_queries[rows]
    adaptor_path = adaptor_for(dataset, corpus, args.adaptors)
    print(f"{dataset}: {len(corpus)} documents, {len(rows)} test queries", flush=True)
    systems = variants(args.systems, args.factors)
    results = run_systems(systems, data.corpus_ids, corpus, queries, adaptor_path, data.corpus_texts)
    adaptor = load_adaptor(adaptor_path)
    exact_base = exact_top(corpus, queries, data.corpus_ids)
    exact_large = exact_top(adaptor.transform(corpus), adaptor.transform(queries), data.corpus_ids)
    exact_small = exact_top(
        adaptor.transform(corpus, dim=64), adaptor.transform(queries, dim=64), data.corpus_ids
    )
    report = {
        "exact 384 (base)": {"ndcg@10": ndcg(exact_base, query_ids, qrels)},
        "exact 384 (adapted)": {"ndcg@10": ndcg(exact_large, query_ids, qrels)},
        "exact 64 (adapted)": {"ndcg@10": ndcg(exact_small, query_ids, qrels)},
    }
    plain = ndcg(results["plain"]["ranked"], query_ids, qrels) if "plain" in results else float("nan")
    for system, result in results.items():
        score = ndcg(result["ranked"], query_ids, qrels)
        report[system] = {
            "ndcg@10": score,
            "ndcg vs plain": score / plain,
            "recall@10 vs exact base": recall(result["ranked"], exact_base),
            "recall@10 vs exact adapted": recall(result["ranked"], exact_large),
            **summary(result),
        }
    return report


def synthetic(n: int, noise: float, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The real SciFact + NFCorpus vectors, then real vectors + N(0, noise^2) per dim, renormalised: (n, 384)."""
    real = np.concatenate([np.load(EMBEDDINGS / name / "corpus.npy") for name in ("scifact", "nfcorpus")])
    real = _unit(real.astype(np.float32))
    if n <= len(real):
        return [f"real-{i}" for i in range(n)], real[:n]
    rng = np.random.default_rng(seed)
    extra = real[rng.integers(0, len(real), n - len(real))]
    extra = _unit(extra + rng.normal(0, noise, extra.shape).astype(np.float32))
    ids = [f"real-{i}" for i in range(len(real))] + [f"synthetic-{i}" for i in range(n - len(real))]
    return ids, np.concatenate([real, extra])


def scale(n: int, systems: list[str], args) -> dict:
    from matryoshka_rag import load_adaptor
    from matryoshka_rag.beir import load_beir, load_precomputed

    data = load_beir(SHARED / "beir" / "scifact")
    corpus, all_queries = load_precomputed(EMBEDDINGS / "scifact", data)
    qrels = data.qrels("test")
    queries = all_queries[[i for i, q in enumerate(data.query_ids) if q in qrels][: args.queries]]
    adaptor_path = adaptor_for("scifact", corpus, args.adaptors)
    ids, vectors = synthetic(n, args.noise)
    print(f"scale: {n} vectors ({len(queries)} SciFact queries), systems {', '.join(systems)}", flush=True)
    results = run_systems(systems, ids, vectors, queries, adaptor_path)
    adaptor = load_adaptor(adaptor_path)
    exact_base = exact_top(vectors, queries, ids)
    exact_large = exact_top(adaptor.transform(vectors), adaptor.transform(queries), ids)
    return {
        system: {
            "recall@10 vs exact base": recall(result["ranked"], exact_base),
            "recall@10 vs exact adapted": recall(result["ranked"], exact_large),
            **summary(result),
        }
        for system, result in results.items()
    }


# -- report --------------------------------------------------------------------------------------------------

COLUMNS = (
    ("ndcg@10", "nDCG@10", "{:.4f}"),
    ("ndcg vs plain", "vs plain", "{:.2%}"),
    ("recall@10 vs exact base", "R@10 vs exact base", "{:.4f}"),
    ("recall@10 vs exact adapted", "R@10 vs exact adapted", "{:.4f}"),
    ("median_ms", "median ms", "{:.2f}"),
    ("p95_ms", "p95 ms", "{:.2f}"),
    ("rss_mib", "RSS MiB", "{:.0f}"),
    ("disk_mib", "disk MiB", "{:.1f}"),
    ("ingest_s", "ingest s", "{:.1f}"),
    ("fallback_rate", "fallback", "{:.1%}"),
)


def table(report: dict) -> str:
    used = [c for c in COLUMNS if any(c[0] in row for row in report.values())]
    lines = ["| system | " + " | ".join(c[1] for c in used) + " |", "|---" * (len(used) + 1) + "|"]
    for system, row in report.items():
        cells = [fmt.format(row[key]) if key in row else "" for key, _, fmt in used]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="scifact,nfcorpus", help="quality runs ('' to skip)")
    parser.add_argument("--scale", type=int, default=0, help="N vectors for the scale run (0: skip)")
    parser.add_argument("--systems", default="funnel,funnel-adapted,plain", help="quality and scale runs")
    parser.add_argument("--factors", default="10,20,40", help="shortlist factors of the funnel variants")
    parser.add_argument(
        "--layouts", type=int, default=0, help="N vectors for the layout comparison (0: skip)"
    )
    parser.add_argument("--queries", type=int, default=200, help="queries in the scale and layout runs")
    parser.add_argument(
        "--noise", type=float, default=0.03, help="std per dim of the synthetic vectors' noise"
    )
    parser.add_argument("--adaptors", type=Path, default=Path("runs/retriever/adaptors"))
    parser.add_argument("--out", type=Path, default=Path("runs/retriever/results.json"))
    parser.add_argument("--append", type=Path, help="append the tables to this markdown file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    command = "python benchmarks/retriever.py " + shlex.join(sys.argv[1:])
    load = os.getloadavg()[0]
    sections, results = [], {}
    for dataset in filter(None, args.datasets.split(",")):
        results[dataset] = quality(dataset, args)
        sections.append(f"{dataset}:\n\n{table(results[dataset])}")
        print(sections[-1], flush=True)
    if args.scale:
        results[f"scale {args.scale}"] = scale(args.scale, variants(args.systems, args.factors), args)
        sections.append(f"{args.scale} vectors (scale):\n\n{table(results[f'scale {args.scale}'])}")
        print(sections[-1], flush=True)
    if args.layouts:
        layouts = variants("funnel,metadata,sidecar,plain", args.factors)
        results[f"layouts {args.layouts}"] = scale(args.layouts, layouts, args)
        sections.append(f"{args.layouts} vectors (layouts):\n\n{table(results[f'layouts {args.layouts}'])}")
        print(sections[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    if args.append:
        cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        header = f"`{command}` ({cpu} cores, load average {load:.1f} at start, {time.strftime('%Y-%m-%d')})"
        with open(args.append, "a") as out:
            out.write("\n" + header + "\n\n" + "\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
