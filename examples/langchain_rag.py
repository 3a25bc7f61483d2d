"""LangChain RAG over SciFact with a Matryoshka vector store on Chroma (64-d search, rerank), fully offline.

    python examples/langchain_rag.py                      # 300 documents, 3 SciFact questions
    python examples/langchain_rag.py --quick              # the committed slice: 40 documents, 2 questions
    python examples/langchain_rag.py --adaptor runs/demo/adaptors/unsupervised --docs all --question "..."

Base embeddings: the bundled all-MiniLM-L6-v2 behind LangChain's ``CacheBackedEmbeddings`` (base vectors
cached on disk under ``--runs``, so a re-run or another adaptor re-uses them). ``MatryoshkaVectorStore`` takes
the place of ``langchain_chroma.Chroma`` (one line): it applies the adaptor, searches ``--dim`` dims and reranks
at the full dim. The chain is LCEL: retriever | prompt | chat model. No LLM
is reachable here, so the default chat model is an offline stand-in that returns the retrieved context with a
note saying so; pass any LangChain chat model to ``main(chat_model=...)`` for real answers. Retrieval is real.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from langchain_classic.embeddings import CacheBackedEmbeddings
from langchain_classic.storage import LocalFileStore
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from scifact_demo import MODEL, parse_args, prepare, report, stand_in_answer

from langchain_matryoshka_rag import MatryoshkaVectorStore, ProviderEmbeddings


class StandInChatModel(BaseChatModel):
    """Offline stand-in for a chat model: replies with its last input message, prefixed by a plain note."""

    @property
    def _llm_type(self) -> str:
        return "offline-stand-in"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ):
        answer = stand_in_answer(str(messages[-1].content))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])


def _context(docs: list[Document]) -> str:
    return "\n\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def main(argv: list[str] | None = None, chat_model: BaseChatModel | None = None) -> list[dict]:
    """Index the SciFact slice, answer each question; returns per question ``{"question", "retrieved":
    [(doc id, text)], "answer"}``."""
    args = parse_args(__doc__, argv)
    demo = prepare(args)
    base = CacheBackedEmbeddings.from_bytes_store(
        ProviderEmbeddings(model_name=MODEL),
        LocalFileStore(args.runs / "langchain-embedding-cache"),
        namespace=MODEL,
        query_embedding_cache=True,
        key_encoder="sha256",
    )
    # was: Chroma(collection_name=..., embedding_function=base, client=...)
    store = MatryoshkaVectorStore(
        f"scifact-{args.dim}d-{uuid.uuid4().hex[:8]}", base, adaptor=demo.adaptor, small_dim=args.dim
    )
    print(f"indexing {len(demo.doc_ids)} documents, searched at {args.dim} dims ...")
    store.add_texts(demo.doc_texts, ids=demo.doc_ids)

    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer the question from the context only; cite document ids in brackets."),
            ("human", "Context:\n{context}\n\nQuestion: {question}"),
        ]
    )
    answer = (
        (lambda x: {"context": _context(x["docs"]), "question": x["question"]})
        | prompt
        | (chat_model or StandInChatModel())
        | StrOutputParser()
    )
    retriever = store.as_retriever(search_kwargs={"k": args.k})
    chain = {"docs": retriever, "question": RunnablePassthrough()} | RunnablePassthrough.assign(answer=answer)
    results = []
    for question in demo.questions:
        out = chain.invoke(question)
        retrieved = [(d.id, d.page_content) for d in out["docs"]]
        results.append({"question": question, "retrieved": retrieved, "answer": out["answer"]})
    store.store.clear()
    report(demo, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
