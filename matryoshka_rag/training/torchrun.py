"""Train an unsupervised adaptor on a `.npy` corpus with every rank of a torchrun launch (data-parallel: see
`matryoshka_rag.training.distributed`). Rank 0 writes the adaptor. Run, e.g. on 8 GPUs:

    torchrun --standalone --nproc-per-node 8 -m matryoshka_rag.training.torchrun corpus.npy runs/adaptor
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch.distributed as dist

from ..adaptor.folder_write import check_destination
from ..adaptor.persistence import save_adaptor
from ..errors import InputError
from ..validation import parse_dims
from .config import training_configs
from .unsupervised import train_unsupervised


def main(argv: list[str] | None = None) -> int:
    """Run the entry point on `argv` (default: the command line); bad input is one line on stderr and exit
    status 2."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", type=Path, help="(n, dim) float32/float16 .npy, opened memory-mapped")
    parser.add_argument("out", type=Path, help="adaptor folder written by rank 0")
    parser.add_argument("--dims", default=None, help="comma-separated Matryoshka dims")
    parser.add_argument("--device", default=None)
    parser.add_argument("--base-model", default="unknown")
    parser.add_argument(
        "--set", action="append", default=[], help="UnsupervisedConfig field, e.g. max_steps=200"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        _train(args)
    except InputError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> None:
    check_destination(args.out, args.overwrite, "--overwrite")
    defaults = training_configs()[0]
    settings = {}
    for item in args.set:
        key, equals, text = item.partition("=")
        if not equals:
            raise InputError(f"--set {item!r}: expected field=value, e.g. max_steps=200")
        settings[key] = _typed(key, text, getattr(defaults, key, None))
    config = training_configs(None, None, **settings)[
        0
    ]  # unknown names and values outside the allowed ones raise
    dims = parse_dims(args.dims) if args.dims else None
    adaptor = train_unsupervised(args.corpus, dims, config, args.base_model, args.device, progress=False)
    rank = dist.get_rank() if dist.is_initialized() else 0
    print(f"rank {rank} fingerprint {adaptor.fingerprint()}", flush=True)
    if rank == 0:
        save_adaptor(adaptor, args.out, overwrite=args.overwrite)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _typed(key: str, text: str, default: object) -> object:
    """`--set key=text` as the type of the field's default (text when the field is unknown or a string)."""
    if isinstance(default, bool):
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise InputError(f"--set {key}={text}: expected true or false")
    if isinstance(default, int | float):
        try:
            return type(default)(text)
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise InputError(f"--set {key}={text}: expected {kind}") from None
    return text


if __name__ == "__main__":
    sys.exit(main())
