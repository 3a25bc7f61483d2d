"""Save and load an adaptor folder: `model.safetensors` + `config.json`. Loading never unpickles."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .adaptor import AdaptorConfig, MatryoshkaAdaptor
from .errors import InputError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "matryoshka-rag-adaptor"
FORMAT_VERSION = 1


class CorruptAdaptorError(InputError):
    """An adaptor folder whose files are missing, unreadable, or do not match their checksums."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_adaptor_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / CONFIG).is_file() or (path / WEIGHTS).is_file()


def save_adaptor(adaptor: MatryoshkaAdaptor, path: str | Path, overwrite: bool = False) -> Path:
    """Write `adaptor` (config, weights, `adaptor.metadata`) to the folder `path`, atomically.

    Files are written to a temporary sibling folder, then renamed into place, so a crash never leaves a
    half-written adaptor. An existing adaptor folder is replaced only with `overwrite=True`.
    """
    path = Path(path)
    if path.exists() and not overwrite and (is_adaptor_dir(path) or any(path.iterdir())):
        raise InputError(
            f"{path} already holds an adaptor (or other files); pass overwrite=True to replace it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {
            name: tensor.detach().to("cpu").contiguous() for name, tensor in adaptor.state_dict().items()
        }
        save_file(state, str(staging / WEIGHTS), metadata={"format": FORMAT})
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": adaptor.config.to_dict(),
            "fingerprint": adaptor.fingerprint(),
            "weights_sha256": _sha256(staging / WEIGHTS),
            **adaptor.metadata,
        }
        (staging / CONFIG).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, retired / path.name)
            os.replace(staging, path)
            shutil.rmtree(retired)
        else:
            os.replace(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return path


def read_config(path: str | Path) -> dict:
    """The parsed `config.json` of an adaptor folder (not checked against the weights)."""
    config_path = Path(path) / CONFIG
    if not config_path.is_file():
        raise CorruptAdaptorError(f"{path} is not an adaptor folder: {CONFIG} is missing")
    try:
        document = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptAdaptorError(f"{config_path} is corrupt: not valid JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CorruptAdaptorError(f"{config_path} is not a {FORMAT} config")
    if document.get("format_version") != FORMAT_VERSION:
        raise CorruptAdaptorError(
            f"{config_path} has format_version {document.get('format_version')}, this version reads {FORMAT_VERSION}"
        )
    return document


def load_adaptor(path: str | Path, device: str | torch.device = "cpu") -> MatryoshkaAdaptor:
    """Load an adaptor folder written by `save_adaptor`, checking both checksums.

    Raises `CorruptAdaptorError` if a file is missing or unreadable, the weights' sha256 differs from the
    one recorded, or the weights and config do not hash to the recorded fingerprint (tampering).
    """
    path = Path(path)
    document = read_config(path)
    weights_path = path / WEIGHTS
    if not weights_path.is_file():
        raise CorruptAdaptorError(f"{path} is incomplete: {WEIGHTS} is missing")
    if _sha256(weights_path) != document.get("weights_sha256"):
        raise CorruptAdaptorError(
            f"{weights_path} does not match the sha256 in {CONFIG}: corrupt or tampered"
        )
    try:
        config = AdaptorConfig.from_dict(document["config"])
        state = load_file(str(weights_path))
    except (KeyError, TypeError, SafetensorError) as error:
        raise CorruptAdaptorError(f"{path} is corrupt: {error}") from error
    adaptor = MatryoshkaAdaptor(config, rotation=state.get("rotation"))
    expected = {name: tuple(t.shape) for name, t in adaptor.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if expected != found:
        raise CorruptAdaptorError(f"{weights_path} holds tensors {found}, the config implies {expected}")
    adaptor.load_state_dict(state)
    if adaptor.fingerprint() != document.get("fingerprint"):
        raise CorruptAdaptorError(
            f"{path}: config and weights do not match the recorded fingerprint: tampered"
        )
    reserved = {"format", "format_version", "config", "fingerprint", "weights_sha256"}
    adaptor.metadata = {key: value for key, value in document.items() if key not in reserved}
    return adaptor.to(device)
