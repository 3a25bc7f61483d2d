"""Adaptors by Hugging Face Hub repo id (`matryoshka_rag.adaptor.hub`), against a local HTTP server standing in for the Hub
(``HF_ENDPOINT``): the endpoints ``huggingface_hub.snapshot_download`` calls for a model repo (repo info, file
tree, and HEAD + GET of each file under ``resolve/<commit>``). A real saved adaptor folder is served; a repo
with tampered weights is refused by the folder's own checks; offline, one line says what to do."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from matryoshka_rag.adaptor.hub import adaptor_location, is_repo_id
from matryoshka_rag.errors import InputError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """A ThreadingHTTPServer serving model repos `{repo id: {file name: bytes}}` at one commit; records the
    paths it was asked for."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos, self.requests = repos, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.requests.append(("HEAD", self.path))
                self._answer(body=False)

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path))
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = self.path.split("?")[0]
                for repo_id, files in hub.repos.items():
                    if path == f"/api/models/{repo_id}/revision/main":
                        siblings = [{"rfilename": name} for name in files]
                        return self._send(
                            json.dumps({"id": repo_id, "sha": COMMIT, "siblings": siblings}), body
                        )
                    if path == f"/api/models/{repo_id}/tree/{COMMIT}":
                        tree = [
                            {"type": "file", "path": name, "size": len(data), "oid": _git_blob_id(data)}
                            for name, data in files.items()
                        ]
                        return self._send(json.dumps(tree), body)
                    prefix = f"/{repo_id}/resolve/{COMMIT}/"
                    if path.startswith(prefix) and path[len(prefix) :] in files:
                        data = files[path[len(prefix) :]]
                        etag = {"ETag": f'"{_git_blob_id(data)}"', "X-Repo-Commit": COMMIT}
                        return self._send(data, body, etag)
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, data: str | bytes, body: bool, headers: dict | None = None) -> None:
                raw = data.encode() if isinstance(data, str) else data
                self.send_response(200)
                for key, value in {"Content-Length": str(len(raw)), **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


LOAD = """
import json, sys
from matryoshka_rag import InputError, load_adaptor
from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from langchain_matryoshka_rag import AdaptedEmbeddings
from langchain_core.embeddings import DeterministicFakeEmbedding
from llama_index.core import MockEmbedding
from llama_index.embeddings.matryoshka_rag import AdaptedEmbedding

out = {}
for repo in sys.argv[1:]:
    try:
        first, again = load_adaptor(repo), NumpyAdaptor.from_folder(repo)
        langchain = AdaptedEmbeddings.from_pretrained(base=DeterministicFakeEmbedding(size=384), path=repo, dim=32)
        llama = AdaptedEmbedding.from_pretrained(base=MockEmbedding(embed_dim=384), path=repo, dim=16)
        fingerprints = [first.fingerprint(), again.fingerprint(), langchain.adaptor.fingerprint()]
        fingerprints.append(llama.adaptor_fingerprint)
        out[repo] = fingerprints + [len(langchain.embed_query("q")), len(llama.get_query_embedding("q"))]
    except InputError as error:
        out[repo] = [type(error).__name__, str(error)]
print(json.dumps(out))
"""


def _load_in_process(hub_url: str, hf_home: Path, *repos: str, offline: bool = False) -> dict:
    """Load `repos` in a fresh interpreter whose Hugging Face settings are the environment's: HF_ENDPOINT =
    the fake hub, HF_HOME = a folder of the test's (the download cache)."""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "PYTHONPATH": os.pathsep.join(sys.path),  # what this process imports, the integrations included
    }
    done = subprocess.run(
        [sys.executable, "-c", LOAD, *repos], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_a_repo_id_downloads_once_and_loads_like_the_folder(small_adaptor_dir: Path, tmp_path: Path) -> None:
    from matryoshka_rag import load_adaptor

    files = _files(small_adaptor_dir)
    weights = next(name for name in files if name.endswith(".safetensors"))
    tampered = {**files, weights: files[weights][:-1] + bytes([files[weights][-1] ^ 1])}
    expected = load_adaptor(small_adaptor_dir).fingerprint()
    with FakeHub({"acme/scifact-adaptor": files, "acme/tampered": tampered}) as hub:
        found = _load_in_process(hub.url, tmp_path, "acme/scifact-adaptor", "acme/tampered", "acme/missing")
        downloads = [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]
    # torch, numpy, LangChain and LlamaIndex loaders, and the wrappers' output dims
    assert found["acme/scifact-adaptor"] == [expected] * 4 + [32, 16]
    assert sorted(downloads) == sorted(f"/acme/scifact-adaptor/resolve/{COMMIT}/{n}" for n in files) + sorted(
        f"/acme/tampered/resolve/{COMMIT}/{n}" for n in tampered
    )  # each file once, though the repo was loaded four times
    kind, message = found["acme/tampered"]
    assert kind == "CorruptAdaptorError" and "does not match the sha256" in message
    kind, message = found["acme/missing"]
    assert kind == "InputError" and "neither a local adaptor folder nor a model repo" in message

    # offline: the downloaded copy is served from the cache; a repo never downloaded is one clear line
    with FakeHub({}) as hub:
        offline = _load_in_process(hub.url, tmp_path, "acme/scifact-adaptor", "acme/other", offline=True)
        assert hub.requests == []
    assert offline["acme/scifact-adaptor"][0] == expected
    kind, message = offline["acme/other"]
    assert kind == "InputError" and "cannot be reached (offline?)" in message and "\n" not in message


def test_offline_without_a_cached_copy_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    with pytest.raises(InputError, match=r"'acme/never-published' is not a local folder .*offline") as caught:
        adaptor_location("acme/never-published")  # the tests run with HF_HUB_OFFLINE=1
    assert "\n" not in str(caught.value)


def test_folders_and_paths_are_never_looked_up_on_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "acme" / "local").mkdir(parents=True)
    assert adaptor_location("acme/local") == Path("acme/local")  # an existing folder wins
    assert adaptor_location(Path("acme/absent")) == Path("acme/absent")  # a Path is a path
    assert adaptor_location("runs/adaptor/") == Path(
        "runs/adaptor"
    )  # not a repo id: left to the folder checks
    assert [is_repo_id(t) for t in ("acme/x-1.2", "a/b/c", "../x", "acme/..", "/abs", "x")] == [
        True,
        False,
        False,
        False,
        False,
        False,
    ]
