"""Repairing an embedded store from its rerank file, with real damage: Chroma's HNSW segment files half-saved
(opening names `matryoshka-rag repair`) or gone, then `repair` (Python and CLI) brings every acknowledged
record back; repairing a healthy store changes nothing; a repair killed midway and run again loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag.cli.app import main
from matryoshka_rag.store import MatryoshkaStore, StoreNeedsRepairError
from matryoshka_rag.store.layout import DEFAULT_HNSW

NAME = "docs"
DELETED = [f"d{i}" for i in range(0, 800, 97)]  # deleted after writing: a repair must not bring them back


def records(vectors: np.ndarray) -> dict[str, tuple[str | None, dict]]:
    """The records `build` leaves: documents on even rows, metadata on every third, neither on the rest (their
    ids live only in Chroma); every fifth replaced by a second upsert; `DELETED` removed."""
    expected = {}
    for i in range(len(vectors)):
        document = f"document {i}" if i % 2 == 0 else None
        metadata = {"row": i, "tag": "third"} if i % 3 == 0 else {}
        if i % 5 == 0:
            metadata = {**metadata, "replaced": True}
        expected[f"d{i}"] = (document, metadata)
    return {i: record for i, record in expected.items() if i not in DELETED}


def build(database: str, adaptor: str, vectors_file: str) -> None:
    """Write the store `records` describes (run in a child: Chroma keeps indexes in its process's memory)."""
    vectors = np.load(vectors_file)
    ids = [f"d{i}" for i in range(len(vectors))]
    hnsw = {**DEFAULT_HNSW, "sync_threshold": 100}  # the HNSW segment is saved to disk every 100 records
    with MatryoshkaStore(NAME, adaptor, path=database, small_dim=32, hnsw=hnsw) as store:
        documents = [f"document {i}" if i % 2 == 0 else "" for i in range(len(ids))]
        metadatas = [{"row": i, "tag": "third"} if i % 3 == 0 else None for i in range(len(ids))]
        store.upsert(ids, embeddings=vectors, metadatas=metadatas)
        with_documents = [i for i in range(len(ids)) if i % 2 == 0]
        store.upsert(
            [ids[i] for i in with_documents],
            texts=[documents[i] for i in with_documents],
            embeddings=vectors[with_documents],
        )
        fifth = list(range(0, len(ids), 5))
        store.upsert(
            [ids[i] for i in fifth], embeddings=vectors[fifth], metadatas=[{"replaced": True}] * len(fifth)
        )
        store.delete(DELETED)


def child(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def build_in_child(tmp_path: Path, adaptor: Path, vectors: np.ndarray) -> Path:
    vectors_file = tmp_path / "vectors.npy"
    np.save(vectors_file, vectors)
    database = tmp_path / "db"
    done = child(
        f"from tests.test_store_repair import build; build({str(database)!r}, "
        f"{str(adaptor)!r}, {str(vectors_file)!r})"
    )
    assert done.returncode == 0, done.stderr
    return database


@pytest.fixture
def built(tmp_path, small_adaptor_dir, scifact_vectors) -> Path:
    """A store whose rerank vectors are the base vectors (an adaptor trained without labels)."""
    return build_in_child(tmp_path, small_adaptor_dir, scifact_vectors)


def hnsw_files(database: Path) -> list[Path]:
    """The files of the searched collection's HNSW segment (the only segment folder: the rerank vectors live
    in a file)."""
    folders = [p for p in database.iterdir() if p.is_dir() and p.name != "matryoshka_rag"]
    assert len(folders) == 1
    files = sorted(p for p in folders[0].iterdir() if p.is_file())
    assert {p.name for p in files} >= {"header.bin", "data_level0.bin", "index_metadata.pickle"}
    return files


def half_save(database: Path) -> None:
    """Each HNSW file cut to half its size, as a kill in the middle of saving them leaves them."""
    for path in hnsw_files(database):
        os.truncate(path, path.stat().st_size // 2)


def rerank_bytes(database: Path) -> dict[str, bytes]:
    folder = database / "matryoshka_rag"
    return {
        p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".f16", ".keys", ".rec", ".progress")
    }


def check_every_record_is_back(database: Path, vectors: np.ndarray, rerank: dict[str, bytes]) -> None:
    expected = records(vectors)
    with MatryoshkaStore(NAME, path=database, read_only=True) as store:
        assert store.count() == len(expected)
        assert store.get() == expected
        assert store.get(where={"tag": "third"}) == {i: r for i, r in expected.items() if r[1].get("tag")}
        for record_id in expected:
            row = vectors[int(record_id[1:])]
            assert store.query(row, k=1)[0].id == record_id
    assert rerank_bytes(database) == rerank


def test_opening_a_half_saved_store_names_repair_which_brings_every_record_back(built, scifact_vectors):
    rerank = rerank_bytes(built)
    half_save(built)
    with pytest.raises(
        StoreNeedsRepairError, match=rf"matryoshka-rag repair --path {built} --collection {NAME}`"
    ):
        MatryoshkaStore(NAME, path=built, read_only=True)
    repaired = MatryoshkaStore.repair(NAME, path=built)
    assert (repaired.collection, repaired.records) == (f"{NAME}__d32", len(records(scifact_vectors)))
    check_every_record_is_back(built, scifact_vectors, rerank)


def test_the_cli_repairs_a_store_whose_hnsw_files_are_gone(built, scifact_vectors, capsys):
    rerank = rerank_bytes(built)
    for path in hnsw_files(built):
        path.unlink()
    assert main(["repair", "--path", str(built), "--collection", NAME]) == 0
    assert capsys.readouterr().out.strip() == (
        f"rebuilt {NAME}__d32 at {built}: {len(records(scifact_vectors))} records from the rerank file"
    )
    check_every_record_is_back(built, scifact_vectors, rerank)


def test_the_cli_refuses_a_missing_store_in_one_line(built, capsys):
    assert main(["repair", "--path", str(built), "--collection", "other"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"matryoshka-rag repair: error: no store 'other' at {built} to repair"
    )


def served(store: MatryoshkaStore, queries: np.ndarray) -> tuple:
    """What a store serves: its recorded layout and store id, its records, and each query's hits (ids, scores
    at the large dim, records) and scores at the small dim."""
    hits = [store.query(q, k=10) for q in queries]
    exact = [[(h.id, h.score, h.document, h.metadata) for h in found] for found in hits]
    small = np.array([[h.scores[store.small_dim] for h in found] for found in hits])
    return store.small.metadata, store.get(), exact, small


def test_repairing_a_healthy_store_changes_nothing_observable(built, scifact_vectors):
    rerank = rerank_bytes(built)
    queries = scifact_vectors[::40]
    with MatryoshkaStore(NAME, path=built, read_only=True) as store:
        *before, small_before = served(store, queries)
    MatryoshkaStore.repair(NAME, path=built)
    with MatryoshkaStore(NAME, path=built, read_only=True) as store:
        *after, small_after = served(store, queries)
    assert after == before
    # the small vectors are recomputed from the float16 rerank rows
    np.testing.assert_allclose(small_after, small_before, atol=2e-3)
    check_every_record_is_back(built, scifact_vectors, rerank)


KILL = """
import os, signal
from matryoshka_rag.store import repair
def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
{patch}
repair.repair({name!r}, {path!r})
"""
KILL_POINTS = {
    "after the journal, before the drop": "repair.FileVectors = kill",
    "after the drop": "repair._small_vectors = kill",
    "after the records, before the journal goes": "repair.StoreAccess.wrote = kill",
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_repair_killed_midway_then_run_again_loses_nothing(built, scifact_vectors, point):
    rerank = rerank_bytes(built)
    half_save(built)
    killed = child(KILL.format(patch=KILL_POINTS[point], name=NAME, path=str(built)))
    assert killed.returncode == -9, killed.stderr
    assert (built / "matryoshka_rag" / f"{NAME}.repair.json").exists()
    with pytest.raises(StoreNeedsRepairError, match="a repair of it was interrupted"):
        MatryoshkaStore(NAME, path=built, read_only=True)
    MatryoshkaStore.repair(NAME, path=built)
    assert not (built / "matryoshka_rag" / f"{NAME}.repair.json").exists()
    check_every_record_is_back(built, scifact_vectors, rerank)


UNACKNOWLEDGED = """
import os, signal
import numpy as np
from matryoshka_rag.store import MatryoshkaStore
from matryoshka_rag.store.rerank_homes import FileVectors
FileVectors.acknowledge = lambda self: os.kill(os.getpid(), signal.SIGKILL)
store = MatryoshkaStore({name!r}, path={path!r})
store.upsert([f"n{{i}}" for i in range(10)], texts=["new"] * 10, embeddings=-np.load({vectors!r})[:10])
"""


def test_records_written_by_an_upsert_killed_before_its_acknowledgement_are_kept(built, scifact_vectors):
    """Case 6: the kill lands after Chroma took the records, before the rerank file acknowledged their rows;
    the rows' pointers, read from Chroma's sqlite, keep them."""
    np.save(built.parent / "vectors.npy", scifact_vectors)
    killed = child(
        UNACKNOWLEDGED.format(name=NAME, path=str(built), vectors=str(built.parent / "vectors.npy"))
    )
    assert killed.returncode == -9, killed.stderr
    half_save(built)
    MatryoshkaStore.repair(NAME, path=built)
    with MatryoshkaStore(NAME, path=built, read_only=True) as store:
        assert store.count() == len(records(scifact_vectors)) + 10
        assert store.get([f"n{i}" for i in range(10)]) == {f"n{i}": ("new", {}) for i in range(10)}
        assert [store.query(-scifact_vectors[i], k=1)[0].id for i in range(10)] == [
            f"n{i}" for i in range(10)
        ]


def test_a_rerank_file_older_than_the_collection_is_named_and_repair_leaves_out_what_it_never_served(
    built, scifact_vectors, capsys
):
    """A rerank file restored from before an upsert: opening names repair; the records it lacks were never
    served (no acknowledged row), and repair leaves them out, saying how many."""
    rerank = rerank_bytes(built)
    np.save(built.parent / "vectors.npy", scifact_vectors)
    added = child(
        UNACKNOWLEDGED.replace("FileVectors.acknowledge = ", "_ = ").format(
            name=NAME, path=str(built), vectors=str(built.parent / "vectors.npy")
        )
    )
    assert added.returncode == 0, added.stderr
    for file_name, data in rerank.items():  # the rerank files as they were before that upsert
        (built / "matryoshka_rag" / file_name).write_bytes(data)
    with pytest.raises(
        StoreNeedsRepairError, match=rf"{len(records(scifact_vectors)) + 10} searchable records, but only"
    ):
        MatryoshkaStore(NAME, path=built, read_only=True)
    assert main(["repair", "--path", str(built), "--collection", NAME]) == 0
    assert (
        capsys.readouterr().out.strip().endswith("from the rerank file, 10 ids without a rerank row left out")
    )
    check_every_record_is_back(built, scifact_vectors, rerank)


def test_a_store_reranking_adapted_vectors_is_repaired_from_their_prefixes(
    tmp_path, supervised_adaptor_dir, scifact_vectors
):
    database = build_in_child(tmp_path, supervised_adaptor_dir, scifact_vectors)
    rerank = rerank_bytes(database)
    half_save(database)
    with pytest.raises(StoreNeedsRepairError):
        MatryoshkaStore(NAME, path=database, read_only=True)
    repaired = MatryoshkaStore.repair(NAME, path=database)
    assert repaired.records == len(records(scifact_vectors))
    with MatryoshkaStore(NAME, path=database, read_only=True) as store:
        assert store.large_vectors == "adapted"
    check_every_record_is_back(database, scifact_vectors, rerank)


DROP_KILLED = """
import os, signal
import numpy as np
from matryoshka_rag.store import MatryoshkaStore
from matryoshka_rag.store.rerank_homes import FileVectors
store = MatryoshkaStore({name!r}, {adaptor!r}, path={path!r})
store.upsert([f"d{{i}}" for i in range(20)], embeddings=np.load({vectors!r})[:20])
FileVectors.drop = lambda self: os.kill(os.getpid(), signal.SIGKILL)
store.drop()
"""


def test_a_drop_killed_after_deleting_the_collection_leaves_a_store_of_that_name_to_make_again(
    tmp_path, small_adaptor_dir, scifact_vectors
):
    """The kill lands between Chroma's delete and the rerank files' removal: the next store of that name owns
    a new, empty collection, removes the dropped store's files, and serves its own records."""
    database, vectors = tmp_path / "db", tmp_path / "vectors.npy"
    np.save(vectors, scifact_vectors[:20])
    killed = child(
        DROP_KILLED.format(
            name=NAME, adaptor=str(small_adaptor_dir), path=str(database), vectors=str(vectors)
        )
    )
    assert killed.returncode == -9, killed.stderr
    left = [
        path.name for path in (database / "matryoshka_rag").iterdir() if path.name.startswith(f"{NAME}.d")
    ]
    assert f"{NAME}.d384.progress" in left  # the dropped store's files
    with MatryoshkaStore(NAME, small_adaptor_dir, path=database) as store:
        assert store.count() == 0 and store.get() == {}
        store.upsert(["new"], texts=["a new record"], embeddings=scifact_vectors[3:4])
        assert [(hit.id, hit.document) for hit in store.query(scifact_vectors[3], k=3)] == [
            ("new", "a new record")
        ]
    with MatryoshkaStore(NAME, path=database, read_only=True) as store:
        assert store.get() == {"new": ("a new record", {})} and store.rerank_vectors(["d2"]) == {}
