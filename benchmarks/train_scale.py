"""Unsupervised training at scale (issue 5): time, memory and kNN-table quality from 5k to 2M vectors.

    .venv/bin/python benchmarks/train_scale.py --sizes 5000,50000 --device cpu
    .venv/bin/python benchmarks/train_scale.py --sizes 5000,50000,500000,2000000 --device cuda

For each N, a corpus of N 384-d all-MiniLM-L6-v2 vectors is written as a `.npy` under `--out` and trained on
memory-mapped, `--steps` steps of the default `UnsupervisedConfig` (patience off, so every run does all its
steps), each N in a fresh process so that peak memory is its own. The first 8,816 rows are the real SciFact
then NFCorpus vectors; rows beyond are SYNTHETIC: a random real vector plus gaussian noise in the real PCA
axes, scaled by `--noise` times the real per-axis standard deviation, renormalised. At the default noise 1.0,
the synthetic rows' mean cosine to their 1st / 10th nearest neighbour (0.73 / 0.57 among 200k rows) matches
the real vectors' (0.71 / 0.56 among the 8,816); at 0.5 it is 0.91 / 0.83, too easy for approximate search.

Prints a Markdown table (neighbour table method, seconds and recall@k on a 1,000-row sample against exact
search; seconds per 1,000 steps; anchors per second; peak RSS, peak anonymous RSS, which leaves out the pages
of the memory-mapped file, or peak GPU memory; final held-out proxy loss), then the adaptor's FLOPs per
anchor and, from a measured matmul rate (bf16 on CUDA, fp32 on CPU), the anchors/s the arithmetic allows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REAL = [SHARED / "embeddings" / "all-MiniLM-L6-v2" / name / "corpus.npy" for name in ("scifact", "nfcorpus")]
CHUNK = 1 << 16


def make_corpus(path: Path, n: int, noise: float, seed: int = 0) -> tuple[int, int]:
    """Write `(n, 384)` float32 to `path` (real rows first, then synthetic ones); returns (real, synthetic)."""
    from matryoshka_rag.adaptor.pca import principal_axes

    real = np.concatenate([np.load(p) for p in REAL]).astype(np.float32)
    n_real = min(n, len(real))
    if path.is_file() and np.load(path, mmap_mode="r").shape == (n, real.shape[1]):
        return n_real, n - n_real
    mean, axes = principal_axes(real)
    scale = noise * ((real - mean) @ axes).std(axis=0)  # per-axis std in PCA space
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n, 384))
    out[:n_real] = real[:n_real]
    for start in range(n_real, n, CHUNK):
        size = min(CHUNK, n - start)
        rows = real[rng.integers(0, len(real), size)] + (rng.standard_normal((size, 384)) * scale) @ axes.T
        out[start : start + size] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    out.flush()
    del out
    path.with_suffix(".tmp.npy").replace(path)
    return n_real, n - n_real


class AnonPeak:
    """Peak anonymous RSS of this process (heap, not the pages of memory-mapped files), sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.current())

    @staticmethod
    def current() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.current())


def run_one(path: Path, steps: int, device: str | None, compile: bool) -> dict:
    """Train on the memory-mapped corpus at `path` in this process; returns the measurements."""
    anon = AnonPeak()
    import torch

    from matryoshka_rag import UnsupervisedConfig, train_unsupervised

    config = replace(UnsupervisedConfig(), max_steps=steps, patience=steps)
    corpus = np.load(path, mmap_mode="r")
    adaptor = train_unsupervised(corpus, config=config, device=device, progress=False, compile=compile)
    training, metrics = adaptor.metadata["training"], adaptor.metadata["metrics"]
    cuda = adaptor.device.type == "cuda"
    return {
        "n": len(corpus),
        "device": training["device"] + (f" ({torch.cuda.get_device_name()})" if cuda else ""),
        "neighbours": training["neighbours"],
        "steps": metrics["steps"],
        "loop_seconds": training["loop_seconds"],
        "total_seconds": training["seconds"],
        "batch_size": config.batch_size,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_anon_rss": anon.stop(),
        "peak_gpu": torch.cuda.max_memory_allocated() if cuda else None,
        "final_proxy_loss": -metrics["history"][-1]["score"],
        "config": asdict(config),
    }


