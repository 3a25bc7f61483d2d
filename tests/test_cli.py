"""End to end through the CLI on a slice of SciFact, encoded with the real model (through the cache)."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from matryoshka_rag.adaptor.persistence import load_adaptor
from matryoshka_rag.cli.app import main
from matryoshka_rag.training import UnsupervisedConfig, train_unsupervised

N_QUERIES, N_DOCS = 40, 300


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="module")
def scifact_slice(scifact, tmp_path_factory):
    """A BEIR folder: 40 test queries, their relevant documents plus random others (300 docs), train qrels
    for the train queries whose documents made it in."""
    root = tmp_path_factory.mktemp("scifact_slice")
    rng = random.Random(0)
    test = scifact.qrels("test")
    train = scifact.qrels("train")
    queries = sorted(test)[:N_QUERIES]
    docs = {d for q in queries for d in test[q]}
    docs |= set(rng.sample(scifact.corpus_ids, N_DOCS - len(docs)))
    text = dict(zip(scifact.corpus_ids, scifact.corpus_texts))
    write_jsonl(root / "corpus.jsonl", [{"_id": d, "title": "", "text": text[d]} for d in sorted(docs)])
    train_queries = [q for q in train if set(train[q]) <= docs]
    query_text = dict(zip(scifact.query_ids, scifact.query_texts))
    write_jsonl(root / "queries.jsonl", [{"_id": q, "text": query_text[q]} for q in queries + train_queries])
    (root / "qrels").mkdir()
    for name, split, chosen in (("test", test, queries), ("train", train, train_queries)):
        rows = [f"{q}\t{d}\t{g}\r\n" for q in chosen for d, g in split[q].items()]
        (root / "qrels" / f"{name}.tsv").write_text("query-id\tcorpus-id\tscore\r\n" + "".join(rows))
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache") / "embeddings.sqlite")


def test_help_is_instant_and_lists_commands():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "matryoshka_rag.cli.app", "--help"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0
    assert "train" in done.stdout and "eval" in done.stdout
    assert "torch" not in done.stderr and "sentence_transformers" not in done.stderr  # nothing heavy imported


def test_eval_end_to_end_beats_truncation_at_32(scifact_slice, cache, tmp_path):
    out = tmp_path / "report"
    code = main(
        [
            "eval",
            "--dataset",
            str(scifact_slice),
            "--methods",
            "truncate,pca,unsupervised",
            "--dims",
            "32,384",
            "--out",
            str(out),
            "--cache",
            cache,
            "--max-steps",
            "200",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {
        "dataset",
        "model",
        "base_dim",
        "ndcg@10",
        "recall@100",
        "train_seconds",
        "device",
    }
    assert results["base_dim"] == 384 and results["model"] == "all-MiniLM-L6-v2"
    assert set(results["train_metrics"]) == {"unsupervised"}  # the trained methods' early-stopping record
    assert results["train_metrics"]["unsupervised"]["best_step"] > 0
    ndcg = results["ndcg@10"]
    assert ndcg["unsupervised"]["32"] > ndcg["truncate"]["32"] + 0.02
    assert ndcg["truncate"]["384"] > 0.5  # the real model on real relevant documents
    assert abs(ndcg["unsupervised"]["384"] - ndcg["truncate"]["384"]) < 0.03
    assert (out / "results.md").read_text().startswith("| scifact_slice")
    assert (out / "ndcg.png").read_bytes()[:4] == b"\x89PNG"


def train_args(scifact_slice, out, cache, *extra: str) -> list[str]:
    """`matryoshka-rag train` on the slice's corpus at dims 32,384, 20 steps, with the test's cache."""
    corpus = str(scifact_slice / "corpus.jsonl")
    common = ["--dims", "32,384", "--out", str(out), "--cache", cache, "--max-steps", "20"]
    return ["train", "--corpus", corpus, *common, *extra]


def test_train_writes_adaptor_and_refuses_to_overwrite(scifact_slice, cache, tmp_path, capsys):
    out = tmp_path / "adaptor"
    args = train_args(scifact_slice, out, cache)
    assert main(args) == 0
    adaptor = load_adaptor(out)
    assert adaptor.config.dims == (32, 384) and adaptor.metadata["training"]["mode"] == "unsupervised"
    before = adaptor.fingerprint()
    assert main(args) == 2
    assert "already exists and holds an adaptor; pass --overwrite" in capsys.readouterr().err
    assert load_adaptor(out).fingerprint() == before
    assert main([*args, "--overwrite", "--seed", "1"]) == 0
    assert load_adaptor(out).fingerprint() != before


def test_train_without_dims_trains_the_python_apis_default_dims_up_to_the_base_dim(tmp_path):
    """768-d vectors given as a .npy (ids in vectors_ids.json beside it): `train` without --dims trains the
    dims `train_unsupervised` trains without them, the full 768 included."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(150, 768)).astype(np.float32)
    ids = [f"d{i}" for i in range(len(vectors))]
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": i, "title": "", "text": f"document {i}"} for i in ids])
    np.save(tmp_path / "vectors.npy", vectors)
    (tmp_path / "vectors_ids.json").write_text(json.dumps(ids))
    out = tmp_path / "adaptor"
    args = ["--embeddings", str(tmp_path / "vectors.npy"), "--max-steps", "2", "--out", str(out)]
    assert main(["train", "--corpus", str(tmp_path / "corpus.jsonl"), *args]) == 0
    python_api = train_unsupervised(vectors, config=UnsupervisedConfig(max_steps=2), progress=False)
    assert load_adaptor(out).config.dims == python_api.config.dims
    assert python_api.config.dims[-1] == 768 and 512 in python_api.config.dims


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_train_refuses_a_folder_of_other_files_before_embedding(scifact_slice, tmp_path, capsys, overwrite):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("keep me")
    fresh_cache = tmp_path / "embeddings.sqlite"
    assert main(train_args(scifact_slice, project, str(fresh_cache), *overwrite)) == 2
    assert f"{project} is a folder with other files in it, not an adaptor" in capsys.readouterr().err
    assert not fresh_cache.exists()  # refused before the corpus was embedded, let alone trained on
    assert [p.name for p in project.iterdir()] == ["notes.txt"]
    assert (project / "notes.txt").read_text() == "keep me"


