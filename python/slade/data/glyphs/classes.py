"""The glyph benchmark's classes, enumerated with Python's own codecs (docs/data.md): han characters U+4E00-U+9FFF that are
level 1 in JIS X 0208 (EUC-JP lead byte 0xB0-0xCF), GB2312 (lead byte 0xB0-0xD7) and frequent Big5 (0xA440-0xC67E)."""
from __future__ import annotations

from functools import lru_cache

N_TRAIN_CLASSES = 791  # the first 791 shared characters (by code point); the last 792 are the test classes


def _double_byte(char: str, codec: str) -> bytes | None:
    try:
        encoded = char.encode(codec)
    except UnicodeEncodeError:
        return None
    return encoded if len(encoded) == 2 else None


def _jis_level1(char: str) -> bool:
    b = _double_byte(char, "euc_jp")
    return b is not None and 0xB0 <= b[0] <= 0xCF


def _gb2312_level1(char: str) -> bool:
    b = _double_byte(char, "gb2312")
    return b is not None and 0xB0 <= b[0] <= 0xD7


def _big5_frequent(char: str) -> bool:
    b = _double_byte(char, "big5")
    return b is not None and 0xA440 <= int.from_bytes(b, "big") <= 0xC67E


@lru_cache(maxsize=1)
def _enumerate() -> tuple[tuple[str, ...], tuple[str, ...]]:
    shared, jis_only = [], []
    for cp in range(0x4E00, 0xA000):
        char = chr(cp)
        if not _jis_level1(char):
            continue
        (shared if _gb2312_level1(char) and _big5_frequent(char) else jis_only).append(char)
    return tuple(shared), tuple(jis_only)


def shared_level1_characters() -> tuple[str, ...]:
    """The 1583 classes, sorted by code point."""
    return _enumerate()[0]


def train_characters() -> tuple[str, ...]:
    return shared_level1_characters()[:N_TRAIN_CLASSES]


def test_characters() -> tuple[str, ...]:
    return shared_level1_characters()[N_TRAIN_CLASSES:]


def novel_jis_characters() -> tuple[str, ...]:
    """Level-1 JIS kanji outside the shared set (about 1,380): the novel classes of the unlabeled role."""
    return _enumerate()[1]
