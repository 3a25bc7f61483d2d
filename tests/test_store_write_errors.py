"""A store write that the disk refuses (no space left, a read-only file system) is one named error naming the
path and the cause; the store keeps every acknowledged record, shows no part of the failed batch (it shows
none of it or all of it), and the write succeeds once retried.

Checked on a real disk (a 2 MiB tmpfs, full, then read-only; mounted where the tests may mount, else skipped
saying why), and by failing every write point of an upsert, a delete and a compaction in turn."""

from __future__ import annotations

import errno
import itertools
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from chromadb.api.client import Client
from chromadb.api.models.Collection import Collection
from chromadb.errors import InternalError

from matryoshka_rag.cli.app import main
from matryoshka_rag.data.beir import read_corpus
from matryoshka_rag.store import MatryoshkaStore, StoreWriteError, rerank_homes
from tests.conftest import SLICE_DIR, SLICE_EMBEDDINGS_DIR

# -- a real full disk ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 2 MiB tmpfs at `tmp_path/disk`; the test skips, printing why, where mounting is refused."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode:
        reason = f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}"
        print(reason)
        pytest.skip(reason)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_index_on_a_full_disk_is_one_line_and_resumes_once_space_is_back(
    small_disk, small_adaptor_dir, capsys
):
    """`matryoshka-rag index` of the SciFact slice (800 documents, ~2.5 MiB stored) onto 2 MiB: one line naming
    the database and the cause, exit 2; every record stored is whole; after the disk grows, the same command
    finishes the index."""
    db = small_disk / "db"
    command = [
        *("index", "--corpus", str(SLICE_DIR / "corpus.jsonl")),
        *("--embeddings", str(SLICE_EMBEDDINGS_DIR / "corpus.npy"), "--adaptor", str(small_adaptor_dir)),
        *("--path", str(db), "--collection", "docs", "--batch-size", "100"),
    ]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("matryoshka-rag index: error: cannot write ") and str(db) in err
    assert "no space left on the device" in err
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    vectors = np.load(SLICE_EMBEDDINGS_DIR / "corpus.npy")
    with MatryoshkaStore("docs", path=db, read_only=True) as store:
        stored = store.count()
        assert 0 < stored < 800 and stored % 100 == 0  # whole batches only
        records = store.get()
        assert len(records) == stored and all(document for document, _ in records.values())
        top = [store.query(vector, k=1)[0].id for vector in vectors[:stored:7]]
    ids, _ = read_corpus(SLICE_DIR / "corpus.jsonl")
    assert sorted(records) == sorted(ids[:stored]) and top == ids[:stored:7]
    assert main(command) == 0
    with MatryoshkaStore("docs", path=db, read_only=True) as store:
        assert store.count() == 800 and len(store.get()) == 800


def wait_until_nothing_open_under(folder: Path, seconds: float = 30.0) -> None:
    """Wait until this process holds no file under `folder` open; fail naming the files after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        held = []
        for descriptor in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{descriptor}")
            except OSError:  # closed while listing
                continue
            if target.startswith(f"{folder}/"):
                held.append(target)
        if not held:
            return
        assert time.monotonic() < deadline, f"still open after {seconds} s: {sorted(set(held))}"
        time.sleep(0.05)


def test_a_read_only_database_refuses_writing_by_name_and_writes_once_writable(
    small_disk, small_adaptor_dir, scifact_vectors
):
    db = small_disk / "db"
    with MatryoshkaStore("docs", small_adaptor_dir, path=db) as store:
        store.upsert([f"a{i}" for i in range(10)], embeddings=scifact_vectors[:10])
    assert isinstance(store.client, Client)
    store.client.close()
    wait_until_nothing_open_under(small_disk)  # Chroma's native side closes its SQLite handles after close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(StoreWriteError) as refused:
        MatryoshkaStore("docs", path=db)
    message = str(refused.value)
    assert (
        "\n" not in message and str(db / "matryoshka_rag") in message and "read-only file system" in message
    )
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    with MatryoshkaStore("docs", path=db) as store:
        store.upsert([f"a{i}" for i in range(10, 20)], embeddings=scifact_vectors[10:20])
        assert store.count() == 20 and store.query(scifact_vectors[15], k=1)[0].id == "a15"


# -- each write point failed in turn ---------------------------------------------------------------------


class FailingDisk:
    """Fails the `fail_at`-th write: every fsync (each append, cut, progress and counter write ends with one),
    the searched collection's upserts and deletes (after applying them when `chroma_applies`, as Chroma
    does when its compactor finds the disk full) and the removal of an old rerank file."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int, chroma_applies: bool) -> None:
        self.calls, self.fail_at = 0, fail_at
        fsync, upsert, delete = os.fsync, Collection.upsert, Collection.delete
        remove = rerank_homes.remove_file_set

        def failing_fsync(descriptor: int) -> None:
            self._fail(errno.ENOSPC)
            fsync(descriptor)

        def chroma(real: Callable) -> Callable:
            def write(collection: Collection, *args, **kwargs) -> None:
                if self._due():
                    if chroma_applies:
                        real(collection, *args, **kwargs)
                    raise InternalError("Error in compaction: No space left on device (os error 28)")
                real(collection, *args, **kwargs)

            return write

        def failing_remove(path: Path) -> None:
            self._fail(errno.EROFS)
            remove(path)

        monkeypatch.setattr(os, "fsync", failing_fsync)
        monkeypatch.setattr(Collection, "upsert", chroma(upsert))
        monkeypatch.setattr(Collection, "delete", chroma(delete))
        monkeypatch.setattr(rerank_homes, "remove_file_set", failing_remove)

    def _due(self) -> bool:
        self.calls += 1
        return self.calls == self.fail_at

    def _fail(self, code: int) -> None:
        if self._due():
            raise OSError(code, os.strerror(code))


