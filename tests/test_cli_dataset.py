"""`--dataset NAME` on the CLI's `train`, `eval` and `index`: the name is found in the user cache, downloaded
once from a local HTTP server serving a synthetic BEIR zip built here (no network)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag.adaptor.persistence import load_adaptor
from matryoshka_rag.cli.app import main

from .test_beir_source import NAME, ArchiveServer, unused_port

N_DOCS, N_QUERIES, DIM = 120, 30, 8


def synthetic_zip(with_train: bool) -> bytes:
    """`<NAME>/` with 120 documents, 30 queries, qrels/test.tsv and (when asked) qrels/train.tsv."""
    docs = "".join(
        json.dumps({"_id": f"d{i}", "title": "", "text": f"document {i}"}) + "\n" for i in range(N_DOCS)
    )
    queries = "".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(N_QUERIES))
    qrels = "query-id\tcorpus-id\tscore\r\n" + "".join(f"q{i}\td{i}\t1\r\n" for i in range(N_QUERIES))
    members = {"corpus.jsonl": docs, "queries.jsonl": queries, "qrels/test.tsv": qrels}
    if with_train:
        members["qrels/train.tsv"] = qrels
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, text in members.items():
            zipped.writestr(f"{NAME}/{name}", text)
    return buffer.getvalue()


def precomputed(folder: Path) -> Path:
    """Random unit vectors for every document and query id of the synthetic set, in `load_precomputed`'s
    layout; query i lies near document i."""
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(N_DOCS, DIM)).astype(np.float32)
    queries = docs[:N_QUERIES] + 0.1 * rng.normal(size=(N_QUERIES, DIM)).astype(np.float32)
    folder.mkdir()
    np.save(folder / "corpus.npy", docs)
    np.save(folder / "queries.npy", queries)
    (folder / "corpus_ids.json").write_text(json.dumps([f"d{i}" for i in range(N_DOCS)]))
    (folder / "queries_ids.json").write_text(json.dumps([f"q{i}" for i in range(N_QUERIES)]))
    return folder


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MATRYOSHKA_RAG_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_train_supervised_on_a_dataset_name(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ArchiveServer({f"datasets/{NAME}.zip": synthetic_zip(with_train=True)}) as server:
        monkeypatch.setenv("MATRYOSHKA_RAG_BEIR_URL", server.url)
        out = tmp_path / "adaptor"
        args = [
            "train",
            "--dataset",
            NAME,
            "--supervised",
            "--embeddings",
            str(precomputed(tmp_path / "vectors")),
        ]
        assert main([*args, "--dims", "4,8", "--max-steps", "4", "--out", str(out)]) == 0
        assert main([*args, "--dims", "4,8", "--max-steps", "4", "--out", str(out), "--overwrite"]) == 0
    training = load_adaptor(out).metadata["training"]
    assert "supervised_stage" in training  # the stage ran; `mode` names what its verdict returned
    assert training["mode"] == ("supervised" if training["supervised_stage"]["kept"] else "unsupervised")
    assert len(server.requests) == 1
    assert (data / "beir" / NAME / "qrels" / "train.tsv").is_file()


def test_train_supervised_needs_the_datasets_train_split(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with ArchiveServer({f"datasets/{NAME}.zip": synthetic_zip(with_train=False)}) as server:
        monkeypatch.setenv("MATRYOSHKA_RAG_BEIR_URL", server.url)
        code = main(["train", "--dataset", NAME, "--supervised", "--out", str(tmp_path / "adaptor")])
    assert code == 2
    assert f"{data / 'beir' / NAME / 'qrels' / 'train.tsv'} is missing" in capsys.readouterr().err


def test_supervised_without_a_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d0", "text": "x"}) + "\n")
    assert main(["train", "--corpus", str(corpus), "--supervised", "--out", str(tmp_path / "a")]) == 2
    assert "--supervised goes with --dataset" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "train", "index"])
def test_each_command_takes_a_name_and_fails_offline_in_one_line(
    command: str,
    data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MATRYOSHKA_RAG_BEIR_URL", f"http://127.0.0.1:{unused_port()}")
    rest = {
        "eval": ["--out", str(tmp_path / "report")],
        "train": ["--out", str(tmp_path / "adaptor")],
        "index": ["--adaptor", str(tmp_path / "adaptor"), "--path", str(tmp_path / "db")],
    }[command]
    assert main([command, "--dataset", NAME, *rest]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"matryoshka-rag {command}: error: cannot download BEIR dataset '{NAME}'")
    assert error.count("\n") == 1
