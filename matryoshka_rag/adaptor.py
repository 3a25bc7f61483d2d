"""The Matryoshka-Adaptor `f(e) = z + MLP(z)` with `z = e` or `z = e @ R` (a fixed orthogonal rotation)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from .errors import AdaptorMismatchError, InputError
from .validation import check_dims, check_vectors

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class AdaptorConfig:
    """What defines an adaptor's shape and what it was trained for.

    Attributes:
        base_dim: dim of the base embeddings it takes and returns.
        dims: Matryoshka dims it was trained to keep, increasing, the last usually `base_dim`.
        base_model: name of the base embedding model it was trained on.
        hidden_dim: width of the MLP's hidden layers.
        num_layers: number of hidden layers of the MLP.
        activation: one of `ACTIVATIONS`.
        rotation: whether inputs are first multiplied by a fixed orthogonal matrix (the corpus's PCA axes).
    """

    base_dim: int
    dims: tuple[int, ...]
    base_model: str = "unknown"
    hidden_dim: int = 0
    num_layers: int = 1
    activation: str = "gelu"
    rotation: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", check_dims(self.dims, self.base_dim))
        if self.hidden_dim <= 0:
            object.__setattr__(self, "hidden_dim", self.base_dim)
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.num_layers < 1:
            raise InputError(f"num_layers must be >= 1, got {self.num_layers}")

    def to_dict(self) -> dict:
        return {key: (list(value) if key == "dims" else value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> AdaptorConfig:
        return cls(**{**data, "dims": tuple(data["dims"])})


class MatryoshkaAdaptor(nn.Module):
    """`f(e) = z + MLP(z)`, `z = e @ R` when `config.rotation` else `e`; starts as `z` (last layer zero).

    With `R` the corpus's (uncentred) PCA axes, full-dim cosines are unchanged at init and every prefix
    starts as a PCA projection; the residual MLP then refines the prefixes.
    """

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
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

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
        if base_dim != self.config.base_dim:
            raise AdaptorMismatchError(
                f"adaptor was trained for base dim {self.config.base_dim} ({self.config.base_model}), "
                f"got vectors of dim {base_dim}" + (f" from {base_model}" if base_model else "")
            )
        if base_model is not None and base_model != self.config.base_model:
            raise AdaptorMismatchError(
                f"adaptor was trained for base model {self.config.base_model!r}, got {base_model!r}"
            )

    @torch.no_grad()
    def transform(
        self, embeddings: np.ndarray, dim: int | None = None, batch_size: int = 4096, normalize: bool = True
    ) -> np.ndarray:
        """Adapt base vectors `(n, base_dim)` and keep the first `dim` dims: `(n, dim)` float32.

        `dim=None` keeps all dims. Rows are L2-normalised unless `normalize=False`.
        """
        vectors = check_vectors(embeddings, what="base embeddings")
        self.check_base(vectors.shape[1])
        dim = self.config.base_dim if dim is None else int(dim)
        if not 0 < dim <= self.config.base_dim:
            raise InputError(f"dim must be in 1..{self.config.base_dim}, got {dim}")
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(vectors), batch_size):
            batch = torch.from_numpy(vectors[start : start + batch_size]).to(self.device)
            adapted = self(batch)[:, :dim]
            if normalize:
                adapted = torch.nn.functional.normalize(adapted, dim=-1)
            out.append(adapted.float().cpu().numpy())
        self.train(was_training)
        return np.concatenate(out)
