"""The Matryoshka-Adaptor `f(e) = z + MLP(z)` with `z = e` or `z = e @ R` (a fixed orthogonal rotation)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .format import AdaptorConfig, fingerprint

__all__ = ["ACTIVATIONS", "AdaptorConfig", "MatryoshkaAdaptor"]

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}  # keys: adaptor_format.Activation


class MatryoshkaAdaptor(nn.Module):
    """`f(e) = z + MLP(z)`, `z = e @ R` when `config.rotation` else `e`; starts as `z` (last layer zero).

    With `R` the corpus's (uncentred) PCA axes, full-dim cosines are unchanged at init and every prefix
    starts as a PCA projection; the residual MLP then refines the prefixes.
    """

    rotation: torch.Tensor  # `R` `(base_dim, base_dim)`, a buffer; present when `config.rotation`

    def __init__(self, config: AdaptorConfig, rotation: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        dim, hidden = config.base_dim, config.hidden_dim
        if config.rotation:
            if rotation is None:
                rotation = torch.eye(dim)
            if tuple(rotation.shape) != (dim, dim):
                raise InputError(f"rotation must be ({dim}, {dim}), got {tuple(rotation.shape)}")
            self.register_buffer("rotation", rotation.to(torch.float32).clone())
        elif rotation is not None:
            raise InputError("a rotation was given but config.rotation is False")
        layers: list[nn.Module] = []
        width = dim
        for _ in range(config.num_layers):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[config.activation]()]
            width = hidden
        last = nn.Linear(width, dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)
        self.metadata: dict = {}  # training settings and final metrics, saved beside the weights

    def fingerprint(self) -> str:
        """sha256 of the config and every weight: two adaptors agree iff their fingerprints do."""
        return fingerprint(self.config, self.numpy_state())

    def numpy_state(self) -> dict[str, np.ndarray]:
        """Every weight and buffer as a float32 numpy array, by state-dict name."""
        return {
            name: tensor.detach().to("cpu", torch.float32).contiguous().numpy()
            for name, tensor in self.state_dict().items()
        }

    @torch.no_grad()
    def widened(self, hidden_dim: int) -> MatryoshkaAdaptor:
        """A copy whose MLP has `hidden_dim` hidden units per layer and computes the same `f`.

        Old units keep their weights; new units get fresh (seeded by the caller's torch RNG) incoming
        weights and zero weight into every old unit and the output, so training can use them from here.
        """
        if hidden_dim < self.config.hidden_dim:
            raise InputError(f"cannot narrow the hidden width {self.config.hidden_dim} to {hidden_dim}")
        wider = MatryoshkaAdaptor(
            replace(self.config, hidden_dim=hidden_dim),
            self.rotation.detach().cpu() if self.config.rotation else None,
        ).to(self.device)
        old_layers = [m for m in self.mlp if isinstance(m, nn.Linear)]
        new_layers = [m for m in wider.mlp if isinstance(m, nn.Linear)]
        for position, (old, new) in enumerate(zip(old_layers, new_layers)):
            if position == len(new_layers) - 1:  # the output layer starts at zero: no fresh weights
                new.weight.zero_()
                new.bias.zero_()
            rows, columns = old.weight.shape
            new.weight[:rows, :columns] = old.weight
            new.weight[:rows, columns:] = 0.0
            new.bias[:rows] = old.bias
        wider.metadata = copy.deepcopy(self.metadata)
        return wider

    def rotate(self, embeddings: torch.Tensor) -> torch.Tensor:
        """`z`: the input the residual is added to `(batch, dim)`."""
        return embeddings @ self.rotation if self.config.rotation else embeddings

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """`(batch, base_dim)` -> `(batch, base_dim)`, not normalised."""
        z = self.rotate(embeddings)
        return z + self.mlp(z)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_base(self, base_dim: int, base_model: str | None = None) -> None:
        """Raise `AdaptorMismatchError` naming both sides if the base model or its dim differ."""
        self.config.check_base(base_dim, base_model)

    @torch.no_grad()
    def transform(
        self, embeddings: np.ndarray, dim: int | None = None, batch_size: int = 4096, normalize: bool = True
    ) -> np.ndarray:
        """Adapt base vectors `(n, base_dim)` and keep the first `dim` dims: `(n, dim)` float32.

        The prefix is `f(e)[:dim]`, or `z[:dim]` where `config.served_prefix(dim)` is "base". `dim=None` keeps
        all dims. Rows are L2-normalised unless `normalize=False`.
        """
        vectors, dim = self.config.transform_input(embeddings, dim)
        serve = self.rotate if self.config.served_prefix(dim) == "base" else self
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(vectors), batch_size):
            batch = torch.from_numpy(vectors[start : start + batch_size]).to(self.device)
            adapted = serve(batch)[:, :dim]
            if normalize:
                adapted = torch.nn.functional.normalize(adapted, dim=-1)
            out.append(adapted.float().cpu().numpy())
        self.train(was_training)
        return np.concatenate(out)