def flops_per_anchor(config: dict, dim: int = 384) -> float:
    """Forward + backward FLOPs of one anchor (with its k neighbours) at the default adaptor shape."""
    from matryoshka_rag.validation import default_dims

    k, batch, hidden, layers = (
        config["k"],
        config["batch_size"],
        config["hidden_dim"] or dim,
        config["num_layers"],
    )
    mlp = 2 * (dim * hidden + (layers - 1) * hidden * hidden + hidden * dim)  # forward, per vector
    rotation = 2 * dim * dim if config["start"] == "pca" else 0  # a buffer: no backward
    per_vector = rotation + 3 * mlp  # backward ~ 2x forward
    candidates = batch - 1 + k
    loss = 3 * sum(2 * candidates * m for m in default_dims(dim)) + 2 * candidates * dim
    return (1 + k) * per_vector + loss


def matmul_rate(device: str) -> tuple[float, str]:
    """Measured dense matmul FLOP/s: bf16 4096^3 on CUDA, fp32 2048^3 on CPU."""
    import torch

    cuda = device.startswith("cuda")
    size, dtype = (4096, torch.bfloat16) if cuda else (2048, torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    repeats = 50 if cuda else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * size**3 * repeats / (time.perf_counter() - started), "bf16" if cuda else "fp32"


def _size(value: float | None) -> str:
    return (
        "—" if value is None else f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"
    )


def markdown(rows: list[dict]) -> str:
    lines = [
        "| N | real + synthetic | device | kNN table | kNN s | recall@10 (sample) | s / 1k steps | anchors/s "
        "| peak RSS | peak anon RSS | peak GPU mem | final proxy loss |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        nb = r["neighbours"]
        lines.append(
            f"| {r['n']:,} | {r['real']:,} + {r['synthetic']:,} | {r['device']} | {nb['method']} "
            f"| {nb['seconds']:.1f} | {nb['recall_sample']:.3f} | {r['loop_seconds'] / r['steps'] * 1000:.0f} "
            f"| {r['steps'] * r['batch_size'] / r['loop_seconds']:,.0f} | {_size(r['peak_rss'])} "
            f"| {_size(r['peak_anon_rss'])} | {_size(r['peak_gpu'])} | {r['final_proxy_loss']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="5000,50000,500000,2000000")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    parser.add_argument("--noise", type=float, default=1.0, help="synthetic noise / real per-axis std")
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss")
    parser.add_argument("--out", type=Path, default=Path("runs/train_scale"))
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # internal: one N in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.device, args.compile)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        path = args.out / f"corpus_{n}_noise{args.noise:g}.npy"
        real, synthetic = make_corpus(path, n, args.noise)
        command = [sys.executable, __file__, "--one", str(path), "--steps", str(args.steps)]
        command += ["--device", args.device] if args.device else []
        command += ["--compile"] if args.compile else []
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"N={n} failed:\n{done.stderr[-4000:]}")
        rows.append({**json.loads(done.stdout.splitlines()[-1]), "real": real, "synthetic": synthetic})
        print(
            f"N={n:,}: {json.dumps(rows[-1]['neighbours'])}, loop {rows[-1]['loop_seconds']:.1f} s",
            flush=True,
        )
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(markdown(rows))
    device = rows[-1]["device"].split()[0]
    flops = flops_per_anchor(rows[-1]["config"])
    rate, dtype = matmul_rate(device)
    measured = max(r["steps"] * r["batch_size"] / r["loop_seconds"] for r in rows)
    print(
        f"\nadaptor FLOPs per anchor (forward + backward, with its {rows[-1]['config']['k']} neighbours and the "
        f"per-dim losses): {flops / 1e6:.1f} MFLOP\nmeasured {dtype} matmul on {device}: {rate / 1e12:.2f} TFLOP/s"
        f" -> achievable {rate / flops:,.0f} anchors/s vs measured (best N) {measured:,.0f} anchors/s "
        f"({measured / (rate / flops):.0%} of the matmul bound)"
    )


if __name__ == "__main__":
    main()
