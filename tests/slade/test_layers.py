"""The layer rules, read from the import statements: slade_ext never imports the training layer, and SLADE's stages
never import each other (a stage's own parts, such as the student's objective, are not stages)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("selfsup", "teacher", "pseudo_labels", "student")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "slade_ext").rglob("*.py")), ids=lambda p: p.name)
def test_the_op_library_never_imports_the_training_layer(path):
    assert not [m for m in imported_modules(path) if m == "slade" or m.startswith("slade.")]


@pytest.mark.parametrize("stage", STAGES)
def test_stages_never_import_each_other(stage):
    others = {f"slade.stages.{s}" for s in STAGES if s != stage}
    imported = imported_modules(ROOT / "python" / "slade" / "stages" / f"{stage}.py")
    assert not imported & others
