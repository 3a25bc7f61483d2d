"""Save and load an adaptor folder: `model.safetensors` + `config.json`. Loading never unpickles."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from .adaptor import MatryoshkaAdaptor
from .adaptor_format import (
    CONFIG,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS,
    CorruptAdaptorError,
    is_adaptor_dir,
    read_adaptor_files,
    read_config,
    sha256_file,
)
from .errors import InputError

__all__ = ["CorruptAdaptorError", "is_adaptor_dir", "load_adaptor", "read_config", "save_adaptor"]


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
            "weights_sha256": sha256_file(staging / WEIGHTS),
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


def load_adaptor(path: str | Path, device: str | torch.device = "cpu") -> MatryoshkaAdaptor:
    """Load an adaptor folder written by `save_adaptor`, checking both checksums.

    Raises `CorruptAdaptorError` if a file is missing or unreadable, the weights' sha256 differs from the
    one recorded, or the weights and config do not hash to the recorded fingerprint (tampering); see
    `adaptor_format.read_adaptor_files`.
    """
    config, tensors, metadata = read_adaptor_files(path)
    state = {name: torch.from_numpy(tensor) for name, tensor in tensors.items()}
    adaptor = MatryoshkaAdaptor(config, rotation=state.get("rotation"))
    adaptor.load_state_dict(state)
    adaptor.metadata = metadata
    return adaptor.to(device)
