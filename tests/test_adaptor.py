"""The adaptor module: identity at init, rotation start, shapes, transform, and input checks."""

import numpy as np
import pytest
import torch

from matryoshka_rag import AdaptorConfig, AdaptorMismatchError, InputError, MatryoshkaAdaptor
from matryoshka_rag.adaptor.pca import pca_projection, pca_rotation
from matryoshka_rag.validation import check_dims, default_dims


def test_identity_at_init(scifact_vectors):
    corpus = scifact_vectors[:64]
    adaptor = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(32, 384), num_layers=2))
    out = adaptor(torch.from_numpy(corpus))
    assert torch.equal(out, torch.from_numpy(corpus))
    assert adaptor.config.hidden_dim == 384


def test_rotation_start_keeps_full_dim_cosines(scifact_vectors):
    corpus = scifact_vectors[:500]
    rotation = pca_rotation(corpus)
    assert torch.allclose(rotation.T @ rotation, torch.eye(384), atol=1e-4)
    adaptor = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(32, 384), rotation=True), rotation)
    full = adaptor.transform(corpus)  # unit norm, as cosines are
    unit = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    assert np.allclose(full @ full.T, unit @ unit.T, atol=1e-4)
    # The first axis carries the most variance: prefixes are PCA projections.
    variances = (corpus @ rotation.numpy()).var(axis=0)
    assert variances[0] == pytest.approx(variances.max())


def test_pca_projection_is_centred_pca_and_the_rotation_keeps_inner_products(scifact_vectors):
    corpus = scifact_vectors[:500].astype(np.float64)
    centred = pca_projection(corpus)(corpus, 384)
    # sklearn's PCA.transform: zero-mean components, uncorrelated, variances the covariance's eigenvalues
    covariance = np.cov(centred, rowvar=False, bias=True)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(corpus, rowvar=False, bias=True)))[::-1]
    assert np.abs(centred.mean(axis=0)).max() < 1e-5
    assert np.allclose(covariance, np.diag(eigenvalues), atol=1e-5)
    np.testing.assert_allclose(pca_projection(corpus)(corpus[:10], 32), centred[:10, :32], atol=1e-5)
    rotated = pca_projection(corpus, centred=False)(corpus, 384)
    assert np.allclose(rotated @ rotated.T, corpus @ corpus.T, atol=1e-4)
    assert np.allclose(rotated - centred, rotated[:1] - centred[:1], atol=1e-4)  # the same axes, shifted


@pytest.mark.parametrize("num_layers", [1, 2])
def test_widened_computes_the_same_function_and_trains_the_new_units(scifact_vectors, num_layers):
    corpus = torch.from_numpy(scifact_vectors[:64])
    config = AdaptorConfig(base_dim=384, dims=(32, 384), num_layers=num_layers, hidden_dim=96, rotation=True)
    adaptor = MatryoshkaAdaptor(config, pca_rotation(scifact_vectors[:500]))
    torch.manual_seed(0)
    for parameter in adaptor.mlp.parameters():  # a trained adaptor: no zero weights anywhere
        parameter.data.normal_(0, 0.05)
    wider = adaptor.widened(256)
    assert wider.config.hidden_dim == 256 and wider.config.rotation
    assert torch.allclose(wider(corpus), adaptor(corpus), atol=1e-6)
    wider(corpus)[:, :32].pow(2).sum().backward()
    first, last = wider.mlp[0], wider.mlp[-1]
    assert last.weight.grad[:, 96:].abs().sum() > 0  # the new units are trained from the first step
    assert torch.equal(wider.widened(256)(corpus), wider(corpus))  # same width: a copy
    with pytest.raises(InputError, match="cannot narrow the hidden width 256 to 64"):
        wider.widened(64)
    assert first.weight.shape == (256, 384)


def test_transform_cuts_and_normalises(scifact_vectors):
    adaptor = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(32, 64, 384)))
    out = adaptor.transform(scifact_vectors[:10], dim=32)
    assert out.shape == (10, 32) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    with pytest.raises(InputError, match="dim must be in 1..384"):
        adaptor.transform(scifact_vectors[:10], dim=500)


def test_transform_rejects_bad_vectors(scifact_vectors):
    adaptor = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(32, 384)))
    with pytest.raises(AdaptorMismatchError, match="base dim 384.*dim 768"):
        adaptor.transform(np.ones((2, 768), dtype=np.float32))
    bad = scifact_vectors[:4].copy()
    bad[2, 5] = np.nan
    with pytest.raises(InputError, match="NaN or inf, first at row 2"):
        adaptor.transform(bad)
    bad[2] = 0
    with pytest.raises(InputError, match="all zeros, first at row 2"):
        adaptor.transform(bad)
    with pytest.raises(InputError, match="empty"):
        adaptor.transform(np.zeros((0, 384), dtype=np.float32))


def test_check_base_names_both_models():
    adaptor = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(384,), base_model="all-MiniLM-L6-v2"))
    with pytest.raises(AdaptorMismatchError, match="'all-MiniLM-L6-v2'.*'text-embedding-3-small'"):
        adaptor.check_base(384, "text-embedding-3-small")


def test_dims_checks():
    assert default_dims(384) == (16, 32, 64, 128, 256, 384)
    assert default_dims(768, smallest=32) == (32, 64, 128, 256, 512, 768)
    with pytest.raises(InputError, match="strictly increasing"):
        check_dims([64, 32], 384)
    with pytest.raises(InputError, match="must not exceed the base dim 384"):
        check_dims([32, 512], 384)
    with pytest.raises(InputError, match="positive"):
        check_dims([0, 32], 384)


def test_every_public_name_resolves():
    import matryoshka_rag

    for name in matryoshka_rag.__all__:
        assert getattr(matryoshka_rag, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        matryoshka_rag.nope  # noqa: B018
