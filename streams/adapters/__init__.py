"""Adapters: the outside systems behind small interfaces (blob store, fetcher, extractors,
embedders, Weaviate). Foreign exceptions are translated here into docstreams' own."""
