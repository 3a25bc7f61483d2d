"""`make demo`: from a clone to an answer in minutes, the method shown whole but with a short supervised stage.

    python -m matryoshka_rag.cli.demo --dataset scifact

1. the BEIR dataset by name or folder (``../shared/beir/<name>``, the user cache, or downloaded once);
2. base vectors: precomputed (``--embeddings``, default ``../shared/embeddings/<model>/<name>`` when present),
   else encoded with the model through the on-disk cache (slow on a CPU the first time only);
3. nDCG@10 by dim on the test split for truncation, PCA rotation, the unsupervised adaptor and the supervised
   adaptor trained on top of it, the supervised stage capped at `DEMO_SUPERVISED`'s steps and early-stopped on
   held-out training queries (or the dev qrels) as always;
4. the supervised adaptor indexed into a Matryoshka store (64-d search; the rerank with its adapted vectors,
   or with the base vectors when validation dropped the supervised stage and it is stage one's adaptor) and
   the sample query answered, through ``matryoshka-rag index`` and ``query``;
5. what the full run adds, and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import TypedDict

from ..data.download import LOCAL_BEIR
from ..errors import InputError


class DemoUnsupervised(TypedDict, total=False):
    """The `UnsupervisedConfig` fields the demo sets."""

    max_steps: int
    eval_every: int


class DemoSupervised(TypedDict, total=False):
    """The `SupervisedConfig` fields the demo sets."""

    temperature: float
    max_steps: int
    eval_every: int
    patience: int


class MeasuredRun(TypedDict):
    """A full run's supervised nDCG@10 by dim and its supervised training seconds."""

    supervised: dict[int, float]
    seconds: int


DEMO_QUERY = "Vitamin D deficiency is associated with an increased risk of tuberculosis."
DEMO_METHODS = ("truncate", "pca-rotation", "unsupervised", "supervised")
LOCAL_EMBEDDINGS = LOCAL_BEIR.parent / "embeddings"
"""Precomputed vectors beside the repository: ``<repo>/../shared/embeddings/<model>/<name>``."""

# The demo's training: the unsupervised stage capped at 200 steps (early-stopped on its label-free held-out
# score as always); the supervised stage with one softmax temperature (the one validation chose in the full
# runs of BENCHMARKS.md) and at most 100 steps, evaluated every 25 on the held-out queries, then the refit.
DEMO_UNSUPERVISED: DemoUnsupervised = {"max_steps": 200}
DEMO_SUPERVISED: DemoSupervised = {"temperature": 0.05, "max_steps": 100, "eval_every": 25, "patience": 2}

# What the full run measured (BENCHMARKS.md, "Quality by dim", re-measured for issue 14): nDCG@10 by dim of
# the supervised adaptor trained with the library's defaults, and its supervised training seconds on 2 CPU cores.
FULL_RUN: dict[str, MeasuredRun] = {
    "scifact": {"supervised": {32: 0.723, 64: 0.788, 384: 0.832}, "seconds": 1158},
    "nfcorpus": {"supervised": {32: 0.272, 64: 0.322, 384: 0.347}, "seconds": 833},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m matryoshka_rag.cli.demo",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--dataset", default="scifact", help="a BEIR folder or name (default scifact)")
    parser.add_argument(
        "--embeddings",
        help="precomputed vectors folder (default ../shared/embeddings/<model>/<name> if present)",
    )
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="base model (default all-MiniLM-L6-v2)")
    parser.add_argument("--out", default="runs/demo", help="report, adaptors and store (default runs/demo)")
    parser.add_argument("--query", default=DEMO_QUERY, help="the question answered at the end")
    parser.add_argument("--cache", help="embedding cache file (default ~/.cache/matryoshka-rag)")
    return parser


def precomputed_folder(given: str | None, model: str, name: str) -> Path | None:
    """`given`, else the precomputed vectors of `name` beside the repository when present, else None."""
    if given:
        return Path(given)
    folder = LOCAL_EMBEDDINGS / model / name
    return folder if (folder / "corpus.npy").is_file() else None


