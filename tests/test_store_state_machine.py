"""The store against a plain dict, as Chroma tests its own collections: random sequences of upserts (new and
existing ids, documents, metadata), deletes (by id, by a `where` filter), compactions, reopenings and writing
processes killed at a write point; after each step the store's count, records, filtered records and queries
(exact: every record is in the shortlist) equal the model's."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.client import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from matryoshka_rag.store import MatryoshkaStore
from matryoshka_rag.validation import unit_rows

IDS = [f"r{i}" for i in range(24)]
POOL = 40  # real SciFact vectors the records take theirs from; more than a shortlist of 100 needs
TAGS = ("a", "b", "c")
Model = dict[str, tuple[int, str | None, dict[str, Any]]]  # id -> (vector in the pool, document, metadata)

# a writing process killed at its `kill_at`-th write point (each fsync, the Chroma upsert before or after it
# is applied), or finishing when the batch has fewer
KILLED_WRITER = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np
    from chromadb.api.models.Collection import Collection
    from matryoshka_rag.store import MatryoshkaStore
    path, batch, vectors, kill_at, after_chroma = sys.argv[1:6]
    batch, pool, calls = json.loads(batch), np.load(vectors), [0]
    store = MatryoshkaStore("docs", path=path)
    def point():
        calls[0] += 1
        return calls[0] == int(kill_at)
    def kill():
        os.kill(os.getpid(), signal.SIGKILL)
    fsync, upsert = os.fsync, Collection.upsert
    def killing_fsync(descriptor):
        if point():
            kill()
        fsync(descriptor)
    def killing_upsert(collection, *args, **kwargs):
        if point():
            if after_chroma == "1":
                upsert(collection, *args, **kwargs)
            kill()
        upsert(collection, *args, **kwargs)
    os.fsync, Collection.upsert = killing_fsync, killing_upsert
    store.upsert(batch["ids"], batch["documents"], pool[batch["vectors"]], batch["metadatas"])
    """
)

metadata = st.none() | st.fixed_dictionaries(
    {"tag": st.sampled_from(TAGS)}, optional={"n": st.none() | st.integers(0, 3)}
)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    """An upsert: 1-6 distinct ids with a pool vector each, documents for all or none, metadata or None."""
    ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=6, unique=True))
    vectors = draw(st.lists(st.integers(0, POOL - 1), min_size=len(ids), max_size=len(ids)))
    documents = draw(st.none() | st.lists(st.text(max_size=8), min_size=len(ids), max_size=len(ids)))
    metadatas = draw(st.lists(metadata, min_size=len(ids), max_size=len(ids)))
    return {"ids": ids, "vectors": vectors, "documents": documents, "metadatas": metadatas}


def upserted(model: Model, batch: dict[str, Any]) -> Model:
    """The model after `batch`: a new document replaces the stored one, metadata keys are set (None removes)."""
    after = dict(model)
    documents = batch["documents"] or [None] * len(batch["ids"])
    for i, vector, document, meta in zip(batch["ids"], batch["vectors"], documents, batch["metadatas"]):
        _, stored_document, merged = model.get(i, (0, None, {}))
        merged = {key: value for key, value in {**merged, **(meta or {})}.items() if value is not None}
        after[i] = (vector, stored_document if document is None else document, merged)
    return after


