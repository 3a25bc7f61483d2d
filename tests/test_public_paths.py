"""The public paths the README names keep working after the move to one subpackage per concept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import matryoshka_rag
from matryoshka_rag.embeddings.chroma_function import MatryoshkaEmbeddingFunction
from matryoshka_rag.store import MatryoshkaStore, open_store


def test_every_root_export_resolves_to_its_home():
    for name in matryoshka_rag.__all__:
        value = getattr(matryoshka_rag, name)
        assert getattr(value, "__name__", name) == name, name


def test_former_module_paths_serve_the_same_objects():
    from matryoshka_rag.chroma_embedding import MatryoshkaEmbeddingFunction as former_function
    from matryoshka_rag.retriever import MatryoshkaStore as former_store
    from matryoshka_rag.retriever import open_store as former_open

    assert former_store is MatryoshkaStore and former_open is open_store
    assert former_function is MatryoshkaEmbeddingFunction


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "matryoshka_rag.demo", "--help"],
        [sys.executable, "-m", "matryoshka_rag.cli", "--help"],
        [sys.executable, "-m", "matryoshka_rag.training.torchrun", "--help"],
        [str(Path(sys.executable).with_name("matryoshka-rag")), "--help"],
    ],
    ids=["demo", "cli", "torchrun", "script"],
)
def test_commands_run_from_their_homes(command):
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_the_former_distributed_entry_point_is_gone():
    done = subprocess.run(
        [sys.executable, "-m", "matryoshka_rag.distributed", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "No module named matryoshka_rag.distributed" in done.stderr
