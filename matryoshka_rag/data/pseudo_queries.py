"""Pseudo-queries from a corpus, no language model: (query text, document row) pairs that stand in for
relevance labels.

Each document gives at most one query (one embedding per document is the encoding budget):

- its **title**, where the corpus has one, with probability `title_share`;
- otherwise one of its body's sentences of at least `min_words` words, drawn at random: the inverse cloze task
  (ICT, Lee et al. 2019), a sentence is a query for the document it came from.

The sentence is *kept* in the document. ICT removes it in 90% of cases so that the task is not word matching,
but the adaptor trains on the document vectors the store serves, which were embedded from the whole text:
removing the sentence would mean embedding every document a second time and training against a vector that
is never served. A document whose body has no sentence long enough falls back to its title; one with neither
gives no query (`PseudoQueries.skipped`), and both counts are reported.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import InputError
from ..validation import check_int

__all__ = ["PseudoQueries", "QueryKind", "pseudo_queries", "sentences"]

QueryKind = Literal["title", "sentence"]

# a sentence ends at . ! or ? followed by white space and a capital, digit or opening bracket/quote
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])")


@dataclass(frozen=True)
class PseudoQueries:
    """Pseudo-queries of a corpus of `n` documents.

    `texts[i]` is a query for corpus row `doc_rows[i]`, made from its `kinds[i]` ("title" or "sentence").
    `no_sentence` lists the rows whose body has no sentence of at least `min_words` words (they fell back to
    their title where they had one); `skipped` the rows that gave no query at all.
    """

    texts: list[str]
    doc_rows: list[int]
    kinds: list[QueryKind]
    no_sentence: list[int]
    skipped: list[int]

    def counts(self) -> dict[str, int]:
        """Queries per kind, and the documents without a long enough sentence and without any query."""
        return {
            "queries": len(self.texts),
            **{kind: self.kinds.count(kind) for kind in get_args(QueryKind)},
            "no_sentence": len(self.no_sentence),
            "skipped": len(self.skipped),
        }

    def relevance(self) -> list[dict[int, float]]:
        """Per query, `{its document's row: 1.0}` (the supervised stage's relevance lists)."""
        return [{row: 1.0} for row in self.doc_rows]


def sentences(text: str) -> list[str]:
    """The sentences of `text`, split after `.`, `!` or `?` before a capital, digit or opening bracket, each
    stripped; blank pieces dropped."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece.strip()]


def pseudo_queries(
    bodies: Sequence[str],
    titles: Sequence[str] | None = None,
    *,
    min_words: int = 6,
    title_share: float = 0.5,
    seed: int = 0,
) -> PseudoQueries:
    """At most one pseudo-query per document: its title (probability `title_share`, when it has one) or a
    random sentence of its body with at least `min_words` words (white-space separated), deterministic for
    `seed`.

    Args:
        bodies: document texts without their titles, one per corpus row.
        titles: a title per row ("" where a document has none), or None for a corpus without titles.

    `InputError` for `titles` of another length than `bodies`, `min_words < 1` or `title_share` outside
    [0, 1].
    """
    if titles is not None and len(titles) != len(bodies):
        raise InputError(f"{len(titles)} titles for {len(bodies)} documents: give one title per document")
    min_words = check_int("min_words", min_words)
    if not 0.0 <= title_share <= 1.0:
        raise InputError(f"title_share must be in [0, 1], got {title_share!r}")
    draw = random.Random(seed)
    texts: list[str] = []
    rows: list[int] = []
    kinds: list[QueryKind] = []
    no_sentence: list[int] = []
    skipped: list[int] = []
    for row, body in enumerate(bodies):
        title = (titles[row] if titles is not None else "").strip()
        long_enough = [s for s in sentences(body) if len(s.split()) >= min_words]
        wants_title = draw.random() < title_share  # drawn for every row: one row's text moves no other's draw
        pick = draw.random()
        if not long_enough:
            no_sentence.append(row)
        if title and (wants_title or not long_enough):
            texts.append(title)
            kinds.append("title")
        elif long_enough:
            texts.append(long_enough[int(pick * len(long_enough))])
            kinds.append("sentence")
        else:
            skipped.append(row)
            continue
        rows.append(row)
    return PseudoQueries(texts, rows, kinds, no_sentence, skipped)