IDS = [f"doc{i}" for i in range(40)]


def _open(path: Path, adaptor: Path) -> MatryoshkaStore:
    return MatryoshkaStore("docs", adaptor, path=path, shortlist_factor=100, max_shortlist_factor=100)


def _filled(path: Path, adaptor: Path, vectors: np.ndarray) -> MatryoshkaStore:
    """30 records with documents and metadata, 5 of them deleted (rows for a compaction to reclaim)."""
    store = _open(path, adaptor)
    metadatas = [{"part": i % 3, "name": f"n{i}"} for i in range(30)]
    store.upsert(IDS[:30], [f"text {i}" for i in range(30)], vectors[:30], metadatas)
    store.delete(IDS[:5])
    return store


def _state(store: MatryoshkaStore, vectors: np.ndarray) -> tuple:
    """What a user can see: the count, every record, and the hits (id, score, document) of a few queries."""
    hits = [
        [(hit.id, round(hit.score, 5), hit.document) for hit in store.query(vectors[i], k=60)]
        for i in (0, 12, 37)
    ]
    return store.count(), store.get(), hits


OPERATIONS: dict[str, Callable[[MatryoshkaStore, np.ndarray], object]] = {
    "upsert new": lambda store, v: store.upsert(IDS[30:], [f"new {i}" for i in range(10)], v[30:40]),
    "upsert existing": lambda store, v: store.upsert(
        IDS[10:20], embeddings=v[50:60], metadatas=[{"part": 9}] * 10
    ),
    "delete": lambda store, v: store.delete(IDS[10:20]),
    "compact": lambda store, v: store.compact(),
}


# fsyncs of the rerank rows (3) and progress and counter files (2 each), the Chroma write, old files' removal
WRITE_POINTS = {"upsert new": 8, "upsert existing": 8, "delete": 3, "compact": 10}


@pytest.mark.parametrize(
    ("operation", "chroma_applies"),
    [(name, applies) for name in OPERATIONS for applies in (False, True) if name != "compact" or not applies],
)
def test_each_failed_write_is_one_named_error_and_loses_nothing(
    tmp_path, small_adaptor_dir, scifact_vectors, operation, chroma_applies, monkeypatch
):
    vectors = scifact_vectors[:60]
    write = OPERATIONS[operation]
    twin = _filled(tmp_path / "twin", small_adaptor_dir, vectors)
    before = _state(twin, vectors)
    write(twin, vectors)
    after = _state(twin, vectors)
    twin.close()
    assert (before == after) == (operation == "compact")  # a compaction changes no record
    for n in itertools.count(1):
        db = tmp_path / f"db{n}"
        store = _filled(db, small_adaptor_dir, vectors)
        with monkeypatch.context() as patch:
            disk = FailingDisk(patch, n, chroma_applies)
            try:
                write(store, vectors)
            except StoreWriteError as error:
                message = str(error)
            else:
                assert disk.calls < n  # every write point has been failed
                store.close()
                break
        assert "\n" not in message and str(db) in message, message
        assert "no space left on the device" in message or "read-only file system" in message, message
        assert _state(store, vectors) in (before, after), f"write point {n}: {message}"
        write(store, vectors)  # the retry
        assert _state(store, vectors) == after, f"write point {n}: {message}"
        if operation == "compact":
            assert store.vectors.stored_rows() == 25  # only the live rows are left
        store.close()
        with _open(db, small_adaptor_dir) as reopened:
            assert _state(reopened, vectors) == after
    assert n - 1 >= WRITE_POINTS[operation], n  # every write point was failed in turn
