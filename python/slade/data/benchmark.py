"""A benchmark: its image sets by SLADE role (docs/method.md), and how to build one from the data section of the config."""
from __future__ import annotations

from dataclasses import dataclass, field

from slade.data.class_split import hold_out_classes
from slade.data.imageset import ImageSet


@dataclass
class Benchmark:
    """`labeled` trains the teacher; `val` (class-disjoint from it) picks the best epoch; the test classes are
    disjoint from both. Retrieval is leave-one-out within `test`, or query -> gallery when both are given (In-shop)."""

    name: str
    labeled: ImageSet
    test: ImageSet | None = None
    val: ImageSet | None = None
    unlabeled: ImageSet | None = None
    query: ImageSet | None = None
    gallery: ImageSet | None = None
    photo: bool = True  # photos get crop/flip augmentation and resize+centre-crop; synthetic images do not
    info: dict = field(default_factory=dict)

    def sets(self) -> dict[str, ImageSet]:
        names = ("labeled", "val", "test", "unlabeled", "query", "gallery")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def _require_root(cfg) -> str:
    if not cfg.root:
        raise ValueError(f"data.root is required for data set {cfg.name!r}")
    return cfg.root


def _unlabeled(cfg) -> ImageSet | None:
    if not cfg.unlabeled_root:
        return None
    if cfg.unlabeled_format == "folder":
        from slade.data.readers.folders import unlabeled_folder

        return unlabeled_folder(cfg.unlabeled_root)
    if cfg.unlabeled_format == "nabirds":
        from slade.data.readers.cub import nabirds

        return nabirds(cfg.unlabeled_root).withhold_labels(name="unlabeled")
    raise ValueError(f"data.unlabeled_format must be 'folder' or 'nabirds', got {cfg.unlabeled_format!r}")


def _with_validation(labeled: ImageSet, cfg) -> tuple[ImageSet, ImageSet | None]:
    """Holds out a class-disjoint share of the labeled classes for validation."""
    kept, held = hold_out_classes(range(len(labeled.class_names)), cfg.val_fraction, cfg.seed)
    if not len(held):
        return labeled, None
    return labeled.with_classes(kept, name="labeled"), labeled.with_classes(held, name="val")


def _split_benchmark(cfg, name: str, train: ImageSet, test: ImageSet, photo: bool) -> Benchmark:
    labeled, val = _with_validation(train, cfg)
    test.name = "test"
    return Benchmark(name=name, labeled=labeled, val=val, test=test, unlabeled=_unlabeled(cfg), photo=photo)


def build_benchmark(cfg) -> Benchmark:
    """cfg: config.DataConfig. `data.photo`, when set, overrides the reader's kind of image (icons, logos or
    renders read through `folders` are not photos: random crops would cut them apart)."""
    bench = _read(cfg)
    if cfg.photo is not None:
        bench.photo = cfg.photo
    return bench


def _read(cfg) -> Benchmark:
    if cfg.name == "glyphs":
        from slade.data.glyphs.benchmark import glyph_benchmark

        return glyph_benchmark(fonts_dir=cfg.fonts, n_fonts=cfg.n_fonts, n_train_classes=cfg.n_train_classes,
                               n_test_classes=cfg.n_test_classes, n_novel_classes=cfg.n_novel_classes,
                               image_size=cfg.image_size, seed=cfg.seed, jitter=cfg.jitter,
                               val_fraction=cfg.val_fraction, cache_dir=cfg.cache_dir)
    if cfg.name == "fashion-mnist":
        from slade.data.readers.fashion_mnist import fashion_mnist

        # Only 10 classes: train / test share them (a smoke-test benchmark, not the class-disjoint protocol).
        return _split_benchmark(cfg, cfg.name, fashion_mnist("train", cfg.root), fashion_mnist("test", cfg.root),
                                photo=False)
    if cfg.name == "cub200":
        from slade.data.readers.cub import cub200

        root = _require_root(cfg)
        return _split_benchmark(cfg, cfg.name, cub200(root, "train"), cub200(root, "test"), photo=True)
    if cfg.name == "cars196":
        from slade.data.readers.cars import cars196

        root = _require_root(cfg)
        return _split_benchmark(cfg, cfg.name, cars196(root, "train"), cars196(root, "test"), photo=True)
    if cfg.name == "folders":
        from slade.data.readers.folders import class_folders

        root = _require_root(cfg)
        return _split_benchmark(cfg, cfg.name, class_folders(root, "train", cfg.class_depth),
                                class_folders(root, "test", cfg.class_depth), photo=True)
    if cfg.name == "inshop":
        from slade.data.readers.inshop import inshop

        root = _require_root(cfg)
        labeled, val = _with_validation(inshop(root, "train"), cfg)
        return Benchmark(name="inshop", labeled=labeled, val=val, query=inshop(root, "query"),
                         gallery=inshop(root, "gallery"), unlabeled=_unlabeled(cfg), photo=True)
    raise ValueError(f"data.name {cfg.name!r} has no reader")  # config.validate lets only schema.DataName through
