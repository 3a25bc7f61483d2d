"""`fit_from_texts` (behind the frameworks' `fit`) checks where it will write before embedding anything."""

import pytest

from matryoshka_rag import InputError
from matryoshka_rag.fit import fit_from_texts

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
