"""Atomic, durable file writes (a reader sees the old file or the new one, never a mix, even after a
crash), and the check that a folder path can be written, made before any work."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from .errors import InputError


def check_folder_path(path: str | Path) -> None:
    """Raise `InputError` if `path`, or the nearest of its parents that exists, is not a folder."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{existing} is a file, not a folder: give a folder path")


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (renames, new and deleted files) to disk; a no-op where folders cannot be
    opened (Windows)."""
    if os.name == "nt":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder: written, fsynced, renamed over
    `path` (`os.replace`), then the folder is fsynced. The file gets the usual permissions (umask)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write_bytes` of `text` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))
