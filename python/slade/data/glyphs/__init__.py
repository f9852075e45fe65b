"""The default benchmark: CJK glyphs rendered from the Debian fonts (classes, faces, rendering, roles)."""
from slade.data.glyphs.benchmark import glyph_benchmark

__all__ = ["glyph_benchmark"]
