"""A store's adaptor by Hugging Face Hub repo id (``"org/name"``), against the local stand-in for the Hub
(`tests.test_hub.FakeHub`, ``HF_ENDPOINT``): the store records the id as given, so it reopens without an
adaptor, offline from the download cache. A local folder, even one whose path reads as a repo id, is recorded
as its real path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag import load_adaptor
from matryoshka_rag.store import MatryoshkaStore
from tests.test_hub import FakeHub

REPO_ID = "acme/scifact-adaptor"

OPEN_AND_QUERY = """
import json, sys
import numpy as np
from matryoshka_rag.store import MatryoshkaStore
database, vectors, adaptor = sys.argv[1], np.load(sys.argv[2]), sys.argv[3] or None
ids = [f"doc-{i}" for i in range(len(vectors))]
store = MatryoshkaStore("hubbed", adaptor, path=database)
if adaptor is not None:
    store.upsert(ids, embeddings=vectors)
print(json.dumps({
    "recorded": store.small.metadata["adaptor_path"],
    "adaptor_path": store.adaptor_path,
    "fingerprint": store.adaptor.fingerprint(),
    "top": [hit.id for hit in store.query(vectors[3], k=3)],
}))
"""


def _open_and_query(folder: Path, hub_url: str, adaptor: str | None, offline: bool) -> dict:
    """Open (and fill, when `adaptor` is given) the store in `folder / "db"` in a fresh interpreter whose
    Hugging Face settings are the environment's: HF_ENDPOINT = the stand-in, HF_HOME = the download cache."""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(folder / "hf"),
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    command = [sys.executable, "-c", OPEN_AND_QUERY, str(folder / "db"), str(folder / "vectors.npy")]
    done = subprocess.run(
        [*command, adaptor or ""], capture_output=True, text=True, env=env, cwd=folder, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_hub_id_is_recorded_and_reopens_offline(small_adaptor_dir: Path, tmp_path: Path, scifact_vectors):
    np.save(tmp_path / "vectors.npy", scifact_vectors[:60])
    files = {p.name: p.read_bytes() for p in small_adaptor_dir.iterdir() if p.is_file()}
    expected = load_adaptor(small_adaptor_dir).fingerprint()
    with FakeHub({REPO_ID: files}) as hub:
        written = _open_and_query(tmp_path, hub.url, REPO_ID, offline=False)
    assert written == {
        "recorded": REPO_ID,
        "adaptor_path": REPO_ID,
        "fingerprint": expected,
        "top": written["top"],
    }
    assert written["top"][0] == "doc-3"
    with FakeHub({}) as hub:  # reopened from what the store recorded, served from the cache
        reopened = _open_and_query(tmp_path, hub.url, None, offline=True)
        assert hub.requests == []
    assert reopened == written


def test_a_local_folder_is_recorded_as_its_real_path(
    small_adaptor_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scifact_vectors
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "local").symlink_to(small_adaptor_dir)  # reads as a repo id, but is a folder here
    store = MatryoshkaStore("local", "acme/local", path=tmp_path / "db")
    store.upsert(["a", "b"], embeddings=scifact_vectors[:2])
    real = os.path.realpath(small_adaptor_dir)
    assert store.adaptor_path == real and store.small.metadata["adaptor_path"] == real
    monkeypatch.chdir(small_adaptor_dir.parent)  # the recorded path does not depend on where it was given
    reopened = MatryoshkaStore("local", path=tmp_path / "db")
    assert reopened.adaptor_path == real
    assert [hit.id for hit in reopened.query(scifact_vectors[1], k=1)] == ["b"]
