"""kNN search and k-means: faiss when installed, else plain torch (one fallback policy, one warning)."""
