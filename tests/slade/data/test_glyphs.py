"""The CJK glyph benchmark: classes from the codecs, fonts, seeded rendering, cache, roles."""
import numpy as np
import pytest

from slade.data.glyphs import classes as cjk_classes
from slade.data.glyphs import grid as glyph_grid
from slade.data.glyphs.fonts import FontsNotFoundError, select_faces
from slade.data.glyphs.benchmark import glyph_benchmark


def test_class_enumeration_matches_data_md():
    shared = cjk_classes.shared_level1_characters()
    assert len(shared) == 1583
    assert list(shared) == sorted(shared)
    assert len(cjk_classes.train_characters()) == 791 and len(cjk_classes.test_characters()) == 792
    assert set(cjk_classes.train_characters()).isdisjoint(cjk_classes.test_characters())
    novel = cjk_classes.novel_jis_characters()
    assert 1350 <= len(novel) <= 1400 and set(novel).isdisjoint(shared)
    for confusable in "末未土士人入干千":
        assert confusable in shared


def _small(tmp_path, **kw):
    args = dict(n_train_classes=10, n_test_classes=5, n_novel_classes=4, n_fonts=4, image_size=16,
                val_fraction=0.2, cache_dir=str(tmp_path))
    args.update(kw)
    return glyph_benchmark(**args)


def test_roles_follow_data_md(tmp_path):
    bench = _small(tmp_path)
    faces = bench.info["faces"]
    assert len(faces) == 4 and len(bench.info["labeled_faces"]) == 2
    assert bench.labeled.num_classes == 8 and bench.val.num_classes == 2 and bench.test.num_classes == 5
    # labeled: each fit class once per labeled face; test: each test class in every face
    assert len(bench.labeled) == 8 * 2 and len(bench.test) == 5 * 4 and len(bench.val) == 2 * 4
    names = lambda s: set(s.class_names)  # noqa: E731
    assert names(bench.labeled).isdisjoint(names(bench.test))
    assert names(bench.val).isdisjoint(names(bench.labeled)) and names(bench.val).isdisjoint(names(bench.test))
    # unlabeled: labels withheld; fit classes through the 2 other faces, 4 novel classes through covering faces
    assert (bench.unlabeled.labels == -1).all()
    hidden = bench.unlabeled.hidden_labels
    novel = set(bench.unlabeled.class_names[8:])
    assert novel.isdisjoint(names(bench.labeled) | names(bench.test)) and len(novel) == 4
    assert np.bincount(hidden[hidden < 8], minlength=8).tolist() == [2] * 8
    assert 4 <= (hidden >= 8).sum() <= 4 * 4
    assert bench.labeled.arrays.shape[1:] == (16, 16) and bench.labeled.arrays.dtype == np.uint8


def test_rendering_is_seeded_and_cached(tmp_path, monkeypatch):
    first = _small(tmp_path / "a")
    again = _small(tmp_path / "b")  # a fresh cache: rendered anew, must be identical
    np.testing.assert_array_equal(first.test.arrays, again.test.arrays)
    other_seed = _small(tmp_path / "c", seed=1)
    assert not np.array_equal(first.test.arrays, other_seed.test.arrays)
    assert len(list((tmp_path / "a").glob("*.npz"))) == 1

    def must_not_render(*args, **kwargs):
        raise AssertionError("rendered although the cache holds these glyphs")

    monkeypatch.setattr(glyph_grid, "_render_all", must_not_render)
    cached = _small(tmp_path / "a")
    np.testing.assert_array_equal(cached.test.arrays, first.test.arrays)
    with pytest.raises(AssertionError, match="rendered although"):
        _small(tmp_path / "a", image_size=20)  # another size is another cache entry


def test_jitter_varies_instances(tmp_path):
    plain = _small(tmp_path, jitter=False).test
    jittered = _small(tmp_path, jitter=True).test
    assert not np.array_equal(plain.arrays, jittered.arrays)
    assert all(img.max() > 0 for img in jittered.arrays)  # every glyph left visible ink


def test_too_few_fonts_names_debian_packages(tmp_path):
    with pytest.raises(FontsNotFoundError, match="fonts-ipafont-gothic|apt-get install"):
        select_faces(cjk_classes.train_characters()[:5], str(tmp_path), None, 4)
    with pytest.raises(FontsNotFoundError, match="need 500"):
        select_faces(cjk_classes.train_characters()[:5], None, 500, 4)
    with pytest.raises(ValueError, match="n_fonts"):
        select_faces(cjk_classes.train_characters()[:5], None, 2, 4)


def test_fonts_directory_option(tmp_path):
    import shutil

    faces = select_faces(cjk_classes.train_characters()[:5], None, 4, 4)
    for face in faces:
        shutil.copy(face.path, tmp_path / face.key.split("#")[0])
    from_dir = select_faces(cjk_classes.train_characters()[:5], str(tmp_path), 4, 4)
    assert sorted(f.key for f in from_dir) == sorted(f.key for f in faces)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="n_train_classes"):
        _small(tmp_path, n_train_classes=5000)
    with pytest.raises(ValueError, match="val_fraction"):
        _small(tmp_path, val_fraction=1.5)
    with pytest.raises(ValueError, match="image_size"):
        _small(tmp_path, image_size=4)


def test_faces_freetype_cannot_render_are_skipped_with_a_warning(monkeypatch):
    from slade.data.glyphs import fonts

    chars = cjk_classes.train_characters()[:5]
    faces = select_faces(chars, None, 5, 4)
    broken = faces[1]
    real_probe = fonts._probe

    def probe(face, probe_chars):
        if face == broken:
            raise OSError("invalid opcode")  # what FreeType says of fonts-horai-umefont's ume-pgs4
        return real_probe(face, probe_chars)

    monkeypatch.setattr(fonts, "_probe", probe)
    kept, unrenderable = fonts.distinct(faces, list(chars))
    assert unrenderable == [broken] and kept == [f for f in faces if f != broken]


def test_a_glyph_that_fails_to_render_counts_as_not_covered(monkeypatch):
    chars = cjk_classes.train_characters()[:3]
    face = select_faces(chars, None, 4, 4)[0]
    real_render = glyph_grid.render_glyph

    def render(char, *args, **kwargs):
        if char == chars[1]:
            raise OSError("invalid opcode")
        return real_render(char, *args, **kwargs)

    monkeypatch.setattr(glyph_grid, "render_glyph", render)
    mask, out = glyph_grid._render_face(face, list(chars), 16, 0, glyph_grid.Jitter())
    assert mask.tolist() == [True, False, True]
    assert out[1].max() == 0 and out[0].max() > 0


def test_the_font_package_list_is_read_from_its_file():
    from slade.data.glyphs.fonts import DEBIAN_FONT_PACKAGES

    assert len(DEBIAN_FONT_PACKAGES) == 34 and DEBIAN_FONT_PACKAGES[0] == "fonts-ipafont-gothic"
    assert "fonts-noto-cjk" in DEBIAN_FONT_PACKAGES and "fonts-droid-fallback" not in DEBIAN_FONT_PACKAGES