def test_train_supervised_from_files_with_an_unlabelled_blank_query(scifact_slice, cache, tmp_path):
    """Only the labelled queries are embedded: a blank query that no qrels line names does not abort."""
    out = tmp_path / "supervised"
    queries = tmp_path / "queries.jsonl"
    blank = json.dumps({"_id": "unlabelled", "text": "  "}) + "\n"
    queries.write_text((scifact_slice / "queries.jsonl").read_text() + blank)
    labels = ["--queries", str(queries), "--qrels", str(scifact_slice / "qrels" / "train.tsv")]
    assert main(train_args(scifact_slice, out, cache, *labels, "--ranking", "pairwise")) == 0
    training = load_adaptor(out).metadata["training"]
    assert training["supervised"]["objective"] == "pairwise"  # the stage ran; `mode` names what it returned
    assert training["mode"] == ("supervised" if training["supervised_stage"]["kept"] else "unsupervised")


def test_train_bad_files_are_one_line_and_exit_2_before_any_embedding(scifact_slice, tmp_path, capsys):
    corpus, queries = scifact_slice / "corpus.jsonl", scifact_slice / "queries.jsonl"
    train_qrels = scifact_slice / "qrels" / "train.tsv"
    first_labelled = train_qrels.read_text().splitlines()[1].split("\t")[0]
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(queries.read_bytes() + '{"_id": "x", "text": "caf\u00e9"}\n'.encode("latin-1"))
    surrogate = tmp_path / "corpus.jsonl"
    surrogate.write_text(corpus.read_text() + '{"_id": "x", "title": "", "text": "D \\ud800"}\n')
    no_positive = tmp_path / "dev.tsv"
    no_positive.write_text(
        "query-id\tcorpus-id\tscore\n" + train_qrels.read_text().splitlines()[1][:-1] + "0\n"
    )
    blank_labelled = tmp_path / "blank.jsonl"
    records = [json.loads(line) for line in queries.read_text().splitlines()]
    blank_labelled.write_text(
        "".join(json.dumps({**r, "text": ""} if r["_id"] == first_labelled else r) + "\n" for r in records)
    )
    a_file = tmp_path / "adaptor.txt"
    a_file.write_text("not a folder")
    labels = ["--queries", str(queries), "--qrels", str(train_qrels)]
    cache = tmp_path / "embeddings.sqlite"
    out = str(tmp_path / "adaptor")
    cases = [
        (
            ["--corpus", str(corpus), "--out", out, "--queries", str(latin1), "--qrels", str(train_qrels)],
            "latin1.jsonl is not UTF-8 text (byte 0xe9 cannot be decoded)",
        ),
        (
            ["--corpus", str(surrogate), "--out", out],
            f"line {len(corpus.read_text().splitlines()) + 1}: 'text' holds a lone surrogate '\\ud800'",
        ),
        (
            ["--corpus", str(corpus), "--out", out, *labels, "--dev-qrels", str(no_positive)],
            "dev.tsv holds no judgement with a grade > 0",
        ),
        (
            [
                "--corpus",
                str(corpus),
                "--out",
                out,
                "--queries",
                str(blank_labelled),
                "--qrels",
                str(train_qrels),
            ],
            f"1 labelled query(ies) have a blank text, first {first_labelled!r}",
        ),
        (
            ["--corpus", str(corpus), "--out", str(a_file), "--overwrite"],
            "adaptor.txt is a file, not a folder",
        ),
    ]
    for args, message in cases:
        assert main(["train", *args, "--cache", str(cache)]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not cache.exists()  # every case was refused before anything was embedded
    assert a_file.read_text() == "not a folder"


def test_cli_reports_bad_input_cleanly(scifact_slice, tmp_path, capsys):
    assert main(["eval", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "BEIR dataset folder not found" in capsys.readouterr().err
    args = [
        "train",
        "--corpus",
        str(scifact_slice / "corpus.jsonl"),
        "--out",
        str(tmp_path / "a"),
        "--dims",
        "64,32",
    ]
    assert main(args) == 2
    assert "strictly increasing" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--corpus",
                str(scifact_slice / "corpus.jsonl"),
                "--out",
                str(tmp_path / "a"),
                "--qrels",
                "x.tsv",
            ]
        )
        == 2
    )
    assert "--queries and --qrels go together" in capsys.readouterr().err


def test_eval_refuses_unwritable_outputs_before_any_work(tmp_path, capsys):
    """`--out` a file, or `--save-adaptors` over a folder of other files: refused before the dataset is read
    (the dataset path does not exist, so a later check would report that instead)."""
    missing = str(tmp_path / "no-dataset")
    report = tmp_path / "report.txt"
    report.write_text("an older report")
    assert main(["eval", "--dataset", missing, "--out", str(report)]) == 2
    assert f"{report} is a file, not a folder" in capsys.readouterr().err
    assert report.read_text() == "an older report"
    out = tmp_path / "report"
    (out / "adaptors" / "unsupervised").mkdir(parents=True)
    (out / "adaptors" / "unsupervised" / "notes.txt").write_text("keep me")
    assert main(["eval", "--dataset", missing, "--out", str(out), "--save-adaptors"]) == 2
    assert "unsupervised is a folder with other files in it" in capsys.readouterr().err
    assert (out / "adaptors" / "unsupervised" / "notes.txt").read_text() == "keep me"
