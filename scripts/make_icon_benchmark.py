#!/usr/bin/env python3
"""Builds the icon benchmark: a second retrieval benchmark, unlike the glyphs, written in the `folders` layout
(docs/data.md, "A second benchmark: desktop icons").

A class is a freedesktop icon name ("edit-copy", "media-playback-start", "printer"); an instance is that icon as
one icon theme draws it (Tango, Oxygen, Papirus, Breeze, ...). Colour, different styles (flat, glossy, outlined),
many themes: a cross-style retrieval task in the manner of the glyph benchmark's faces, on data that looks nothing
like it. Everything comes from Debian's icon-theme packages; nothing is downloaded.

The roles follow the glyph benchmark's design (docs/data.md). The classes are the names drawn by at least
--min-themes distinct themes; the `folders` reader makes the first half of them (sorted by name) the train classes
and the rest the test classes. The themes are split in two by --seed, as the glyphs' faces are:

    out/labeled/<name>/<theme>.png      train classes x labeled themes; test classes x all themes
    out/unlabeled/<theme>/<name>.png    train classes x the other themes, and novel names (drawn by
                                        --novel-min .. --min-themes - 1 themes) x all themes; no labels

Run: python scripts/make_icon_benchmark.py OUT [--icons /usr/share/icons] [--size 48] [--min-themes 8] [--seed 0]
Needs Pillow and, for SVG themes, rsvg-convert (Debian: librsvg2-bin).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

# Colour and brightness variants of one theme (Mint-Y-Dark-Aqua, Yaru-bark-dark, Papirus-Light) are one theme:
# their icons are the base theme's with a recoloured folder, not another drawing.
VARIANT_SUFFIXES = {"dark", "darker", "darkest", "light", "classic", "aqua", "blue", "brown", "grey", "gray",
                    "orange", "pink", "purple", "red", "sand", "teal", "bark", "magenta", "olive", "prussiangreen",
                    "sage", "viridian", "lh"}
FALLBACK_THEMES = {"hicolor", "locolor", "default"}  # not drawings of their own: whatever applications installed
SKIPPED_DIRS = {"cursors", "animations", "emotes", "emoticons", "stock"}
SIZE_DIR = re.compile(r"^(\d+)(?:x\d+)?(?:@(\d)x)?$")
DUPLICATE_TOLERANCE = 0.03  # mean |difference| of 16 px grey thumbnails (0-1) under which two drawings are one


def theme_family(name: str) -> str:
    parts = name.split("-")
    while len(parts) > 1 and parts[-1].lower() in VARIANT_SUFFIXES:
        parts.pop()
    return "-".join(parts)


def themes(icons_root: Path) -> list[Path]:
    """One theme per family (the shortest name), fallback themes left out."""
    found = sorted(p for p in icons_root.iterdir() if (p / "index.theme").is_file() and p.name not in FALLBACK_THEMES)
    families: dict[str, Path] = {}
    for theme in found:
        family = theme_family(theme.name)
        if family not in families or len(theme.name) < len(families[family].name):
            families[family] = theme
    return sorted(families.values(), key=lambda p: p.name)


def source_rank(path: Path, size: int) -> tuple | None:
    """Lower is better: a PNG drawn at `size`, then SVG, then the nearest larger PNG, then smaller ones >= 32."""
    parts = path.parts
    if any(p in SKIPPED_DIRS for p in parts) or "symbolic" in path.stem:
        return None
    if path.suffix == ".svg":
        return (1, 0)
    pixels = None
    for part in parts:
        match = SIZE_DIR.match(part)
        if match:
            pixels = int(match.group(1)) * int(match.group(2) or 1)
    if pixels is None or pixels < 32:
        return None
    if pixels == size:
        return (0, 0)
    return (2, pixels - size) if pixels > size else (3, size - pixels)


def inventory(theme: Path, size: int) -> dict[str, Path]:
    """icon name -> the file to draw it from."""
    best: dict[str, tuple[tuple, Path]] = {}
    for path in theme.rglob("*"):
        if path.suffix not in (".png", ".svg") or not path.is_file():
            continue
        rank = source_rank(path.relative_to(theme), size)
        if rank is not None and (path.stem not in best or rank < best[path.stem][0]):
            best[path.stem] = (rank, path)
    return {name: path for name, (_, path) in best.items()}


def render(path: Path, size: int) -> np.ndarray | None:
    """RGB uint8 (size, size, 3) on white, or None when the file cannot be drawn or draws nothing."""
    try:
        if path.suffix == ".svg":
            png = subprocess.run(["rsvg-convert", "-w", str(size), "-h", str(size), str(path)],
                                 capture_output=True, timeout=30, check=True).stdout
            image = Image.open(io.BytesIO(png))
        else:
            image = Image.open(path)
        image = image.convert("RGBA").resize((size, size), Image.LANCZOS)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
    rgb = np.asarray(Image.alpha_composite(canvas, image).convert("RGB"))
    return rgb if (rgb < 250).any(axis=2).mean() > 0.02 else None


def _render_job(job):
    name, theme, path, size = job
    return name, theme, render(path, size)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L").resize((16, 16), Image.BILINEAR), dtype=np.float32) / 255


def distinct(drawings: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Drops a drawing that another theme already drew the same (shared artwork, symlinks between themes)."""
    kept, thumbs = [], []
    for theme, rgb in drawings:
        thumb = thumbnail(rgb)
        if all(np.abs(thumb - other).mean() >= DUPLICATE_TOLERANCE for other in thumbs):
            kept.append((theme, rgb))
            thumbs.append(thumb)
    return kept


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--icons", type=Path, default=Path("/usr/share/icons"))
    parser.add_argument("--size", type=int, default=48, help="pixels of the written images")
    parser.add_argument("--min-themes", type=int, default=8, help="distinct drawings a labeled class needs")
    parser.add_argument("--novel-min", type=int, default=4, help="distinct drawings a novel (unlabeled) name needs")
    parser.add_argument("--seed", type=int, default=0, help="which half of the themes is labeled")
    parser.add_argument("--workers", type=int, default=2, help="render processes (1: none)")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"out: {args.out} exists and is not empty")
    if shutil.which("rsvg-convert") is None:
        print("rsvg-convert not found: SVG themes are skipped (Debian: apt-get install librsvg2-bin)", file=sys.stderr)

    chosen = themes(args.icons)
    files = {theme.name: inventory(theme, args.size) for theme in chosen}
    by_name: dict[str, list[str]] = {}
    for theme, icons in files.items():
        for name in icons:
            by_name.setdefault(name, []).append(theme)
    jobs = [(name, theme, files[theme][name], args.size)
            for name, drawn_by in sorted(by_name.items()) if len(drawn_by) >= 2 for theme in drawn_by]
    drawings: dict[str, list[tuple[str, np.ndarray]]] = {}
    with ProcessPoolExecutor(args.workers) if args.workers > 1 else contextlib.nullcontext() as pool:
        rendered = pool.map(_render_job, jobs, chunksize=64) if pool else map(_render_job, jobs)
        for name, theme, rgb in rendered:
            if rgb is not None:
                drawings.setdefault(name, []).append((theme, rgb))

    distinct_drawings = {name: distinct(drawn) for name, drawn in sorted(drawings.items())}
    classes = [name for name, drawn in distinct_drawings.items() if len(drawn) >= args.min_themes]
    class_set = set(classes)
    train_classes = set(classes[:(len(classes) + 1) // 2])  # the folders reader's rule (data/class_split.py)
    order = np.random.default_rng(args.seed).permutation(len(chosen))
    labeled_themes = {chosen[i].name for i in order[:(len(chosen) + 1) // 2]}
    counts = {"labeled": 0, "unlabeled": 0}
    for name, drawn in distinct_drawings.items():
        if len(drawn) < args.novel_min:
            continue
        in_labeled = [name in class_set and (name not in train_classes or theme in labeled_themes) for theme, _ in drawn]
        if name in train_classes and sum(in_labeled) < 2:
            # every train class keeps 2 labeled drawings, so the reader's class list (and its split) is the one here
            in_labeled = [True, True] + in_labeled[2:]
        for (theme, rgb), labeled in zip(drawn, in_labeled):
            target = (args.out / "labeled" / name / f"{theme}.png" if labeled
                      else args.out / "unlabeled" / theme / f"{name}.png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(target)
            counts["labeled" if labeled else "unlabeled"] += 1
    summary = {"themes": [t.name for t in chosen], "labeled_themes": sorted(labeled_themes),
               "train_classes": len(train_classes), "test_classes": len(classes) - len(train_classes),
               "novel_names": sum(args.novel_min <= len(d) < args.min_themes for d in distinct_drawings.values()),
               "images": counts, "size": args.size, "min_themes": args.min_themes, "novel_min": args.novel_min,
               "seed": args.seed}
    (args.out / "icons.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
