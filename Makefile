# Two entry points, each doing its own set-up in a virtual environment:
#   make demo   train adaptors on SciFact, print nDCG@10 by dim, answer a sample query
#   make check  lint, format, types and import rules (seconds once mypy's cache is warm)
#   make test   the test suite
# CI (.ci/run) runs `make check test`, the README's test command.
VENV ?= .venv
PYTHON ?= python3
# The CPU wheel of torch 2.13.0 (a bare `torch` would pull a multi-GB CUDA build on a CPU machine); the
# version constraints.txt pins.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo check test lint types imports bench

# The four distributions (the core and each integration, each with its own pyproject.toml), installed editable
# with every extra at the exact versions CI tests (constraints.txt); a change to either re-installs.
LANGCHAIN := integrations/langchain
LLAMA_EMBEDDINGS := integrations/llama_index/llama-index-embeddings-matryoshka-rag
LLAMA_VECTOR_STORES := integrations/llama_index/llama-index-vector-stores-matryoshka-rag

$(STAMP): pyproject.toml constraints.txt $(LANGCHAIN)/pyproject.toml $(LLAMA_EMBEDDINGS)/pyproject.toml $(LLAMA_VECTOR_STORES)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q -c constraints.txt "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[train,chroma,plot,minilm,test]" -e "$(LANGCHAIN)[test]" \
		-e "$(LLAMA_EMBEDDINGS)[test]" -e "$(LLAMA_VECTOR_STORES)[test]"
	touch $(STAMP)

install: $(STAMP)

# Minutes on 2 CPU cores with ../shared/embeddings: short training stages; it prints what a full run adds.
# One torch thread: on 2 cores shared with other work, two threads wait on each other (BENCHMARKS.md, "make demo").
DATASET ?= scifact
DEMO_QUERY ?= Vitamin D deficiency is associated with an increased risk of tuberculosis.
DEMO_THREADS ?= 1

demo: $(STAMP)
	OMP_NUM_THREADS=$(DEMO_THREADS) $(BIN)/python -m matryoshka_rag.cli.demo --dataset $(DATASET) --query "$(DEMO_QUERY)"

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# The layers and the torch-free serving packages (pyproject.toml, [tool.importlinter]).
imports: $(STAMP)
	$(BIN)/lint-imports

check: lint types imports

bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py --out runs/quality
