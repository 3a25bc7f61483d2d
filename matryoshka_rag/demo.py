"""`python -m matryoshka_rag.demo`: the demo lives in `matryoshka_rag.cli.demo`."""

import sys

from .cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
