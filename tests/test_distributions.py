"""Each distribution installs alone and works (issue 15).

``benchmarks/distributions.py`` builds the four wheels, installs each into its own fresh venv with only its own
requirements (at ``constraints.txt``'s versions; the core from the wheel built beside it) and smoke-tests it there
(``benchmarks/distribution_smoke.py``): the LangChain package without ``llama_index``, the LlamaIndex packages
without ``langchain_core``, none with torch; vectors through the numpy adaptor equal the torch adaptor's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TRAIN_HINT = 'pip install "matryoshka-rag[train]"'
# What each distribution must not pull, stated here independently of the smoke test's own list.
MUST_BE_ABSENT = {
    "matryoshka-rag": {
        "torch",
        "faiss",
        "chromadb",
        "sentence_transformers",
        "langchain_core",
        "llama_index",
    },
    "langchain-matryoshka-rag": {"llama_index", "torch", "sentence_transformers"},
    "llama-index-embeddings-matryoshka-rag": {"langchain_core", "chromadb", "torch"},
    "llama-index-vector-stores-matryoshka-rag": {"langchain_core", "torch"},
}


@pytest.mark.slow
def test_each_distribution_installs_alone_and_works(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, BENCHMARKS / "distributions.py", "--out", out, "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    rows = json.loads((out / "results.json").read_text())
    assert {row["name"]: MUST_BE_ABSENT[row["name"]] <= set(row["absent"]) for row in rows} == dict.fromkeys(
        MUST_BE_ABSENT, True
    )
    core = json.loads((out / "matryoshka-rag.json").read_text())
    assert (
        core["missing_extra"]
        == f"matryoshka_rag.train_unsupervised needs torch, which is not installed: {TRAIN_HINT}"
    )
    assert (
        core["cli_error"]
        == f"matryoshka-rag train: error: this command needs torch, which is not installed: {TRAIN_HINT}"
    )
    langchain = json.loads((out / "langchain-matryoshka-rag.json").read_text())
    assert langchain["missing_extra"].startswith("training an adaptor (fit) needs torch")
    assert (
        len(langchain["adapted"]) == len(langchain["base"])
        and len(langchain["adapted"][0]) == langchain["dim"]
    )
    sizes = {row["name"]: row["site_packages_mib"] for row in rows}
    assert (
        sizes["matryoshka-rag"]
        < sizes["llama-index-embeddings-matryoshka-rag"]
        < sizes["langchain-matryoshka-rag"]
    )


def test_the_smoke_test_refuses_a_venv_holding_the_other_framework(tmp_path: Path) -> None:
    """This venv holds every distribution: the LangChain smoke test must fail on it, naming llama_index."""
    run = subprocess.run(
        [
            sys.executable,
            BENCHMARKS / "distribution_smoke.py",
            "langchain-matryoshka-rag",
            "-",
            tmp_path / "r.json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "llama_index is importable: the distribution pulls it" in run.stderr
    assert not (tmp_path / "r.json").exists()
