"""Training at scale: memory-mapped corpora, the kNN table (exact and faiss), per-step work independent of
the corpus size, bad input before any work, and data parallelism over two gloo processes."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from matryoshka_rag import InputError, UnsupervisedConfig, load_adaptor, train_unsupervised
from matryoshka_rag.training import unsupervised as unsupervised_module
from matryoshka_rag.training.distributed import Context
from matryoshka_rag.training.neighbours import exact_knn, exact_knn_rows, knn_table
from matryoshka_rag.training.schedule import epoch_order
from matryoshka_rag.training.streaming import HostCorpus
from matryoshka_rag.training.unsupervised import new_adaptor
from matryoshka_rag.training.unsupervised_objective import UnsupervisedObjective, neighbour_table
from matryoshka_rag.validation import check_rows

FAST = UnsupervisedConfig(max_steps=20, eval_every=10, batch_size=64, holdout=50, patience=100)


@pytest.fixture(scope="module")
def slice_vectors(scifact_vectors):
    return scifact_vectors[:600]


@pytest.fixture(scope="module")
def memmap_path(tmp_path_factory, slice_vectors):
    path = tmp_path_factory.mktemp("corpus") / "corpus.npy"
    np.save(path, slice_vectors)
    return path


def _overlap(table: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(table.tolist(), truth.tolist())])
    )


def test_memmap_trains_the_same_adaptor_as_the_array(slice_vectors, memmap_path):
    in_memory = train_unsupervised(slice_vectors, (32, 384), FAST, progress=False)
    mapped = np.load(memmap_path, mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    from_memmap = train_unsupervised(mapped, (32, 384), FAST, progress=False)
    from_path = train_unsupervised(memmap_path, (32, 384), FAST, progress=False)
    assert in_memory.fingerprint() == from_memmap.fingerprint() == from_path.fingerprint()
    assert from_memmap.metadata["training"]["neighbours"]["method"] == "exact"  # 600 rows: no faiss


def test_float16_memmap_trains(slice_vectors, tmp_path):
    path = tmp_path / "half.npy"
    np.save(path, slice_vectors.astype(np.float16))
    adaptor = train_unsupervised(path, (32, 384), FAST, progress=False)
    reference = train_unsupervised(slice_vectors, (32, 384), FAST, progress=False)
    assert adaptor.metadata["metrics"]["holdout_loss"] == pytest.approx(
        reference.metadata["metrics"]["holdout_loss"], rel=1e-3
    )


def test_blocked_exact_search_finds_the_same_neighbours(scifact_vectors):
    vectors = scifact_vectors  # 800 rows: two blocks of 400
    single = exact_knn(torch.from_numpy(vectors), 10).numpy()
    blocked = exact_knn_rows(vectors, 10, np.arange(len(vectors)), block_rows=400, chunk_size=256)
    assert _overlap(blocked, single) == 1.0  # same sets; near-ties may swap order
    table, _ = knn_table(vectors, 10, "exact")
    np.testing.assert_array_equal(table, single)
    part, _ = knn_table(vectors, 10, "exact", rows=(100, 300))
    np.testing.assert_array_equal(part, single[100:300])


def test_faiss_table_recall_against_exact_search(scifact_vectors):
    vectors = scifact_vectors
    exact = exact_knn(torch.from_numpy(vectors), 10).numpy()
    table, info = knn_table(vectors, 10, "faiss")
    assert info["method"] == "faiss-hnsw"
    assert info["recall_sample"] >= 0.9
    assert _overlap(table, exact) >= 0.9
    assert not (table == np.arange(len(vectors))[:, None]).any()  # never a row's own neighbour
    auto, auto_info = knn_table(vectors, 10, "auto", exact_max_rows=500)  # above the threshold on CPU
    assert auto_info["method"] == "faiss-hnsw"
    np.testing.assert_array_equal(auto, table)  # same graph: the same neighbours


def test_excluded_rows_are_nobodys_neighbours(scifact_vectors):
    """`exclude` (the held-out items of training): exact search returns the nearest of the other rows, the
    HNSW graph holds only those rows, and both tables still cover every row, excluded ones included."""
    vectors = scifact_vectors
    held = np.arange(3, len(vectors), 11)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    scores[:, held] = -np.inf
    truth = np.argsort(-scores, axis=1)[:, :10]
    exact, _ = knn_table(vectors, 10, "exact", exclude=held)
    approx, info = knn_table(vectors, 10, "faiss", exclude=held)
    assert exact.shape == approx.shape == (len(vectors), 10)
    assert not np.isin(exact, held).any() and not np.isin(approx, held).any()
    assert _overlap(exact, truth) == 1.0
    assert _overlap(approx, truth) >= 0.9 and info["recall_sample"] >= 0.9
    assert not (approx == np.arange(len(vectors))[:, None]).any()


def test_training_records_the_faiss_table(slice_vectors):
    adaptor = train_unsupervised(slice_vectors, (32, 384), FAST, progress=False, neighbours="faiss")
    info = adaptor.metadata["training"]["neighbours"]
    assert info["method"] == "faiss-hnsw" and 0.9 <= info["recall_sample"] <= 1.0


def _forbid_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(unsupervised_module, "check_rows", fail)
    monkeypatch.setattr(unsupervised_module, "new_adaptor", fail)


def test_bad_memmaps_fail_before_any_work(tmp_path, monkeypatch):
    _forbid_work(monkeypatch)
    cases = {
        "float64": (np.ones((50, 8)), "must be float32 or float16, got float64"),
        "int": (np.ones((50, 8), dtype=np.int32), "must be float32 or float16, got int32"),
        "flat": (np.ones(400, dtype=np.float32), "expected a 2-D array"),
        "cube": (np.ones((5, 8, 8), dtype=np.float32), "expected a 2-D array"),
        "tiny": (np.ones((8, 8), dtype=np.float32), "at least k \\+ 1 = 11"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / f"{name}.npy", array)
        with pytest.raises(InputError, match=message):
            train_unsupervised(np.load(tmp_path / f"{name}.npy", mmap_mode="r"), progress=False)
    with pytest.raises(InputError, match="cannot open"):
        train_unsupervised(tmp_path / "missing.npy", progress=False)


def test_missing_device_fails_before_any_work(slice_vectors, monkeypatch):
    _forbid_work(monkeypatch)
    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(InputError, match="was asked for"):
        train_unsupervised(slice_vectors, (32, 384), FAST, device=missing)
    with pytest.raises(InputError, match="not a device name"):
        train_unsupervised(slice_vectors, (32, 384), FAST, device="gpu please")


class _Recorder:
    """An (n, dim) array that records how many rows each read asked for."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.reads = array, array.shape, []

    def __getitem__(self, index: slice) -> np.ndarray:
        rows = self.array[index]
        self.reads.append(len(rows))
        return rows


