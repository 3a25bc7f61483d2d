"""`fit_from_texts` (behind the frameworks' `fit`): it checks where it will write before embedding anything, and
the adaptor it saves is trained."""

import pytest

from matryoshka_rag import InputError, load_adaptor
from matryoshka_rag.recipes.fit import fit_from_texts

TEXTS = [f"document {i} about vitamin D and tuberculosis" for i in range(20)]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_other_files_is_refused_before_any_embedding(tmp_path, overwrite):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("keep me")
    embedded = []

    def embed(texts):
        embedded.extend(texts)
        raise AssertionError("the corpus was embedded before the destination was checked")

    with pytest.raises(InputError, match="is a folder with other files in it, not an adaptor"):
        fit_from_texts(embed, TEXTS, project, overwrite=overwrite, progress=False)
    assert embedded == []
    assert [p.name for p in project.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_as_the_path_is_refused_before_any_embedding(tmp_path, overwrite):
    target = tmp_path / "adaptor"
    target.write_text("my notes")
    with pytest.raises(InputError, match="is a file, not a folder"):
        fit_from_texts(lambda texts: [[1.0] * 8 for _ in texts], TEXTS, target, overwrite=overwrite)
    assert target.read_text() == "my notes"


@pytest.fixture(scope="module")
def labelled_texts(scifact):
    """SciFact texts: 60 train queries' (query, relevant document) pairs, and a corpus of their relevant
    documents plus the first 300 others."""
    train = scifact.qrels("train")
    text = dict(zip(scifact.corpus_ids, scifact.corpus_texts))
    query_text = dict(zip(scifact.query_ids, scifact.query_texts))
    pairs = [
        (query_text[q], text[d]) for q in sorted(train)[:60] for d, grade in train[q].items() if grade > 0
    ]
    corpus = list(dict.fromkeys([t for _, t in pairs] + scifact.corpus_texts[:300]))
    return corpus, pairs


def test_fit_trains_the_adaptor_it_saves(tmp_path, labelled_texts, precomputed_minilm):
    """Unsupervised, the residual MLP (zero at the start) moved; supervised, validation chose a step after
    the start and the weights differ from the unsupervised fit's (the same stage one); both are saved."""
    corpus, pairs = labelled_texts
    settings = {"dims": (32, 384), "base_model": "all-MiniLM-L6-v2", "max_steps": 20, "eval_every": 5}
    plain = fit_from_texts(precomputed_minilm, corpus, tmp_path / "plain", progress=False, **settings)
    assert float(plain.mlp[-1].weight.detach().abs().max()) > 0
    # 9 of the 60 queries validate (15%), and the stage is kept whatever they say of each dim
    labelled = fit_from_texts(
        precomputed_minilm,
        corpus,
        tmp_path / "labelled",
        pairs=pairs,
        progress=False,
        min_validation=9,
        validate_stage=False,
        **settings,
    )
    assert labelled.metadata["training"]["corpus_size"] == plain.metadata["training"]["corpus_size"]
    assert labelled.metadata["metrics"]["best_step"] > 0
    assert labelled.fingerprint() != plain.fingerprint()
    for folder, adaptor in (("plain", plain), ("labelled", labelled)):
        assert load_adaptor(tmp_path / folder).fingerprint() == adaptor.fingerprint()
