"""The store's provider follows the one base-model rule of the wrappers
(`embeddings.adapted.warn_if_other_model`): a `BaseModelWarning` at the caller's line for another model, none
for an alias of the adaptor's model, an unnamed callable or a model named "unknown"."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import chromadb
import numpy as np
import pytest

from matryoshka_rag.embeddings.adapted import BaseModelWarning
from matryoshka_rag.embeddings.providers import CallableProvider
from matryoshka_rag.store import MatryoshkaStore


def _embed(texts: list[str]) -> np.ndarray:
    return np.ones((len(texts), 384), dtype=np.float32)


def _open(adaptor: Path, provider) -> MatryoshkaStore:
    name = f"p{uuid.uuid4().hex[:12]}"
    return MatryoshkaStore(name, adaptor, client=chromadb.EphemeralClient(), provider=provider)


def test_another_model_warns_at_the_callers_line(small_adaptor_dir: Path) -> None:
    with pytest.warns(
        BaseModelWarning, match="'all-MiniLM-L6-v2' but wraps the base model 'other-model'"
    ) as caught:
        store = _open(small_adaptor_dir, CallableProvider(_embed, name="other-model"))
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]
    with pytest.warns(BaseModelWarning):
        store.provider = CallableProvider(_embed, name="e5-small")


@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "unknown", None])
def test_the_same_model_or_no_name_does_not_warn(small_adaptor_dir: Path, name: str | None) -> None:
    provider = _embed if name is None else CallableProvider(_embed, name=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = _open(small_adaptor_dir, provider)
    assert store.provider is not None and store.provider.name == (name or "_embed")
