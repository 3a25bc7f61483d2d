"""nDCG@10 / Recall@100 by dim on SciFact and NFCorpus for every method (issue 2's quality table).

    .venv/bin/python benchmarks/quality.py --out runs/quality
    .venv/bin/python benchmarks/quality.py --datasets scifact --methods truncate,unsupervised \
        --set unsupervised.lr=3e-4 --set unsupervised.max_steps=600

Uses the precomputed all-MiniLM-L6-v2 vectors in ../shared/embeddings (pass --encode to encode instead).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from matryoshka_rag.evaluation.beir_eval import METHODS, EvalSettings, evaluate, markdown_table, write_report

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def settings_with(overrides: list[str]) -> EvalSettings:
    """`EvalSettings` with `section.field=value` overrides (value typed like the default; a tuple's items
    comma-separated)."""
    settings = EvalSettings()
    for item in overrides:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        config = getattr(settings, section)
        default = getattr(config, name)
        if isinstance(default, bool):
            typed = value.lower() in ("1", "true", "yes")
        elif isinstance(default, tuple):  # e.g. supervised.temperature=0.05,0.07
            typed = tuple(float(part) for part in value.split(","))
        else:
            typed = type(default)(value)
        setattr(settings, section, dataclasses.replace(config, **{name: typed}))
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--dims", default="16,32,64,128,256,384")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--encode", action="store_true", help="encode with the model instead of precomputed")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. unsupervised.lr=3e-4")
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    args = parser.parse_args()
    settings = settings_with(args.set)
    settings.progress = False
    for name in args.datasets.split(","):
        results = evaluate(
            args.shared / "beir" / name,
            "all-MiniLM-L6-v2",
            args.methods.split(","),
            [int(d) for d in args.dims.split(",")],
            embeddings_dir=None if args.encode else args.shared / "embeddings" / "all-MiniLM-L6-v2",
            settings=settings,
        )
        results["settings"] = dataclasses.asdict(settings)
        write_report(results, args.out / name)
        print(markdown_table(results), flush=True)
        print(json.dumps(results["train_seconds"]), flush=True)
        print(json.dumps(results["train_seconds_by_phase"]), flush=True)


if __name__ == "__main__":
    main()