def test_values_are_checked_in_chunks(slice_vectors):
    bad = slice_vectors.copy()
    bad[[250, 420], 3] = np.nan
    bad[10] = 0.0
    recorder = _Recorder(bad)
    with pytest.raises(InputError, match="2 vector\\(s\\) hold NaN or inf, first at row 250"):
        check_rows(recorder, "corpus", chunk_rows=100)
    assert max(recorder.reads) == 100 and sum(recorder.reads) == len(bad)
    bad[[250, 420], 3] = 1.0
    with pytest.raises(InputError, match="1 vector\\(s\\) are all zeros, first at row 10"):
        check_rows(bad, "corpus", chunk_rows=100)


def _objective(vectors: np.ndarray, context: Context | None = None) -> UnsupervisedObjective:
    table, _ = neighbour_table(vectors, FAST, torch.device("cpu"))
    host = HostCorpus(vectors, torch.device("cpu"))
    return UnsupervisedObjective(host, table, (32, 384), FAST, context or Context())


def test_step_work_does_not_depend_on_the_corpus_size(scifact_vectors):
    """A step reads the distinct rows among batch x (1 + k) and shuffles once per epoch, for 500 rows as for
    800."""
    adaptor = new_adaptor(scifact_vectors[:500], (32, 384), FAST, "test")
    for n in (500, 800):
        objective = _objective(scifact_vectors[:n])
        epoch_order.cache_clear()
        distinct = [len(objective.distinct_rows(objective.train_rows_at(step))[0]) for step in range(5)]
        for step in range(5):
            objective.loss_at(adaptor, step).backward()
        assert objective.corpus.rows_gathered == sum(distinct) <= 5 * FAST.batch_size * (1 + FAST.k)
        assert epoch_order.cache_info().misses == 1  # one shuffle, not one per step


