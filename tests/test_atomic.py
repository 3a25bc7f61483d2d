"""Atomic writes: the helper, and `eval`'s report files written through it."""

import contextlib
import json
import os
import stat

import pytest

from matryoshka_rag.atomic import atomic_write_bytes, atomic_write_text
from matryoshka_rag.evaluation.beir_eval import write_report

REPORT_FILES = ["ndcg.png", "results.json", "results.md"]


def results(score: float) -> dict:
    """A `results.json` document as `evaluate` returns it (two methods, two dims)."""
    by_method = {"truncate": {"32": score, "384": 0.6}, "unsupervised": {"32": score + 0.1, "384": 0.6}}
    return {
        "dataset": "scifact",
        "model": "all-MiniLM-L6-v2",
        "base_dim": 384,
        "dims": [32, 384],
        "ndcg@10": by_method,
        "recall@100": by_method,
        "train_seconds": {"truncate": 0.0, "unsupervised": 3.0},
    }


def test_report_files_are_replaced_whole_so_an_open_reader_keeps_the_old_one(tmp_path):
    write_report(results(0.3), tmp_path)
    with contextlib.ExitStack() as stack:
        readers = {name: stack.enter_context(open(tmp_path / name, "rb")) for name in REPORT_FILES}
        old = {name: (tmp_path / name).read_bytes() for name in REPORT_FILES}
        write_report(results(0.4), tmp_path)
        for name, reader in readers.items():
            assert reader.read() == old[name], f"{name} was rewritten in place"
            assert (tmp_path / name).read_bytes() != old[name]
    assert json.loads((tmp_path / "results.json").read_text())["ndcg@10"]["truncate"]["32"] == 0.4
    assert sorted(p.name for p in tmp_path.iterdir()) == REPORT_FILES  # no temporary files left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "results.json", '{"ndcg": 0.5}\n')
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "text where bytes belong")  # fails after the temporary file is opened
    assert path.read_text() == '{"ndcg": 0.5}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_written_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = atomic_write_bytes(tmp_path / "ndcg.png", b"\x89PNG")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert path.read_bytes() == b"\x89PNG"