def store_machine(folder: Path, adaptor: Path, base: np.ndarray) -> type[RuleBasedStateMachine]:
    """The state machine over stores in `folder` with the adaptor at `adaptor` and the pool vectors `base`."""
    np.save(folder / "pool.npy", base)

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.path = Path(tempfile.mkdtemp(dir=folder)) / "db"
            self.store = MatryoshkaStore(
                "docs", adaptor, path=self.path, shortlist_factor=100, max_shortlist_factor=100
            )
            # the rerank vectors as stored (float16) and read (unit rows): exact search over the model
            self.large = unit_rows(
                self.store.layout.stored_vectors(base)[1].astype(np.float16).astype(np.float32)
            )
            self.model: Model = {}

        def _close(self) -> None:
            """Give back the writer lock and this process's Chroma view of the database."""
            self.store.close()
            assert isinstance(self.store.client, Client)
            self.store.client.close()

        def _open(self) -> None:
            self.store = MatryoshkaStore(
                "docs", path=self.path, shortlist_factor=100, max_shortlist_factor=100
            )

        def _shown(self, ids: list[str]) -> dict[str, tuple[int, str | None, dict[str, Any]]]:
            """The records the store shows for `ids`, each with the pool vector its rerank vector is."""
            if not ids:
                return {}
            records, vectors = self.store.get(ids), self.store.rerank_vectors(ids)
            assert set(records) == set(vectors)
            shown = {}
            for i, (document, meta) in records.items():
                cosines = self.large @ vectors[i]
                assert cosines.max() > 0.9999
                shown[i] = (int(cosines.argmax()), document, meta)
            return shown

        @rule(batch=batches())
        def upsert(self, batch: dict[str, Any]) -> None:
            vectors = base[batch["vectors"]]
            self.store.upsert(batch["ids"], batch["documents"], vectors, batch["metadatas"])
            self.model = upserted(self.model, batch)

        @rule(ids=st.lists(st.sampled_from(IDS), min_size=1, max_size=6, unique=True))
        def delete(self, ids: list[str]) -> None:
            self.store.delete(ids)
            self.model = {i: record for i, record in self.model.items() if i not in ids}

        @rule(tag=st.sampled_from(TAGS))
        def delete_where(self, tag: str) -> None:
            self.store.delete(where={"tag": tag})
            self.model = {i: record for i, record in self.model.items() if record[2].get("tag") != tag}

        @rule()
        def compact(self) -> None:
            self.store.compact()

        @rule()
        def reopen(self) -> None:
            self._close()
            self._open()

        @rule(batch=batches(), kill_at=st.integers(1, 9), after_chroma=st.booleans())
        def crash(self, batch: dict[str, Any], kill_at: int, after_chroma: bool) -> None:
            """Another process upserts `batch` and is killed at its `kill_at`-th write point: the store shows
            each changed record old or new, all of the batch or none of it, and all of it when the process
            finished."""
            self._close()
            arguments = [self.path, json.dumps(batch), folder / "pool.npy", kill_at, int(after_chroma)]
            child = subprocess.run(
                [sys.executable, "-c", KILLED_WRITER, *map(str, arguments)], capture_output=True, timeout=300
            )
            assert child.returncode in (0, -signal.SIGKILL), child.stderr.decode()[-3000:]
            self._open()
            after = upserted(self.model, batch)
            changed = [i for i in batch["ids"] if after[i] != self.model.get(i)]
            shown = self._shown(batch["ids"])
            for i in changed:
                assert shown.get(i) in (after[i], self.model.get(i)), (i, shown.get(i))
            applied = [i for i in changed if shown.get(i) == after[i]]
            assert len(applied) in (0, len(changed)), (applied, changed)
            if applied or child.returncode == 0:
                assert len(applied) == len(changed)
                self.model = after

        @invariant()
        def matches_the_model(self) -> None:
            model = self.model
            assert self.store.count() == len(model)
            assert self.store.get() == {i: (document, meta) for i, (_, document, meta) in model.items()}
            assert self._shown(list(model)) == model
            tagged = {i for i, (_, _, meta) in model.items() if meta.get("tag") == "b"}
            assert set(self.store.get(where={"tag": "b"})) == tagged
            for probe in (0, 17, 33):
                for k in sorted({1, max(len(model) // 2, 1), len(model) + 2}):
                    self._check_query(probe, k, list(model))
            self._check_query(5, 3, sorted(tagged), where={"tag": "b"})

        def _check_query(self, probe: int, k: int, ids: list[str], where: dict | None = None) -> None:
            """The hits of the pool vector `probe` are the exact top k of `ids` by cosine (ties in any order)."""
            hits = self.store.query(base[probe], k=k, where=where)
            scores = {i: float(self.large[self.model[i][0]] @ self.large[probe]) for i in ids}
            best = sorted(scores.values(), reverse=True)[:k]
            assert len(hits) == len(best)
            assert np.allclose([hit.score for hit in hits], best, atol=1e-5)
            for hit in hits:
                assert abs(scores[hit.id] - hit.score) < 1e-5
                assert (hit.document, hit.metadata) == self.model[hit.id][1:]

        def teardown(self) -> None:
            self._close()
            shutil.rmtree(self.path.parent)

    return StoreMachine


def test_the_store_matches_a_dict_model(tmp_path, small_adaptor_dir, scifact_vectors):
    machine = store_machine(tmp_path, small_adaptor_dir, scifact_vectors[:POOL])
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=10,
            stateful_step_count=12,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