def test_ranks_take_disjoint_shares_of_each_batch(slice_vectors):
    whole = _objective(slice_vectors).train_rows_at(3, 0)
    shares = [_objective(slice_vectors, Context(rank, 2)).train_rows_at(3, 0) for rank in (0, 1)]
    assert not set(shares[0]) & set(shares[1])
    assert sorted(np.concatenate(shares)) == sorted(whole)


def test_data_parallel_gloo_two_processes(memmap_path, tmp_path):
    """torchrun with 2 CPU ranks: both end with the same weights, rank 0 saves a valid adaptor."""
    out = tmp_path / "adaptor"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "matryoshka_rag.training.torchrun", str(memmap_path), str(out), "--dims", "32,384"]
    command += ["--set", "max_steps=20", "--set", "eval_every=10", "--set", "batch_size=64"]
    command += ["--set", "holdout=50", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # The ranks share one stdout pipe, so their lines can interleave: match the records, not the lines.
    prints = sorted(re.findall(r"rank (\d+) fingerprint ([0-9a-f]{64})", done.stdout))
    assert [rank for rank, _ in prints] == ["0", "1"] and prints[0][1] == prints[1][1]
    adaptor = load_adaptor(out)
    assert adaptor.fingerprint() == prints[0][1]
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["distributed"] == {"world_size": 2, "backend": "gloo", "identical_weights": True}
    assert adaptor.transform(np.load(memmap_path)[:5], 32).shape == (5, 32)


def _host_reads(monkeypatch, config: UnsupervisedConfig, vectors: np.ndarray) -> int:
    """How many times the package's code called `.item()`, `.tolist()` or `.cpu()` on a tensor during
    training (torch's own CPU-side reads, such as Adam's step counter, are not host-device syncs)."""
    calls = []

    def counting(original):
        def read(self, *args, **kwargs):
            calls.append("matryoshka_rag" in sys._getframe(1).f_code.co_filename)
            return original(self, *args, **kwargs)

        return read

    for name in ("item", "tolist", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    train_unsupervised(vectors, (32, 384), config, progress=False)
    monkeypatch.undo()
    return sum(calls)


def test_no_host_reads_in_the_inner_loop(slice_vectors, monkeypatch):
    """20 and 40 steps with one evaluation each read the same number of values back: none per step."""
    short = UnsupervisedConfig(max_steps=20, eval_every=20, batch_size=64, holdout=50)
    long = UnsupervisedConfig(max_steps=40, eval_every=40, batch_size=64, holdout=50)
    assert _host_reads(monkeypatch, short, slice_vectors) == _host_reads(monkeypatch, long, slice_vectors)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_steps_never_synchronise(slice_vectors):
    """On a GPU: steps after a warm-up run with PyTorch's sync debug mode set to raise."""
    adaptor = new_adaptor(slice_vectors, (32, 384), FAST, "test").cuda()
    table, _ = neighbour_table(slice_vectors, FAST, torch.device("cuda"))
    host = HostCorpus(slice_vectors, torch.device("cuda"))
    objective = UnsupervisedObjective(host, table, (32, 384), FAST)
    optimizer = torch.optim.Adam(adaptor.mlp.parameters(), lr=FAST.lr)
    try:
        for step in range(6):
            if step == 2:
                torch.cuda.set_sync_debug_mode("error")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = objective.loss_at(adaptor, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
        host.close()
    assert torch.isfinite(loss).item()
