"""What a training checkpoint belongs to (settings, data fingerprints, dims, base model), checked on resume so
that a stale checkpoint folder is refused instead of silently continued."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

# Settings that say when to stop, not what is trained: a run may be resumed with other values.
STOPPING_FIELDS = ("max_steps", "patience")


def array_fingerprint(array: np.ndarray, sample_rows: int = 1024) -> str:
    """sha256 of an array's shape, dtype and up to `sample_rows` evenly spaced rows: cheap for a
    memory-mapped corpus of any size."""
    rows = np.unique(np.linspace(0, len(array) - 1, min(len(array), sample_rows)).astype(np.int64))
    digest = hashlib.sha256(f"{tuple(array.shape)} {array.dtype}".encode())
    digest.update(np.ascontiguousarray(array[rows]).tobytes())
    return digest.hexdigest()


def relevance_fingerprint(relevance: Sequence[Mapping[int, float]]) -> str:
    """sha256 of per-query `{corpus row: grade}` lists, in order."""
    rows = [sorted((int(d), float(g)) for d, g in judged.items()) for judged in relevance]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def run_identity(config: Any, **inputs: Any) -> dict:
    """The identity recorded in a checkpoint: `config`'s fields (a dataclass; `STOPPING_FIELDS` left out) and
    `inputs` (fingerprints, dims, names, other configs), as plain JSON values."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in STOPPING_FIELDS}
    plain = {"config": settings}
    for name, value in inputs.items():  # a dataclass instance as its fields
        dataclass = dataclasses.is_dataclass(value) and not isinstance(value, type)
        plain[name] = dataclasses.asdict(value) if dataclass else value
    return json.loads(json.dumps(plain))


def check_resume(checkpoint: Path, recorded: dict | None, identity: dict) -> None:
    """Raise `InputError` naming the first difference (both values) if the checkpoint's recorded identity
    is not this run's."""
    if recorded is None:
        raise InputError(
            f"{checkpoint} records no run identity (an older version wrote it): delete it or choose another "
            f"checkpoint_dir"
        )
    difference = _first_difference(recorded, identity, "")
    if difference is not None:
        name, theirs, ours = difference
        raise InputError(
            f"{checkpoint} belongs to another run: its {name} is {theirs!r}, this run's is {ours!r}; delete it "
            f"or choose another checkpoint_dir"
        )


def _first_difference(recorded: Any, current: Any, name: str) -> tuple[str, Any, Any] | None:
    if isinstance(recorded, dict) and isinstance(current, dict):
        for key in sorted(set(recorded) | set(current)):
            found = _first_difference(recorded.get(key), current.get(key), f"{name}.{key}" if name else key)
            if found is not None:
                return found
        return None
    return None if recorded == current else (name, recorded, current)
