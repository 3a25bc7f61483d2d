"""Find a BEIR dataset folder from a path or a name: the folder when one is given; else ``<name>`` in the
``shared/beir`` folder beside the repository; else the user's data cache, downloaded there once from the
public BEIR archive (``<url>/<name>.zip``) with a progress bar and extracted atomically.

The cache is ``$MATRYOSHKA_RAG_DATA/beir`` (default ``~/.cache/matryoshka-rag/beir``); the archive's base
URL is ``$MATRYOSHKA_RAG_BEIR_URL`` (default :data:`BEIR_URL`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import InputError
from .zip_extract import extract_zip

__all__ = [
    "BEIR_DATASETS",
    "BEIR_URL",
    "LOCAL_BEIR",
    "beir_cache_dir",
    "dataset_folder",
    "download_dataset",
]

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
"""Base URL of the public BEIR archive: ``<BEIR_URL>/<name>.zip``."""

BEIR_DATASETS = (
    "arguana",
    "climate-fever",
    "cqadupstack",
    "dbpedia-entity",
    "fever",
    "fiqa",
    "hotpotqa",
    "msmarco",
    "nfcorpus",
    "nq",
    "quora",
    "scidocs",
    "scifact",
    "trec-covid",
    "webis-touche2020",
)
"""The datasets the public BEIR archive serves (the others need a licence and are not downloadable)."""

LOCAL_BEIR = Path(__file__).resolve().parents[3] / "shared" / "beir"  # beside the repository
"""Offline copies beside the repository: ``<repo>/../shared/beir/<name>``."""

REQUIRED_FILES = ("corpus.jsonl", "queries.jsonl")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_CHUNK = 1 << 20


def beir_cache_dir() -> Path:
    """``$MATRYOSHKA_RAG_DATA/beir`` if the variable is set, else ``~/.cache/matryoshka-rag/beir``."""
    root = os.environ.get("MATRYOSHKA_RAG_DATA")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "matryoshka-rag"
    return base / "beir"


def dataset_folder(dataset: str | Path) -> Path:
    """The folder of `dataset`, a folder path or a BEIR name (see the module docstring for the order)."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        return path
    name = str(dataset)
    if not _NAME.fullmatch(name):
        raise InputError(f"BEIR dataset folder not found: {path}")
    if (LOCAL_BEIR / name).is_dir():
        return LOCAL_BEIR / name
    if name not in BEIR_DATASETS:
        raise InputError(
            f"BEIR dataset folder not found: {path}, and {name!r} is not a BEIR dataset name "
            f"(known: {', '.join(BEIR_DATASETS)})"
        )
    return download_dataset(name)


def download_dataset(name: str, cache_dir: str | Path | None = None, base_url: str | None = None) -> Path:
    """``<cache_dir>/<name>``, downloaded and extracted first if absent (default `beir_cache_dir()` and
    ``$MATRYOSHKA_RAG_BEIR_URL`` or `BEIR_URL`). Offline, or for a bad archive, `InputError` in one line."""
    if not _NAME.fullmatch(name):
        raise InputError(f"not a dataset name: {name!r}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else beir_cache_dir()
    folder = cache / name
    if _complete(folder):
        return folder
    if folder.exists():  # never replaced: it may hold the user's files
        missing = [file for file in REQUIRED_FILES if not (folder / file).is_file()]
        raise InputError(
            f"the dataset folder {folder} is incomplete (no {', '.join(missing)}): complete it, or remove it "
            f"to download {name!r} again"
        )
    base = base_url or os.environ.get("MATRYOSHKA_RAG_BEIR_URL") or BEIR_URL
    url = f"{base.rstrip('/')}/{name}.zip"
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f".{name}.{secrets.token_hex(6)}.zip.part"
    try:
        _fetch(url, archive, name, folder)
        try:
            extract_zip(archive, folder, member_root=name, required=REQUIRED_FILES)
        except OSError:
            if not _complete(folder):  # else another process extracted it first
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()
    return folder


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def _fetch(url: str, file: Path, name: str, folder: Path) -> None:
    """Stream `url` into `file` with a progress bar; `InputError` naming a local copy's place when it fails."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, file.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}.zip") as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        raise InputError(f"cannot download BEIR dataset {name!r}: {url} answered {error.code}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise InputError(
            f"cannot download BEIR dataset {name!r} from {url} ({reason}); offline? pass --dataset a folder "
            f"holding corpus.jsonl, queries.jsonl and qrels/, or unzip {name}.zip into {folder}"
        ) from error
