"""Label-free choices per dim (issue 17): the prefix an unsupervised adaptor serves at each dim, the dim
recommendation (`recommend_dim`, `matryoshka-rag recommend`, `dim="auto"` in the wrappers, the store and
`shrink`), and their bad input. Real all-MiniLM-L6-v2 vectors of the committed SciFact slice throughout."""

from __future__ import annotations

import json
import subprocess
import sys

import chromadb
import numpy as np
import pytest
import torch

from matryoshka_rag import AdaptorConfig, MatryoshkaAdaptor, estimate_dims, recommend_dim, save_adaptor
from matryoshka_rag.adaptor.format import CorruptAdaptorError
from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from matryoshka_rag.adaptor.persistence import load_adaptor
from matryoshka_rag.errors import InputError
from matryoshka_rag.scoring.kept import (
    MIN_CORPUS_ROWS,
    kept_score,
    retrieval_gains,
    retrieval_kept,
)
from matryoshka_rag.scoring.paired import clearly_better
from matryoshka_rag.store.store import MatryoshkaStore
from matryoshka_rag.training import UnsupervisedConfig
from matryoshka_rag.training.unsupervised_objective import holdout_split

from .conftest import SLICE_DIR


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _random_weights(config: AdaptorConfig, seed: int = 0) -> MatryoshkaAdaptor:
    """An adaptor with every weight random (a fresh one's last layer is zero: adapted would equal base)."""
    torch.manual_seed(seed)
    adaptor = MatryoshkaAdaptor(config, torch.linalg.qr(torch.randn(config.base_dim, config.base_dim))[0])
    with torch.no_grad():
        for parameter in adaptor.mlp.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.2)
    return adaptor


def test_kept_score_is_ndcg_of_the_full_dim_nearest_neighbour():
    ranked = np.array([[7, 3, 5], [1, 2, 3], [4, 5, 6]])
    nearest = np.array([7, 3, 9])  # rank 0, rank 2, absent
    assert kept_score(ranked, nearest) == pytest.approx((1.0 + 1.0 / np.log2(4.0) + 0.0) / 3)


def test_unsupervised_training_serves_the_adapted_prefix_unless_the_rotation_keeps_clearly_more(
    small_adaptor_dir, scifact_vectors
):
    adaptor = load_adaptor(small_adaptor_dir)
    twin = NumpyAdaptor.from_folder(small_adaptor_dir)
    served = dict(adaptor.config.served_prefixes)
    kept = adaptor.metadata["retrieval_kept"]
    assert sorted(served) == [32, 64, 384] and served[384] == "base"
    assert kept["held_out"] and kept["queries"] == 40  # the training's held-out split (a tenth of 400)
    held_out = holdout_split(400, UnsupervisedConfig(max_steps=30, eval_every=10))[
        0
    ]  # as the fixture trained
    gains = retrieval_gains(
        twin, scifact_vectors[:400], held_out, [("adapted", 32), ("base", 32), ("adapted", 64), ("base", 64)]
    )
    for dim in (32, 64):
        assert kept["adapted"][str(dim)] == round(float(gains["adapted", dim].mean()), 4)
        clearly = clearly_better(gains["base", dim], gains["adapted", dim])
        assert served[dim] == ("base" if clearly else "adapted")
    docs = scifact_vectors[:200]
    z, adapted = twin.rotate(docs), twin.forward(docs)
    assert np.abs(_unit(z) - _unit(adapted)).max() > 1e-3  # training moved f away from z: the choice matters
    for dim, source in served.items():
        expected = _unit((z if source == "base" else adapted)[:, :dim])
        np.testing.assert_allclose(adaptor.transform(docs, dim), expected, atol=2e-5)
        np.testing.assert_allclose(twin.transform(docs, dim), expected, atol=2e-6)
    full = adaptor.transform(docs, 384)  # the full dim is the base ranking: cosines of the base vectors
    np.testing.assert_allclose(full @ full.T, _unit(docs) @ _unit(docs).T, atol=2e-5)


def test_a_dim_between_judged_dims_follows_the_next_one_up_in_torch_and_numpy(scifact_vectors):
    config = AdaptorConfig(
        384, (32, 64, 384), "all-MiniLM-L6-v2", 96, rotation=True,
        served_prefixes=((32, "adapted"), (64, "base"), (384, "adapted")),
    )  # fmt: skip
    adaptor = _random_weights(config)
    twin = NumpyAdaptor.from_module(adaptor)
    docs = scifact_vectors[:50]
    z, adapted = twin.rotate(docs), twin.forward(docs)
    for dim, source in (
        (16, "adapted"),
        (32, "adapted"),
        (33, "base"),
        (48, "base"),
        (64, "base"),
        (200, "adapted"),
    ):
        assert config.served_prefix(dim) == source
        expected = _unit((z if source == "base" else adapted)[:, :dim])
        np.testing.assert_allclose(twin.transform(docs, dim), expected, atol=2e-6)
        np.testing.assert_allclose(adaptor.transform(docs, dim), expected, atol=2e-5)


