"""A feature whose extra is not installed fails with one line naming it (``matryoshka_rag.extras``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from matryoshka_rag.extras import EXTRA_OF_MODULE, MissingExtraError, needs_extra, pyplot


@pytest.mark.parametrize("module", sorted(EXTRA_OF_MODULE))
def test_a_missing_package_names_its_extra(module: str, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import of it now fails as if it were not installed
    with pytest.raises(MissingExtraError) as caught, needs_extra("the feature"):
        __import__(module)
    extra = EXTRA_OF_MODULE[module]
    assert str(caught.value) == (
        f'the feature needs {module}, which is not installed: pip install "matryoshka-rag[{extra}]"'
    )
    assert isinstance(caught.value, ImportError) and caught.value.name == module


def test_other_import_errors_pass_through() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, needs_extra("the feature"):
        import no_such_module_anywhere  # noqa: F401
    assert not isinstance(caught.value, MissingExtraError)


def test_the_package_and_the_cli_name_the_extra_without_torch() -> None:
    """In a process where torch cannot be imported: a lazy export and a CLI command needing it say what to
    install; serving names (NumpyAdaptor, the framework wrappers' module) still import."""
    code = """
import sys
sys.modules["torch"] = None
import matryoshka_rag.embeddings.adapted, matryoshka_rag.recipes.fit
from matryoshka_rag import MissingExtraError, NumpyAdaptor
try:
    from matryoshka_rag import load_adaptor
except MissingExtraError as error:
    print(error)
from matryoshka_rag.cli.app import main
sys.exit(main(["eval", "--dataset", "scifact", "--out", "unused"]))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    hint = 'needs torch, which is not installed: pip install "matryoshka-rag[train]"'
    assert run.stdout.strip() == f"matryoshka_rag.load_adaptor {hint}"
    assert run.returncode == 2 and run.stderr.strip() == f"matryoshka-rag eval: error: this command {hint}"


def test_pyplot_is_the_file_only_backend_or_names_the_plot_extra(monkeypatch) -> None:
    assert pyplot("the plot").get_backend().lower() == "agg"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r'^the plot needs matplotlib, .*"matryoshka-rag\[plot\]"$'):
        pyplot("the plot")


def test_the_adaptor_format_and_its_error_need_no_torch() -> None:
    """`CorruptAdaptorError` lives in the torch-free `adaptor.format`; `adaptor.persistence` needs torch."""
    code = """
import sys
from matryoshka_rag import CorruptAdaptorError
import matryoshka_rag.adaptor.format
print(CorruptAdaptorError.__module__, "torch" in sys.modules)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["matryoshka_rag.adaptor.format", "False"]
