"""The ``matryoshka-rag`` command: `app` (the parser and the training and evaluation commands),
`store_commands` (``index``, ``query``, ``shrink``), `recommend` and `demo`."""
