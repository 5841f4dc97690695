"""Implementations of bct.index.backend.Backend: ``files`` (a folder) and ``milvus`` (a collection)."""
