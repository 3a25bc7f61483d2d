"""Save/load round trip, refusal to overwrite, and corrupt or tampered adaptor folders."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from matryoshka_rag import (
    AdaptorConfig,
    CorruptAdaptorError,
    InputError,
    MatryoshkaAdaptor,
    UnsupervisedConfig,
    load_adaptor,
    save_adaptor,
    train_unsupervised,
)


@pytest.fixture(scope="module")
def trained(scifact_vectors):
    config = UnsupervisedConfig(max_steps=20, eval_every=10, batch_size=64, holdout=50)
    return train_unsupervised(
        scifact_vectors[:600], (32, 384), config, base_model="all-MiniLM-L6-v2", progress=False
    )


def test_round_trip_gives_identical_vectors(trained, scifact_vectors, tmp_path):
    save_adaptor(trained, tmp_path / "adaptor")
    loaded = load_adaptor(tmp_path / "adaptor")
    assert loaded.config == trained.config
    assert loaded.fingerprint() == trained.fingerprint()
    sample = scifact_vectors[:50]
    assert np.array_equal(loaded.transform(sample, 32), trained.transform(sample, 32))
    assert not np.allclose(
        trained.transform(sample, 32), MatryoshkaAdaptor(trained.config).transform(sample, 32)
    )
    config = json.loads((tmp_path / "adaptor" / "config.json").read_text())
    assert config["config"]["base_model"] == "all-MiniLM-L6-v2"
    assert config["training"]["unsupervised"]["max_steps"] == 20
    assert "holdout_loss" in config["metrics"]
    assert loaded.metadata["training"]["mode"] == "unsupervised"


def test_refuses_to_overwrite_without_flag(trained, tmp_path):
    save_adaptor(trained, tmp_path / "adaptor")
    before = (tmp_path / "adaptor" / "model.safetensors").read_bytes()
    other = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(384,)))
    with pytest.raises(InputError, match="already holds an adaptor"):
        save_adaptor(other, tmp_path / "adaptor")
    assert (tmp_path / "adaptor" / "model.safetensors").read_bytes() == before
    save_adaptor(other, tmp_path / "adaptor", overwrite=True)
    assert load_adaptor(tmp_path / "adaptor").config.dims == (384,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adaptor"]  # no staging folders left


def test_flipped_weight_byte_is_detected(trained, tmp_path):
    path = save_adaptor(trained, tmp_path / "adaptor")
    weights = bytearray((path / "model.safetensors").read_bytes())
    weights[-3] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(CorruptAdaptorError, match="sha256.*corrupt or tampered"):
        load_adaptor(path)


def test_weights_replaced_with_matching_checksum_are_detected(trained, tmp_path):
    """Someone swaps the weights and updates weights_sha256: the fingerprint still catches it."""
    path = save_adaptor(trained, tmp_path / "adaptor")
    state = load_file(str(path / "model.safetensors"))
    state["mlp.2.bias"] += 0.1
    save_file(state, str(path / "model.safetensors"))
    import hashlib

    config = json.loads((path / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptAdaptorError, match="fingerprint: tampered"):
        load_adaptor(path)


def test_edited_config_is_detected(trained, tmp_path):
    path = save_adaptor(trained, tmp_path / "adaptor")
    config = json.loads((path / "config.json").read_text())
    config["config"]["base_model"] = "text-embedding-3-small"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptAdaptorError, match="tampered"):
        load_adaptor(path)


@pytest.mark.parametrize("damage", ["truncate_json", "drop_weights", "not_adaptor"])
def test_broken_folders_name_the_problem(trained, tmp_path, damage):
    path = save_adaptor(trained, tmp_path / "adaptor")
    if damage == "truncate_json":
        (path / "config.json").write_text((path / "config.json").read_text()[:40])
        match = "not valid JSON"
    elif damage == "drop_weights":
        (path / "model.safetensors").unlink()
        match = "model.safetensors is missing"
    else:
        (path / "config.json").write_text(json.dumps({"hello": 1}))
        match = "not a matryoshka-rag-adaptor config"
    with pytest.raises(CorruptAdaptorError, match=match):
        load_adaptor(path)
    with pytest.raises(CorruptAdaptorError, match="config.json is missing"):
        load_adaptor(tmp_path / "nowhere")


def test_loading_never_unpickles(trained, tmp_path):
    """A pickle planted as the weights file is rejected by the checksum and never executed."""
    import pickle

    path = save_adaptor(trained, tmp_path / "adaptor")
    marker = tmp_path / "pwned"
    payload = pickle.dumps(type("Evil", (), {"__reduce__": lambda self: (marker.touch, ())})())
    (path / "model.safetensors").write_bytes(payload)
    config = json.loads((path / "config.json").read_text())
    import hashlib

    config["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptAdaptorError):
        load_adaptor(path)
    assert not marker.exists()
