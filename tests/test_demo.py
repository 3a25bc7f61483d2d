"""`make demo` (`python -m matryoshka_rag.cli.demo`): end to end on the committed SciFact slice with fewer training
steps (the same code path: report, supervised adaptor indexed into a store that reranks with its adapted
vectors, the query answered by the real all-MiniLM-L6-v2), and offline without the data, one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matryoshka_rag.cli import demo
from matryoshka_rag.validation import default_dims

from .conftest import SLICE_DIR, SLICE_EMBEDDINGS_DIR


@pytest.mark.slow
def test_the_demo_reports_indexes_the_supervised_adaptor_and_answers(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_UNSUPERVISED", {"max_steps": 20, "eval_every": 10})
    monkeypatch.setattr(demo, "DEMO_SUPERVISED", {"temperature": 0.05, "max_steps": 20, "eval_every": 10})
    out = tmp_path / "demo"
    argv = ["--dataset", str(SLICE_DIR), "--embeddings", str(SLICE_EMBEDDINGS_DIR), "--out", str(out)]
    assert (
        demo.main([*argv, "--query", "vitamin D and tuberculosis", "--cache", str(tmp_path / "c.sqlite")])
        == 0
    )
    printed = capsys.readouterr().out

    results = json.loads((out / "results.json").read_text())
    assert list(results["ndcg@10"]) == list(demo.DEMO_METHODS) and results["dims"] == list(default_dims(384))
    supervised = results["train_metrics"]["supervised"]
    assert supervised["best_step"] > 0  # the held-out queries chose a step after the start
    assert "| supervised |" in printed and "$ matryoshka-rag index" in printed
    store_config = json.loads((out / "adaptors" / "supervised" / "config.json").read_text())
    kept = store_config["training"]["supervised_stage"]["kept"]
    assert store_config["training"]["mode"] == ("supervised" if kept else "unsupervised")
    # the store serves the supervised ranking when its stage was kept, else reranks with the base vectors
    assert f"rerank vectors: {'adapted' if kept else 'base'}, 384 dims" in printed
    answers = [line for line in printed.splitlines() if line.strip()[:3] in ("1. ", "2. ", "3. ")]
    assert len(answers) == 3 and all("[small+rerank]" in a or "[widened]" in a for a in answers)
    assert "What a full run adds" in printed and "matryoshka-rag eval --dataset scifact" in printed
    assert (out / "chroma" / demo.STORE_MARK).is_file()  # a rerun may replace this store, and only this


def test_offline_without_the_dataset_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MATRYOSHKA_RAG_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("MATRYOSHKA_RAG_BEIR_URL", "http://127.0.0.1:9/datasets")  # nothing listens there
    assert demo.main(["--dataset", "arguana", "--out", str(tmp_path / "demo")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("matryoshka-rag demo: error: cannot download BEIR dataset 'arguana'")
    assert "pass --dataset a folder" in error and "\n" not in error
    assert not (tmp_path / "demo").exists()


def test_the_full_run_note_gives_the_measured_figures_and_the_command() -> None:
    results = {"dataset": "scifact", "model": "all-MiniLM-L6-v2", "ndcg@10": {"supervised": {"64": 0.7}}}
    note = demo.full_run_note(results, Path("/data/embeddings/all-MiniLM-L6-v2/scifact"))
    assert "--dataset scifact --embeddings /data/embeddings/all-MiniLM-L6-v2 --methods" in note
    assert "0.788 at 64" in note and "this demo: 0.700 at 64" in note
    other = demo.full_run_note({**results, "dataset": "fiqa"}, None)
    assert "--dataset fiqa --methods" in other and "measured" not in other


def test_a_store_folder_the_demo_did_not_write_is_refused_before_any_work(tmp_path, capsys) -> None:
    mine = tmp_path / "demo" / "chroma"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("the user's")
    argv = [
        "--dataset",
        str(SLICE_DIR),
        "--embeddings",
        str(SLICE_EMBEDDINGS_DIR),
        "--out",
        str(tmp_path / "demo"),
    ]
    assert demo.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "chroma exists and was not written by the demo; nothing was changed" in error and "\n" not in error
    assert (mine / "notes.txt").read_text() == "the user's"
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["chroma"]  # no training ran
