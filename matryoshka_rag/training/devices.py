"""Where training and evaluation run: a device name checked against this machine."""

from __future__ import annotations

import torch

from ..errors import InputError


def resolve_device(device: str | None = None) -> torch.device:
    """`device` if given (checked to exist), else CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"device {device!r} is not a device name (e.g. 'cpu', 'cuda', 'cuda:1')") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for, but CUDA is not available on this machine")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise InputError(
            f"device {device!r} was asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r} was asked for, but MPS is not available on this machine")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r}: only cpu, cuda and mps are supported")
    return resolved