def test_served_prefixes_are_in_the_fingerprint_and_old_folders_serve_adapted_everywhere(
    tmp_path, scifact_vectors
):
    plain = _random_weights(AdaptorConfig(384, (64, 384), "all-MiniLM-L6-v2", 64, rotation=True))
    folder = save_adaptor(plain, tmp_path / "old")
    document = json.loads((folder / "config.json").read_text())
    assert "served_prefixes" not in document["config"]  # an adaptor without choices hashes as before format 3
    (folder / "config.json").write_text(json.dumps({**document, "format_version": 2}))
    old = NumpyAdaptor.from_folder(folder)
    assert old.fingerprint() == plain.fingerprint() and old.config.served_prefix(384) == "adapted"
    np.testing.assert_allclose(
        old.transform(scifact_vectors[:5], 64), _unit(old.forward(scifact_vectors[:5])[:, :64]), atol=2e-6
    )

    chosen = _random_weights(
        AdaptorConfig(
            384,
            (64, 384),
            "all-MiniLM-L6-v2",
            64,
            rotation=True,
            served_prefixes=((64, "base"), (384, "base")),
        )
    )
    assert chosen.fingerprint() != plain.fingerprint()
    folder = save_adaptor(chosen, tmp_path / "new")
    assert load_adaptor(folder).config.served_prefixes == ((64, "base"), (384, "base"))
    document = json.loads((folder / "config.json").read_text())
    assert document["format_version"] == 3 and document["config"]["served_prefixes"] == {
        "64": "base",
        "384": "base",
    }
    document["config"]["served_prefixes"]["64"] = "adapted"  # tampering with the choice is caught
    (folder / "config.json").write_text(json.dumps(document))
    with pytest.raises(CorruptAdaptorError, match="tampered"):
        NumpyAdaptor.from_folder(folder)
    with pytest.raises(InputError, match="served_prefixes"):
        AdaptorConfig(384, (64, 384), served_prefixes=((64, "rotation"),))


GRID = [
    32,
    40,
    48,
    56,
    64,
    144,
    224,
    304,
    384,
]  # small_adaptor_dir's dims (32, 64, 384) and 3 between each two


def test_estimates_recorded_and_measured(small_adaptor_dir, scifact_vectors):
    adaptor = NumpyAdaptor.from_folder(small_adaptor_dir)
    kept = adaptor.metadata["retrieval_kept"]
    recorded = estimate_dims(small_adaptor_dir)
    assert [row.dim for row in recorded] == GRID
    assert [row.trained for row in recorded] == [dim in (32, 64, 384) for dim in GRID]
    for row in recorded:  # a dim between trained dims serves what the next trained dim up serves
        assert (
            row.served == adaptor.config.served_prefix(row.dim) and row.kept == kept["served"][str(row.dim)]
        )
    for dim in (32, 64, 384):  # at a trained dim, the score the choice was made by
        assert kept["served"][str(dim)] == kept[adaptor.config.served_prefix(dim)][str(dim)]
    measured = estimate_dims(small_adaptor_dir, scifact_vectors, queries=200)
    assert [row.dim for row in measured] == GRID and measured[-1].kept == recorded[-1].kept == 1.0
    assert (
        0.3 < measured[0].kept < measured[4].kept < measured[-2].kept < 1.0
    )  # real vectors: more dims keep more
    rows = np.sort(np.random.default_rng(0).choice(len(scifact_vectors), 200, replace=False))
    direct = retrieval_kept(adaptor, scifact_vectors, rows, [(measured[4].served, 64)], reference="base")
    assert direct[measured[4].served, 64] == measured[4].kept


def test_recommend_dim_is_the_smallest_dim_meeting_the_target(small_adaptor_dir, scifact_vectors):
    estimates = estimate_dims(small_adaptor_dir, scifact_vectors)
    assert recommend_dim(small_adaptor_dir, scifact_vectors, target=0.01) == 32
    for row in estimates[1:]:
        target = row.kept
        assert recommend_dim(small_adaptor_dir, scifact_vectors, target=target) == min(
            other.dim for other in estimates if other.kept >= target
        )
        assert recommend_dim(small_adaptor_dir, scifact_vectors, target=target, trained_only=True) == min(
            other.dim for other in estimates if other.kept >= target and other.dim in (32, 64, 384)
        )
    assert (
        recommend_dim(small_adaptor_dir, scifact_vectors, target=1.0, below=64) == 56
    )  # none: the largest below


