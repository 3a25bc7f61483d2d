"""Every runnable example (``examples/*.py`` with a ``__main__``) as a user runs it: ``--quick`` on the committed
slice, in a subprocess with fresh runs, cache and home folders, answering SciFact questions from their qrels."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from matryoshka_rag.data.beir import BeirDataset

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
RUNNABLE = sorted(p.name for p in EXAMPLES.glob("*.py") if "__main__" in p.read_text())
QUESTIONS = 2  # what --quick asks: the slice's first test queries with qrels
STAND_IN = "answer: [offline stand-in"


def run_quick(example: str, tmp_path: Path) -> str:
    """The example's output after ``--quick`` (exit 0 asserted), its runs, cache, home and cwd in ``tmp_path``."""
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(sys.path),  # the code under test, as this process imports it
        "HOME": str(tmp_path / "home"),
        "MATRYOSHKA_RAG_CACHE": str(tmp_path / "cache.sqlite"),
        "OMP_NUM_THREADS": "1",  # as `make demo`: on 2 shared cores, two torch threads wait on each other
    }
    command = [sys.executable, str(EXAMPLES / example), "--quick", "--runs", str(tmp_path / "runs")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_runnable_examples_are_found() -> None:
    assert RUNNABLE == ["langchain_rag.py", "llamaindex_rag.py"]


@pytest.mark.parametrize("example", RUNNABLE)
def test_quick_run_answers_from_the_slice(example: str, tmp_path: Path, scifact: BeirDataset) -> None:
    out = run_quick(example, tmp_path)
    qrels = scifact.qrels("test")
    asked = [(q, t) for q, t in zip(scifact.query_ids, scifact.query_texts) if q in qrels][:QUESTIONS]
    blocks = out.split("\nQ: ")[1:]
    assert len(blocks) == QUESTIONS
    for (query_id, text), block in zip(asked, blocks):
        assert block.startswith(text + "\n")
        retrieved = re.findall(r"^  ([* ]) \[(\w+)\] ", block, flags=re.MULTILINE)
        assert len(retrieved) == 3 and {d for _, d in retrieved} <= set(scifact.corpus_ids)
        relevant = {d for d, grade in qrels[query_id].items() if grade > 0}
        found = {d for _, d in retrieved} & relevant
        assert found and {d for mark, d in retrieved if mark == "*"} == found  # relevant ones, marked
        assert STAND_IN in block
    assert f"{QUESTIONS}/{QUESTIONS} judged questions have a relevant document" in out
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*"))


def test_quick_adaptor_is_reused_only_for_the_same_training(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    demo = importlib.import_module("scifact_demo")
    vectors = demo.QUICK["embeddings"]
    one_step = demo.quick_adaptor(vectors, tmp_path, 1)
    assert "training on 800" in capsys.readouterr().out
    assert demo.quick_adaptor(vectors, tmp_path, 1) == one_step
    assert capsys.readouterr().out == f"adaptor: reusing {one_step}\n"
    two_steps = demo.quick_adaptor(vectors, tmp_path, 2)
    assert two_steps != one_step  # another training is not served the first one's adaptor
    assert {p.name for p in tmp_path.iterdir()} == {one_step.name, two_steps.name}