def full_run_note(results: dict, embeddings: Path | None) -> str:
    """What the full run adds over this demo: its settings, its measured figures where known, its command."""
    name = results["dataset"]
    vectors = f" --embeddings {embeddings.parent}" if embeddings else ""
    lines = [
        "What a full run adds: the library's defaults (unsupervised up to 400 steps; supervised up to 1500 "
        "steps, both softmax temperatures 0.05 and 0.07 trained and chosen on validation, then the refit) "
        "and the centred PCA row:",
        f"    matryoshka-rag eval --dataset {name}{vectors} "
        f"--methods truncate,pca,pca-rotation,unsupervised,supervised --out runs/full --save-adaptors",
    ]
    measured = FULL_RUN.get(name)
    if measured and results["model"] == "all-MiniLM-L6-v2":
        figures = ", ".join(f"{measured['supervised'][m]:.3f} at {m}" for m in sorted(measured["supervised"]))
        demo = results["ndcg@10"].get("supervised", {})
        here = ", ".join(
            f"{demo[str(m)]:.3f} at {m}" for m in sorted(measured["supervised"]) if str(m) in demo
        )
        lines.append(
            f"It measured supervised nDCG@10 {figures} dims (this demo: {here}) after "
            f"{measured['seconds']} s of supervised training on 2 CPU cores (BENCHMARKS.md, 'Quality by dim')."
        )
    return "\n".join(lines)


STORE_MARK = ".matryoshka-rag-demo-store"  # in the store folder the demo writes, so a rerun may replace it


def demo_store(out: Path) -> Path:
    """`out/chroma`, the demo's store; `InputError` when that folder exists and the demo did not write it."""
    store = out / "chroma"
    if store.exists() and not (store / STORE_MARK).is_file():
        raise InputError(
            f"{store} exists and was not written by the demo; nothing was changed: pass another --out or move it"
        )
    return store


def run(args: argparse.Namespace) -> None:
    """Steps 1-5 of the module docstring; `InputError` for a dataset that cannot be found or downloaded."""
    import dataclasses

    from ..data.beir import load_beir
    from ..data.download import dataset_folder
    from ..evaluation.beir_eval import EvalSettings, evaluate, load_vectors, markdown_table, write_report
    from ..training import SupervisedConfig, UnsupervisedConfig
    from .app import main as cli

    started = time.perf_counter()
    out = Path(args.out)
    store = demo_store(out)  # checked before any work
    folder = dataset_folder(args.dataset)
    embeddings = precomputed_folder(args.embeddings, args.model, folder.name)
    print(f"dataset: {folder}")
    print(
        f"vectors: precomputed in {embeddings}"
        if embeddings
        else f"vectors: encoding with {args.model} through the cache (the first run only; slow on a CPU)"
    )
    settings = EvalSettings(
        unsupervised=dataclasses.replace(UnsupervisedConfig(), **DEMO_UNSUPERVISED),
        supervised=dataclasses.replace(SupervisedConfig(), **DEMO_SUPERVISED),
    )
    results = evaluate(
        folder,
        args.model,
        DEMO_METHODS,
        None,
        embeddings_dir=embeddings,
        cache_path=args.cache,
        settings=settings,
        adaptors_dir=out / "adaptors",
    )
    write_report(results, out)
    print(f"\n{markdown_table(results)}\n(test split; report in {out})\n")

    if embeddings is None:  # the vectors the cache now holds, for `index`
        import numpy as np

        dataset = load_beir(folder)
        corpus, _ = load_vectors(dataset, args.model, None, args.cache, progress=False)
        embeddings = out / "vectors"
        embeddings.mkdir(parents=True, exist_ok=True)
        np.save(embeddings / "corpus.npy", corpus)
        (embeddings / "corpus_ids.json").write_text(json.dumps(dataset.corpus_ids))
    if store.exists():  # a previous demo's (demo_store checked its mark)
        import shutil

        shutil.rmtree(store)
    store.mkdir(parents=True)
    (store / STORE_MARK).write_text(
        "written by python -m matryoshka_rag.cli.demo; a rerun replaces this folder\n"
    )
    adaptor = out / "adaptors" / "supervised"
    index = ["index", "--dataset", str(folder), "--adaptor", str(adaptor), "--embeddings", str(embeddings)]
    index += ["--path", str(store), "--small-dim", "64", "--batch-size", "2000"]
    query = ["query", "--path", str(store), "-k", "3", args.query]
    for command in (index, query):
        print(f"$ matryoshka-rag {shlex.join(command)}", flush=True)
        if cli(command) != 0:
            raise SystemExit(2)
    print(f"\n{full_run_note(results, precomputed_folder(args.embeddings, args.model, folder.name))}")
    print(f"\ndemo: {time.perf_counter() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .app import run_command

    return run_command("demo", lambda: run(args), "the demo")


if __name__ == "__main__":
    sys.exit(main())
