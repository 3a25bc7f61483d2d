"""Pseudo-queries from a real BEIR corpus slice (inverse cloze sentences and titles), and the bad input: documents
without a sentence long enough, mismatched titles, settings out of range."""

import pytest

from matryoshka_rag import InputError
from matryoshka_rag.data.beir import read_corpus_fields
from matryoshka_rag.data.pseudo_queries import pseudo_queries, sentences
from tests.conftest import SLICE_DIR


@pytest.fixture(scope="module")
def corpus_slice():
    """Titles and bodies of the first 200 documents of the committed SciFact slice."""
    _, titles, bodies = read_corpus_fields(SLICE_DIR / "corpus.jsonl")
    return titles[:200], bodies[:200]


def test_each_query_is_its_documents_title_or_one_of_its_long_sentences(corpus_slice):
    titles, bodies = corpus_slice
    queries = pseudo_queries(bodies, titles, min_words=8, title_share=0.3, seed=1)
    assert len(queries.texts) == len(queries.doc_rows) == len(queries.kinds) == 200 - len(queries.skipped)
    for text, row, kind in zip(queries.texts, queries.doc_rows, queries.kinds):
        if kind == "title":
            assert text == titles[row].strip()
        else:
            assert text in bodies[row] and len(text.split()) >= 8
            assert text in sentences(bodies[row])
    counts = queries.counts()
    assert counts["title"] + counts["sentence"] == counts["queries"]
    assert 0 < counts["title"] < counts["sentence"]  # about 30% titles
    assert queries.relevance() == [{row: 1.0} for row in queries.doc_rows]


def test_deterministic_for_a_seed_and_another_seed_draws_other_queries(corpus_slice):
    titles, bodies = corpus_slice
    first, again = pseudo_queries(bodies, titles, seed=3), pseudo_queries(bodies, titles, seed=3)
    other = pseudo_queries(bodies, titles, seed=4)
    assert first == again
    assert first.texts != other.texts


def test_without_titles_every_query_is_a_sentence(corpus_slice):
    _, bodies = corpus_slice
    queries = pseudo_queries(bodies, seed=0)
    assert set(queries.kinds) == {"sentence"}
    assert queries.counts()["title"] == 0


def test_documents_without_a_long_enough_sentence_fall_back_to_the_title_or_are_skipped_and_counted():
    bodies = [
        "Short one. Also short.",  # no sentence of 6 words, has a title
        "Tiny. Too small!",  # no sentence of 6 words, no title
        "",  # empty body, no title
        "Vitamin D supplementation lowers the risk of tuberculosis in adults. Yes.",
    ]
    titles = ["A title for the first document", "", "  ", ""]
    queries = pseudo_queries(bodies, titles, min_words=6, title_share=0.0)
    assert queries.no_sentence == [0, 1, 2]
    assert queries.skipped == [1, 2]
    assert queries.doc_rows == [0, 3]
    assert queries.kinds == ["title", "sentence"]
    assert queries.texts[1] == "Vitamin D supplementation lowers the risk of tuberculosis in adults."
    assert queries.counts() == {"queries": 2, "title": 1, "sentence": 1, "no_sentence": 3, "skipped": 2}


def test_sentences_split_at_sentence_ends_only():
    text = "Levels were 1.5 mg/dL (p < 0.05). The effect was large! Was it? (Yes) it was. e.g. not here"
    assert sentences(text) == [
        "Levels were 1.5 mg/dL (p < 0.05).",
        "The effect was large!",
        "Was it?",
        "(Yes) it was. e.g. not here",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"titles": ["one"]}, "1 titles for 2 documents"),
        ({"min_words": 0}, "min_words must be an integer >= 1"),
        ({"title_share": 1.5}, r"title_share must be in \[0, 1\]"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(InputError, match=message):
        pseudo_queries(["a b c d e f g.", "h i j k l m n."], **kwargs)
