"""Adaptor folders on the Hugging Face Hub: a repo id (``"org/name"``) in the place of a folder path.

A string that is not an existing local folder but reads as a repo id is downloaded once into the Hugging Face
cache with ``huggingface_hub.snapshot_download`` (``$HF_ENDPOINT``, ``$HF_HOME`` and ``$HF_HUB_OFFLINE`` apply
as for any Hub model) and read from there through the same checks as a local folder
(`adaptor.format.read_adaptor_files`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError

__all__ = ["adaptor_location", "download_adaptor", "is_repo_id"]

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def is_repo_id(text: str) -> bool:
    """Whether `text` has the form of a Hub repo id, ``owner/name`` (letters, digits, ``._-``)."""
    return bool(_REPO_ID.fullmatch(text)) and ".." not in text


def adaptor_location(path: str | os.PathLike) -> Path:
    """The local folder of an adaptor: `path` itself when it is a folder (or is given as a `Path`, or does not
    read as a repo id), else the downloaded snapshot of the Hub repo `path` (`download_adaptor`)."""
    local = Path(path).expanduser()
    if local.is_dir() or not isinstance(path, str) or not is_repo_id(path):
        return local
    return download_adaptor(path)


def download_adaptor(repo_id: str) -> Path:
    """The local snapshot of the Hub model repo `repo_id`, downloaded once (later calls use the cache).

    Raises `InputError` in one line when huggingface_hub is missing, the repo does not exist, or it cannot
    be reached and is not in the cache (offline).
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as error:
        raise InputError(
            f"{repo_id!r} is not a local folder; to load it from the Hugging Face Hub install huggingface_hub "
            "(pip install huggingface_hub; matryoshka-rag[minilm] brings it)"
        ) from error
    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now, not when huggingface_hub was imported
    try:
        return Path(snapshot_download(repo_id, endpoint=endpoint))
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise InputError(
            f"{repo_id!r} is neither a local adaptor folder nor a model repo on the Hugging Face Hub "
            f"({endpoint or 'huggingface.co'})"
        ) from error
    except LocalEntryNotFoundError as error:
        raise InputError(
            f"{repo_id!r} is not a local folder and the Hugging Face Hub cannot be reached (offline?) with no "
            "cached copy: download it once with network (or `hf download "
            f"{repo_id} --local-dir DIR`) and pass the folder"
        ) from error
    except (HfHubHTTPError, OSError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(
            f"{repo_id!r}: downloading it from the Hugging Face Hub failed: {first_line}"
        ) from error
