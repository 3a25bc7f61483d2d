"""What the adaptor adds to embedding through LangChain (issue 3): side by side in one run.

    .venv/bin/python benchmarks/embedding_overhead.py --docs 200 --repeats 3

1. ``--docs`` SciFact documents embedded with all-MiniLM-L6-v2 alone (``ProviderEmbeddings``) and through
   ``AdaptedEmbeddings`` at ``--dim``, alternating, ``--repeats`` times each: wall seconds and the ratio of
   the fastest runs. Encoding dominates and varies run to run (other jobs on a shared machine), so the
   adaptor's own time is also measured inside each adapted call (wrapper time minus the base's time in that
   same call) and reported as a share of the base's time. Target: <= 2 %.
2. The adaptor alone on precomputed vectors, batch 1024: ``adaptor.transform`` (numpy in/out) and the
   wrapper's path ``AdaptedVectors.adapt`` (lists in, checks, lists out). Target: >= 50,000 vectors/s on CPU.

Without ``--adaptor``, uses an untrained adaptor of the default shape (PCA rotation + one hidden layer of 384):
the same compute as a trained one. Results go to ``--out`` as JSON and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from langchain_matryoshka_rag import AdaptedEmbeddings, ProviderEmbeddings
from matryoshka_rag import AdaptorConfig, MatryoshkaAdaptor, load_adaptor
from matryoshka_rag.adaptor.pca import pca_rotation
from matryoshka_rag.data.beir import load_beir
from matryoshka_rag.embeddings.adapted import AdaptedVectors
from matryoshka_rag.embeddings.providers import SentenceTransformerProvider

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODEL = "all-MiniLM-L6-v2"


class TimedProvider:
    """A provider that adds the seconds it spends to ``seconds``."""

    def __init__(self, provider: SentenceTransformerProvider) -> None:
        self.provider, self.name, self.seconds = provider, provider.name, 0.0

    def __call__(self, texts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        out = self.provider(texts)
        self.seconds += time.perf_counter() - start
        return out


def adaptor_for(args: argparse.Namespace, corpus: np.ndarray) -> MatryoshkaAdaptor:
    if args.adaptor:
        return load_adaptor(args.adaptor)
    config = AdaptorConfig(base_dim=corpus.shape[1], dims=(32, 64, 128, 384), base_model=MODEL, rotation=True)
    return MatryoshkaAdaptor(config, pca_rotation(corpus))


def throughput(fn, n: int, seconds: float = 2.0) -> float:
    """Vectors per second of ``fn()`` (which handles ``n`` vectors), best of 1 s rounds over ``seconds``."""
    fn()  # warm-up
    rates, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 4:
            fn()
            calls += 1
        rates.append(calls * n / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1024, help="batch of the adaptor-alone throughput")
    parser.add_argument("--adaptor", type=Path, help="adaptor folder (default: untrained, default shape)")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/embedding_overhead.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dataset = load_beir(args.shared / "beir" / "scifact")
    corpus = np.load(args.shared / "embeddings" / MODEL / "scifact" / "corpus.npy")
    adaptor = adaptor_for(args, corpus)
    texts = dataset.corpus_texts[: args.docs]
    timed = TimedProvider(SentenceTransformerProvider(MODEL, device="cpu"))
    base = ProviderEmbeddings(provider=timed)
    adapted = AdaptedEmbeddings(base=base, adaptor=adaptor, dim=args.dim)
    base.embed_documents(texts[:16])  # load the model, warm up

    alone, through, inside = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        base.embed_documents(texts)
        alone.append(time.perf_counter() - start)
        timed.seconds = 0.0
        start = time.perf_counter()
        adapted.embed_documents(texts)
        through.append(time.perf_counter() - start)
        inside.append(through[-1] - timed.seconds)  # the wrapper's own time in this call

    batch = corpus[: args.batch]
    rows = batch.tolist()
    batch_texts = dataset.corpus_texts[: args.batch]
    vectors = AdaptedVectors(adaptor, args.dim, MODEL)
    results = {
        "docs": len(texts),
        "dim": args.dim,
        "repeats": args.repeats,
        "base_seconds": alone,
        "adapted_seconds": through,
        "wall_ratio_fastest": min(through) / min(alone),
        "adaptor_seconds_in_calls": inside,
        "adaptor_share_of_base": [own / (total - own) for own, total in zip(inside, through)],
        "base_docs_per_second": len(texts) / min(alone),
        "batch": len(batch),
        "transform_vectors_per_second": throughput(lambda: adaptor.transform(batch, args.dim), len(batch)),
        "wrapper_adapt_vectors_per_second": throughput(lambda: vectors.adapt(rows, batch_texts), len(batch)),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
    }
    share = max(results["adaptor_share_of_base"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    seconds = ", ".join(f"{t:.2f}" for t in alone)
    adapted_seconds = ", ".join(f"{t:.2f}" for t in through)
    print(
        f"| measure | value |\n|---|---|\n"
        f"| {len(texts)} docs, model alone, {args.repeats} runs | {seconds} s "
        f"({results['base_docs_per_second']:.1f} docs/s at best) |\n"
        f"| same through AdaptedEmbeddings at {args.dim} dims, interleaved | {adapted_seconds} s |\n"
        f"| wall ratio adapted / alone, fastest runs | {results['wall_ratio_fastest']:.4f} |\n"
        f"| adaptor's own time inside each adapted call, share of the model's (worst run) | "
        f"{100 * share:.3f} % ({1000 * max(inside):.1f} ms at most) |\n"
        f"| adaptor.transform alone, batch {len(batch)} | {results['transform_vectors_per_second']:,.0f} vectors/s |\n"
        f"| wrapper path (lists in, checks, lists out), batch {len(batch)} | "
        f"{results['wrapper_adapt_vectors_per_second']:,.0f} vectors/s |\n"
        f"| torch threads; load average (1, 5, 15 min) at the end | {results['torch_threads']}; "
        f"{', '.join(f'{x:.2f}' for x in results['load_average'])} |"
    )


if __name__ == "__main__":
    main()
