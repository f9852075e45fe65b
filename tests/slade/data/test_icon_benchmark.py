"""scripts/make_icon_benchmark.py on a fake icon-theme tree: theme families, duplicate drawings, the roles, and the
`folders` reader reading what it wrote with the split it planned."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slade.data.readers.folders import class_folders, unlabeled_folder

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("make_icon_benchmark", ROOT / "scripts" / "make_icon_benchmark.py")
icons = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(icons)

THEMES = [f"theme{t}" for t in range(10)]


def _drawing(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 200, (48, 48, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    return Image.fromarray(pixels, "RGBA")


def _theme(root: Path, name: str, icons_by_name: dict[str, Image.Image], size_dir="48x48/apps"):
    (root / name).mkdir(parents=True)
    (root / name / "index.theme").write_text(f"[Icon Theme]\nName={name}\n")
    for icon, image in icons_by_name.items():
        path = root / name / size_dir / f"{icon}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "icons"
    for t, theme in enumerate(THEMES):
        drawn = {f"class{c}": _drawing(100 * t + c) for c in range(6)}  # 6 names drawn by all 10 themes
        if t < 5:
            drawn["novel"] = _drawing(100 * t + 50)  # drawn by 5 themes: a novel class
        if t == 0:
            drawn["rare"] = _drawing(99)  # drawn by one theme: left out
            drawn["class0-symbolic"] = _drawing(98)  # symbolic icons are left out
        _theme(root, theme, drawn)
    _theme(root, "theme0-Dark", {"class0": _drawing(7)})  # a variant of theme0: not a theme of its own
    _theme(root, "hicolor", {f"class{c}": _drawing(500 + c) for c in range(6)})  # the fallback theme: left out
    # theme9 draws class5 exactly as theme8 does: one drawing, not two
    _drawing(100 * 8 + 5).save(root / "theme9" / "48x48" / "apps" / "class5.png")
    return root


def test_theme_families():
    assert icons.theme_family("Mint-Y-Dark-Aqua") == "Mint-Y"
    assert icons.theme_family("Yaru-prussiangreen-dark") == "Yaru"
    assert icons.theme_family("elementary-xfce-darkest") == "elementary-xfce"
    assert icons.theme_family("gnome-colors-common") == "gnome-colors-common"


def test_the_benchmark_it_writes(tree, tmp_path):
    out = tmp_path / "out"
    assert icons.main([str(out), "--icons", str(tree), "--min-themes", "8", "--workers", "1"]) == 0
    summary = json.loads((out / "icons.json").read_text())
    assert summary["themes"] == THEMES  # the variant and the fallback theme are not themes of their own
    assert (summary["train_classes"], summary["test_classes"], summary["novel_names"]) == (3, 3, 1)
    labeled_themes = set(summary["labeled_themes"])
    assert len(labeled_themes) == 5

    train, test = class_folders(str(out / "labeled"), "train"), class_folders(str(out / "labeled"), "test")
    assert train.class_names == ["class0", "class1", "class2"] and test.class_names == ["class3", "class4", "class5"]
    for path in train.paths:  # train classes: only the labeled themes' drawings carry labels
        assert Path(path).stem in labeled_themes
    assert len(train) == 3 * 5
    assert len(test) == 3 * 10 - 1  # class5's duplicate drawing counts once
    unlabeled = unlabeled_folder(str(out / "unlabeled"))
    names = sorted(Path(p).stem for p in unlabeled.paths)
    assert names.count("novel") == 5 and "rare" not in names and "class0-symbolic" not in names
    assert sum(n.startswith("class") for n in names) == 3 * 5  # the train classes' other themes
    assert not any(n.startswith(("class3", "class4", "class5")) for n in names)  # test classes never unlabeled
    assert summary["images"] == {"labeled": len(train) + len(test), "unlabeled": len(unlabeled)}


def test_a_full_output_directory_is_refused(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("")
    with pytest.raises(SystemExit):
        icons.main([str(out), "--icons", str(tree)])
