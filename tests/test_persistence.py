"""Save/load round trip, what may be overwritten (only an adaptor, never losing it midway), and corrupt or
tampered adaptor folders."""

import hashlib
import json
import os
import re

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
from matryoshka_rag.adaptor.format import read_config, weights_file


def weights_of(folder):
    """The weights file that the folder's config.json names."""
    return folder / weights_file(read_config(folder), folder / "config.json")


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
    before = weights_of(tmp_path / "adaptor").read_bytes()
    other = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(384,)))
    with pytest.raises(InputError, match="already exists and holds an adaptor; pass overwrite=True"):
        save_adaptor(other, tmp_path / "adaptor")
    assert weights_of(tmp_path / "adaptor").read_bytes() == before
    save_adaptor(other, tmp_path / "adaptor", overwrite=True)
    assert load_adaptor(tmp_path / "adaptor").config.dims == (384,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adaptor"]  # no staging folders left
    folder = tmp_path / "adaptor"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        weights_of(folder).name,
    ]  # old weights gone


def test_flipped_weight_byte_is_detected(trained, tmp_path):
    path = save_adaptor(trained, tmp_path / "adaptor")
    weights = bytearray(weights_of(path).read_bytes())
    weights[-3] ^= 0xFF
    weights_of(path).write_bytes(bytes(weights))
    with pytest.raises(CorruptAdaptorError, match="sha256.*corrupt or tampered"):
        load_adaptor(path)


def test_weights_replaced_with_matching_checksum_are_detected(trained, tmp_path):
    """Someone swaps the weights and updates weights_sha256: the fingerprint still catches it."""
    path = save_adaptor(trained, tmp_path / "adaptor")
    state = load_file(str(weights_of(path)))
    state["mlp.2.bias"] += 0.1
    save_file(state, str(weights_of(path)))
    config = json.loads((path / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(weights_of(path).read_bytes()).hexdigest()
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
        match = f"{weights_of(path).name} is missing"
        weights_of(path).unlink()
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
    weights_of(path).write_bytes(payload)
    config = json.loads((path / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptAdaptorError):
        load_adaptor(path)
    assert not marker.exists()


def test_overwrite_leaves_the_old_or_the_new_adaptor_at_every_step(trained, tmp_path, monkeypatch):
    """After each file-system change of the replacement the folder is loaded: it must give the old adaptor
    or the new one, never an error (a crash at that point would leave it so); a file of the user's in the
    adaptor folder survives."""
    path = save_adaptor(trained, tmp_path / "adaptor")
    (path / "NOTES.md").write_text("trained on 600 SciFact documents")
    other = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(384,)))
    seen = []

    def observed(function):
        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            try:
                seen.append(load_adaptor(path).fingerprint())
            except InputError as error:
                seen.append(f"not loadable: {error}")
            return result

        return call

    for name in ("replace", "rename", "unlink", "rmdir"):
        monkeypatch.setattr(os, name, observed(getattr(os, name)))
    save_adaptor(other, path, overwrite=True)
    monkeypatch.undo()
    assert set(seen) == {trained.fingerprint(), other.fingerprint()}, seen
    assert seen[-1] == other.fingerprint()
    assert (path / "NOTES.md").read_text() == "trained on 600 SciFact documents"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_holding_anything_but_an_adaptor_survives_untouched(trained, tmp_path, overwrite):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    files = {
        "config.json": '{"model_type": "bert"}',  # another library's model folder
        "model.safetensors": "weights of another model",
        "src/main.py": "print('hello')",
    }
    for name, text in files.items():
        (project / name).write_text(text)
    message = f"{re.escape(str(project))} is a folder with other files in it, not an adaptor"
    with pytest.raises(InputError, match=message):
        save_adaptor(trained, project, overwrite=overwrite)
    assert {
        p.relative_to(project).as_posix(): p.read_text() for p in project.rglob("*") if p.is_file()
    } == files
    assert [p.name for p in tmp_path.iterdir()] == ["project"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_at_the_path_is_refused_and_kept(trained, tmp_path, overwrite):
    target = tmp_path / "adaptor"
    target.write_text("my notes")
    for path in (target, target / "inner"):
        with pytest.raises(InputError, match=f"{re.escape(str(target))} is a file, not a folder"):
            save_adaptor(trained, path, overwrite=overwrite)
    assert target.read_text() == "my notes"


def write_format_1(adaptor, folder):
    """An adaptor folder as format 1 wrote it: `model.safetensors`, and a config.json that does not name it."""
    folder.mkdir()
    weights = folder / "model.safetensors"
    state = {name: tensor.contiguous() for name, tensor in adaptor.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "matryoshka-rag-adaptor"})
    document = {
        **adaptor.metadata,
        "format": "matryoshka-rag-adaptor",
        "format_version": 1,
        "config": adaptor.config.to_dict(),
        "fingerprint": adaptor.fingerprint(),
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (folder / "config.json").write_text(json.dumps(document))


def test_a_format_1_folder_loads_and_is_replaced_whole(trained, tmp_path):
    folder = tmp_path / "adaptor"
    write_format_1(trained, folder)
    loaded = load_adaptor(folder)
    assert loaded.fingerprint() == trained.fingerprint() and loaded.metadata == trained.metadata
    other = MatryoshkaAdaptor(AdaptorConfig(base_dim=384, dims=(384,)))
    with pytest.raises(InputError, match="already exists and holds an adaptor; pass overwrite=True"):
        save_adaptor(other, folder)
    save_adaptor(other, folder, overwrite=True)
    assert load_adaptor(folder).fingerprint() == other.fingerprint()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", weights_of(folder).name]