@pytest.mark.parametrize("target", [0, -0.5, 1.01, float("nan"), "0.9", True, None])
def test_a_target_outside_0_1_is_refused(small_adaptor_dir, target):
    with pytest.raises(InputError, match=r"target must be a number in \(0, 1\]"):
        recommend_dim(small_adaptor_dir, target=target)


def test_a_corpus_too_small_to_hold_out_queries_names_the_minimum(small_adaptor_dir, scifact_vectors):
    with pytest.raises(InputError, match=f"has 99 vectors: at least {MIN_CORPUS_ROWS} are needed"):
        recommend_dim(small_adaptor_dir, scifact_vectors[:99])
    with pytest.raises(InputError, match="dim 128"):
        recommend_dim(small_adaptor_dir, scifact_vectors[:200, :128])


def test_an_adaptor_without_a_recorded_estimate_asks_for_corpus_vectors(tmp_path, scifact_vectors):
    folder = save_adaptor(
        _random_weights(AdaptorConfig(384, (64, 384), "all-MiniLM-L6-v2", 64, rotation=True)), tmp_path / "a"
    )
    with pytest.raises(InputError, match="pass corpus vectors"):
        recommend_dim(folder)
    assert recommend_dim(folder, scifact_vectors, target=1.0) in (64, 384)


def test_a_supervised_adaptor_records_its_estimate_and_the_store_follows_it(
    supervised_adaptor_dir, scifact_vectors, tmp_path
):
    """A kept supervised stage records the estimate of its served (adapted) prefixes on corpus items, the
    same as measuring it afresh on its training corpus; `small_dim="auto"` then needs no corpus."""
    assert load_adaptor(supervised_adaptor_dir).metadata["training"]["supervised_stage"]["kept"]
    recorded = estimate_dims(supervised_adaptor_dir)
    measured = estimate_dims(supervised_adaptor_dir, scifact_vectors)
    assert [(r.dim, r.served, r.kept) for r in recorded] == [
        (m.dim, m.served, round(m.kept, 4)) for m in measured
    ]
    assert {r.served for r in recorded} == {"adapted"} and recorded[-1].kept == 1.0
    store = MatryoshkaStore("sup", supervised_adaptor_dir, path=tmp_path / "db", small_dim="auto")
    trained_below = [m for m in measured if m.trained and m.dim < 384]
    meeting = [m.dim for m in trained_below if round(m.kept, 4) >= 0.99]
    assert store.small_dim == (meeting[0] if meeting else trained_below[-1].dim)


def _cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "matryoshka_rag.cli.app", "recommend", *map(str, argv)],
        capture_output=True,
        text=True,
    )


