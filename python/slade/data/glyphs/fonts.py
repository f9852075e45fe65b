"""Finds CJK typefaces on disk (fc-list, or a directory), keeps those that cover the wanted characters, and drops
faces whose glyphs duplicate another's (e.g. IPAGothic vs IPAPGothic, fonts-japanese-* symlinks)."""
from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from slade.data.glyphs.render import NO_JITTER, render_glyph

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")

# docs/data.md: the Debian packages whose faces cover all 1583 classes (fonts-droid-fallback duplicates wqy-microhei),
# listed in debian_fonts.txt, which scripts/install.sh reads too.
DEBIAN_FONT_PACKAGES = tuple(line.split()[0] for line in (Path(__file__).with_name("debian_fonts.txt")
                                                           .read_text(encoding="utf-8").splitlines())
                             if line.strip() and not line.startswith("#"))

# Mean |difference| / 255 of plain 48 px probe renders below which two faces count as one. Same-outline faces differ
# by sub-pixel placement only (VL Gothic vs VL PGothic: 0.023); distinct designs differ by 0.1 or more.
DUPLICATE_TOLERANCE = 0.05
N_PROBE_CHARS = 24


class FontsNotFoundError(RuntimeError):
    pass


@dataclass(frozen=True)
class Face:
    path: str  # resolved path, so symlinked duplicates compare equal
    index: int  # face index inside a .ttc/.otc collection

    @property
    def key(self) -> str:
        """Stable name used for seeding and cache keys: file name and face index (not the install location)."""
        return f"{os.path.basename(self.path)}#{self.index}"


def _collection_size(path: Path) -> int:
    if path.suffix.lower() not in (".ttc", ".otc"):
        return 1
    from fontTools.ttLib import TTCollection  # fontTools ships with matplotlib

    with TTCollection(str(path), lazy=True) as collection:
        return len(collection.fonts)


def faces_in_directory(fonts_dir: str) -> list[Face]:
    root = Path(fonts_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"fonts: {fonts_dir!r} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())
    return [Face(str(p.resolve()), i) for p in files for i in range(_collection_size(p))]


def faces_from_fontconfig() -> list[Face]:
    if shutil.which("fc-list") is None:
        raise FontsNotFoundError("fc-list (fontconfig) is not installed: install fontconfig or pass a fonts directory "
                                 "(data.fonts / --data.fonts DIR)")
    out = subprocess.run(["fc-list", "--format", "%{file}|%{index}\n"], capture_output=True, text=True, check=True)
    faces = set()
    for line in out.stdout.splitlines():
        path, _, index = line.rpartition("|")
        if path and index.isdigit() and int(index) < 0x10000:  # higher indices are variable-font named instances
            faces.add(Face(os.path.realpath(path), int(index)))
    return list(faces)


@lru_cache(maxsize=None)
def _codepoints(face: Face) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    try:
        with TTFont(face.path, fontNumber=face.index, lazy=True) as font:
            # Placeholder glyph names: decoding the real ones (the 'post' table) costs more than the cmap itself.
            font.setGlyphOrder([f"g{i}" for i in range(font["maxp"].numGlyphs)])
            return frozenset(font.getBestCmap() or ())
    except Exception:  # a broken or non-font file on disk: it just covers nothing
        return frozenset()


def covers(face: Face, chars) -> bool:
    cmap = _codepoints(face)
    return all(ord(c) in cmap for c in chars)


def _probe(face: Face, chars) -> np.ndarray:
    rng = np.random.default_rng(0)  # NO_JITTER draws nothing that matters
    return np.stack([render_glyph(c, face.path, face.index, 48, NO_JITTER, rng) for c in chars]).astype(np.float32)


def distinct(faces: list[Face], chars) -> tuple[list[Face], list[Face]]:
    """(kept, unrenderable): the faces in the given order, each dropped when its plain renders match an earlier kept
    face's, or when FreeType cannot render it (e.g. fonts-horai-umefont's ume-pgs4/pgs5/tgs5: "invalid opcode" in
    their hinting bytecode)."""
    probe_chars = [chars[i] for i in np.linspace(0, len(chars) - 1, min(N_PROBE_CHARS, len(chars))).astype(int)]
    kept, kept_renders, unrenderable = [], [], []
    for face in faces:
        try:
            render = _probe(face, probe_chars)
        except OSError:
            unrenderable.append(face)
            continue
        if all(np.abs(render - other).mean() / 255.0 >= DUPLICATE_TOLERANCE for other in kept_renders):
            kept.append(face)
            kept_renders.append(render)
    return kept, unrenderable


@lru_cache(maxsize=16)
def distinct_covering(chars: tuple[str, ...], fonts_dir: str | None) -> tuple[tuple[Face, ...], tuple[Face, ...]]:
    """(distinct faces covering every char, covering faces FreeType cannot render). Cached per process: the fonts on
    disk do not change during a run, and probing them takes seconds. Warns once about the unrenderable ones."""
    found = faces_in_directory(fonts_dir) if fonts_dir else faces_from_fontconfig()
    covering = sorted((f for f in found if covers(f, chars)), key=lambda f: (f.index, f.key))
    kept, unrenderable = distinct(covering, list(chars))
    if unrenderable:
        warnings.warn("glyph benchmark: skipped typeface(s) that FreeType cannot render: "
                      + ", ".join(f.key for f in unrenderable), stacklevel=2)
    return tuple(kept), tuple(unrenderable)


def _missing_packages_hint() -> str:
    missing = [p for p in DEBIAN_FONT_PACKAGES if not Path("/usr/share/doc", p).exists()]
    return "sudo apt-get install " + " ".join(missing or DEBIAN_FONT_PACKAGES)


def select_faces(chars, fonts_dir: str | None, n_fonts: int | None, min_fonts: int) -> list[Face]:
    """Distinct faces covering every char: the first n_fonts (all when None), one face per font file first (for
    variety when only a few are used). Raises FontsNotFoundError naming the Debian packages when too few exist."""
    if n_fonts is not None and n_fonts < min_fonts:
        raise ValueError(f"n_fonts={n_fonts} is below the minimum of {min_fonts} faces")
    faces = list(distinct_covering(tuple(chars), fonts_dir)[0])
    need = n_fonts or min_fonts
    if len(faces) < need:
        where = f"in {fonts_dir!r}" if fonts_dir else "through fc-list"
        raise FontsNotFoundError(
            f"found {len(faces)} distinct typeface(s) {where} covering the {len(chars)} glyph classes, need {need}. "
            f"Install more CJK fonts, e.g.: {_missing_packages_hint()}"
        )
    return faces[:n_fonts] if n_fonts else faces
