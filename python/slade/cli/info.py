"""`slade info`: how slade_ext was built and whether its CUDA kernels will run here, which faiss is live (and whether
it really reaches a GPU), the fonts the glyph benchmark finds, and torch's devices."""
from __future__ import annotations

import json

NAME = "info"
HELP = ("report the slade_ext build (and whether its CUDA kernels run here), the faiss build, the glyph benchmark's "
        "fonts and torch's devices")


def add_arguments(parser) -> None:
    parser.add_argument("--fonts-dir", default=None,
                        help="look for the glyph benchmark's fonts in this directory instead of through fc-list")


def kernels_report() -> dict:
    """slade_ext.build_info(), plus `cuda_kernels_will_run`: CUDA kernels compiled in AND a GPU visible. A module
    that cannot load (e.g. built against another torch) is reported, not raised."""
    import torch

    try:
        import slade_ext

        facts = dict(slade_ext.build_info())
    except Exception as exc:  # noqa: BLE001  (the report says why, the other sections still print)
        return {"error": f"{type(exc).__name__}: {exc}", "cuda_kernels_will_run": False}
    facts["cuda_kernels_will_run"] = bool(facts.get("cuda_compiled")) and torch.cuda.is_available()
    return facts


def _face_name(face) -> str:
    try:
        from fontTools.ttLib import TTFont

        with TTFont(face.path, fontNumber=face.index, lazy=True) as font:
            name = font["name"].getBestFullName()
        if name:
            return f"{name} ({face.key})"
    except Exception:  # noqa: BLE001  (an unreadable name table: the file name still identifies the face)
        pass
    return face.key


def fonts_report(fonts_dir: str | None = None) -> dict:
    """The distinct typefaces covering all of the default glyph benchmark's classes, as `slade run` would select."""
    from slade.data.glyphs import classes
    from slade.data.glyphs.benchmark import MIN_FONTS
    from slade.data.glyphs.fonts import distinct_covering

    chars = tuple(classes.train_characters()) + tuple(classes.test_characters())
    source = fonts_dir or "fc-list"
    try:
        faces, unrenderable = distinct_covering(chars, fonts_dir)
    except Exception as exc:  # noqa: BLE001  (no fontconfig, a missing directory: say so)
        return {"source": source, "error": f"{type(exc).__name__}: {exc}", "distinct_faces": 0, "faces": [],
                "enough": False, "min_faces": MIN_FONTS}
    return {"source": source, "classes": len(chars), "distinct_faces": len(faces),
            "faces": [_face_name(f) for f in faces], "unrenderable": [f.key for f in unrenderable],
            "min_faces": MIN_FONTS, "enough": len(faces) >= MIN_FONTS}


def run(args, extra) -> int:
    if extra:
        raise ValueError(f"unexpected arguments {extra}")
    import torch

    from slade.search.backend import faiss_report

    kernels = kernels_report()
    report = {"slade_ext": kernels, "cuda_kernels_will_run": kernels["cuda_kernels_will_run"],
              "faiss": faiss_report(), "fonts": fonts_report(getattr(args, "fonts_dir", None)),
              "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
              "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    print(json.dumps(report, indent=2))
    return 0
