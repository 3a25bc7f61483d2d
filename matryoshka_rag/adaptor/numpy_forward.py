"""The adaptor's forward pass in numpy, for serving without torch: `f(e) = z + MLP(z)`, `z = e` or `e @ R`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..validation import unit_rows
from .format import AdaptorConfig, fingerprint, read_adaptor_files

__all__ = ["NumpyAdaptor", "as_numpy_adaptor", "erf"]

# Abramowitz & Stegun 7.1.26: |erf(x) - approximation| <= 1.5e-7 for every x.
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x: np.ndarray) -> np.ndarray:
    """Elementwise error function, absolute error <= 1.5e-7 (numpy has none); keeps a float dtype."""
    x = np.asarray(x)
    t = 1.0 / (1.0 + _P * np.abs(x))
    poly = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4]))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))),  # torch's exact (erf) GELU
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
}


class NumpyAdaptor:
    """A trained adaptor as numpy arrays: `transform` equals `MatryoshkaAdaptor.transform` to float32 rounding.

    Attributes:
        config: the `AdaptorConfig`.
        metadata: training settings and metrics recorded beside the weights.
    """

    def __init__(
        self, config: AdaptorConfig, tensors: Mapping[str, np.ndarray], metadata: dict | None = None
    ) -> None:
        self.config = config
        self._fingerprint = fingerprint(config, tensors)
        self.metadata = dict(metadata or {})
        self._rotation = tensors.get("rotation") if config.rotation else None
        self._layers = [
            (
                np.ascontiguousarray(np.asarray(tensors[f"mlp.{2 * i}.weight"], np.float32).T),
                np.asarray(tensors[f"mlp.{2 * i}.bias"], np.float32),
            )
            for i in range(config.num_layers + 1)
        ]
        self._activation = _ACTIVATIONS[config.activation]

    @classmethod
    def from_folder(cls, path: str | os.PathLike) -> NumpyAdaptor:
        """Load an adaptor folder written by `save_adaptor` (or a Hub repo id), every checksum checked."""
        config, tensors, metadata = read_adaptor_files(path)
        return cls(config, tensors, metadata)

    @classmethod
    def from_module(cls, adaptor: Any) -> NumpyAdaptor:
        """The numpy twin of a `MatryoshkaAdaptor` (torch) object."""
        return cls(adaptor.config, adaptor.numpy_state(), adaptor.metadata)

    def fingerprint(self) -> str:
        """The same sha256 as `MatryoshkaAdaptor.fingerprint()` of these weights."""
        return self._fingerprint

    def check_base(self, base_dim: int, base_model: str | None = None) -> None:
        """Raise `AdaptorMismatchError` naming both sides if the base model or its dim differ."""
        self.config.check_base(base_dim, base_model)

    def rotate(self, embeddings: np.ndarray) -> np.ndarray:
        """`z`: the input the residual is added to, `(n, base_dim)` float32 (torch's precision)."""
        z = np.asarray(embeddings, dtype=np.float32)
        return z @ self._rotation if self._rotation is not None else z

    def forward(self, embeddings: np.ndarray) -> np.ndarray:
        """`(n, base_dim)` float32 -> `(n, base_dim)` float32, not normalised."""
        z = self.rotate(embeddings)
        hidden = z
        for weight, bias in self._layers[:-1]:
            hidden = self._activation(hidden @ weight + bias)
        weight, bias = self._layers[-1]
        return z + (hidden @ weight + bias)

    def _serving(self, dim: int) -> Callable[[np.ndarray], np.ndarray]:
        """The function whose output's prefix is served at `dim`: `rotate` or `forward`."""
        return self.rotate if self.config.served_prefix(dim) == "base" else self.forward

    def prefixes(self, embeddings: np.ndarray, dims: Sequence[int]) -> list[np.ndarray]:
        """The served prefixes `(n, m)` float32, not normalised, of base vectors `(n, base_dim)` for each m of
        `dims` (checked as `transform` checks them), each of `rotate` and `forward` computed at most once."""
        vectors, _ = self.config.transform_input(embeddings, max(dims))
        outputs = {serve: serve(vectors) for serve in {self._serving(m) for m in dims}}
        return [outputs[self._serving(m)][:, :m] for m in dims]

    def transform(
        self, embeddings: np.ndarray, dim: int | None = None, batch_size: int = 4096, normalize: bool = True
    ) -> np.ndarray:
        """Adapt base vectors `(n, base_dim)` and keep the first `dim` dims: `(n, dim)` float32.

        The prefix is `f(e)[:dim]`, or `z[:dim]` where `config.served_prefix(dim)` is "base". `dim=None` keeps
        all dims. Rows are L2-normalised unless `normalize=False`.
        """
        vectors, dim = self.config.transform_input(embeddings, dim)
        out = np.empty((len(vectors), dim), dtype=np.float32)
        for start in range(0, len(vectors), batch_size):
            adapted = self._serving(dim)(vectors[start : start + batch_size])[:, :dim]
            out[start : start + batch_size] = unit_rows(adapted) if normalize else adapted
        return out


def as_numpy_adaptor(adaptor: Any) -> NumpyAdaptor:
    """A `NumpyAdaptor` from one, from a `MatryoshkaAdaptor` object, or from an adaptor folder's path."""
    if isinstance(adaptor, NumpyAdaptor):
        return adaptor
    if isinstance(adaptor, str | os.PathLike):
        return NumpyAdaptor.from_folder(adaptor)
    if hasattr(adaptor, "numpy_state") and isinstance(getattr(adaptor, "config", None), AdaptorConfig):
        return NumpyAdaptor.from_module(adaptor)
    raise InputError(
        f"adaptor must be a MatryoshkaAdaptor, a NumpyAdaptor or a folder, got {type(adaptor).__name__}"
    )