def test_cli_recommend_prints_the_table_and_writes_the_plot(small_adaptor_dir, scifact_vectors, tmp_path):
    np.save(tmp_path / "corpus.npy", scifact_vectors)
    plot = tmp_path / "estimate.png"
    result = _cli("--adaptor", small_adaptor_dir, "--embeddings", tmp_path, "--target", "0.5", "--plot", plot)
    assert result.returncode == 0, result.stderr
    chosen = recommend_dim(small_adaptor_dir, scifact_vectors, target=0.5)
    assert f"recommended dim: {chosen} " in result.stdout and "| 384 (trained) |" in result.stdout.replace(
        " (recommended)", ""
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recorded = _cli("--adaptor", small_adaptor_dir, "--plot", tmp_path / "recorded.png")
    assert recorded.returncode == 0 and "recorded at training" in recorded.stdout


def test_cli_recommend_bad_input_is_one_line(small_adaptor_dir, scifact_vectors, tmp_path):
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    client.create_collection("empty")
    np.save(tmp_path / "small.npy", scifact_vectors[:20])
    cases = [
        (["--target", "1.5"], "target must be a number in (0, 1]"),
        (["--target", "0"], "target must be a number in (0, 1]"),
        (["--embeddings", tmp_path / "small.npy"], f"at least {MIN_CORPUS_ROWS} are needed"),
        (["--path", tmp_path / "db", "--collection", "empty"], "is empty: it holds no vectors"),
        (["--path", tmp_path / "db", "--collection", "nope"], "collection 'nope' does not exist"),
        (["--path", tmp_path / "db"], "--path and --collection go together"),
    ]
    for argv, words in cases:
        result = _cli("--adaptor", small_adaptor_dir, "--plot", tmp_path / "p.png", *argv)
        assert result.returncode == 2 and words in result.stderr, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_dim_auto_in_both_wrappers_and_the_store(small_adaptor_dir, precomputed_minilm, scifact):
    from langchain_matryoshka_rag import AdaptedEmbeddings, ProviderEmbeddings
    from llama_index.embeddings.matryoshka_rag import AdaptedEmbedding, ProviderEmbedding
    from matryoshka_rag.store.store import MatryoshkaStore

    chosen = recommend_dim(small_adaptor_dir, target=0.5)
    langchain = AdaptedEmbeddings.from_pretrained(
        ProviderEmbeddings(provider=precomputed_minilm), small_adaptor_dir, dim="auto", target=0.5
    )
    llama = AdaptedEmbedding.from_pretrained(
        ProviderEmbedding(provider=precomputed_minilm), small_adaptor_dir, dim="auto", target=0.5
    )
    assert langchain.output_dim == llama.output_dim == chosen
    texts = scifact.corpus_texts[:3]
    expected = load_adaptor(small_adaptor_dir).transform(precomputed_minilm(texts), chosen)
    np.testing.assert_allclose(langchain.embed_documents(texts), expected, atol=1e-5)
    assert AdaptedEmbeddings.from_pretrained(
        ProviderEmbeddings(provider=precomputed_minilm), small_adaptor_dir, dim="auto"
    ).output_dim == recommend_dim(small_adaptor_dir)
    with pytest.raises(InputError, match="go with dim='auto'"):
        AdaptedEmbeddings.from_pretrained(
            ProviderEmbeddings(provider=precomputed_minilm), small_adaptor_dir, dim=64, target=0.5
        )
    with pytest.raises(InputError, match="target must be"):
        AdaptedEmbedding.from_pretrained(
            ProviderEmbedding(provider=precomputed_minilm), small_adaptor_dir, dim="auto", target=2
        )
    store = MatryoshkaStore("docs", small_adaptor_dir, client=chromadb.EphemeralClient(), small_dim="auto")
    assert store.small_dim == recommend_dim(small_adaptor_dir, below=384, trained_only=True) in (32, 64)


def test_shrink_dim_auto_serves_the_recommended_dim(tmp_path, scifact, scifact_vectors):
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    collection = client.create_collection("docs", embedding_function=None)
    collection.add(ids=scifact.corpus_ids, embeddings=scifact_vectors, documents=scifact.corpus_texts)
    del client
    argv = ["--path", tmp_path / "db", "--collection", "docs", "--out", tmp_path / "small", "--dim", "auto"]
    refused = subprocess.run(
        [sys.executable, "-m", "matryoshka_rag.cli.app", "shrink", *map(str, argv), "--target", "1.5"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "target must be a number in (0, 1]" in refused.stderr
    result = subprocess.run(
        [sys.executable, "-m", "matryoshka_rag.cli.app", "shrink", *map(str, argv), "--target", "0.9"]
        + ["--max-steps", "20", "--sample", "20"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    adaptor = result.stdout.split("adaptor: ")[1].strip()
    chosen = recommend_dim(adaptor, target=0.9, below=384, trained_only=True)
    assert f"dims searched: 384 -> {chosen}\n" in result.stdout


@pytest.mark.slow
def test_cli_recommend_corpus_encodes_with_the_adaptors_base_model(
    small_adaptor_dir, scifact_vectors, tmp_path
):
    """`--corpus` encodes the texts with the real all-MiniLM-L6-v2 (the adaptor's base model) and measures the
    same table as the precomputed vectors of those texts."""
    rows = 120
    lines = (SLICE_DIR / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    np.save(tmp_path / "corpus.npy", scifact_vectors[:rows])
    tables = {}
    for source in ("--corpus", "--embeddings"):
        path = tmp_path / ("corpus.jsonl" if source == "--corpus" else "corpus.npy")
        result = _cli("--adaptor", small_adaptor_dir, source, path, "--plot", tmp_path / "p.png")
        assert result.returncode == 0, result.stderr
        assert "measured on the given corpus" in result.stdout
        tables[source] = _estimates(result.stdout)
    assert tables["--corpus"].keys() == tables["--embeddings"].keys() and len(tables["--corpus"]) > 2
    for dim, kept in tables["--embeddings"].items():
        assert abs(tables["--corpus"][dim] - kept) <= 0.01, (dim, tables)


def _estimates(stdout: str) -> dict[int, float]:
    """`{dim: estimate}` from the rows `| dim ... | served prefix | estimate | ... |` of the printed table."""
    table = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].split(" ")[0].isdigit():
            table[int(cells[0].split(" ")[0])] = float(cells[2])
    return table
