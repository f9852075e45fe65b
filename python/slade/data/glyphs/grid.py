"""Renders characters x faces into one uint8 array, cached on disk keyed by (faces, characters, size, seed, jitter)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slade.data.glyphs.fonts import Face, covers
from slade.data.glyphs.render import Jitter, instance_rng, render_glyph

RENDER_VERSION = 1  # bump when render_glyph changes its output, so that old caches are not reused
PARALLEL_MIN_GLYPHS = 4000  # below this, process start-up costs more than it saves


def default_cache_dir() -> Path:
    return Path(os.environ.get("SLADE_CACHE", Path.home() / ".cache" / "slade")) / "glyphs"


def cache_key(faces: list[Face], chars, size: int, seed: int, jitter: Jitter) -> str:
    spec = {
        "faces": [(f.key, os.path.getsize(f.path)) for f in faces],
        "chars": "".join(chars),
        "size": size,
        "seed": seed,
        "jitter": asdict(jitter),
        "version": RENDER_VERSION,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def _render_face(face: Face, chars, size: int, seed: int, jitter: Jitter) -> tuple[np.ndarray, np.ndarray]:
    """(covered mask [C], glyphs [C, size, size]) of one face; uncovered characters stay black. A glyph FreeType
    fails to render (broken hinting bytecode) counts as not covered."""
    mask = np.array([covers(face, c) for c in chars])
    out = np.zeros((len(chars), size, size), dtype=np.uint8)
    for i in np.flatnonzero(mask):
        try:
            out[i] = render_glyph(chars[i], face.path, face.index, size, jitter,
                                  instance_rng(seed, chars[i], face.key))
        except OSError:
            mask[i] = False
    return mask, out


def _render_all(faces, chars, size, seed, jitter, workers: int) -> tuple[np.ndarray, np.ndarray]:
    args = [(f, chars, size, seed, jitter) for f in faces]
    if workers > 1 and len(faces) * len(chars) >= PARALLEL_MIN_GLYPHS:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(_render_face, *zip(*args)), total=len(faces), desc="rendering glyphs"))
    else:
        quiet = len(faces) * len(chars) < 2000
        results = [_render_face(*a) for a in tqdm(args, desc="rendering glyphs", disable=quiet)]
    masks, glyphs = zip(*results)
    return np.stack(masks, axis=1), np.stack(glyphs, axis=1)


def render_grid(faces: list[Face], chars, size: int, seed: int, jitter: Jitter, cache_dir: str | Path | None = None,
                workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(covered [n_chars, n_faces] bool, glyphs [n_chars, n_faces, size, size] uint8). The second call with the
    same arguments loads the cached arrays instead of rendering."""
    if size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {size}")
    chars = list(chars)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / f"{cache_key(faces, chars, size, seed, jitter)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["covered"], stored["glyphs"]
    covered, glyphs = _render_all(faces, chars, size, seed, jitter, workers or os.cpu_count() or 1)
    cache.mkdir(parents=True, exist_ok=True)
    # Atomic: a crash mid-write leaves no truncated cache for the next run to trust.
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, covered=covered, glyphs=glyphs)
    os.replace(tmp, path)
    return covered, glyphs
