"""A PNG grid: one query per row, then its top-5 retrievals framed green (same class) or red (other class)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from slade.search.knn import knn
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slade.evaluation.retrieval import RetrievalEval

TILE, BORDER, GAP = 72, 4, 12
QUERY_COLOUR, RIGHT, WRONG = (128, 128, 128), (0, 170, 0), (220, 0, 0)


def _tile(img: Image.Image, colour) -> Image.Image:
    framed = Image.new("RGB", (TILE, TILE), colour)
    framed.paste(img.convert("RGB").resize((TILE - 2 * BORDER, TILE - 2 * BORDER)), (BORDER, BORDER))
    return framed


def save_retrieval_grid(result: RetrievalEval, path: str | Path, n_queries: int = 8, top: int = 5,
                        seed: int = 0) -> None:
    query, reference = result.query, result.reference or result.query
    n_queries = min(n_queries, len(query.labels))
    top = min(top, len(reference.labels) - int(result.reference is None))
    if n_queries < 1 or top < 1:
        raise ValueError("save_retrieval_grid: not enough embedded images for a grid")
    rows = np.sort(np.random.default_rng(seed).choice(len(query.labels), n_queries, replace=False))
    if result.reference is None:
        neighbours = _leave_one_out(query.embeddings, rows, top)
    else:
        neighbours, _ = knn(query.embeddings[rows], reference.embeddings, top)
    canvas = Image.new("RGB", (TILE * (top + 1) + GAP, TILE * n_queries), (255, 255, 255))
    for r, (q, found) in enumerate(zip(rows, neighbours)):
        canvas.paste(_tile(query.images.load(int(query.indices[q])), QUERY_COLOUR), (0, r * TILE))
        for c, j in enumerate(found):
            colour = RIGHT if reference.labels[j] == query.labels[q] else WRONG
            canvas.paste(_tile(reference.images.load(int(reference.indices[j])), colour),
                         (TILE + GAP + c * TILE, r * TILE))
    ImageDraw.Draw(canvas).line([(TILE + GAP // 2, 0), (TILE + GAP // 2, canvas.height)], fill=(0, 0, 0))
    canvas.save(path)


def _leave_one_out(embeddings, rows, top):
    """Neighbours of the chosen rows among all the other rows of the same set."""
    idx, _ = knn(embeddings[rows], embeddings, top + 1)
    return np.array([[j for j in row if j != q][:top] for q, row in zip(rows, idx)])
