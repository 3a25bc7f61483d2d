"""The numpy forward (serving without torch) against the torch adaptor it mirrors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from matryoshka_rag import AdaptorConfig, MatryoshkaAdaptor, save_adaptor
from matryoshka_rag.adaptor.format import FORMAT_VERSION
from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor, as_numpy_adaptor, erf
from matryoshka_rag.errors import AdaptorMismatchError, InputError


def _trained_like(config: AdaptorConfig, seed: int = 0) -> MatryoshkaAdaptor:
    """An adaptor with every weight random (a fresh one's last layer is zero, which would hide the MLP)."""
    torch.manual_seed(seed)
    rotation = torch.linalg.qr(torch.randn(config.base_dim, config.base_dim))[0] if config.rotation else None
    adaptor = MatryoshkaAdaptor(config, rotation)
    with torch.no_grad():
        for parameter in adaptor.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.2)
    return adaptor


def test_erf_matches_math_erf():
    x = np.linspace(-6, 6, 2001)
    assert np.abs(erf(x) - np.array([math.erf(v) for v in x])).max() < 2e-7


@pytest.mark.parametrize(
    ("activation", "num_layers", "rotation"),
    [("gelu", 1, False), ("gelu", 2, True), ("relu", 1, True), ("tanh", 2, False)],
)
def test_transform_equals_the_torch_forward(activation, num_layers, rotation, scifact_vectors):
    config = AdaptorConfig(384, (32, 64, 384), "all-MiniLM-L6-v2", 96, num_layers, activation, rotation)
    adaptor = _trained_like(config)
    base = scifact_vectors[:300]
    twin = NumpyAdaptor.from_module(adaptor)
    assert twin.fingerprint() == adaptor.fingerprint()
    for dim in (32, 64, 384):
        np.testing.assert_allclose(twin.transform(base, dim=dim), adaptor.transform(base, dim=dim), atol=2e-6)
    raw = twin.transform(base, normalize=False)
    np.testing.assert_allclose(raw, adaptor.transform(base, normalize=False), rtol=1e-5, atol=1e-5)
    assert np.abs(raw - base).max() > 0.1  # the MLP is not a no-op here, so the check above means something


def test_folder_round_trip_and_mismatch_errors(tmp_path, scifact_vectors):
    adaptor = _trained_like(AdaptorConfig(384, (64, 384), "all-MiniLM-L6-v2", 64))
    adaptor.metadata = {"trained": "test"}
    folder = save_adaptor(adaptor, tmp_path / "adaptor")
    twin = as_numpy_adaptor(folder)
    assert twin.fingerprint() == adaptor.fingerprint() and twin.metadata == {"trained": "test"}
    np.testing.assert_allclose(
        twin.transform(scifact_vectors[:5]), adaptor.transform(scifact_vectors[:5]), atol=2e-6
    )
    with pytest.raises(AdaptorMismatchError, match="base dim 384.*dim 128"):
        twin.transform(np.ones((2, 128), np.float32))
    with pytest.raises(InputError, match="NaN"):
        twin.transform(np.full((1, 384), np.nan, np.float32))
    with pytest.raises(InputError, match="dim must be in 1..384"):
        twin.transform(scifact_vectors[:1], dim=0)
    with pytest.raises(InputError, match="got int"):
        as_numpy_adaptor(3)


def test_loading_and_transforming_never_imports_torch(small_adaptor_dir):
    code = (
        "import sys, numpy as np\n"
        "from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor\n"
        f"a = NumpyAdaptor.from_folder({str(small_adaptor_dir)!r})\n"
        "out = a.transform(np.ones((2, 384), np.float32), dim=64)\n"
        "assert out.shape == (2, 64)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_later_format_version_says_newer_format_not_tampered(tmp_path):
    import json

    folder = save_adaptor(_trained_like(AdaptorConfig(384, (64, 384))), tmp_path / "adaptor")
    document = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**document, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(InputError, match="newer format") as caught:
        NumpyAdaptor.from_folder(folder)
    assert "tampered" not in str(caught.value)


def test_prefixes_are_the_served_prefixes_with_each_source_computed_once(small_adaptor_dir, scifact_vectors):
    adaptor = NumpyAdaptor.from_folder(small_adaptor_dir)
    assert {adaptor.config.served_prefix(m) for m in (32, 384)} == {"adapted", "base"}  # both sources at work
    calls = []
    forward = adaptor.forward
    adaptor.forward = lambda x: calls.append(len(x)) or forward(x)
    dims = (32, 64, 384)
    prefixes = adaptor.prefixes(scifact_vectors[:50], dims)
    assert calls == [50]
    for dim, prefix in zip(dims, prefixes):
        np.testing.assert_array_equal(prefix, adaptor.transform(scifact_vectors[:50], dim, normalize=False))
    with pytest.raises(InputError, match="NaN"):
        adaptor.prefixes(np.full((1, 384), np.nan, np.float32), dims)
