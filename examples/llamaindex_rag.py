"""LlamaIndex RAG over SciFact with a Matryoshka vector store on Chroma (64-d search, rerank), fully offline.

    python examples/llamaindex_rag.py                     # 300 documents, 3 SciFact questions
    python examples/llamaindex_rag.py --quick             # the committed slice: 40 documents, 2 questions
    python examples/llamaindex_rag.py --adaptor runs/demo/adaptors/unsupervised --docs all --question "..."

The bundled all-MiniLM-L6-v2 embeds the documents in an ``IngestionPipeline`` that writes to a
``MatryoshkaVectorStore`` (in the place of ``ChromaVectorStore``: one line), which applies the adaptor, searches
``--dim`` dims and reranks at the full dim. The pipeline's ``IngestionCache`` (persisted under ``--runs``) keeps
the embedded nodes, keyed by the texts and the embedding model, so a re-run skips the base model (the adaptor
runs in the store, so another adaptor re-uses the cache). A ``VectorStoreIndex`` on that store answers through
a query engine. No LLM is reachable here, so the default LLM is an offline stand-in that
returns the prompt (retrieved context included) with a note saying so; pass any LlamaIndex LLM to
``main(llm=...)`` for real answers. Retrieval is real.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionCache, IngestionPipeline
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from scifact_demo import MODEL, parse_args, prepare, report, stand_in_answer

from llama_index.embeddings.matryoshka_rag import ProviderEmbedding
from llama_index.vector_stores.matryoshka_rag import MatryoshkaVectorStore


class StandInLLM(CustomLLM):
    """Offline stand-in for an LLM: completes a prompt with the prompt itself, prefixed by a plain note."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="offline-stand-in")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=stand_in_answer(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = stand_in_answer(prompt)
        yield CompletionResponse(text=text, delta=text)


def main(argv: list[str] | None = None, llm: Any = None) -> list[dict]:
    """Index the SciFact slice, answer each question; returns per question ``{"question", "retrieved":
    [(doc id, text)], "answer"}``."""
    args = parse_args(__doc__, argv)
    demo = prepare(args)
    embed_model = ProviderEmbedding(MODEL)
    # was: ChromaVectorStore(chroma_collection=client.create_collection(name, ...))
    vector_store = MatryoshkaVectorStore(
        demo.adaptor, f"scifact-{args.dim}d-{uuid.uuid4().hex[:8]}", small_dim=args.dim
    )

    cache_file = args.runs / "llamaindex-ingestion-cache.json"
    cache = IngestionCache.from_persist_path(str(cache_file)) if cache_file.is_file() else IngestionCache()
    pipeline = IngestionPipeline(transformations=[embed_model], vector_store=vector_store, cache=cache)
    print(f"indexing {len(demo.doc_ids)} documents, searched at {args.dim} dims ...")
    pipeline.run(documents=[Document(text=t, id_=i) for i, t in zip(demo.doc_ids, demo.doc_texts)])
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache.persist(str(cache_file))

    index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)
    engine = index.as_query_engine(llm=llm or StandInLLM(), similarity_top_k=args.k)
    results = []
    for question in demo.questions:
        response = engine.query(question)
        retrieved = [(hit.node.node_id, hit.node.get_content()) for hit in response.source_nodes]
        results.append({"question": question, "retrieved": retrieved, "answer": str(response)})
    vector_store.clear()
    report(demo, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
