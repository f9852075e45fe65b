"""The default benchmark: CJK glyphs across typefaces, in the roles of docs/data.md (labeled = train classes x half the
faces; unlabeled = train classes x the other faces + novel JIS kanji; test = test classes x all faces)."""
from __future__ import annotations

import numpy as np

from slade.data.glyphs import classes as cjk_classes
from slade.data.class_split import hold_out_classes
from slade.data.glyphs.fonts import select_faces
from slade.data.glyphs.grid import render_grid
from slade.data.glyphs.render import NO_JITTER, Jitter
from slade.data.imageset import ImageSet
from slade.data.benchmark import Benchmark

MIN_FONTS = 4  # two labeled faces per class and two test instances per class at the very least


def _evenly_spaced(chars, n: int | None, arg: str) -> list[str]:
    """n characters spread over the whole range (more radicals than the first n), all when n is None."""
    chars = list(chars)
    if n is None:
        return chars
    if not 0 <= n <= len(chars):
        raise ValueError(f"{arg} must be between 0 and {len(chars)}, got {n}")
    return [chars[i] for i in np.linspace(0, len(chars) - 1, n).round().astype(int)] if n else []


def _cells(glyphs, covered, blocks, class_rows, name: str, chars) -> ImageSet:
    """The ImageSet of grid cells (row, face) over blocks of (rows, faces), skipping cells a face does not cover.
    Labels number `class_rows` in order; class names are their characters."""
    label_of_row = {int(r): i for i, r in enumerate(class_rows)}
    cells = [np.stack(np.meshgrid(rows, faces, indexing="ij"), -1).reshape(-1, 2) for rows, faces in blocks]
    r, f = np.concatenate(cells).astype(np.int64).T
    keep = covered[r, f]
    r, f = r[keep], f[keep]
    return ImageSet(labels=np.array([label_of_row[i] for i in r], dtype=np.int64),
                    class_names=[chars[i] for i in class_rows], arrays=glyphs[r, f], name=name)


def glyph_benchmark(fonts_dir: str | None = None, n_fonts: int | None = None, n_train_classes: int | None = None,
                    n_test_classes: int | None = None, n_novel_classes: int | None = None, image_size: int = 32,
                    seed: int = 0, jitter: bool = True, val_fraction: float = 0.1, cache_dir: str | None = None,
                    ) -> Benchmark:
    train_chars = _evenly_spaced(cjk_classes.train_characters(), n_train_classes, "n_train_classes")
    test_chars = _evenly_spaced(cjk_classes.test_characters(), n_test_classes, "n_test_classes")
    novel_chars = _evenly_spaced(cjk_classes.novel_jis_characters(), n_novel_classes, "n_novel_classes")
    faces = select_faces(train_chars + test_chars, fonts_dir, n_fonts, MIN_FONTS)
    chars = train_chars + test_chars + novel_chars
    covered, glyphs = render_grid(faces, chars, image_size, seed, Jitter() if jitter else NO_JITTER, cache_dir)

    n_train, n_test = len(train_chars), len(test_chars)
    order = np.random.default_rng(seed).permutation(len(faces))
    labeled_faces, unlabeled_faces = order[: (len(faces) + 1) // 2], order[(len(faces) + 1) // 2:]
    all_faces = np.arange(len(faces))
    fit_rows, val_rows = hold_out_classes(np.arange(n_train), val_fraction, seed)
    test_rows = np.arange(n_train, n_train + n_test)
    novel_rows = np.arange(n_train + n_test, len(chars))

    def cells(blocks, class_rows, name):
        return _cells(glyphs, covered, blocks, class_rows, name, chars)

    labeled = cells([(fit_rows, labeled_faces)], fit_rows, "labeled")
    # Train classes enter the unlabeled role through the other faces only; novel classes through every face.
    unlabeled = cells([(fit_rows, unlabeled_faces), (novel_rows, all_faces)], np.concatenate([fit_rows, novel_rows]),
                      "unlabeled").withhold_labels()
    test = cells([(test_rows, all_faces)], test_rows, "test")
    val = cells([(val_rows, all_faces)], val_rows, "val") if len(val_rows) else None
    return Benchmark(
        name="glyphs", labeled=labeled, unlabeled=unlabeled, val=val, test=test, photo=False,
        info={"faces": [f.key for f in faces], "labeled_faces": [faces[i].key for i in labeled_faces],
              "n_novel_classes": len(novel_chars), "image_size": image_size},
    )
