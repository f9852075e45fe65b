"""A benchmark = its data sets by SLADE role (METHOD.md), plus how its images should be transformed."""
from __future__ import annotations

from dataclasses import dataclass, field

from .imageset import ImageSet


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
