"""The writer lock and change counter of an embedded store, with real processes: a second writer is refused
naming the holder, a killed holder releases the lock, stores of one process share it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag import InputError
from matryoshka_rag.store import MatryoshkaStore
from matryoshka_rag.store.processes import ChangeCounter, StoreLockedError, WriterLock

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from matryoshka_rag.store.processes import WriterLock
    WriterLock.acquire(Path(sys.argv[1]))
    print("held", flush=True)
    time.sleep(120)
    """
)


def _holder(folder: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    child = _holder(tmp_path / "matryoshka_rag")
    try:
        with pytest.raises(StoreLockedError, match=rf"open for writing by pid {child.pid} .*read_only=True"):
            WriterLock.acquire(tmp_path / "matryoshka_rag")
        assert not WriterLock.held(tmp_path / "matryoshka_rag")
    finally:
        child.kill()
        child.wait()


def test_a_killed_holder_releases_the_lock(tmp_path):
    child = _holder(tmp_path / "matryoshka_rag")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    path = WriterLock.acquire(tmp_path / "matryoshka_rag")
    try:
        assert WriterLock.held(tmp_path / "matryoshka_rag")
        assert f"pid {os.getpid()}" in path.read_text()
    finally:
        WriterLock.release(path)


def test_stores_of_one_process_share_the_lock_until_the_last_releases_it(tmp_path):
    folder = tmp_path / "matryoshka_rag"
    first = WriterLock.acquire(folder)
    second = WriterLock.acquire(folder)
    assert first == second
    WriterLock.release(first)
    probe = subprocess.run(
        [sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(folder)],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 1 and "StoreLockedError" in probe.stderr  # still held by the second store
    WriterLock.release(second)
    assert not WriterLock.held(folder)
    child = _holder(folder)  # free for another process now
    child.kill()
    child.wait()


def test_the_change_counter_counts_durably(tmp_path):
    counter = ChangeCounter(tmp_path, "docs")
    assert counter.read() == 0
    assert [counter.bump(), counter.bump()] == [1, 2]
    assert ChangeCounter(tmp_path, "docs").read() == 2


# -- the store: cases of several processes on one embedded store -------------------------------------------

STORE_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from matryoshka_rag.store import MatryoshkaStore, StoreLockedError
    from matryoshka_rag.errors import InputError
    path, adaptor, name, action, vectors, prefix = sys.argv[1:7]
    base = np.load(vectors)
    try:
        store = MatryoshkaStore(name, adaptor, path=path, read_only=action == "read")
        if action == "write":
            ids = [f"{prefix}{i}" for i in range(len(base))]
            for start in range(0, len(base), 100):
                store.upsert(ids[start : start + 100], embeddings=base[start : start + 100])
        elif action == "hold":  # keep the store open (as its writer) until stdin closes
            print("open", flush=True)
            sys.stdin.read()
        elif action == "read":  # report, each time asked on stdin, how many of the vectors find themselves
            print("open", flush=True)
            for line in sys.stdin:
                try:
                    hits = sum(store.query(v, k=1)[0].id == f"{prefix}{i}" for i, v in enumerate(base))
                    print(hits, store.count(), flush=True)
                except InputError as error:
                    print(f"{type(error).__name__}: {error}", flush=True)
    except StoreLockedError as error:
        print(f"LOCKED {error}", flush=True)
        sys.exit(3)
    print("done", flush=True)
    """
)


def _child(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STORE_CHILD, *map(str, args)], text=True, **kwargs)


def _opened(tmp_path: Path, adaptor: Path, action: str) -> subprocess.Popen:
    """A child that opened the store `docs` at `tmp_path/db` to `action` ("read" or "hold") the set B."""
    child = _child(
        [tmp_path / "db", adaptor, "docs", action, tmp_path / "B.npy", "B"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "open"
    return child


def _found(store, vectors: np.ndarray, prefix: str) -> int:
    """How many of `vectors` find their own record (`<prefix><i>`) as the top hit."""
    return sum(store.query(v, k=1)[0].id == f"{prefix}{i}" for i, v in enumerate(vectors))


@pytest.fixture
def three_sets(tmp_path, scifact_vectors):
    """Three disjoint sets of 200 real SciFact vectors, saved for child processes: A, B, C."""
    sets = {}
    for label, part in zip("ABC", np.split(scifact_vectors[:600], 3)):
        np.save(tmp_path / f"{label}.npy", part)
        sets[label] = part
    return sets


def test_a_second_writer_is_refused_and_loses_nothing(tmp_path, small_adaptor_dir, three_sets):
    """Case 1: P1 holds the store open and writes after P2 tried: P2 is refused by name, nothing is lost."""
    store = MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db")
    store.upsert([f"A{i}" for i in range(200)], embeddings=three_sets["A"])
    second = _child(
        [tmp_path / "db", small_adaptor_dir, "docs", "write", tmp_path / "B.npy", "B"], stdout=subprocess.PIPE
    )
    out, _ = second.communicate(timeout=180)
    assert second.returncode == 3 and f"open for writing by pid {os.getpid()}" in out, out
    store.upsert([f"C{i}" for i in range(200)], embeddings=three_sets["C"])
    assert store.count() == 400
    store.close()
    fresh = MatryoshkaStore("docs", path=tmp_path / "db", read_only=True)
    assert fresh.count() == 400
    assert _found(fresh, three_sets["A"], "A") == 200 and _found(fresh, three_sets["C"], "C") == 200


def test_two_writers_at_once_one_writes_the_other_is_refused(tmp_path, small_adaptor_dir, three_sets):
    """Cases 2 and 4: two processes create and fill the same new store at once: exactly one writes, the
    other gets the named error (never Chroma's `table collections already exists`); every acknowledged
    record is findable, once."""
    children = [
        _child(
            [tmp_path / "db", small_adaptor_dir, "docs", "write", tmp_path / f"{label}.npy", label],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for label in "AB"
    ]
    results = [child.communicate(timeout=300) for child in children]
    codes = sorted(child.returncode for child in children)
    assert codes == [0, 3], results
    winner = "AB"[[child.returncode for child in children].index(0)]
    store = MatryoshkaStore("docs", path=tmp_path / "db", read_only=True)
    assert store.count() == 200
    assert _found(store, three_sets[winner], winner) == 200
    hits = store.query(three_sets[winner][0], k=50)
    assert len({hit.id for hit in hits}) == len(hits) == 50


def test_a_reader_sees_what_a_writer_acknowledged_after_it_opened(tmp_path, small_adaptor_dir, three_sets):
    """Case 3: a read-only process opened before another process wrote finds the new records."""
    store = MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db")
    store.upsert([f"A{i}" for i in range(200)], embeddings=three_sets["A"])
    store.close()
    reader = _opened(tmp_path, small_adaptor_dir, "read")
    try:
        reader.stdin.write("ask\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["0", "200"]  # B not written yet
        writer = _child(
            [tmp_path / "db", small_adaptor_dir, "docs", "write", tmp_path / "B.npy", "B"],
            stdout=subprocess.PIPE,
        )
        out, _ = writer.communicate(timeout=180)
        assert writer.returncode == 0, out
        reader.stdin.write("ask\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["200", "400"]
    finally:
        reader.kill()
        reader.wait()


def test_a_reader_finds_a_dropped_store_gone_then_the_new_one(tmp_path, small_adaptor_dir, three_sets):
    """A read-only process that opened the store before the writer dropped it gets `StoreDroppedError`, not
    an empty answer; once the writer makes the store again and writes, it reads the new store."""
    store = MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db")
    store.upsert([f"B{i}" for i in range(200)], embeddings=three_sets["B"])
    reader = _opened(tmp_path, small_adaptor_dir, "read")
    try:
        answers = []
        for change in (
            lambda: None,
            store.drop,
            lambda: None,  # asked again: the same error, never the dropped store's records nor none
            lambda: (
                store.reset(),
                store.upsert([f"B{i}" for i in range(100)], embeddings=three_sets["B"][:100]),
            ),
        ):
            change()
            reader.stdin.write("ask\n")
            reader.stdin.flush()
            answers.append(reader.stdout.readline().strip())
        assert answers[0] == "200 200" and answers[3] == "100 100", answers
        assert answers[1].startswith("StoreDroppedError: collection 'docs__d64' at ") and answers[1].endswith(
            "no longer exists: its store was dropped since this process opened it (a read_only store never "
            "creates one)"
        ), answers
        assert answers[2] == answers[1]
    finally:
        reader.kill()
        reader.wait()


def test_a_read_only_store_refuses_writes_by_name(tmp_path, small_adaptor_dir, three_sets):
    store = MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db")
    store.upsert([f"A{i}" for i in range(200)], embeddings=three_sets["A"])
    reader = MatryoshkaStore("docs", path=tmp_path / "db", read_only=True)  # beside the writer, same process
    for write in (
        lambda: reader.upsert(["x"], embeddings=three_sets["B"][:1]),
        lambda: reader.delete(["A1"]),
        reader.compact,
        reader.clear,
    ):
        with pytest.raises(InputError, match="read_only"):
            write()
    assert store.count() == reader.count() == 200


def test_framework_stores_and_the_cli_read_beside_a_writer(
    tmp_path, small_adaptor_dir, three_sets, scifact, precomputed_minilm, capsys
):
    """`read_only=True` through both framework stores, and `matryoshka-rag query` (which only reads), while
    another process holds the store open for writing; their writes are refused by name."""
    from langchain_core.documents import Document
    from llama_index.core.schema import TextNode

    from langchain_matryoshka_rag import MatryoshkaVectorStore, ProviderEmbeddings
    from llama_index.vector_stores.matryoshka_rag import MatryoshkaVectorStore as LlamaStore
    from matryoshka_rag.cli.app import main

    with MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db") as store:
        store.upsert(
            [f"A{i}" for i in range(200)], texts=scifact.corpus_texts[:200], embeddings=three_sets["A"]
        )
    writer = _opened(tmp_path, small_adaptor_dir, "hold")
    try:
        with pytest.raises(StoreLockedError, match=f"pid {writer.pid}"):
            MatryoshkaStore("docs", path=tmp_path / "db")
        base = ProviderEmbeddings(provider=precomputed_minilm)
        langchain = MatryoshkaVectorStore("docs", base, persist_directory=tmp_path / "db", read_only=True)
        text = scifact.corpus_texts[3]
        assert langchain.similarity_search(text, k=1)[0].page_content == text
        with pytest.raises(InputError, match="read_only=True"):
            langchain.add_documents([Document(page_content=scifact.corpus_texts[300])])
        llama = LlamaStore(collection_name="docs", persist_dir=tmp_path / "db", read_only=True)
        with pytest.raises(InputError, match="read_only=True"):
            llama.add([TextNode(text="x", embedding=three_sets["B"][0].tolist())])
        db = str(tmp_path / "db")
        assert main(["query", scifact.corpus_texts[5], "--path", db, "--collection", "docs", "-k", "2"]) == 0
        assert capsys.readouterr().out.splitlines()[0].split()[1] == "A5"  # the real model finds the document
    finally:
        writer.stdin.close()
        writer.wait(timeout=60)


COMPACT_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from matryoshka_rag.store import MatryoshkaStore
    real_unlink = Path.unlink
    def unlink(self, *args, **kwargs):  # the compaction is killed right after its first removal
        real_unlink(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    store = MatryoshkaStore("docs", path=sys.argv[1])
    Path.unlink = unlink
    store.compact()
    """
)


def test_a_compaction_killed_midway_leaves_no_deleted_text_after_the_next(
    tmp_path, small_adaptor_dir, three_sets
):
    """Case 8: a kill while compaction removes the old generation leaves some of its files (holding deleted
    documents); the next compaction removes them all, and every live record stays."""
    texts = [f"document {i} secret-{i:03d}" for i in range(200)]
    with MatryoshkaStore("docs", small_adaptor_dir, path=tmp_path / "db") as store:
        store.upsert([f"A{i}" for i in range(200)], texts=texts, embeddings=three_sets["A"])
        store.delete([f"A{i}" for i in range(100)])
    killed = subprocess.run([sys.executable, "-c", COMPACT_KILLED, str(tmp_path / "db")], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder = tmp_path / "db" / "matryoshka_rag"
    left = sorted(p.name for p in folder.iterdir() if ".g0." in p.name)
    assert left and "docs.d384.g0.f16" in left  # the kill left part of the old generation
    with MatryoshkaStore("docs", path=tmp_path / "db") as store:
        store.compact()
        assert not [p.name for p in folder.iterdir() if ".g0." in p.name]
        disk = b"".join(p.read_bytes() for p in (tmp_path / "db").rglob("*") if p.is_file())
        assert b"secret-099" not in disk and b"secret-199" in disk  # deleted text gone, live text kept
        live = [f"A{i}" for i in range(100, 200)]
        assert store.count() == 100 and sorted(store.get(live)) == sorted(live)
        hits = [store.query(v, k=1)[0].id for v in three_sets["A"][100:]]
        assert hits == live
