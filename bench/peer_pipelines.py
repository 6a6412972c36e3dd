"""The peers' ingestion pipelines, as bench/peers.py runs them: in the peers' own virtual
environment (PEER_PINS in bench/peers.py), one process per run, configured as each project's
documentation recommends for speed and re-ingestion.

- ``llamaindex``: SimpleDirectoryReader (PyMuPDFReader for PDFs, its fastest PDF reader;
  HTMLTagReader on <body> for HTML; its Markdown reader), IngestionPipeline with SentenceSplitter
  (CHUNK_TOKENS / OVERLAP_TOKENS, cl100k tokens), OpenAIEmbedding (batches of 100, its default)
  and WeaviateVectorStore; a docstore and an ingestion cache persisted between runs (the
  re-ingest recipe: unchanged documents skipped, changed ones replaced); ``num_workers`` 2 for
  reading and for the transformations (2 cores).
- ``haystack``: FileTypeRouter -> PyPDFToDocument / HTMLToDocument / MarkdownToDocument ->
  DocumentJoiner -> DocumentSplitter (by token, cl100k, same sizes) -> OpenAIDocumentEmbedder
  (batches of 100) -> DocumentWriter(WeaviateDocumentStore, DuplicatePolicy.OVERWRITE). Haystack
  has no re-ingest cache: every run embeds every chunk again.

    <peers venv>/bin/python bench/peer_pipelines.py SYSTEM --files LIST --state DIR
        --weaviate-port P --weaviate-grpc-port G --openai-url URL --collection NAME

Prints one JSON line: documents read, chunks produced, and ``ready_at``: time.monotonic() (one
clock for every process of the machine) once imported and connected, so bench/peers.py can
time the work apart from the process start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

CHUNK_TOKENS, OVERLAP_TOKENS = 200, 20  # docstreams' CHUNK_MAX_TOKENS / CHUNK_OVERLAP_TOKENS
MODEL, DIMENSIONS = "text-embedding-3-small", 384
EMBED_BATCH = 100


def llamaindex(args: argparse.Namespace, files: list[str]) -> dict[str, Any]:
    import weaviate
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import DocstoreStrategy, IngestionCache, IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.embeddings.openai import OpenAIEmbedding
    from llama_index.readers.file import HTMLTagReader, PyMuPDFReader
    from llama_index.vector_stores.weaviate import WeaviateVectorStore

    client = weaviate.connect_to_local(host="127.0.0.1", port=args.weaviate_port,
                                       grpc_port=args.weaviate_grpc_port)  # fmt: skip
    ready_at = time.monotonic()  # imported and connected: what a long-running worker has done
    try:
        reader = SimpleDirectoryReader(
            input_files=files,
            file_extractor={".pdf": PyMuPDFReader(), ".html": HTMLTagReader(tag="body")},
            filename_as_id=True,  # stable ids: what the docstore recognises on re-ingest
        )
        documents = reader.load_data(num_workers=2)
        pipeline = IngestionPipeline(
            transformations=[
                SentenceSplitter(chunk_size=CHUNK_TOKENS, chunk_overlap=OVERLAP_TOKENS),
                OpenAIEmbedding(
                    model=MODEL,
                    dimensions=DIMENSIONS,
                    api_base=args.openai_url,
                    api_key="sk-bench",
                    embed_batch_size=EMBED_BATCH,
                ),
            ],
            vector_store=WeaviateVectorStore(weaviate_client=client, index_name=args.collection),
            docstore=SimpleDocumentStore(),
            cache=IngestionCache(),
            docstore_strategy=DocstoreStrategy.UPSERTS,
        )
        state = Path(args.state)
        if (state / "docstore.json").exists():
            pipeline.load(str(state))
        nodes = pipeline.run(documents=documents, num_workers=2)
        pipeline.persist(str(state))
        return {"documents": len(documents), "chunks": len(nodes), "ready_at": ready_at}
    finally:
        client.close()


def haystack(args: argparse.Namespace, files: list[str]) -> dict[str, Any]:
    from haystack import Pipeline
    from haystack.components.converters import (
        HTMLToDocument,
        MarkdownToDocument,
        PyPDFToDocument,
    )
    from haystack.components.embedders import OpenAIDocumentEmbedder
    from haystack.components.joiners import DocumentJoiner
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.routers import FileTypeRouter
    from haystack.components.writers import DocumentWriter
    from haystack.document_stores.types import DuplicatePolicy
    from haystack.utils import Secret
    from haystack_integrations.document_stores.weaviate import WeaviateDocumentStore

    store = WeaviateDocumentStore(url=f"http://127.0.0.1:{args.weaviate_port}",
                                  grpc_port=args.weaviate_grpc_port,
                                  collection_settings={"class": args.collection})  # fmt: skip
    pipeline = Pipeline()
    pipeline.add_component("router", FileTypeRouter(
        mime_types=["application/pdf", "text/html", "text/markdown"],
        additional_mimetypes={"text/markdown": ".md"}))  # fmt: skip
    pipeline.add_component("pdf", PyPDFToDocument())
    pipeline.add_component("html", HTMLToDocument())
    pipeline.add_component("markdown", MarkdownToDocument())
    pipeline.add_component("join", DocumentJoiner())
    pipeline.add_component("split", DocumentSplitter(split_by="token", split_length=CHUNK_TOKENS,
                                                     split_overlap=OVERLAP_TOKENS,
                                                     tokenizer_encoding="cl100k_base"))  # fmt: skip
    pipeline.add_component("embed", OpenAIDocumentEmbedder(
        api_key=Secret.from_token("sk-bench"), model=MODEL, dimensions=DIMENSIONS,
        api_base_url=args.openai_url, batch_size=EMBED_BATCH, progress_bar=False))  # fmt: skip
    pipeline.add_component("write", DocumentWriter(store, policy=DuplicatePolicy.OVERWRITE))
    pipeline.connect("router.application/pdf", "pdf.sources")
    pipeline.connect("router.text/html", "html.sources")
    pipeline.connect("router.text/markdown", "markdown.sources")
    for converter in ("pdf", "html", "markdown"):
        pipeline.connect(f"{converter}.documents", "join.documents")
    pipeline.connect("join.documents", "split.documents")
    pipeline.connect("split.documents", "embed.documents")
    pipeline.connect("embed.documents", "write.documents")
    ready_at = time.monotonic()  # imported and built: what a long-running worker has done
    result = pipeline.run({"router": {"sources": files}}, include_outputs_from={"join", "split"})
    return {"documents": len(result["join"]["documents"]),
            "chunks": len(result["split"]["documents"]), "ready_at": ready_at}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=["llamaindex", "haystack"])
    parser.add_argument("--files", required=True, help="a file listing the inputs, one a line")
    parser.add_argument("--state", required=True)
    parser.add_argument("--weaviate-port", type=int, required=True)
    parser.add_argument("--weaviate-grpc-port", type=int, required=True)
    parser.add_argument("--openai-url", required=True)
    parser.add_argument("--collection", required=True)
    args = parser.parse_args()
    files = [line for line in Path(args.files).read_text().splitlines() if line]
    run = llamaindex if args.system == "llamaindex" else haystack
    print(json.dumps(run(args, files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
