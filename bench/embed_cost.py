"""What embedding costs: tokens paid to the provider / tokens of the corpus's unique chunks.

Two measurements, each on a private local stack with every app as its own process and the embed
stage paying the local OpenAI-compatible server (tests/openai_server.py, fast mode: vectors from
each text's hash, usage counted with cl100k_base like OpenAI) through the real `openai` client:

- resubmitted: a corpus ingested, then the same files again under new document ids, then again
  under the first ids (unchanged content). Should be exactly 1.00.
- chaos: the chaos run (streams/chaos.py: SIGKILLs, a broker restart, a Weaviate outage); tokens
  the provider served during the chaos run over its unique chunks' tokens. Goal: <= 1.02.

    .venv/bin/python bench/embed_cost.py --kills 30 --seed 1 [--pages 2000] [--skip-chaos]

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from docstreams_dev.chaos import TENANT, ChaosPlan, build_documents, ingest, passed, run
from docstreams_dev.servers.openai_server import EmbeddingsApi, serving
from docstreams_dev.stack import Stack
from docstreams_dev.stack.ports import private_stack_settings
from streams.adapters.embedding_cache import WeaviateEmbeddingCache, cache_key
from streams.adapters.weaviate_store import ChunkIndex
from streams.settings import Settings

DIMENSIONS = 256


def paying(url: str, max_inputs: int = 2048) -> dict[str, Any]:
    return {
        "embedder": "openai",
        "openai_base_url": url,
        "openai_api_key": "sk-bench",
        "openai_dimensions": DIMENSIONS,
        "embed_max_inputs_per_request": max_inputs,
    }


def unique_chunk_tokens(settings: Settings, api: EmbeddingsApi) -> dict[str, int]:
    """The distinct chunk texts of the tenant's objects in Weaviate, and their tokens."""
    index = ChunkIndex(settings)
    try:
        collection = index.client.collections.use(index.name).with_tenant(TENANT)
        texts = {str(o.properties["text"]) for o in collection.iterator(return_properties=["text"])}
        objects = len(collection)
    finally:
        index.close()
    return {
        "objects": objects,
        "unique_chunks": len(texts),
        "unique_chunk_tokens": sum(api.count_tokens(t) for t in texts),
    }


def cache_lookup_ms(settings: Settings, model: str, texts: int = 1000) -> float:
    """Time of one cache lookup of ``texts`` ids (hits and misses mixed), after the run."""
    cache = WeaviateEmbeddingCache(settings, DIMENSIONS)
    try:
        keys = [cache_key(model, DIMENSIONS, f"probe {i}") for i in range(texts)]
        cache.get(TENANT, keys[:10])  # connect first
        began = time.perf_counter()
        cache.get(TENANT, keys)
        return round((time.perf_counter() - began) * 1000, 1)
    finally:
        cache.close()


def resubmitted(workdir: Path, pages: int) -> dict[str, Any]:
    base = private_stack_settings(
        workdir / "stack", blob_dir=workdir / "blobs", local_source_roots=[workdir]
    )
    stack = Stack(base)
    stack.up()
    api = EmbeddingsApi(fast=True)
    try:
        with serving(api) as url:
            settings = base.model_copy(update=paying(url))
            documents = build_documents(workdir / "documents", pages)
            rounds = {
                "first": documents,
                "new_ids": {f"{d}-again": p for d, p in documents.items()},
                "same_ids": documents,
            }
            paid: dict[str, int] = {}
            for name, docs in rounds.items():
                before = api.tokens_served
                progress, _ = ingest(settings, docs, 1800, workdir / f"logs-{name}")
                incomplete = [d for d, p in progress.items() if p.completed is None]
                if incomplete:
                    raise RuntimeError(f"{name}: documents did not complete: {incomplete}")
                paid[name] = api.tokens_served - before
            corpus = unique_chunk_tokens(settings, api)
            lookup = cache_lookup_ms(settings, settings.openai_model)
    finally:
        stack.down()
    return {
        "documents": len(documents),
        "pages": pages,
        **corpus,
        "tokens_paid_per_round": paid,
        "tokens_paid": sum(paid.values()),
        "ratio": round(sum(paid.values()) / corpus["unique_chunk_tokens"], 4),
        "cache_lookup_ms_per_1000_ids": lookup,
    }


def chaos(workdir: Path, kills: int, seed: int, pages: int, max_inputs: int) -> dict[str, Any]:
    reference_api, chaos_api = EmbeddingsApi(fast=True), EmbeddingsApi(fast=True)
    with serving(reference_api) as reference_url, serving(chaos_api) as chaos_url:
        plan = ChaosPlan(
            kills=kills,
            seed=seed,
            pages=pages,
            workdir=workdir,
            settings=paying(reference_url, max_inputs),
            chaos_settings={"openai_base_url": chaos_url},
            inspect=lambda settings: unique_chunk_tokens(settings, chaos_api),
        )
        summary = run(plan)
    summary["tokens_paid"] = chaos_api.tokens_served
    summary["ratio"] = round(chaos_api.tokens_served / summary["unique_chunk_tokens"], 4)
    summary["provider_requests"] = {
        str(status): sum(1 for e in chaos_api.log if e.status == status)
        for status in sorted({e.status for e in chaos_api.log})
    }
    summary["passed"] = passed(summary)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pages", type=int, default=2000, help="pages of the chaos run's PDF")
    parser.add_argument("--resubmit-pages", type=int, default=300)
    parser.add_argument("--skip-chaos", action="store_true")
    parser.add_argument(
        "--max-inputs-per-request",
        type=int,
        default=32,
        help="chaos run: small requests, so that kills land between paid requests",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="docstreams-embed-cost-"))
    result: dict[str, Any] = {"resubmitted": resubmitted(workdir / "resubmit", args.resubmit_pages)}
    print(orjson.dumps({"resubmitted": result["resubmitted"]}).decode(), flush=True)
    if not args.skip_chaos:
        result["chaos"] = chaos(
            workdir / "chaos", args.kills, args.seed, args.pages, args.max_inputs_per_request
        )
    print(orjson.dumps(result).decode())
    ok = result["resubmitted"]["ratio"] == 1.0 and (
        args.skip_chaos or (result["chaos"]["passed"] and result["chaos"]["ratio"] <= 1.02)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
