"""The adaptor's forward, torch against numpy, side by side in one process (issue 15: the framework wrappers and
the store serve with the numpy one, so serving needs no torch).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adaptor_speed.py --batch 1024 --dim 64

Default adaptor shape (PCA rotation + one hidden layer of 384, random rotation, untrained: the same compute as a
trained one) on random base vectors; best of ``--repeats`` timings of ``transform`` (numpy in/out) for the torch
``MatryoshkaAdaptor`` and ``NumpyAdaptor``, and of the wrappers' path ``AdaptedVectors.adapt`` (lists in, checks,
lists out). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from matryoshka_rag import AdaptorConfig, MatryoshkaAdaptor, NumpyAdaptor
from matryoshka_rag.embeddings.adapted import AdaptedVectors


def vectors_per_second(run: Callable[[], object], n: int, repeats: int) -> float:
    """``n`` over the best of ``repeats`` timings of ``run()`` (after one warm-up call)."""
    run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return n / min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--base-dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((args.batch, args.base_dim)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.standard_normal((args.base_dim, args.base_dim)))
    config = AdaptorConfig(base_dim=args.base_dim, dims=(args.dim, args.base_dim), rotation=True)
    torch_adaptor = MatryoshkaAdaptor(config, rotation=torch.from_numpy(rotation.astype(np.float32)))
    numpy_adaptor = NumpyAdaptor.from_module(torch_adaptor)
    wrapper = AdaptedVectors(numpy_adaptor, args.dim)
    rows, texts = batch.tolist(), ["text"] * args.batch
    timings = {
        "torch `MatryoshkaAdaptor.transform`": lambda: torch_adaptor.transform(batch, args.dim),
        "numpy `NumpyAdaptor.transform`": lambda: numpy_adaptor.transform(batch, args.dim),
        "wrappers' `AdaptedVectors.adapt` (numpy; lists in and out)": lambda: wrapper.adapt(rows, texts),
    }
    print(f"| batch {args.batch}, dim {args.dim}, torch threads {torch.get_num_threads()} | vectors/s |")
    print("|---|---|")
    for name, run in timings.items():
        print(f"| {name} | {vectors_per_second(run, args.batch, args.repeats):,.0f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
