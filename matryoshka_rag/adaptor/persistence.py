"""Save and load an adaptor folder: `config.json` + the weights file it names. Loading never unpickles."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save

from .folder_write import check_destination, write_adaptor_folder
from .format import (
    FORMAT,
    FORMAT_VERSION,
    CorruptAdaptorError,
    is_adaptor_dir,
    read_adaptor_files,
    read_config,
)
from .torch_module import MatryoshkaAdaptor

__all__ = ["CorruptAdaptorError", "is_adaptor_dir", "load_adaptor", "read_config", "save_adaptor"]


def save_adaptor(adaptor: MatryoshkaAdaptor, path: str | Path, overwrite: bool = False) -> Path:
    """Write `adaptor` (config, weights, `adaptor.metadata`) to the folder `path`.

    A crash leaves the old adaptor or the new one at `path`, never half of one (`folder_write`). An
    existing adaptor folder is replaced only with `overwrite=True`; a file, or a folder holding anything
    but an adaptor, is refused with `InputError`.
    """
    check_destination(path, overwrite)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in adaptor.state_dict().items()}
    document = {
        **adaptor.metadata,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": adaptor.config.to_dict(),
        "fingerprint": adaptor.fingerprint(),
    }
    return write_adaptor_folder(path, save(state, metadata={"format": FORMAT}), document, overwrite)


def load_adaptor(path: str | Path, device: str | torch.device = "cpu") -> MatryoshkaAdaptor:
    """Load an adaptor folder written by `save_adaptor`, checking both checksums.

    Raises `CorruptAdaptorError` if a file is missing or unreadable, the weights' sha256 differs from the
    one recorded, or the weights and config do not hash to the recorded fingerprint (tampering); see
    `adaptor.format.read_adaptor_files`.
    """
    config, tensors, metadata = read_adaptor_files(path)
    state = {name: torch.from_numpy(tensor) for name, tensor in tensors.items()}
    adaptor = MatryoshkaAdaptor(config, rotation=state.get("rotation"))
    adaptor.load_state_dict(state)
    adaptor.metadata = metadata
    return adaptor.to(device)
