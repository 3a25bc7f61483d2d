"""A store write refused by the disk (no space left, a read-only file system, no permission, the quota
reached) as one named error: `StoreWriteError` names the file, or the Chroma database, and the cause.

A failed write leaves the store as before it, or with the whole failed batch: rows are acknowledged only
after the searched records that point at them are written, and the next write cuts an unacknowledged tail
(`rerank_homes.FileVectors`). Once space (or permission) is back, the same write can be retried.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

__all__ = ["StoreWriteError", "chroma_write_cause", "chroma_write_error", "file_writes", "write_cause"]

_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
}
# how Chroma (SQLite, its Rust engine) words these causes
_CHROMA_WORDS = {
    "no space left": _CAUSES[errno.ENOSPC],
    "database or disk is full": _CAUSES[errno.ENOSPC],
    "os error 28": _CAUSES[errno.ENOSPC],
    "quota exceeded": _CAUSES[errno.EDQUOT],
    "read-only file system": _CAUSES[errno.EROFS],
    "readonly database": _CAUSES[errno.EROFS],
    "permission denied": _CAUSES[errno.EACCES],
}
MIN_FREE_BYTES = 1 << 20  # a failed Chroma write with less than this free in its folder ran out of space
_RETRY = "nothing acknowledged is lost: free space or fix permissions, then retry"


class StoreWriteError(InputError):
    """A store file or its Chroma database could not be written: no space left, a read-only file system,
    no permission or the disk quota reached."""


def write_cause(error: OSError) -> str | None:
    """The cause of an `OSError` that the disk refused a write for, in words; None for any other."""
    return _CAUSES.get(error.errno) if error.errno is not None else None


@contextmanager
def file_writes(path: Path, action: str) -> Iterator[None]:
    """Turn an `OSError` of a full or read-only disk into `StoreWriteError`: ``cannot <action> <path>: <cause>``."""
    try:
        yield
    except OSError as error:
        cause = write_cause(error)
        if cause is None:
            raise
        raise StoreWriteError(f"cannot {action} {path}: {cause} ({_RETRY})") from error


def chroma_write_cause(error: Exception, location: str) -> str | None:
    """Why Chroma failed a write at `location`, when its disk refused it: from the error's words, else from
    the database folder (under `MIN_FREE_BYTES` free, or not writable); None otherwise."""
    if isinstance(error, OSError) and (cause := write_cause(error)):
        return cause
    text = str(error).lower()
    for words, cause in _CHROMA_WORDS.items():
        if words in text:
            return cause
    folder = Path(location)
    if not folder.is_dir():  # a server's URL, or an in-memory client
        return None
    stat = os.statvfs(folder)
    if stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES:
        return _CAUSES[errno.ENOSPC]
    if stat.f_flag & os.ST_RDONLY:
        return _CAUSES[errno.EROFS]
    if not os.access(folder, os.W_OK):
        return _CAUSES[errno.EACCES]
    return None


def chroma_write_error(error: Exception, location: str, action: str) -> StoreWriteError | None:
    """`StoreWriteError` naming the Chroma database at `location` when its disk refused `action`, else None."""
    cause = chroma_write_cause(error, location)
    if cause is None:
        return None
    return StoreWriteError(
        f"cannot write the Chroma database at {location} while {action}: {cause} ({_RETRY})"
    )
