"""Former home of the store; it lives in `matryoshka_rag.store`."""

from .store.store import *  # noqa: F403
