"""Extract a zip archive into a folder atomically: into a temporary folder beside it, then one rename, so the
folder is either absent or complete. Archives with paths escaping the folder or corrupt members are refused."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ..atomic import fsync_dir
from ..errors import InputError

__all__ = ["extract_zip"]


def extract_zip(
    archive: str | Path,
    destination: str | Path,
    member_root: str | None = None,
    required: Sequence[str] = (),
) -> Path:
    """Extract `archive` so that it becomes `destination` (which must not exist yet).

    `member_root`: when every member lies under this top-level folder of the archive (as in BEIR's
    ``<name>.zip`` holding ``<name>/...``), that folder's content becomes `destination`. Raises
    `InputError` for a file that is not a zip, a corrupt member, or a member path that is absolute or
    holds ``..``, or when a file named in `required` (a path inside `destination`) is missing; nothing is
    left at `destination` or beside it then.
    """
    archive, destination = Path(archive), Path(destination)
    temporary = destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.tmp")
    try:
        with zipfile.ZipFile(archive) as zipped:
            names = [_safe_name(name, archive) for name in zipped.namelist()]
            temporary.mkdir(parents=True)
            for info in zipped.infolist():
                zipped.extract(info, temporary)  # reads each member in full: a CRC mismatch raises here
        source = temporary
        if member_root and names and all(n.parts[0] == member_root for n in names):
            source = temporary / member_root
        missing = [name for name in required if not (source / name).is_file()]
        if missing:
            raise InputError(f"{archive} does not hold {', '.join(missing)}")
        os.rename(source, destination)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as error:
        raise InputError(f"{archive} is not a readable zip archive ({error})") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(temporary)
    fsync_dir(destination.parent)
    return destination


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    """The member path `name`; `InputError` if it would land outside the extraction folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise InputError(f"{archive}: refusing member {name!r}, whose path escapes the extraction folder")
    return path
