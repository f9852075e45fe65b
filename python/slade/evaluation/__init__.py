"""Retrieval metrics, embedding, per-role evaluation, concatenated fold embeddings, retrieval grid, plots."""
