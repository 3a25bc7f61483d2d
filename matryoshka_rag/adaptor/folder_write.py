"""Writing an adaptor folder: where one may be written, and a replacement that leaves a loadable adaptor (the
old one or the new one) at the path at every instant, durably (files and folders fsynced).

A new folder is written beside the path and renamed onto it. An existing adaptor folder stays where it is:
the new weights file is written under a new name (its sha256), then `config.json`, which names the weights
file and holds their sha256, is replaced atomically (the switch), then the old weights file is deleted.
Nothing but the adaptor's own files is ever replaced or deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_text, check_folder_path, fsync_dir
from ..errors import InputError
from .format import CONFIG, WEIGHTS, WEIGHTS_FILE, is_adaptor_dir, weights_file_name

# Leftovers of an interrupted write (`atomic.atomic_write_bytes`'s temporary files).
_TEMPORARY = re.compile(r"\.(config\.json|model(\.[0-9a-f]{16})?\.safetensors)\.[0-9a-f]{12}\.tmp")


def check_destination(path: str | Path, overwrite: bool, flag: str = "overwrite=True") -> None:
    """Raise `InputError` unless an adaptor may be written at `path`: a missing or empty folder, or, with
    `overwrite` (named `flag` in the message), a folder that holds an adaptor. A file, or a folder holding
    anything else, is refused whatever `overwrite` says."""
    path = Path(path)
    check_folder_path(path)
    if not path.exists():
        return
    if is_adaptor_dir(path):
        if not overwrite:
            raise InputError(f"{path} already exists and holds an adaptor; pass {flag} to replace it")
    elif any(path.iterdir()):
        raise InputError(
            f"{path} is a folder with other files in it, not an adaptor: an adaptor is written only to a "
            f"new or empty folder, or over an adaptor folder"
        )


def write_adaptor_folder(path: str | Path, weights: bytes, document: dict, overwrite: bool = False) -> Path:
    """Write the safetensors bytes `weights` and the `config.json` `document` (which gains `weights_file`
    and `weights_sha256`) as the adaptor folder `path`; `check_destination` first."""
    path = Path(path)
    check_destination(path, overwrite)
    sha256 = hashlib.sha256(weights).hexdigest()
    name = weights_file_name(sha256)
    text = json.dumps({**document, "weights_file": name, "weights_sha256": sha256}, indent=2, sort_keys=True)
    if is_adaptor_dir(path):
        _replace_in_place(path, name, weights, text + "\n")
    else:
        _write_new(path, name, weights, text + "\n")
    return path


def _write_new(path: Path, name: str, weights: bytes, config: str) -> None:
    """Write the folder beside `path` and rename it onto `path` (missing or an empty folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        atomic_write_bytes(staging / name, weights)
        atomic_write_text(staging / CONFIG, config)
        if path.exists():
            path.rmdir()  # empty (checked): an adaptor appears at the path only whole, by the rename
        os.replace(staging, path)
        fsync_dir(path.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _replace_in_place(path: Path, name: str, weights: bytes, config: str) -> None:
    """New weights beside the old, then the atomic switch of `config.json`, then the old weights go."""
    fresh = not (path / name).exists()  # else the same weights, already named by the config
    atomic_write_bytes(path / name, weights)
    try:
        atomic_write_text(path / CONFIG, config)
    except BaseException:
        if fresh:
            (path / name).unlink(missing_ok=True)
        raise
    stale = [
        entry
        for entry in path.iterdir()
        if entry.name != name and (_is_weights(entry.name) or _TEMPORARY.fullmatch(entry.name))
    ]
    for entry in stale:
        entry.unlink()
    if stale:
        fsync_dir(path)


def _is_weights(name: str) -> bool:
    return name == WEIGHTS or bool(WEIGHTS_FILE.fullmatch(name))
