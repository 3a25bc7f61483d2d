"""An adaptor's config and its folder format (`config.json` + the weights file it names), without torch.

Reading an adaptor folder checks the weights' sha256 and the fingerprint of config + weights; both the
torch module (`persistence.load_adaptor`) and the numpy forward (`numpy_forward.NumpyAdaptor`) read through
`read_adaptor_files`, so a folder is accepted or refused by one set of checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ..errors import AdaptorMismatchError, InputError
from ..validation import check_dims, check_vectors
from .hub import adaptor_location

WEIGHTS = "model.safetensors"  # format 1's weights file
CONFIG = "config.json"
FORMAT = "matryoshka-rag-adaptor"
# 2: config.json names the weights file (`weights_file`, named by its sha256), so a replacement writes the
# new weights beside the old ones and switches by replacing config.json alone; 1: always `WEIGHTS`.
# 3: the config may hold `served_prefixes` (which prefix each dim serves); folders of 1 and 2 serve the adapted
# prefix at every dim, as they did.
FORMAT_VERSION = 3
READ_VERSIONS = (1, 2, 3)
WEIGHTS_FILE = re.compile(r"model\.[0-9a-f]{16}\.safetensors")
# Keys of config.json that describe the files; every other key is the adaptor's metadata.
RESERVED_KEYS = frozenset(
    {"format", "format_version", "config", "fingerprint", "weights_sha256", "weights_file"}
)

Activation = Literal["gelu", "relu", "tanh"]
# What an adaptor serves at a dim: "adapted" (the prefix of `f(e)`) or "base" (the prefix of `z`, the rotated
# base vector when the adaptor rotates, else the base vector itself: its full dim has the base's cosines).
PrefixSource = Literal["adapted", "base"]


class CorruptAdaptorError(InputError):
    """An adaptor folder whose files are missing, unreadable, or do not match their checksums."""


@dataclass(frozen=True)
class AdaptorConfig:
    """What defines an adaptor's shape and what it was trained for.

    Attributes:
        base_dim: dim of the base embeddings it takes and returns.
        dims: Matryoshka dims it was trained to keep, increasing, the last usually `base_dim`.
        base_model: name of the base embedding model it was trained on.
        hidden_dim: width of the MLP's hidden layers.
        num_layers: number of hidden layers of the MLP.
        activation: one of `Activation`.
        rotation: whether inputs are first multiplied by a fixed orthogonal matrix (the corpus's PCA axes).
        served_prefixes: `((dim, source), ...)`, increasing dims: the prefix (`PrefixSource`) served at each
            judged dim, chosen label-free at the end of unsupervised training (`scoring.kept`); a dim
            between judged dims follows the next judged dim up, a dim above all the largest. Empty (folders
            before format 3, supervised adaptors): "adapted" at every dim.
    """

    base_dim: int
    dims: tuple[int, ...]
    base_model: str = "unknown"
    hidden_dim: int = 0
    num_layers: int = 1
    activation: Activation = "gelu"
    rotation: bool = False
    served_prefixes: tuple[tuple[int, PrefixSource], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", check_dims(self.dims, self.base_dim))
        served = tuple((int(dim), source) for dim, source in self.served_prefixes)
        check_dims([dim for dim, _ in served] or [self.base_dim], self.base_dim)
        for _, source in served:
            if source not in get_args(PrefixSource):
                raise InputError(
                    f"served_prefixes: a source must be one of {get_args(PrefixSource)}, got {source!r}"
                )
        object.__setattr__(self, "served_prefixes", served)
        if self.hidden_dim <= 0:
            object.__setattr__(self, "hidden_dim", self.base_dim)
        if self.activation not in get_args(Activation):
            raise InputError(f"activation must be one of {get_args(Activation)}, got {self.activation!r}")
        if self.num_layers < 1:
            raise InputError(f"num_layers must be >= 1, got {self.num_layers}")

    def to_dict(self) -> dict:
        """The config as JSON values; `served_prefixes` as `{"dim": source}`, left out when empty (so that a
        folder written before format 3 keeps its fingerprint)."""
        data = {key: (list(value) if key == "dims" else value) for key, value in asdict(self).items()}
        served = data.pop("served_prefixes")
        return {**data, "served_prefixes": {str(dim): source for dim, source in served}} if served else data

    @classmethod
    def from_dict(cls, data: dict) -> AdaptorConfig:
        served = data.get("served_prefixes") or {}
        return cls(
            **{
                **data,
                "dims": tuple(data["dims"]),
                "served_prefixes": tuple(sorted((int(dim), source) for dim, source in served.items())),
            }
        )

    def served_prefix(self, dim: int) -> PrefixSource:
        """The prefix served at `dim` (see `served_prefixes`)."""
        for judged, source in self.served_prefixes:
            if dim <= judged:
                return source
        return self.served_prefixes[-1][1] if self.served_prefixes else "adapted"

    def check_base(self, base_dim: int, base_model: str | None = None) -> None:
        """Raise `AdaptorMismatchError` naming both sides if the base model or its dim differ."""
        if base_dim != self.base_dim:
            raise AdaptorMismatchError(
                f"adaptor was trained for base dim {self.base_dim} ({self.base_model}), "
                f"got vectors of dim {base_dim}" + (f" from {base_model}" if base_model else "")
            )
        if base_model is not None and base_model != self.base_model:
            raise AdaptorMismatchError(
                f"adaptor was trained for base model {self.base_model!r}, got {base_model!r}"
            )

    def transform_input(self, embeddings: object, dim: int | None) -> tuple[np.ndarray, int]:
        """Base vectors `(n, base_dim)` checked (dim, NaN, zero rows) as float32, and the output dim
        (`None`: all dims), checked to be in 1..base_dim."""
        vectors = check_vectors(embeddings, what="base embeddings")
        self.check_base(vectors.shape[1])
        dim = self.base_dim if dim is None else int(dim)
        if not 0 < dim <= self.base_dim:
            raise InputError(f"dim must be in 1..{self.base_dim}, got {dim}")
        return vectors, dim


def fingerprint(config: AdaptorConfig, tensors: Mapping[str, np.ndarray]) -> str:
    """sha256 of the config and every weight (as float32, by sorted name): equal iff the adaptors are."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name], dtype=np.float32).tobytes())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_adaptor_dir(path: str | Path) -> bool:
    """Whether `path` is a folder whose `config.json` is an adaptor's (of any version; not checked further)."""
    try:
        document = json.loads((Path(path) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("format") == FORMAT


def weights_file_name(sha256: str) -> str:
    """The name of a weights file with this sha256 (format 2)."""
    return f"model.{sha256[:16]}.safetensors"


def weights_file(document: dict, config_path: Path) -> str:
    """The name of the weights file that a checked `config.json` document names."""
    if document["format_version"] == 1:
        return WEIGHTS
    name = document.get("weights_file")
    if not isinstance(name, str) or not WEIGHTS_FILE.fullmatch(name):
        raise CorruptAdaptorError(f"{config_path} names no valid weights file: weights_file is {name!r}")
    return name


def read_config(path: str | Path) -> dict:
    """The parsed `config.json` of an adaptor folder (not checked against the weights)."""
    config_path = Path(path) / CONFIG
    if not config_path.is_file():
        raise CorruptAdaptorError(f"{path} is not an adaptor folder: {CONFIG} is missing")
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptAdaptorError(f"{config_path} is corrupt: not valid JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CorruptAdaptorError(f"{config_path} is not a {FORMAT} config")
    version = document.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise InputError(
            f"{config_path} was written in a newer format (version {version}) than this matryoshka-rag "
            f"reads (version {FORMAT_VERSION}): upgrade matryoshka-rag"
        )
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise CorruptAdaptorError(
            f"{config_path} has format_version {version!r}, this version reads {READ_VERSIONS}"
        )
    return document


def expected_shapes(config: AdaptorConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor an adaptor of `config` holds (`mlp.<i>` indexes the torch Sequential)."""
    shapes: dict[str, tuple[int, ...]] = (
        {"rotation": (config.base_dim, config.base_dim)} if config.rotation else {}
    )
    width = config.base_dim
    for layer in range(config.num_layers):
        shapes[f"mlp.{2 * layer}.weight"] = (config.hidden_dim, width)
        shapes[f"mlp.{2 * layer}.bias"] = (config.hidden_dim,)
        width = config.hidden_dim
    shapes[f"mlp.{2 * config.num_layers}.weight"] = (config.base_dim, width)
    shapes[f"mlp.{2 * config.num_layers}.bias"] = (config.base_dim,)
    return shapes


def read_adaptor_files(path: str | os.PathLike) -> tuple[AdaptorConfig, dict[str, np.ndarray], dict]:
    """Config, weights (name -> float32 array) and metadata of an adaptor folder, every checksum checked.

    `path`: a folder, or a Hugging Face Hub repo id (``"org/name"``, a string that is not a local folder),
    downloaded once into the Hugging Face cache (`hub.adaptor_location`) and checked as a folder.

    Raises `CorruptAdaptorError` if a file is missing or unreadable, the weights' sha256 differs from the
    one recorded, the tensors do not fit the config, or config and weights do not hash to the recorded
    fingerprint (tampering); `InputError` ("newer format") for a folder written by a later version.
    """
    path = adaptor_location(path)
    document = read_config(path)
    weights_path = path / weights_file(document, path / CONFIG)
    if not weights_path.is_file():
        raise CorruptAdaptorError(f"{path} is incomplete: {weights_path.name} is missing")
    if sha256_file(weights_path) != document.get("weights_sha256"):
        raise CorruptAdaptorError(
            f"{weights_path} does not match the sha256 in {CONFIG}: corrupt or tampered"
        )
    try:
        config = AdaptorConfig.from_dict(document["config"])
        tensors = load_file(str(weights_path))
    except (KeyError, TypeError, AttributeError, SafetensorError) as error:
        raise CorruptAdaptorError(f"{path} is corrupt: {error}") from error
    expected = expected_shapes(config)
    found = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    if expected != found:
        raise CorruptAdaptorError(f"{weights_path} holds tensors {found}, the config implies {expected}")
    tensors = {name: np.ascontiguousarray(tensor, dtype=np.float32) for name, tensor in tensors.items()}
    if fingerprint(config, tensors) != document.get("fingerprint"):
        raise CorruptAdaptorError(
            f"{path}: config and weights do not match the recorded fingerprint: tampered"
        )
    metadata = {key: value for key, value in document.items() if key not in RESERVED_KEYS}
    return config, tensors, metadata
